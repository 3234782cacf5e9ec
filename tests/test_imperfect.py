"""Mappings with remainders (imperfect factorization): the format, exact counts, errors.

A loop's factor is its number of steps; the tile it steps over is the product of the
factors inside it on the same dimension, clipped at the layer's end (mapper.mapping). The
model (mapper.model._Remainders) must match the literal loop-nest oracle, which iterates
only the iterations inside the layer, exactly on random imperfect mappings over both
Eyeriss level structures; hand-derived cases pin one remainder of each kind.
"""
from __future__ import annotations

import random
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import yaml

from mapper.arch import load_arch
from mapper.batch import Encoding
from mapper.mapping import Loop, Mapping, dim_plan, loop_nest_text, normalize, parse_mapping, problems_of
from mapper.model import evaluate
from mapper.problem import DIMS, layer_from_dims, load_network
from mapper.spec import MapperError, SpecError

from imperfect_gen import random_imperfect_mapping
from oracle import Conventions, simulate
from test_oracle import ARCHS, CASES, arch_of, describe, differences, layer_of, mappings_for

ROOT = Path(__file__).resolve().parent.parent

#: Odd sizes (primes, 5 and 7) so that most splits leave remainders.
SHAPES = {
    "odd": dict(M=3, C=3, P=5, Q=3, R=3, S=2),
    "stride2": dict(stride=(2, 2), M=3, C=2, P=5, Q=3, R=3, S=2),
    "depthwise": dict(G=5, C=1, M=1, P=5, Q=3, R=3, S=3),
    "dilation2": dict(dilation=(2, 1), M=2, C=3, P=5, Q=3, R=2, S=3),
    "fc": dict(N=3, M=7, C=5),
}
V1 = [a for a in ARCHS if a.startswith("v1")]
V2 = [a for a in ARCHS if a.startswith("v2")]


@lru_cache(maxsize=None)
def imperfect_mappings(arch_name: str, shape: str, n: int) -> tuple:
    """n distinct random imperfect mappings, reproducibly (seeded per case)."""
    layer, arch = layer_from_dims(shape, **SHAPES[shape]), arch_of(arch_name)
    rng = random.Random(f"imperfect/{arch_name}/{shape}")
    seen, out = set(), []
    for _ in range(20 * n):
        m = random_imperfect_mapping(layer, arch, rng)
        if m is not None and m.key() not in seen:
            seen.add(m.key())
            out.append(m)
            if len(out) == n:
                break
    return tuple(out)


def compare(arch_names, per_case: int) -> tuple[int, list[str], dict]:
    checked, failures, events = 0, [], {}
    for a in arch_names:
        for shape in SHAPES:
            layer, arch = layer_from_dims(shape, **SHAPES[shape]), arch_of(a)
            for m in imperfect_mappings(a, shape, per_case):
                assert not m.is_perfect(layer)
                ref = simulate(layer, arch, m)
                for k, v in ref.events.items():
                    events[k] = events.get(k, 0) + v
                diff = differences(layer, arch, m, ref)
                checked += 1
                if diff:
                    failures.append(describe(layer, arch, m) + "\n    " + "\n    ".join(diff))
    return checked, failures, events


@pytest.mark.parametrize("family", ["v1", "v2"])
def test_model_matches_oracle_on_imperfect_mappings(family):
    """Fast tier: one mapping per (arch variant, shape)."""
    checked, failures, events = compare(V1 if family == "v1" else V2, 1)
    assert checked >= 15
    assert not failures, "\n".join(failures[:5])
    # the sample exercises multicast, reduction and sliding windows over partial tiles
    assert events.get("multicast") and events.get("reduction") and events.get("sliding:Inputs")


@pytest.mark.slow
def test_model_matches_oracle_on_300_imperfect_mappings():
    """Slow tier: at least 300 random imperfect mappings over both Eyeriss level structures."""
    checked_v1, fail_v1, _ = compare(V1, 8)
    checked_v2, fail_v2, _ = compare(V2, 4)
    assert checked_v1 >= 100 and checked_v2 >= 150 and checked_v1 + checked_v2 >= 300
    assert not fail_v1 + fail_v2, "\n".join((fail_v1 + fail_v2)[:5])


