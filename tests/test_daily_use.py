"""Daily use of whole networks (issue 15): output a user chooses, units, honest timing,
reasons for a status, result files that compose, summaries that add up, fronts and
diagnostics. Small layers only: every search here finishes (and proves) in seconds."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cli_helper import run_in_process

from mapper.arch import load_arch, parse_arch
from mapper.problem import load_network
from mapper.search import REASONS, search
from mapper.spec import MapperError, load_yaml

TINY_PROBLEM = """\
name: tiny
layers:
  - {name: c1, type: conv, C: 2, M: 4, H: 6, W: 6, R: 3, S: 3, stride: 1, pad: 0}
  - {name: c2, type: conv, C: 4, M: 4, H: 4, W: 4, R: 3, S: 3, stride: 1, pad: 1}
  - {name: fc, type: fc, C: 16, M: 8}
"""


def cli(*args, cwd: Path):
    """Run `mapper ARGS` in-process in folder cwd, as the console script does (tests/cli_helper.py)."""
    return run_in_process(*args, cwd=cwd)


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


@pytest.fixture
def searched_once(monkeypatch):
    """Each distinct layer search runs once in the test; a repeat (the same layer, arch and
    settings, here the same network printed three ways) reuses its result."""
    import sys
    module = sys.modules["mapper.search"]        # the package (mapper.search is also the function)
    real, memo = module.search, {}

    def once(layer, arch, progress=None, **settings):
        # `stop` (the network search's Ctrl-C check, a fresh closure each run) says when to
        # give up, not what to search
        key = (repr(layer), arch.name, repr(sorted((k, v) for k, v in settings.items() if k != "stop")))
        if key not in memo:
            memo[key] = real(layer, arch, progress=progress, **settings)
        return memo[key]
    monkeypatch.setattr(module, "search", once)
    return memo


def test_summary_default_and_verbose_outputs(tiny, searched_once):
    common = ("search", "-a", "eyeriss_v1", "-p", "tiny.yaml", "--workers", "1", "-q")
    summary = cli(*common, "--summary", cwd=tiny)
    default = cli(*common, cwd=tiny)
    verbose = cli(*common, "--verbose", cwd=tiny)
    for r in (summary, default, verbose):
        assert r.returncode == 0, r.output
        assert r.output.count("network: ") == 1
    assert len(searched_once) == 3          # the three layers, searched once for all three outputs
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
    assert r.returncode == 0, r.output
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
    lay = load_network(str(tiny / "tiny.yaml")).layer("fc")        # the smallest space: a quick proof
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


def test_board_line_keeps_the_jobs_best_values_on_a_narrow_terminal():
    """Where the full line would not fit, the header is cut to the count: the running
    jobs' best values stay visible (an 80-column terminal showed only the header)."""
    from mapper.progress import Board, Progress
    with Board(Progress(stream=_Stream(tty=False)), "alexnet on eyeriss_v1 layers", total=8,
               time_limit=20.0, processes=2) as board:
        board.report("conv1", "[conv1] cpsat: best edp 1.2e+15 pJ*cycles")
        wide, narrow = board.line(), board.line(79)
    assert "elapsed" in wide and "at most" in wide and wide.endswith("best edp 1.2e+15 pJ*cycles")
    assert narrow == "[alexnet on eyeriss_v1 layers] 0/8 done | [conv1] cpsat: best edp 1.2e+15 pJ*cycles"
    assert "elapsed" in board.line(len(wide) + 20)       # it fits: the full line (time may have moved on)


def test_progress_done_prints_the_latest_text_the_interval_held_back():
    """Throttled updates are dropped, but the last one must still be what the line ends on."""
    from mapper.progress import Progress
    for tty in (False, True):
        stream = _Stream(tty=tty)
        p = Progress(stream=stream, interval=1e9)       # every update after the first is held back
        p.update("[x] random: best 7")
        p.update("[x] cpsat: best 5")
        p.done()
        last = stream.text.rstrip("\n").split("\r" if tty else "\n")[-1].rstrip()
        assert last == "[x] cpsat: best 5", stream.text


