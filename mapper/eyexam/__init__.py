"""Eyexam: how far each architectural constraint takes a layer below its ideal throughput.

Eyexam (Sze, Chen, Yang, Emer, "How to Evaluate DNN Processors", IEEE SSC Magazine 2020)
adds one constraint at a time; the throughput (MACs per cycle) left after each step is an
upper bound for the next, so the loss at each step is attributed to that constraint:

1. layer shape: every MAC in parallel; bound = MACs.
2. dataflow: only dimensions some fan-out axis may unroll are parallel (a fan-out with
   `reduction: false` cannot unroll C, R or S); the others are serialized. Bound = the
   product of the unrollable dimensions' sizes (unlimited PEs).
3. number of PEs: the largest total spatial product with exact divisors of the dims
   (perfect factorization), each fan-out holding at most X*Y (its X/Y split ignored).
4. physical dimensions: the same with every axis separately (X factors <= X, Y factors
   <= Y), i.e. the most active PEs any spatial mapping can have.
5. storage capacity: the best compute-bound throughput of a mapping whose tiles fit every
   buffer: MACs / compute cycles of `search(objective="compute")`. Also checked exactly:
   every spatial assignment better than the search's answer is tried with its smallest
   tiles (all temporal factors as far out as allowed, everything bypassable bypassed),
   which fits iff some mapping with that assignment fits; a fitting one improves the
   bound, the buffers that overflow are named in the note.
6. average bandwidth: MACs / cycles of `search(objective="delay")`: the roofline against
   every level's bandwidth and every fan-out's per-tensor network bandwidth (streams of the
   mapping's network mode x ports x words per port; the paper's "average bandwidth"). The
   note and `detail["binding"]` name the bandwidth that binds that mapping, e.g. "array
   Weights network: 8 words/cycle" or "GLB read bandwidth"; if the fastest mapping is
   compute-bound on fewer PEs than step 5's, they name what binds step 5's mapping.
7. the best mapping for the user's objective: MACs / cycles of `search(objective=...)`,
   the throughput the mapping one would actually pick achieves. (The paper's step 7,
   instantaneous bandwidth, is beyond an analytical model; what is left is the throughput
   given up to the objective, e.g. energy.) This equals what `search` reports.

Bounds are made monotone explicitly (bound_k = min(bound_k, bound_{k-1})); a step's note
says when that clamping happened. Because a search may stop before proving optimality,
steps 5 and 6 also use the later steps' mappings when those are better (the fastest
mapping found bounds step 6, the fewest compute cycles step 5), so a step never reports
less than a mapping found later proves possible.

Each step's loss is reported against the previous bound (loss, loss %) and against the
hardware's peak, one MAC per PE per cycle (peak loss %): with the bounds capped at the
peak P, step k loses min(bound_{k-1}, P) - min(bound_k, P) of it (step 1: P - min(MACs,
P), a layer too small to fill the PEs). These shares add up to 1 - bound_7 / P, the
utilization the layer does not reach, and the step that loses the most is the one with
the largest peak loss. (Against the previous bound, steps 2 and 3 would nearly always
"lose the most": a layer offers millions of MACs of parallelism and the array has a few
hundred PEs, which says nothing about where the PEs' utilization goes.)
"""
from __future__ import annotations

import math
from typing import Any, Sequence

from ..arch import Arch
from ..mapping import Mapping
from ..model import Cost, evaluate
from ..problem import Layer
from ..result import inputs_sha256
from ..spec import MapperError
from .bandwidth import binding_bandwidth
from .bounds import (EXACT_CHECK_LIMIT, NO_REDUCTION_DIMS, TEMPORAL, _exact_capacity_check, array_bound,
                     dataflow_bound, pe_bound, smallest_tiles, unrollable)
from .network import network_summary
from .result import CONSTRAINTS, EyexamResult, Step, biggest_loss, constraint_name, load_json, peak_losses, save_json
from .text import format_network, format_table

__all__ = ["CONSTRAINTS", "EXACT_CHECK_LIMIT", "NO_REDUCTION_DIMS", "TEMPORAL", "EyexamResult", "Step",
           "array_bound", "biggest_loss", "binding_bandwidth", "constraint_name", "dataflow_bound", "eyexam",
           "format_network", "format_table", "load_json", "network_eyexam", "network_summary", "pe_bound",
           "peak_losses", "save_json", "smallest_tiles", "unrollable"]


def _product_text(items: list[tuple[str, int]] | dict[str, int]) -> str:
    items = list(items.items()) if isinstance(items, dict) else items
    return " x ".join(f"{d} {f}" for d, f in items) if items else "nothing"