def test_remainder_counting_equals_perfect_counting_on_perfect_mappings(monkeypatch):
    """The remainder path (sums over actual tiles, grouped per step) gives the perfect path's
    numbers when nothing is partial: the two formulations agree where both apply."""
    maps = [(a, s, m) for a, s in CASES[::4] for m in mappings_for(a, s)[:2]]
    perfect = [evaluate(layer_of(s), arch_of(a), m).to_dict() for a, s, m in maps]
    monkeypatch.setattr(Mapping, "is_perfect", lambda self, layer: False)
    forced = [evaluate(layer_of(s), arch_of(a), m).to_dict() for a, s, m in maps]
    assert len(maps) >= 20
    assert forced == perfect


def test_per_step_grouping_in_the_oracle_equals_sequence_grouping_on_perfect_mappings():
    for a, s in CASES[::6]:
        for m in mappings_for(a, s)[:2]:
            ref = simulate(layer_of(s), arch_of(a), m, Conventions(per_step=True))
            assert not differences(layer_of(s), arch_of(a), m, ref), describe(layer_of(s), arch_of(a), m)


# ---------------------------------------------------------------------------------------
# Hand-derived remainder cases (small Eyeriss v1 structure: array 3 x 2, unbounded spads)

def counts(cost, level, tensor):
    c = cost.levels[level][tensor]
    return c.reads, c.fills, c.updates


def both(layer, arch, loops):
    m = normalize([Loop(*l) for l in loops], arch)
    assert not problems_of(m, layer, arch), problems_of(m, layer, arch)
    cost, ref = evaluate(layer, arch, m), simulate(layer, arch, m)
    assert not differences(layer, arch, m, ref)
    return m, cost


def test_spatial_remainder_idles_pes_in_the_last_pass():
    """P = 5 over 3 PE columns: 2 passes, the second on P 3-4 with PE column 2 idle.
    MACs 5 (not 6), compute cycles 2, active PEs 3. Weights (1 word) multicast: GLB reads 1
    (one read serves the 3 PEs), each PE's spad is filled once: 3. Inputs (stride 1, row =
    p): each PE fetches its row per pass: 3 + 2 = 5 spad fills, 5 distinct GLB reads; DRAM
    serves the GLB tiles P 0-2 (3 rows) and P 3-4 (2): 5. Outputs: every (PE, pass) writes
    one new output back to the GLB: 5 updates; the GLB writes its tiles (3 + 2) to DRAM: 5."""
    layer, arch = layer_from_dims("p5", P=5), arch_of("v1")
    m, cost = both(layer, arch, [("DRAM", "P", 2), ("array", "P", 3, "X")])
    assert cost.macs == 5 and cost.compute_cycles == 2 and cost.active_pes == 3
    assert counts(cost, "GLB", "Weights")[0] == 1
    assert counts(cost, "weights_spad", "Weights")[1] == 3
    assert counts(cost, "ifmap_spad", "Inputs")[1] == 5
    assert counts(cost, "GLB", "Inputs")[0] == 5
    assert counts(cost, "DRAM", "Inputs")[0] == 5
    assert counts(cost, "GLB", "Outputs")[2] == 5
    assert counts(cost, "DRAM", "Outputs")[2] == 5
    assert cost.utilization == pytest.approx(5 / (cost.cycles * arch.pes))


