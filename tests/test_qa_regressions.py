"""Regressions found by using the tool as a new (and an adversarial) user: each test pins one
problem that was seen, so that it stays fixed."""
from __future__ import annotations

import json

import pytest

from cli_helper import run_in_process as cli


def test_front_plot_title_wraps_a_long_guarantee(tmp_path):
    """A sampled front's guarantee is ~200 characters; as one title line it ran off both
    sides of the figure."""
    pytest.importorskip("matplotlib")
    from mapper.plot import front_figure
    guarantee = ("sampled: non-dominated among 91,951 valid sampled candidates and the searched ends "
                 "(min energy budget (time limit), min delay budget (time limit)); points between the "
                 "ends are not proven")
    doc = {"pareto": "energy-cycles", "arch": {"name": "a"},
           "layers": [{"layer": "l", "guarantee": guarantee,
                       "points": [{"cost": {"energy_pj": 2.0, "cycles": 10}},
                                  {"cost": {"energy_pj": 1.0, "cycles": 20}}]}]}
    (tmp_path / "f.json").write_text(json.dumps(doc))
    title = front_figure(tmp_path / "f.json").axes[0].get_title()
    lines = title.splitlines()
    assert len(lines) >= 3 and max(map(len, lines)) <= 110
    assert " ".join(lines[1:]) == guarantee            # wrapped, not cut


def test_energy_plot_parts_have_distinct_colours():
    """MAC and clock/static energy were drawn in the same grey."""
    from mapper.plot import PARTS, REST_COLORS
    rests = set(PARTS.values()) | {"MAC"}
    assert rests <= set(REST_COLORS)
    colours = [REST_COLORS[r] for r in rests]
    assert len(set(colours)) == len(colours)


@pytest.mark.parametrize("message, key", [
    ("tiles need 48 columns (Weights columns along M) but the capacity is 16 (over by 32)",
     "level w: column overflow (Weights along M)"),
    ("dim C unrolled on X would need spatial reduction of Outputs along X, which this network does "
     "not support (reduction: [])", "level w: C unrolled on X (no spatial reduction of Outputs along X)"),
])
def test_diagnose_names_column_and_reduction_reasons(message, key):
    """These fell through to a generic key with '#' for the numbers ('tiles need # columns')."""
    from mapper.search.diagnose import reason_key
    assert reason_key("level w", message) == key
    assert "#" not in reason_key("level w", message)


TWO_LAYERS = """\
name: tiny
layers:
  - {name: c1, type: conv, C: 2, M: 4, H: 6, W: 6, R: 3, S: 3, stride: 1, pad: 0}
  - {name: fc, type: fc, C: 16, M: 8}
"""


def _cli(args, cwd):
    return cli(*args, cwd=cwd)


@pytest.fixture
def two_layer_result(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TWO_LAYERS)
    r = _cli(["search", "-a", "eyeriss_v1", "-p", "tiny.yaml", "--workers", "1", "-q", "--summary",
              "--json", "net.json"], tmp_path)
    assert r.returncode == 0, r.output
    return tmp_path, json.loads((tmp_path / "net.json").read_text())


def test_network_export_with_an_inexpressible_layer_writes_nothing_and_names_it(two_layer_result):
    """Exporting AlexNet on eyeriss_v1 wrote conv1-5, then stopped at fc6 (M unrolled on
    both X and Y, which Timeloop's spatial directive cannot say) with an error naming
    neither the file nor the layer."""
    folder, docs = two_layer_result
    fc = docs[1]
    assert fc["layer"]["name"] == "fc"
    loops = [l for l in fc["mapping"]["loops"] if l["dim"] != "M"]
    loops += [{"level": "array", "dim": "M", "factor": 2, "spatial": "X"},
              {"level": "array", "dim": "M", "factor": 4, "spatial": "Y"}]
    fc["mapping"]["loops"] = loops
    (folder / "bad.json").write_text(json.dumps(docs))
    ok = _cli(["evaluate", "-a", "eyeriss_v1", "-p", "tiny.yaml", "-m", "bad.json", "-l", "fc"], folder)
    assert ok.returncode == 0, ok.output                  # a valid mapping of ours
    r = _cli(["export", "timeloop", "bad.json", "-o", "maps"], folder)
    assert r.returncode == 2
    assert "bad.json" in r.output and "layer fc" in r.output and "twice" in r.output
    assert not (folder / "maps").exists()                # c1's map is not written either
    assert _cli(["export", "timeloop", "bad.json", "-l", "c1", "-o", "maps"], folder).returncode == 0


