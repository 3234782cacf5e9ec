"""The arch-format features Eyeriss v2 as built needs, on small hand-written archs:
per-cycle energy and the chip / off-chip split, the off-chip bandwidth condition, per-tensor
ports at a fan-out, reduction along named axes, a SIMD fan-out below the innermost storage,
cycle skipping only for multi-channel layers, capacities counted in non-zero entries and
address limits on a compressed tile's columns.

Each is checked by a hand-derived case, by scalar model == batch model on sampled
candidates, and (for search) CP-SAT == exhaustive enumeration; parse errors are one line.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import yaml

from mapper.arch import offchip_bandwidth, parse_arch, with_offchip_bandwidth
from mapper.batch import capacity_ok, evaluate_batch
from mapper.mapping import Loop, MappingError, normalize, problems_of
from mapper.model import evaluate
from mapper.problem import layer_from_dims
from mapper.search import search
from mapper.search.bound import lower_bound, usable_pes
from mapper.search.random import sample
from mapper.search.space import Space
from mapper.spec import MapperError, SpecError

# Eyeriss v2's level structure, shrunk, with every new field.
FEATURES = """
name: features
clock_mhz: 200
word_bits: 8
cycle_energy: 3.5
mac: {energy: 0.5}
levels:
  - name: DRAM
    keeps: [Weights, Inputs, Outputs]
    energy: 100.0
    bandwidth: {shared: 4}
  - name: cluster_array
    fanout: {X: 2, Y: 4}
    energy: 2.0
    modes:
      Weights: [unicast, grouped]
      Inputs: [unicast, grouped, interleaved, broadcast]
      Outputs: [unicast, interleaved]
    ports: {Inputs: 3, Weights: 3, Outputs: 4}
    port_words: {Inputs: 0.5, Weights: 1, Outputs: 0.25}
    reduction: [Y]
  - name: GLB
    capacity: {Inputs: 512, Outputs: 256}
    keeps: [Inputs, Outputs]
    energy: 6.0
    bandwidth: {read: 3, write: 3}
  - name: pe_cluster
    fanout: {X: 2, Y: 3}
    energy: 1.5
    reduction: [X]
  - name: iact_spad
    capacity: 16
    capacity_unit: nonzeros
    columns: {Inputs: {max: 4, along: C}}
    keeps: [Inputs]
    energy: 1.0
  - name: weights_spad
    capacity: 48
    capacity_unit: nonzeros
    columns: {Weights: {max: 6, along: M}}
    keeps: [Weights]
    energy: 1.0
  - name: psum_spad
    capacity: 16
    keeps: [Outputs]
    energy: 1.0
  - name: simd
    fanout: {X: 2, Y: 1}
    spatial_dims: {X: [M], Y: []}
sparsity:
  skip_zero_macs: true
  skip_cycles: multi_channel
  compressed:
    DRAM: {Weights: 0.5, Inputs: 0.5}
    GLB: {Inputs: 0.5}
    iact_spad: {Inputs: 0.5}
    weights_spad: {Weights: 0.5}
"""

# A 2 x 2 network between DRAM and one buffer per child, for hand-derived counts.
TOY = """
name: toy
mac: {energy: 1.0}
levels:
  - name: DRAM
    keeps: [Weights, Inputs, Outputs]
    energy: 10.0
  - name: noc
    fanout: {X: 2, Y: 2}
    modes: {Inputs: [unicast, broadcast], Weights: [unicast], Outputs: [unicast]}
    ports: {Inputs: 2}
    port_words: {Inputs: 0.25}
    reduction: [X]
  - name: pe
    keeps: [Weights, Inputs, Outputs]
    energy: 1.0
