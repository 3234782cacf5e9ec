"""Eyexam's exact bounds from the arch's spatial rules (steps 2-4) and step 5's exact
capacity check (every better spatial assignment tried with its smallest tiles)."""
from __future__ import annotations

import math
from collections import Counter
from functools import lru_cache

from ..arch import Arch, Fanout
from ..mapping import Loop, Mapping, normalize, problems_of
from ..problem import DIMS, OUTPUT_DIMS, Layer

#: Dimensions a fan-out without spatial reduction may still unroll (they do not reduce Outputs).
NO_REDUCTION_DIMS = OUTPUT_DIMS

#: Step 5's exact check counts assignments whose leftover factor no storage level may loop over.
TEMPORAL = "temporal_dims"

#: Spatial assignments tried with their smallest tiles in step 5's exact check.
EXACT_CHECK_LIMIT = 4000


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
