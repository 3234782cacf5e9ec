"""Eyexam (`mapper.eyexam`): the seven step bounds, their monotonicity, and the aggregation.

Expected values are derived here independently: MACs and the dataflow bound by hand from
the layer shapes and the arch files' spatial_dims; the PE-count and array-shape bounds by a
brute force over divisors written below (not the module's branch and bound); the
storage-capacity bound of a toy arch from its buffer size by hand; step 7 from a separate
call of `search` with the same settings; the network aggregate by hand from made-up
per-layer bounds.
"""
from __future__ import annotations

import itertools
import json
import math
from functools import lru_cache

import pytest
import yaml

import mapper
from mapper.arch import load_arch, parse_arch
from mapper.eyexam import (EyexamResult, array_bound, dataflow_bound, eyexam, format_network, format_table,
                           load_json, network_eyexam, network_summary, pe_bound, save_json, smallest_tiles,
                           _exact_capacity_check)
from mapper.mapping import problems_of
from mapper.model import evaluate
from mapper.problem import DIMS, layer_from_dims, load_network
from mapper.result import inputs_sha256
from mapper.search import search
from mapper.spec import MapperError

TL = 30   # seconds per search (far above what these layers need: results do not depend on it)

# A two-level toy arch: a 2 x 3 network without spatial reduction (so C and R may not be
# unrolled there) above a small buffer and a 4 x 4 array. With buf at 8 words, capacity
# limits the array.
TOY = """
name: toy
mac: {energy: 1.0}
levels:
  - {name: DRAM, keeps: [Weights, Inputs, Outputs], energy: 100.0, bandwidth: {read: 4, write: 4}}
  - name: noc
    fanout: {X: 2, Y: 3}
    spatial_dims: {X: [M, C], Y: [P, R]}
    reduction: false
  - {name: buf, capacity: BUF, keeps: [Weights, Inputs, Outputs], energy: 5.0, bandwidth: {read: 8, write: 8}}
  - name: pes
    fanout: {X: 4, Y: 4}
    spatial_dims: {X: [P], Y: [M, C]}
  - {name: reg, capacity: 4, keeps: [Weights, Inputs, Outputs], energy: 1.0}
"""


@lru_cache(maxsize=None)
def arch_of(name: str):
    if name.startswith("toy"):
        buf = name.split("_")[1]
        return parse_arch(yaml.safe_load(TOY.replace("BUF", buf)), name)
    return load_arch(name)


LAYERS = {
    "tiny": lambda: layer_from_dims("tiny", M=8, C=4, P=6, Q=6, R=3, S=3),
    "toy": lambda: layer_from_dims("toy", M=4, C=6, P=6, Q=4, R=3, S=1),
    "conv3": lambda: load_network("alexnet").layer("conv3"),
    "dw13": lambda: load_network("mobilenet_v1").layer("dw13"),
}


@lru_cache(maxsize=None)
def layer_of(name: str):
    return LAYERS[name]()


@lru_cache(maxsize=None)
def result_of(arch: str, layer: str, objective: str = "edp") -> EyexamResult:
    return eyexam(layer_of(layer), arch_of(arch), objective=objective, time_limit=TL)


# AlexNet conv3 (three full searches) runs in the slow tier
CONV3 = pytest.param("eyeriss_v1", "conv3", marks=pytest.mark.slow, id="eyeriss_v1-conv3")
CASES = [("eyeriss_v1", "tiny"), CONV3, ("eyeriss_v2", "dw13"), ("toy_8", "toy"), ("toy_64", "toy")]


# ---------------------------------------------------------------------------------------
# Independent brute force over divisors (steps 3 and 4)

def divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


def slot_options(layer, dims_allowed, cap):
    """Every {dim: factor} with factors dividing the dims and product <= cap."""
    dims = [d for d in dims_allowed if layer.dims[d] > 1]
    out = []
    for combo in itertools.product(*(divisors(layer.dims[d]) for d in dims)):
        if math.prod(combo) <= cap:
            out.append(dict(zip(dims, combo)))
    return out


def brute_force(layer, slots):
    """slots: list of (allowed dims, capacity). Max total product over choices whose per-dim
    products divide the dim sizes."""
    best = 0
    for choice in itertools.product(*(slot_options(layer, dims, cap) for dims, cap in slots)):
        per_dim = {d: 1 for d in DIMS}
        for c in choice:
            for d, f in c.items():
                per_dim[d] *= f
        if all(layer.dims[d] % per_dim[d] == 0 for d in DIMS):
            best = max(best, math.prod(per_dim.values()))
    return best


