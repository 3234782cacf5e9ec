"""Eyeriss v2's network modes and sparse processing in the model, the batch model and search."""
from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mapper import load_arch, parse_arch
from mapper.batch import Encoding, evaluate_batch
from mapper.mapping import Loop, normalize, problems_of
from mapper.model import evaluate, network_utilization, utilization
from mapper.problem import TENSORS, layer_from_dims
from mapper.search import search
from mapper.search.random import sample
from mapper.search.space import Space
from mapper.spec import SpecError

V1, V2 = load_arch("eyeriss_v1"), load_arch("eyeriss_v2")
LAYERS = [layer_from_dims("conv", M=8, C=4, P=6, Q=6, R=3, S=3),
          layer_from_dims("pw", M=16, C=8, P=4, Q=4),
          layer_from_dims("s2", stride=(2, 2), M=4, C=3, P=3, Q=3, R=3, S=3)]


def candidates(layer, arch, n=60, seed=0):
    space = Space.build(layer, arch)
    f, o, k = sample(space, np.random.default_rng(seed), 4000)
    ok = space.valid(f, k)
    return space.enc, f[ok][:n], o[ok][:n], k[ok][:n]


@pytest.mark.parametrize("arch", [V1, V2], ids=["v1", "v2"])
@pytest.mark.parametrize("layer", LAYERS, ids=lambda l: l.name)
def test_density_one_is_the_dense_model(arch, layer):
    """density 1.0 (given explicitly) reproduces the dense counts, energy and cycles exactly."""
    enc, f, o, k = candidates(layer, arch)
    ones = layer.with_density({"weights": 1.0, "inputs": 1.0})
    dense = evaluate_batch(enc, f, o, k, with_counts=True)
    again = evaluate_batch(Encoding.of(ones, arch), f, o, k, dense.modes, with_counts=True)
    assert np.array_equal(dense.energy_pj, again.energy_pj)
    assert np.array_equal(dense.cycles, again.cycles)
    assert np.array_equal(dense.counts, again.counts)
    for j in range(0, len(f), 15):
        m = enc.decode(f[j], o[j], k[j], dense.modes[j])
        a, b = evaluate(layer, arch, m), evaluate(ones, arch, m)
        assert a.to_dict() == b.to_dict()


def lower_density_never_raises_cost(arch_i, layer_i, seed, dw, di, shrink_w, shrink_i):
    arch, layer = (V1, V2)[arch_i], LAYERS[layer_i]
    enc, f, o, k = candidates(layer, arch, n=5, seed=seed)
    high = layer.with_density({"weights": dw, "inputs": di})
    low = layer.with_density({"weights": dw * (1 - 0.9 * shrink_w), "inputs": di * (1 - 0.9 * shrink_i)})
    compared = 0
    for j in range(len(f)):
        m = enc.decode(f[j], o[j], k[j])
        if problems_of(m, high, arch):
            continue
        assert problems_of(m, low, arch) == []           # what fits denser data fits sparser data
        a, b = evaluate(high, arch, m), evaluate(low, arch, m)
        assert b.energy_pj <= a.energy_pj * (1 + 1e-12)
        assert b.cycles <= a.cycles
        compared += 1
    assert compared > 0          # (candidates fit dense, so they fit at any lower density)


