"""Eyexam's text tables for the CLI: one layer's steps, a network's per-layer bounds and steps."""
from __future__ import annotations

from typing import Any

from ..report import table
from .result import EyexamResult


def _num(x: float) -> str:
    if abs(x - round(x)) < 1e-9 * max(1.0, abs(x)) or abs(x) >= 1000:
        return f"{round(x):,}"
    if abs(x) >= 10:
        return f"{x:,.1f}"
    return f"{x:.3g}"


def _pct(p: float) -> str:
    """Percent with one decimal, more when that would round a partial loss up to 100%."""
    digits = 1
    while digits < 6 and p < 100.0 and round(p, digits) >= 100.0:
        digits += 1
    return f"{p:.{digits}f}%"


def _steps_table(steps: list[dict[str, Any]], big: int | None, pes: int) -> list[str]:
    rows = [["", "step", "constraint", "bound MACs/cycle", "loss", "loss %", "of peak", "note"]]
    for s in steps:
        first = s["step"] == 1
        note = s["note"]
        if s.get("status"):
            note = f"[{s['status']}] {note}"
        rows.append(["=>" if s["step"] == big else "", str(s["step"]), s["constraint"], _num(s["bound"]),
                     "-" if first else _num(s["loss"]), "-" if first else _pct(s["loss_pct"]),
                     _pct(s.get("peak_loss_pct", 0.0)), note])
    lines = table(rows, {3, 4, 5, 6})
    lines.append(f"loss: against the previous step; of peak: share of the peak ({pes:,} PEs x 1 MAC/cycle) "
                 f"lost at this step")
    if big is not None:
        b = steps[big - 1]
        lines.append(f"=> biggest loss: step {big} ({b['constraint']}), {_pct(b['peak_loss_pct'])} of the peak")
    return lines


def format_table(result: EyexamResult) -> str:
    """The seven steps as a text table for the CLI (the biggest loss marked '=>')."""
    s = result.settings
    head = (f"Eyexam: layer {result.layer_name} ({result.macs:,} MACs) on {result.arch_name} "
            f"({result.pes:,} PEs); step 7 objective {s.get('objective')}, "
            f"search {s.get('algorithm')}, seed {s.get('seed')}, time limit "
            f"{s.get('time_limit') if s.get('time_limit') is not None else 'none'}")
    lines = [head, ""] + _steps_table([st.to_dict() for st in result.steps], result.biggest_loss, result.pes)
    return "\n".join(lines)


def format_network(summary: dict[str, Any]) -> str:
    """Per-layer bounds and the network's MAC-weighted steps as text for the CLI."""
    rows = [["layer", "MACs"] + [f"step {k}" for k in range(1, 8)] + ["biggest loss"]]
    for pl in summary["per_layer"]:
        rows.append([pl["layer"], f"{pl['macs']:,}"] + [_num(b) for b in pl["bounds"]] +
                    [f"step {pl['biggest_loss']}" if pl["biggest_loss"] else "-"])
    big = summary["biggest_loss"]["step"] if summary["biggest_loss"] else None
    lines = [f"Eyexam: {summary['layers']} layers ({summary['macs']:,} MACs) on {summary['arch']}; "
             f"bounds in MACs/cycle; step 7 objective {summary['objective']}", ""]
    lines += table(rows, range(1, 9))
    lines += ["", "network (MAC-weighted: total MACs / sum of per-layer MACs/bound)", ""]
    lines += _steps_table(summary["steps"], big, summary["pes"])
    return "\n".join(lines)
