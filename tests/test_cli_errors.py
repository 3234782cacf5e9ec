"""The `mapper` command: user errors are one line on stderr, exit code 2, no traceback and
no output file; and the happy paths (version, help, layers, evaluate, reading a result back).

Every test takes the `run` fixture: in the fast tier it runs the command in-process through
the console script's own entry point (tests/cli_helper.py: the same exit code and stderr,
without a second of start-up per case); the slow tier repeats every test with the installed
command in a subprocess, so stderr, the exit code and any traceback are exactly what a user
sees. A few cases run both ways in the fast tier and must agree. Bad inputs are small YAML
files written into tmp_path.

Valid mapping used throughout (AlexNet conv3 on Eyeriss v1; N=G=1, M=384, C=256,
P=Q=13, R=S=3), built by hand from the arch's constraints:

    DRAM:          M 24, C 16               (24*16 = 384 and 16 of C's 256)
    GLB:           Q 13
    array X:       P 13                      (<= 14; X may hold P, M, N, G)
    array Y:       R 3 x C 4 = 12            (<= 12; Y may hold R, C, M, G)
    ifmap_spad:    (no temporal loops allowed)
    weights_spad:  C 4, S 3                  (temporal dims C, S)
    psum_spad:     M 16                      (temporal dim M)

    M: 24*16 = 384, C: 16*4*4 = 256, P 13, Q 13, R 3, S 3.
    Tiles: psum_spad Outputs = M 16 -> 16 <= 24; weights_spad Weights = M16*C4*S3 = 192 <= 224;
    ifmap_spad Inputs = C4 * 1 row * 3 cols = 12 <= 12;
    GLB Inputs = C16 * (13+2) * (13+2) = 3600, Outputs = M16*13*13 = 2704: 6304 <= 51200;
    GLB Weights = M16*C16*3*3 = 2304 <= 4096.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helper import run_in_process

MAPPER = shutil.which("mapper") or str(Path(sys.executable).parent / "mapper")

GOOD_LOOPS = [
    ("DRAM", "M", 24, None), ("DRAM", "C", 16, None),
    ("GLB", "Q", 13, None),
    ("array", "P", 13, "X"), ("array", "R", 3, "Y"), ("array", "C", 4, "Y"),
    ("weights_spad", "C", 4, None), ("weights_spad", "S", 3, None),
    ("psum_spad", "M", 16, None),
]

CONV3_MACS = 13 * 13 * 3 * 3 * 256 * 384          # 149,520,384


def mapping_yaml(loops=GOOD_LOOPS, keep="{GLB: [Weights, Inputs, Outputs]}") -> str:
    lines = ["loops:"]
    for level, dim, factor, spatial in loops:
        sp = "null" if spatial is None else spatial
        lines.append(f"  - {{level: {level}, dim: {dim}, factor: {factor}, spatial: {sp}}}")
    lines.append(f"keep: {keep}")
    return "\n".join(lines) + "\n"


def replace_loop(old, new):
    return [new if l == old else l for l in GOOD_LOOPS]


def run_installed(*args, cwd=None) -> subprocess.CompletedProcess:
    """The installed `mapper` script in a subprocess: exactly what a user sees."""
    return subprocess.run([MAPPER, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.fixture(params=["in-process", pytest.param("subprocess", marks=pytest.mark.slow)])
def run(request):
    """How a test runs `mapper ARGS`: in-process (fast tier) or the installed command (slow tier)."""
    return run_in_process if request.param == "in-process" else run_installed


def assert_user_error(res, *fragments: str, out: Path | None = None) -> str:
    """One line on stderr starting with 'error:', containing every fragment; exit code 2;
    no traceback; and `out` (the --json target) not created, nor a temporary file beside it."""
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    line = lines[0]
    assert line.startswith("error:"), line
    assert res.returncode == 2, (res.returncode, line)
    for f in fragments:
        assert f in line, (f, line)
    if out is not None:
        assert not out.exists(), out
        assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    return line


@pytest.fixture
def good_mapping(tmp_path) -> Path:
    path = tmp_path / "good.yaml"
    path.write_text(mapping_yaml())
    return path


def evaluate_args(mapping, out, arch="eyeriss_v1", problem="alexnet", layer="conv3"):
    return ["evaluate", "--arch", arch, "--problem", problem, "--layer", layer, "--mapping", mapping,
            "--json", out]


# ---------------------------------------------------------------------------------------
# Problem files

LAYER_OK = "{name: a, type: conv, C: 3, M: 4, H: 8, W: 8, R: 3, S: 3%s}"


def problem_file(tmp_path, layer_text: str) -> Path:
    path = tmp_path / "net.yaml"
    path.write_text(f"name: net\nlayers:\n  - {layer_text}\n")
    return path


@pytest.mark.parametrize("layer_text, fragments", [
    # misspelled field: the closest known name is suggested
    (LAYER_OK % ", strid: 2", ["layers[0].strid", "did you mean 'stride'"]),
    # missing required field
    ("{name: a, type: conv, C: 3, M: 4, H: 8, R: 3, S: 3}", ["layers[0].W", "missing"]),
    ("{type: conv, C: 3, M: 4, H: 8, W: 8, R: 3, S: 3}", ["layers[0].name", "missing"]),
    ("{name: a, type: conv, M: 4, H: 8, W: 8, R: 3, S: 3}", ["layers[0].C", "missing"]),
    # non-positive and non-integer sizes
    ("{name: a, type: conv, C: 0, M: 4, H: 8, W: 8, R: 3, S: 3}", ["layers[0].C", "0"]),
    ("{name: a, type: conv, C: 2.5, M: 4, H: 8, W: 8, R: 3, S: 3}", ["layers[0].C", "2.5"]),
    ("{name: a, type: conv, C: 3, M: -4, H: 8, W: 8, R: 3, S: 3}", ["layers[0].M", "-4"]),
    ("{name: a, type: conv, C: 3, M: four, H: 8, W: 8, R: 3, S: 3}", ["layers[0].M", "four"]),
    # (4 + 2*1 - 6 - 1) // 2 + 1 = 0 output rows
    ("{name: a, type: conv, C: 3, M: 4, H: 4, W: 112, R: 7, S: 3, stride: 2, pad: 1}",
     ["layers[0].H", "would be 0", "// 2"]),
    ("{name: a, type: convolution, C: 3, M: 4, H: 8, W: 8, R: 3, S: 3}", ["layers[0].type", "conv"]),
    (LAYER_OK % ", density: {weights: 1.5}", ["layers[0].density.weights", "1.5"]),
    ("just a string", ["layers[0]", "mapping"]),
])
def test_problem_file_errors(tmp_path, good_mapping, layer_text, fragments, run):
    prob = problem_file(tmp_path, layer_text)
    out = tmp_path / "out.json"
    line = assert_user_error(run(*evaluate_args(good_mapping, out, problem=prob, layer="a")), *fragments, out=out)
    assert "net.yaml" in line
    # `mapper layers` reports the same line
    assert run("layers", prob).stderr.strip() == line


def test_malformed_yaml_problem(tmp_path, good_mapping, run):
    prob = tmp_path / "broken.yaml"
    prob.write_text("name: net\nlayers:\n  - {name: a, type: conv, C: 3\n")
    out = tmp_path / "out.json"
    assert_user_error(run(*evaluate_args(good_mapping, out, problem=prob, layer="a")),
                      "broken.yaml", "malformed YAML", "line", out=out)
    assert_user_error(run("layers", prob), "broken.yaml", "malformed YAML")


def test_missing_top_level_field(tmp_path, run):
    prob = tmp_path / "nolayers.yaml"
    prob.write_text("name: net\n")
    assert_user_error(run("layers", prob), "nolayers.yaml", "layers", "missing")


def test_missing_problem_file(tmp_path, run):
    assert_user_error(run("layers", tmp_path / "nope.yaml"), "nope.yaml", "not found")


def test_unknown_builtin_problem(tmp_path, good_mapping, run):
    out = tmp_path / "out.json"
    line = assert_user_error(run(*evaluate_args(good_mapping, out, problem="alexnett")),
                             "--problem", "alexnett", out=out)
    assert "alexnet" in line and "mobilenet_v1" in line          # lists the built-ins
    line = assert_user_error(run("layers", "resnet99"), "--problem", "resnet99", "did you mean 'resnet50'")
    assert "alexnet, bert_base, mobilenet_v1" in line


def test_unknown_builtin_arch(tmp_path, good_mapping, run):
    out = tmp_path / "out.json"
    line = assert_user_error(run(*evaluate_args(good_mapping, out, arch="eyeriss_v3")), "--arch", "eyeriss_v3",
                             out=out)
    assert "eyeriss_v1" in line and "eyeriss_v2" in line
    line = assert_user_error(run("search", "-a", "tpu", "-p", "alexnet", "-l", "conv3", "--json", out),
                             "--arch", out=out)
    assert "eyeriss_v1, eyeriss_v1_5, eyeriss_v1_scaled, eyeriss_v2" in line


def test_unknown_layer_on_evaluate(tmp_path, good_mapping, run):
    out = tmp_path / "out.json"
    line = assert_user_error(run(*evaluate_args(good_mapping, out, layer="conv33")), "--layer", "conv33",
                             "alexnet", out=out)
    # lists every layer of the network
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"):
        assert name in line


def test_unknown_layer_on_search(tmp_path, run):
    out = tmp_path / "out.json"
    line = assert_user_error(run("search", "-a", "eyeriss_v1", "-p", "mobilenet_v1", "-l", "dw14", "--json", out),
                             "--layer", "dw14", out=out)
    assert "dw13" in line and "pw13" in line and "fc" in line


# ---------------------------------------------------------------------------------------
# Mapping files

def write_mapping(tmp_path, text, name="m.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_mapping_overflows_a_buffer(tmp_path, run):
    # psum_spad M 24 (DRAM M 16 keeps M = 384): weights_spad tile = M24 * C4 * S3 = 288
    # words against 224: over by 64. (psum_spad's own tile is 24 <= 24, ifmap 12 <= 12.)
    loops = [("DRAM", "M", 16, None)] + GOOD_LOOPS[1:-1] + [("psum_spad", "M", 24, None)]
    m = write_mapping(tmp_path, mapping_yaml(loops), "over.yaml")
    out = tmp_path / "out.json"
    line = assert_user_error(run(*evaluate_args(m, out)), "over.yaml", "weights_spad", "over by 64", out=out)
    assert "288" in line and "224" in line


def test_mapping_overflows_glb_weights(tmp_path, run):
    # C 16 moved from DRAM to GLB: GLB Weights = M16 * C256 * 9 = 36864 > 4096 (over by 32768);
    # GLB Inputs+Outputs = 256*15*15 + 16*13*13 = 57600 + 2704 = 60304 > 51200 (over by 9104).
    loops = [("DRAM", "M", 24, None), ("GLB", "C", 16, None)] + GOOD_LOOPS[2:]
    m = write_mapping(tmp_path, mapping_yaml(loops), "over.yaml")
    out = tmp_path / "out.json"
    line = assert_user_error(run(*evaluate_args(m, out)), "over.yaml", "level GLB", "over by", out=out)
    assert "over by 9104" in line or "over by 32768" in line


def test_mapping_factors_do_not_multiply(tmp_path, run):
    m = write_mapping(tmp_path, mapping_yaml(replace_loop(("DRAM", "M", 24, None), ("DRAM", "M", 12, None))))
    out = tmp_path / "out.json"
    # 12 * 16 = 192, not 384
    assert_user_error(run(*evaluate_args(m, out)), "m.yaml", "M", "192", "384", out=out)


def test_mapping_unknown_level(tmp_path, run):
    m = write_mapping(tmp_path, mapping_yaml(replace_loop(("weights_spad", "S", 3, None),
                                                          ("weight_spad", "S", 3, None))))
    out = tmp_path / "out.json"
    line = assert_user_error(run(*evaluate_args(m, out)), "m.yaml", "level", "weight_spad",
                             "did you mean 'weights_spad'", out=out)
    assert "loops[7]" in line


@pytest.mark.parametrize("loops, keep, fragments", [
    # spatial loop on a storage level
    (replace_loop(("GLB", "Q", 13, None), ("GLB", "Q", 13, "X")), None, ["loops[2].spatial", "storage"]),
    # temporal loop on the fan-out
    (replace_loop(("array", "P", 13, "X"), ("array", "P", 13, None)), None, ["loops[3].spatial", "fan-out"]),
    # a dim the level may not iterate (ifmap_spad has no temporal dims)
    ([l for l in GOOD_LOOPS if l[0] != "GLB"][:5] + [("ifmap_spad", "Q", 13, None)]
     + [l for l in GOOD_LOOPS if l[0] != "GLB"][5:], None, ["ifmap_spad", "Q", "may not have a temporal"]),
    # P 13 on Y beside R 3 and C 4: 156 > 12
    (replace_loop(("array", "P", 13, "X"), ("array", "P", 13, "Y")), None, ["array", "Y", "over by 144"]),
    # R may not be unrolled on X
    (replace_loop(("array", "R", 3, "Y"), ("array", "R", 3, "X")), None, ["array", "R", "X"]),
    # GLB may bypass only Weights
    (GOOD_LOOPS, "{GLB: [Weights, Inputs]}", ["GLB", "Outputs"]),
    (GOOD_LOOPS, "{GLB: [Weights, Inputs, Outputs, Psums]}", ["keep.GLB", "Psums"]),
    (GOOD_LOOPS, "{GLBB: [Weights]}", ["keep.GLBB", "did you mean 'GLB'"]),
])
def test_mapping_rule_violations(tmp_path, loops, keep, fragments, run):
    text = mapping_yaml(loops) if keep is None else mapping_yaml(loops, keep)
    m = write_mapping(tmp_path, text)
    out = tmp_path / "out.json"
    assert_user_error(run(*evaluate_args(m, out)), "m.yaml", *fragments, out=out)


@pytest.mark.parametrize("loops, fragments", [
    # the whole nest innermost first
    (GOOD_LOOPS[::-1], ["loops[1]", "level 'weights_spad' is listed after level 'psum_spad' (loops[0])"]),
    # one DRAM loop moved to the end
    (GOOD_LOOPS[1:] + GOOD_LOOPS[:1], ["loops[8]", "level 'DRAM' is listed after level 'psum_spad'"]),
    # a fan-out loop listed before the GLB loop outside it
    (GOOD_LOOPS[:2] + GOOD_LOOPS[3:4] + GOOD_LOOPS[2:3] + GOOD_LOOPS[4:],
     ["loops[3]", "level 'GLB' is listed after level 'array'"]),
])
def test_loops_out_of_level_order_are_an_error_not_re_sorted(tmp_path, loops, fragments, run):
    """The format lists loops outermost first; a list whose levels are not in the arch's order
    has no reading in it (innermost first would also reverse each level's own loops)."""
    m = write_mapping(tmp_path, mapping_yaml(loops))
    out = tmp_path / "out.json"
    line = assert_user_error(run(*evaluate_args(m, out)), "m.yaml", *fragments, "outermost first", out=out)
    assert "DRAM, GLB, array, ifmap_spad, weights_spad, psum_spad" in line


def test_loops_in_documented_order_keep_their_order_within_a_level(tmp_path):
    """Within one level the listed order is the nest's order, outermost first, as written."""
    import mapper
    from mapper.spec import parse_yaml
    arch = mapper.load_arch("eyeriss_v1")
    swapped = [GOOD_LOOPS[1], GOOD_LOOPS[0], *GOOD_LOOPS[2:]]
    for loops in (GOOD_LOOPS, swapped):
        mapping = mapper.parse_mapping(parse_yaml(mapping_yaml(loops), "m.yaml"), arch, "m.yaml")
        assert [(l.level, l.dim, l.factor, l.spatial) for l in mapping.loops] == list(loops)


def test_malformed_mapping(tmp_path, run):
    m = write_mapping(tmp_path, "loops: [\n", "broken.yaml")
    out = tmp_path / "out.json"
    assert_user_error(run(*evaluate_args(m, out)), "broken.yaml", "malformed YAML", out=out)
    m = write_mapping(tmp_path, "- 1\n- 2\n", "list.yaml")
    assert_user_error(run(*evaluate_args(m, out)), "list.yaml", out=out)


def test_misspelled_arch_field(tmp_path, good_mapping, run):
    source = Path(__file__).resolve().parents[1] / "arch" / "eyeriss_v1.yaml"
    text = source.read_text()
    assert "    capacity: 224" in text
    arch = tmp_path / "my_arch.yaml"
    arch.write_text(text.replace("    capacity: 224", "    capacty: 224"))
    out = tmp_path / "out.json"
    line = assert_user_error(run(*evaluate_args(good_mapping, out, arch=arch)), "my_arch.yaml", "capacty",
                             "did you mean 'capacity'", out=out)
    assert re.search(r"levels\[\d\]\.capacty", line)


def test_arch_bad_value(tmp_path, good_mapping, run):
    source = Path(__file__).resolve().parents[1] / "arch" / "eyeriss_v1.yaml"
    arch = tmp_path / "my_arch.yaml"
    arch.write_text(source.read_text().replace("fanout: {X: 14, Y: 12}", "fanout: {X: 14, Y: 0}"))
    out = tmp_path / "out.json"
    assert_user_error(run(*evaluate_args(good_mapping, out, arch=arch)), "my_arch.yaml", "fanout.Y", out=out)


# ---------------------------------------------------------------------------------------
# Search options

SEARCH = ["search", "-a", "eyeriss_v1", "-p", "alexnet", "-l", "conv3", "--quiet"]


@pytest.mark.parametrize("option, fragments", [
    (["--algo", "bogus"], ["--algo", "bogus", "hybrid", "cpsat", "random", "exhaustive"]),
    (["--objective", "bogus"], ["--objective", "bogus", "energy", "delay", "edp"]),
    (["--workers", "0"], ["--workers", "0"]),
    (["--workers", "-3"], ["--workers", "-3"]),
    (["--time-limit", "0"], ["--time-limit"]),
    (["--time-limit", "-1"], ["--time-limit", "-1"]),
    (["--top", "0"], ["--top"]),
    (["--budget", "0"], ["--budget"]),
    (["--density", "weights=1.5"], ["--density", "1.5"]),
    (["--density", "weights=0"], ["--density", "weights"]),
    (["--density", "foo=0.5"], ["--density", "foo", "weights", "inputs"]),
    (["--density", "weights=lots"], ["--density", "lots"]),
    (["--density-preset", "sparse"], ["--density-preset", "sparse"]),
])
def test_search_option_errors(tmp_path, option, fragments, run):
    out = tmp_path / "out.json"
    assert_user_error(run(*SEARCH, *option, "--json", out), *fragments, out=out)


# ---------------------------------------------------------------------------------------
# Errors that once escaped as tracebacks or as click's multi-line usage errors

@pytest.mark.parametrize("value", [".inf", ".nan"])
def test_non_finite_size(tmp_path, value, run):
    prob = problem_file(tmp_path, f"{{name: a, type: conv, C: {value}, M: 4, H: 8, W: 8, R: 3, S: 3}}")
    assert_user_error(run("layers", prob), "net.yaml", "layers[0].C")


def test_non_finite_mapping_factor(tmp_path, run):
    m = write_mapping(tmp_path, mapping_yaml().replace("factor: 13, spatial: null", "factor: .inf, spatial: null"))
    out = tmp_path / "out.json"
    assert_user_error(run(*evaluate_args(m, out)), "m.yaml", "factor", out=out)


def test_evaluate_json_into_a_folder(tmp_path, good_mapping, run):
    folder = tmp_path / "results"
    folder.mkdir()
    assert_user_error(run(*evaluate_args(good_mapping, folder)), "results")


@pytest.mark.parametrize("args", [
    ["layers", "alexnet", "--batch", "0"],
    SEARCH + ["--workers", "two"],
])
def test_click_option_validation_is_one_line(args, run):
    assert_user_error(run(*args))


# ---------------------------------------------------------------------------------------
# The in-process runner is what a user sees: a representative of each kind of exit, run both ways

@pytest.mark.parametrize("case", ["spec_error", "click_usage_error", "unknown_arch", "version"])
def test_installed_command_and_in_process_runner_agree(tmp_path, case):
    prob = problem_file(tmp_path, LAYER_OK % ", strid: 2")
    args = {"spec_error": ["layers", prob],
            "click_usage_error": SEARCH + ["--workers", "two"],
            "unknown_arch": ["search", "-a", "tpu", "-p", "alexnet", "-l", "conv3"],
            "version": ["--version"]}[case]
    real, inside = run_installed(*args, cwd=tmp_path), run_in_process(*args, cwd=tmp_path)
    assert (inside.returncode, inside.stdout, inside.stderr) == (real.returncode, real.stdout, real.stderr)
    if case == "version":
        assert real.returncode == 0 and real.stdout.startswith("mapper, version ")
    else:
        assert_user_error(real)


# ---------------------------------------------------------------------------------------
# Happy paths

def test_version(run):
    res = run("--version")
    assert res.returncode == 0 and res.stderr == ""
    import mapper
    assert res.stdout.strip() == f"mapper, version {mapper.__version__}"


def test_help(run):
    res = run("--help")
    assert res.returncode == 0
    for command in ("layers", "evaluate", "search", "space"):
        assert re.search(rf"^\s+{command}\b", res.stdout, re.M), command
    assert run("evaluate", "--help").returncode == 0
    assert "--mapping" in run("evaluate", "--help").stdout


def test_layers_alexnet_prints_total(run):
    res = run("layers", "alexnet")
    assert res.returncode == 0 and res.stderr == ""
    total = [l for l in res.stdout.splitlines() if l.startswith("total")]
    assert len(total) == 1 and total[0].split()[-1] == "724,406,816"
    # conv3's row: 384 filters, 256 channels, 13x13 outputs, 3x3 filters
    conv3 = next(l for l in res.stdout.splitlines() if l.startswith("conv3")).split()
    assert conv3[-1] == f"{CONV3_MACS:,}"


def test_layers_mobilenet_json(run):
    res = run("layers", "mobilenet_v1", "--json")
    assert res.returncode == 0
    data = json.loads(res.stdout)
    assert len(data["layers"]) == 28
    assert data["macs"] == 568_740_352 == sum(l["macs"] for l in data["layers"])
    dw2 = next(l for l in data["layers"] if l["name"] == "dw2")
    assert dw2["dims"] == {"N": 1, "G": 64, "M": 1, "C": 1, "P": 56, "Q": 56, "R": 3, "S": 3}
    assert dw2["stride"] == [2, 2]


def test_layers_batch_option(run):
    res = run("layers", "alexnet", "--batch", "2", "--json")
    data = json.loads(res.stdout)
    assert data["macs"] == 2 * 724_406_816
    assert {l["dims"]["N"] for l in data["layers"]} == {2}


def totals(stdout: str) -> str:
    lines = [l for l in stdout.splitlines() if l.startswith("energy ")]
    assert len(lines) == 1, stdout
    return lines[0]


def test_evaluate_writes_result_document_and_reads_it_back(tmp_path, good_mapping, run):
    out = tmp_path / "result.json"
    res = run(*evaluate_args(good_mapping, out))
    assert res.returncode == 0, res.stderr
    doc = json.loads(out.read_text())
    assert set(doc) >= {"version", "inputs_sha256", "layer", "arch", "mapping", "cost"}
    assert re.fullmatch(r"[0-9a-f]{64}", doc["inputs_sha256"])
    import mapper
    assert doc["version"] == mapper.__version__
    assert doc["layer"]["name"] == "conv3"
    assert doc["layer"]["dims"] == {"N": 1, "G": 1, "M": 384, "C": 256, "P": 13, "Q": 13, "R": 3, "S": 3}
    assert doc["layer"]["macs"] == CONV3_MACS
    assert doc["arch"]["name"] == "eyeriss_v1"
    assert set(doc["mapping"]) >= {"loops", "keep"}
    written = [(l["level"], l["dim"], l["factor"], l["spatial"]) for l in doc["mapping"]["loops"]]
    assert sorted(written, key=str) == sorted(GOOD_LOOPS, key=str)
    assert doc["mapping"]["keep"]["GLB"] == ["Weights", "Inputs", "Outputs"]
    cost = doc["cost"]
    assert set(cost) >= {"energy_pj", "pj_per_mac", "cycles", "utilization", "edp", "macs", "levels"}
    assert cost["macs"] == CONV3_MACS

    # Hand-derived DRAM traffic. DRAM's loops are M 24 (outer) and C 16 (inner).
    # Weights: both loops index weights, so every weight is read once: 384*256*3*3.
    dram = cost["levels"]["DRAM"]
    assert dram["Weights"]["reads"] == 384 * 256 * 3 * 3 == 884_736
    # Inputs: C is the innermost relevant loop; each C step brings 16 new channels of the
    # padded 15x15 input; M (irrelevant, outside C) repeats the sweep 24 times.
    assert dram["Inputs"]["reads"] == 24 * 256 * 15 * 15 == 1_382_400
    # Outputs: GLB's tile (M16 x 13 x 13) stays while C iterates; each M step writes the
    # finished tile back once and psums start at zero, so nothing is read back.
    assert dram["Outputs"]["updates"] == 384 * 13 * 13 == 64_896
    assert dram["Outputs"]["reads"] == 0
    # Compute cycles: MACs / active PEs = 149,520,384 / (13 * 12) = 958,464; DRAM reads at
    # 2 words/cycle take (884,736 + 1,382,400) / 2 = 1,133,568 cycles, which bounds the run.
    assert CONV3_MACS // (13 * 12) == 958_464
    assert cost["cycles"] == (884_736 + 1_382_400) // 2 == 1_133_568
    assert cost["utilization"] == pytest.approx(CONV3_MACS / (1_133_568 * 168), rel=1e-12)
    assert cost["edp"] == pytest.approx(cost["energy_pj"] * cost["cycles"], rel=1e-12)
    assert cost["pj_per_mac"] == pytest.approx(cost["energy_pj"] / CONV3_MACS, rel=1e-12)
    # Every MAC's energy (1 pJ) and at least each DRAM word (200 pJ) are in the total.
    assert cost["energy_pj"] > CONV3_MACS + 200 * (884_736 + 1_382_400 + 64_896)

    line = totals(res.stdout)
    assert "cycles 1,133,568" in line and "156/168 PEs" in line

    # Reading the result document back as the mapping gives the same totals.
    again = run("evaluate", "-a", "eyeriss_v1", "-p", "alexnet", "-l", "conv3", "--mapping", out)
    assert again.returncode == 0, again.stderr
    assert totals(again.stdout) == line
    # and the same document when written again
    out2 = tmp_path / "again.json"
    assert run(*evaluate_args(out, out2)).returncode == 0
    assert json.loads(out2.read_text()) == doc


def test_result_document_of_other_layer_is_rejected(tmp_path, good_mapping, run):
    """A result for conv3 read back for conv4 (G 2, C 192 per group): the factors no longer multiply."""
    out = tmp_path / "result.json"
    assert run(*evaluate_args(good_mapping, out)).returncode == 0
    res = run("evaluate", "-a", "eyeriss_v1", "-p", "alexnet", "-l", "conv4", "--mapping", out)
    assert_user_error(res, "result.json", "conv4", "factors multiply to")


def test_space_command(run):
    res = run("space", "-a", "eyeriss_v1", "-p", "alexnet", "-l", "conv3")
    assert res.returncode == 0, res.stderr
    assert "loop order at GLB" in res.stdout


def test_duplicate_field_is_an_error(tmp_path, run):
    """YAML silently keeps the last of two equal keys; a spec file must not."""
    prob = problem_file(tmp_path, "{name: a, type: conv, C: 3, M: 4, H: 8, W: 8, R: 3, S: 3, C: 5}")
    assert_user_error(run("layers", prob), "net.yaml", "'C' is given twice")
