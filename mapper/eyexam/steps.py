"""Eyexam's seven steps for one layer, each a function from what it needs to its raw bound and
note; `clamp` makes them monotone and measures their losses (method: mapper.eyexam)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..arch import Arch
from ..mapping import Mapping
from ..model import Cost, evaluate
from ..problem import Layer, label
from .bandwidth import binding_bandwidth
from .bounds import TEMPORAL, _exact_capacity_check, array_bound, dataflow_bound, pe_bound
from .result import Step, constraint_name, peak_losses


@dataclass(frozen=True)
class RawStep:
    """A step's bound before clamping, its note, its search's status and its detail."""

    bound: float
    note: str
    status: str | None = None
    detail: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Measured:
    """A mapping a step measures, its cost, and where it came from (`search`: the SearchResult
    it is the best of, or the step's own search when it came from the exact check)."""

    cost: Cost
    mapping: Mapping
    source: str
    search: Any


def _product_text(layer: Layer, items: list[tuple[str, int]] | dict[str, int]) -> str:
    """'M 4 x C 3', each dimension as the layer names it (a matmul's 'N (M) 4')."""
    items = list(items.items()) if isinstance(items, dict) else items
    return " x ".join(f"{label(layer, d)} {f}" for d, f in items) if items else "nothing"


def _cost_detail(m: Measured) -> dict[str, Any]:
    """The measured mapping of a step: its cycles, PEs, energy and where it came from (the
    search whose best it is, or the exact check)."""
    cost = m.cost
    out = {"source": m.source, "cycles": int(cost.cycles), "compute_cycles": int(cost.compute_cycles),
           "active_pes": int(cost.active_pes), "energy_pj": float(cost.energy_pj),
           "level_cycles": {k: float(v) for k, v in cost.level_cycles.items()},
           "mapping": m.mapping.to_dict()}
    if m.source != "exact check":
        out["search"] = {"status": m.search.status, "found_by": m.search.best.found_by,
                         "seconds": round(m.search.seconds, 3), "evaluated": int(m.search.evaluated)}
    return out


def _best(search, source: str) -> Measured:
    return Measured(search.best.cost, search.best.mapping, source, search)


def shape_step(layer: Layer) -> RawStep:
    """Step 1: every MAC in parallel."""
    return RawStep(float(layer.macs), f"all {layer.macs:,} MACs in parallel")


def dataflow_step(layer: Layer, arch: Arch) -> RawStep:
    """Step 2: only the dimensions some fan-out axis may unroll are parallel."""
    b2, serial = dataflow_bound(layer, arch)
    if serial:
        shown = [label(layer, d) for d in serial]
        names = " and ".join([", ".join(shown[:-1]), shown[-1]] if len(shown) > 1 else shown)
        note = f"{names} cannot be unrolled on this arch ({math.prod(layer.dims[d] for d in serial):,}x serialized)"
    else:
        note = "every dimension can be unrolled on this arch"
    return RawStep(float(b2), note, None, {"serialized": list(serial)})


def pe_step(layer: Layer, arch: Arch) -> RawStep:
    """Step 3: the most PEs exact divisors of the dims can occupy, X*Y per fan-out."""
    b3, spatial3 = pe_bound(layer, arch)
    where = "; ".join(f"{slot}: {_product_text(layer, f)}" for slot, f in spatial3.items() if f)
    note = f"{b3:,} of {arch.pes:,} {arch.unit_name} usable" + (f" ({where})" if where else "")
    return RawStep(float(b3), note, None, {"active_pes": b3, "spatial": spatial3})


def array_step(layer: Layer, arch: Arch) -> RawStep:
    """Step 4: the same with every fan-out axis separately (X factors <= X, Y factors <= Y)."""
    b4, spatial4 = array_bound(layer, arch)
    sizes = {f"{fan.name}.{a}": (fan.X if a == "X" else fan.Y) for fan in arch.fanouts for a in "XY"}
    axes = []
    for slot, f in spatial4.items():
        used = math.prod(f.values())
        where = slot.replace(".", " ")
        axes.append(f"{where}: {_product_text(layer, f)}" + (f" = {used}" if len(f) > 1 else "") + f" of {sizes[slot]}"
                    if f else f"{where}: unused of {sizes[slot]}")
    note = f"{b4:,} of {arch.pes:,} {arch.unit_name} active; " + "; ".join(axes)
    return RawStep(float(b4), note, None, {"active_pes": b4, "spatial": spatial4})


def capacity_step(layer: Layer, arch: Arch, s5, s6, s7, objective: str) -> tuple[RawStep, Measured]:
    """Step 5: the fewest compute cycles of any mapping found (the compute search's, or a later
    step's when better), improved by the exact check; also returns that mapping (step 6 needs it)."""
    m5 = _best(s5, "compute search")
    for res, source in ((s6, "delay search"), (s7, f"{objective} search")):
        if res.best.cost.compute_cycles < m5.cost.compute_cycles:
            m5 = _best(res, source)
    fitting, blocked, tried, complete = _exact_capacity_check(layer, arch, m5.cost.active_pes)
    exact_note = ""
    if fitting is not None:                  # more active PEs than any mapping found
        m5 = Measured(evaluate(layer, arch, fitting[1]), fitting[1], "exact check", s5)
        exact_note = f"; the search ({s5.status}) missed it, found by the exact check"
    elif m5.source != "compute search":
        exact_note = f"; found by the {m5.source}"
    c5 = m5.cost
    bound = layer.macs / c5.compute_cycles
    if blocked:
        scope = "" if complete else f" (the first {tried:,} tried)"
        what = [level for level, _ in blocked.most_common() if level != TEMPORAL][:2]
        limit = " and ".join(what) + " capacity" if what else "temporal_dims"
        if len(blocked) == 1:
            note = (f"{limit}: {'the' if tried == 1 else f'all {tried:,}'} spatial assignment"
                    f"{'' if tried == 1 else 's'} with more than {c5.active_pes:,} active {arch.unit_name} overflow"
                    f"{'s' if tried == 1 else ''} it{scope}")
        else:
            counts = ", ".join(f"{n:,} {level}" for level, n in blocked.most_common(3))
            note = (f"{limit}: of the {tried:,} spatial assignments with more than "
                    f"{c5.active_pes:,} active {arch.unit_name}{scope}, {counts} overflow")
        if TEMPORAL in blocked:
            note += f" ({TEMPORAL}: a remaining factor that no level may loop over)"
    else:
        note = f"no loss: a mapping with {c5.active_pes:,} active {arch.unit_name} fits every buffer"
    if complete and s5.status != "optimal" and m5.source != "exact check":
        exact_note += "; proven by the exact check"
    detail = _cost_detail(m5)
    # complete: every assignment with more active PEs was tried, so the bound is exact.
    detail["exact_check"] = {"tried": tried, "complete": complete, "overflowing": dict(blocked)}
    return RawStep(bound, note + exact_note, s5.status, detail), m5


def bandwidth_step(layer: Layer, arch: Arch, s6, s7, m5: Measured, objective: str) -> tuple[RawStep, Measured]:
    """Step 6: the fastest mapping found (the delay search's, or step 7's when faster) and the
    bandwidth that binds it; also returns that mapping (step 7 compares with it)."""
    m6 = _best(s6, "delay search")
    found_by = None
    if s7.best.cost.cycles < m6.cost.cycles:
        found_by = f"{objective} search"
        m6 = _best(s7, found_by)
    c6, c5 = m6.cost, m5.cost
    binds = binding_bandwidth(c6, m6.mapping, arch)
    if binds:
        note = (f"{binds['text']} binds: {binds['cycles']:,.0f} cycles vs {c6.compute_cycles:,} compute "
                f"cycles on {c6.active_pes:,} {arch.unit_name}")
    elif c6.compute_cycles > c5.compute_cycles:
        # the fastest mapping gave up PEs: the bandwidth that binds the mapping on more PEs
        binds = binding_bandwidth(c5, m5.mapping, arch)
        note = f"bandwidth: the fastest mapping is compute-bound on only {c6.active_pes:,} {arch.unit_name}; "
        note += (f"on {c5.active_pes:,} {arch.unit_name} {binds['text']} binds ({binds['cycles']:,.0f} cycles)"
                 if binds else "mappings on more PEs are bandwidth-bound")
    else:
        note = f"no loss: compute-bound on {c6.active_pes:,} {arch.unit_name}"
    if found_by:
        note += f"; found by the {found_by}"
    detail = _cost_detail(m6)
    detail["binding"] = binds
    return RawStep(layer.macs / c6.cycles, note, s6.status, detail), m6


def objective_step(layer: Layer, arch: Arch, s7, m6: Measured, objective: str) -> RawStep:
    """Step 7: the best mapping for the user's objective and what bounds its cycles."""
    m7 = _best(s7, f"{objective} search")
    c7 = m7.cost
    binds = binding_bandwidth(c7, m7.mapping, arch)
    bound_by = (f"bound by {binds['text']}, {binds['cycles']:,.0f} cycles" if binds
                else f"compute-bound on {c7.active_pes:,} {arch.unit_name}")
    note = f"the best {objective} mapping found is {bound_by}"
    if objective != "delay" and c7.cycles > m6.cost.cycles:
        note += f"; {c7.cycles / m6.cost.cycles:.3g}x the fastest mapping's cycles"
    detail = _cost_detail(m7)
    detail["binding"] = binds
    return RawStep(layer.macs / c7.cycles, note, s7.status, detail)


def clamp(raw: Sequence[RawStep], pes: int, objective: str) -> tuple[Step, ...]:
    """The steps made monotone (each bound at most the previous, the note saying so), with each
    step's loss against the previous bound and its share of the peak."""
    steps = []
    prev = None
    peak = peak_losses([min(r.bound for r in raw[:k]) for k in range(1, 8)], pes)
    for k, r in enumerate(raw, start=1):
        bound, note = r.bound, r.note
        clamped = prev is not None and bound > prev
        value = min(bound, prev) if prev is not None else bound
        if clamped:
            note += f"; clamped from {bound:,.4g} to the previous step's bound"
        elif k == 6 and r.detail.get("binding") and prev is not None and bound >= prev:
            note += "; no loss against the previous step's bound"
        loss = 0.0 if prev is None else prev - value
        pct = 0.0 if prev is None or prev == 0 else 100.0 * loss / prev
        steps.append(Step(k, constraint_name(k, objective), value, bound, loss, pct, note, r.status, clamped,
                          100.0 * peak[k - 1] / pes, r.detail))
        prev = value
    return tuple(steps)
