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
from .spec import MapperError, clip, load_json, read_text

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


#: summary.csv columns of the energy outside the storage levels, as plotted (older summaries
#: without them get one OTHER bar: energy_pj minus the levels).
PARTS = {"mac_energy_pj": "MAC", "network_energy_pj": "network", "leakage_energy_pj": "leakage",
         "cycle_energy_pj": "clock/static"}
SCALES = ("log", "per-mac", "linear")


def _rows(path: Path) -> list[tuple[int, dict[str, str]]]:
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
    rows = []
    for i, row in table_rows:
        if None in row or any(v is None for v in row.values()):
            raise MapperError(f"{path}: row {i} has {'more' if None in row else 'fewer'} cells than the header")
        rows.append((i, row))
    if not rows:
        raise MapperError(f"{path}: no rows: nothing to plot")
    return rows


def read_summary(path: str | Path, network: str | None = None) -> dict[str, dict[str, Any]]:
    """A sweep's summary.csv (only `network`'s rows if given) as {arch: {"labels": [layer
    per row], "levels": [storage levels with values for this arch], "energy": {level or
    part: [pJ per row]}, "total": [energy_pj per row], "macs": [MACs per row]}}, archs in
    order of first appearance. A level column empty on every row of an arch does not apply
    to it. The parts are MAC, network and leakage where the summary has their columns,
    else one 'MAC+network' (OTHER): energy_pj minus the sum of the arch's level columns."""
    path = Path(path)
    rows = _rows(path)
    header = list(rows[0][1])
    levels = [m.group(1) for c in header if (m := LEVEL_COLUMN.match(c))]
    parts = [c for c in PARTS if c in header]
    if network is not None:
        rows = [(i, r) for i, r in rows if r["network"] == network]
    networks = {row["network"] for _, row in rows}
    out: dict[str, dict[str, Any]] = {}
    for i, row in rows:
        arch = row["arch"]
        if not arch:
            raise MapperError(f"{path}: row {i}: empty arch")
        entry = out.setdefault(arch, {"labels": [], "levels": [], "values": [], "total": [], "macs": [],
                                      "parts": []})
        entry["labels"].append(row["layer"] if len(networks) == 1 else f"{row['network']}/{row['layer']}")
        entry["total"].append(_number(row["energy_pj"], path, i, "energy_pj"))
        entry["macs"].append(_number(row["macs"], path, i, "macs") if "macs" in row else 1.0)
        entry["values"].append({lv: _number(row[f"energy_{lv}_pj"], path, i, f"energy_{lv}_pj")
                                for lv in levels if row[f"energy_{lv}_pj"].strip() != ""})
        entry["parts"].append({PARTS[c]: _number(row[c], path, i, c) for c in parts})
    for arch, entry in out.items():
        used = [lv for lv in levels if any(lv in v for v in entry["values"])]
        energy = {lv: [v.get(lv, 0.0) for v in entry["values"]] for lv in used}
        rest_names = [PARTS[c] for c in parts] or [OTHER]
        rest_values = {name: [] for name in rest_names}
        for k, (v, total) in enumerate(zip(entry["values"], entry["total"])):
            rest = total - sum(v.get(lv, 0.0) for lv in used)
            if rest < -1e-6 * max(abs(total), 1.0):
                raise MapperError(f"{path}: arch {arch}, layer {entry['labels'][k]}: the level energies add "
                                  f"up to more than energy_pj ({total - rest:.6g} > {total:.6g})")
            if parts:
                for name in rest_names:
                    rest_values[name].append(entry["parts"][k][name])
            else:
                rest_values[OTHER].append(max(rest, 0.0))
        energy.update(rest_values)
        entry["levels"] = used
        entry["rest"] = rest_names
        entry["energy"] = energy
        del entry["values"], entry["parts"]
    return out


def networks_of(path: str | Path) -> list[str]:
    """The networks of a summary.csv, in order of first appearance."""
    return list(dict.fromkeys(row["network"] for _, row in _rows(Path(path))))


def _energy(pj: float, unit: str = "pJ") -> str:
    from .report import energy_text
    return energy_text(pj, unit)


PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#86bcb6", "#d37295", "#fabfd2"]
REST_COLORS = {OTHER: "#bab0ac", "MAC": "#bab0ac", "network": "#79706e", "leakage": "#d4a6c8",
               "clock/static": "#e8c9a0"}       # each non-level part its own colour
HATCHES = ["", "//", "..", "xx", "\\\\", "++"]


