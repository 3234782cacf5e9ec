"""Hostile input: every case ends in exit code 2 with exactly one `error:` line naming what
is wrong, no traceback, in bounded time, and no file written anywhere.

The corpus is tests/hostile/ (small files, one folder per reader, the expected words of
each error in expect.json; regenerate with tests/hostile/make_corpus.py). Inputs too big
to store (alias bombs, deep nesting, huge integers, oversized files) and files that are
not regular files (FIFOs, /dev/zero, folders) are made here for every reader. An eighth
of the stored cases, a sixth of the generated ones, a third of the option cases and every
FIFO or device also run the CLI in a subprocess (exactly what a user sees, with a timeout)
in the slow tier; in the fast tier every case calls the same entry point in-process
(tests/cli_helper.py), which is faster, except FIFOs and devices (a reader that blocks on
one would hang the test run, not just the case) and a few representatives of each reader,
which stay subprocesses.

The Ctrl-C tests at the end (marked slow) run the CLI in a pseudo-terminal in its own
session and send SIGINT to the whole process group, as a terminal does.
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cli_helper import run_in_process
from mapper.spec import MAX_DEPTH, MAX_FILE_BYTES

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).resolve().parent / "hostile"
EXPECT = json.loads((CORPUS / "expect.json").read_text())
CLI = [sys.executable, "-c", "from mapper.cli import entry; entry()"]

# How each reader is reached from the command line; FILE is the hostile input.
COMMANDS = {
    "problem": ["layers", "FILE"],
    "arch": ["space", "-a", "FILE", "-p", "alexnet", "-l", "fc8"],
    "mapping": ["evaluate", "-a", "eyeriss_v1", "-p", "alexnet", "-l", "conv3", "-m", "FILE",
                "--json", "out/r.json"],
    "result": ["export", "timeloop", "FILE", "-o", "out/map.yaml"],
    "eyexam": ["plot", "--eyexam", "FILE", "-o", "out/w.png"],
    "summary": ["plot", "sweep", "-o", "out/p.png"],          # FILE is copied to sweep/summary.csv
    "timeloop": ["convert", "timeloop-problem", "FILE", "-o", "out/p.yaml"],
}
SUFFIX = {"result": ".json", "eyexam": ".json", "summary": ".csv"}


def _bomb(levels: int) -> str:
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def _generated(kind: str) -> dict[str, tuple[str, object, list[str]]]:
    """name -> (how, content, expected words) for the inputs made at run time."""
    json_like = SUFFIX.get(kind) == ".json"
    deep = ("[" * 10_000 + "]" * 10_000) if kind != "summary" else None
    cases = {
        "fifo": ("fifo", None, ["not a regular file"]),
        "dev_zero": ("link", "/dev/zero", ["not a regular file"]),
        "dev_urandom": ("link", "/dev/urandom", ["not a regular file"]),
        "folder": ("dir", None, ["folder"]),
        "oversize": ("sparse", MAX_FILE_BYTES + 1, ["too large", f"{MAX_FILE_BYTES:,}"]),
        "missing": ("none", None, ["sweep" if kind == "summary" else "input"]),
    }
    if deep is not None:
        cases["deep_flow"] = ("text", deep, ["nested too deeply", str(MAX_DEPTH)])
        cases["deep_nest_100"] = ("text", "[" * 100 + "]" * 100, ["nested too deeply"])
        cases["int_100k_digits"] = ("text", ("[" if json_like else "x: ") + "7" * 100_000 + ("]" if json_like else ""),
                                    ["digits"])
    if not json_like and kind != "summary":
        cases["bomb_10"] = ("text", _bomb(10), ["aliases", "limit"])
        cases["deep_block"] = ("text", "".join("  " * i + f"k{i}:\n" for i in range(200)) + "  " * 200 + "v\n",
                               ["nested too deeply"])
    if kind == "summary":
        cases["huge_field"] = ("text", "network,arch,layer,energy_pj\nn,a,l," + "9" * 300_000 + "\n",
                               ["summary"])
    return cases


# The subprocess cases that stay in the fast tier: a stored file, an option, and FIFOs and
# devices for four readers (a reader that blocked on them could not be run in-process at all).
FAST_SUBPROCESS = {"arch/bandwidth_huge.yaml", "fc8 -q --json out/s.json --seed -1", "arch/generated/fifo",
                   "mapping/generated/dev_zero", "problem/generated/fifo", "result/generated/dev_urandom"}


def _tiers(values: tuple, case_id: str, in_subprocess: bool, blocks: bool = False) -> list:
    """A case's params: in-process in the fast tier; a subprocess case also in a subprocess,
    in the slow tier unless it is one of FAST_SUBPROCESS. A case that can block the process
    (`blocks`) only ever runs in a subprocess."""
    if not in_subprocess:
        return [pytest.param(*values, False, id=case_id)]
    slow = () if case_id in FAST_SUBPROCESS else (pytest.mark.slow,)
    sub = pytest.param(*values, True, id=f"{case_id}/subprocess", marks=slow)
    return [sub] if blocks else [pytest.param(*values, False, id=case_id), sub]


def _cases():
    out = []
    for i, (name, words) in enumerate(sorted(EXPECT.items())):
        kind = name.split("/")[0]
        out += _tiers((kind, ("corpus", name), words), name, i % 8 == 0)
    for kind in COMMANDS:
        for j, (name, (how, content, words)) in enumerate(_generated(kind).items()):
            blocks = how in ("fifo", "link")
            out += _tiers((kind, (how, content), words), f"{kind}/generated/{name}", blocks or j % 6 == 0, blocks)
    return out


def _place(kind: str, source, work: Path) -> Path:
    """Put the hostile input where the command reads it; returns the path to pass as FILE."""
    how, content = source
    if kind == "summary":
        (work / "sweep").mkdir()
        path = work / "sweep" / "summary.csv"
    else:
        path = work / ("input" + SUFFIX.get(kind, ".yaml"))
    if how == "corpus":
        path.write_bytes((CORPUS / content).read_bytes())
    elif how == "text":
        path.write_text(content)
    elif how == "fifo":
        os.mkfifo(path)
    elif how == "link":
        path.symlink_to(content)
    elif how == "dir":
        path.mkdir()
    elif how == "sparse":
        with open(path, "wb") as f:
            f.truncate(content)
    return path.parent if kind == "summary" else path


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


def _run(args: list[str], work: Path, subprocess_: bool, timeout: float = 60) -> tuple[int, str, str]:
    if subprocess_:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        res = subprocess.run(CLI + args, cwd=work, capture_output=True, text=True, timeout=timeout, env=env)
    else:
        res = run_in_process(*args, cwd=work)
    return res.returncode, res.stdout, res.stderr


@pytest.mark.parametrize("kind, source, words, in_subprocess", _cases())
def test_hostile_input(tmp_path, kind, source, words, in_subprocess):
    work = tmp_path / "work"
    work.mkdir()
    path = _place(kind, source, work)
    args = [str(path) if a == "FILE" else a for a in COMMANDS[kind]]
    before = _files(tmp_path)
    code, out, err = _run(args, work, in_subprocess)
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err[:3000]
    assert lines[0].startswith("error: "), lines[0]
    assert len(lines[0]) < 600, lines[0][:600]          # a message never prints an unbounded value
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert code == 2, (code, lines[0])
    assert _files(tmp_path) == before, sorted(map(str, _files(tmp_path) - before))
    assert not (work / "pwned").exists()


# ---------------------------------------------------------------------------------------
# Options: checked before any work starts (nothing written, no search run)

SEARCH = ["search", "-a", "eyeriss_v1", "-p", "alexnet", "-l", "fc8", "-q", "--json", "out/s.json"]
SWEEP = ["sweep", "-a", "eyeriss_v1", "-p", "alexnet", "--out", "out/sweep", "-q"]
OPTION_CASES = [
    (SEARCH + ["--seed", "-1"], ["--seed"]),
    (SEARCH + ["--seed", str(2 ** 40)], ["--seed"]),
    (SEARCH + ["--workers", "100000"], ["--workers", "100000"]),
    (SEARCH + ["--workers", "0"], ["--workers"]),
    (SEARCH + ["--top", "100000"], ["--top"]),
    (SEARCH + ["--top", "-1"], ["--top"]),
    (SEARCH + ["--patience", "0"], ["--patience"]),
    (SEARCH + ["--patience", "-5"], ["--patience"]),
    (SEARCH + ["--budget", "-5"], ["--budget"]),
    (SEARCH + ["--time-limit", "nan"], ["--time-limit"]),
    (SEARCH + ["--time-limit", "inf"], ["--time-limit"]),
    (SEARCH + ["--time-limit", "-0.5"], ["--time-limit"]),
    (SEARCH + ["--objective", "compute"], ["--objective", "compute"]),
    (SEARCH + ["--objective", "enrgy"], ["--objective", "did you mean 'energy'"]),
    (SEARCH + ["--algo", "cpsta"], ["--algo", "did you mean 'cpsat'"]),
    (SEARCH + ["--density", "weights=0.5,weights=0.6"], ["--density", "twice"]),
    (SEARCH + ["--density", "weights=nan"], ["--density"]),
    (SEARCH + ["--density", "=0.5"], ["--density"]),
    (SEARCH + ["--batch", "0"], ["--batch"]),
    (SEARCH + ["--batch", str(2 ** 30)], ["limit"]),
    (["search", "-a", "eyeriss_v1", "-p", "alexnet", "-l", "", "-q"], ["--layer", "empty"]),
    (["search", "-a", "eyeriss_v1", "-p", "alexnet", "-l", "conv33", "-q"], ["conv33"]),
    (["search", "-a", "eyeriss_v1\0x", "-p", "alexnet", "-q"], ["NUL"]),
    (["eyexam", "-a", "eyeriss_v1", "-p", "alexnet", "-l", "fc8", "--objective", "compute"], ["--objective"]),
    (["eyexam", "-a", "eyeriss_v1", "-p", "alexnet", "-l", "", "--workers", "1"], ["--layer"]),
    (SWEEP + ["--workers", "-1"], ["--workers"]),
    (SWEEP + ["--objective", "compute"], ["--objective"]),
    (SWEEP + ["--seed", "-3"], ["--seed"]),
    (SWEEP + ["-a", "eyeriss_v1"], ["arch 'eyeriss_v1' given twice"]),
    (SWEEP + ["-p", "alexnet"], ["network 'alexnet' given twice"]),
    (SWEEP + ["--scheduler", "tcp://127.0.0.1:1"], ["--scheduler"]),
    (SWEEP + ["--density", "inputs=2"], ["--density"]),
]


@pytest.mark.parametrize("args, words, in_subprocess", [
    p for k, (a, w) in enumerate(OPTION_CASES)
    for p in _tiers((a, w), " ".join(a[6:] if a[0] == "search" else a[-2:]), k % 3 == 0)])
def test_bad_option(tmp_path, args, words, in_subprocess):
    before = _files(tmp_path)
    code, out, err = _run(args, tmp_path, in_subprocess)
    lines = err.splitlines()
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("error: "), err[:2000]
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert code == 2
    assert _files(tmp_path) == before


def test_two_files_with_one_name_are_refused_before_anything_is_written(tmp_path):
    text = "name: same\nlayers:\n  - {name: a, type: fc, C: 4, M: 4}\n"
    (tmp_path / "one.yaml").write_text(text)
    (tmp_path / "two.yaml").write_text(text.replace("M: 4", "M: 8"))
    args = ["sweep", "-a", "eyeriss_v1", "-p", "one.yaml", "-p", "two.yaml", "--out", "out", "-q"]
    code, _, err = _run(args, tmp_path, False)
    assert code == 2 and "network 'same'" in err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------
# Names as file names, resume, permissions

def test_hostile_names_stay_inside_out_and_never_collide(tmp_path):
    from mapper.sweep import file_name
    names = ["../../etc/passwd", "/abs/path", "a\0b", ".hidden", "..", ".", "", "x" * 500, "sweep.json",
             "summary.csv", "con v", "a/b", "a_b", "a-b", "é", "e\u0301", "CONV1", "conv1"]
    seen = {}
    for n in names:
        f = file_name(n)
        assert "/" not in f and "\0" not in f and not f.startswith(".") and 0 < len(f) <= 64, (n, f)
        assert f not in seen, (n, seen.get(f))
        seen[f] = n
    assert file_name("conv1") == "conv1"         # plain names are kept as they are


@pytest.mark.parametrize("in_subprocess", [False, pytest.param(True, marks=pytest.mark.slow)],
                         ids=["in-process", "subprocess"])
def test_sweep_with_hostile_names_writes_only_inside_out(tmp_path, in_subprocess):
    prob = tmp_path / "evil.yaml"
    names = ["../../../x", "/abs/y", ".hidden", "..", "sweep.json"]
    prob.write_text('name: "../../escaped"\nlayers:\n' + "".join(
        f'  - {{name: "{n}", type: fc, C: 4, M: {4 * (i + 1)}}}\n' for i, n in enumerate(names)))
    work = tmp_path / "work"
    work.mkdir()
    before = _files(tmp_path)
    code, _, err = _run(["sweep", "-a", "eyeriss_v1", "-p", str(prob), "--out", "out", "--time-limit", "1",
                         "--workers", "1", "-q"], work, in_subprocess, timeout=300)
    assert code == 0, err
    new = _files(tmp_path) - before
    assert new and all(p.is_relative_to(work / "out") for p in new), sorted(map(str, new))
    docs = [json.loads(p.read_text()) for p in (work / "out").rglob("*.json")
            if p.parent != work / "out"]
    assert sorted(d["layer"]["name"] for d in docs) == sorted(names)


@pytest.mark.parametrize("name", ["a\\0b", "a\\tb", "a\\x1bb", "a\\x7fb", "a\\x85b"],
                         ids=["NUL", "tab", "escape", "DEL", "NEL"])
def test_layer_name_with_a_control_character_is_one_clear_error(tmp_path, name):
    prob = tmp_path / "evil.yaml"
    prob.write_text(f'name: net\nlayers:\n  - {{name: "ok", type: fc, C: 4, M: 4}}\n'
                    f'  - {{name: "{name}", type: fc, C: 8, M: 4}}\n')
    before = _files(tmp_path)
    code, out, err = _run(["sweep", "-a", "eyeriss_v1", "-p", str(prob), "--out", "out", "--time-limit", "1",
                           "--workers", "1", "-q"], tmp_path, False)
    assert code == 2 and out == "", (code, out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and str(prob) in lines[0] and "layers[1].name" in lines[0], err
    assert "control character" in lines[0] and lines[0].isprintable(), err
    assert _files(tmp_path) == before


def test_output_files_follow_the_umask(tmp_path):
    from mapper.result import write_json
    old = os.umask(0o027)
    try:
        from mapper.result import file_mode
        file_mode.cache_clear()
        write_json(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(old)
        file_mode.cache_clear()
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640


def _tiny_sweep(tmp_path, *extra):
    from mapper.arch import load_arch
    from mapper.problem import parse_network
    from mapper.sweep import sweep
    net = parse_network({"name": "tiny", "layers": [{"name": "a", "type": "fc", "C": 8, "M": 8},
                                                    {"name": "b", "type": "fc", "C": 16, "M": 4}]}, "tiny")
    settings = {"algorithm": "exhaustive", "objective": "energy", "seed": 0, "time_limit": 30.0}
    return sweep([load_arch("eyeriss_v1")], [(net, list(net.layers))], tmp_path / "out", settings,
                 workers=1, resume=True), tmp_path / "out" / "eyeriss_v1" / "tiny"


@pytest.mark.parametrize("damage", ["list", "no_cost", "search_string", "other_layer", "bad_mapping",
                                    "cost_edited", "interrupted", "not_json"])
def test_resume_redoes_doubtful_documents(tmp_path, damage):
    summary, folder = _tiny_sweep(tmp_path)
    assert summary["jobs"]["run"] == 2
    a, b = folder / "a.json", folder / "b.json"
    doc = json.loads(a.read_text())
    good = json.loads(a.read_text())
    if damage == "list":
        doc = [doc]
    elif damage == "no_cost":
        del doc["cost"]
    elif damage == "search_string":
        doc["search"] = "optimal"
    elif damage == "other_layer":       # b's document with a's hash: trusted only if it is a's
        doc = {**json.loads(b.read_text()), "inputs_sha256": doc["inputs_sha256"]}
    elif damage == "bad_mapping":
        doc["mapping"]["loops"][0]["factor"] *= 2
    elif damage == "cost_edited":
        doc["cost"]["energy_pj"] /= 2
    elif damage == "interrupted":
        doc["interrupted"] = True
    a.write_text("{not json" if damage == "not_json" else json.dumps(doc))
    (folder / f".a.json.mapper-partial-x1.tmp").write_text("half")
    summary, _ = _tiny_sweep(tmp_path)
    assert summary["jobs"] == {"total": 2, "run": 1, "skipped": 1}
    redone = json.loads(a.read_text())
    assert redone["layer"] == good["layer"] and redone["cost"] == good["cost"]
    assert not list(folder.glob(".*.tmp"))


@pytest.mark.slow
def test_mapspace_counts_are_combinatorial_and_match_enumeration():
    from mapper.arch import load_arch
    from mapper.problem import load_network
    from mapper.search.space import Space, count_factorizations, ordered_factorizations
    for n in (1, 2, 3, 12, 13, 64, 96, 224, 227, 1000, 4096):
        for k in range(6):
            assert count_factorizations(n, k) == len(ordered_factorizations(n, (None,) * k)), (n, k)
    arch = load_arch("eyeriss_v1")
    for layer in load_network("alexnet").layers:
        space = Space.build(layer, arch)
        for i, d in enumerate("NGMCPQRS"):
            n, k = layer.dims[d], len(space.dim_slots[i])
            row = next(r for r in space.report() if r[0].startswith(f"  {d} = {n} "))
            assert row[1] == f"{len(ordered_factorizations(n, (None,) * k)):,}"


def test_many_prime_factors_count_without_materializing():
    from mapper.search.space import MAX_FACTORIZATIONS, count_factorizations, ordered_factorizations
    from mapper.spec import MapperError
    n = 2 ** 24                          # 24 prime factors over 12 slots: 2.6e8 factorizations
    assert count_factorizations(n, 12) > MAX_FACTORIZATIONS
    with pytest.raises(MapperError, match="limit"):
        ordered_factorizations(n, (None,) * 12)
    with pytest.raises(MapperError, match="loop bounds"):
        count_factorizations(2 ** 61 - 1, 4)


# ---------------------------------------------------------------------------------------
# Ctrl-C (SIGINT to the process group of a CLI in a pseudo-terminal)

def _workers_of(pid: int) -> list[int]:
    """Pids of the loky worker processes that process `pid` has started (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"popen_loky" in cmdline:
            found.append(int(entry.name))
    return found


def _interrupt(args, cwd, after, twice=False, start_on=None):
    """Run the CLI in a pseudo-terminal, send SIGINT to its process group `after` seconds
    from its start (from when its first worker process appeared if `start_on` is
    "workers", from when its output first shows those bytes if they are given), and again
    0.3 s later if `twice`; return (exit code, all output, seconds from the
    Ctrl-C to the exit). A run still going 20 s after the Ctrl-C fails (a hang)."""
    master, slave = os.openpty()
    # an 80-column terminal (pytest-xdist sets COLUMNS=80 in its workers; a serial run has
    # none): the live line must still show the running jobs' best values there
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "80", "LINES": "24"}
    proc = subprocess.Popen(CLI + args, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env,
                            start_new_session=True)
    os.close(slave)
    out = b""
    start, sent = time.monotonic(), None
    clock = start if start_on is None else None
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 0.02)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    chunk = b""
                if not chunk and proc.poll() is not None:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
            if clock is None and (_workers_of(proc.pid) if start_on == "workers" else start_on in out):
                clock = time.monotonic()
            if sent is None and clock is not None and time.monotonic() - clock >= after:
                assert proc.poll() is None, "ended before Ctrl-C: " + out.decode(errors="replace")[-2000:]
                os.killpg(proc.pid, signal.SIGINT)
                sent = time.monotonic()
                if twice:
                    time.sleep(0.3)
                    os.killpg(proc.pid, signal.SIGINT)
            if sent is None and time.monotonic() - start > 120:
                raise AssertionError(f"no {start_on!r} within 120 s: " + out.decode(errors="replace")[-2000:])
            if sent is not None and time.monotonic() - sent > 20:
                raise AssertionError("still running 20 s after Ctrl-C")
        proc.wait(timeout=20)
        assert sent is not None, f"ended (exit {proc.returncode}) before {start_on!r} and the Ctrl-C: " + \
            out.decode(errors="replace")[-2000:]
        latency = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        os.close(master)
    # the issue asks for 2 s; on a loaded machine that is not a safe assertion, so the
    # measured time is printed (pytest -s) and only a hang fails
    print(f"{' '.join(args[:1])}: exit {latency:.2f} s after Ctrl-C")
    return proc.returncode, out.decode(errors="replace"), latency


