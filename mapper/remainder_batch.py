"""Exact batch results for candidates with remainders, one candidate at a time.

`mapper.batch` vectorizes the counts of perfect nests only; a candidate whose factors do
not multiply to the layer's sizes (imperfect factorization) is routed here and counted by
the scalar model's remainder path (`mapper.model.evaluate` with `_Remainders`' structure),
so batch, search and the model agree exactly (tested). `FastRemainders` replaces the
model's loops over index tuples by `mapper.remainder_groups` (closed forms, or numpy over
a group's tuples) and memoizes each group's sums across candidates and batches
(`_group_cache`).

Cost (benchmarks/remainder_throughput.py, 20 random remainder candidates per AlexNet
layer, CPU time, 2026-12-03): 2.7-3.9 ms per candidate on Eyeriss v1's conv layers and
1.4-2.0 ms on its FC layers (previously 37-44 and 37-68 ms); on Eyeriss v2 2.8-4.8 and
1.6-1.9 ms with fixed network modes, 7.5-13.3 and 6.0-6.9 ms choosing among 16 mode
assignments (each one an `evaluate` call, sharing the link sums). The scalar model takes
63-154 ms and 0.5-1.4 s; a perfect candidate ~5 us in batch, which is why the imperfect
search is budgeted and not the default (see README, "Imperfect factorization").
"""
from __future__ import annotations

import math

import numpy as np

from .arch import Fanout
from .model import _Remainders, evaluate
from .problem import DIMS, RELEVANT, TENSORS
from .remainder_groups import FIELDS, GroupSpec, distinct_points, event_classes, group_sums, valid_tuples


def remainder_rows(enc, factors: np.ndarray) -> np.ndarray:
    """[n] bool: which encoded candidates have remainders (some dimension's factors do not
    multiply to the layer's size). It runs on every batch, perfect ones included, so the
    slot columns are multiplied in place (a third faster than np.prod over the middle
    axis) and a row's 8 per-dimension flags are read as one 8-byte word."""
    sizes = np.array([enc.layer.dims[d] for d in DIMS], dtype=np.int64)
    n, slots, dims = factors.shape
    if slots == 0:
        return (sizes != 1).any() & np.ones(n, dtype=bool)
    prod = factors[:, 0].astype(np.int64, copy=True)
    for s in range(1, slots):
        np.multiply(prod, factors[:, s], out=prod)
    off = prod != sizes
    if dims == 8:
        return off.view(np.uint64)[:, 0] != 0
    return off.any(axis=1)


def evaluate_remainders(enc, factors: np.ndarray, orders: np.ndarray, keep: np.ndarray,
                        modes: np.ndarray | None, objective: str, with_counts: bool):
    """(energy, cycles, compute cycles, counts or None, modes) of n candidates with
    remainders, as `mapper.batch.evaluate_batch` returns them: with `modes` None every
    network-mode choice is evaluated and the best by `objective` kept (ties: lower energy,
    then the first listed), as the batch does."""
    from .batch import objective_of
    n = len(factors)
    energy, cycles, compute = np.zeros(n), np.zeros(n), np.zeros(n)
    n_st = len(enc.storage_levels)
    counts = np.zeros((n, n_st, 3, 3)) if with_counts else None
    assignments = enc.assignments()
    chosen = np.zeros((n, len(enc.mode_fans), len(TENSORS)), dtype=np.int64)
    groups = _group_cache(enc)
    for i in range(n):
        options = assignments if modes is None or not enc.mode_fans else modes[i:i + 1]
        best = None
        cache: dict = {}          # the sums shared by this candidate's mode choices
        for a, md in enumerate(options):
            m = enc.decode(factors[i], orders[i], keep[i], md if enc.mode_fans else None)
            cost = evaluate(enc.layer, enc.arch, m, validate=False,
                            remainders=lambda nest: FastRemainders(nest, cache, groups))
            value = float(objective_of(objective, cost.energy_pj, cost.cycles, cost.compute_cycles))
            if best is None or value < best[0] * (1 - 1e-12) or \
                    (value <= best[0] * (1 + 1e-12) and cost.energy_pj < best[1].energy_pj):
                best = (value, cost, md)
        _, cost, md = best
        energy[i], cycles[i], compute[i] = cost.energy_pj, cost.cycles, cost.compute_cycles
        chosen[i] = md
        if with_counts:
            for si, li in enumerate(enc.storage_levels):
                per = cost.levels.get(enc.arch.levels[li].name, {})
                for ti, t in enumerate(TENSORS):
                    c = per.get(t)
                    if c is not None:
                        counts[i, si, ti] = (c.reads, c.fills, c.updates)
    return energy, cycles, compute, counts, chosen