"""


def arch_from(text: str, **top):
    data = yaml.safe_load(text)
    data.update(top)
    return parse_arch(data, "<test>")


def with_level(text: str, level: str, **fields):
    data = yaml.safe_load(text)
    for lv in data["levels"]:
        if lv["name"] == level:
            lv.update(fields)
    return data


def error_of(data) -> str:
    with pytest.raises(SpecError) as info:
        parse_arch(data, "a.yaml")
    message = str(info.value)
    assert "\n" not in message and message.startswith("a.yaml: ")
    return message


# ---------------------------------------------------------------------------------------
# Parsing

def test_new_fields_parse():
    arch = arch_from(FEATURES)
    fan = arch.level("cluster_array")
    assert arch.cycle_energy == 3.5
    assert fan.reduction == ("Y",) and fan.reduces("Y") and not fan.reduces("X")
    assert dict(fan.port_counts) == {"Inputs": 3, "Weights": 3, "Outputs": 4}
    # streams(unicast) = 8 clusters; 8 x 3 ports x 0.5 words
    assert fan.bandwidth("Inputs", "unicast") == 12.0
    assert fan.bandwidth("Outputs", "interleaved") == 2 * 4 * 0.25
    assert arch.level("pe_cluster").bandwidth("Inputs", None) is None
    assert arch.pes == 2 * 4 * 2 * 3 * 2
    assert arch.sparsity.nonzero_capacity == ("iact_spad", "weights_spad")
    assert arch.sparsity.skip_cycles == "multi_channel"
    assert arch.level("weights_spad").columns == (("Weights", 6, "M"),)
    # the defaults keep the old format's meaning
    plain = arch_from(TOY)
    assert plain.cycle_energy == 0.0 and plain.level("noc").reduction == ("X",)
    assert parse_arch(with_level(TOY, "noc", reduction=True), "x").level("noc").reduction == ("X", "Y")
    assert parse_arch(with_level(TOY, "noc", reduction=False), "x").level("noc").reduction == ()
    scalar = parse_arch(with_level(TOY, "noc", port_words=3, ports=None), "x").level("noc")
    assert scalar.bandwidth("Weights", "unicast") == 4 * 1 * 3


@pytest.mark.parametrize("change, needle", [
    (lambda d: d.update(cycle_energy=-1), "cycle_energy: must be at least 0"),
    (lambda d: d.update(cycle_energy="lots"), "cycle_energy: expected a number"),
    (lambda d: d["levels"][1].update(reduction=["Z"]), "levels[1].reduction: expected true, false or a list of"),
    (lambda d: d["levels"][1].update(reduction=["Y", "Y"]), "levels[1].reduction: expected true, false or a list of distinct axes"),
    (lambda d: d["levels"][0].update(capacity_unit="nonzeros"), "levels[0].capacity_unit: the outermost level has no capacity"),
    (lambda d: d["levels"][1].update(ports={"Inputs": 0}), "levels[1].ports.Inputs: must be at least 1"),
    (lambda d: d["levels"][1].update(ports={"Iacts": 2}), "levels[1].ports.Iacts: unknown field"),
    (lambda d: d["levels"][1].update(port_words={"Inputs": -2}), "levels[1].port_words.Inputs: must be at least"),
    (lambda d: d["levels"][1].pop("port_words"), "levels[1].ports: ports need port_words"),
    (lambda d: d["levels"][2].update(capacity_unit="bytes"), "levels[2].capacity_unit: 'bytes' is not one of"),
    (lambda d: d.update(sparsity={"skip_cycles": "multi_channel"}), "sparsity.skip_cycles: needs skip_zero_macs"),
    (lambda d: d["levels"][2].update(columns={"Inputs": {"max": 4, "along": "P"}}),
     "levels[2].columns.Inputs.along: 'P' is not one of N, G, C"),
    (lambda d: d["levels"][2].update(columns={"Inputs": {"max": 4}}), "levels[2].columns.Inputs.along: missing"),
    (lambda d: d["levels"][0].update(columns={"Inputs": {"max": 4, "along": "C"}}),
     "levels[0].columns: the outermost level holds whole tensors"),
    (lambda d: d.update(sparsity={"skip_zero_macs": True, "skip_cycles": "sometimes"}),
     "sparsity.skip_cycles: 'sometimes' is not one of"),
])
def test_bad_fields_are_one_line_errors(change, needle):
    data = yaml.safe_load(TOY)
    change(data)
    assert needle in error_of(data)


# ---------------------------------------------------------------------------------------
# Hand-derived cases on the toy

LAYER = layer_from_dims("fc", M=2, C=6)


def toy_mapping(arch, inputs_mode: str, c_axis: str = "X"):
    m_axis = "Y" if c_axis == "X" else "X"
    loops = [Loop("noc", "C", 2, c_axis), Loop("noc", "M", 2, m_axis), Loop("pe", "C", 3)]
    return normalize(loops, arch, None, {"noc": {"Inputs": inputs_mode, "Weights": "unicast",
                                                 "Outputs": "unicast"}})


def test_ports_bound_cycles_per_mode():
    """Each of the 4 children holds 3 inputs (C 6 split 2 ways on X; M on Y repeats them).
    unicast: no sharing, 4 x 3 = 12 words over 4 streams x 2 ports x 0.25 words = 2 words
    per cycle -> 6 cycles. broadcast: the two rows share reads, 2 x 3 = 6 words over
    1 stream x 2 ports x 0.25 = 0.5 words per cycle -> 12 cycles. Compute: C 3 = 3 cycles."""
    arch = arch_from(TOY)
    uni = evaluate(LAYER, arch, toy_mapping(arch, "unicast"))
    bro = evaluate(LAYER, arch, toy_mapping(arch, "broadcast"))
    assert uni.compute_cycles == bro.compute_cycles == 3
    assert uni.level_cycles["noc Inputs"] == 6.0 and uni.cycles == 6
    assert bro.level_cycles["noc Inputs"] == 12.0 and bro.cycles == 12
    assert "noc Weights" not in uni.level_cycles      # no port_words for Weights: unlimited
    assert uni.bottleneck() == ("noc Inputs", 6.0)


def test_reduction_only_along_named_axes():
    arch = arch_from(TOY)
    assert problems_of(toy_mapping(arch, "unicast", c_axis="X"), LAYER, arch) == []
    bad = toy_mapping(arch, "unicast", c_axis="Y")
    with pytest.raises(MappingError, match=r"dim C unrolled on Y would need spatial reduction of Outputs "
                                           r"along Y.*\(reduction: \['X'\]\)"):
        evaluate(LAYER, arch, bad)
    # the search space never offers it either
    space = Space.build(LAYER, arch)
    y_slot = space.enc.slots.index((arch.index("noc"), "Y"))
    f, o, k = sample(space, np.random.default_rng(0), 2000)
    assert (f[:, y_slot, 3] == 1).all() and (f[:, y_slot + 1 - 2, 3] > 1).any()     # dim C (index 3)


def test_cycle_energy_and_the_chip_offchip_split():
    """cycle_energy adds cycles x value; off-chip energy is DRAM's accesses; chip energy
    is the rest."""
    base = arch_from(TOY)
    clocked = arch_from(TOY, cycle_energy=2.5)
    m = toy_mapping(base, "unicast")
    a, b = evaluate(LAYER, base, m), evaluate(LAYER, clocked, m)
    assert b.cycles == a.cycles == 6
    assert b.energy_pj == pytest.approx(a.energy_pj + 2.5 * 6)
    assert b.cycle_pj == 15.0 and a.cycle_pj == 0.0
    assert b.offchip_pj == a.offchip_pj == sum(c.energy_pj for c in b.levels["DRAM"].values())
    # DRAM reads: weights 12 (each of the 4 children its own 1 x 3), inputs 12 (unicast:
    # 4 x 3), and outputs: unicast merges no partial sums in the network, so each child
    # writes its one output back: 4 updates -> (12 + 12 + 4) x 10 pJ
    assert b.offchip_pj == 280.0
    assert b.chip_energy_pj == pytest.approx(b.energy_pj - 280.0)
    doc = b.to_dict()
    assert doc["chip_energy_pj"] + doc["offchip_energy_pj"] == pytest.approx(doc["energy_pj"])
    assert doc["cycle_energy_pj"] == 15.0


def test_offchip_bandwidth_condition():
    arch = arch_from(FEATURES)
    assert offchip_bandwidth(arch) == {"shared": 4.0}
    free = with_offchip_bandwidth(arch, None)
    assert offchip_bandwidth(free) == "unlimited" and free.describe()["offchip_bandwidth"] == "unlimited"
    two = with_offchip_bandwidth(arch, 2)
    assert two.describe()["offchip_bandwidth"] == {"shared": 2.0}
    assert arch.levels[0].shared_bw == 4.0           # the original is unchanged (frozen copies)
    with pytest.raises(MapperError, match="off-chip bandwidth: must be a positive number"):
        with_offchip_bandwidth(arch, 0)
    # 8 bytes per cycle of 8-bit words = 8 words; of 16-bit words (the toy's default) = 4
    assert offchip_bandwidth(with_offchip_bandwidth(arch, 8, unit="bytes")) == {"shared": 8.0}
    assert offchip_bandwidth(with_offchip_bandwidth(arch_from(TOY), 8, unit="bytes")) == {"shared": 4.0}
    # a tighter limit never lowers the cycles of a mapping
    layer = layer_from_dims("pw", M=8, C=8, P=4, Q=4)
    space = Space.build(layer, arch)
    f, o, k = sample(space, np.random.default_rng(3), 3000)
    ok = space.valid(f, k)
    for j in np.nonzero(ok)[0][:20]:
        m = space.enc.decode(f[j], o[j], k[j])
        c_free, c_two = evaluate(layer, free, m), evaluate(layer, two, m)
        assert c_free.cycles <= c_two.cycles
        assert c_free.level_cycles["DRAM"] == 0.0


def test_skip_cycles_only_for_multi_channel_layers():
    """multi_channel: a depthwise layer (1 input channel per group) keeps its dense cycles
    (energy still scales); a 1x1 layer's cycles scale by density_w x density_i."""
    arch = arch_from(FEATURES)
    always = parse_arch(dict(yaml.safe_load(FEATURES), sparsity={"skip_zero_macs": True}), "x")
    for layer, skips in ((layer_from_dims("dw", G=4, P=4, Q=4, R=3, S=3), False),
                         (layer_from_dims("pw", M=4, C=4, P=4, Q=4), True)):
        sparse = layer.with_density({"weights": 0.5, "inputs": 0.5})
        loops = [Loop("DRAM", d, n) for d, n in layer.dims.items() if n > 1]
        for a in (arch, always):
            m = normalize(loops, a)
            dense, thin = evaluate(layer, a, m), evaluate(sparse, a, m)
            expect = math.ceil(dense.compute_cycles * (0.25 if skips or a is always else 1.0))
            assert thin.compute_cycles == expect, (layer.name, a.name)
            assert thin.mac_pj == pytest.approx(dense.mac_pj * 0.25)