@pytest.mark.slow
@pytest.mark.parametrize("workers, after", [(1, 0.3), (2, 0.3), (2, 4)])
def test_ctrl_c_stops_a_network_search(tmp_path, workers, after):
    # `after` counts from the first progress line with a best mapping (wall-clock time from
    # the start says nothing about how far a run on a loaded machine has got)
    code, out, _ = _interrupt(["search", "-a", "eyeriss_v1", "-p", "alexnet", "--time-limit", "20",
                               "--workers", str(workers), "--json", "out.json"], tmp_path, after,
                              start_on=b"best edp")
    assert code == 130, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    assert "partial: interrupted" in out
    docs = json.loads((tmp_path / "out.json").read_text())
    assert 1 <= len(docs) < 8
    # a layer the Ctrl-C stopped keeps its best so far, status budget; a layer proven before
    # it keeps its proof
    assert all(d["search"]["status"] == ("budget" if d["search"]["reason"] == "interrupted" else "optimal")
               or d["search"]["reason"] == "time limit" for d in docs), [d["search"] for d in docs]
    if after < 1:
        # 0.3 s after the first layer's first best mapping, that layer is still running; 4 s
        # after it, on a loaded machine, the layers running may all have been proven, or be
        # still setting up their mapspace (a job with nothing found yet is skipped)
        assert "budget" in {d["search"]["status"] for d in docs}
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.slow
@pytest.mark.parametrize("workers, after, twice", [(1, 0.3, False), (2, 0.3, False), (2, 4, False),
                                                   (2, 1, True), (1, 1, True)])
