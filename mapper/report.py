"""Human-readable text: the per-level breakdown table and the totals line."""
from __future__ import annotations

from .arch import Arch
from .model import Cost
from .problem import TENSORS, Layer, label


def table(rows, right, rule: bool = True) -> list[str]:
    """Text table lines: columns padded to their widest cell, those in `right` (indices)
    right-aligned, a dashed rule under the header row if `rule`."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for k, r in enumerate(rows):
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))]
        lines.append("  ".join(cells).rstrip())
        if k == 0 and rule:
            lines.append("-" * len(lines[0]))
    return lines


def _num(x: float) -> str:
    return f"{int(round(x)):,}"


def energy_text(value: float, unit: str = "pJ") -> str:
    """An energy with its unit, in engineering units when the unit is pJ (e.g. '1.09 mJ')."""
    if unit == "pJ":
        for scale, name in ((1e12, "J"), (1e9, "mJ"), (1e6, "uJ"), (1e3, "nJ")):
            if abs(value) >= scale:
                return f"{value / scale:.3g} {name}"
    return f"{value:.3g} {unit}"


def unit_note(arch: Arch) -> str | None:
    """The line that says an arch's energy unit is an assumption (None when calibrated)."""
    if arch.energy_calibrated:
        return None
    return (f"note: {arch.name} declares its energy unit '{arch.energy_unit}' uncalibrated (energy_unit."
            f"calibrated: false): ratios between mappings, levels and archs are meaningful, absolute values are not")


def breakdown_table(cost: Cost, layer: Layer | None = None, unit: str = "pJ") -> str:
    """One row per level and tensor: reads, fills, updates (words), energy and its share of the total
    (tensors named as `layer` names them, e.g. a matmul's A, B and Out)."""
    rows = [("level", "tensor", "reads (words)", "fills (words)", "updates (words)", f"energy {unit}", "share")]
    total = cost.energy_pj

    def share(e: float) -> str:          # every energy may be 0 (the allowed minimum): no share then
        return f"{100 * e / total:.1f}%" if total else "-"
    for level, tensors in cost.levels.items():
        for t in TENSORS:
            if t in tensors:
                c = tensors[t]
                rows.append((level, label(layer, t) if layer else t, _num(c.reads), _num(c.fills), _num(c.updates),
                             f"{c.energy_pj:,.1f}", share(c.energy_pj)))
    for fan, e in cost.network_pj.items():
        rows.append((fan, "(network)", "", "", "", f"{e:,.1f}", share(e)))
    rows.append(("MAC", "(MACs)", _num(cost.macs), "", "", f"{cost.mac_pj:,.1f}", share(cost.mac_pj)))
    if cost.leakage_pj:
        rows.append(("leakage", "", "", "", "", f"{cost.leakage_pj:,.1f}", share(cost.leakage_pj)))
    if cost.cycle_pj:
        rows.append(("per cycle", "(clock, static)", "", "", "", f"{cost.cycle_pj:,.1f}",
                     share(cost.cycle_pj)))
    return "\n".join(table(rows, right=range(2, len(rows[0]))))


def time_text(seconds: float) -> str:
    """A duration in s, ms or us, whichever keeps three significant decimals (a small layer's
    72 cycles are 0.360 us, not 0.000 ms)."""
    for scale, name in ((1.0, "s"), (1e-3, "ms")):
        if seconds >= scale:
            return f"{seconds / scale:.3f} {name}"
    return f"{seconds * 1e6:.3f} us"


def totals_line(cost: Cost, arch: Arch) -> str:
    """Energy (with its on-chip / off-chip split), cycles and what bounds them, latency,
    utilization (of performed MACs, see model.utilization) and EDP of one mapping, in one line."""
    seconds = cost.cycles / (arch.clock_mhz * 1e6)
    level, _ = cost.bottleneck()
    limit = "compute" if level == "compute" else f"{level} bandwidth"
    u = arch.energy_unit
    # utilization counts performed MACs (model.utilization); say so where zeros were skipped
    skipped = f"; {cost.performed_macs:,.0f} of {cost.macs:,} MACs performed, zeros skipped" \
        if cost.performed_macs != cost.macs else ""
    return (f"energy {cost.energy_pj:,.1f} {u} ({cost.pj_per_mac:.3f} {u}/MAC; on chip {cost.chip_energy_pj:,.0f}, "
            f"off chip {cost.offchip_pj:,.0f})  cycles {cost.cycles:,} "
            f"({limit}-bound; {time_text(seconds)} at {arch.clock_mhz:g} MHz)  utilization "
            f"{100 * cost.utilization:.1f}% ({cost.active_pes}/{arch.pes} {arch.unit_name} active{skipped})  "
            f"EDP {cost.edp:.4g} {u}*cycles")


def layer_table(layers: list[Layer]) -> str:
    rows = [("layer", "type", "N", "G", "M", "C", "P", "Q", "R", "S", "stride", "MACs")]
    for l in layers:
        stride = f"{l.stride[0]}" if l.stride[0] == l.stride[1] else f"{l.stride[0]}x{l.stride[1]}"
        rows.append((l.name, l.type, *(str(v) for v in l.dims.values()), stride, f"{l.macs:,}"))
    rows.append(("total", "", "", "", "", "", "", "", "", "", "", f"{sum(l.macs for l in layers):,}"))
    return "\n".join(table(rows, right=range(2, len(rows[0])), rule=False))


def front_table(points: list[tuple[float, int]], arch: Arch, macs: int) -> str:
    """A trade-off front as a table: one row per (energy, cycles) point, ascending cycles,
    with EDP, energy per MAC and the cycles' latency."""
    u = arch.energy_unit
    rows = [("point", f"energy {u}", f"{u}/MAC", "cycles", "latency ms", f"EDP {u}*cycles")]
    for i, (e, c) in enumerate(points):
        rows.append((str(i + 1), f"{e:,.0f}", f"{e / macs:.3f}", f"{c:,}", f"{c / (arch.clock_mhz * 1e3):.3f}",
                     f"{e * c:.4g}"))
    return "\n".join(table(rows, right=range(len(rows[0]))))
