"""Plots: energy per layer by storage level (from a sweep's summary.csv) and Eyexam waterfalls.

matplotlib is an optional dependency (the `[plot]` extra), imported only when a plot is
drawn. Figures are drawn on the Agg canvas directly (no pyplot, no global backend state)
and written atomically: saved to a temporary file in the target folder, then renamed
over the target, so an interrupted run never leaves a half-written PNG.
"""
from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Any

from .result import atomic
from .spec import MapperError, clip, read_text

#: The part of a layer's energy no storage level accounts for: MACs, fan-out networks, leakage.
OTHER = "MAC+network"
SUMMARY_COLUMNS = ("network", "arch", "layer", "energy_pj")
LEVEL_COLUMN = re.compile(r"^energy_(.+)_pj$")


def _matplotlib():
    """(Figure, FigureCanvasAgg), or a MapperError saying how to install matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MapperError("plotting needs matplotlib, which is not installed: install the [plot] extra "
                          "(pip install 'mapper[plot]')") from None
    return Figure, FigureCanvasAgg


def _save(fig, out_png: str | Path) -> Path:
    """Save a figure as PNG atomically (mapper.result.atomic)."""
    with atomic(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return Path(out_png)


# ---------------------------------------------------------------------------------------
# Energy per layer by storage level

def _number(text: str, path: Path, row: int, column: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise MapperError(f"{path}: row {row}, column {column}: expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise MapperError(f"{path}: row {row}, column {column}: expected a finite number, got {text!r}")
    return value


def read_summary(path: str | Path) -> dict[str, dict[str, Any]]:
    """A sweep's summary.csv as {arch: {"labels": [layer per row], "levels": [storage
    levels with values for this arch], "energy": {level or 'MAC+network': [pJ per row]},
    "total": [energy_pj per row]}}, archs in order of first appearance. A level column
    that is empty on every row of an arch does not apply to it; 'MAC+network' is
    energy_pj minus the sum of the arch's level columns."""
    path = Path(path)
    text = read_text(path, "the sweep summary")
    try:
        # every field of a cell fits csv's default limit (128 KiB) since the file is bounded;
        # a longer one, or a NUL, is a malformed summary
        reader = csv.DictReader(text.splitlines())
        header = reader.fieldnames or []
        table_rows = list(enumerate(reader, start=2))
    except csv.Error as exc:
        raise MapperError(f"{path}: not a sweep summary.csv ({clip(exc, 80)})") from None
    missing = [c for c in SUMMARY_COLUMNS if c not in header]
    if missing:
        raise MapperError(f"{path}: not a sweep summary.csv: missing column(s) {', '.join(missing)}")
    levels = [m.group(1) for c in header if (m := LEVEL_COLUMN.match(c))]
    rows = []
    for i, row in table_rows:
        if None in row or any(v is None for v in row.values()):
            raise MapperError(f"{path}: row {i} has {'more' if None in row else 'fewer'} cells than the header")
        rows.append((i, row))
    if not rows:
        raise MapperError(f"{path}: no rows: nothing to plot")
    networks = {row["network"] for _, row in rows}
    out: dict[str, dict[str, Any]] = {}
    for i, row in rows:
        arch = row["arch"]
        if not arch:
            raise MapperError(f"{path}: row {i}: empty arch")
        entry = out.setdefault(arch, {"labels": [], "levels": [], "values": [], "total": []})
        entry["labels"].append(row["layer"] if len(networks) == 1 else f"{row['network']}/{row['layer']}")
        entry["total"].append(_number(row["energy_pj"], path, i, "energy_pj"))
        entry["values"].append({lv: _number(row[f"energy_{lv}_pj"], path, i, f"energy_{lv}_pj")
                                for lv in levels if row[f"energy_{lv}_pj"].strip() != ""})
    for arch, entry in out.items():
        used = [lv for lv in levels if any(lv in v for v in entry["values"])]
        energy = {lv: [v.get(lv, 0.0) for v in entry["values"]] for lv in used}
        other = []
        for k, (v, total) in enumerate(zip(entry["values"], entry["total"])):
            rest = total - sum(v.get(lv, 0.0) for lv in used)
            if rest < -1e-6 * max(abs(total), 1.0):
                raise MapperError(f"{path}: arch {arch}, layer {entry['labels'][k]}: the level energies add "
                                  f"up to more than energy_pj ({total - rest:.6g} > {total:.6g})")
            other.append(max(rest, 0.0))
        energy[OTHER] = other
        entry["levels"] = used
        entry["energy"] = energy
        del entry["values"]
    return out


def _energy(pj: float) -> str:
    for scale, unit in ((1e12, "J"), (1e9, "mJ"), (1e6, "uJ"), (1e3, "nJ")):
        if abs(pj) >= scale:
            return f"{pj / scale:.3g} {unit}"
    return f"{pj:.3g} pJ"


