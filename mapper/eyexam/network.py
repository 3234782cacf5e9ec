"""A network's Eyexam: the MAC-weighted aggregate of its layers' steps."""
from __future__ import annotations

from typing import Any, Sequence

from ..spec import MapperError
from .bandwidth import _plural
from .result import EyexamResult, biggest_loss, peak_losses


def _cycles_by_binding(results: Sequence[EyexamResult], k: int) -> list[tuple[str, tuple[float, int]]]:
    """Cycles step k adds over step k-1, summed per bandwidth that binds the layers' step-k
    mappings (their detail's `binding`), most cycles first: [(name, (cycles, layers))]."""
    by: dict[str, list] = {}
    for r in results:
        binding = r.steps[k - 1].detail.get("binding")
        added = r.macs / r.steps[k - 1].bound - r.macs / r.steps[k - 2].bound
        if binding and added > 0:
            entry = by.setdefault(str(binding.get("name", "?")), [0.0, 0])
            entry[0] += added
            entry[1] += 1
    return sorted(((n, (c, m)) for n, (c, m) in by.items()), key=lambda kv: -kv[1][0])


def network_summary(results: Sequence[EyexamResult]) -> dict[str, Any]:
    """The network's Eyexam: per step, the MAC-weighted aggregate bound.

    Layers run one after another, so the network's throughput at step k is its total MACs
    over the total cycles the bounds allow: bound_k = sum(MACs) / sum over layers of
    (MACs_l / bound_{l,k}). This is the cycles-weighted (harmonic, MAC-weighted) mean of
    the per-layer bounds: a slow layer weighs by the cycles it takes, not by its count, and
    a plain average of the per-layer bounds would overstate the network. The aggregates
    inherit monotonicity from the layers. Each step's note names the layer that adds the
    most cycles at that step and, at steps 6 and 7, the bandwidths that bind the layers'
    mappings with the cycles each adds. The step losing the most is the one with the
    largest relative loss of the aggregate.
    """
    if not results:
        raise MapperError("network Eyexam: no layer results to summarise")
    archs = {r.arch_name for r in results}
    if len(archs) > 1:
        raise MapperError(f"network Eyexam: results for different archs ({', '.join(sorted(archs))})")
    objective = results[0].settings.get("objective", "edp")
    pes = results[0].pes
    total = sum(r.macs for r in results)
    bounds, steps = [], []
    for k in range(1, 8):
        cycles = sum(r.macs / r.steps[k - 1].bound for r in results)
        bounds.append(total / cycles)
    peak = peak_losses(bounds, pes)
    for k in range(1, 8):
        prev = bounds[k - 2] if k > 1 else None
        loss = 0.0 if prev is None else prev - bounds[k - 1]
        note = f"{total:,} MACs in {len(results)} layers, one cycle each"
        if k > 1:
            added = [(r.macs / r.steps[k - 1].bound - r.macs / r.steps[k - 2].bound, r.layer_name) for r in results]
            worst = max(added, key=lambda a: a[0])
            if worst[0] > 0:
                note = f"most cycles added by {worst[1]} (+{worst[0]:,.0f} cycles)"
                by = _cycles_by_binding(results, k)
                if by:
                    note += "; by bandwidth: " + ", ".join(
                        f"{name} +{cyc:,.0f} cycles in {_plural(n, 'layer')}" for name, (cyc, n) in by[:2])
            else:
                note = "no loss in any layer"
        steps.append({"step": k, "constraint": results[0].steps[k - 1].constraint, "bound": bounds[k - 1],
                      "loss": loss, "loss_pct": 0.0 if not prev else 100.0 * loss / prev,
                      "peak_loss_pct": 100.0 * peak[k - 1] / pes, "note": note})
    big = biggest_loss(bounds, pes)
    return {
        "arch": results[0].arch_name,
        "pes": pes,
        "settings": results[0].settings,
        "objective": objective,
        "layers": len(results),
        "macs": total,
        "steps": steps,
        "biggest_loss": None if big is None else {"step": big, "constraint": steps[big - 1]["constraint"]},
        "per_layer": [{"layer": r.layer_name, "macs": r.macs, "bounds": r.bounds, "biggest_loss": r.biggest_loss}
                      for r in results],
    }