def test_board_ends_on_its_final_count_and_draws_nothing_after():
    """A terminal board's last frame counts every job; a draw from its thread after the end
    (it composed its line before the last job finished) must not overwrite that frame."""
    from mapper.progress import Board, Progress
    stream = _Stream(tty=True)
    with Board(Progress(stream=stream), "net", total=2, time_limit=10.0) as board:
        board.report("a", "[a] cpsat: best edp 5")
        board.finished("a", "optimal")
        board.report("b", "[b] cpsat: best edp 7")
        board.finished("b", "optimal")
    ended = stream.text
    board.draw(force=True)                  # what the thread would do if it drew late
    assert stream.text == ended
    assert ended.endswith("\n")
    assert ended.rstrip("\n").split("\r")[-1].startswith("[net] 2/2 done"), ended


def test_search_progress_ends_on_the_result(tmp_path):
    """The last progress state is the result: best value, status and reason, candidates;
    never the last phase's state from before the proof (or before the last improvement)."""
    from mapper.progress import Progress
    (tmp_path / "tiny.yaml").write_text(TINY_PROBLEM)
    lay = load_network(tmp_path / "tiny.yaml").layer("c1")
    stream = _Stream(tty=False)
    res = search(lay, load_arch("eyeriss_v1"), workers=1, time_limit=60, progress=Progress(stream=stream))
    last = stream.text.splitlines()[-1]
    assert last.startswith("[c1] done: ")
    best = res.best.cost.objective("edp")
    assert f"best edp {best:.4g} pJ*cycles" in last
    assert f"status {res.status} ({res.reason})" in last
    assert f"{res.evaluated:,} candidates evaluated" in last


@pytest.mark.slow
def test_network_search_progress_moves_before_a_layer_finishes(monkeypatch):
    from mapper.progress import Progress
    monkeypatch.setenv("COLUMNS", "1000")          # a wide terminal: the line is not cut
    from mapper.search import search_network
    net = load_network("alexnet")
    layers = [net.layer("fc7"), net.layer("fc8")]
    stream = _Stream(tty=True)
    res = search_network(layers, load_arch("eyeriss_v1"), progress=Progress(stream=stream), workers=2,
                         algorithm="random", objective="edp", seed=0, time_limit=6.0, budget=None,
                         patience=10 ** 9, top=1)
    assert [r.reason for r in res] == ["time limit", "time limit"]
    frames = stream.text.split("\r")
    assert frames[1].startswith("[eyeriss_v1 layers] 0/2 done")
    # while both ran, their own status lines (fed from the worker processes) were shown
    assert any("0/2 done" in f and re.search(r"\[fc[78]\] random: best edp \S+ pJ\*cycles, gap", f)
               for f in frames), frames
    assert "2/2 done" in frames[-1]


def test_network_search_parallel_within_gives_each_layer_every_worker():
    """--parallel layers runs layers side by side with one worker each; within runs them in
    turn with all the workers (each result records the workers its search had)."""
    from mapper.search import search_network
    net = load_network("alexnet")
    layers = [net.layer("fc7"), net.layer("fc8")]
    kw = dict(algorithm="random", objective="edp", seed=0, budget=300, top=1)
    side = search_network(layers, load_arch("eyeriss_v1"), workers=2, parallel="layers", **kw)
    turn = search_network(layers, load_arch("eyeriss_v1"), workers=2, parallel="within", **kw)
    assert [r.layer.name for r in turn] == ["fc7", "fc8"]
    assert [r.settings["workers"] for r in side] == [1, 1]
    assert [r.settings["workers"] for r in turn] == [2, 2]
    with pytest.raises(MapperError, match="parallel"):
        search_network(layers, load_arch("eyeriss_v1"), workers=2, parallel="both", **kw)


# ---------------------------------------------------------------------------------------
# 4. Result files that compose

@pytest.fixture(scope="module")
def net_result(tmp_path_factory):
    """One network search whose result document two tests read (each writes other file names)."""
    tiny = tmp_path_factory.mktemp("net_result")
    (tiny / "tiny.yaml").write_text(TINY_PROBLEM)
    r = cli("search", "-a", "eyeriss_v1", "-p", "tiny.yaml", "--workers", "1", "-q", "--summary",
            "--json", "net.json", cwd=tiny)
    assert r.returncode == 0, r.output
    return tiny, json.loads((tiny / "net.json").read_text())