def results_figure(results_dir: str | Path, scale: str = "log"):
    """The figure of `plot_results` (for tests that check what it draws): one panel per
    network; in each, per layer, one bar per arch side by side, stacked by storage level
    then MAC, network and leakage. `scale`: per-mac (energy per MAC, so layers of any
    size compare), log (energy on a log axis: one FC layer no longer dwarfs every conv
    layer) or linear (energy, engineering units)."""
    import textwrap
    if scale not in SCALES:
        raise MapperError(f"--scale: '{scale}' is not one of {', '.join(SCALES)}")
    path = Path(results_dir) / "summary.csv"
    networks = networks_of(path)
    data = {net: read_summary(path, net) for net in networks}
    Figure, Canvas = _matplotlib()
    from matplotlib.patches import Patch
    from matplotlib.ticker import EngFormatter
    names: list[str] = []
    rests: list[str] = []
    for per_arch in data.values():
        for entry in per_arch.values():
            names += [lv for lv in entry["levels"] if lv not in names]
            rests += [r for r in entry["rest"] if r not in rests]
    colors = {lv: PALETTE[i % len(PALETTE)] for i, lv in enumerate(names)}
    colors.update({r: REST_COLORS.get(r, "#bab0ac") for r in rests})
    archs = list(dict.fromkeys(a for per_arch in data.values() for a in per_arch))
    n_bars = max(len(e["labels"]) * len(per_arch) for per_arch in data.values() for e in per_arch.values())
    fig = Figure(figsize=(max(7.0, 0.45 * n_bars + 3.5), 3.8 * len(data)), layout="constrained")
    Canvas(fig)
    axes = fig.subplots(len(data), 1, squeeze=False)[:, 0]
    for ax, (net, per_arch) in zip(axes, data.items()):
        layers = list(dict.fromkeys(l for e in per_arch.values() for l in e["labels"]))
        width = 0.8 / len(per_arch)
        for a_i, (arch, entry) in enumerate(per_arch.items()):
            x = [layers.index(l) - 0.4 + width * (a_i + 0.5) for l in entry["labels"]]
            bottom = [0.0] * len(x)
            for part in entry["levels"] + entry["rest"]:
                values = entry["energy"][part]
                if scale == "per-mac":
                    values = [v / m for v, m in zip(values, entry["macs"])]
                ax.bar(x, values, bottom=bottom, width=width * 0.95, color=colors[part],
                       hatch=HATCHES[archs.index(arch) % len(HATCHES)], edgecolor="white", linewidth=0.3,
                       label=f"{arch}|{part}")
                bottom = [b + v for b, v in zip(bottom, values)]
        ax.set_xticks(range(len(layers)), layers, rotation=45 if len(layers) > 6 else 0,
                      ha="right" if len(layers) > 6 else "center", fontsize=8)
        if scale == "per-mac":
            ax.set_ylabel("energy per MAC (pJ/MAC)")
        else:
            ax.set_ylabel("energy per layer" + (", log scale" if scale == "log" else ""))
            for bar in ax.patches:           # pJ -> J so the formatter prints mJ, uJ, ...
                bar.set_y(bar.get_y() * 1e-12)
                bar.set_height(bar.get_height() * 1e-12)
            ax.relim()
            ax.autoscale_view()
            if scale == "log":
                ax.set_yscale("log")
            ax.yaxis.set_major_formatter(EngFormatter(unit="J"))
        if scale != "log":
            # a zero part stacked on top (e.g. no clock/static energy) pins the axis at the tallest
            # bar with no headroom; give it some
            top = max((p.get_y() + p.get_height() for p in ax.patches), default=0.0)
            ax.set_ylim(0.0, top * 1.05 if top > 0 else 1.0)
        totals = ", ".join(f"{a} {_energy(sum(e['total']))} ({sum(e['total']) / sum(e['macs']):.3g} pJ/MAC)"
                           for a, e in per_arch.items())
        title = f"{net}: energy {'per MAC ' if scale == 'per-mac' else ''}by level; total {totals}"
        ax.set_title(textwrap.fill(title, max(60, int(fig.get_figwidth() * 10))), fontsize=10)  # never clipped
        used = [p for p in names + rests if any(p in e["energy"] for e in per_arch.values())]
        handles = [Patch(facecolor=colors[p], label=p) for p in reversed(used)]
        if len(per_arch) > 1:
            handles += [Patch(facecolor="white", edgecolor="black", hatch=HATCHES[archs.index(a) % len(HATCHES)],
                              label=a) for a in per_arch]
        ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    return fig


