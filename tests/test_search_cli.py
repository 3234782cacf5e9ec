"""`mapper search` as a user runs it: the installed command in a subprocess.

One layer (loop nest, breakdown, search line, a result document that `mapper evaluate`
reads back to the same totals), --top, a whole small network with a repeated layer shape,
user errors (one `error:` line, exit code 2, no output file), progress on a non-terminal
stderr, and Ctrl-C (SIGINT to the process group): exit 130 with the best mapping so far
written.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mapper.mapping import parse_mapping, problems_of
from mapper.model import evaluate
from mapper.problem import load_network
from mapper.arch import load_arch

MAPPER = shutil.which("mapper") or str(Path(sys.executable).parent / "mapper")
SEARCH_KEYS = {"algorithm", "objective", "seed", "workers", "evaluated", "valid", "seconds", "status",
               "bound", "gap"}

TINY_PROBLEM = """\
name: tiny
layers:
  - {name: c1, type: conv, C: 2, M: 4, H: 6, W: 6, R: 3, S: 3, stride: 1, pad: 0}
  - {name: c2, type: conv, C: 4, M: 4, H: 4, W: 4, R: 3, S: 3, stride: 1, pad: 1}
  - {name: c3, type: conv, C: 4, M: 4, H: 4, W: 4, R: 3, S: 3, stride: 1, pad: 1}
  - {name: fc, type: fc, C: 16, M: 8}