def test_ctrl_c_stops_a_sweep(tmp_path, workers, after, twice):
    code, out, _ = _interrupt(["sweep", "-a", "eyeriss_v1", "-p", "alexnet", "--time-limit", "20",
                               "--workers", str(workers), "--out", "out"], tmp_path, after, twice,
                              start_on=b"best edp")
    assert code == 130, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    folder = tmp_path / "out"
    docs = [json.loads(p.read_text()) for p in (folder / "eyeriss_v1" / "alexnet").glob("*.json")]
    assert len(docs) < 8
    assert not list(folder.rglob(".*.tmp"))
    if not twice:                        # the second Ctrl-C exits before the summaries
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["networks"]["alexnet"]["eyeriss_v1"]["complete"] is False
        assert "(partial)" in out
        assert all(d["search"]["status"] == "budget" for d in docs if d.get("interrupted"))
        if after < 1:       # 4 s in, the running layers may all be proven or still setting up
            assert any(d.get("interrupted") for d in docs)


def _check_search_output(tmp_path, out):
    """What an interrupted network search promises: the partial line, and a JSON file (if
    any layer finished) whose every document is a layer with a status."""
    assert "partial: interrupted" in out, out[-3000:]
    assert not list(tmp_path.glob(".*.tmp"))
    path = tmp_path / "out.json"
    if path.exists():
        docs = json.loads(path.read_text())
        assert 1 <= len(docs) < 8
        assert all(d["search"]["status"] in ("optimal", "feasible", "budget") for d in docs)