def plot_results(results_dir: str | Path, out_png: str | Path | None = None, scale: str = "log") -> Path:
    """Write `results_figure` of results_dir/summary.csv to out_png (default
    results_dir/energy_by_level.png) atomically and return its path."""
    results_dir = Path(results_dir)
    fig = results_figure(results_dir, scale)
    out = Path(out_png) if out_png is not None else results_dir / "energy_by_level.png"
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

    eyexam_json = Path(eyexam_json)
    out = Path(out_png) if out_png is not None else eyexam_json.with_suffix(".png")
    return _save(eyexam_figure(eyexam_json), out)


def eyexam_figure(eyexam_json: str | Path):
    """The figure of `plot_eyexam`: the waterfall, and under it each step's reason (what
    limits the bound there, from the step's note)."""
    import textwrap
    from .eyexam.text import _num, _pct

    title, steps, pes = eyexam_steps(eyexam_json)
    Figure, Canvas = _matplotlib()
    bounds = [s["bound"] for s in steps]
    log = max(bounds) / min(bounds) > 100
    base = min(bounds) / 3 if log else 0.0
    reasons = [textwrap.shorten(f"{s['step']}. {s['constraint']}: {s.get('note') or '-'}", 150) for s in steps]
    fig = Figure(figsize=(9.5, 5.0 + 0.22 * len(reasons)), layout="constrained")
    Canvas(fig)
    ax, below = fig.subplots(2, 1, height_ratios=[5.0, 0.22 * len(reasons) + 0.2])
    below.axis("off")
    for k, text in enumerate(reasons):
        below.text(0.0, 1.0 - k / max(1, len(reasons)), text, fontsize=7.5, va="top", ha="left",
                   transform=below.transAxes, fontweight="bold" if steps[k]["biggest"] else "normal")
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
    return fig


# ---------------------------------------------------------------------------------------
# Energy-delay fronts

def read_front(front_json: str | Path) -> tuple[str, list[tuple[float, int]], str]:
    """(title, [(energy pJ, cycles)] ascending cycles, guarantee) of `search --pareto --json`:
    the network front when it has one, else its one layer's."""
    path = Path(front_json)
    data = load_json(path, "the front")
    if not isinstance(data, dict) or data.get("pareto") != "energy-cycles" or not isinstance(data.get("layers"), list):
        raise MapperError(f"{path}: not a front (expected the JSON of `mapper search --pareto --json`)")
    arch = (data.get("arch") or {}).get("name", "?")
    try:
        if data.get("network"):
            pts = [(float(p["energy_pj"]), int(p["cycles"])) for p in data["network"]]
            layers = data["layers"]
            exact = all(l.get("exact") for l in layers)
            return (f"network front: {len(layers)} layers on {arch} (sums of one mapping per layer)", pts,
                    "exact" if exact else "as good as the layers' fronts (some sampled)")
        layer = data["layers"][0]
        pts = [(float(d["cost"]["energy_pj"]), int(d["cost"]["cycles"])) for d in layer["points"]]
        return f"front of {layer['layer']} on {arch}", pts, str(layer.get("guarantee", ""))
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise MapperError(f"{path}: a front point is malformed ({exc!r})") from None


def front_figure(front_json: str | Path):
    """Energy (J, engineering units) against cycles of a front: its points joined by the
    staircase that bounds what the front dominates, the minimum-EDP point marked."""
    import textwrap

    from matplotlib.ticker import EngFormatter
    title, pts, guarantee = read_front(front_json)
    if not pts:
        raise MapperError(f"{front_json}: the front has no points")
    Figure, Canvas = _matplotlib()
    fig = Figure(figsize=(7.5, 5.0), layout="constrained")
    Canvas(fig)
    ax = fig.subplots()
    cycles = [c for _, c in pts]
    energy = [e * 1e-12 for e, _ in pts]
    ax.step(cycles, energy, where="post", color="#4e79a7", linewidth=1, alpha=0.6)
    ax.plot(cycles, energy, "o", color="#4e79a7", label="non-dominated mappings")
    best = min(range(len(pts)), key=lambda i: pts[i][0] * pts[i][1])
    ax.plot([cycles[best]], [energy[best]], "*", color="#e15759", markersize=14, label="minimum EDP")
    ax.xaxis.set_major_formatter(EngFormatter())
    ax.yaxis.set_major_formatter(EngFormatter(unit="J"))
    ax.set_xlabel("cycles")
    ax.set_ylabel("energy")
    ax.set_title("\n".join([title, *textwrap.wrap(guarantee, 110)]), fontsize=9)   # a long guarantee wraps
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def plot_front(front_json: str | Path, out_png: str | Path | None = None) -> Path:
    """Write `front_figure` to out_png (default: the JSON path with .png) atomically."""
    front_json = Path(front_json)
    return _save(front_figure(front_json), Path(out_png) if out_png else front_json.with_suffix(".png"))