DENSITY_CASES = given(st.sampled_from([0, 1]), st.sampled_from(range(3)), st.integers(0, 10 ** 6),
                      st.floats(0.05, 1.0), st.floats(0.05, 1.0), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
# a few examples in the fast tier, the full run in the slow tier
test_lower_density_never_raises_cost = settings(max_examples=6, deadline=None)(
    DENSITY_CASES(lower_density_never_raises_cost))
test_lower_density_never_raises_cost_many = pytest.mark.slow(settings(max_examples=25, deadline=None)(
    DENSITY_CASES(lower_density_never_raises_cost)))


def test_sparse_scalar_and_batch_agree():
    layer = LAYERS[0].with_density({"weights": 0.4, "inputs": 0.6})
    for arch in (V1, V2):
        enc, f, o, k = candidates(layer, arch)
        batch = evaluate_batch(enc, f, o, k, with_counts=True)
        for j in range(len(f)):
            m = enc.decode(f[j], o[j], k[j], batch.modes[j])
            c = evaluate(layer, arch, m)
            assert math.isclose(c.energy_pj, batch.energy_pj[j], rel_tol=1e-12)
            assert c.cycles == batch.cycles[j]


def test_skipping_and_gating_by_hand():
    """v2 skips MACs with a zero operand (energy and cycles x dw*di); v1 gates zero inputs
    (MAC energy x di, cycles unchanged)."""
    base = layer_from_dims("fc", M=16, C=8)
    sparse = base.with_density({"weights": 0.5, "inputs": 0.25})
    for arch, energy_factor, cycle_factor in ((V2, 0.125, 0.125), (V1, 0.25, 1.0)):
        loops = [Loop("DRAM", "M", 16), Loop("DRAM", "C", 8)]
        m = normalize(loops, arch)
        dense, sp = evaluate(base, arch, m), evaluate(sparse, arch, m)
        assert sp.mac_pj == pytest.approx(dense.mac_pj * energy_factor)
        assert sp.compute_cycles == math.ceil(dense.compute_cycles * cycle_factor)


def utilization_is_a_share(arch_i, layer_i, seed, dw, di):
    """Utilization = performed MACs / (cycles x MAC lanes) is in (0, 1] at any density, on
    v1 (gating: cycles and performed MACs stay dense) and v2 (skipping, SIMD lanes); it is
    the dense MACs / (cycles x lanes) at density 1, and the batch model's cycles give the
    same value (the batch reports cycles, not utilization)."""
    arch, layer = (V1, V2)[arch_i], LAYERS[layer_i]
    enc, f, o, k = candidates(layer, arch, n=6, seed=seed)
    sparse = layer.with_density({"weights": dw, "inputs": di})
    batch = evaluate_batch(Encoding.of(sparse, arch), f, o, k)
    for j in range(len(f)):
        m = enc.decode(f[j], o[j], k[j], batch.modes[j])
        dense, c = evaluate(layer, arch, m), evaluate(sparse, arch, m)
        assert 0 < c.utilization <= 1
        # no more than the active lanes' share, for the share of the cycles they compute
        # (dense MACs / (cycles x lanes) breaks this by 1 / (dw x di) where zeros are skipped)
        assert c.utilization <= c.active_pes / arch.pes * c.compute_cycles / c.cycles * (1 + 1e-9)
        assert c.performed_macs <= c.macs
        assert c.performed_macs == pytest.approx(c.macs * (dw * di if arch is V2 else 1.0), rel=1e-12)
        assert c.utilization == utilization(c.performed_macs, int(batch.cycles[j]), arch.pes)
        assert dense.utilization == dense.macs / (dense.cycles * arch.pes)
        assert 0 < dense.utilization <= 1


UTILIZATION_CASES = given(st.sampled_from([0, 1]), st.sampled_from(range(3)), st.integers(0, 10 ** 6),
                          st.floats(0.05, 1.0), st.floats(0.05, 1.0))
test_utilization_is_a_share = settings(max_examples=8, deadline=None)(UTILIZATION_CASES(utilization_is_a_share))
test_utilization_is_a_share_many = pytest.mark.slow(settings(max_examples=40, deadline=None)(
    UTILIZATION_CASES(utilization_is_a_share)))


# Four PEs of two MAC lanes each (8 lanes), skipping zero MACs, no bandwidth limits.
LANES = {"name": "lanes", "mac": {"energy": 1}, "sparsity": {"skip_zero_macs": True}, "levels": [
    {"name": "DRAM", "keeps": list(TENSORS), "energy": 10},
    {"name": "array", "fanout": {"X": 4, "Y": 1}},
    {"name": "rf", "keeps": list(TENSORS), "capacity": 64, "energy": 1},
    {"name": "simd", "fanout": {"X": 2, "Y": 1}, "spatial_dims": {"X": ["M"], "Y": []}}]}


def test_utilization_by_hand():
    """FC M=8, C=16 (128 MACs) on 4 PEs x 2 lanes. With M over all 8 lanes and C temporal
    (16 steps), at densities 0.5 x 0.5 a quarter of the MACs are performed: 32 MACs in
    16 x 0.25 = 4 cycles on 8 lanes, utilization 32 / (4 x 8) = 1 (the dense MAC count
    would give 128 / 32 = 4, "400%"). With M 4 over the PEs and 2 in time on one lane
    each: 32 MACs in 32 x 0.25 = 8 cycles, 32 / (8 x 8) = 0.5, as dense (128 / (32 x 8)).
    Gating instead of skipping keeps the dense cycles and utilization."""
    arch = parse_arch(LANES, "lanes.yaml")
    assert arch.pes == 8 and arch.unit_name == "MAC lanes"
    dense = layer_from_dims("fc", M=8, C=16)
    sparse = dense.with_density({"weights": 0.5, "inputs": 0.5})
    full = normalize([Loop("DRAM", "C", 16), Loop("array", "M", 4, "X"), Loop("simd", "M", 2, "X")], arch)
    half = normalize([Loop("DRAM", "C", 16), Loop("rf", "M", 2), Loop("array", "M", 4, "X")], arch)
    for m, cycles, util in ((full, 4, 1.0), (half, 8, 0.5)):
        c = evaluate(sparse, arch, m)
        assert (c.macs, c.performed_macs, c.cycles) == (128, 32, cycles)
        assert c.utilization == util
        d = evaluate(dense, arch, m)
        assert (d.performed_macs, d.cycles, d.utilization) == (128, 4 * cycles, util)
    gating = parse_arch(dict(LANES, sparsity={"gate_zero_inputs": True}), "gating.yaml")
    c = evaluate(sparse, gating, full)
    assert (c.performed_macs, c.cycles, c.utilization) == (128, 16, 1.0)
    # a network of both layers: all performed MACs over all cycles x lanes (64 / (12 x 8))
    costs = [evaluate(sparse, arch, m) for m in (full, half)]
    assert network_utilization([(c.performed_macs, c.cycles) for c in costs], arch.pes) == pytest.approx(64 / 96)


def test_utilization_clamps_only_rounding_noise():
    """Cycles are rounded with a 1e-9 tolerance for float noise: 100 MACs at densities 0.1 x
    0.1 on one MAC are 100 x 0.010000000000000002 = 1.0000000000000002 performed MACs in
    1 cycle, which is 100%, not a hair above; a real excess stays visible."""
    one = parse_arch({"name": "one", "mac": {"energy": 1}, "sparsity": {"skip_zero_macs": True}, "levels": [
        {"name": "DRAM", "keeps": list(TENSORS), "energy": 10}]}, "one.yaml")
    layer = layer_from_dims("fc", M=1, C=100).with_density({"weights": 0.1, "inputs": 0.1})
    c = evaluate(layer, one, normalize([Loop("DRAM", "C", 100)], one))
    assert c.performed_macs > 1 and c.cycles == 1 and one.pes == 1
    assert c.utilization == 1.0
    assert utilization(1.5, 1, 1) == 1.5


def test_compressed_tile_is_judged_by_its_compressed_size():
    """A 24-word input tile does not fit v2's 16-entry iact spad dense; at density 0.4 it
    takes ceil(24 * 0.4 * 1.5) = 15 words (4-bit count per 8-bit value), or 10 entries where
    the spad counts non-zero entries, and fits. (Address-SPad column limits, where the arch
    has them, are left out: they are about columns, not this capacity.)"""
    arch = dataclasses.replace(V2, levels=tuple(
        dataclasses.replace(l, columns=()) if getattr(l, "columns", ()) else l for l in V2.levels))
    layer = layer_from_dims("l", M=2, C=24, P=2, Q=2)
    loops = [Loop("DRAM", "M", 2), Loop("DRAM", "P", 2), Loop("DRAM", "Q", 2), Loop("iact_spad", "Q", 1),
             Loop("weights_spad", "C", 24)]
    m = normalize(loops, arch)
    problems = problems_of(m, layer, arch)
    assert problems and "iact_spad" in problems[0][0] and "24" in problems[0][1]
    assert problems_of(m, layer.with_density({"inputs": 0.4}), arch) == []


def test_network_modes_trade_reuse_for_bandwidth():
    """Broadcast shares one read among clusters that need the same words (fewest GLB reads)
    but has one port; unicast reads separately for every cluster and has one port each.
    On a copy of eyeriss_v2 whose network offers all four modes for every tensor."""
    fan = V2.level("cluster_array")
    every_mode = tuple((t, ("unicast", "grouped", "interleaved", "broadcast")) for t in TENSORS)
    free = ("N", "G", "M", "C", "P", "Q", "R", "S")
    arch = dataclasses.replace(V2, levels=tuple(
        dataclasses.replace(l, modes=every_mode, x_dims=free) if l is fan else l for l in V2.levels))
    layer = layer_from_dims("l", M=16, C=8, P=4, Q=4)
    loops = [Loop("DRAM", "C", 8), Loop("GLB", "P", 4), Loop("GLB", "Q", 4),
             Loop("cluster_array", "M", 2, "X"), Loop("cluster_array", "M", 8, "Y")]
    costs = {}
    for mode in ("unicast", "grouped", "interleaved", "broadcast"):
        m = normalize(loops, arch, network={"cluster_array": {t: mode for t in TENSORS}})
        costs[mode] = evaluate(layer, arch, m)
    reads = {mode: c.levels["GLB"]["Inputs"].reads for mode, c in costs.items()}
    # the 16 clusters differ only in M, so all need the same inputs
    inputs = 8 * 4 * 4          # C x P x Q (1x1 filter): each input read once per cluster group
    assert reads["broadcast"] == inputs
    assert reads["unicast"] == 16 * inputs
    assert reads["grouped"] == 8 * inputs               # shared along X (2), not along Y (8)
    assert reads["interleaved"] == 2 * inputs
    # port bandwidth: broadcast has one stream of the arch's words/cycle, unicast sixteen
    if hasattr(fan, "bandwidth"):               # per-tensor ports (streams x ports x port words)
        words = fan.bandwidth("Inputs", "broadcast")
    else:
        words = fan.port_words
    assert costs["broadcast"].level_cycles["cluster_array Inputs"] == pytest.approx(inputs / words)
    assert costs["unicast"].level_cycles["cluster_array Inputs"] == pytest.approx(16 * inputs / (16 * words))


def test_batch_picks_the_best_modes_exactly():
    layer = LAYERS[1]
    enc, f, o, k = candidates(layer, V2, n=20, seed=3)
    for objective in ("energy", "delay", "edp"):
        batch = evaluate_batch(enc, f, o, k, objective=objective)
        for j in range(len(f)):
            best = math.inf
            for combo in itertools.product(*[V2.level("cluster_array").modes_of(t) for t in TENSORS]):
                m = enc.decode(f[j], o[j], k[j])
                m = normalize(m.loops, V2, dict(m.keep), {"cluster_array": dict(zip(TENSORS, combo))})
                best = min(best, evaluate(layer, V2, m).objective(objective))
            assert batch.objective(objective)[j] == pytest.approx(best, rel=1e-12)


def test_search_explores_modes():
    # 16 clusters that differ only in M all need the same inputs; by delay the default modes
    # (the last listed, broadcast: one port) are a bottleneck the search must avoid
    layer = layer_from_dims("l", M=16, C=8, P=4, Q=4)
    res = search(layer, V2, objective="delay", workers=1, time_limit=20)
    m = res.best.mapping
    value = res.best.cost.objective("delay")
    assert evaluate(layer, V2, m).cycles == value
    default = evaluate(layer, V2, normalize(m.loops, V2, dict(m.keep))).cycles
    assert value < default
    every = [evaluate(layer, V2, normalize(m.loops, V2, dict(m.keep), {"cluster_array": dict(zip(TENSORS, c))})).cycles
             for c in itertools.product(*[V2.level("cluster_array").modes_of(t) for t in TENSORS])]
    assert value == min(every)


def test_unoffered_mode_is_an_error():
    arch = parse_arch({"name": "a", "mac": {"energy": 1}, "levels": [
        {"name": "DRAM", "keeps": list(TENSORS), "energy": 10},
        {"name": "net", "fanout": {"X": 2, "Y": 1}, "modes": {t: ["unicast", "broadcast"] for t in TENSORS}},
        {"name": "rf", "keeps": list(TENSORS), "capacity": 64, "energy": 1}]}, "a.yaml")
    layer = layer_from_dims("l", M=2, C=2)
    m = normalize([Loop("DRAM", "C", 2), Loop("net", "M", 2, "X")], arch, network={"net": {"Inputs": "grouped"}})
    problems = problems_of(m, layer, arch)
    assert problems and "grouped" in problems[0][1] and "unicast, broadcast" in problems[0][1]


@pytest.mark.parametrize("spec, fragment", [
    ({"sparsity": {"compressed": {"GLB": {"Outputs": 0.5}}}}, "known fields: Weights, Inputs"),
    ({"sparsity": {"compressed": {"DRAM": {"Weights": -1}}}}, "at least"),
    ({"sparsity": {"compressed": {"GLX": {"Inputs": 0.5}}}}, "did you mean 'GLB'"),
    ({"sparsity": {"skip_zero_macs": "yes"}}, "true or false"),
])
def test_sparsity_spec_errors(spec, fragment):
    data = {"name": "a", "mac": {"energy": 1}, "levels": [
        {"name": "DRAM", "keeps": list(TENSORS), "energy": 10},
        {"name": "GLB", "keeps": ["Inputs", "Weights"], "capacity": 64, "energy": 1}], **spec}
    with pytest.raises(SpecError, match=fragment):
        parse_arch(data, "a.yaml")