def test_capacity_in_nonzero_entries():
    """iact_spad holds 16 entries. A tile of 24 inputs at density 0.6: 15 non-zeros fit;
    counted as compressed words, 24 x min(1, 0.6 x 1.5) = 21.6 -> 22 words do not."""
    layer = layer_from_dims("conv", M=2, C=24, P=1, Q=1).with_density({"weights": 1.0, "inputs": 0.6})
    nonzeros = arch_from(FEATURES)
    words = parse_arch(with_level(FEATURES, "iact_spad", capacity_unit="words"), "x")
    loops = [Loop("iact_spad", "C", 24), Loop("psum_spad", "M", 2)]
    for arch, fits in ((nonzeros, True), (words, False)):
        m = normalize(loops, arch)
        text = " ".join(msg for _, msg in problems_of(m, layer, arch))
        assert (text == "") == fits, text
        if not fits:
            assert "iact_spad" in str(problems_of(m, layer, arch)) and "22 words" in text
        enc = Space.build(layer, arch).enc
        f, o, k = enc.encode(m)
        assert bool(capacity_ok(enc, f[None], k[None])[0]) == fits


def test_columns_bound_the_tile_shape():
    """weights_spad holds at most 6 CSC columns along M: a tile of M 2 x C 3 x S 2 has
    12 / 2 = 6 columns and fits; C 3 x S 3 (9 columns) does not, whatever its density."""
    arch = arch_from(FEATURES)
    layer = layer_from_dims("conv", M=2, C=3, P=3, Q=1, R=1, S=3)
    for s_inside, fits in ((1, True), (3, False)):
        loops = [Loop("DRAM", "S", 3 // s_inside), Loop("DRAM", "P", 3), Loop("weights_spad", "C", 3),
                 Loop("psum_spad", "M", 2)]
        if s_inside > 1:
            loops.insert(3, Loop("weights_spad", "S", s_inside))
        m = normalize(loops, arch)
        problems = problems_of(m, layer, arch)
        if fits:
            assert problems == []
        else:
            assert problems == [("level weights_spad", "tiles need 9 columns (Weights columns along M) but the "
                                 "capacity is 6 (over by 3)")]
        enc = Space.build(layer, arch).enc
        f, o, k = enc.encode(m)
        assert bool(capacity_ok(enc, f[None], k[None])[0]) == fits


def test_valid_agrees_with_problems_of_with_new_fields():
    arch = arch_from(FEATURES)
    seen, columns = {True: 0, False: 0}, 0
    for layer in BATCH_LAYERS.values():
        layer = layer.with_density({"weights": 0.5, "inputs": 0.7})
        space = Space.build(layer, arch)
        f, o, k = sample(space, np.random.default_rng(5), 400)
        valid = space.valid(f, k)
        for j in range(len(f)):
            problems = problems_of(space.enc.decode(f[j], o[j], k[j]), layer, arch)
            assert (problems == []) == bool(valid[j]), problems
            seen[bool(valid[j])] += 1
            columns += any("columns" in msg for _, msg in problems)
    assert seen[True] > 20 and seen[False] > 20 and columns > 20


def test_simd_fanout_below_the_innermost_storage():
    """Two MAC lanes share one input read (M on the simd fan-out): iact_spad reads halve and
    weight reads stay, against the same loops run temporally at psum_spad."""
    arch = arch_from(FEATURES)
    layer = layer_from_dims("pw", M=2, C=4)
    simd = evaluate(layer, arch, normalize([Loop("DRAM", "C", 4), Loop("simd", "M", 2, "X")], arch))
    serial = evaluate(layer, arch, normalize([Loop("DRAM", "C", 4), Loop("psum_spad", "M", 2)], arch))
    assert simd.active_pes == 2 and serial.active_pes == 1
    assert simd.compute_cycles == 4 and serial.compute_cycles == 8
    assert simd.levels["iact_spad"]["Inputs"].reads == 4 and serial.levels["iact_spad"]["Inputs"].reads == 8
    assert simd.levels["weights_spad"]["Weights"].reads == serial.levels["weights_spad"]["Weights"].reads == 8
    # a depthwise layer has no M to put there
    dw = layer_from_dims("dw", G=4, P=4, Q=4, R=3, S=3)
    space = Space.build(dw, arch)
    slot = space.enc.slots.index((arch.index("simd"), "X"))
    f, _, _ = sample(space, np.random.default_rng(1), 500)
    assert (f[:, slot] == 1).all()
    # ... and the analytic bound knows: simd holds nothing of dw, and pe_cluster's 3-wide Y
    # (no reduction: N, G, M, P, Q) holds at most 2 of G 4, P 4, Q 4 (factors divide the
    # bounds): cluster 2 x 4, pe_cluster X 2 x Y 2
    assert usable_pes(dw, arch) == 2 * 4 * 2 * 2
    # M 2 x C 4 only: each axis alone could hold cluster X (no reduction: M) 2, Y 4, pe_cluster
    # X 2, Y (no reduction: M) 2, simd 2, but M's factors over all axes multiply to at most 2
    # and C's to 4: at most 8 MAC units, one per MAC
    assert usable_pes(layer, arch) == 2 * 4 == layer.macs


# ---------------------------------------------------------------------------------------
# Scalar == batch, and the bound, on sampled candidates

BATCH_LAYERS = {
    "conv": layer_from_dims("conv", M=8, C=4, P=6, Q=6, R=3, S=3),
    "dw": layer_from_dims("dw", G=8, P=6, Q=6, R=3, S=3, stride=(2, 1)),
    "pw": layer_from_dims("pw", M=16, C=8, P=4, Q=4),
}


@pytest.mark.parametrize("density", [None, (0.6, 0.7)], ids=["dense", "sparse"])
@pytest.mark.parametrize("name", list(BATCH_LAYERS))
def test_batch_equals_scalar_with_new_fields(name, density):
    arch = arch_from(FEATURES)
    layer = BATCH_LAYERS[name]
    if density:
        layer = layer.with_density({"weights": density[0], "inputs": density[1]})
    space = Space.build(layer, arch)
    f, o, k = sample(space, np.random.default_rng(11), 6000)
    ok = space.valid(f, k)
    f, o, k = f[ok][:150], o[ok][:150], k[ok][:150]
    assert len(f) >= 100
    batch = evaluate_batch(space.enc, f, o, k, with_counts=True)
    energy_lb, cycles_lb, _ = lower_bound(layer, arch)
    simd_used = 0
    for j in range(len(f)):
        m = space.enc.decode(f[j], o[j], k[j], batch.modes[j])
        cost = evaluate(layer, arch, m)
        assert batch.energy_pj[j] == pytest.approx(cost.energy_pj, rel=1e-12), j
        assert batch.cycles[j] == cost.cycles and batch.compute_cycles[j] == cost.compute_cycles, j
        assert cost.energy_pj >= energy_lb * (1 - 1e-12) and cost.cycles >= cycles_lb
        simd_used += any(l.level == "simd" for l in m.loops)
    assert (simd_used > 0) == (name != "dw")


# ---------------------------------------------------------------------------------------
# CP-SAT decides the new choices exactly

TINY = copy.deepcopy(yaml.safe_load(FEATURES))
for _lv in TINY["levels"]:
    if _lv["name"] == "cluster_array":
        _lv["fanout"] = {"X": 2, "Y": 2}
    if _lv["name"] == "pe_cluster":
        _lv["fanout"] = {"X": 2, "Y": 1}
    if _lv["name"] == "GLB":
        _lv["capacity"] = {"Inputs": 64, "Outputs": 32}


PW = layer_from_dims("pw", M=4, C=4, P=2, Q=2).with_density({"weights": 0.5, "inputs": 0.8})
DW = layer_from_dims("dw", G=4, P=2, Q=2, R=3, S=1)


# the sparse pointwise layer's exhaustive search is the slow part: EDP (energy and cycles
# together) in the fast tier, energy and delay alone in the slow tier
@pytest.mark.parametrize("layer,objective", [
    pytest.param(PW, "energy", marks=pytest.mark.slow, id="pw-energy"),
    pytest.param(PW, "delay", marks=pytest.mark.slow, id="pw-delay"),
    pytest.param(PW, "edp", marks=pytest.mark.slow, id="pw-edp"),
    pytest.param(DW, "energy", id="dw-energy"),
    pytest.param(DW, "delay", id="dw-delay"),
    pytest.param(DW, "edp", id="dw-edp")])
def test_cpsat_matches_exhaustive_with_new_fields(layer, objective):
    arch = parse_arch(TINY, "<tiny>")
    exact = search(layer, arch, algorithm="exhaustive", objective=objective)
    res = search(layer, arch, algorithm="cpsat", objective=objective)
    best = exact.best.cost.objective(objective)
    assert problems_of(res.best.mapping, layer, arch) == []
    assert res.best.cost.objective(objective) == pytest.approx(best, rel=1e-9)
    assert res.status == "optimal"
    assert res.bound <= best * (1 + 1e-9)


def test_space_keeps_tiles_that_fit_only_compressed():
    """The per-dimension capacity pruning counts a tile as stored: 16 inputs at density 0.5
    are 8 non-zero entries and fit a 10-entry spad, so C 16 inside it stays in the space
    (dense words, 16 > 10, would prune the only valid factorization). Dense, it is gone."""
    arch = parse_arch(yaml.safe_load("""
name: spad
mac: {energy: 1.0}
levels:
  - {name: DRAM, keeps: [Weights, Inputs, Outputs], energy: 10.0}
  - {name: spad, keeps: [Inputs], capacity: 10, capacity_unit: nonzeros, energy: 1.0, temporal_dims: [C]}
  - {name: reg, keeps: [Weights, Outputs], energy: 1.0}
sparsity: {skip_zero_macs: true, compressed: {spad: {Inputs: 0.5}}}
"""), "<spad>")
    for density, present in ((0.5, True), (1.0, False)):
        layer = layer_from_dims("fc", M=2, C=16).with_density({"weights": 1.0, "inputs": density})
        space = Space.build(layer, arch)
        c = list(space.enc.storage_slot)[1]                  # spad's temporal slot
        options = space.factorizations[3]                    # dim C
        at_spad = options[:, space.dim_slots[3].index(c)]
        assert (16 in at_spad) == present
        m = normalize([Loop("DRAM", "M", 2), Loop("spad", "C", 16)], arch)
        assert (problems_of(m, layer, arch) == []) == present
