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

Modules: `result` (Step, EyexamResult, JSON files), `bounds` (steps 2-4 and step 5's exact
check), `bandwidth` (what binds a mapping's cycles), `steps` (each step's bound and note),
`network` (a network's roll-up), `text` (tables for the CLI); `eyexam` and `network_eyexam`
are here, and this package re-exports the public names.
"""
from __future__ import annotations

from typing import Sequence

from ..arch import Arch
from ..problem import Layer
from ..result import inputs_sha256
from ..spec import MapperError
from .bandwidth import binding_bandwidth
from .bounds import _exact_capacity_check  # noqa: F401  (tests check it directly)
from .bounds import (EXACT_CHECK_LIMIT, NO_REDUCTION_DIMS, TEMPORAL, array_bound, dataflow_bound, pe_bound,
                     smallest_tiles, unrollable)
from .network import network_summary
from .result import CONSTRAINTS, EyexamResult, Step, biggest_loss, constraint_name, load_json, peak_losses, save_json
from .steps import (array_step, bandwidth_step, capacity_step, clamp, dataflow_step, objective_step, pe_step,
                    shape_step)
from .text import format_network, format_table

__all__ = ["CONSTRAINTS", "EXACT_CHECK_LIMIT", "NO_REDUCTION_DIMS", "TEMPORAL", "EyexamResult", "Step",
           "array_bound", "biggest_loss", "binding_bandwidth", "constraint_name", "dataflow_bound", "eyexam",
           "format_network", "format_table", "load_json", "network_eyexam", "network_summary", "pe_bound",
           "peak_losses", "save_json", "smallest_tiles", "unrollable"]


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
    raw = [shape_step(layer), dataflow_step(layer, arch), pe_step(layer, arch), array_step(layer, arch)]

    def run(obj):
        return search(layer, arch, algorithm=algorithm, objective=obj, seed=seed, workers=workers,
                      time_limit=time_limit, progress=progress)

    s5 = run("compute")
    s6 = run("delay")
    s7 = s6 if objective == "delay" else run(objective)
    step5, m5 = capacity_step(layer, arch, s5, s6, s7, objective)
    step6, m6 = bandwidth_step(layer, arch, s6, s7, m5, objective)
    raw += [step5, step6, objective_step(layer, arch, s7, m6, objective)]
    return EyexamResult(layer=layer.describe(), arch=arch.describe(), settings=settings,
                        steps=clamp(raw, arch.pes, objective), inputs_sha256=inputs_sha256(layer, arch, settings))


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