def test_temporal_remainder_on_two_levels():
    """P = 7 as DRAM P 2 (tiles of 4) x GLB P 2 (tiles of 2) x weights_spad P 2: in the
    second DRAM pass (P 4-6) the GLB loop steps over 4-5 and 6, and the spad loop runs once
    on 6. Inputs (R = 1, row = p) at the GLB: 4 + 3 = 7 words from DRAM; at ifmap_spad
    (above weights_spad, so its tile holds the spad loop's 2 rows): tiles 2, 2, 2, 1 = 7.
    Outputs go to DRAM once per GLB tile: 4 + 3 = 7. Weights (1 word) are fetched once per
    level. The print shows each loop's step and its last pass."""
    layer, arch = layer_from_dims("p7", P=7), arch_of("v1")
    m, cost = both(layer, arch, [("DRAM", "P", 2), ("GLB", "P", 2), ("weights_spad", "P", 2)])
    assert counts(cost, "DRAM", "Inputs")[0] == 7 and counts(cost, "GLB", "Inputs")[1] == 7
    assert counts(cost, "ifmap_spad", "Inputs")[1] == 7
    assert counts(cost, "DRAM", "Outputs")[2] == 7
    assert counts(cost, "weights_spad", "Weights")[1] == 1
    assert cost.compute_cycles == 7
    plan = dim_plan(m, layer, "P")
    assert (plan.factors, plan.steps, plan.residual, plan.last) == ((2, 2, 2), (4, 2, 1), (2, 2, 1), (3, 1, 1))
    text = loop_nest_text(m, layer, arch)
    assert "for P in [0:7) step 4 (2 steps, last 3)" in text
    assert "for P in [0:4) step 2 (2 steps, 2 in the last pass, the last of them 1)" in text
    assert "for P in [0:2) step 1 (2 steps, 1 in the last pass)" in text


def test_partial_input_tile_has_a_partial_halo():
    """P = 5, R = 3 (7 input rows) with DRAM P 2 over GLB tiles of P 3 and R 3 below: the
    first GLB tile spans rows 0-4 (3 + 3 - 1), the second (P 3-4) rows 3-6, 4 rows, not the
    nominal 5. The step is of the innermost relevant loop, so the rows held (3-4) stay:
    fetch 4 - 2 = 2. DRAM Inputs reads = GLB fills = 5 + 2 = 7 = every row once; the
    largest GLB input tile is the nominal one, 5 words."""
    layer, arch = layer_from_dims("halo", P=5, R=3), arch_of("v1")
    m, cost = both(layer, arch, [("DRAM", "P", 2), ("ifmap_spad", "P", 3), ("ifmap_spad", "R", 3)])
    assert counts(cost, "DRAM", "Inputs")[0] == 7 and counts(cost, "GLB", "Inputs")[1] == 7
    from mapper.mapping import tile_words
    assert tile_words(m, layer, arch, "GLB", "Inputs") == 5


def test_chip_mapping_alexnet_conv1_55_rows_on_14_columns():
    """AlexNet conv1 on Eyeriss v1 with its 55 output rows in 4 passes over the 14 PE
    columns (the last on 13): 14 x 11 = 154 PEs active (a divisor of 55 allows at most
    11 x 11 = 121 for P on X with R on Y), and the MACs are the layer's, not 56/55 more."""
    arch = load_arch("eyeriss_v1")
    layer = load_network("alexnet").layer("conv1")
    loops = [("DRAM", "M", 32), ("DRAM", "P", 4), ("GLB", "C", 3), ("GLB", "Q", 55),
             ("array", "P", 14, "X"), ("array", "R", 11, "Y"), ("weights_spad", "S", 11), ("psum_spad", "M", 3)]
    m = normalize([Loop(*l) for l in loops], arch)
    assert not problems_of(m, layer, arch)
    cost = evaluate(layer, arch, m)
    assert cost.active_pes == 154 and cost.macs == layer.macs
    # compute cycles: 32 x 4 x 3 x 55 x 11 x 3 temporal steps (every pass does work)
    assert cost.compute_cycles == 32 * 4 * 3 * 55 * 11 * 3
    assert "for P in [0:55) step 14 (4 steps, last 13)" in loop_nest_text(m, layer, arch)
    # the remainder pass reads fewer inputs than a padded 56-row layer would
    padded = layer_from_dims("padded", C=3, M=96, P=56, Q=55, R=11, S=11, stride=(4, 4))
    pm = normalize([Loop(*l) for l in loops], arch)
    assert counts(cost, "DRAM", "Inputs")[0] < counts(evaluate(padded, arch, pm), "DRAM", "Inputs")[0]