class FastRemainders(_Remainders):
    """`model._Remainders` with its per-group sums computed by `mapper.remainder_groups`
    (closed forms or numpy, every event class of a group at once) and memoized: `cache`
    holds one candidate's link sums, instances, valid counts and first points, shared
    between its network-mode choices (a link's sums depend on the modes only through those
    of the fan-outs between parent and child, its key); `groups` holds group sums keyed on
    `GroupSpec` (and valid-tuple counts, first points), shared by every candidate of the
    encoding (a group's sums read only its own loops, see remainder_groups; `_group_cache`).
    The same numbers as the model (tested). A link whose groups all have at most SMALL
    tuples goes through the model's own loop instead (a cross-check switch: 0, the default, never)."""

    SMALL = 0

    def __init__(self, nest, cache: dict | None = None, groups: dict | None = None):
        super().__init__(nest)
        self.cache = {} if cache is None else cache
        self.group_cache = {} if groups is None else groups

    def _memo(self, key, compute):
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]

    def groups(self, tensor: str):
        return self._memo(("groups", tensor), lambda: _Remainders.groups(self, tensor))

    def _group_shapes(self, tensor: str):
        """(axes, dims, axes with each dim as its position in dims, sizes) per group."""
        return self._memo(("shapes", tensor), lambda: [
            (axes, dims, tuple(tuple((dims.index(d), co) for d, co in axis) for axis in axes),
             tuple(self.size[d] for d in dims))
            for axes, dims in self.groups(tensor)])

    def valid_count(self, kind: str) -> int:
        return self._memo(("valid", kind), lambda: self._valid_product(
            lambda lvl, s: (s is None) == (kind == "T")))

    def instances(self, li: int) -> int:
        return self._memo(("instances", li), lambda: self._valid_product(
            lambda lvl, s: s is not None and lvl < li))

    def _valid_product(self, chosen) -> int:
        """Product over dimensions of the valid index tuples of the loops `chosen(level,
        spatial)` picks, the others at 0 (model `valid_count`, `instances`)."""
        mine: dict[str, list[int]] = {}
        for k, (lvl, d, _, s) in enumerate(self.loops):
            if chosen(lvl, s):
                mine.setdefault(d, []).append(k)
        memo = self.group_cache.setdefault("valid", {})
        total = 1
        for d, ks in mine.items():
            key = (tuple(self.loops[k][2] for k in ks), tuple(self.step[k] for k in ks), self.size[d])
            if key not in memo:
                memo[key] = valid_tuples(*key)
            total *= memo[key]
        return total

    def sums(self, tensor: str, parent: int, child: int | None) -> dict:
        c = len(self.arch.levels) if child is None else child
        # the credits of the fan-outs between follow from their modes for this tensor
        modes = tuple(self.mapping.mode(self.arch.levels[i].name, tensor)
                      for i in range(parent + 1, c) if isinstance(self.arch.levels[i], Fanout))
        return self._memo(("sums", tensor, parent, child, modes),
                          lambda: _Remainders.sums(self, tensor, parent, child) if self._small(tensor, c)
                          else self._group_sums(tensor, parent, child))

    def _small(self, tensor: str, c: int) -> bool:
        if not self.SMALL:
            return False
        outer = [k for k, (lvl, _, _, _) in enumerate(self.loops) if lvl < c]
        return max(math.prod(self.loops[k][2] for k in outer if self.loops[k][1] in dims)
                   for _, dims in self.groups(tensor)) <= self.SMALL

    def _group_sums(self, tensor: str, parent: int, child: int | None) -> dict:
        outer, temporal, parent_sp, between, nominal, r, events = self.link_loops(tensor, parent, child)
        loops, step = self.loops, self.step
        fans = sorted({loops[k][0] for k in between})
        credit = {fan: self.arch.levels[fan].credit(self.mapping.mode(self.arch.levels[fan].name, tensor))
                  for fan in fans}
        parent_sp = set(parent_sp)
        # per loop above the child: (factor, step, its dim, kind, fan-out rank, apart), by dim
        by_dim: dict[str, list[tuple]] = {}
        for k in outer:
            lvl, d, f, sp = loops[k]
            if sp is None:
                row = (k, f, step[k], d, "T", -1, False)
            elif k in parent_sp:
                row = (k, f, step[k], d, "P", -1, False)
            else:
                row = (k, f, step[k], d, "B", fans.index(lvl), _apart(credit[lvl][sp], d, tensor))
            by_dim.setdefault(d, []).append(row)
        memo = self.group_cache.setdefault("sums", {})
        signatures = self.group_cache.setdefault("signatures", {})
        per_group = []             # per group: its (all, distinct) sums per event
        for axes, dims, axes_pos, sizes in self._group_shapes(tensor):
            if len(dims) == 1:
                rows = by_dim.get(dims[0], [])
                dimpos = (0,) * len(rows)
            else:
                rows = sorted(row for d in dims for row in by_dim.get(d, ()))     # nest order
                dimpos = tuple(dims.index(row[3]) for row in rows)
            if not rows and not axes:
                # one tuple of size 1 whose (empty) tile is the held one: a factor 1 where
                # it counts (outside steps its overlaps are 0, as every tensor's axis
                # groups already make them)
                continue
            own, factors, steps, _, kinds, fan, apart = zip(*rows) if rows else ((),) * 7
            spec = GroupSpec(factors, steps, dimpos, kinds, fan, apart, sizes,
                             tuple(nominal[d] for d in dims), axes_pos)
            classes = event_classes(spec, own, events)
            known = memo.setdefault(spec, {})
            missing = [cl for cl in set(classes) if cl not in known]
            if missing:
                known.update(group_sums(spec, missing, signatures))
            per_group.append([known[cl] for cl in classes])
        out = {}
        for i, e in enumerate(events):
            col = [sums[i] for sums in per_group]
            prod_all = [math.prod(v) for v in zip(*(c[0] for c in col))] if col else [1] * 4
            prod_grp = [math.prod(v) for v in zip(*(c[1] for c in col))] if col else [1] * 4
            out[e] = (dict(zip(FIELDS, prod_all)), dict(zip(FIELDS, prod_grp)))
        return {"events": out, "r": r}

    def mac_groups(self, tensor: str, parent: int) -> tuple[int, int]:
        """As the model's, but the first touches only for Outputs: the only tensor whose
        innermost count reads them (read-modify-write; `model._count_remainders`); 0 for the
        read-only tensors, whose distinct points would cost a pass over their tuples."""
        data = self.sums(tensor, parent, None)
        _, g = data["events"]["all"]
        return g["size"], (self._first_points(tensor, parent) if tensor == "Outputs" else 0)

    def _first_points(self, tensor: str, parent: int) -> int:
        return self._memo(("first", tensor, parent), lambda: self._distinct_first_points(tensor, parent))

    def _distinct_first_points(self, tensor: str, parent: int) -> int:
        total = 1
        for axes, dims in self.groups(tensor):
            own = [k for k in range(len(self.loops)) if self.loops[k][1] in dims]
            n = len(own)
            spec = GroupSpec(
                tuple(self.loops[k][2] for k in own), tuple(self.step[k] for k in own),
                tuple(dims.index(self.loops[k][1]) for k in own),
                tuple("P" if self.loops[k][3] is not None and self.loops[k][0] < parent else "T" for k in own),
                (-1,) * n, (False,) * n, tuple(self.size[d] for d in dims), (1,) * len(dims),
                tuple(tuple((dims.index(d), co) for d, co in axis) for axis in axes))
            memo = self.group_cache.setdefault("points", {})
            if spec not in memo:
                memo[spec] = distinct_points(spec)
            total *= memo[spec]
        return total


#: Entries (group specs, valid counts, points) the shared group cache holds before it starts over.
GROUP_CACHE_LIMIT = 200_000


def _group_cache(enc) -> dict:
    """The group sums keyed on GroupSpec, kept on the encoding (the layer and arch are
    fixed, a spec's sums a function of it), so they are shared across batches too: the
    remainder descent scores one neighbour at a time, and neighbours differ in one
    dimension, so most of their groups were counted before (about twice the candidates per
    second). Bounded: started over past GROUP_CACHE_LIMIT entries (a 30 s search of
    MobileNet pw12 on Eyeriss v1 leaves about 3,000)."""
    cache = enc.plans.setdefault("remainder groups", {})
    if sum(len(v) for v in cache.values()) > GROUP_CACHE_LIMIT:
        cache.clear()
    return cache


def _apart(credit: str, dim: str, tensor: str) -> bool:
    """Whether children of a spatial loop with this credit never share a read of `tensor`
    (model `group_key`: no sharing, or projection along a dimension indexing the tensor)."""
    return credit == "none" or (credit == "projection" and dim in RELEVANT[tensor])