def _check_sweep_output(folder, out):
    """What an interrupted sweep promises: every file complete JSON, no temporary file, the
    summaries written, every network in them marked incomplete, the note to resume."""
    assert "interrupted" in out, out[-3000:]
    assert not list(folder.rglob(".*.tmp"))
    docs = [json.loads(p.read_text()) for p in (folder / "eyeriss_v1" / "alexnet").glob("*.json")]
    assert len(docs) < 8
    summary = json.loads((folder / "summary.json").read_text())
    assert all(not v["complete"] for net in summary["networks"].values() for v in net.values())
    assert (folder / "summary.csv").exists()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["search", "sweep"])
@pytest.mark.parametrize("delay", [0.0, 0.3, 1.0, 2.5])
def test_ctrl_c_while_workers_start(tmp_path, kind, delay):
    """Ctrl-C while the worker processes start (from the moment the first one exists: still
    importing, not yet able to take Ctrl-C, or just picking up a job) stops the run as at
    any other point: exit 130, no traceback, nothing half-written, the result marked
    partial. (Before the fix such a run waited for the workers to start: up to 5 s.)"""
    dest = ["--json", "out.json"] if kind == "search" else ["--out", "out"]
    code, out, _ = _interrupt([kind, "-a", "eyeriss_v1", "-p", "alexnet", "--time-limit", "20", "-q",
                               "--workers", "2", *dest], tmp_path, delay, start_on="workers")
    assert code == 130, out[-3000:]
    assert "Traceback" not in out and "Error" not in out, out[-3000:]
    assert "leaked" not in out, out[-3000:]                 # loky's resource tracker had to clean up
    if kind == "search":
        _check_search_output(tmp_path, out)
    else:
        _check_sweep_output(tmp_path / "out", out)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["search", "sweep"])