# ---------------------------------------------------------------------------------------
# The format: files, result documents, other paths

def test_mapping_file_round_trip_and_result_document(tmp_path):
    arch = load_arch("eyeriss_v1")
    loops = [{"level": "DRAM", "dim": "M", "factor": 32}, {"level": "DRAM", "dim": "P", "factor": 4},
             {"level": "GLB", "dim": "C", "factor": 3}, {"level": "GLB", "dim": "Q", "factor": 55},
             {"level": "array", "dim": "P", "factor": 14, "spatial": "X"},
             {"level": "array", "dim": "R", "factor": 11, "spatial": "Y"},
             {"level": "weights_spad", "dim": "S", "factor": 11}, {"level": "psum_spad", "dim": "M", "factor": 3}]
    m = parse_mapping({"loops": loops}, arch, "m.yaml")
    assert parse_mapping(m.to_dict(), arch, "again") == m
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"loops": loops}))
    out = tmp_path / "r.json"
    res = cli("evaluate", "-a", "eyeriss_v1", "-p", "alexnet", "-l", "conv1", "-m", path, "--json", out)
    assert res.returncode == 0, res.stderr
    assert "for P in [0:55) step 14 (4 steps, last 13)" in res.stdout and "154/168 PEs active" in res.stdout
    doc = yaml.safe_load(out.read_text())
    assert parse_mapping(doc, arch, "r.json") == m
    # evaluating the result document again gives the same cost
    again = cli("evaluate", "-a", "eyeriss_v1", "-p", "alexnet", "-l", "conv1", "-m", out)
    assert again.returncode == 0 and again.stdout.splitlines()[-2:] == res.stdout.splitlines()[-2:]
    # Timeloop export refuses (timeloop-model rejects imperfect factors in a mapping file)
    exp = cli("export", "timeloop", out, "-o", tmp_path / "map.yaml")
    assert exp.returncode == 2 and len(exp.stderr.splitlines()) == 1
    assert "remainders" in exp.stderr and "P 56 for 55" in exp.stderr
    assert not (tmp_path / "map.yaml").exists()


def batch_of(layer, arch, mappings, objective="edp"):
    from mapper.batch import evaluate_batch
    enc = Encoding.of(layer, arch)
    rows = [enc.encode(m) for m in mappings]
    f, o, k = (np.stack([r[i] for r in rows]) for i in range(3))
    modes = np.stack([enc.encode_modes(m) for m in mappings])
    return enc, evaluate_batch(enc, f, o, k, modes, objective=objective, with_counts=True)


@pytest.mark.parametrize("family", ["v1", pytest.param("v2", marks=pytest.mark.slow)])
def test_batch_counts_remainder_mappings_exactly(family):
    """The batch (mapper.batch, remainder rows via mapper.remainder_batch) equals the model
    on the imperfect samples, access counts included, mixed with perfect mappings."""
    checked = 0
    for a in (V1 if family == "v1" else V2):
        for shape in SHAPES:
            layer, arch = layer_from_dims(shape, **SHAPES[shape]), arch_of(a)
            from test_oracle import random_mapping
            rng = random.Random(f"batch/{a}/{shape}")
            perfect = [m for m in (random_mapping(layer, arch, rng) for _ in range(3)) if m is not None]
            maps = list(imperfect_mappings(a, shape, 2)) + perfect[:1]
            maps = [m for m in maps if not problems_of(m, layer, arch)]
            if not maps:
                continue
            enc, cost = batch_of(layer, arch, maps)
            for i, m in enumerate(maps):
                ref = evaluate(layer, arch, m)
                assert cost.energy_pj[i] == pytest.approx(ref.energy_pj, rel=1e-12)
                assert cost.cycles[i] == ref.cycles and cost.compute_cycles[i] == ref.compute_cycles
                for si, li in enumerate(enc.storage_levels):
                    for ti, t in enumerate(("Weights", "Inputs", "Outputs")):
                        c = ref.levels[arch.levels[li].name].get(t)
                        want = (c.reads, c.fills, c.updates) if c else (0, 0, 0)
                        assert tuple(cost.counts[i, si, ti]) == pytest.approx(want, rel=1e-12)
                checked += not m.is_perfect(layer)
    assert checked >= 10