def allowed(fan, dims):
    return [d for d in dims if fan.reduction or d in "NGMPQ"]


def brute_step3(layer, arch):
    return brute_force(layer, [(sorted(set(allowed(f, f.x_dims)) | set(allowed(f, f.y_dims))), f.X * f.Y)
                               for f in arch.fanouts])


def brute_step4(layer, arch):
    slots = []
    for f in arch.fanouts:
        slots += [(allowed(f, f.x_dims), f.X), (allowed(f, f.y_dims), f.Y)]
    return brute_force(layer, slots)


# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch,layer", CASES)
def test_steps_are_non_increasing_and_consistent(arch, layer):
    r = result_of(arch, layer)
    bounds = r.bounds
    assert len(bounds) == 7 and all(b > 0 for b in bounds)
    assert all(b2 <= b1 for b1, b2 in zip(bounds, bounds[1:])), bounds
    for prev, s in zip([None] + list(r.steps), r.steps):
        if prev is None:
            assert s.loss == 0 and s.bound == s.raw_bound
            continue
        assert s.bound == min(s.raw_bound, prev.bound)
        assert s.clamped == (s.raw_bound > prev.bound)
        assert ("clamped" in s.note) == s.clamped
        assert s.loss == pytest.approx(prev.bound - s.bound)
        assert s.loss_pct == pytest.approx(100 * (prev.bound - s.bound) / prev.bound)
    # the shares of the peak lost add up to the utilization not reached
    pes = arch_of(arch).pes
    assert sum(s.peak_loss_pct for s in r.steps) == pytest.approx(100 * (1 - bounds[-1] / pes))
    assert [s.status for s in r.steps[:4]] == [None] * 4
    assert all(s.status in ("optimal", "feasible", "budget") for s in r.steps[4:])


@pytest.mark.parametrize("arch,layer", CASES)
def test_step1_is_the_layer_macs(arch, layer):
    expected = {"tiny": 8 * 4 * 6 * 6 * 3 * 3, "toy": 4 * 6 * 6 * 4 * 3,
                "conv3": 256 * 384 * 13 * 13 * 3 * 3, "dw13": 1024 * 7 * 7 * 3 * 3}[layer]
    assert result_of(arch, layer).step(1).bound == expected
    assert result_of(arch, layer).macs == expected


@pytest.mark.slow
def test_step2_dataflow_by_hand():
    # Eyeriss v1: X dims P, M, N, G and Y dims R, C, M, G: Q and S are only temporal.
    conv3 = layer_of("conv3")
    assert conv3.Q == 13 and conv3.S == 3
    assert result_of("eyeriss_v1", "conv3").step(2).bound == 149_520_384 / (13 * 3) == 3_833_856
    assert "Q and S cannot be unrolled" in result_of("eyeriss_v1", "conv3").step(2).note
    assert result_of("eyeriss_v1", "tiny").step(2).bound == 10368 / (6 * 3)
    # Eyeriss v2's fan-outs allow every dimension: nothing is serialized.
    assert result_of("eyeriss_v2", "dw13").step(2).bound == 1024 * 7 * 7 * 3 * 3
    # The toy: R is only allowed on noc, which has no spatial reduction, and Q nowhere.
    assert dataflow_bound(layer_of("toy"), arch_of("toy_8")) == (4 * 6 * 6, ("Q", "R"))
    assert result_of("toy_8", "toy").step(2).bound == 4 * 6 * 6


@pytest.mark.parametrize("arch,layer", CASES)
def test_steps_3_and_4_match_a_brute_force(arch, layer):
    L, A = layer_of(layer), arch_of(arch)
    r = result_of(arch, layer)
    s3, s4 = brute_step3(L, A), brute_step4(L, A)
    assert r.step(3).bound == min(s3, r.step(2).bound)
    assert r.step(4).bound == min(s4, r.step(3).bound)
    # the reported assignments achieve the bound and respect the arch
    b3, spatial3 = pe_bound(L, A)
    b4, spatial4 = array_bound(L, A)
    assert (b3, b4) == (s3, s4)
    assert math.prod(f for slot in spatial3.values() for f in slot.values()) == b3
    assert math.prod(f for slot in spatial4.values() for f in slot.values()) == b4
    for fan in A.fanouts:
        assert math.prod(spatial3[fan.name].values()) <= fan.X * fan.Y
        for axis, size, dims in (("X", fan.X, fan.x_dims), ("Y", fan.Y, fan.y_dims)):
            factors = spatial4[f"{fan.name}.{axis}"]
            assert math.prod(factors.values()) <= size
            assert set(factors) <= set(allowed(fan, dims))
    for d in DIMS:
        used = math.prod(slot.get(d, 1) for slot in spatial4.values())
        assert L.dims[d] % used == 0