def _cost_detail(cost: Cost, mapping: Mapping, search, source: str) -> dict[str, Any]:
    """The measured mapping of a step: its cycles, PEs, energy and where it came from (the
    search whose best it is, or the exact check; `search` is then the step's own search)."""
    out = {"source": source, "cycles": int(cost.cycles), "compute_cycles": int(cost.compute_cycles),
           "active_pes": int(cost.active_pes), "energy_pj": float(cost.energy_pj),
           "level_cycles": {k: float(v) for k, v in cost.level_cycles.items()},
           "mapping": mapping.to_dict()}
    if source != "exact check":
        out["search"] = {"status": search.status, "found_by": search.best.found_by,
                         "seconds": round(search.seconds, 3), "evaluated": int(search.evaluated)}
    return out


def eyexam(layer: Layer, arch: Arch, objective: str = "edp", algorithm: str = "hybrid", seed: int = 0,
           workers: int = 1, time_limit: float | None = None, progress=None) -> EyexamResult:
    """The seven Eyexam steps for one layer (see the module docstring). Steps 5-7 each run
    one `search` with these settings (`time_limit` applies to each; step 7 reuses step 6's
    search when the objective is delay)."""
    from ..search import OBJECTIVES, check_settings, search

    if objective not in OBJECTIVES:
        raise MapperError(f"--objective: unknown objective '{objective}'; choose one of {', '.join(OBJECTIVES)}")
    check_settings(algorithm, objective, workers, time_limit, 1, None)
    settings = {"analysis": "eyexam", "objective": objective, "algorithm": algorithm, "seed": seed,
                "workers": workers, "time_limit": time_limit}
    macs = layer.macs
    pes = arch.pes
    raw: list[tuple[float, str, str | None, dict]] = []      # (bound, note, status, detail)

    # 1. layer shape
    raw.append((float(macs), f"all {macs:,} MACs in parallel", None, {}))

    # 2. dataflow
    b2, serial = dataflow_bound(layer, arch)
    if serial:
        names = " and ".join([", ".join(serial[:-1]), serial[-1]] if len(serial) > 1 else serial)
        note2 = f"{names} cannot be unrolled on this arch ({math.prod(layer.dims[d] for d in serial):,}x serialized)"
    else:
        note2 = "every dimension can be unrolled on this arch"
    raw.append((float(b2), note2, None, {"serialized": list(serial)}))

    # 3. number of PEs
    b3, spatial3 = pe_bound(layer, arch)
    where = "; ".join(f"{slot}: {_product_text(f)}" for slot, f in spatial3.items() if f)
    note3 = f"{b3:,} of {pes:,} PEs usable" + (f" ({where})" if where else "")
    raw.append((float(b3), note3, None, {"active_pes": b3, "spatial": spatial3}))

    # 4. physical dimensions
    b4, spatial4 = array_bound(layer, arch)
    sizes = {f"{fan.name}.{a}": (fan.X if a == "X" else fan.Y) for fan in arch.fanouts for a in "XY"}
    axes = []
    for slot, f in spatial4.items():
        used = math.prod(f.values())
        label = slot.replace(".", " ")
        axes.append(f"{label}: {_product_text(f)}" + (f" = {used}" if len(f) > 1 else "") + f" of {sizes[slot]}"
                    if f else f"{label}: unused of {sizes[slot]}")
    note4 = f"{b4:,} of {pes:,} PEs active; " + "; ".join(axes)
    raw.append((float(b4), note4, None, {"active_pes": b4, "spatial": spatial4}))

    # 5-7: searches
    def run(obj):
        return search(layer, arch, algorithm=algorithm, objective=obj, seed=seed, workers=workers,
                      time_limit=time_limit, progress=progress)

    s5 = run("compute")
    s6 = run("delay")
    s7 = s6 if objective == "delay" else run(objective)
    c7, m7 = s7.best.cost, s7.best.mapping

    # 5. storage capacity: fewest compute cycles of any mapping found, and the exact check
    c5, m5, from5, src5 = s5.best.cost, s5.best.mapping, "compute search", s5
    for res, label in ((s6, "delay search"), (s7, f"{objective} search")):
        if res.best.cost.compute_cycles < c5.compute_cycles:
            c5, m5, from5, src5 = res.best.cost, res.best.mapping, label, res
    fitting, blocked, tried, complete = _exact_capacity_check(layer, arch, c5.active_pes)
    exact_note = ""
    if fitting is not None:                  # more active PEs than any mapping found
        m5 = fitting[1]
        c5 = evaluate(layer, arch, m5)
        from5 = "exact check"
        exact_note = f"; the search ({s5.status}) missed it, found by the exact check"
    elif from5 != "compute search":
        exact_note = f"; found by the {from5}"
    b5 = macs / c5.compute_cycles
    if blocked:
        scope = "" if complete else f" (the first {tried:,} tried)"
        what = [level for level, _ in blocked.most_common() if level != TEMPORAL][:2]
        label = " and ".join(what) + " capacity" if what else "temporal_dims"
        if len(blocked) == 1:
            note5 = (f"{label}: {'the' if tried == 1 else f'all {tried:,}'} spatial assignment"
                     f"{'' if tried == 1 else 's'} with more than {c5.active_pes:,} active PEs overflow"
                     f"{'s' if tried == 1 else ''} it{scope}")
        else:
            counts = ", ".join(f"{n:,} {level}" for level, n in blocked.most_common(3))
            note5 = (f"{label}: of the {tried:,} spatial assignments with more than "
                     f"{c5.active_pes:,} active PEs{scope}, {counts} overflow")
        if TEMPORAL in blocked:
            note5 += f" ({TEMPORAL}: a remaining factor that no level may loop over)"
    else:
        note5 = f"no loss: a mapping with {c5.active_pes:,} active PEs fits every buffer"
    if complete and s5.status != "optimal" and from5 != "exact check":
        exact_note += "; proven by the exact check"
    detail5 = _cost_detail(c5, m5, src5, from5)
    # complete: every assignment with more active PEs was tried, so the bound is exact.
    detail5["exact_check"] = {"tried": tried, "complete": complete, "overflowing": dict(blocked)}
    raw.append((b5, note5 + exact_note, s5.status, detail5))

    # 6. average bandwidth: the fastest mapping found
    c6, m6, from6, src6 = s6.best.cost, s6.best.mapping, None, s6
    if c7.cycles < c6.cycles:
        c6, m6, from6, src6 = c7, m7, f"{objective} search", s7
    b6 = macs / c6.cycles
    binds6 = binding_bandwidth(c6, m6, arch)
    if binds6:
        note6 = (f"{binds6['text']} binds: {binds6['cycles']:,.0f} cycles vs {c6.compute_cycles:,} compute "
                 f"cycles on {c6.active_pes:,} PEs")
    elif c6.compute_cycles > c5.compute_cycles:
        # the fastest mapping gave up PEs: the bandwidth that binds the mapping on more PEs
        binds6 = binding_bandwidth(c5, m5, arch)
        note6 = f"bandwidth: the fastest mapping is compute-bound on only {c6.active_pes:,} PEs; "
        note6 += (f"on {c5.active_pes:,} PEs {binds6['text']} binds ({binds6['cycles']:,.0f} cycles)"
                  if binds6 else "mappings on more PEs are bandwidth-bound")
    else:
        note6 = f"no loss: compute-bound on {c6.active_pes:,} PEs"
    if from6:
        note6 += f"; found by the {from6}"
    detail6 = _cost_detail(c6, m6, src6, from6 or "delay search")
    detail6["binding"] = binds6
    raw.append((b6, note6, s6.status, detail6))

    # 7. the user's objective
    b7 = macs / c7.cycles
    binds7 = binding_bandwidth(c7, m7, arch)
    bound_by = (f"bound by {binds7['text']}, {binds7['cycles']:,.0f} cycles" if binds7
                else f"compute-bound on {c7.active_pes:,} PEs")
    note7 = f"the best {objective} mapping found is {bound_by}"
    if objective != "delay" and c7.cycles > c6.cycles:
        note7 += f"; {c7.cycles / c6.cycles:.3g}x the fastest mapping's cycles"
    detail7 = _cost_detail(c7, m7, s7, f"{objective} search")
    detail7["binding"] = binds7
    raw.append((b7, note7, s7.status, detail7))

    steps = []
    prev = None
    peak = peak_losses([min(b for b, *_ in raw[:k]) for k in range(1, 8)], pes)
    for k, (bound, note, status, detail) in enumerate(raw, start=1):
        clamped = prev is not None and bound > prev
        value = min(bound, prev) if prev is not None else bound
        if clamped:
            note += f"; clamped from {bound:,.4g} to the previous step's bound"
        elif k == 6 and detail.get("binding") and prev is not None and bound >= prev:
            note += "; no loss against the previous step's bound"
        loss = 0.0 if prev is None else prev - value
        pct = 0.0 if prev is None or prev == 0 else 100.0 * loss / prev
        steps.append(Step(k, constraint_name(k, objective), value, bound, loss, pct, note, status, clamped,
                          100.0 * peak[k - 1] / pes, detail))
        prev = value
    return EyexamResult(layer=layer.describe(), arch=arch.describe(), settings=settings, steps=tuple(steps),
                        inputs_sha256=inputs_sha256(layer, arch, settings))


def network_eyexam(layers: Sequence[Layer], arch: Arch, objective: str = "edp", algorithm: str = "hybrid",
                   seed: int = 0, workers: int = 1, time_limit: float | None = None,
                   progress=None) -> list[EyexamResult]:
    """Eyexam of every layer (layers of identical shape are examined once and reused)."""
    done: dict[tuple, EyexamResult] = {}
    out = []
    for layer in layers:
        key = (layer.type, layer.shape_key())
        if key not in done:
            done[key] = eyexam(layer, arch, objective, algorithm, seed, workers, time_limit, progress)
        r = done[key]
        out.append(EyexamResult(layer=layer.describe(), arch=r.arch, settings=r.settings, steps=r.steps,
                                inputs_sha256=inputs_sha256(layer, arch, r.settings), version=r.version))
    return out