def test_batch_and_cpsat_on_mappings_with_remainders():
    layer, arch = layer_from_dims("p5", P=5), arch_of("v1")
    m = normalize([Loop("DRAM", "P", 2), Loop("array", "P", 3, "X")], arch)
    _, cost = batch_of(layer, arch, [m])
    assert cost.energy_pj[0] == pytest.approx(evaluate(layer, arch, m).energy_pj, rel=1e-12)
    assert cost.cycles[0] == evaluate(layer, arch, m).cycles
    # CP-SAT's options are perfect factorizations: pinning a remainder candidate is refused
    from mapper.search.cpsat import pinned
    from mapper.search.space import Space
    space = Space.build(layer, arch)
    enc = Encoding.of(layer, arch)
    f, o, k = enc.encode(normalize([Loop("DRAM", "P", 5)], arch))
    f[enc.slots.index((2, "X")), DIMS.index("P")] = 3      # DRAM P 5 -> with array X P 3 ...
    f[0, DIMS.index("P")] = 2                               # ... DRAM P 2: 6 for 5
    with pytest.raises(ValueError, match="not an option"):
        pinned(space, "edp", f, o, k)


# ---------------------------------------------------------------------------------------
# Errors: one clear line each

def cli(*args):
    return subprocess.run([sys.executable, "-m", "mapper", *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


CONV1 = [("DRAM", "M", 32, None), ("DRAM", "P", 4, None), ("GLB", "C", 3, None), ("GLB", "Q", 55, None),
         ("array", "P", 14, "X"), ("array", "R", 11, "Y"), ("weights_spad", "S", 11, None),
         ("psum_spad", "M", 3, None)]


def with_loops(replace: dict, extra=()) -> list:
    out = []
    for lv, d, f, s in CONV1:
        if (lv, d) in replace:
            if replace[lv, d] is None:
                continue
            f = replace[lv, d]
        out.append({"level": lv, "dim": d, "factor": f, "spatial": s})
    # extra loops go after the last loop of their level (loops are listed outermost first)
    for lv, d, f, s in extra:
        at = max((i + 1 for i, loop in enumerate(out) if loop["level"] == lv), default=len(out))
        out.insert(at, {"level": lv, "dim": d, "factor": f, "spatial": s})
    return out


@pytest.mark.parametrize("replace,extra,fragments", [
    ({("DRAM", "P"): 0}, (), ["loops[1].factor", "must be at least 1, got 0"]),
    ({("DRAM", "P"): -4}, (), ["loops[1].factor", "must be at least 1, got -4"]),
    ({("DRAM", "P"): 3}, (), ["dim P", "multiply to 42", "P = 55", "do not cover"]),
    ({("DRAM", "P"): 5}, (), ["level DRAM", "dim P factor 5", "starts at 56", "more than once", "use factor 4"]),
    ({("DRAM", "P"): None, ("array", "P"): None}, (("GLB", "P", 60, None),),
     ["level GLB", "dim P factor 60", "more than once", "use factor 55"]),
    ({("array", "P"): 15, ("DRAM", "P"): 4}, (), ["level array", "X factors multiply to 15", "has 14"]),
])
def test_remainder_mapping_errors(tmp_path, replace, extra, fragments):
    assert_one_line(tmp_path, with_loops(replace, extra), "conv1", fragments)


def test_capacity_is_checked_on_the_largest_tile(tmp_path):
    """AlexNet conv3 (M 384) with psum_spad M 25 under DRAM M 16: tiles of 25 and a last of
    384 - 15 x 25 = 9; the 25 words exceed the 24-word psum spad."""
    loops = [("DRAM", "M", 16, None), ("DRAM", "C", 64, None), ("GLB", "Q", 13, None),
             ("array", "P", 13, "X"), ("array", "R", 3, "Y"), ("array", "C", 4, "Y"),
             ("weights_spad", "S", 3, None), ("psum_spad", "M", 25, None)]
    data = [{"level": lv, "dim": d, "factor": f, "spatial": s} for lv, d, f, s in loops]
    assert_one_line(tmp_path, data, "conv3", ["level psum_spad", "25 words", "capacity is 24"])
    data[-1]["factor"], data[0]["factor"] = 24, 16        # 16 x 24 = 384: fits
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump({"loops": data}))
    assert cli("evaluate", "-a", "eyeriss_v1", "-p", "alexnet", "-l", "conv3", "-m", path).returncode == 0


def assert_one_line(tmp_path, loops, layer, fragments):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"loops": loops}))
    res = cli("evaluate", "-a", "eyeriss_v1", "-p", "alexnet", "-l", layer, "-m", path)
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.splitlines()
    assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def test_nonpositive_factor_built_in_code_is_reported():
    layer, arch = layer_from_dims("p5", P=5), arch_of("v1")
    m = Mapping(loops=(Loop("DRAM", "P", -1),), keep=normalize([], arch).keep)
    assert any("factor -1" in msg and "at least 1" in msg for _, msg in problems_of(m, layer, arch))


