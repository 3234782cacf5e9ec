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
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

from . import __version__
from .arch import Arch, Fanout
from .mapping import Loop, Mapping, normalize, problems_of
from .model import Cost, evaluate
from .problem import DIMS, TENSORS, Layer
from .report import table
from .result import inputs_sha256, write_json
from .spec import MapperError
from .spec import load_json as read_json

#: Dimensions a fan-out without spatial reduction may still unroll (they do not reduce Outputs).
NO_REDUCTION_DIMS = ("N", "G", "M", "P", "Q")

CONSTRAINTS = {
    1: "layer shape",
    2: "dataflow",
    3: "number of PEs",
    4: "physical dimensions",
    5: "storage capacity",
    6: "average bandwidth",
    # 7: "best <objective> mapping"
}

#: Step 5's exact check counts assignments whose leftover factor no storage level may loop over.
TEMPORAL = "temporal_dims"

#: Spatial assignments tried with their smallest tiles in step 5's exact check.
EXACT_CHECK_LIMIT = 4000


def constraint_name(step: int, objective: str) -> str:
    return CONSTRAINTS[step] if step in CONSTRAINTS else f"best {objective} mapping"


# ---------------------------------------------------------------------------------------
# Results

@dataclass(frozen=True)
class Step:
    """One Eyexam step: its upper bound on MACs/cycle and what it lost against the previous."""

    step: int
    constraint: str
    bound: float                   # MACs/cycle after this step (clamped to the previous bound)
    raw_bound: float               # before clamping
    loss: float                    # previous bound - bound (MACs/cycle); 0 for step 1
    loss_pct: float                # 100 * loss / previous bound
    note: str                      # what limits it (and whether clamping happened)
    status: str | None = None      # search status (optimal | feasible | budget) for steps 5-7
    clamped: bool = False
    peak_loss_pct: float = 0.0     # share of the peak (one MAC per PE per cycle) lost here, %
    detail: dict = field(default_factory=dict, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "constraint": self.constraint, "bound": self.bound,
                "raw_bound": self.raw_bound, "loss": self.loss, "loss_pct": self.loss_pct,
                "peak_loss_pct": self.peak_loss_pct, "note": self.note, "status": self.status,
                "clamped": self.clamped, "detail": self.detail}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Step":
        return cls(step=int(data["step"]), constraint=str(data["constraint"]), bound=float(data["bound"]),
                   raw_bound=float(data.get("raw_bound", data["bound"])), loss=float(data.get("loss", 0.0)),
                   loss_pct=float(data.get("loss_pct", 0.0)), note=str(data.get("note", "")),
                   status=data.get("status"), clamped=bool(data.get("clamped", False)),
                   peak_loss_pct=float(data.get("peak_loss_pct", 0.0)), detail=dict(data.get("detail") or {}))


@dataclass(frozen=True)
class EyexamResult:
    """The seven steps for one layer on one architecture (plain data: JSON round-trips)."""

    layer: dict = field(hash=False)          # Layer.describe()
    arch: dict = field(hash=False)           # Arch.describe()
    settings: dict = field(hash=False)
    steps: tuple[Step, ...]
    inputs_sha256: str
    version: str = __version__

    @property
    def macs(self) -> int:
        return int(self.layer["macs"])

    @property
    def layer_name(self) -> str:
        return str(self.layer["name"])

    @property
    def arch_name(self) -> str:
        return str(self.arch["name"])

    @property
    def bounds(self) -> list[float]:
        return [s.bound for s in self.steps]

    @property
    def pes(self) -> int:
        return int(self.arch["pes"])

    @property
    def biggest_loss(self) -> int | None:
        """The step losing the largest share of the peak (None when nothing is lost)."""
        return biggest_loss([s.bound for s in self.steps], self.pes)

    def step(self, k: int) -> Step:
        return self.steps[k - 1]

    def to_dict(self) -> dict[str, Any]:
        big = self.biggest_loss
        return {
            "version": self.version,
            "inputs_sha256": self.inputs_sha256,
            "layer": self.layer,
            "arch": self.arch,
            "settings": self.settings,
            "macs": self.macs,
            "steps": [s.to_dict() for s in self.steps],
            "biggest_loss": None if big is None else {"step": big, "constraint": self.steps[big - 1].constraint},
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "eyexam result") -> "EyexamResult":
        try:
            steps = tuple(Step.from_dict(s) for s in data["steps"])
            if [s.step for s in steps] != list(range(1, 8)):
                raise ValueError("expected steps 1 to 7 in order")
            if not all(math.isfinite(s.bound) and s.bound > 0 for s in steps):
                raise ValueError("every step's bound must be a positive number")
            # fields the tables and plots read (a missing one is a KeyError below)
            if not (float(data["layer"]["macs"]) > 0 and float(data["arch"]["pes"]) > 0
                    and data["layer"]["name"] and data["arch"]["name"]):
                raise ValueError("layer.macs and arch.pes must be positive, layer and arch named")
            return cls(layer=dict(data["layer"]), arch=dict(data["arch"]), settings=dict(data["settings"]),
                       steps=steps, inputs_sha256=str(data["inputs_sha256"]),
                       version=str(data.get("version", __version__)))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise MapperError(f"{source}: not an Eyexam result ({what})") from None


