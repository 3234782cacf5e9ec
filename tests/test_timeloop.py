"""Timeloop interoperability (mapper/timeloop.py) checked against timeloop-model's own output.

Every expected number comes from Timeloop's Eyeriss-like example (tests/timeloop_reference.py
holds its facts as data and writes them in Timeloop's format): the figures timeloop-model
printed for the two reference mappings, the ERT, and the arch/problem files (arithmetic
written out in this file). None is copied from our code's output.

Energy: timeloop-model charges ceil(per-instance scalar accesses / words per access) vector
accesses per action, times the energy per vector access, times the utilized instances; we
charge per word (energy per action / words per access). `rounding_difference` computes the
expected difference from the stats file and the ERT alone; the tests assert that our energy
plus that difference equals Timeloop's, level by level and in total. Its size (asserted
below, computed by hand from the stats):
  alexnet_conv1:   0.5 vector each at shared_glb Inputs reads (1,648,020 / 8 words) and
                   fills (694,620 / 8) and DRAM Inputs reads (694,620 / 8):
                   0.5 x (18.183829 + 14.137929 + 512) = 272.161 pJ of 309,268,702.8 pJ (8.8e-7).
  default_problem: every per-instance count divides evenly by its vector width (e.g. shared_glb
                   Inputs fills 156,600 / 8 = 19,575): 0 pJ.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import timeloop_reference as reference

from mapper.arch import Fanout, Storage, load_arch, parse_arch
from mapper.mapping import Mapping, normalize, tile_words
from mapper.model import evaluate
from mapper.problem import parse_network
from mapper.result import document
from mapper.spec import SpecError
from mapper.timeloop import (arch_from_timeloop, export_result, is_timeloop_mapping, mapping_from_timeloop,
                             mapping_to_timeloop, mapping_yaml, problem_dims, problem_from_timeloop,
                             write_arch, write_problem)

EXAMPLES = {name: problem for name, (problem, _) in reference.EXAMPLES.items()}


@dataclass(frozen=True)
class Ref:
    """The reference inputs written in Timeloop's format (tests/timeloop_reference.py)."""

    root: Path

    arch = property(lambda self: self.root / "eyeriss_like.arch.yaml")
    ert = property(lambda self: self.root / "eyeriss_like.ERT.yaml")
    art = property(lambda self: self.root / "eyeriss_like.ART.yaml")
    constraints = property(lambda self: self.root / "eyeriss_like.constraints.yaml")


@pytest.fixture(scope="module")
def ref(tmp_path_factory) -> Ref:
    return Ref(reference.write_reference(tmp_path_factory.mktemp("timeloop")))


# ---------------------------------------------------------------------------------------
# timeloop-model's figures

def ert_energies(ref: Ref) -> dict[str, dict[str, float]]:
    """Energy per action (pJ per vector access) by level name, read back from the ERT file."""
    data = yaml.safe_load(ref.ert.read_text())
    out = {}
    for table in data["ERT"]["tables"]:
        name = re.match(r".*\.([A-Za-z_]+)\[", table["name"]).group(1)
        out[name] = {a["name"]: float(a["energy"]) for a in table["actions"]}
    return out


def timeloop_total(stats: dict) -> float:
    """Timeloop's total energy: the per-tensor totals + leakage + MACs, as printed."""
    total = stats["mac"]["energy_total"]
    for level in stats["levels"].values():
        total += sum(t["energy_total"] for t in level["tensors"].values())
        total += level["leakage_total"]
    return total


def rounding_difference(stats: dict, ert: dict) -> dict[tuple[str, str], float]:
    """Timeloop's energy minus a per-word model's, per (level, tensor): each action's
    per-instance count rounded up to whole vectors of `block` words."""
    out = {}
    for name, level in stats["levels"].items():
        b = level["block"]
        for t, c in level["tensors"].items():
            e = ert[name]
            diff = 0.0
            for count, action in ((c["reads"], "read"), (c["fills"], "write"), (c["updates"], "update")):
                diff += (math.ceil(count / b) - count / b) * e[action] * c["instances"]
            out[name, t] = diff
    return out


# ---------------------------------------------------------------------------------------
# Fixtures

@pytest.fixture(scope="module")
def arch(ref):
    data, _ = arch_from_timeloop(ref.arch, ref.ert, ref.constraints, name="timeloop_eyeriss_like")
    return parse_arch(data, str(ref.arch))


