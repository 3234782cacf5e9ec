"""Sweeps: results folder, reuse of identical layers, resume after Ctrl-C or a kill,
the Dask backend, and the sweep's user errors."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

MAPPER = str(Path(sys.executable).with_name("mapper"))
if not Path(MAPPER).exists():
    MAPPER = "mapper"

# Small distinct layers (searches finish with a proof, so results are deterministic),
# plus a repeat of layer b that must be reused, not searched again.
NET = """name: tiny
layers:
  - {name: a, type: conv, C: 4, M: 8, H: 8, W: 8, R: 3, S: 3}
  - {name: b, type: conv, C: 8, M: 8, H: 6, W: 6, R: 1, S: 1}
  - {name: b2, type: conv, C: 8, M: 8, H: 6, W: 6, R: 1, S: 1}
  - {name: d, type: depthwise, C: 8, H: 6, W: 6, R: 3, S: 3, pad: 1}
  - {name: e, type: conv, C: 2, M: 6, H: 7, W: 7, R: 3, S: 3, stride: 2}
  - {name: f, type: fc, C: 32, M: 12}
"""
LAYERS = ["a", "b", "b2", "d", "e", "f"]
# A time limit no search of these layers can reach, so every result is a finished proof
# however loaded the machine is (the layers are proven in well under a second each).
BUDGET = ("--time-limit", "3600")


def run(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([MAPPER, *map(str, args)], capture_output=True, text=True, timeout=600, **kw)


@pytest.fixture(scope="module")
def net(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("net") / "tiny.yaml"
    path.write_text(NET)
    return path


@pytest.fixture(scope="module")
def reference(net, tmp_path_factory) -> Path:
    """An uninterrupted sweep over both archs."""
    out = tmp_path_factory.mktemp("ref") / "out"
    res = run("sweep", "-a", "eyeriss_v1", "-a", "eyeriss_v2", "-p", net, "--out", out, "--workers", "2", *BUDGET, "-q")
    assert res.returncode == 0, res.stderr
    return out


def rows(out: Path) -> list[dict]:
    with open(out / "summary.csv") as fh:
        return list(csv.DictReader(fh))


def comparable(out: Path) -> list[tuple]:
    """Everything a sweep decides (not how long it took)."""
    return [tuple((k, v) for k, v in r.items() if k != "seconds") for r in rows(out)]


def assert_no_partial_files(out: Path) -> None:
    for path in out.rglob("*"):
        assert not path.name.endswith(".tmp"), f"temporary file left behind: {path}"
        if path.suffix == ".json":
            json.loads(path.read_text())           # every file is complete JSON


@pytest.mark.slow
def test_results_folder(reference):
    summary = rows(reference)
    assert [r["layer"] for r in summary] == LAYERS * 2
    assert {r["arch"] for r in summary} == {"eyeriss_v1", "eyeriss_v2"}
    for r in summary:
        assert r["status"] == "optimal"
        assert float(r["pj_per_mac"]) == pytest.approx(float(r["energy_pj"]) / int(r["macs"]))
        # energy per level columns are filled exactly for the levels the arch has
        has_glb = r["energy_GLB_pj"] != ""
        assert has_glb
        assert (r["energy_ifmap_spad_pj"] != "") == (r["arch"] == "eyeriss_v1")
        assert (r["energy_iact_spad_pj"] != "") == (r["arch"] == "eyeriss_v2")
        levels = sum(float(v) for k, v in r.items() if k.startswith("energy_") and k != "energy_pj" and v)
        assert levels < float(r["energy_pj"])      # MACs and networks are the rest
    for arch in ("eyeriss_v1", "eyeriss_v2"):
        docs = {name: json.loads((reference / arch / "tiny" / f"{name}.json").read_text()) for name in LAYERS}
        assert docs["b2"]["reused_from"] == "b"
        assert docs["b2"]["mapping"] == docs["b"]["mapping"]
        assert docs["b2"]["layer"]["name"] == "b2"
        r_b2 = [r for r in summary if r["arch"] == arch and r["layer"] == "b2"][0]
        assert float(r_b2["seconds"]) == 0.0       # searched once, for b
    totals = json.loads((reference / "summary.json").read_text())["networks"]["tiny"]
    for arch, t in totals.items():
        mine = [r for r in summary if r["arch"] == arch]
        assert t["energy_pj"] == pytest.approx(sum(float(r["energy_pj"]) for r in mine))
        assert t["cycles"] == sum(int(r["cycles"]) for r in mine)
        clock = 200e6
        assert t["latency_ms"] == pytest.approx(1e3 * t["cycles"] / clock)
        assert t["inferences_per_j"] == pytest.approx(1e12 / t["energy_pj"])
        assert t["complete"]


@pytest.mark.slow
def test_resume_skips_and_recomputes_changed_inputs(reference, net, tmp_path):
    out = tmp_path / "out"
    import shutil
    shutil.copytree(reference, out)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.json") if p.parent.name == "tiny"}
    res = run("sweep", "-a", "eyeriss_v1", "-a", "eyeriss_v2", "-p", net, "--out", out, "--resume", *BUDGET, "-q")
    assert res.returncode == 0, res.stderr
    assert "0 run" in res.stdout
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())
    # a different objective changes every input hash: everything is searched again
    res = run("sweep", "-a", "eyeriss_v1", "-p", net, "--out", out, "--resume", "--objective", "energy", *BUDGET,
              "-q")
    assert res.returncode == 0, res.stderr
    assert "5 run" in res.stdout       # six layers, one reused
    doc = json.loads((out / "eyeriss_v1" / "tiny" / "a.json").read_text())
    assert doc["search"]["objective"] == "energy"


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_sweep_resumes_to_the_same_results(reference, net, tmp_path, sig):
    out = tmp_path / "out"
    args = ["sweep", "-a", "eyeriss_v1", "-a", "eyeriss_v2", "-p", str(net), "--out", str(out), "--workers", "1",
            *BUDGET]
    proc = subprocess.Popen([MAPPER, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    # wait for the first result, then interrupt mid-run
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(out.rglob("tiny/*.json")):
        time.sleep(0.05)
    os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=120)
    if sig == signal.SIGINT:
        assert proc.returncode == 130, err
        assert "Traceback" not in err
    else:
        assert proc.returncode == -signal.SIGKILL
    finished = list(out.rglob("tiny/*.json"))
    assert 0 < len(finished) < 2 * len(LAYERS), "the interruption should land mid-run"
    assert_no_partial_files(out)
    res = run(*args, "--resume", "-q")
    assert res.returncode == 0, res.stderr
    assert comparable(out) == comparable(reference)
    for path in reference.rglob("tiny/*.json"):
        mine = json.loads((out / path.relative_to(reference)).read_text())
        theirs = json.loads(path.read_text())
        assert mine["mapping"] == theirs["mapping"]
        assert mine["cost"] == theirs["cost"]


def _dask_sweep(net, out_path, queue):
    """Start a two-worker LocalCluster on 127.0.0.1 and sweep through its scheduler address."""
    from dask.distributed import LocalCluster
    with LocalCluster(host="127.0.0.1", n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        res = run("sweep", "-a", "eyeriss_v1", "-p", net, "--out", out_path, "--backend", "dask",
                  "--scheduler", cluster.scheduler_address, *BUDGET, "-q")
        queue.put((res.returncode, res.stderr))


@pytest.mark.slow
def test_dask_cluster_gives_the_local_results(reference, net, tmp_path):
    pytest.importorskip("dask.distributed")
    import multiprocessing
    out = tmp_path / "out"
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_dask_sweep, args=(str(net), str(out), queue))
    proc.start()
    code, err = queue.get(timeout=300)
    proc.join(60)
    assert code == 0, err
    mine = comparable(out)
    keys = {k for k, _ in mine[0]}            # the reference also has eyeriss_v2's level columns
    local = [tuple((k, v) for k, v in r if k in keys) for r in comparable(reference) if dict(r)["arch"] == "eyeriss_v1"]
    assert mine == local


@pytest.mark.slow
def test_unreachable_scheduler_fails(net, tmp_path):
    # (the sweep's own 10 s connect timeout is not asserted: no wall-clock assertions; run's
    # subprocess timeout catches a hang)
    res = run("sweep", "-a", "eyeriss_v1", "-p", net, "--out", tmp_path / "out", "--backend", "dask",
              "--scheduler", "tcp://127.0.0.1:9")
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "tcp://127.0.0.1:9" in lines[0]


def test_incompatible_results_folder(net, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "sweep.json").write_text(json.dumps({"format": 999, "version": "9.9"}))
    res = run("sweep", "-a", "eyeriss_v1", "-p", net, "--out", out, "--resume")
    assert res.returncode == 2
    assert res.stderr.startswith("error:") and "incompatible" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_unwritable_output_folder(net, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    res = run("sweep", "-a", "eyeriss_v1", "-p", net, "--out", blocker / "out")
    assert res.returncode == 2
    assert res.stderr.startswith("error:") and "cannot write" in res.stderr


def test_unknown_arch_lists_builtins(net, tmp_path):
    res = run("sweep", "-a", "eyeriss_v9", "-p", net, "--out", tmp_path / "out")
    assert res.returncode == 2
    assert "eyeriss_v1" in res.stderr and "eyeriss_v2" in res.stderr


@pytest.mark.parametrize("case", ["out_is_a_file", "marker_not_an_object", "malformed_scheduler"])
def test_more_bad_sweep_inputs_are_one_line(net, tmp_path, case):
    out, extra = tmp_path / "out", []
    if case == "out_is_a_file":
        out.write_text("a file")
        extra = ["--resume"]
    elif case == "marker_not_an_object":
        out.mkdir()
        (out / "sweep.json").write_text("[1]")
    else:
        pytest.importorskip("dask.distributed")
        extra = ["--backend", "dask", "--scheduler", "foo:bar"]
    res = run("sweep", "-a", "eyeriss_v1", "-p", net, "--out", out, *extra)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    assert ("foo:bar" if case == "malformed_scheduler" else str(out)) in lines[0]
