"""Hostile output paths and degenerate inputs: one error line, exit 2, nothing replaced or left behind."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SEARCH = ["search", "-a", "eyeriss_v1", "-p", "alexnet", "-q", "--workers", "1", "-l", "fc8", "--time-limit", "1"]


def run(args, cwd):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "mapper", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def one_error(proc, *words):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for w in words:
        assert w in lines[0], lines[0]


@pytest.fixture(scope="module")
def fc8_result(tmp_path_factory):
    folder = tmp_path_factory.mktemp("res")
    proc = run([*SEARCH, "--json", "r.json"], folder)
    assert proc.returncode == 0, proc.stderr
    return folder / "r.json"


def test_fifo_output_refused_before_search(tmp_path):
    os.mkfifo(tmp_path / "n")
    one_error(run([*SEARCH, "--json", "n"], tmp_path), "n:", "regular file")
    assert (tmp_path / "n").is_fifo()


def test_symlink_output_refused(tmp_path):
    (tmp_path / "target.json").write_text("keep")
    (tmp_path / "lnk").symlink_to("target.json")
    one_error(run([*SEARCH, "--json", "lnk"], tmp_path), "lnk", "symlink")
    assert (tmp_path / "lnk").is_symlink()
    assert (tmp_path / "target.json").read_text() == "keep"


def test_writer_refuses_special_files(tmp_path):
    from mapper.result import write_text
    from mapper.spec import MapperError
    os.mkfifo(tmp_path / "n")
    (tmp_path / "lnk").symlink_to("nowhere")
    for name in ("n", "lnk"):
        with pytest.raises(MapperError):
            write_text(tmp_path / name, "x")
    assert (tmp_path / "n").is_fifo() and (tmp_path / "lnk").is_symlink()
    with pytest.raises(MapperError):
        write_text("", "x")


def test_evaluate_and_export_refuse_fifo(tmp_path, fc8_result):
    os.mkfifo(tmp_path / "n")
    one_error(run(["evaluate", "-a", "eyeriss_v1", "-p", "alexnet", "-l", "fc8", "-m", str(fc8_result),
                   "--json", "n"], tmp_path), "regular file")
    os.mkfifo(tmp_path / "m.yaml")
    one_error(run(["export", "timeloop", str(fc8_result), "-o", "m.yaml"], tmp_path), "regular file")
    assert (tmp_path / "n").is_fifo() and (tmp_path / "m.yaml").is_fifo()


def test_empty_output_paths(tmp_path):
    one_error(run([*SEARCH, "--json", ""], tmp_path), "--json", "empty")
    one_error(run(["sweep", "-a", "eyeriss_v1", "-p", "alexnet", "--out", "", "--time-limit", "1"], tmp_path),
              "--out", "empty")
    assert list(tmp_path.iterdir()) == []


def test_too_long_name_refused_without_leftover_folder(tmp_path):
    one_error(run([*SEARCH, "--json", f"out/{'a' * 300}.json"], tmp_path), "255")
    assert not (tmp_path / "out").exists()


def test_failed_write_removes_folders_it_created(tmp_path):
    from mapper.result import atomic
    with pytest.raises(RuntimeError):
        with atomic(tmp_path / "a" / "b" / "f.json"):
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_zero_energy_evaluate(tmp_path, fc8_result):
    text = (REPO / "arch" / "eyeriss_v1.yaml").read_text()
    text = re.sub(r"(?m)^(\s+)energy: [0-9.]+", r"\1energy: 0", text)
    (tmp_path / "z.yaml").write_text(text)
    proc = run(["evaluate", "-a", "z.yaml", "-p", "alexnet", "-l", "fc8", "-m", str(fc8_result)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "energy 0.0" in proc.stdout


def test_space_seed_range(tmp_path):
    for seed in ("-1", str(2 ** 70)):
        one_error(run(["space", "-a", "eyeriss_v1", "-p", "alexnet", "-l", "fc8", "--diagnose", "--seed", seed],
                      tmp_path), "--seed")


def test_export_unknown_layer(tmp_path, fc8_result):
    one_error(run(["export", "timeloop", str(fc8_result), "--layer", "zz", "-o", "out/m.yaml"], tmp_path),
              "'zz'", "fc8")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("bad", ["a\\nb", "\\ud800"])
def test_bad_names_refused_at_parse(tmp_path, bad):
    text = (REPO / "arch" / "eyeriss_v1.yaml").read_text().replace("- name: GLB", f'- name: "G{bad}LB"', 1)
    (tmp_path / "a.yaml").write_text(text)
    from mapper.arch import load_arch
    from mapper.spec import MapperError
    with pytest.raises(MapperError) as err:
        load_arch(str(tmp_path / "a.yaml"))
    msg = str(err.value)
    assert "\n" not in msg and "name" in msg
    msg.encode("utf-8")
    key = f'name: x\nclock_mhz: 1\n"C{bad}D": 1\n'
    (tmp_path / "k.yaml").write_text(key)
    with pytest.raises(MapperError) as err:
        load_arch(str(tmp_path / "k.yaml"))
    assert "\n" not in str(err.value)
    str(err.value).encode("utf-8")


def _sweep_tiny(tmp_path, out, *extra):
    from cli_helper import run_in_process
    prob = tmp_path / "tiny.yaml"
    prob.write_text("name: tiny\nlayers:\n  - {name: l1, type: fc, C: 4, M: 4}\n")
    return run_in_process("sweep", "-a", "eyeriss_v1", "-p", prob, "--out", out, "--time-limit", "1",
                          "--workers", "1", "-q", *extra, cwd=tmp_path)


def _special_outs(tmp_path):
    """--out paths that are no folder to write into, and the words their error names."""
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to("real")
    (tmp_path / "dangling").symlink_to("nowhere")
    return {"fifo": "not a folder", "link": "symlink", "dangling": "symlink"}


def test_sweep_out_that_is_a_fifo_or_symlink_is_refused_before_anything_runs(tmp_path):
    for out, words in _special_outs(tmp_path).items():
        one_error(_sweep_tiny(tmp_path, out), f"--out {out}", words)
    assert (tmp_path / "fifo").is_fifo() and (tmp_path / "link").is_symlink()
    assert list((tmp_path / "real").iterdir()) == [] and not (tmp_path / "nowhere").exists()


def test_sweep_out_fifo_in_a_subprocess_does_not_block(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "tiny.yaml").write_text("name: tiny\nlayers:\n  - {name: l1, type: fc, C: 4, M: 4}\n")
    one_error(run(["sweep", "-a", "eyeriss_v1", "-p", "tiny.yaml", "--out", "fifo", "--time-limit", "1", "-q"],
                  tmp_path), "--out fifo", "not a folder")


@pytest.mark.parametrize("target", ["sweep.json", "summary.csv", "summary.json", "eyeriss_v1/tiny/l1.json"])
@pytest.mark.parametrize("kind", ["fifo", "symlink", "folder"])
def test_sweep_files_that_are_special_are_refused_before_the_search(tmp_path, target, kind):
    out = tmp_path / "out"
    path = out / target
    path.parent.mkdir(parents=True)
    (tmp_path / "keep.json").write_text("keep")
    {"fifo": lambda: os.mkfifo(path), "symlink": lambda: path.symlink_to(tmp_path / "keep.json"),
     "folder": path.mkdir}[kind]()
    res = _sweep_tiny(tmp_path, "out")
    one_error(res, f"out/{target}", {"fifo": "regular file", "symlink": "symlink", "folder": "folder"}[kind])
    assert (tmp_path / "keep.json").read_text() == "keep"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == \
        sorted({target, *(p.as_posix() for p in Path(target).parents if p != Path("."))})


def test_sweep_folder_on_the_way_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "out" / "eyeriss_v1").mkdir(parents=True)
    (tmp_path / "out" / "eyeriss_v1" / "tiny").write_text("x")
    one_error(_sweep_tiny(tmp_path, "out"), "out/eyeriss_v1/tiny", "not a folder")
    assert not (tmp_path / "out" / "sweep.json").exists()