def layer_of(ref: Ref, problem: str):
    path = ref.root / "problems" / f"{problem}.yaml"
    return parse_network(problem_from_timeloop(path), str(path)).layers[0]


@pytest.fixture(scope="module", params=sorted(EXAMPLES))
def example(request, ref, arch):
    name = request.param
    layer = layer_of(ref, EXAMPLES[name])
    mapping = mapping_from_timeloop(ref.root / "examples" / name / "map.yaml", arch, layer)
    stats = reference.stats(name)
    return name, layer, mapping, evaluate(layer, arch, mapping), stats


# ---------------------------------------------------------------------------------------
# Our model vs timeloop-model on the reference mappings

def test_recorded_figures_are_timeloops_own(example):
    name, layer, _, _, stats = example
    assert set(stats["levels"]) == {"psum_spad", "weights_spad", "ifmap_spad", "shared_glb", "DRAM"}
    assert stats["mac"]["computes"] == stats["computes"] == layer.macs
    # Timeloop's own totals agree with each other (printed rounding only).
    total = timeloop_total(stats)
    assert total / 1e6 == pytest.approx(stats["energy_uj"], abs=0.006)
    assert total / stats["computes"] * 1e3 == pytest.approx(stats["total_fj_per_compute"], abs=0.006)


def test_reads_fills_updates_match_timeloop_exactly(example):
    name, layer, mapping, cost, stats = example
    checked = 0
    for level, info in stats["levels"].items():
        for t, c in info["tensors"].items():
            ours = cost.levels[level][t]
            n = c["instances"]
            assert (ours.reads, ours.fills, ours.updates) == (c["reads"] * n, c["fills"] * n, c["updates"] * n), \
                f"{name} {level} {t}"
            checked += 1
    # Every tensor our mapping keeps somewhere is in the stats, and nothing else.
    assert checked == sum(len(ts) for ts in cost.levels.values()) == 8


def test_tile_sizes_match_timeloop_utilized_capacity(example, arch):
    name, layer, mapping, _, stats = example
    for level, info in stats["levels"].items():
        for t, c in info["tensors"].items():
            assert tile_words(mapping, layer, arch, level, t) == c["capacity"], f"{name} {level} {t}"


def test_cycles_and_utilization_match_timeloop_exactly(example, arch):
    name, layer, mapping, cost, stats = example
    assert cost.cycles == stats["cycles"]
    assert cost.active_pes == stats["mac"]["utilized"]
    assert arch.pes == stats["mac"]["instances"] == 168
    assert round(100 * cost.utilization, 2) == stats["utilization_pct"]


def test_energy_matches_timeloop_up_to_vector_rounding(example, ref):
    name, layer, mapping, cost, stats = example
    ert = ert_energies(ref)
    diff = rounding_difference(stats, ert)
    for (level, t), d in diff.items():
        expected = stats["levels"][level]["tensors"][t]["energy_total"]
        assert cost.levels[level][t].energy_pj + d == pytest.approx(expected, abs=0.006), f"{name} {level} {t}"
    leak = sum(l["leakage_total"] for l in stats["levels"].values())
    assert cost.leakage_pj == pytest.approx(leak, abs=0.03)
    assert cost.mac_pj == pytest.approx(stats["mac"]["energy_total"], abs=0.006)
    total = timeloop_total(stats)
    size = sum(diff.values())
    assert cost.energy_pj + size == pytest.approx(total, abs=0.05)
    # The documented sizes (module docstring), computed by hand from the stats and the ERT.
    expected_size = {"alexnet_conv1": 0.5 * (18.183829 + 14.137929 + 512.0), "default_problem": 0.0}[name]
    assert size == pytest.approx(expected_size, abs=1e-6)
    print(f"{name}: ours {cost.energy_pj:.2f} pJ, Timeloop {total:.2f} pJ, vector rounding {size:.3f} pJ "
          f"({size / total:.2e} of the total)")


# ---------------------------------------------------------------------------------------
# The converted architecture

