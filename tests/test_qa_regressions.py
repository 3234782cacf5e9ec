"""Regressions found by using the tool as a new (and an adversarial) user: each test pins one
problem that was seen, so that it stays fixed."""
from __future__ import annotations

import json

import pytest


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
