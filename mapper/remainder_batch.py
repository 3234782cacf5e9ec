"""Exact batch results for candidates with remainders, one candidate at a time.

`mapper.batch` vectorizes the counts of perfect nests only; a candidate whose factors do
not multiply to the layer's sizes (imperfect factorization) is routed here and counted by
the scalar model's remainder path (`mapper.model._Remainders`), so batch, search and the
model agree exactly. It is slow (a Python loop over tiles per candidate: tens of ms to a
second on a real layer), which is why the imperfect search is budgeted and not the default
(see README, "Imperfect factorization").
"""
from __future__ import annotations

import math

import numpy as np

from .arch import Fanout
from .model import _Remainders, evaluate
from .problem import DIMS, RELEVANT, TENSORS


def remainder_rows(enc, factors: np.ndarray) -> np.ndarray:
    """[n] bool: which encoded candidates have remainders (some dimension's factors do not
    multiply to the layer's size)."""
    sizes = np.array([enc.layer.dims[d] for d in DIMS], dtype=np.int64)
    return (np.prod(factors, axis=1) != sizes[None, :]).any(axis=1)


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
    for i in range(n):
        options = assignments if modes is None or not enc.mode_fans else modes[i:i + 1]
        best = None
        cache: dict = {}          # the sums shared by this candidate's mode choices
        for a, md in enumerate(options):
            m = enc.decode(factors[i], orders[i], keep[i], md if enc.mode_fans else None)
            cost = evaluate(enc.layer, enc.arch, m, validate=False,
                            remainders=lambda nest: FastRemainders(nest, cache))
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
    """`model._Remainders` with its per-group sums over index tuples done in numpy (one
    array row per tuple instead of a Python dict) where the groups have many tuples (the
    model's loop where they have few: numpy's per-call overhead dominates there): the same
    tuples, boxes, held tiles and distinct keys, so the same numbers (tested). `cache`
    shares the sums between the network-mode choices of one candidate: they depend on the
    modes only through the credits of the fan-outs between parent and child."""

    SMALL = 64          # largest per-group tuple count counted by the model's own loop

    def __init__(self, nest, cache: dict | None = None):
        super().__init__(nest)
        self.cache = {} if cache is None else cache

    def _tuples_bound(self, tensor: str, outer: list[int]) -> int:
        return max(math.prod(self.loops[k][2] for k in outer if self.loops[k][1] in dims)
                   for _, dims in self.groups(tensor))

    def sums(self, tensor: str, parent: int, child: int | None) -> dict:
        c = len(self.arch.levels) if child is None else child
        credits = tuple(self.arch.levels[i].credit(self.mapping.mode(self.arch.levels[i].name, tensor))
                        for i in range(parent + 1, c) if isinstance(self.arch.levels[i], Fanout))
        key = ("sums", tensor, parent, child, repr(credits))
        if key not in self.cache:
            outer = [k for k, (lvl, _, _, _) in enumerate(self.loops) if lvl < c]
            if self._tuples_bound(tensor, outer) <= self.SMALL:
                self.cache[key] = _Remainders.sums(self, tensor, parent, child)
            else:
                self.cache[key] = self._numpy_sums(tensor, parent, child)
        return self.cache[key]

    def _grid(self, dims, outer, event):
        """(loops, index array [T, loops]) of the valid tuples (as `tuples`)."""
        mine = [k for k in outer if self.loops[k][1] in dims]
        ranges = [np.arange(*self.event_range(k, event)) for k in mine]
        if mine:
            ix = np.stack([g.reshape(-1) for g in np.meshgrid(*ranges, indexing="ij")], axis=1).astype(np.int64)
        else:
            ix = np.zeros((1, 0), dtype=np.int64)
        ok = np.ones(len(ix), dtype=bool)
        for d in dims:
            ok &= self._offset(ix, mine, d) < self.size[d]
        return mine, ix[ok]

    def _offset(self, ix, mine, d):
        off = np.zeros(len(ix), dtype=np.int64)
        for j, k in enumerate(mine):
            if self.loops[k][1] == d:
                off += ix[:, j] * self.step[k]
        return off

    def _boxes(self, ix, mine, axes, nominal):
        """[T, 2 * axes] (lo, hi) per axis, and the box sizes [T]."""
        cols, size = [], np.ones(len(ix), dtype=np.int64)
        for axis in axes:
            lo = np.zeros(len(ix), dtype=np.int64)
            hi = np.zeros(len(ix), dtype=np.int64)
            for d, c in axis:
                off = self._offset(ix, mine, d)
                ext = np.minimum(nominal[d], self.size[d] - off)
                lo += c * off
                hi += c * (off + ext - 1)
            cols += [lo, hi]
            size = size * (hi - lo + 1)
        return (np.stack(cols, axis=1) if cols else np.zeros((len(ix), 0), dtype=np.int64)), size

    def _previous(self, ix, mine, k):
        prev = ix.copy()
        if k in mine:
            prev[:, mine.index(k)] -= 1
        reset = [j for j in mine if self.loops[j][3] is None and j > k]
        for j in reset:
            prev[:, mine.index(j)] = 0
        for j in sorted(reset):
            d, f, st = self.loops[j][1], self.loops[j][2], self.step[j]
            others = np.zeros(len(ix), dtype=np.int64)
            for a, i in enumerate(mine):
                if self.loops[i][1] == d and i != j:
                    others += prev[:, a] * self.step[i]
            prev[:, mine.index(j)] = np.minimum(f - 1, (self.size[d] - others - 1) // st)
        return prev

    def _numpy_sums(self, tensor: str, parent: int, child: int | None) -> dict:
        outer, temporal, parent_sp, between, nominal, r, events = self.link_loops(tensor, parent, child)
        fans = sorted({self.loops[k][0] for k in between})
        credits = {}
        for fan in fans:
            level = self.arch.levels[fan]
            credits[fan] = level.credit(self.mapping.mode(level.name, tensor))
        out = {}
        memo: dict = {}
        for e in events:
            prod_all = {x: 1 for x in ("size", "ov", "eq", "first")}
            prod_grp = dict(prod_all)
            for gi, (axes, dims) in enumerate(self.groups(tensor)):
                # A group's sums depend on the event only through which of its temporal loops
                # it resets (and whether the event's loop is its own).
                own = [k for k in outer if self.loops[k][1] in dims]
                if isinstance(e, int) and e not in own:
                    mkey = (gi, "reset", tuple(k for k in own if self.loops[k][3] is None and k > e))
                else:
                    mkey = (gi, e)
                if mkey in memo:
                    tot_all, tot_grp = memo[mkey]
                    for x in prod_all:
                        prod_all[x] *= tot_all[x]
                        prod_grp[x] *= tot_grp[x]
                    continue
                mine, ix = self._grid(dims, outer, e)
                box, size = self._boxes(ix, mine, axes, nominal)
                keys = [box]
                if isinstance(e, int):
                    held, _ = self._boxes(self._previous(ix, mine, e), mine, axes, nominal)
                    ov = np.ones(len(ix), dtype=np.int64)
                    for a in range(len(axes)):
                        lo = np.maximum(box[:, 2 * a], held[:, 2 * a])
                        hi = np.minimum(box[:, 2 * a + 1], held[:, 2 * a + 1])
                        ov = ov * np.maximum(0, hi - lo + 1)
                    eq = np.where((box == held).all(axis=1), size, 0)
                    keys.append(held)
                else:
                    ov = eq = np.zeros(len(ix), dtype=np.int64)
                tcols = [j for j, k in enumerate(mine) if k in temporal]
                zero = (ix[:, tcols] == 0).all(axis=1) if tcols else np.ones(len(ix), dtype=bool)
                first = zero.astype(np.int64) if not axes else size
                vals = {"size": size, "ov": ov, "eq": eq, "first": first}
                keys.append(ix[:, tcols])
                keys.append(ix[:, [j for j, k in enumerate(mine) if k in parent_sp]])
                for fan in fans:
                    credit = credits[fan]
                    fmine = [j for j, k in enumerate(mine) if k in between and self.loops[k][0] == fan]
                    apart = [j for j in fmine if credit[self.loops[mine[j]][3]] == "none" or
                             (credit[self.loops[mine[j]][3]] == "projection" and
                              self.loops[mine[j]][1] in RELEVANT[tensor])]
                    keys.append(ix[:, apart])
                    probe = ix.copy()
                    for j, k in enumerate(mine):
                        if k in between and j not in fmine:
                            probe[:, j] = 0
                    keys.append(self._boxes(probe, mine, axes, nominal)[0])
                keymat = np.concatenate(keys, axis=1)
                if keymat.shape[1] and len(keymat):
                    _, first_rows = np.unique(keymat, axis=0, return_index=True)
                else:
                    first_rows = np.arange(min(1, len(keymat)))
                tot_all = {x: int(vals[x].sum()) for x in prod_all}
                tot_grp = {x: int(vals[x][first_rows].sum()) for x in prod_all}
                memo[mkey] = (tot_all, tot_grp)
                for x in prod_all:
                    prod_all[x] *= tot_all[x]
                    prod_grp[x] *= tot_grp[x]
            out[e] = (prod_all, prod_grp)
        return {"events": out, "r": r}

    def _first_points(self, tensor: str, parent: int) -> int:
        key = ("first", tensor, parent)
        if key not in self.cache:
            outer = list(range(len(self.loops)))
            if self._tuples_bound(tensor, outer) <= self.SMALL:
                self.cache[key] = _Remainders._first_points(self, tensor, parent)
            else:
                self.cache[key] = self._numpy_first_points(tensor, parent)
        return self.cache[key]

    def _numpy_first_points(self, tensor: str, parent: int) -> int:
        outer = list(range(len(self.loops)))
        parent_sp = [k for k in outer if self.loops[k][3] is not None and self.loops[k][0] < parent]
        total = 1
        for axes, dims in self.groups(tensor):
            mine, ix = self._grid(dims, outer, "all")
            box, _ = self._boxes(ix, mine, axes, {d: 1 for d in DIMS})
            keymat = np.concatenate([ix[:, [j for j, k in enumerate(mine) if k in parent_sp]], box], axis=1)
            total *= len(np.unique(keymat, axis=0)) if keymat.shape[1] else min(1, len(keymat))
        return total