def test_ctrl_c_mid_search_keeps_best_of_running_layers(tmp_path, kind):
    """Ctrl-C once a search has a best mapping (its progress line shows one): the running
    layers are kept with status budget and the totals marked partial."""
    dest = ["--json", "out.json"] if kind == "search" else ["--out", "out"]
    code, out, _ = _interrupt([kind, "-a", "eyeriss_v1", "-p", "alexnet", "--time-limit", "30",
                               "--workers", "2", *dest], tmp_path, 0.3, start_on=b"best edp")
    assert code == 130, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    if kind == "search":
        _check_search_output(tmp_path, out)
        docs = json.loads((tmp_path / "out.json").read_text())
        assert "budget" in {d["search"]["status"] for d in docs}
    else:
        _check_sweep_output(tmp_path / "out", out)
        docs = [json.loads(p.read_text()) for p in (tmp_path / "out" / "eyeriss_v1" / "alexnet").glob("*.json")]
        assert all(d["search"]["status"] == "budget" for d in docs if d.get("interrupted"))
        assert any(d.get("interrupted") for d in docs)      # 0.3 s in, a layer is still running
        assert "(partial)" in out


# the Dask test's stand-in for a layer's search: module-level, so Dask can pickle it by name
_DASK_RAN: list[int] = []
_DASK_RELEASE = threading.Event()