def test_steps_3_and_4_by_hand_on_conv3_bounds():
    # AlexNet conv3 on Eyeriss v1: the best product <= 168 of divisors of P=13, M=384, C=256,
    # R=3 is 13 x 12 = 156 (168 = 8 x 3 x 7 needs a 7), and 13 fits X (14), 12 fits Y (12).
    # The bounds alone (the whole Eyexam of conv3, three full searches, is in the slow tier).
    L, A = layer_of("conv3"), arch_of("eyeriss_v1")
    assert pe_bound(L, A)[0] == 156 and array_bound(L, A)[0] == 156


@pytest.mark.slow
def test_steps_3_and_4_by_hand_on_conv3():
    assert result_of("eyeriss_v1", "conv3").step(3).bound == 156
    assert result_of("eyeriss_v1", "conv3").step(4).bound == 156


def test_steps_3_and_4_by_hand():
    # The toy: noc takes M 2 x P 3; the array, per fan-out, M 2 x C 6 = 12 (P 2 x M 2 x C 4
    # is not a divisor split); per axis X may only hold P (2 left) and Y M 2 x C 2.
    assert result_of("toy_8", "toy").step(3).bound == 6 * 12
    assert result_of("toy_8", "toy").step(4).bound == 6 * 2 * 4


def test_step5_capacity_by_hand():
    # With everything temporal outside, buf (8 words) holds the tiles below the 4 x 4 array:
    # Weights m*c, Inputs c*p, Outputs m*p for pes factors p (X), m, c (Y); noc adds M 2 x P 3
    # at most. Best: p=2, m=2, c=1 (2+2+4 = 8 words): 6 x 4 = 24 PEs.
    best = 0
    for m1, p1 in itertools.product((1, 2), (1, 3)):
        for p2, m2, c2 in itertools.product(divisors(6), divisors(4), divisors(6)):
            if p2 > 4 or m2 * c2 > 4 or 6 % (p1 * p2) or 4 % (m1 * m2):
                continue
            if m2 * c2 + c2 * p2 + m2 * p2 <= 8:
                best = max(best, m1 * p1 * p2 * m2 * c2)
    assert best == 24
    r = result_of("toy_8", "toy")
    assert r.step(4).bound == 48
    assert r.step(5).bound == best
    assert r.step(5).note.startswith("buf capacity")
    assert set(r.step(5).detail["exact_check"]["overflowing"]) == {"buf"}
    # with a 64-word buf nothing is lost at step 5
    assert result_of("toy_64", "toy").step(5).bound == result_of("toy_64", "toy").step(4).bound
    assert "no loss" in result_of("toy_64", "toy").step(5).note


def test_exact_capacity_check_and_smallest_tiles():
    L, A = layer_of("toy"), arch_of("toy_8")
    (pes, m), blocked, tried, complete = _exact_capacity_check(L, A, 1)
    assert pes == 24 and complete and tried >= 1 and set(blocked) == {"buf"}
    assert problems_of(m, L, A) == []
    cost = evaluate(L, A, m)
    assert cost.active_pes == 24 and cost.compute_cycles == L.macs // 24
    # the 48-PE assignment of step 4 does not fit buf even with its smallest tiles
    _, spatial4 = array_bound(L, A)
    m48 = smallest_tiles(L, A, spatial4)
    assert any(field == "level buf" for field, _ in problems_of(m48, L, A))
    assert _exact_capacity_check(L, A, 24)[0] is None


@pytest.mark.parametrize("arch,layer", CASES)
def test_steps_5_6_7_ordered_and_from_the_mappings(arch, layer):
    r = result_of(arch, layer)
    s5, s6, s7 = r.step(5), r.step(6), r.step(7)
    assert s5.raw_bound >= s6.raw_bound >= s7.raw_bound
    assert not (s5.clamped or s6.clamped or s7.clamped)
    macs = layer_of(layer).macs
    assert s5.bound == macs / s5.detail["compute_cycles"] == s5.detail["active_pes"]
    assert s6.bound == macs / s6.detail["cycles"]
    assert s7.bound == macs / s7.detail["cycles"]
    assert s6.detail["cycles"] <= s7.detail["cycles"]
    # the mappings recorded are the ones measured
    A, L = arch_of(arch), layer_of(layer)
    for s in (s5, s6, s7):
        m = mapper.parse_mapping(s.detail["mapping"], A, "test")
        assert evaluate(L, A, m).cycles == s.detail["cycles"]