"""


def run(*args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([MAPPER, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def totals_line(stdout: str) -> str:
    lines = [l for l in stdout.splitlines() if l.startswith("energy ") and " pJ" in l]
    assert lines, stdout
    return lines[-1]


def search_line(stdout: str) -> str:
    lines = [l for l in stdout.splitlines() if l.startswith("search:")]
    assert len(lines) == 1, stdout
    return lines[0]


def check_document(doc: dict, arch_name: str, problem: str, layer_name: str) -> None:
    """A result document: its mapping is valid and re-evaluates to its own cost."""
    assert isinstance(doc, dict)
    assert {"version", "inputs_sha256", "layer", "arch", "mapping", "cost", "search"} <= set(doc)
    assert SEARCH_KEYS <= set(doc["search"])
    arch = load_arch(arch_name)
    layer = load_network(problem).layer(layer_name)
    assert doc["layer"]["name"] == layer_name
    m = parse_mapping(doc, arch, "doc")
    assert problems_of(m, layer, arch) == []
    cost = evaluate(layer, arch, m)
    assert cost.energy_pj == doc["cost"]["energy_pj"] and cost.cycles == doc["cost"]["cycles"]


# ---------------------------------------------------------------------------------------
# One layer

@pytest.fixture(scope="module")
def conv3(tmp_path_factory):
    d = tmp_path_factory.mktemp("conv3")
    # a time limit the proof cannot miss (conv3 on v1 is proven in seconds)
    res = run("search", "--arch", "eyeriss_v1", "--problem", "alexnet", "--layer", "conv3",
              "--time-limit", "3600", "--json", "out.json", "--quiet", cwd=d)
    return d, res


@pytest.mark.slow
def test_search_one_layer_prints_nest_breakdown_and_status(conv3):
    d, res = conv3
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "=== conv3 on eyeriss_v1" in out
    # the loop nest: every level, loops, the MACs
    for level in ("DRAM [", "GLB [", "array (fan-out 14 x 12)", "ifmap_spad [", "weights_spad [", "psum_spad ["):
        assert level in out, level
    assert re.search(r"\| for [NGMCPQRS] in \[0:\d+\)", out)
    assert "<< MAC >>" in out
    # the breakdown table
    assert re.search(r"^level\s+tensor\s+reads \(words\)\s+fills \(words\)\s+updates \(words\)\s+energy pJ\s+share",
                     out, re.M)
    assert re.search(r"^MAC\s+\(MACs\)\s+149,520,384", out, re.M)
    line = search_line(out)
    assert "status optimal" in line and "hybrid" in line and "objective edp" in line
    assert res.stderr == ""            # --quiet: no progress


@pytest.mark.slow
def test_search_json_is_one_result_document(conv3):
    d, res = conv3
    assert res.returncode == 0, res.stderr
    doc = json.loads((d / "out.json").read_text())
    assert isinstance(doc, dict)
    s = doc["search"]
    assert s["status"] == "optimal" and s["algorithm"] == "hybrid" and s["objective"] == "edp"
    assert s["gap"] == 0 and s["bound"] <= doc["cost"]["edp"] * (1 + 1e-9)
    assert s["time_limit"] == 3600
    check_document(doc, "eyeriss_v1", "alexnet", "conv3")
    # the printed totals are the document's
    assert f"energy {doc['cost']['energy_pj']:,.1f} pJ" in totals_line(res.stdout)


@pytest.mark.slow
def test_evaluate_reads_the_search_result_back(conv3):
    d, res = conv3
    assert res.returncode == 0, res.stderr
    ev = run("evaluate", "--arch", "eyeriss_v1", "--problem", "alexnet", "--layer", "conv3",
             "--mapping", "out.json", "--json", "again.json", cwd=d)
    assert ev.returncode == 0, ev.stderr
    assert totals_line(ev.stdout) == totals_line(res.stdout)
    again = json.loads((d / "again.json").read_text())
    first = json.loads((d / "out.json").read_text())
    assert again["cost"] == first["cost"]
    assert again["mapping"] == first["mapping"]


@pytest.mark.slow
def test_top3_writes_three_documents_best_first(tmp_path):
    res = run("search", "--arch", "eyeriss_v1", "--problem", "alexnet", "--layer", "fc8", "--time-limit", "30",
              "--top", "3", "--json", "top.json", "--quiet", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    docs = json.loads((tmp_path / "top.json").read_text())
    assert isinstance(docs, list) and len(docs) == 3
    edps = [d["cost"]["edp"] for d in docs]
    assert edps == sorted(edps)
    assert [d["search"]["rank"] for d in docs] == [1, 2, 3]
    assert len({json.dumps(d["mapping"], sort_keys=True) for d in docs}) == 3
    for d in docs:
        check_document(d, "eyeriss_v1", "alexnet", "fc8")
    assert res.stdout.count("--- mapping ") == 3
    assert len(re.findall(r"^energy .* pJ", res.stdout, re.M)) == 3


# ---------------------------------------------------------------------------------------
# A whole network

@pytest.mark.slow
def test_search_network_reuses_identical_layers(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY_PROBLEM)
    res = run("search", "--arch", "eyeriss_v1", "--problem", "tiny.yaml", "--workers", "2",
              "--json", "net.json", "--quiet", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    for name in ("c1", "c2", "c3", "fc"):
        assert f"=== {name} on eyeriss_v1" in out
    lines = [l for l in out.splitlines() if l.startswith("search:")]
    assert len(lines) == 4
    assert "reused" in lines[2] and "c2" in lines[2], lines[2]      # c3 has c2's shape
    assert not any("reused" in l for l in (lines[0], lines[1], lines[3]))
    net = [l for l in out.splitlines() if l.startswith("network:")]
    assert len(net) == 1 and "inferences/s" in net[0]
    docs = json.loads((tmp_path / "net.json").read_text())
    assert isinstance(docs, list) and [d["layer"]["name"] for d in docs] == ["c1", "c2", "c3", "fc"]
    net_problem = str(tmp_path / "tiny.yaml")
    for d in docs:
        check_document(d, "eyeriss_v1", net_problem, d["layer"]["name"])
    assert docs[2]["mapping"] == docs[1]["mapping"] and docs[2]["cost"] == docs[1]["cost"]
    # the network total is the sum of the layers' energies and cycles
    energy = sum(d["cost"]["energy_pj"] for d in docs)
    cycles = sum(d["cost"]["cycles"] for d in docs)
    assert f"network: {energy:,.0f} pJ" in net[0], net[0]
    assert f"{cycles:,} cycles" in net[0], net[0]
    total = [l for l in out.splitlines() if l.startswith("total ")]
    assert len(total) == 1


# ---------------------------------------------------------------------------------------
# User errors

@pytest.mark.parametrize("args,fragments", [
    (["--layer", "conv9"], ["conv9", "conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]),
    (["--layer", "conv3", "--algo", "nope"], ["--algo", "nope", "hybrid", "cpsat", "random", "exhaustive"]),
    (["--layer", "conv3", "--objective", "nope"], ["--objective", "nope", "energy", "delay", "edp"]),
    (["--layer", "conv3", "--time-limit", "0"], ["--time-limit"]),
    (["--layer", "conv3", "--workers", "0"], ["--workers"]),
    (["--layer", "conv3", "--top", "0"], ["--top"]),
    (["--layer", "conv3", "--budget", "0"], ["--budget"]),
], ids=["unknown-layer", "algo", "objective", "time-limit", "workers", "top", "budget"])
def test_user_errors(tmp_path, args, fragments):
    out = tmp_path / "out.json"
    res = run("search", "--arch", "eyeriss_v1", "--problem", "alexnet", *args, "--json", out, cwd=tmp_path,
              timeout=60)
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error:"), lines[0]
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    assert res.returncode == 2
    assert res.stdout == ""
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


IMPOSSIBLE_ARCH = """\
name: no_room_for_r
mac: {energy: 1.0}
levels:
  - name: DRAM
    keeps: [Weights, Inputs, Outputs]
    temporal_dims: [N, G, M, C, P, Q, S]
    energy: 200.0
  - name: array
    fanout: {X: 4, Y: 3}
    energy: 2.0
  - name: RF
    keeps: [Weights, Inputs, Outputs]
    capacity: 64
    temporal_dims: [C, S]
    energy: 1.0