def test_result_for_other_sizes_is_not_taken_for_remainders(tmp_path):
    """AlexNet conv3's result (M 384 = 24 x 16) read back for a conv3 with M 380: 24 x 16
    would cover 380 with a remainder, but the document says it was found for M 384."""
    loops = [("DRAM", "M", 24, None), ("DRAM", "C", 16, None), ("GLB", "Q", 13, None),
             ("array", "P", 13, "X"), ("array", "R", 3, "Y"), ("array", "C", 4, "Y"),
             ("weights_spad", "C", 4, None), ("weights_spad", "S", 3, None), ("psum_spad", "M", 16, None)]
    path, out = tmp_path / "m.yaml", tmp_path / "r.json"
    path.write_text(yaml.safe_dump({"loops": [{"level": lv, "dim": d, "factor": f, "spatial": s}
                                              for lv, d, f, s in loops]}))
    assert cli("evaluate", "-a", "eyeriss_v1", "-p", "alexnet", "-l", "conv3", "-m", path, "--json", out).returncode == 0
    net = tmp_path / "net.yaml"
    net.write_text("name: net\nlayers:\n  - {name: conv3, type: conv, C: 256, M: 380, H: 13, W: 13, R: 3, S: 3, "
                   "pad: 1}\n")
    res = cli("evaluate", "-a", "eyeriss_v1", "-p", net, "-l", "conv3", "-m", out)
    lines = res.stderr.splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert "layer.dims" in lines[0] and "M 384" in lines[0] and "multiply to those sizes" in lines[0]
    # the plain mapping file (no recorded sizes) is read as a mapping with remainders
    ok = cli("evaluate", "-a", "eyeriss_v1", "-p", net, "-l", "conv3", "-m", path)
    assert ok.returncode == 0 and "for M in [0:380) step 16 (24 steps, last 12)" in ok.stdout


@pytest.mark.parametrize("family", ["v1", pytest.param("v2", marks=pytest.mark.slow)])
def test_numpy_remainder_sums_equal_the_models(family, monkeypatch):
    """mapper.remainder_batch.FastRemainders (numpy per-group sums, forced for every group
    here) gives the model's numbers on the imperfect samples, network modes included."""
    from mapper.remainder_batch import FastRemainders
    monkeypatch.setattr(FastRemainders, "SMALL", 0)
    checked = 0
    for a in (V1 if family == "v1" else V2):
        for shape in SHAPES:
            layer, arch = layer_from_dims(shape, **SHAPES[shape]), arch_of(a)
            for m in imperfect_mappings(a, shape, 2):
                want = evaluate(layer, arch, m).to_dict()
                got = evaluate(layer, arch, m, remainders=FastRemainders).to_dict()
                assert got == want, describe(layer, arch, m)
                checked += 1
    assert checked >= 15