def test_totals_line_shows_the_chip_split_and_small_latencies(two_layer_result):
    """The README says results report on-chip and off-chip energy; the printed line did not,
    and a 72-cycle layer's latency printed as 0.000 ms."""
    from mapper.arch import load_arch
    from mapper.model import evaluate
    from mapper.problem import load_network
    from mapper.mapping import parse_mapping
    from mapper.report import time_text, totals_line
    folder, docs = two_layer_result
    arch = load_arch("eyeriss_v1")
    layer = load_network(str(folder / "tiny.yaml")).layer("fc")
    cost = evaluate(layer, arch, parse_mapping(docs[1], arch, "net.json"))
    line = totals_line(cost, arch)
    assert f"on chip {cost.chip_energy_pj:,.0f}, off chip {cost.offchip_pj:,.0f}" in line
    assert cost.chip_energy_pj + cost.offchip_pj == pytest.approx(cost.energy_pj) and cost.offchip_pj > 0
    assert time_text(72 / 200e6) == "0.360 us" and time_text(4.792e-3) == "4.792 ms" and time_text(2.5) == "2.500 s"


def test_evaluate_a_timeloop_map_on_a_one_layer_network_needs_no_layer(two_layer_result):
    """A Timeloop map.yaml names no layer; on a converted one-layer problem, --layer was
    still required."""
    folder, docs = two_layer_result
    (folder / "one.yaml").write_text(TWO_LAYERS.replace(
        "  - {name: c1, type: conv, C: 2, M: 4, H: 6, W: 6, R: 3, S: 3, stride: 1, pad: 0}\n", ""))
    assert _cli(["export", "timeloop", "net.json", "-l", "fc", "-o", "fc.yaml"], folder).returncode == 0
    r = _cli(["evaluate", "-a", "eyeriss_v1", "-p", "one.yaml", "-m", "fc.yaml"], folder)
    assert r.returncode == 0, r.output
    assert f"energy {docs[1]['cost']['energy_pj']:,.1f} pJ" in r.output
    r = _cli(["evaluate", "-a", "eyeriss_v1", "-p", "tiny.yaml", "-m", "fc.yaml"], folder)
    assert r.returncode == 2 and "give --layer" in r.output      # two layers: which one is still asked


def test_energy_plot_keeps_headroom_and_wraps_a_long_title(tmp_path):
    """A zero part on top of the stack (no clock/static energy) pinned the axis to the tallest
    bar; a narrow figure's title ran off its left edge."""
    pytest.importorskip("matplotlib")
    from mapper.plot import results_figure
    header = "network,arch,layer,macs,energy_pj,energy_DRAM_pj,mac_energy_pj,network_energy_pj," \
             "leakage_energy_pj,cycle_energy_pj\n"
    rows = ["a_network_with_a_long_name,an_arch_with_a_long_name,l1,10,100,80,10,10,0,0",
            "a_network_with_a_long_name,another_arch_with_a_long_name,l1,10,60,40,10,5,0,5"]
    (tmp_path / "summary.csv").write_text(header + "\n".join(rows) + "\n")
    for scale in ("per-mac", "linear"):
        fig = results_figure(tmp_path, scale)
        ax = [a for a in fig.axes if a.patches][0]
        top = max(p.get_y() + p.get_height() for p in ax.patches)
        assert ax.get_ylim()[1] > top * 1.01
        lines = ax.get_title().splitlines()
        assert len(lines) >= 2 and max(map(len, lines)) <= max(60, int(fig.get_figwidth() * 10))


def test_evaluate_of_a_sparse_result_keeps_its_densities(tmp_path):
    """A result searched with --density was re-evaluated dense by `evaluate -m`, silently
    changing its cost (13,020 -> 16,924 pJ on a small FC layer on eyeriss_v2)."""
    (tmp_path / "tiny.yaml").write_text(TWO_LAYERS)
    r = _cli(["search", "-a", "eyeriss_v2", "-p", "tiny.yaml", "-l", "fc", "--density", "weights=0.5,inputs=0.5",
              "--workers", "1", "--time-limit", "2", "-q", "--json", "sp.json"], tmp_path)
    assert r.returncode == 0, r.output
    doc = json.loads((tmp_path / "sp.json").read_text())
    ev = _cli(["evaluate", "-a", "eyeriss_v2", "-p", "tiny.yaml", "-m", "sp.json", "--json", "ev.json"], tmp_path)
    assert ev.returncode == 0, ev.output
    assert json.loads((tmp_path / "ev.json").read_text())["cost"]["energy_pj"] == doc["cost"]["energy_pj"]
    dense = _cli(["evaluate", "-a", "eyeriss_v2", "-p", "tiny.yaml", "-m", "sp.json", "--density",
                  "weights=1,inputs=1", "--json", "dense.json"], tmp_path)
    assert dense.returncode == 0, dense.output
    assert json.loads((tmp_path / "dense.json").read_text())["cost"]["energy_pj"] > doc["cost"]["energy_pj"]