"""


def test_impossible_constraint_is_one_error_line(tmp_path):
    (tmp_path / "arch.yaml").write_text(IMPOSSIBLE_ARCH)
    (tmp_path / "p.yaml").write_text("name: p\nlayers:\n  - {name: wide, type: conv, C: 2, M: 2, H: 7, W: 3, "
                                     "R: 5, S: 3, stride: 1, pad: 0}\n")
    out = tmp_path / "out.json"
    res = run("search", "--arch", "arch.yaml", "--problem", "p.yaml", "--layer", "wide", "--json", out,
              cwd=tmp_path, timeout=60)
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no valid mapping"), res.stderr
    assert "R = 5" in lines[0] and "array.Y" in lines[0]
    assert res.returncode == 2
    assert not out.exists()


# ---------------------------------------------------------------------------------------
# Progress

def test_progress_on_a_pipe_is_plain_lines(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY_PROBLEM)
    res = run("search", "--arch", "eyeriss_v1", "--problem", "tiny.yaml", "--layer", "c1", "--workers", "1",
              cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stderr.strip(), "no progress at all on stderr"
    assert "\r" not in res.stderr
    for line in res.stderr.splitlines():
        assert line.startswith("[c1] "), line
        assert "evaluated" in line
    assert "\r" not in res.stdout


def _final_progress(stderr: str, tty: bool) -> str:
    """The progress line left on screen: a terminal shows the last frame of the rewritten line."""
    if tty:
        return stderr.rstrip("\n").split("\r")[-1].rstrip()
    return stderr.splitlines()[-1]


def _assert_progress_ends_on_result(last: str, doc: dict) -> None:
    s = doc["search"]
    edp = doc["cost"]["energy_pj"] * doc["cost"]["cycles"]
    assert last.startswith("[c1] done: "), last
    assert f"best edp {edp:.4g} pJ*cycles" in last, last
    assert f"status {s['status']} ({s['reason']})" in last, last
    assert f"{s['evaluated']:,} candidates evaluated" in last, last


def test_progress_on_a_pipe_ends_on_the_result(tmp_path):
    """The last progress line is the result written, not the last phase's throttled state."""
    (tmp_path / "tiny.yaml").write_text(TINY_PROBLEM)
    res = run("search", "--arch", "eyeriss_v1", "--problem", "tiny.yaml", "--layer", "c1", "--workers", "1",
              "--json", "out.json", cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr
    _assert_progress_ends_on_result(_final_progress(res.stderr, tty=False),
                                    json.loads((tmp_path / "out.json").read_text()))


def test_progress_on_a_terminal_ends_on_the_result(tmp_path):
    """On a terminal (a pty as stderr) the rewritten line's last frame is the result, and
    the line is ended before the output."""
    import pty
    (tmp_path / "tiny.yaml").write_text(TINY_PROBLEM)
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([MAPPER, "search", "--arch", "eyeriss_v1", "--problem", "tiny.yaml", "--layer",
                                 "c1", "--workers", "1", "--json", "out.json"], cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=slave, text=True,
                                env={**os.environ, "COLUMNS": "1000"})   # a wide terminal: no cut
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:             # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        stdout = proc.communicate(timeout=120)[0]
    finally:
        os.close(master)
    stderr = b"".join(chunks).decode().replace("\r\n", "\n")     # the pty's own line ending
    assert proc.returncode == 0, stderr
    assert "\r" in stderr, "not drawn as a terminal line"
    assert stderr.endswith("\n")
    _assert_progress_ends_on_result(_final_progress(stderr, tty=True),
                                    json.loads((tmp_path / "out.json").read_text()))
    assert "search: hybrid" in stdout


def test_quiet_means_no_progress(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY_PROBLEM)
    res = run("search", "--arch", "eyeriss_v1", "--problem", "tiny.yaml", "--layer", "c1", "--workers", "1",
              "--quiet", cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    assert "status optimal" in search_line(res.stdout)


# ---------------------------------------------------------------------------------------
# Ctrl-C

def test_sigint_stops_and_writes_best_so_far(tmp_path):
    proc = subprocess.Popen([MAPPER, "search", "--arch", "eyeriss_v1", "--problem", "alexnet", "--layer", "conv4",
                             "--algo", "random", "--patience", "100000000", "--workers", "2", "--json", "out.json"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    # Ctrl-C once the search reports progress (it is running, its handler installed), not
    # after a fixed sleep: on a loaded machine 4 s may not even get Python started
    watchdog = threading.Timer(300, os.killpg, (proc.pid, signal.SIGKILL))
    watchdog.start()
    try:
        first = proc.stderr.readline()
        assert proc.poll() is None, "the search ended before Ctrl-C: " + first + proc.stderr.read()
        assert "evaluated" in first, first
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
        stderr = first + stderr
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, (proc.returncode, stderr[-2000:])
    assert "Traceback" not in stderr, stderr
    doc = json.loads((tmp_path / "out.json").read_text())
    assert doc["search"]["status"] == "budget"
    assert doc["search"]["algorithm"] == "random"
    check_document(doc, "eyeriss_v1", "alexnet", "conv4")
    line = search_line(stdout)
    assert "interrupted" in line and "status budget" in line
    assert f"energy {doc['cost']['energy_pj']:,.1f} pJ" in totals_line(stdout)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.json.")]


def test_matmul_layer_prints_its_operands_and_costs_as_its_loop_nest(tmp_path):
    """A matmul searched from the CLI names A, B and Out; its cost is the cost of the
    conv loop nest it maps onto (fc with C = K, M = N and the rows as the batch N)."""
    (tmp_path / "mm.yaml").write_text("name: mm\nlayers:\n  - {name: q, type: matmul, M: 8, N: 6, K: 4}\n"
                                      "  - {name: f, type: fc, N: 8, C: 4, M: 6}\n")
    res = run("search", "--arch", "eyeriss_v1", "--problem", "mm.yaml", "--layer", "q", "--algo", "random",
              "--seed", "1", "--time-limit", "5", "--json", "q.json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "B (Weights)" in res.stdout and "A (Inputs)" in res.stdout and "Out (Outputs)" in res.stdout
    doc = json.loads((tmp_path / "q.json").read_text())
    assert doc["cost"]["macs"] == 8 * 6 * 4
    net = load_network(tmp_path / "mm.yaml")
    arch = load_arch("eyeriss_v1")
    mapping = parse_mapping(doc["mapping"], arch, "q.json")
    same = evaluate(net.layer("f"), arch, mapping)
    assert same.energy_pj == pytest.approx(doc["cost"]["energy_pj"]) and same.cycles == doc["cost"]["cycles"]


@pytest.mark.slow
@pytest.mark.parametrize("after", [0.3, 0.6, 1.0, 2.0])
def test_sigint_at_any_point_of_a_parallel_search_exits_130_without_traceback(tmp_path, after):
    """Wherever the Ctrl-C lands (importing, building the mapspace, workers starting, mid
    round) the run ends 130 with no traceback and no half-written file; if a mapping was
    already found, the JSON holds it with status budget. The times only spread the landing
    points: every assertion holds wherever it lands."""
    proc = subprocess.Popen([MAPPER, "search", "--arch", "eyeriss_v1", "--problem", "alexnet", "--layer", "conv4",
                             "--algo", "random", "--patience", "100000000", "--workers", "2", "--json", "out.json"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        time.sleep(after)
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)       # a hang guard, not a speed check
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, (proc.returncode, stderr[-2000:])
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.json.")]
    if (tmp_path / "out.json").exists():
        doc = json.loads((tmp_path / "out.json").read_text())
        assert doc["search"]["status"] == "budget" and doc["search"]["reason"] == "interrupted"
    else:
        assert "interrupted" in stderr