@pytest.mark.parametrize("arch,layer", [("eyeriss_v1", "tiny"), CONV3, ("eyeriss_v2", "dw13")])
def test_step7_equals_the_search_with_the_same_settings(arch, layer):
    r = result_of(arch, layer)
    res = search(layer_of(layer), arch_of(arch), algorithm="hybrid", objective="edp", seed=0, workers=1,
                 time_limit=TL)
    assert r.step(7).bound == layer_of(layer).macs / res.best.cost.cycles
    assert r.step(7).status == res.status


def test_delay_objective_step7_is_step6():
    r = result_of("eyeriss_v1", "tiny", "delay")
    assert r.step(7).bound == r.step(6).bound
    assert r.step(7).constraint == "best delay mapping"


def test_bad_settings_are_user_errors():
    with pytest.raises(MapperError, match="objective"):
        eyexam(layer_of("tiny"), arch_of("eyeriss_v1"), objective="compute")
    with pytest.raises(MapperError, match="algorithm"):
        eyexam(layer_of("tiny"), arch_of("eyeriss_v1"), algorithm="magic")


# ---------------------------------------------------------------------------------------
# Network aggregation

def fake(name, macs, bounds, pes=100):
    steps = [{"step": k, "constraint": f"c{k}", "bound": b, "note": ""} for k, b in enumerate(bounds, start=1)]
    return EyexamResult.from_dict({"layer": {"name": name, "macs": macs}, "arch": {"name": "a", "pes": pes},
                                   "settings": {"objective": "edp"}, "steps": steps, "inputs_sha256": "x"})


def test_network_summary_by_hand():
    a = fake("a", 100, [100, 50, 10, 10, 5, 5, 5])
    b = fake("b", 300, [300, 300, 30, 20, 20, 10, 10])
    s = network_summary([a, b])
    # total MACs / sum of per-layer cycles (MACs / bound):
    # step 1: 400 / (1 + 1); 2: 400 / (2 + 1); 3: 400 / (10 + 10); 4: 400 / (10 + 15);
    # 5: 400 / (20 + 15); 6: 400 / (20 + 30); 7: the same.
    expected = [200, 400 / 3, 20, 16, 400 / 35, 8, 8]
    assert [st["bound"] for st in s["steps"]] == pytest.approx(expected)
    assert s["steps"][3]["loss"] == pytest.approx(4) and s["steps"][3]["loss_pct"] == pytest.approx(20)
    # against the peak (100): step 3 loses 100 - 20 = 80, the most.
    assert [st["peak_loss_pct"] for st in s["steps"]] == pytest.approx([0, 0, 80, 4, 16 - 400 / 35, 400 / 35 - 8, 0])
    assert s["biggest_loss"]["step"] == 3
    assert s["macs"] == 400 and s["layers"] == 2
    # the layer adding the most cycles at step 6 is b: 300/10 - 300/20 = +15 (a: +0)
    assert s["steps"][5]["note"] == "most cycles added by b (+15 cycles)"
    marked = [line for line in format_network(s).splitlines() if line.startswith("=>  ")]
    assert len(marked) == 1 and marked[0].split()[1] == "3"


@pytest.mark.slow
def test_network_eyexam_reuses_identical_layers(monkeypatch):
    import mapper.eyexam as module
    L = layer_of("tiny")
    from dataclasses import replace
    twin = replace(L, name="twin")
    other = layer_from_dims("small", M=4, C=2, P=4, Q=4, R=3, S=3)
    examined = []
    real = module.eyexam
    monkeypatch.setattr(module, "eyexam", lambda layer, *a, **k: examined.append(layer.name) or real(layer, *a, **k))
    rs = network_eyexam([L, twin, other], arch_of("eyeriss_v1"), time_limit=TL)
    assert [r.layer_name for r in rs] == ["tiny", "twin", "small"]
    assert examined == ["tiny", "small"]       # the twin is examined once, its result reused
    assert rs[0].steps == rs[1].steps
    assert rs[0].bounds == result_of("eyeriss_v1", "tiny").bounds
    s = network_summary(rs)
    total = L.macs * 2 + other.macs
    for k in range(7):
        assert s["steps"][k]["bound"] == pytest.approx(
            total / (2 * L.macs / rs[0].steps[k].bound + other.macs / rs[2].steps[k].bound))


