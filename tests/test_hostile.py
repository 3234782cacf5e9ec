"""Hostile input: every case ends in exit code 2 with exactly one `error:` line naming what
is wrong, no traceback, in bounded time, and no file written anywhere.

The corpus is tests/hostile/ (small files, one folder per reader, the expected words of
each error in expect.json; regenerate with tests/hostile/make_corpus.py). Inputs too big
to store (alias bombs, deep nesting, huge integers, oversized files) and files that are
not regular files (FIFOs, /dev/zero, folders) are made here for every reader. An eighth
of the stored cases, a sixth of the generated ones and every FIFO or device run the CLI
in a subprocess (exactly what a user sees, with a timeout); the rest call the same entry
point in-process, which is faster.

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
import time
from pathlib import Path

import pytest

from mapper.cli import entry
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


def _cases():
    out = []
    for i, (name, words) in enumerate(sorted(EXPECT.items())):
        kind = name.split("/")[0]
        out.append(pytest.param(kind, ("corpus", name), words, i % 8 == 0, id=name))
    for kind in COMMANDS:
        for j, (name, (how, content, words)) in enumerate(_generated(kind).items()):
            sub = how in ("fifo", "link") or j % 6 == 0
            out.append(pytest.param(kind, (how, content), words, sub, id=f"{kind}/generated/{name}"))
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


def _run(args: list[str], work: Path, subprocess_: bool, capsys, monkeypatch) -> tuple[int, str, str]:
    if subprocess_:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        res = subprocess.run(CLI + args, cwd=work, capture_output=True, text=True, timeout=60, env=env)
        return res.returncode, res.stdout, res.stderr
    monkeypatch.chdir(work)
    monkeypatch.setattr(sys, "argv", ["mapper", *args])
    code = 0
    try:
        entry()
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("kind, source, words, in_subprocess", _cases())
def test_hostile_input(tmp_path, capsys, monkeypatch, kind, source, words, in_subprocess):
    work = tmp_path / "work"
    work.mkdir()
    path = _place(kind, source, work)
    args = [str(path) if a == "FILE" else a for a in COMMANDS[kind]]
    before = _files(tmp_path)
    code, out, err = _run(args, work, in_subprocess, capsys, monkeypatch)
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


@pytest.mark.parametrize("args, words", OPTION_CASES, ids=[" ".join(a[6:] if a[0] == "search" else a[-2:])
                                                           for a, _ in OPTION_CASES])
def test_bad_option(tmp_path, capsys, monkeypatch, args, words):
    before = _files(tmp_path)
    in_subprocess = OPTION_CASES.index((args, words)) % 3 == 0
    code, out, err = _run(args, tmp_path, in_subprocess, capsys, monkeypatch)
    lines = err.splitlines()
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("error: "), err[:2000]
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert code == 2
    assert _files(tmp_path) == before


def test_two_files_with_one_name_are_refused_before_anything_is_written(tmp_path, capsys, monkeypatch):
    text = "name: same\nlayers:\n  - {name: a, type: fc, C: 4, M: 4}\n"
    (tmp_path / "one.yaml").write_text(text)
    (tmp_path / "two.yaml").write_text(text.replace("M: 4", "M: 8"))
    args = ["sweep", "-a", "eyeriss_v1", "-p", "one.yaml", "-p", "two.yaml", "--out", "out", "-q"]
    code, _, err = _run(args, tmp_path, False, capsys, monkeypatch)
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


def test_sweep_with_hostile_names_writes_only_inside_out(tmp_path):
    prob = tmp_path / "evil.yaml"
    prob.write_text('name: "../../escaped"\nlayers:\n'
                    '  - {name: "../../../x", type: fc, C: 4, M: 4}\n'
                    '  - {name: "/abs/y", type: fc, C: 4, M: 8}\n'
                    '  - {name: "a\\0b", type: fc, C: 8, M: 4}\n')
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    before = _files(tmp_path)
    res = subprocess.run(CLI + ["sweep", "-a", "eyeriss_v1", "-p", str(prob), "--out", "out", "--time-limit", "5",
                                "--workers", "1", "-q"], cwd=work, capture_output=True, text=True, timeout=300,
                         env=env)
    assert res.returncode == 0, res.stderr
    new = _files(tmp_path) - before
    assert new and all(p.is_relative_to(work / "out") for p in new), sorted(map(str, new))
    docs = [json.loads(p.read_text()) for p in (work / "out").rglob("*.json")
            if p.name not in ("sweep.json", "summary.json")]
    assert sorted(d["layer"]["name"] for d in docs) == ["../../../x", "/abs/y", "a\0b"]


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

def _interrupt(args, cwd, after, twice=False):
    """Run the CLI in a pseudo-terminal, send SIGINT to its process group `after` seconds
    (and again 0.3 s later if `twice`); return (exit code, all output)."""
    master, slave = os.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(CLI + args, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env,
                            start_new_session=True)
    os.close(slave)
    out = b""
    start, sent = time.monotonic(), False
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 0.05)
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
            if not sent and time.monotonic() - start >= after:
                assert proc.poll() is None, "ended before Ctrl-C: " + out.decode(errors="replace")[-2000:]
                os.killpg(proc.pid, signal.SIGINT)
                if twice:
                    time.sleep(0.3)
                    os.killpg(proc.pid, signal.SIGINT)
                sent = True
            if time.monotonic() - start > after + 30:
                raise AssertionError("still running 30 s after Ctrl-C")
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        os.close(master)
    return proc.returncode, out.decode(errors="replace")


@pytest.mark.slow
@pytest.mark.parametrize("workers, after", [(1, 5), (2, 5), (2, 9)])
def test_ctrl_c_stops_a_network_search(tmp_path, workers, after):
    code, out = _interrupt(["search", "-a", "eyeriss_v1", "-p", "alexnet", "--time-limit", "20", "-q",
                            "--workers", str(workers), "--json", "out.json"], tmp_path, after)
    assert code == 130, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    assert "partial: interrupted" in out
    docs = json.loads((tmp_path / "out.json").read_text())
    assert 1 <= len(docs) < 8
    assert "budget" in {d["search"]["status"] for d in docs}
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.slow
@pytest.mark.parametrize("workers, after, twice", [(1, 5, False), (2, 5, False), (2, 9, False), (2, 6, True),
                                                   (1, 6, True)])
def test_ctrl_c_stops_a_sweep(tmp_path, workers, after, twice):
    code, out = _interrupt(["sweep", "-a", "eyeriss_v1", "-p", "alexnet", "--time-limit", "20", "-q",
                            "--workers", str(workers), "--out", "out"], tmp_path, after, twice)
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
        assert any(d.get("interrupted") and d["search"]["status"] == "budget" for d in docs)