def peak_losses(bounds: Sequence[float], peak: float) -> list[float]:
    """MACs/cycle of the peak each step loses: min(b_{k-1}, peak) - min(b_k, peak), with
    b_0 = peak. They add up to peak - min(b_last, peak)."""
    out, prev = [], peak
    for b in bounds:
        cur = min(b, prev, peak)
        out.append(prev - cur)
        prev = cur
    return out


def biggest_loss(bounds: Sequence[float], peak: float) -> int | None:
    """Step (1-based) losing the largest share of the peak; the earliest on ties; None if none loses."""
    losses = peak_losses(bounds, peak)
    top = max(losses)
    if top <= peak * 1e-12:
        return None
    return next(k for k, x in enumerate(losses, start=1) if x >= top * (1 - 1e-12))


# ---------------------------------------------------------------------------------------
# Steps 2-4: exact bounds from the arch's spatial rules

def unrollable(fan: Fanout, axis: str) -> tuple[str, ...]:
    """Dimensions `fan` may unroll on `axis` (X or Y), as the search space allows them."""
    dims = fan.x_dims if axis == "X" else fan.y_dims
    return tuple(d for d in dims if fan.reduces(axis) or d in NO_REDUCTION_DIMS)


def dataflow_bound(layer: Layer, arch: Arch) -> tuple[int, tuple[str, ...]]:
    """Step 2: (product of the sizes of the dims some fan-out axis may unroll, the dims of
    size > 1 that no axis may unroll)."""
    allowed = {d for fan in arch.fanouts for axis in "XY" for d in unrollable(fan, axis)}
    dims = layer.dims
    bound = math.prod(dims[d] for d in DIMS if d in allowed)
    serial = tuple(d for d in DIMS if d not in allowed and dims[d] > 1)
    return bound, serial


@lru_cache(maxsize=1024)
def _divisors(n: int) -> tuple[int, ...]:
    return tuple(d for d in range(1, n + 1) if n % d == 0)