def test_evaluate_reads_a_whole_network_result(net_result):
    folder, docs = net_result
    one = cli("evaluate", "-a", "eyeriss_v1", "-p", "tiny.yaml", "-m", "net.json", "-l", "c2", "--json", "c2.json",
              cwd=folder)
    assert one.returncode == 0, one.output
    assert json.loads((folder / "c2.json").read_text())["cost"] == docs[1]["cost"]
    every = cli("evaluate", "-a", "eyeriss_v1", "-p", "tiny.yaml", "-m", "net.json", "--json", "all.json", cwd=folder)
    assert every.returncode == 0, every.output
    again = json.loads((folder / "all.json").read_text())
    assert [d["layer"]["name"] for d in again] == ["c1", "c2", "fc"]
    assert [d["cost"] for d in again] == [d["cost"] for d in docs]
    energy = sum(d["cost"]["energy_pj"] for d in docs)
    assert f"3 layers: energy {energy:,.1f} pJ" in every.output
    bad = cli("evaluate", "-a", "eyeriss_v1", "-p", "tiny.yaml", "-m", "net.json", "-l", "c9", cwd=folder)
    assert bad.returncode == 2 and "no result for layer 'c9'" in bad.output and "c1, c2, fc" in bad.output


def test_export_timeloop_never_silently_takes_the_first_layer(net_result):
    from mapper.timeloop import mapping_from_timeloop
    folder, docs = net_result
    refused = cli("export", "timeloop", "net.json", "-o", "map.yaml", cwd=folder)
    assert refused.returncode == 2 and "--layer" in refused.output and not (folder / "map.yaml").exists()
    r = cli("export", "timeloop", "net.json", "-o", "maps", cwd=folder)
    assert r.returncode == 0, r.output
    assert sorted(p.name for p in (folder / "maps").iterdir()) == ["c1.yaml", "c2.yaml", "fc.yaml"]
    r = cli("export", "timeloop", "net.json", "-l", "fc", "-o", "fc.yaml", cwd=folder)
    assert r.returncode == 0, r.output
    arch = load_arch("eyeriss_v1")
    net = load_network(str(folder / "tiny.yaml"))
    from mapper.model import evaluate
    for name, doc in zip(("c1", "c2", "fc"), docs):
        m = mapping_from_timeloop(load_yaml(str(folder / "maps" / f"{name}.yaml")), arch, net.layer(name))
        assert evaluate(net.layer(name), arch, m).energy_pj == pytest.approx(doc["cost"]["energy_pj"])
    assert (folder / "fc.yaml").read_text() == (folder / "maps" / "fc.yaml").read_text()


@pytest.mark.slow
def test_sweep_refuses_an_existing_out_without_resume_and_sums_add_up(tiny):
    import csv
    args = ("sweep", "-a", "eyeriss_v1", "-a", "eyeriss_v2", "-p", "tiny.yaml", "--out", "sw", "--workers", "1", "-q")
    assert cli(*args, cwd=tiny).returncode == 0
    before = (tiny / "sw" / "summary.csv").read_text()
    again = cli(*args, cwd=tiny)
    assert again.returncode == 2 and "--resume" in again.output
    assert (tiny / "sw" / "summary.csv").read_text() == before
    rows = list(csv.DictReader(before.splitlines()))
    assert len(rows) == 6
    for row in rows:
        total = float(row["energy_pj"])
        levels = sum(float(v) for k, v in row.items() if k.startswith("energy_") and k != "energy_pj" and v != "")
        parts = sum(float(row[k]) for k in ("mac_energy_pj", "network_energy_pj", "leakage_energy_pj",
                                                "cycle_energy_pj"))
        assert levels + parts == pytest.approx(total, rel=1e-12)
        assert float(row["dram_energy_pj"]) + float(row["chip_energy_pj"]) == pytest.approx(total, rel=1e-12)
        assert float(row["dram_energy_pj"]) == float(row["energy_DRAM_pj"]) > 0
        assert row["reason"] in REASONS