def test_converted_arch_has_the_reference_numbers(arch):
    """Capacities, energies and fan-outs worked out by hand from the v0.4 arch and the ERT."""
    lv = {l.name: l for l in arch.levels}
    assert [l.name for l in arch.levels] == ["DRAM", "shared_glb", "inter_PE_column_spatial", "inter_PE_spatial",
                                             "ifmap_spad", "weights_spad", "psum_spad"]
    dram, glb = lv["DRAM"], lv["shared_glb"]
    assert isinstance(dram, Storage) and not dram.bounded
    assert dram.energy_of("Weights") == (512 / 8,) * 3
    assert dram.read_bw is None and dram.write_bw is None
    assert glb.partitions == ((("Inputs", "Outputs"), 16384 * 64 // 8),) and glb.may_bypass == ()
    assert glb.energy_of("Inputs") == pytest.approx((18.183829 / 8, 14.137929 / 8, 14.137929 / 8))
    assert (glb.read_bw, glb.write_bw, glb.leakage) == (16, 16, 0.005652)
    col, row = lv["inter_PE_column_spatial"], lv["inter_PE_spatial"]
    assert isinstance(col, Fanout) and (col.X, col.Y) == (14, 1) and set(col.x_dims) == {"Q", "M", "G"}
    assert isinstance(row, Fanout) and (row.X, row.Y) == (1, 12) and set(row.y_dims) == {"S", "C", "M", "G"}
    assert col.multicast == row.multicast == "exact"
    spads = {"ifmap_spad": (12 * 16 // 8, "Inputs", 0.202442 / 2, 0.176713 / 2, 0.000101, set()),
             "weights_spad": (192 * 16 // 8, "Weights", 1.976602 / 2, 1.881657 / 2, 0.001592, {"C", "R"}),
             "psum_spad": (16 * 16 // 16, "Outputs", 0.2513, 0.2191, 0.000134, {"M"})}
    for name, (cap, t, er, ew, leak, dims) in spads.items():
        s = lv[name]
        assert s.keeps == (t,) and s.may_bypass == () and s.partitions == (((t,), cap),)
        assert s.energy_of(t) == pytest.approx((er, ew, ew))
        assert (s.read_bw, s.write_bw, s.leakage) == (2, 2, leak)
        assert set(s.temporal_dims) - {"G"} == dims            # G: not in the constraints, left free
    assert arch.mac_energy == 0.207692 and arch.clock_mhz == 1000.0


def test_shipped_arch_file_is_the_converter_output(arch):
    shipped = load_arch("timeloop_eyeriss_like")
    assert shipped.levels == arch.levels
    assert (shipped.name, shipped.mac_energy, shipped.clock_mhz, shipped.word_bits) == \
        (arch.name, arch.mac_energy, arch.clock_mhz, arch.word_bits)


def test_unsupported_parts_are_reported_by_name(ref):
    _, unsupported = arch_from_timeloop(ref.arch, ref.ert, ref.constraints, art_path=ref.art)
    text = "\n".join(unsupported)
    for part in ("n_banks", "cluster_size", "has_power_gating", "allow_overbooking", "min_utilization",
                 "update_fifo_depth", "loop order 'NMPQSCR' at weights_spad", "ART", "mac[1..168] leak"):
        assert part in text, part
    assert "shared_glb=32" in text                        # n_banks of the GLB, with its value


def test_write_arch_writes_a_commented_file_our_parser_reads(tmp_path, ref):
    out = tmp_path / "arch.yaml"
    unsupported = write_arch(ref.arch, ref.ert, out, ref.constraints)
    text = out.read_text()
    assert text.startswith("# Converted by mapper.timeloop.write_arch")
    assert "# capacity = depth 16384 x width 64 / datawidth 8 = 131072 words." in text
    assert all(f"#   - {u}" in text for u in unsupported)
    assert load_arch(out).pes == 14 * 12


def test_arch_without_constraints_keeps_every_choice_open(ref):
    data, _ = arch_from_timeloop(ref.arch, ref.ert)
    a = parse_arch(data, "x")
    spad = a.level("weights_spad")
    assert set(spad.keeps) == set(spad.may_bypass) == {"Weights", "Inputs", "Outputs"}
    assert a.level("inter_PE_spatial").y_dims == ("N", "G", "M", "C", "P", "Q", "R", "S")


# ---------------------------------------------------------------------------------------
# Problems

def test_problems_convert_to_the_same_loop_bounds(ref):
    for path in sorted((ref.root / "problems").glob("*.yaml")):
        inst = yaml.safe_load(path.read_text())["problem"]["instance"]
        layer = layer_of(ref, path.stem)
        for d in ("N", "C", "M", "P", "Q", "R", "S"):
            assert layer.dims[d] == inst[d], (path.stem, d)
        assert layer.G == inst.get("G", 1)
        assert layer.stride == (inst["Wstride"], inst["Hstride"])
        assert layer.dilation == (inst["Wdilation"], inst["Hdilation"])
        assert layer.macs == math.prod(inst[d] for d in ("N", "C", "M", "P", "Q", "R", "S")) * inst.get("G", 1)
    assert layer_of(ref, "mobilenetv1_dw1").type == "depthwise"
    assert layer_of(ref, "alexnet_conv1").input_rows == 227             # (55-1)*4 + 11
    assert layer_of(ref, "ref_default_problem").pad == (0, 0)


def test_write_problem(tmp_path, ref):
    out = tmp_path / "p.yaml"
    write_problem(ref.root / "problems" / "mobilenetv1_dw7.yaml", out)
    assert out.read_text().startswith("# Converted by mapper.timeloop.write_problem")
    from mapper.problem import load_network
    net = load_network(out)
    layer = net.layer("mobilenetv1_dw7")
    assert (layer.type, layer.G, layer.C, layer.M, layer.P, layer.R) == ("depthwise", 512, 1, 1, 14, 3)


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_unsupported_problem_version_is_an_error(tmp_path, ref):
    data = yaml.safe_load((ref.root / "problems" / "alexnet_conv1.yaml").read_text())
    data["problem"]["version"] = 0.5
    path = _write(tmp_path, "v05.yaml", data)
    with pytest.raises(SpecError) as err:
        problem_from_timeloop(path)
    assert err.value.source == str(path) and err.value.field == "problem.version"
    assert "0.5" in str(err.value) and "\n" not in str(err.value)


def test_non_cnn_problem_shape_is_an_error(tmp_path, ref):
    gemm = {"problem": {"version": 0.4, "instance": {"M": 64, "N": 64, "K": 64},
                        "shape": {"name": "GEMM", "dimensions": ["M", "N", "K"],
                                  "data_spaces": [{"name": "A", "projection": [[["M"]], [["K"]]]},
                                                  {"name": "B", "projection": [[["N"]], [["K"]]]},
                                                  {"name": "Z", "projection": [[["M"]], [["N"]]],
                                                   "read_write": True}]}}}
    path = _write(tmp_path, "gemm.yaml", gemm)
    with pytest.raises(SpecError) as err:
        problem_from_timeloop(path)
    assert err.value.source == str(path) and err.value.field == "problem.shape.dimensions"
    assert "K" in err.value.message
    # A CNN-named shape whose Inputs do not slide is not CNN_Layer either.
    data = yaml.safe_load((ref.root / "problems" / "alexnet_conv1.yaml").read_text())
    data["problem"]["shape"]["data_spaces"][1]["projection"][2] = [["R"]]
    with pytest.raises(SpecError) as err:
        problem_from_timeloop(_write(tmp_path, "bad.yaml", data))
    assert "data_spaces[1].projection" in err.value.field


def test_missing_instance_dimension_is_an_error(tmp_path, ref):
    data = yaml.safe_load((ref.root / "problems" / "alexnet_conv1.yaml").read_text())
    del data["problem"]["instance"]["R"]
    with pytest.raises(SpecError) as err:
        problem_from_timeloop(_write(tmp_path, "noR.yaml", data))
    assert err.value.field == "problem.instance.R"


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 2.5, 0])
def test_non_finite_or_fractional_instance_dimension_is_an_error(tmp_path, value, ref):
    data = yaml.safe_load((ref.root / "problems" / "alexnet_conv1.yaml").read_text())
    data["problem"]["instance"]["P"] = value
    with pytest.raises(SpecError) as err:          # not OverflowError / ValueError
        problem_from_timeloop(_write(tmp_path, "badP.yaml", data))
    assert err.value.field == "problem.instance.P" and "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------
# Architecture errors

def test_unsupported_arch_version_is_an_error(tmp_path, ref):
    data = yaml.safe_load(ref.arch.read_text())
    data["architecture"]["version"] = "0.2"
    path = _write(tmp_path, "arch.yaml", data)
    with pytest.raises(SpecError) as err:
        arch_from_timeloop(path, ref.ert)
    assert err.value.source == str(path) and err.value.field == "architecture.version"


def test_ert_missing_a_component_is_an_error(tmp_path, ref):
    data = yaml.safe_load(ref.ert.read_text())
    data["ERT"]["tables"] = [t for t in data["ERT"]["tables"] if "psum_spad" not in t["name"]]
    path = _write(tmp_path, "ert.yaml", data)
    with pytest.raises(SpecError) as err:
        arch_from_timeloop(ref.arch, path)
    assert err.value.source == str(path)
    assert "system_top_level.psum_spad[1..168]" in err.value.message


def test_constraint_on_unknown_level_is_an_error(tmp_path, ref):
    data = yaml.safe_load(ref.constraints.read_text())
    data["architecture_constraints"]["targets"][3]["target"] = "inter_PE_colum_spatial"
    path = _write(tmp_path, "c.yaml", data)
    with pytest.raises(SpecError) as err:
        arch_from_timeloop(ref.arch, ref.ert, path)
    assert err.value.field == "architecture_constraints.targets[3].target"
    assert "did you mean 'inter_PE_column_spatial'" in err.value.message


# ---------------------------------------------------------------------------------------
# Mappings

def _directives(data) -> dict:
    """A Timeloop mapping as {(target, type): normalized content} for comparison:
    factors > 1, the order of those loops (innermost first) and their axis, kept tensors."""
    out = {}
    for d in data["mapping"]:
        key = (d["target"], d["type"])
        if d["type"] == "datatype":
            out[key] = frozenset(d.get("keep") or [])
            continue
        factors = dict((m.group(1), int(m.group(2))) for m in re.finditer(r"([A-Z])(\d+)", d["factors"]))
        perm = d["permutation"]
        split = d.get("split", len(perm))
        out[key] = tuple((x, factors[x], "X" if i < split else "Y") if d["type"] == "spatial" else (x, factors[x])
                         for i, x in enumerate(perm) if factors.get(x, 1) > 1)
    return out


def test_is_timeloop_mapping(example, ref):
    name, layer, mapping, cost, _ = example
    assert is_timeloop_mapping(yaml.safe_load((ref.root / "examples" / name / "map.yaml").read_text()))
    assert not is_timeloop_mapping({"loops": [], "keep": {}})
    assert not is_timeloop_mapping({"mapping": {"loops": [], "keep": {}}, "cost": {}})


def test_export_reproduces_the_reference_mapping(example, arch, ref):
    name, layer, mapping, _, _ = example
    expected = yaml.safe_load((ref.root / "examples" / name / "map.yaml").read_text())
    ours = mapping_to_timeloop(mapping, arch)
    assert _directives(ours) == _directives(expected)
    # Complete, as timeloop-model wants: every dimension in every factors and permutation.
    for d in ours["mapping"]:
        if d["type"] != "datatype":
            assert sorted(re.findall(r"[A-Z]", d["factors"])) == sorted(d["permutation"]) == sorted("CMRSNPQ")


def test_export_result_writes_the_timeloop_mapping(example, arch, tmp_path, ref):
    name, layer, mapping, cost, _ = example
    result = tmp_path / "result.json"
    result.write_text(json.dumps(document(layer, arch, mapping, cost)))
    out = tmp_path / "map.yaml"
    export_result(result, out, arch)
    written = yaml.safe_load(out.read_text())
    expected = yaml.safe_load((ref.root / "examples" / name / "map.yaml").read_text())
    assert _directives(written) == _directives(expected)
    assert out.read_text().startswith("# Timeloop mapping exported by mapper")


def test_export_result_for_another_arch_is_an_error(example, tmp_path):
    name, layer, mapping, cost, _ = example
    other = load_arch("eyeriss_v1")
    result = tmp_path / "result.json"
    doc = document(layer, load_arch("timeloop_eyeriss_like"), mapping, cost)
    result.write_text(json.dumps(doc))
    with pytest.raises(SpecError) as err:
        export_result(result, tmp_path / "map.yaml", other)
    assert err.value.field == "arch.name"


def _roundtrip(mapping: Mapping, arch, layer, dims=None) -> Mapping:
    data = mapping_to_timeloop(mapping, arch, dims)
    text = mapping_yaml(data)                             # through the YAML text, as a user would
    return mapping_from_timeloop(yaml.safe_load(text), arch, layer)


@pytest.mark.parametrize("problem", ["alexnet_conv1", "alexnet_conv3", "mobilenetv1_dw1", "mobilenetv1_pw7"])
def test_roundtrip_of_searched_mappings(problem, arch, ref):
    from mapper.search import search
    layer = layer_of(ref, problem)
    res = search(layer, arch, algorithm="random", budget=5000, top=4)
    assert len(res.found) >= 2
    dims = problem_dims(ref.root / "problems" / f"{problem}.yaml")
    for f in res.found:
        back = _roundtrip(f.mapping, arch, layer, dims)
        assert back == normalize(f.mapping.loops, arch, dict(f.mapping.keep))
        assert evaluate(layer, arch, back).energy_pj == f.cost.energy_pj
    if layer.G > 1:   # the depthwise problem lists G, so its factors must too
        assert all("G" in d["factors"] for d in mapping_to_timeloop(res.best.mapping, arch, dims)["mapping"]
                   if d["type"] != "datatype")


def test_roundtrip_of_the_reference_mappings(example, arch):
    name, layer, mapping, _, _ = example
    assert _roundtrip(mapping, arch, layer) == mapping


def test_timeloop_defaults_missing_factors_permutation_and_split(arch, ref):
    """Missing factors are 1, missing permutation dims are padded, a missing split is all-X."""
    layer = layer_of(ref, "alexnet_conv1")
    data = yaml.safe_load((ref.root / "examples" / "alexnet_conv1" / "map.yaml").read_text())
    full = mapping_from_timeloop(data, arch, layer)
    for d in data["mapping"]:
        if d["type"] == "temporal":
            d["factors"] = " ".join(f for f in d["factors"].split() if not f.endswith("1") or f.endswith("11"))
            d["permutation"] = d["permutation"][:1]
        if d["target"] == "inter_PE_column_spatial" and d["type"] == "spatial":
            del d["split"]                                # Q14 stays on X
    assert mapping_from_timeloop(data, arch, layer) == full


def test_mapping_with_unknown_target_is_an_error(arch, tmp_path, ref):
    layer = layer_of(ref, "alexnet_conv1")
    data = yaml.safe_load((ref.root / "examples" / "alexnet_conv1" / "map.yaml").read_text())
    data["mapping"][9]["target"] = "weight_spad"
    path = _write(tmp_path, "map.yaml", data)
    with pytest.raises(SpecError) as err:
        mapping_from_timeloop(path, arch, layer)
    assert err.value.source == str(path) and err.value.field == "mapping[9].target"
    assert "did you mean 'weights_spad'" in err.value.message


def test_mapping_whose_factors_do_not_multiply_to_the_layer_is_an_error(arch, tmp_path, ref):
    layer = layer_of(ref, "alexnet_conv1")
    data = yaml.safe_load((ref.root / "examples" / "alexnet_conv1" / "map.yaml").read_text())
    data["mapping"][-1]["factors"] = data["mapping"][-1]["factors"].replace("M4", "M2")
    path = _write(tmp_path, "map.yaml", data)
    with pytest.raises(SpecError) as err:
        mapping_from_timeloop(path, arch, layer)
    assert err.value.source == str(path)
    assert "M" in err.value.message and "48" in err.value.message and "96" in err.value.message


def test_mapping_that_overflows_a_fanout_is_an_error(arch, tmp_path, ref):
    layer = layer_of(ref, "alexnet_conv1")
    data = yaml.safe_load((ref.root / "examples" / "alexnet_conv1" / "map.yaml").read_text())
    for d in data["mapping"]:
        if d["target"] == "inter_PE_spatial" and d["type"] == "spatial":
            d["split"] = 7                               # M12 onto X, which has 1 column
    path = _write(tmp_path, "map.yaml", data)
    with pytest.raises(SpecError) as err:
        mapping_from_timeloop(path, arch, layer)
    assert err.value.source == str(path) and "inter_PE_spatial" in err.value.field


# ---------------------------------------------------------------------------------------
# A nested v0.3-style tree: ranges on subtrees, block-size/word-bits, a fan-out below a real
# storage level, an ERT action with several entries. Numbers are the ones written here.

V03_ARCH = {"architecture": {"version": 0.3, "subtree": [{
    "name": "system", "attributes": {"technology": "45nm"},
    "local": [{"name": "DRAM", "class": "DRAM", "attributes": {"width": 64, "block-size": 4, "word-bits": 16}}],
    "subtree": [{
        "name": "chip",
        "local": [{"name": "glb", "class": "smartbuffer_SRAM",
                   "attributes": {"memory_depth": 1024, "memory_width": 64, "block-size": 4, "word-bits": 16,
                                  "read_bandwidth": 16, "write_bandwidth": 16}},
                  {"name": "row[0..3]", "class": "regfile",
                   "attributes": {"depth": 16, "width": 16, "word-bits": 16, "block-size": 1, "meshX": 4}}],
        "subtree": [{"name": "PE[0..15]", "local": [
            {"name": "rf", "class": "regfile", "attributes": {"depth": 32, "width": 16, "word-bits": 16, "meshX": 4}},
            {"name": "mac", "class": "intmac", "attributes": {"datawidth": 16, "meshX": 4}}]}]}]}]}}
V03_ERT = {"ERT": {"version": 0.3, "tables": [
    {"name": "system.DRAM", "actions": [{"name": "read", "energy": 200}, {"name": "write", "energy": 200}]},
    {"name": "system.chip.glb", "actions": [{"name": "read", "arguments": {"data_delta": 0}, "energy": 4},
                                            {"name": "read", "arguments": {"data_delta": 1}, "energy": 8},
                                            {"name": "write", "energy": 6}, {"name": "idle", "energy": 0}]},
    {"name": "system.chip.row[0..3]", "actions": [{"name": "read", "energy": 1}, {"name": "write", "energy": 1}]},
    {"name": "system.chip.PE[0..15].rf", "actions": [{"name": "read", "energy": 0.5}, {"name": "write", "energy": 0.5},
                                                     {"name": "update", "energy": 0.6}]},
    {"name": "system.chip.PE[0..15].mac", "actions": [{"name": "mac_random", "energy": 1.0}]}]}}


def test_nested_v03_tree(tmp_path):
    from mapper.mapping import Loop
    from mapper.problem import layer_from_dims
    data, unsupported = arch_from_timeloop(_write(tmp_path, "a.yaml", V03_ARCH), _write(tmp_path, "e.yaml", V03_ERT))
    a = parse_arch(data, "x")
    assert [l.name for l in a.levels] == ["DRAM", "glb", "glb_spatial", "row", "row_spatial", "rf"]
    assert (a.level("glb_spatial").X, a.level("glb_spatial").Y) == (4, 1)       # 1 -> 4 rows (meshX 4)
    assert (a.level("row_spatial").X, a.level("row_spatial").Y) == (1, 4)       # 4 x 1 -> 4 x 4 PEs
    assert [a.level(n).partitions[0][1] for n in ("glb", "row", "rf")] == [1024 * 4, 16, 32]
    assert a.level("DRAM").energy_of("Outputs") == (200 / 4, 200 / 4, 200 / 4)  # update falls back to write
    assert a.level("glb").energy_of("Inputs") == (8 / 4, 6 / 4, 6 / 4)          # the larger read entry
    assert a.mac_energy == 1.0
    assert any("'read' has 2 entries" in u for u in unsupported)
    assert any("'idle'" in u for u in unsupported)
    layer = layer_from_dims("l", M=8, C=4, P=4, Q=4, R=3, S=3)
    m = normalize([Loop("DRAM", "C", 4), Loop("DRAM", "P", 4), Loop("DRAM", "M", 2), Loop("glb", "Q", 4),
                   Loop("glb_spatial", "M", 4, "X"), Loop("row_spatial", "S", 3, "Y"), Loop("rf", "R", 3)],
                  a, {"row": ["Weights"], "rf": ["Weights", "Outputs"]})
    t = mapping_to_timeloop(m, a)
    spatial = {d["target"]: d for d in t["mapping"] if d["type"] == "spatial"}
    assert set(spatial) == {"glb", "row"}                  # fan-outs below real storage levels
    assert spatial["glb"]["factors"].split()[1] == "M4" and spatial["glb"]["split"] == 1
    assert mapping_from_timeloop(t, a, layer) == m
