"""The per-group sums of a remainder nest, in numpy, keyed on what they depend on.

`mapper.model._Remainders` counts a link (tensor, parent level, child level) of a nest
with remainders as a product over dimension groups (one per tensor axis, plus one per
dimension the tensor ignores) of per-group sums over the group's index tuples, one set
of sums per event (the first step, or a step of temporal loop e). This module computes
those sums for one group with arrays and returns them for every event class at once.

Why a group is a reusable unit: its sums read only the group's own loops above the child
(factor, step, temporal / spatial above the parent / spatial between parent and child,
the fan-out and credit of a spatial loop between), the group's sizes and nominal tile
and the tensor's axis coefficients; `GroupSpec` holds exactly that and is the cache key.
Another candidate, another keep pattern or another network mode that gives a group the
same spec gets the same sums (typical: the dimensions a tensor ignores, or a dimension
whose factorization did not change in a local-search move). What the event does to the
group also depends only on its own loops: a step of one of its temporal loops, or a step
of a loop elsewhere, which resets the group's temporal loops inside it (`event_class`).

The sums (per event: tile sizes, overlaps with the held tile, sizes where the tile equals
the held one, first touches; over all children and over the distinct groups of children
one parent read serves) are the model's, row for row: the same valid tuples, the same
held tile (the previous valid step), the same distinctness key, tested equal.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FIRST, ALL = "first", "all"
FIELDS = ("size", "ov", "eq", "first")


@dataclass(frozen=True)
class GroupSpec:
    """One group's own loops above the child (nest order) and its geometry.

    kinds: "T" temporal, "P" spatial above the parent, "B" spatial between parent and
    child. fans: for a "B" loop the rank of its fan-out among the link's (else -1);
    apart: a "B" loop whose children never share a read (its index is part of the key).
    axes: per tensor axis, (position in the group's dims, coefficient) terms."""

    factors: tuple[int, ...]
    steps: tuple[int, ...]
    dimpos: tuple[int, ...]
    kinds: tuple[str, ...]
    fans: tuple[int, ...]
    apart: tuple[bool, ...]
    sizes: tuple[int, ...]
    nominal: tuple[int, ...]
    axes: tuple[tuple[tuple[int, int], ...], ...]


def event_class(spec: GroupSpec, own: list[int], event) -> tuple:
    """What `event` (FIRST, ALL or a global loop index) means for the group whose own loops
    have global indices `own`: FIRST / ALL, ("own", j) for a step of its j-th loop, or
    ("reset", j) for a step of a loop elsewhere, which resets the group's temporal loops
    from its j-th on (the ones nested inside the stepping loop)."""
    if not isinstance(event, int):
        return (event,)
    if event in own:
        return ("own", own.index(event))
    j = sum(1 for k in own if k < event)
    while j < len(own) and spec.kinds[j] != "T":
        j += 1
    return ("reset", j)


class _Grid:
    """The group's valid index tuples (all indices in range, offsets inside the layer) and
    the boxes of their tiles."""

    def __init__(self, spec: GroupSpec):
        self.spec = spec
        f = spec.factors
        if f:
            ix = np.indices(f, dtype=np.int64).reshape(len(f), -1).T
        else:
            ix = np.zeros((1, 0), dtype=np.int64)
        # W[l, d]: how far loop l moves the group's dim d per step
        self.W = np.zeros((len(f), len(spec.sizes)), dtype=np.int64)
        for j, (dp, st) in enumerate(zip(spec.dimpos, spec.steps)):
            self.W[j, dp] = st
        self.size = np.array(spec.sizes, dtype=np.int64)
        self.nominal = np.array(spec.nominal, dtype=np.int64)
        # C[d, a]: coefficient of dim d in axis a
        self.C = np.zeros((len(spec.sizes), len(spec.axes)), dtype=np.int64)
        for a, axis in enumerate(spec.axes):
            for dp, c in axis:
                self.C[dp, a] += c
        ok = ((ix @ self.W) < self.size).all(axis=1)
        self.ix = ix[ok]

    def boxes(self, ix: np.ndarray, nominal: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) [rows, axes] of the tiles at these indices: nominal extents clipped at
        the layer's end (model `_Remainders.boxes`)."""
        off = ix @ self.W
        nom = self.nominal if nominal is None else nominal
        last = off + np.minimum(nom, self.size - off) - 1
        return off @ self.C, last @ self.C

    def previous(self, ix: np.ndarray, j: int | None, reset: list[int]) -> np.ndarray:
        """The indices of the previous valid step (model `_Remainders.previous`): loop j one
        lower (None: the stepping loop is not the group's), the reset loops (all at 0 in
        these rows) at their largest valid indices, outermost first."""
        prev = ix.copy()
        if j is not None:
            prev[:, j] -= 1
        spec = self.spec
        for r in reset:
            dp, st = spec.dimpos[r], spec.steps[r]
            others = prev @ self.W[:, dp]          # prev[:, r] is 0: the other loops on dp
            prev[:, r] = np.minimum(spec.factors[r] - 1, (spec.sizes[dp] - others - 1) // st)
        return prev


def _distinct_rows(keys: np.ndarray) -> np.ndarray:
    """Indices of one row per distinct row of keys [m, q] (m >= 1)."""
    if keys.shape[1] == 0:
        return np.zeros(1, dtype=np.int64)
    order = np.lexsort(keys.T)
    s = keys[order]
    new = np.ones(len(s), dtype=bool)
    new[1:] = (s[1:] != s[:-1]).any(axis=1)
    return order[new]


def group_sums(spec: GroupSpec, classes: list[tuple]) -> dict[tuple, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Per event class: (sums over all children, sums over the distinct groups of children)
    of (size, ov, eq, first), as the model's `_Remainders.sums` loop computes them for one
    group."""
    g = _Grid(spec)
    ix = g.ix
    kinds = spec.kinds
    tcols = [j for j, k in enumerate(kinds) if k == "T"]
    pcols = [j for j, k in enumerate(kinds) if k == "P"]
    lo, hi = g.boxes(ix)
    size = np.prod(hi - lo + 1, axis=1)
    zero_t = (ix[:, tcols] == 0).all(axis=1)
    first = size if spec.axes else zero_t.astype(np.int64)
    # The key naming the children one parent read serves (model `group_key`): temporal and
    # parent-spatial indices, per fan-out with loops of this group the indices of its
    # loops that never share and the tile with the other fan-outs' indices at 0, the tile.
    # (A fan-out without loops of this group adds a tile fixed by the indices above.)
    base = [ix[:, tcols], ix[:, pcols]]
    for fan in sorted({f for f in spec.fans if f >= 0}):
        base.append(ix[:, [j for j in range(len(kinds)) if spec.fans[j] == fan and spec.apart[j]]])
        if spec.axes:
            probe = ix.copy()
            probe[:, [j for j in range(len(kinds)) if kinds[j] == "B" and spec.fans[j] != fan]] = 0
            base += list(g.boxes(probe))
    base += [lo, hi]
    base = np.concatenate(base, axis=1)
    out = {}
    for cls in classes:
        if cls[0] in (FIRST, ALL):
            rows = zero_t if cls[0] == FIRST else np.ones(len(ix), dtype=bool)
            sz, fi = size[rows], first[rows]
            vals = np.stack([sz, np.zeros_like(sz), np.zeros_like(sz), fi])
            keys = base[rows]
        else:
            kind, j = cls
            inner = [c for c in tcols if c > j] if kind == "own" else [c for c in tcols if c >= j]
            rows = (ix[:, inner] == 0).all(axis=1)
            if kind == "own":
                rows &= ix[:, j] >= 1
            sub = ix[rows]
            hlo, hhi = g.boxes(g.previous(sub, j if kind == "own" else None, inner))
            blo, bhi = lo[rows], hi[rows]
            sz = size[rows]
            ov = np.prod(np.maximum(0, np.minimum(bhi, hhi) - np.maximum(blo, hlo) + 1), axis=1)
            same = (blo == hlo).all(axis=1) & (bhi == hhi).all(axis=1)
            vals = np.stack([sz, ov, np.where(same, sz, 0), first[rows]])
            keys = np.concatenate([base[rows], hlo, hhi], axis=1)
        if not len(keys):
            out[cls] = ((0,) * 4, (0,) * 4)
            continue
        pick = _distinct_rows(keys)
        out[cls] = (tuple(int(v) for v in vals.sum(axis=1)), tuple(int(v) for v in vals[:, pick].sum(axis=1)))
    return out


@dataclass(frozen=True)
class PointSpec:
    """A group's loops (all levels) for counting distinct (parent instance, point) pairs:
    parent: the spatial loops above the parent level."""

    factors: tuple[int, ...]
    steps: tuple[int, ...]
    dimpos: tuple[int, ...]
    parent: tuple[bool, ...]
    sizes: tuple[int, ...]
    axes: tuple[tuple[tuple[int, int], ...], ...]


def distinct_points(spec: PointSpec) -> int:
    """Distinct (indices of the parent's spatial loops, tensor point at the tile's origin)
    over the group's valid tuples (model `_Remainders._first_points`, one group)."""
    g = _Grid(GroupSpec(spec.factors, spec.steps, spec.dimpos, ("T",) * len(spec.factors),
                        (-1,) * len(spec.factors), (False,) * len(spec.factors), spec.sizes,
                        (1,) * len(spec.sizes), spec.axes))
    lo, _ = g.boxes(g.ix)
    keys = np.concatenate([g.ix[:, [j for j, p in enumerate(spec.parent) if p]], lo], axis=1)
    return len(_distinct_rows(keys)) if keys.shape[1] else min(1, len(keys))