SPARSE_PROBLEM = """\
name: sparse
layers:
  - {name: pw, type: conv, C: 4, M: 4, H: 3, W: 3, R: 1, S: 1}
  - {name: fc, type: fc, C: 16, M: 8}
"""


def _percent(cell: str) -> float:
    return float(cell.rstrip("%")) / 100


def test_sparse_network_table_and_json_use_one_utilization(tmp_path):
    """With zeros skipped (v2 at 0.5 x 0.4) every utilization printed is performed MACs /
    (cycles x MAC lanes): each layer's row and line equals its document's, the total row is
    all performed MACs over all cycles x lanes, none is above 100%, and the MACs column
    keeps the dense count."""
    from mapper.model import network_utilization
    (tmp_path / "sparse.yaml").write_text(SPARSE_PROBLEM)
    r = cli("search", "-a", "eyeriss_v2", "-p", "sparse.yaml", "--density", "weights=0.5,inputs=0.4",
            "--workers", "1", "-q", "--json", "net.json", cwd=tmp_path)
    assert r.returncode == 0, r.output
    docs = {d["layer"]["name"]: d["cost"] for d in json.loads((tmp_path / "net.json").read_text())}
    lanes = load_arch("eyeriss_v2").pes
    rows = {l.split()[0]: l.split() for l in r.output.splitlines() if l.split()[:1] in (["pw"], ["fc"], ["total"])}
    for name, cost in docs.items():
        assert cost["performed_macs"] == pytest.approx(cost["macs"] * 0.5 * 0.4, rel=1e-12)
        assert cost["utilization"] == pytest.approx(cost["performed_macs"] / (cost["cycles"] * lanes), rel=1e-12)
        assert 0 < cost["utilization"] <= 1
        assert rows[name][1] == f"{cost['macs']:,}"
        assert _percent(rows[name][5]) == pytest.approx(cost["utilization"], abs=5e-4)
        assert f"utilization {100 * cost['utilization']:.1f}%" in r.output      # the layer's totals line
    total = network_utilization([(c["performed_macs"], c["cycles"]) for c in docs.values()], lanes)
    assert total == pytest.approx(sum(c["performed_macs"] for c in docs.values())
                                  / (sum(c["cycles"] for c in docs.values()) * lanes), rel=1e-12)
    assert _percent(rows["total"][5]) == pytest.approx(total, abs=5e-4) and total <= 1
    assert rows["total"][1] == f"{sum(c['macs'] for c in docs.values()):,}"


def test_sparse_sweep_summaries_use_one_utilization(tmp_path):
    """summary.csv's utilization per row and summary.json's per network follow the same
    rule as the model (performed MACs / cycles x MAC lanes; the network's from the rows'
    sums), with the dense MACs beside the performed ones."""
    import csv
    (tmp_path / "sparse.yaml").write_text(SPARSE_PROBLEM)
    r = cli("sweep", "-a", "eyeriss_v2", "-p", "sparse.yaml", "--density", "weights=0.5,inputs=0.4", "--out", "sw",
            "--workers", "1", "-q", cwd=tmp_path)
    assert r.returncode == 0, r.output
    lanes = load_arch("eyeriss_v2").pes
    rows = list(csv.DictReader((tmp_path / "sw" / "summary.csv").read_text().splitlines()))
    assert len(rows) == 2
    for row in rows:
        performed, cycles = float(row["performed_macs"]), int(row["cycles"])
        assert performed == pytest.approx(int(row["macs"]) * 0.2, rel=1e-12)
        assert float(row["utilization"]) == pytest.approx(performed / (cycles * lanes), rel=1e-12)
        assert 0 < float(row["utilization"]) <= 1
    net = json.loads((tmp_path / "sw" / "summary.json").read_text())["networks"]["sparse"]["eyeriss_v2"]
    assert net["macs"] == sum(int(row["macs"]) for row in rows)
    assert net["performed_macs"] == pytest.approx(sum(float(row["performed_macs"]) for row in rows), rel=1e-12)
    assert net["utilization"] == pytest.approx(net["performed_macs"] / (net["cycles"] * lanes), rel=1e-12)
    assert 0 < net["utilization"] <= 1
    util = [l for l in r.output.splitlines() if l.startswith("sparse ")][0].split()[-1]
    assert _percent(util) == pytest.approx(net["utilization"], abs=5e-4)


