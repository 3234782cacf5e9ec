"""Daily use of whole networks (issue 15): output a user chooses, units, honest timing,
reasons for a status, result files that compose, summaries that add up, fronts and
diagnostics. Small layers only: every search here finishes (and proves) in seconds."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mapper.arch import load_arch, parse_arch
from mapper.cli import main
from mapper.problem import load_network
from mapper.search import REASONS, search
from mapper.spec import load_yaml

TINY_PROBLEM = """\
name: tiny
layers:
  - {name: c1, type: conv, C: 2, M: 4, H: 6, W: 6, R: 3, S: 3, stride: 1, pad: 0}
  - {name: c2, type: conv, C: 4, M: 4, H: 4, W: 4, R: 3, S: 3, stride: 1, pad: 1}
  - {name: fc, type: fc, C: 16, M: 8}
"""


def cli(*args, cwd: Path):
    """Run `mapper ARGS` in-process in folder cwd; returns click's Result."""
    import os
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    finally:
        os.chdir(old)


@pytest.fixture
def tiny(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY_PROBLEM)
    return tmp_path


# ---------------------------------------------------------------------------------------
# 1. Output a user chooses, units

def test_energy_unit_is_parsed_and_checked():
    arch = load_arch("eyeriss_v1")
    assert (arch.energy_unit, arch.energy_calibrated) == ("pJ", False)
    data = load_yaml(str(Path(__file__).parent.parent / "arch" / "eyeriss_v1.yaml"))
    data["energy_unit"] = "units"
    assert (parse_arch(data, "x.yaml").energy_unit, parse_arch(data, "x.yaml").energy_calibrated) == ("units", True)
    data["energy_unit"] = {"name": "pJ", "calibrated": "yes"}
    with pytest.raises(Exception, match="energy_unit.calibrated"):
        parse_arch(data, "x.yaml")
    data["energy_unit"] = {"nam": "pJ"}
    with pytest.raises(Exception, match="energy_unit"):
        parse_arch(data, "x.yaml")


def test_summary_default_and_verbose_outputs(tiny):
    common = ("search", "-a", "eyeriss_v1", "-p", "tiny.yaml", "--workers", "1", "-q")
    summary = cli(*common, "--summary", cwd=tiny)
    default = cli(*common, cwd=tiny)
    verbose = cli(*common, "--verbose", cwd=tiny)
    for r in (summary, default, verbose):
        assert r.exit_code == 0, r.output
        assert r.output.count("network: ") == 1
    # --summary: the network table only (no per-layer blocks)
    assert "===" not in summary.output and "search:" not in summary.output
    assert [l.split()[0] for l in summary.output.splitlines() if l.split() and l.split()[0] in
            ("c1", "c2", "fc", "total")] == ["c1", "c2", "fc", "total"]
    # default: one block per layer without the loop nest; --verbose adds nest and breakdown
    assert default.output.count("search:") == 3 and "<< MAC >>" not in default.output
    assert verbose.output.count("<< MAC >>") == 3 and verbose.output.count("reads (words)") == 3
    assert len(verbose.output.splitlines()) > len(default.output.splitlines()) > len(summary.output.splitlines())
    # units: the arch declares pJ uncalibrated, and the outputs say so
    for r in (summary, default, verbose):
        assert "uncalibrated" in r.output
    assert "energy pJ" in summary.output and "pJ/MAC" in summary.output
    nest = [l for l in verbose.output.splitlines() if "[" in l and "words" in l]
    assert nest and all("bypassed" in l or l.count("words") == l.count(",") + 1 for l in nest)


def test_declared_unit_is_printed(tiny):
    data = load_yaml(str(Path(__file__).parent.parent / "arch" / "eyeriss_v1.yaml"))
    data["energy_unit"] = {"name": "units", "calibrated": True}
    import yaml
    (tiny / "a.yaml").write_text(yaml.safe_dump(data))
    r = cli("search", "-a", "a.yaml", "-p", "tiny.yaml", "-l", "c1", "--workers", "1", "-q", cwd=tiny)
    assert r.exit_code == 0, r.output
    assert "energy units" in r.output and " units/MAC" in r.output
    assert " pJ" not in r.output and "uncalibrated" not in r.output


