"""More hostile specs, found by probing every command: each is exit code 2 with one error line
that names the file (and the field where there is one), no traceback, nothing written."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from cli_helper import run_in_process

ROOT = Path(__file__).resolve().parents[1]
BASE = yaml.safe_load((ROOT / "arch" / "eyeriss_v1.yaml").read_text())
CONV = "name: tiny\nlayers:\n  - {name: l1, type: conv, C: 16, M: 32, H: 16, W: 16, R: 3, S: 3}\n"


def _arch(change) -> str:
    arch = copy.deepcopy(BASE)
    change(arch)
    return yaml.safe_dump(arch)


def _many_storages(arch):
    extra = [dict(name=f"S{i}", keeps=["Weights", "Inputs", "Outputs"], capacity=10 ** 6, energy=1.0)
             for i in range(100)]
    arch["levels"] = arch["levels"][:2] + extra + arch["levels"][2:]


ARCHS = {
    # a mapspace too large for the search: the error came from the search, naming no file
    "100 storage levels": (_arch(_many_storages), ["too large a mapspace", "levels"]),
    # buffers too small for any mapping: named the arch only by its name
    "capacities of 1": (_arch(lambda a: [l.update(capacity=1) for l in a["levels"][1:] if "fanout" not in l]),
                        ["no valid mapping", "levels"]),
    # PyYAML's reader refuses control characters when it is made: that was a traceback
    "binary garbage": ("\x01\x02garbage\x7f", ["not a YAML text file", "U+0001"]),
    "empty name": (_arch(lambda a: a.update(name="")), ["name:", "empty name"]),
    "blank level name": (_arch(lambda a: a["levels"][1].update(name="  ")), ["levels[1].name", "empty name"]),
    "tab in a level name": (_arch(lambda a: a["levels"][1].update(name="G\tLB")),
                            ["levels[1].name", "control character"]),
    "duplicate level": (_arch(lambda a: a["levels"][1].update(name="DRAM")), ["levels[1].name", "duplicate"]),
    "no levels": (_arch(lambda a: a.update(levels=[])), ["levels"]),
    "negative energy": (_arch(lambda a: a["levels"][1].update(energy=-1)), ["levels[1].energy", "-1"]),
    "huge capacity": (_arch(lambda a: a["levels"][1].update(capacity=10 ** 25)), ["levels[1].capacity", "at most"]),
    "fan-out of 0": (_arch(lambda a: a["levels"][2].update(fanout={"X": 0, "Y": 12})), ["levels[2].fanout.X"]),
    "alias bomb": ("a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                   "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
                   "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n", ["too many values"]),
}

PROBLEMS = {
    "binary garbage": ("\x1b[31mred\x1b[0m: 1\n", ["not a YAML text file", "U+001B"]),
    "empty layer name": ("name: net\nlayers:\n  - {name: '', type: fc, C: 4, M: 4}\n", ["layers[0].name", "empty"]),
    "empty network name": ("name: ' '\nlayers:\n  - {name: a, type: fc, C: 4, M: 4}\n", ["name:", "empty"]),
    "no layers": ("name: net\nlayers: []\n", ["layers"]),
    "null layer": ("name: net\nlayers:\n  - null\n", ["layers[0]"]),
    "duplicate layer": ("name: net\nlayers:\n  - {name: a, type: fc, C: 4, M: 4}\n"
                        "  - {name: a, type: fc, C: 4, M: 4}\n", ["layers[1].name", "duplicate"]),
    "NaN size": ("name: net\nlayers:\n  - {name: a, type: fc, C: .nan, M: 4}\n", ["layers[0].C"]),
    "huge size": ("name: net\nlayers:\n  - {name: a, type: fc, C: 100000000, M: 100000000}\n", ["layers[0]"]),
}


def _commands(kind: str, path: Path, work: Path, layer: str = "l1"):
    arch = ["-a", str(path)] if kind == "arch" else ["-a", "eyeriss_v1"]
    prob = ["-p", str(path)] if kind == "problem" else ["-p", str(work / "tiny.yaml")]
    quick = ["--time-limit", "1", "--workers", "1", "-q"]
    return {
        "search": ["search", *arch, *prob, *quick, "--json", "out.json"],
        "space": ["space", *arch, *prob, "-l", layer if kind == "arch" else "a"],
        "eyexam": ["eyexam", *arch, *prob, *quick, "--json", "out.json"],
        "sweep": ["sweep", *arch, *prob, *quick, "--out", "out"],
    }


def _one_error_naming(res, path: Path, words):
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.splitlines()
    assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (res.returncode, res.stderr)
    assert str(path) in lines[0], lines[0]
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert res.stdout == "", res.stdout


@pytest.mark.parametrize("command", ["search", "space", "eyexam", "sweep"])
@pytest.mark.parametrize("kind, case", [("arch", c) for c in ARCHS] + [("problem", c) for c in PROBLEMS])
def test_hostile_spec_names_its_file(tmp_path, kind, case, command):
    text, words = (ARCHS if kind == "arch" else PROBLEMS)[case]
    if case == "capacities of 1" and command == "space":
        pytest.skip("space counts the mapspace; that no mapping fits is the search's finding")
    (tmp_path / "tiny.yaml").write_text(CONV)
    path = tmp_path / f"hostile_{kind}.yaml"
    path.write_text(text)
    before = set(tmp_path.rglob("*"))
    res = run_in_process(*_commands(kind, path, tmp_path)[command], cwd=tmp_path)
    _one_error_naming(res, path, words)
    new = set(tmp_path.rglob("*")) - before
    # a sweep that fails in a search keeps what it wrote before (sweep.json, finished results)
    assert not new if command != "sweep" else all(p.is_relative_to(tmp_path / "out") for p in new), new


GOOD_MAPPING = [
    ("DRAM", "M", 24, "null"), ("DRAM", "C", 16, "null"), ("GLB", "Q", 13, "null"),
    ("array", "P", 13, "X"), ("array", "R", 3, "Y"), ("array", "C", 4, "Y"),
    ("weights_spad", "C", 4, "null"), ("weights_spad", "S", 3, "null"), ("psum_spad", "M", 16, "null"),
]


def _mapping(loops=GOOD_MAPPING, extra: str = "") -> str:
    return "loops:\n" + "".join(f"  - {{level: {l}, dim: {d}, factor: {f}, spatial: {s}}}\n"
                                for l, d, f, s in loops) + "keep: {GLB: [Weights, Inputs, Outputs]}\n" + extra


MAPPINGS = {
    "innermost first": (_mapping(GOOD_MAPPING[::-1]), ["loops[1]", "outermost first"]),
    "factor 0": (_mapping([("DRAM", "M", 0, "null"), *GOOD_MAPPING[1:]]), ["loops[0].factor", "at least 1"]),
    "huge factor": (_mapping([("DRAM", "M", 2 ** 41, "null"), *GOOD_MAPPING[1:]]), ["loops[0].factor", "at most"]),
    "level a list": (_mapping([("[1]", "M", 24, "null"), *GOOD_MAPPING[1:]]), ["loops[0].level"]),
    "unknown dim": (_mapping([("DRAM", "Z", 24, "null"), *GOOD_MAPPING[1:]]), ["loops[0].dim", "Z"]),
    "loop null": ("loops:\n  - null\n", ["loops[0]"]),
    "loops a mapping": ("loops: {a: 1}\n", ["loops", "list"]),
    "keep a number": (_mapping().replace("keep: {GLB: [Weights, Inputs, Outputs]}", "keep: 3"), ["keep"]),
    "unknown network fan-out": (_mapping(extra="network: {nope: {Inputs: x}}\n"), ["network.nope"]),
    "binary garbage": ("\x01\x02", ["not a YAML text file"]),
}


@pytest.mark.parametrize("command", ["evaluate", "export"])
@pytest.mark.parametrize("case", MAPPINGS)
def test_hostile_mapping_names_its_file(tmp_path, case, command):
    text, words = MAPPINGS[case]
    if command == "export":
        if case == "binary garbage":
            pytest.skip("export reads JSON result documents (binary JSON: tests/test_hostile.py)")
        # export reads result documents (JSON): the same mapping inside one
        path = tmp_path / "m.json"
        path.write_text(json.dumps({"arch": {"name": "eyeriss_v1"}, "mapping": yaml.safe_load(text)}))
    else:
        path = tmp_path / "m.yaml"
        path.write_text(text)
    before = set(tmp_path.rglob("*"))
    args = {"evaluate": ["evaluate", "-a", "eyeriss_v1", "-p", "alexnet", "-l", "conv3", "-m", path,
                         "--json", "out.json"],
            "export": ["export", "timeloop", path, "-a", "eyeriss_v1", "-o", "map.yaml"]}[command]
    res = run_in_process(*args, cwd=tmp_path)
    _one_error_naming(res, path, words)
    assert set(tmp_path.rglob("*")) == before


def test_option_errors_do_not_blame_the_arch_file(tmp_path):
    # the arch file is named for what its levels cause (above), not for an option's limit:
    # the exhaustive-size check once came out as "... (arch file .../eyeriss_v2.yaml: levels)"
    res = run_in_process("search", "-a", "eyeriss_v2", "-p", "alexnet", "-l", "conv2", "--algo", "exhaustive",
                         cwd=tmp_path)      # 3.7e10 factorizations, beyond the limit
    lines = [l for l in res.stderr.splitlines() if l.startswith("error")]
    assert res.returncode == 2 and len(lines) == 1 and "--algo exhaustive" in lines[0], res.stderr
    assert "arch file" not in lines[0] and "eyeriss_v2.yaml" not in lines[0], lines[0]


def _result_doc():
    """A result document as `mapper search --json` writes it (the loops of GOOD_MAPPING, which
    fit alexnet conv3 on eyeriss_v1), for export to be fed corrupted copies of."""
    dims = {"N": 1, "G": 1, "M": 384, "C": 256, "P": 13, "Q": 13, "R": 3, "S": 3}
    return {"layer": {"name": "conv3", "type": "conv", "dims": dims, "density": {"weights": 1.0, "inputs": 1.0}},
            "arch": {"name": "eyeriss_v1"}, "mapping": yaml.safe_load(_mapping()),
            "cost": {"energy_pj": 1.0e9, "cycles": 958464}}


def _set(path: str, value):
    def change(doc):
        *outer, last = path.split(".")
        for key in outer:
            doc = doc[key]
        doc[last] = value
    return change


RESULT_DOCS = {
    # each was a traceback or a map.yaml written from junk: export trusted the layer section
    "layer a string": (_set("layer", "conv3"), ["layer:", "mapping of fields", "str"]),
    "layer a list": (_set("layer", [1, 2]), ["layer:", "mapping of fields", "list"]),
    "dims a string": (_set("layer.dims", "P13"), ["layer.dims:", "mapping of fields"]),
    "dims a list": (_set("layer.dims", [13]), ["layer.dims:", "mapping of fields"]),
    "negative dim": (_set("layer.dims.P", -13), ["layer.dims.P:", "at least 1", "-13"]),
    "zero dim": (_set("layer.dims.P", 0), ["layer.dims.P:", "at least 1"]),
    "float dim": (_set("layer.dims.P", 13.5), ["layer.dims.P:", "whole number", "13.5"]),
    "bool dim": (_set("layer.dims.P", True), ["layer.dims.P:", "whole number", "True"]),
    "string dim": (_set("layer.dims.P", "13"), ["layer.dims.P:", "whole number", "'13'"]),
    "null dim": (_set("layer.dims.P", None), ["layer.dims.P:", "whole number", "None"]),
    "huge dim": (_set("layer.dims.P", 2 ** 40), ["layer.dims.P:", "at most"]),
    "unknown dim": (_set("layer.dims.Z", 4), ["layer.dims.Z:", "unknown field", "N, G, M, C, P, Q, R, S"]),
    "G a string": (_set("layer.dims.G", "2"), ["layer.dims.G:", "whole number", "'2'"]),
    "G a bool": (_set("layer.dims.G", True), ["layer.dims.G:", "whole number"]),
    "name a number": (_set("layer.name", 3), ["layer.name:", "expected a name", "3"]),
    "name a list": (_set("layer.name", ["a"]), ["layer.name:", "expected a name"]),
    "name a mapping": (_set("layer.name", {"a": 1}), ["layer.name:", "expected a name"]),
    "name empty": (_set("layer.name", ""), ["layer.name:", "empty name"]),
    "name two lines": (_set("layer.name", "a\nb"), ["layer.name:", "control character"]),
    "cost a string": (_set("cost", "energy_pj"), ["cost:", "mapping of fields"]),
    "cost a list": (_set("cost", ["energy_pj"]), ["cost:", "mapping of fields"]),
    "energy a string": (_set("cost.energy_pj", "x"), ["cost.energy_pj:", "expected a number"]),
    "cycles a float": (_set("cost.cycles", 1.5), ["cost.cycles:", "whole number"]),
}


@pytest.mark.parametrize("case", RESULT_DOCS)
def test_hostile_result_layer_for_export(tmp_path, case):
    change, words = RESULT_DOCS[case]
    doc = _result_doc()
    change(doc)
    path = tmp_path / "out.json"
    path.write_text(json.dumps(doc))
    before = set(tmp_path.rglob("*"))
    res = run_in_process("export", "timeloop", path, "-o", "map.yaml", cwd=tmp_path)
    _one_error_naming(res, path, words)
    assert set(tmp_path.rglob("*")) == before


@pytest.mark.parametrize("change", [lambda d: None, _set("layer.dims.P", 13.0), _set("layer", None),
                                    lambda d: d.pop("layer"), lambda d: d["layer"].pop("dims"),
                                    lambda d: d["layer"].pop("name"), lambda d: d.pop("cost")],
                         ids=["as written", "13.0", "layer null", "no layer", "no dims", "no name", "no cost"])
def test_result_layer_for_export_still_accepted(tmp_path, change):
    # what the checks above must not refuse: a whole float, and sections a hand-made document omits
    doc = _result_doc()
    change(doc)
    path = tmp_path / "out.json"
    path.write_text(json.dumps(doc))
    res = run_in_process("export", "timeloop", path, "-o", "map.yaml", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert yaml.safe_load((tmp_path / "map.yaml").read_text())["mapping"]


@pytest.mark.parametrize("value, words", [(1.5, ["must be in (0, 1]", "1.5"]), (0, ["must be in (0, 1]", "0"]),
                                          (-0.2, ["at least 0"]), ("'x'", ["expected a number"])])
def test_timeloop_problem_density_out_of_range_names_the_timeloop_file(tmp_path, value, words):
    # a density is a fraction of non-zeros, in (0, 1]: the converter took 1.5 or 0 and the error
    # came from re-reading what it was about to write, naming the output file (net.yaml:
    # layers[0].density.weights) instead of the Timeloop file and its field
    path = tmp_path / "tl.yaml"
    path.write_text("problem:\n  shape: {name: CNN_Layer}\n  instance: {C: 4, M: 4, R: 1, S: 1, P: 2, Q: 2, N: 1, "
                    f"densities: {{Weights: {value}}}}}\n")
    res = run_in_process("convert", "timeloop-problem", path, "-o", "net.yaml", cwd=tmp_path)
    _one_error_naming(res, path, ["problem.instance.densities.Weights:", *words])
    assert not (tmp_path / "net.yaml").exists()