def plot_results(results_dir: str | Path, out_png: str | Path | None = None) -> Path:
    """Energy per layer stacked by storage level (plus MAC+network), one panel per arch,
    from results_dir/summary.csv. Writes out_png (default results_dir/energy_by_level.png)
    atomically and returns its path."""
    results_dir = Path(results_dir)
    data = read_summary(results_dir / "summary.csv")
    out = Path(out_png) if out_png is not None else results_dir / "energy_by_level.png"
    Figure, Canvas = _matplotlib()
    names = []
    for entry in data.values():
        names += [lv for lv in entry["levels"] if lv not in names]
    palette = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
               "#ff9da7", "#9c755f", "#86bcb6", "#d37295", "#fabfd2"]
    colors = {lv: palette[i % len(palette)] for i, lv in enumerate(names)}
    colors[OTHER] = "#bab0ac"
    n_layers = max(len(e["labels"]) for e in data.values())
    fig = Figure(figsize=(max(7.0, 0.55 * n_layers + 3.0), 3.6 * len(data)), layout="constrained")
    Canvas(fig)
    axes = fig.subplots(len(data), 1, squeeze=False)[:, 0]
    for ax, (arch, entry) in zip(axes, data.items()):
        x = list(range(len(entry["labels"])))
        bottom = [0.0] * len(x)
        for lv in entry["levels"] + [OTHER]:
            values = entry["energy"][lv]
            ax.bar(x, values, bottom=bottom, color=colors[lv], label=lv, width=0.7, edgecolor="white",
                   linewidth=0.5)
            bottom = [b + v for b, v in zip(bottom, values)]
        ax.set_xticks(x, entry["labels"], rotation=45 if len(x) > 6 else 0,
                      ha="right" if len(x) > 6 else "center", fontsize=8)
        ax.set_ylabel("energy (pJ)")
        ax.set_title(f"{arch}: energy per layer by storage level (total {_energy(sum(entry['total']))})",
                     fontsize=10)
        handles, labels = ax.get_legend_handles_labels()      # top of the stack first
        ax.legend(handles[::-1], labels[::-1], fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0),
                  frameon=False)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    return _save(fig, out)


# ---------------------------------------------------------------------------------------
# Eyexam waterfall

def eyexam_steps(eyexam_json: str | Path) -> tuple[str, list[dict[str, Any]], int]:
    """(title, steps as dicts with step/constraint/bound/loss/peak_loss_pct, PEs) of an
    Eyexam JSON: one result, or the network summary of a list of per-layer results."""
    from .eyexam import EyexamResult, biggest_loss, load_json, network_summary

    loaded = load_json(eyexam_json)
    if isinstance(loaded, EyexamResult):
        steps = [s.to_dict() for s in loaded.steps]
        title = (f"Eyexam: {loaded.layer_name} ({loaded.macs:,} MACs) on {loaded.arch_name}, "
                 f"step 7 objective {loaded.settings.get('objective')}")
        pes = loaded.pes
    else:
        summary = network_summary(loaded)
        steps = summary["steps"]
        title = (f"Eyexam: {summary['layers']} layers ({summary['macs']:,} MACs) on {summary['arch']}, "
                 f"MAC-weighted, step 7 objective {summary['objective']}")
        pes = summary["pes"]
    big = biggest_loss([s["bound"] for s in steps], pes)
    for s in steps:
        s["biggest"] = s["step"] == big
    return title, steps, pes


def plot_eyexam(eyexam_json: str | Path, out_png: str | Path | None = None) -> Path:
    """A waterfall of the seven Eyexam steps: a bar of each step's bound (MACs/cycle), the
    loss against the previous step stacked on it in red (the biggest loss outlined), the
    peak (one MAC per PE per cycle) as a dotted line; log scale when the bounds span more
    than 100x. A list of per-layer results is plotted as the network summary. Writes
    out_png (default: the JSON path with .png) atomically and returns its path."""
    from .eyexam import _num, _pct

    eyexam_json = Path(eyexam_json)
    title, steps, pes = eyexam_steps(eyexam_json)
    out = Path(out_png) if out_png is not None else eyexam_json.with_suffix(".png")
    Figure, Canvas = _matplotlib()
    bounds = [s["bound"] for s in steps]
    log = max(bounds) / min(bounds) > 100
    base = min(bounds) / 3 if log else 0.0
    fig = Figure(figsize=(9.5, 5.0), layout="constrained")
    Canvas(fig)
    ax = fig.subplots()
    x = list(range(1, len(steps) + 1))
    ax.bar(x, [b - base for b in bounds], bottom=base, width=0.6, color="#4e79a7", label="bound (MACs/cycle)")
    labelled = False
    for k, s in enumerate(steps):
        if k == 0:
            continue
        prev = bounds[k - 1]
        if prev > s["bound"]:
            ax.bar(x[k], prev - s["bound"], bottom=s["bound"], width=0.6, color="#e15759",
                   alpha=0.9 if s["biggest"] else 0.45, hatch="//",
                   edgecolor="black" if s["biggest"] else "#e15759", linewidth=1.8 if s["biggest"] else 0.5,
                   label=None if labelled else "loss vs previous step")
            labelled = True
        ax.plot([x[k - 1] - 0.3, x[k] + 0.3], [prev, prev], color="grey", linewidth=0.8, linestyle="--")
    for k, (xi, s) in enumerate(zip(x, steps)):
        prev = bounds[k - 1] if k else s["bound"]
        tag = _num(s["bound"])
        if prev > s["bound"]:
            tag += f"\n-{_pct(s['loss_pct'])}"
        if s["biggest"]:
            tag += "\nbiggest loss"
        ax.annotate(tag, (xi, max(prev, s["bound"])), xytext=(0, 3), textcoords="offset points", ha="center",
                    va="bottom", fontsize=8, fontweight="bold" if s["biggest"] else "normal")
    ax.axhline(pes, color="black", linestyle=":", linewidth=1, label=f"peak: {pes:,} PEs x 1 MAC/cycle")
    if log:
        ax.set_yscale("log")
        ax.set_ylim(base, max(bounds) * 60)
    else:
        ax.set_ylim(0, max(max(bounds), pes) * 1.3)
    ax.set_xticks(x, [f"{s['step']}\n" + s["constraint"].replace(" ", "\n", 1) for s in steps], fontsize=8)
    ax.set_ylabel("upper bound (MACs/cycle)" + (", log scale" if log else ""))
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    return _save(fig, out)