# ---------------------------------------------------------------------------------------
# 2. Honest timing, reasons

def test_network_table_reports_wall_time_and_per_layer_time(tiny):
    r = cli("search", "-a", "eyeriss_v1", "-p", "tiny.yaml", "--workers", "1", "-q", "--summary", cwd=tiny)
    total = [l for l in r.output.splitlines() if l.startswith("total ")][0]
    assert total.endswith(" wall")
    wall = float(total.split()[-2])
    per_layer = [float(l.split()[-1]) for l in r.output.splitlines() if l.split()[:1] in (["c1"], ["c2"], ["fc"])]
    assert len(per_layer) == 3
    assert wall >= sum(per_layer) - 0.05      # one worker: the layers ran one after another


def test_budget_status_carries_its_reason():
    lay = load_network("alexnet").layer("conv3")
    arch = load_arch("eyeriss_v1")
    res = search(lay, arch, algorithm="random", budget=300, seed=1)
    assert res.status != "optimal" or res.reason in ("analytic bound",)
    assert res.reason in REASONS
    if res.status != "optimal":
        assert res.reason == "evaluation budget"
    res = search(lay, arch, algorithm="cpsat", time_limit=0.2)
    assert res.reason in REASONS
    if res.status == "budget":
        assert res.reason == "time limit"
    assert res.documents()[0]["search"]["reason"] == res.reason


def test_proof_reason(tiny):
    lay = load_network(str(tiny / "tiny.yaml")).layer("c1")
    res = search(lay, load_arch("eyeriss_v1"), algorithm="exhaustive")
    assert (res.status, res.reason) == ("optimal", "exhaustive")


# ---------------------------------------------------------------------------------------
# 3. Progress for whole networks and sweeps

class _Stream:
    """A stderr stand-in that records what is written and says whether it is a terminal."""

    def __init__(self, tty: bool):
        self.tty, self.text = tty, ""

    def isatty(self):
        return self.tty

    def write(self, s):
        self.text += s

    def flush(self):
        pass


def test_board_line_counts_jobs_bounds_time_and_drops_finished_jobs():
    from mapper.progress import Board, Progress
    stream = _Stream(tty=False)
    with Board(Progress(stream=stream), "net", total=5, time_limit=10.0, processes=2) as board:
        first = stream.text                       # drawn at once, before any job reports
        board.report("a", "[a] cpsat: best edp 5")
        board.report("b", "[b] random: best edp 7")
        line = board.line()
        left = board.time_left()
        board.finished("a", "optimal (cpsat proof)")
        board.report("a", "[a] late message")      # after it finished: ignored
        after = board.line()
    assert first.startswith("[net] 0/5 done") and "at most" in first
    assert "[a] cpsat" in line and "[b] random" in line
    # 2 running (<= 10 s each), 3 queued on 2 processes: 2 more waves of <= 10 s
    assert 20.0 < left <= 30.0
    assert "1/5 done" in after and "[a]" not in after and "[b] random" in after
    assert "[net] 1/5 done: a optimal (cpsat proof)" in stream.text
    assert "\r" not in stream.text


def test_network_search_progress_moves_before_a_layer_finishes():
    from mapper.progress import Progress
    from mapper.search import search_network
    net = load_network("alexnet")
    layers = [net.layer("fc7"), net.layer("fc8")]
    stream = _Stream(tty=True)
    res = search_network(layers, load_arch("eyeriss_v1"), progress=Progress(stream=stream), workers=2,
                         algorithm="random", objective="edp", seed=0, time_limit=3.0, budget=None,
                         patience=10 ** 9, top=1)
    assert [r.reason for r in res] == ["time limit", "time limit"]
    frames = stream.text.split("\r")
    assert frames[1].startswith("[eyeriss_v1 layers] 0/2 done")
    # while both ran, their own status lines (fed from the worker processes) were shown
    assert any("0/2 done" in f and "[fc7] random: best edp" in f and "pJ*cycles" in f for f in frames), frames
    assert "2/2 done" in frames[-1]