# ---------------------------------------------------------------------------------------
# JSON and text

# the second result of the network file: one already examined in the fast tier; conv3's
# (three full searches, ~30 s) in the slow tier
@pytest.mark.parametrize("second", [("toy_8", "toy"), pytest.param(("eyeriss_v1", "conv3"), marks=pytest.mark.slow)],
                         ids=["toy", "conv3"])
def test_json_round_trip(tmp_path, second):
    r = result_of("eyeriss_v1", "tiny")
    d = r.to_dict()
    for key in ("version", "inputs_sha256", "layer", "arch", "settings", "steps"):
        assert key in d
    L, A = layer_of("tiny"), arch_of("eyeriss_v1")
    assert d["inputs_sha256"] == inputs_sha256(L, A, d["settings"])
    assert d["layer"] == L.describe() and d["arch"] == A.describe()
    assert d["settings"]["objective"] == "edp" and d["settings"]["time_limit"] == TL
    assert EyexamResult.from_dict(json.loads(json.dumps(d))) == r
    save_json(tmp_path / "one.json", r)
    assert load_json(tmp_path / "one.json") == r
    rs = [r, result_of(*second)]
    save_json(tmp_path / "net.json", rs)
    assert load_json(tmp_path / "net.json") == rs
    assert [p.name for p in tmp_path.iterdir()] and not list(tmp_path.glob(".*tmp"))


def test_bad_json_names_the_file(tmp_path):
    with pytest.raises(MapperError, match="missing.json"):
        load_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(MapperError, match="bad.json"):
        load_json(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"cost": {}}')
    with pytest.raises(MapperError, match="other.json.*not an Eyexam result"):
        load_json(tmp_path / "other.json")
    good = result_of("eyeriss_v1", "tiny").to_dict()
    zero = json.loads(json.dumps(good))
    zero["steps"][3]["bound"] = 0          # plots divide by bounds
    (tmp_path / "zero.json").write_text(json.dumps(zero))
    with pytest.raises(MapperError, match="zero.json.*positive"):
        load_json(tmp_path / "zero.json")
    nopes = json.loads(json.dumps(good))
    del nopes["arch"]["pes"]
    (tmp_path / "nopes.json").write_text(json.dumps(nopes))
    with pytest.raises(MapperError, match="nopes.json.*pes"):
        load_json(tmp_path / "nopes.json")


def test_format_table_marks_the_biggest_loss():
    r = result_of("eyeriss_v1", "tiny")
    text = format_table(r)
    head = text.splitlines()[2]
    for col in ("step", "constraint", "bound MACs/cycle", "loss", "loss %", "note"):
        assert col in head
    big = r.biggest_loss
    marked = [line for line in text.splitlines() if line.startswith("=>  ")]
    assert len(marked) == 1 and marked[0].split()[1] == str(big)
    # tiny on Eyeriss v1 (10,368 MACs): 144 PEs fit (X: P6 x M2 = 12 <= 14, Y: R3 x C4 = 12);
    # DRAM must read at least the 8*4*9 = 288 weights and 4*8*8 = 256 inputs, 544 words at
    # 2 words/cycle (arch/eyeriss_v1.yaml) = 272 cycles, so 10368 / 272 MACs/cycle.
    assert r.step(5).bound == pytest.approx(144)
    assert r.step(6).bound == pytest.approx(10368 / 272)
    # against the peak of 168 MACs/cycle, step 3 loses 168 - 144 = 24 and step 6 loses
    # 144 - 38.1 = 105.9, the most
    assert r.step(3).bound == pytest.approx(144)
    assert big == 6 and "DRAM read bandwidth: 2 words/cycle binds" in r.step(6).note


def test_steps_name_a_matmuls_dimensions_as_the_user_does():
    # a matmul's K is our C, its N our M and its M our N: the notes must print the user's
    # names (with ours in brackets), not bare conv letters that mean something else here
    import re
    from mapper.eyexam.steps import array_step, pe_step
    from mapper.problem import parse_matmul
    layer = parse_matmul({"name": "mm", "type": "matmul", "M": 64, "N": 32, "K": 48}, "mm.yaml", "")
    arch = load_arch("eyeriss_v1")
    for step in (pe_step(layer, arch), array_step(layer, arch)):
        named = set(re.findall(r"([A-Za-z]+(?: \([A-Z]\))?) \d+(?: x|;|\)| =|$)", step.note)) - {"of"}
        assert named, step.note
        assert set(named) <= {"M (N)", "N (M)", "K (C)"}, step.note