class _Spatial:
    """Spatial assignments of a layer's dims to capacity-limited slots.

    per_axis=False: one slot per fan-out with capacity X*Y (step 3); per_axis=True: one slot
    per fan-out axis (step 4). A choice gives each (dim, slot) pair a factor; the factors of
    one dim multiply to a divisor of its size (the rest is temporal) and the factors in one
    slot to at most its capacity.
    """

    def __init__(self, layer: Layer, arch: Arch, per_axis: bool):
        self.layer, self.arch, self.per_axis = layer, arch, per_axis
        self.dims = layer.dims
        self.slots: list[tuple[Fanout, str | None]] = []
        caps = []
        for fan in arch.fanouts:
            if per_axis:
                self.slots += [(fan, "X"), (fan, "Y")]
                caps += [fan.X, fan.Y]
            else:
                self.slots.append((fan, None))
                caps.append(fan.size)
        self.caps = tuple(caps)
        self.pairs: list[tuple[str, int]] = []
        for d in DIMS:
            if self.dims[d] <= 1:
                continue
            for s, (fan, axis) in enumerate(self.slots):
                ok = d in unrollable(fan, axis) if axis else \
                    d in unrollable(fan, "X") or d in unrollable(fan, "Y")
                if ok:
                    self.pairs.append((d, s))
        self._best = lru_cache(maxsize=None)(self._best_uncached)

    def _next_q(self, k: int, q: int, f: int) -> int:
        """Remaining quotient for pair k+1 after choosing f at pair k (with quotient q)."""
        if k + 1 < len(self.pairs) and self.pairs[k + 1][0] == self.pairs[k][0]:
            return q // f
        return self.dims[self.pairs[k + 1][0]] if k + 1 < len(self.pairs) else 1

    def _best_uncached(self, k: int, q: int, caps: tuple[int, ...]) -> int:
        """Largest product of the factors at pairs k.. given the quotient q left of pair k's
        dim and the remaining slot capacities."""
        if k == len(self.pairs):
            return 1
        _, s = self.pairs[k]
        best = 0
        for f in _divisors(q):
            if f > caps[s]:
                break
            rest = caps[:s] + (caps[s] // f,) + caps[s + 1:]
            best = max(best, f * self._best(k + 1, self._next_q(k, q, f), rest))
        return best

    def _start(self) -> int:
        return self.dims[self.pairs[0][0]] if self.pairs else 1

    def best(self) -> tuple[int, list[int]]:
        """(max product, the factor chosen at each pair)."""
        total = self._best(0, self._start(), self.caps)
        choice, k, q, caps, left = [], 0, self._start(), self.caps, total
        while k < len(self.pairs):
            _, s = self.pairs[k]
            for f in reversed(_divisors(q)):
                if f > caps[s] or left % f:
                    continue
                rest = caps[:s] + (caps[s] // f,) + caps[s + 1:]
                if f * self._best(k + 1, self._next_q(k, q, f), rest) == left:
                    break
            choice.append(f)
            left //= f
            caps = caps[:s] + (caps[s] // f,) + caps[s + 1:]
            q = self._next_q(k, q, f)
            k += 1
        return total, choice

    def above(self, target: int, limit: int) -> tuple[list[tuple[int, list[int]]], bool]:
        """Every choice whose product exceeds `target` (branch and bound, larger factors
        first), at most `limit` of them: (list of (product, factors), complete?)."""
        out: list[tuple[int, list[int]]] = []
        complete = [True]

        def rec(k: int, q: int, caps: tuple[int, ...], prod: int, chosen: list[int]) -> None:
            if len(out) >= limit:
                complete[0] = False
                return
            if prod * self._best(k, q, caps) <= target:
                return
            if k == len(self.pairs):
                out.append((prod, list(chosen)))
                return
            _, s = self.pairs[k]
            for f in reversed(_divisors(q)):
                if f > caps[s]:
                    continue
                chosen.append(f)
                rec(k + 1, self._next_q(k, q, f), caps[:s] + (caps[s] // f,) + caps[s + 1:], prod * f, chosen)
                chosen.pop()

        rec(0, self._start(), self.caps, 1, [])
        return out, complete[0]

    def by_slot(self, choice: list[int]) -> list[list[tuple[str, int]]]:
        """Per slot, the (dim, factor > 1) chosen there."""
        out: list[list[tuple[str, int]]] = [[] for _ in self.slots]
        for (d, s), f in zip(self.pairs, choice):
            if f > 1:
                out[s].append((d, f))
        return out

    def describe(self, choice: list[int]) -> dict[str, dict[str, int]]:
        """{slot name: {dim: factor}} (slot name 'fanout' or 'fanout.X')."""
        out = {}
        for (fan, axis), items in zip(self.slots, self.by_slot(choice)):
            out[fan.name + (f".{axis}" if axis else "")] = {d: f for d, f in items}
        return out


def _product_text(items: list[tuple[str, int]] | dict[str, int]) -> str:
    items = list(items.items()) if isinstance(items, dict) else items
    return " x ".join(f"{d} {f}" for d, f in items) if items else "nothing"


def pe_bound(layer: Layer, arch: Arch) -> tuple[int, dict[str, dict[str, int]]]:
    """Step 3: (most active PEs with at most X*Y per fan-out, the assignment {fanout: {dim: f}})."""
    sp = _Spatial(layer, arch, per_axis=False)
    total, choice = sp.best()
    return total, sp.describe(choice)


def array_bound(layer: Layer, arch: Arch) -> tuple[int, dict[str, dict[str, int]]]:
    """Step 4: (most active PEs with every axis separately, the assignment {fanout.axis: {dim: f}})."""
    sp = _Spatial(layer, arch, per_axis=True)
    total, choice = sp.best()
    return total, sp.describe(choice)


# ---------------------------------------------------------------------------------------
# Step 5's exact check: smallest tiles of a spatial assignment

def smallest_tiles(layer: Layer, arch: Arch, spatial: dict[str, dict[str, int]]) -> Mapping | None:
    """The mapping with the given spatial factors ({'fanout.X': {dim: f}}) whose every tile
    is smallest: each dim's remaining factor is a temporal loop at the outermost storage
    level allowing it, and every tensor that may be bypassed is. None if some remaining
    factor has no storage level allowing it."""
    loops = []
    spatial_product = {d: 1 for d in DIMS}
    for slot, factors in spatial.items():
        name, _, axis = slot.partition(".")
        for d, f in factors.items():
            loops.append(Loop(name, d, f, axis))
            spatial_product[d] *= f
    for d in DIMS:
        rest = layer.dims[d] // spatial_product[d]
        if rest > 1:
            home = next((s for s in arch.storages if d in s.temporal_dims), None)
            if home is None:
                return None
            loops.append(Loop(home.name, d, rest, None))
    keep = {s.name: [t for t in s.keeps if t not in s.may_bypass] for s in arch.storages}
    return normalize(loops, arch, keep)


def _exact_capacity_check(layer: Layer, arch: Arch, found_pes: int):
    """Try the axis-respecting spatial assignments with more than `found_pes` active PEs,
    most active PEs first, each with its smallest tiles, until one fits. Returns (the best
    fitting (pes, mapping) or None, Counter of the levels overflowed by the assignments
    with more active PEs than that, how many of those were tried, whether all were)."""
    sp = _Spatial(layer, arch, per_axis=True)
    cands, complete = sp.above(found_pes, EXACT_CHECK_LIMIT)
    blocked: Counter = Counter()
    tried = 0
    by_pes: dict[int, list[list[int]]] = {}
    for pes, choice in cands:
        by_pes.setdefault(pes, []).append(choice)
    for pes in sorted(by_pes, reverse=True):
        levels = []
        for choice in by_pes[pes]:
            m = smallest_tiles(layer, arch, sp.describe(choice))
            if m is None:
                levels.append({TEMPORAL})
                continue
            problems = problems_of(m, layer, arch)
            if not problems:
                return (pes, m), blocked, tried, complete
            levels.append({f.removeprefix("level ") for f, _ in problems})
        tried += len(levels)
        for names in levels:
            blocked.update(names)
    return None, blocked, tried, complete


# ---------------------------------------------------------------------------------------
# Which bandwidth binds a mapping

def _plural(n: float, word: str) -> str:
    return f"{n:g} {word}" + ("" if n == 1 else "s")


def binding_bandwidth(cost: Cost, mapping: Mapping, arch: Arch) -> dict[str, Any] | None:
    """The bandwidth that bounds `cost`'s cycles (None when compute-bound): a storage level's
    read, write or shared bandwidth per instance, or one tensor's network at a fan-out (its
    streams in the mapping's mode x ports x words per port). `name` says which (e.g. "array
    Weights network"), `text` adds the words per cycle, for notes and plots."""
    key, cycles = cost.bottleneck()
    if key == "compute":
        return None
    for fan in arch.fanouts:
        for t in TENSORS:
            if key != f"{fan.name} {t}":
                continue
            mode = mapping.mode(fan.name, t)
            streams, ports = fan.streams(mode), dict(fan.port_counts).get(t, 1)
            per_port = dict(fan.port_words)[t]
            words = fan.bandwidth(t, mode)
            how = f"{_plural(streams, 'stream')} x {_plural(ports, 'port')} x {_plural(per_port, 'word')}"
            name = f"{fan.name} {t} network"
            return {"kind": "network", "name": name, "level": fan.name, "tensor": t, "mode": mode,
                    "streams": streams, "ports": ports, "port_words": per_port, "words_per_cycle": words,
                    "cycles": cycles,
                    "text": f"{name}: {words:g} words/cycle ({f'{mode}: ' if mode else ''}{how})"}
    level = next(s for s in arch.storages if s.name == key)
    counts = cost.levels.get(level.name, {}).values()
    reads = sum(c.reads for c in counts)
    writes = sum(c.fills + c.updates for c in counts)
    # The instances share the totals evenly, so the limit with the most words per unit of
    # bandwidth is the one that gives the level's cycles.
    limits = [(w / bw, kind, bw) for kind, bw, w in (("read", level.read_bw, reads), ("write", level.write_bw, writes),
                                                     ("shared", level.shared_bw, reads + writes)) if bw]
    total_cycles, kind, bw = max(limits)
    instances = max(1, round(total_cycles / cycles))     # total words / per-instance words
    name = f"{level.name} {kind} bandwidth"
    each = f" per instance ({instances:,} instances)" if instances > 1 else ""
    return {"kind": "storage", "name": name, "level": level.name, "limit": kind, "words_per_cycle": bw,
            "instances": instances, "cycles": cycles, "text": f"{name}: {bw:g} words/cycle{each}"}


# ---------------------------------------------------------------------------------------
# The seven steps

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
    from .search import OBJECTIVES, check_settings, search

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


# ---------------------------------------------------------------------------------------
# Text and JSON

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


def save_json(path: str | Path, results: EyexamResult | Sequence[EyexamResult]) -> None:
    """Write one result (a JSON object) or per-layer results (a JSON list) atomically."""
    if isinstance(results, EyexamResult):
        write_json(path, results.to_dict())
    else:
        write_json(path, [r.to_dict() for r in results])


def load_json(path: str | Path) -> EyexamResult | list[EyexamResult]:
    """Read what `save_json` wrote: one result, or a list of per-layer results."""
    path = Path(path)
    data = read_json(path, "Eyexam JSON")
    if isinstance(data, list):
        if not data:
            raise MapperError(f"{path}: an empty list, expected Eyexam results")
        return [EyexamResult.from_dict(d, f"{path}[{i}]") for i, d in enumerate(data)]
    return EyexamResult.from_dict(data, str(path))