def _fake_job(item, queue):
    _DASK_RAN.append(item)
    if item == "fail":
        raise ValueError("a job's error")
    if item:                                # the first job answers; the others wait
        _DASK_RELEASE.wait(30)
    return {"job": item}


def test_interrupted_dask_sweep_cancels_the_jobs_not_finished(monkeypatch):
    """After Ctrl-C a Dask sweep takes no further result and cancels its outstanding jobs on
    the cluster (queued ones never run), rather than leaving the cluster to finish them."""
    distributed = pytest.importorskip("dask.distributed")
    from mapper import sweep as sweep_module
    monkeypatch.setattr(sweep_module, "run_job", _fake_job)
    _DASK_RAN.clear()
    _DASK_RELEASE.clear()
    with distributed.LocalCluster(processes=False, n_workers=1, threads_per_worker=2,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        stop, got = [], []
        for item, doc in sweep_module._execute_on_dask(list(range(6)), client, lambda: bool(stop)):
            got.append(doc)
            stop.append(1)                 # Ctrl-C after the first result
        deadline = time.monotonic() + 10
        while cluster.scheduler.tasks:      # the scheduler forgets a task once it is cancelled
            assert time.monotonic() < deadline, f"jobs still on the cluster: {list(cluster.scheduler.tasks)}"
            time.sleep(0.05)
        _DASK_RELEASE.set()
    assert got == [{"job": 0}]
    assert len(_DASK_RAN) < 6               # the queued jobs never started


def test_dask_sweep_cancels_the_jobs_left_when_a_job_fails(monkeypatch):
    """A job's error ends the sweep with the other jobs cancelled on the cluster at once
    (not only once the error, whose traceback holds them, is gone)."""
    distributed = pytest.importorskip("dask.distributed")
    from mapper import sweep as sweep_module
    monkeypatch.setattr(sweep_module, "run_job", _fake_job)
    _DASK_RELEASE.clear()
    with distributed.LocalCluster(processes=False, n_workers=1, threads_per_worker=2,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        with pytest.raises(ValueError, match="a job's error") as info:
            list(sweep_module._execute_on_dask(["fail", 1, 2, 3], client, lambda: False))
        deadline = time.monotonic() + 10
        while [t for t in cluster.scheduler.tasks.values() if t.state != "erred"]:
            assert time.monotonic() < deadline, f"jobs still on the cluster: {list(cluster.scheduler.tasks)}"
            time.sleep(0.05)
        assert info.value is not None       # the error (and its traceback) is still alive here
        _DASK_RELEASE.set()