# ---------------------------------------------------------------------------------------
# 5. Plots: checked by what they draw

@pytest.fixture(scope="module")
def two_arch_sweep(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep2")
    # two layers that search (and prove) in well under a second each, on both archs
    (folder / "tiny.yaml").write_text("name: tiny\nlayers:\n"
                                      "  - {name: pw, type: conv, C: 4, M: 4, H: 3, W: 3, R: 1, S: 1}\n"
                                      "  - {name: fc, type: fc, C: 16, M: 8}\n")
    (folder / "other.yaml").write_text("name: other\nlayers:\n  - {name: f1, type: fc, C: 8, M: 4}\n")
    r = cli("sweep", "-a", "eyeriss_v1", "-a", "eyeriss_v2", "-p", "tiny.yaml", "-p", "other.yaml", "--out", "sw",
            "--workers", "1", "-q", cwd=folder)
    assert r.returncode == 0, r.output
    return folder / "sw"


def _stacks(ax):
    """{x centre: (bottom, top) of the whole stacked bar} of an axes' bars."""
    out = {}
    for bar in ax.patches:
        x = round(bar.get_x() + bar.get_width() / 2, 6)
        lo, hi = out.get(x, (float("inf"), 0.0))
        out[x] = (min(lo, bar.get_y()), max(hi, bar.get_y() + bar.get_height()))
    return out


@pytest.mark.parametrize("scale", ["per-mac", "linear"])
def test_sweep_plot_bars_are_the_summary_numbers(two_arch_sweep, scale):
    import csv
    from mapper.plot import results_figure
    rows = list(csv.DictReader((two_arch_sweep / "summary.csv").read_text().splitlines()))
    fig = results_figure(two_arch_sweep, scale)
    axes = [ax for ax in fig.axes if ax.patches]
    assert len(axes) == 2                                            # one panel per network
    titles = [ax.get_title() for ax in axes]
    assert titles[0].startswith("tiny:") and titles[1].startswith("other:")
    for ax, net in zip(axes, ("tiny", "other")):
        mine = [r for r in rows if r["network"] == net]
        # each network's own total per arch in its title (not the sum over networks)
        from mapper.report import energy_text
        for arch in ("eyeriss_v1", "eyeriss_v2"):
            total = sum(float(r["energy_pj"]) for r in mine if r["arch"] == arch)
            # (the title wraps to the panel's width, wherever the numbers' lengths put the break)
            assert f"{arch} {energy_text(total)}" in " ".join(ax.get_title().split())
        stacks = sorted(_stacks(ax).items())
        assert len(stacks) == len(mine)                               # archs side by side per layer
        layers = list(dict.fromkeys(r["layer"] for r in mine))
        for r in mine:
            li, ai = layers.index(r["layer"]), ("eyeriss_v1", "eyeriss_v2").index(r["arch"])
            (_, (bottom, top)) = stacks[li * 2 + ai]
            want = float(r["energy_pj"]) / float(r["macs"]) if scale == "per-mac" else float(r["energy_pj"]) * 1e-12
            assert bottom == 0.0 and top == pytest.approx(want, rel=1e-9)
    # the DRAM segment of the first bar is the summary's DRAM column
    first = [b for b in axes[0].patches if round(b.get_x() + b.get_width() / 2, 6) == sorted(_stacks(axes[0]))[0]]
    r0 = [r for r in rows if r["network"] == "tiny" and r["arch"] == "eyeriss_v1"][0]
    dram = float(r0["energy_DRAM_pj"]) / float(r0["macs"]) if scale == "per-mac" else float(r0["energy_DRAM_pj"]) * 1e-12
    assert any(b.get_y() == 0.0 and b.get_height() == pytest.approx(dram) for b in first)


def test_sweep_plot_default_is_log_with_engineering_units(two_arch_sweep, tmp_path):
    from mapper.plot import plot_results, results_figure
    fig = results_figure(two_arch_sweep)
    ax = [a for a in fig.axes if a.patches][0]
    assert ax.get_yscale() == "log"
    assert "J" in ax.yaxis.get_major_formatter().format_data(1e-9)
    assert plot_results(two_arch_sweep, tmp_path / "p.png").stat().st_size > 10_000


def test_eyexam_waterfall_shows_each_steps_reason(tiny, tmp_path):
    from mapper.eyexam import eyexam, save_json
    from mapper.plot import eyexam_figure
    lay = load_network(str(tiny / "tiny.yaml")).layer("fc")        # the smallest space: a quick proof
    res = eyexam(lay, load_arch("eyeriss_v1"), time_limit=20)
    save_json(tmp_path / "e.json", res)
    texts = [t.get_text() for ax in eyexam_figure(tmp_path / "e.json").axes for t in ax.texts]
    for step in res.steps:
        assert any(t.startswith(f"{step.step}. {step.constraint}: {step.note[:40]}") for t in texts), step


# ---------------------------------------------------------------------------------------
# 6. Trade-off fronts

@pytest.mark.slow
def test_layer_front_is_exact_on_a_small_layer(tiny):
    import numpy as np
    from mapper.batch import evaluate_batch, score
    from mapper.search.pareto import layer_front
    from mapper.search.random import sample
    from mapper.search.space import space_of
    lay = load_network(str(tiny / "tiny.yaml")).layer("fc")        # the smallest space: a quick proof
    arch = load_arch("eyeriss_v1")
    front = layer_front(lay, arch, time_limit=None)
    assert front.exact and front.guarantee.startswith("exact")
    pts = [(p.cost.energy_pj, p.cost.cycles) for p in front.points]
    assert len(pts) >= 2
    assert [c for _, c in pts] == sorted(c for _, c in pts)
    assert all(e1 > e2 and c1 < c2 for (e1, c1), (e2, c2) in zip(pts, pts[1:]))    # strictly a front
    # its ends are the exhaustive optima of energy and of delay
    e_opt = search(lay, arch, algorithm="exhaustive", objective="energy").best.cost
    d_opt = search(lay, arch, algorithm="exhaustive", objective="delay").best.cost
    assert min(e for e, _ in pts) == pytest.approx(e_opt.energy_pj)
    assert min(c for _, c in pts) == d_opt.cycles
    # no sampled candidate dominates a front point
    space = space_of(lay, arch)
    f, o, k = sample(space, np.random.default_rng(5), 20000)
    ok = np.nonzero(space.valid(f, k))[0]
    _, md = score(space.enc, f[ok], o[ok], k[ok], "edp")
    c = evaluate_batch(space.enc, f[ok], o[ok], k[ok], md)
    for e, cy in pts:
        assert not np.any((c.energy_pj <= e) & (c.cycles <= cy) & ((c.energy_pj < e) | (c.cycles < cy)))


def test_network_front_is_the_nondominated_sums():
    import itertools
    from mapper.search.pareto import network_front, nondominated
    import numpy as np

    class P:                                  # a point with just a cost
        def __init__(self, e, c):
            self.cost = type("C", (), {"energy_pj": e, "cycles": c})()

    class F:
        def __init__(self, pts):
            self.points = [P(e, c) for e, c in pts]

    fronts = [F([(10, 1), (6, 3), (5, 9)]), F([(7, 2), (3, 5)]), F([(4, 4), (2, 8)])]
    got = {(p.energy_pj, p.cycles) for p in network_front(fronts)}
    sums = [(sum(x[0] for x in combo), sum(x[1] for x in combo))
            for combo in itertools.product(*[[(p.cost.energy_pj, p.cost.cycles) for p in f.points] for f in fronts])]
    e, c = np.array([s[0] for s in sums]), np.array([s[1] for s in sums])
    assert got == {sums[i] for i in nondominated(e, c)}
    for p in network_front(fronts):
        assert p.energy_pj == sum(f.points[i].cost.energy_pj for f, i in zip(fronts, p.choice))


@pytest.mark.slow
def test_search_pareto_prints_writes_and_plots(tiny):
    from mapper.plot import front_figure
    r = cli("search", "-a", "eyeriss_v1", "-p", "tiny.yaml", "--pareto", "--json", "front.json", "-q", cwd=tiny)
    assert r.returncode == 0, r.output
    data = json.loads((tiny / "front.json").read_text())
    assert [l["layer"] for l in data["layers"]] == ["c1", "c2", "fc"] and all(l["exact"] for l in data["layers"])
    assert r.output.count("energy-cycles front") == 4 and "front: exact" in r.output
    net = data["network"]
    first = net[0]
    assert first["energy_pj"] == pytest.approx(sum(
        data["layers"][k]["points"][i]["cost"]["energy_pj"] for k, i in enumerate(first["points"].values())))
    ax = front_figure(tiny / "front.json").axes[0]
    xs, ys = ax.lines[1].get_data()
    assert list(xs) == [p["cycles"] for p in net]
    assert list(ys) == pytest.approx([p["energy_pj"] * 1e-12 for p in net])
    assert cli("plot", "--front", "front.json", "-o", "f.png", cwd=tiny).returncode == 0 and (tiny / "f.png").exists()


def test_sampled_front_says_so_and_holds_the_searched_ends(tiny):
    from mapper.search.pareto import layer_front
    lay = load_network(str(tiny / "tiny.yaml")).layer("fc")
    arch = load_arch("eyeriss_v1")
    front = layer_front(lay, arch, time_limit=6, exact_limit=0, samples=20000)
    assert not front.exact and front.guarantee.startswith("sampled") and "not proven" in front.guarantee
    e_opt = search(lay, arch, algorithm="exhaustive", objective="energy").best.cost.energy_pj
    d_opt = search(lay, arch, algorithm="exhaustive", objective="delay").best.cost.cycles
    # this layer is small enough for the end searches to prove their optima
    assert min(p.cost.energy_pj for p in front.points) == pytest.approx(e_opt)
    assert min(p.cost.cycles for p in front.points) == d_opt


# ---------------------------------------------------------------------------------------
# 7. Diagnostics

def test_diagnose_groups_invalid_candidates_by_reason():
    import numpy as np
    from mapper.search.diagnose import diagnose, reason_key
    from mapper.search.random import sample
    from mapper.search.space import space_of
    lay = load_network("alexnet").layer("conv3")
    arch = load_arch("eyeriss_v1")
    raw, pruned = diagnose(lay, arch, samples=600, seed=3)
    for d in (raw, pruned):
        assert 0 <= d.valid < d.sampled == 600
        assert d.reasons and [r.count for r in d.reasons] == sorted((r.count for r in d.reasons), reverse=True)
        for r in d.reasons:
            field, message = r.example.split(": ", 1)
            assert reason_key(field, message) == r.key            # the example is of its own kind
            assert 0 < r.count <= d.sampled - d.valid
    # the pruned sample is the search's: its valid count is the space's own check of the same draws
    space = space_of(lay, arch)
    rng = np.random.default_rng(3)
    from mapper.search.diagnose import raw_sample
    raw_sample(space, rng, 600)
    f, _, k = sample(space, rng, 600)
    assert pruned.valid == int(space.valid(f, k).sum())
    # raw candidates break the arch's constraints; pruned ones only joint capacity and fan-out limits
    assert any("temporal_dims" in r.key or "spatial_dims" in r.key for r in raw.reasons)
    assert all("capacity overflow" in r.key or "fan-out overflow" in r.key for r in pruned.reasons)


def test_space_diagnose_command(tiny):
    r = cli("space", "-a", "eyeriss_v1", "-p", "alexnet", "-l", "conv3", "--diagnose", "--samples", "300", cwd=tiny)
    assert r.returncode == 0, r.output
    assert "raw (" in r.output and "pruned (" in r.output and "examples (one per reason):" in r.output
    assert "capacity overflow" in r.output and "mapping: " in r.output
