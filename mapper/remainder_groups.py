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
of a loop elsewhere, which resets the group's temporal loops inside it (`event_classes`).

The sums (per event: tile sizes, overlaps with the held tile, sizes where the tile equals
the held one, first touches; over all children and over the distinct groups of children
one parent read serves) are the model's, computed three ways, cheapest first:

* one dimension (every group of Weights and Outputs, an input's channels): closed form
  over mixed-radix tile numbers (`_Radix`), O(loops) per event class;
* an input's rows or columns (stride * p + dilation * r) when no spatial loop between
  parent and child lets children share a read: per-dimension signatures, counted and
  paired (`_separable_sums`), so the work is the sum of the two dimensions' tuples
  instead of their product;
* otherwise a pass over the group's valid tuples (`grid_sums`) with the model's held
  tile (the previous valid step) and distinctness key, every event class in one pass.

Each is tested equal to the pass over tuples, and all of them to the model.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

FIRST, ALL = "first", "all"
FIELDS = ("size", "ov", "eq", "first")


class GroupSpec(NamedTuple):
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


def event_classes(spec: GroupSpec, own: list[int], events: list) -> list[tuple]:
    """What each event (FIRST, ALL or a global loop index, in nest order) means for the
    group whose own loops have global indices `own` (nest order): FIRST / ALL, ("own", j)
    for a step of its j-th loop, or ("reset", j) for a step of a loop elsewhere, which
    resets the group's temporal loops from its j-th on (the ones nested inside it)."""
    n = len(own)
    next_t = [n] * (n + 1)           # next_t[j]: the first temporal position >= j
    for j in range(n - 1, -1, -1):
        next_t[j] = j if spec.kinds[j] == "T" else next_t[j + 1]
    out, j = [], 0
    for e in events:
        if not isinstance(e, int):
            out.append((e,))
            continue
        while j < n and own[j] < e:
            j += 1
        out.append(("own", j) if j < n and own[j] == e else ("reset", next_t[j]))
    return out


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

    def boxes(self, ix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) [rows, axes] of the tiles at these indices: nominal extents clipped at
        the layer's end (model `_Remainders.boxes`)."""
        off = ix @ self.W
        last = off + np.minimum(self.nominal, self.size - off) - 1
        return off @ self.C, last @ self.C


def valid_tuples(factors: tuple[int, ...], steps: tuple[int, ...], size: int) -> int:
    """How many index tuples (0 <= i_k < factors[k]) of loops over one dimension start
    inside it (sum of i_k * steps[k] < size)."""
    off = np.zeros(1, dtype=np.int64)
    for f, st in zip(factors, steps):
        off = (off[:, None] + st * np.arange(f, dtype=np.int64)[None, :]).reshape(-1)
        off = off[off < size]          # a prefix already past the end stays past it
    return len(off)


def _distinct_rows(keys: np.ndarray) -> np.ndarray:
    """Indices of one row per distinct row of keys [m, q] (m >= 1, entries >= 0). Columns
    are first packed, as digits of a mixed-radix number, into as few int64 words as fit
    below 2**62 (a key has a dozen small columns: indices, box bounds), so the sort runs
    on 1-3 words instead of q columns."""
    if keys.shape[1] == 0:
        return np.zeros(1, dtype=np.int64)
    radix = keys.max(axis=0) + 1
    words, word, span = [], keys[:, 0], int(radix[0])
    for c in range(1, keys.shape[1]):
        r = int(radix[c])
        if span * r < 1 << 62:
            word, span = word * r + keys[:, c], span * r
        else:
            words.append(word)
            word, span = keys[:, c], r
    words.append(word)
    if len(words) == 1:
        _, first = np.unique(words[0], return_index=True)
        return first
    packed = np.stack(words, axis=1)
    order = np.lexsort(packed.T)
    s = packed[order]
    new = np.ones(len(s), dtype=bool)
    new[1:] = (s[1:] != s[:-1]).any(axis=1)
    return order[new]


def group_sums(spec: GroupSpec, classes: list[tuple], memo: dict | None = None
               ) -> dict[tuple, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Per event class: (sums over all children, sums over the distinct groups of children)
    of (size, ov, eq, first), as the model's `_Remainders.sums` loop computes them for one
    group: in closed form for a one-dimension group (`_Radix`), from per-dimension
    signatures (kept in `memo` if given) for a window whose children never merge, else
    over its tuples."""
    radix = _Radix.of(spec)
    if radix is not None:
        return {cls: radix.sums(cls) for cls in classes}
    return _separable_sums(spec, classes, memo) or grid_sums(spec, classes)


def _class_rows(g: _Grid, classes: list[tuple]):
    """Every class's tuples stacked, so that the held tiles, overlaps and distinct keys
    take one pass: (row of g.ix, class index, whether the class is a step, indices of the
    previous valid step) per stacked row. A step's held tile is the one at the previous
    valid step (model `_Remainders.previous`): the stepping loop one lower if it is the
    group's, the temporal loops inside it (all at 0 in these rows) at their largest valid
    indices, outermost first."""
    spec, ix = g.spec, g.ix
    tcols = [j for j, k in enumerate(spec.kinds) if k == "T"]
    n_loops = len(spec.kinds)
    # zero_from[:, i]: the temporal loops from the i-th temporal one on are all at 0
    zero = ix[:, tcols] == 0
    zero_from = np.ones((len(ix), len(tcols) + 1), dtype=bool)
    if tcols:
        zero_from[:, :-1] = np.logical_and.accumulate(zero[:, ::-1], axis=1)[:, ::-1]
    masks = np.empty((len(classes), len(ix)), dtype=bool)
    steps = np.full(len(classes), -1)
    resets = np.zeros((len(classes), n_loops), dtype=bool)
    for ci, cls in enumerate(classes):
        if cls[0] == ALL:
            masks[ci] = True
            continue
        if cls[0] == FIRST:
            start = 0
        else:
            kind, j = cls
            start = sum(1 for c in tcols if c <= j) if kind == "own" else sum(1 for c in tcols if c < j)
            resets[ci, tcols[start:]] = True
        masks[ci] = zero_from[:, start]
        if cls[0] == "own":
            masks[ci] &= ix[:, j] >= 1
            steps[ci] = j
    cid, pick = np.nonzero(masks)
    stepped, reset = steps[cid], resets[cid]
    event = np.array([cls[0] not in (FIRST, ALL) for cls in classes])[cid]
    prev = ix[pick]
    own = stepped >= 0
    prev[own, stepped[own]] -= 1
    for c in tcols:
        rr = reset[:, c]
        if rr.any():
            dp, st = spec.dimpos[c], spec.steps[c]
            others = prev[rr] @ g.W[:, dp]        # prev[:, c] is 0 there: the other loops on dp
            prev[rr, c] = np.minimum(spec.factors[c] - 1, (spec.sizes[dp] - others - 1) // st)
    return pick, cid, event, prev


def _separable_sums(spec: GroupSpec, classes: list[tuple], memo: dict | None = None):
    """`group_sums` of a two-dimension group (one axis a*p + b*r, as an input's rows) whose
    children never merge, or None if it is not one.

    Its valid tuples are the product of each dimension's, every event's constraints are per
    loop, and a held tile is per dimension (a reset only looks at its own dimension's
    loops), so each dimension's tuples reduce to signatures per class: (extent, offset of
    the held tile minus the tile's, held extent), counted. A tile's size, overlap with the
    held one and equality only depend on the pair of signatures (they are invariant under a
    common shift). Without a spatial loop between parent and child whose children may
    share (all loops' indices are in the key), every tuple is its own distinct group."""
    if len(spec.sizes) != 2 or len(spec.axes) != 1 or len(spec.axes[0]) != 2 or \
            any(k == "B" and not a for k, a in zip(spec.kinds, spec.apart)):
        return None
    coef = [0, 0]
    for dp, c in spec.axes[0]:
        coef[dp] += c
    sigs = [_dim_signatures(spec, dp, classes, {} if memo is None else memo) for dp in (0, 1)]
    out = {}
    for ci, cls in enumerate(classes):
        step = cls[0] not in (FIRST, ALL)
        tot = [0, 0, 0, 0]
        for (e0, d0, h0), n0 in sigs[0][ci]:
            for (e1, d1, h1), n1 in sigs[1][ci]:
                n = n0 * n1
                span = coef[0] * (e0 - 1) + coef[1] * (e1 - 1)
                size = span + 1
                tot[0] += n * size
                tot[3] += n * size
                if step:
                    lo = coef[0] * d0 + coef[1] * d1
                    hi = lo + coef[0] * (h0 - 1) + coef[1] * (h1 - 1)
                    tot[1] += n * max(0, min(span, hi) - max(0, lo) + 1)
                    tot[2] += n * size * (lo == 0 and hi == span)
        out[cls] = (tuple(tot), tuple(tot))
    return out


def _dim_signatures(spec: GroupSpec, dp: int, classes: list[tuple], memo: dict) -> list[list[tuple[tuple, int]]]:
    """Per class, ((extent, held offset - offset, held extent), count) over the valid tuples
    of the group's loops on its dim dp (see `_separable_sums`). They depend only on that
    dimension's loops and the class restricted to them, the key in `memo`: the other
    dimension's loops, or a group's other dimension, may differ (an input's rows R loops
    are few and recur across candidates and links)."""
    mine = [j for j in range(len(spec.factors)) if spec.dimpos[j] == dp]
    where = {j: i for i, j in enumerate(mine)}
    sub = GroupSpec(tuple(spec.factors[j] for j in mine), tuple(spec.steps[j] for j in mine),
                    (0,) * len(mine), tuple(spec.kinds[j] for j in mine), (-1,) * len(mine),
                    (False,) * len(mine), (spec.sizes[dp],), (spec.nominal[dp],), ())
    local = []
    for cls in classes:          # the class for this dim's loops alone
        if cls[0] in (FIRST, ALL):
            local.append(cls)
        elif cls[0] == "own" and cls[1] in where:
            local.append(("own", where[cls[1]]))
        else:                    # reset: this dim's temporal loops inside the stepping one
            after = cls[1] + 1 if cls[0] == "own" else cls[1]
            j = sum(1 for m in mine if m < after)
            while j < len(mine) and sub.kinds[j] != "T":
                j += 1
            local.append(("reset", j))
    known = memo.setdefault(sub, {})
    missing = sorted(set(local) - set(known), key=repr)
    if missing:
        known.update(zip(missing, _signatures(sub, missing)))
    return [known[cl] for cl in local]


def _signatures(sub: GroupSpec, local: list[tuple]) -> list[list[tuple[tuple, int]]]:
    """`_dim_signatures` of a one-dimension group (its own classes)."""
    g = _Grid(sub)
    pick, cid, _, prev = _class_rows(g, local)
    off = g.ix[pick] @ g.W[:, 0]
    held = prev @ g.W[:, 0]
    size, nom = sub.sizes[0], sub.nominal[0]
    # one integer per (class, extent, shift, held extent): shifts lie in (-size, size)
    code = ((cid * (nom + 1) + np.minimum(nom, size - off)) * (2 * size + 1) + held - off + size) * (nom + 1) \
        + np.minimum(nom, size - held)
    uniq, counts = np.unique(code, return_counts=True)
    out: list[list] = [[] for _ in local]
    for v, n in zip(uniq.tolist(), counts.tolist()):
        v, h = divmod(v, nom + 1)
        v, d = divmod(v, 2 * size + 1)
        c, e = divmod(v, nom + 1)
        out[c].append(((e, d - size, h), n))
    return out


def grid_sums(spec: GroupSpec, classes: list[tuple]) -> dict[tuple, tuple[tuple[int, ...], tuple[int, ...]]]:
    """`group_sums` by a pass over the group's valid tuples (any group)."""
    g = _Grid(spec)
    ix = g.ix
    kinds = spec.kinds
    tcols = [j for j, k in enumerate(kinds) if k == "T"]
    pcols = [j for j, k in enumerate(kinds) if k == "P"]
    lo, hi = g.boxes(ix)
    size = np.prod(hi - lo + 1, axis=1)
    first = size if spec.axes else (ix[:, tcols] == 0).all(axis=1).astype(np.int64)
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
    pick, cid, event, prev = _class_rows(g, classes)
    hlo, hhi = g.boxes(prev)
    blo, bhi, sz = lo[pick], hi[pick], size[pick]
    ov = np.prod(np.maximum(0, np.minimum(bhi, hhi) - np.maximum(blo, hlo) + 1), axis=1)
    same = (blo == hlo).all(axis=1) & (bhi == hhi).all(axis=1)
    vals = np.stack([sz, np.where(event, ov, 0), np.where(event & same, sz, 0), first[pick]], axis=1)
    # rows of the first and all classes hold no tile: their held box is their own (constant
    # within the class, so it does not split keys)
    keys = np.concatenate([cid[:, None], base[pick], hlo, hhi], axis=1)
    one = _distinct_rows(keys) if len(keys) else np.zeros(0, dtype=np.int64)
    tot_all = np.zeros((len(classes), 4), dtype=np.int64)
    tot_grp = np.zeros((len(classes), 4), dtype=np.int64)
    for x in range(4):
        tot_all[:, x] = np.bincount(cid, vals[:, x], len(classes))
        tot_grp[:, x] = np.bincount(cid[one], vals[one, x], len(classes))
    return {cls: (tuple(int(v) for v in tot_all[ci]), tuple(int(v) for v in tot_grp[ci]))
            for ci, cls in enumerate(classes)}


# What a digit may be in a set of index tuples (see _Radix): 0 only, 1.., or any.
ZERO, NONZERO, ANY = 0, 1, 2


class _Radix:
    """A one-dimension group in closed form.

    The group's loops are all the loops on its dimension above the child, and each loop's
    step is the nominal tile times the factors of the group's loops inside it: an index
    tuple is the mixed-radix number J (outermost digit first) of the tile at offset
    J * nominal, valid iff J < N = ceil(size / nominal). Tiles are nominal but the last
    (J = N - 1), clipped to size - (N - 1) * nominal. Every set of tuples an event sums over
    fixes some digits to 0 and at most one to >= 1, so a sum over it is a count of the J
    below a bound with such digits (`count`) plus the last tile's correction, instead of
    a pass over the tuples. The overlaps: two different tiles on one axis never overlap
    (their boxes are disjoint intervals), so a step of the group's own loop fetches the
    whole tile, and a step elsewhere, which resets the group's temporal loops inside it to
    their last valid indices, finds the held tile unchanged exactly when those are all 0,
    i.e. when J * nominal + (the innermost reset loop's step) >= size. The distinct groups
    of children: tiles of the tensor's axis are distinct for distinct J (no merging), and
    with no axis (a dimension the tensor ignores) children differ only by the indices the
    key keeps (temporal, parent-spatial, never-sharing); a projected tuple is valid iff
    it is valid with the dropped digits at 0 (the smallest offset), so the distinct ones
    are counted by fixing those digits to 0."""

    def __init__(self, spec: GroupSpec):
        self.spec = spec
        self.f = spec.factors
        self.nominal, self.size = spec.nominal[0], spec.sizes[0]
        self.N = -(-self.size // self.nominal)
        self.coef = spec.axes[0][0][1] if spec.axes else None
        if self.coef is not None:
            nom = self.coef * (self.nominal - 1) + 1
            self.sz_nom, self.sz_last = nom, self.coef * (self.size - (self.N - 1) * self.nominal - 1) + 1
        self.temporal = [j for j, k in enumerate(spec.kinds) if k == "T"]
        self.places = [math.prod(self.f[j + 1:]) for j in range(len(self.f))] or [1]
        self.last_digits, rest = [], self.N - 1
        for place in self.places[:len(self.f)]:
            x, rest = divmod(rest, place)
            self.last_digits.append(x)

    @classmethod
    def of(cls, spec: GroupSpec) -> "_Radix | None":
        """The closed form when the group is one dimension (with an axis of one term, or
        none) whose steps are mixed radix; None otherwise."""
        if len(spec.sizes) != 1 or (spec.axes and (len(spec.axes) != 1 or len(spec.axes[0]) != 1)):
            return None
        step = spec.nominal[0]
        for f, st in zip(reversed(spec.factors), reversed(spec.steps)):
            if st != step:
                return None
            step *= f
        return cls(spec)

    def count(self, allowed: list[int], below: int) -> int:
        """How many J < below (J < N always) have digit j in allowed[j]."""
        f = self.f
        below = min(below, self.N)
        if below <= 0:
            return 0
        width = [1 if a == ZERO else (fj - 1 if a == NONZERO else fj) for a, fj in zip(allowed, f)]
        inner = [1] * (len(f) + 1)         # inner[j]: tuples of the digits after j
        for j in range(len(f) - 1, -1, -1):
            inner[j] = inner[j + 1] * width[j]
        if below >= self.places[0] * (f[0] if f else 1):
            return inner[0]
        total, rest = 0, below
        for j, a in enumerate(allowed):
            x, rest = divmod(rest, self.places[j])
            under = (1 if x > 0 else 0) if a == ZERO else (max(0, x - 1) if a == NONZERO else x)
            total += under * inner[j + 1]
            if (a == ZERO and x != 0) or (a == NONZERO and x == 0):
                return total
        return total

    def sizes(self, allowed: list[int], at_least: int = 0) -> int:
        """Sum of the tile sizes (1 per tuple without an axis) over the J >= at_least."""
        n = self.count(allowed, self.N) - self.count(allowed, at_least)
        if self.coef is None:
            return n
        # the last tile J = N - 1 is in the set iff its digits are allowed
        last = at_least <= self.N - 1 and all(
            a == ANY or (a == ZERO) == (x == 0) for a, x in zip(allowed, self.last_digits))
        return n * self.sz_nom + last * (self.sz_last - self.sz_nom)

    def sums(self, cls: tuple) -> tuple[tuple[int, ...], tuple[int, ...]]:
        spec = self.spec
        allowed = [ANY] * len(self.f)
        if cls[0] == FIRST:
            for j in self.temporal:
                allowed[j] = ZERO
        held = None                       # J from which the held tile is this one (None: never)
        if cls[0] == "own":
            j = cls[1]
            allowed[j] = NONZERO
            for c in self.temporal:
                if c > j:
                    allowed[c] = ZERO
        elif cls[0] == "reset":
            reset = [c for c in self.temporal if c >= cls[1]]
            for c in reset:
                allowed[c] = ZERO
            moving = [c for c in reset if self.f[c] > 1]      # (a loop of 1 step stays at 0)
            held = 0 if not moving else -(-(self.size - spec.steps[moving[-1]]) // self.nominal)
        merged = list(allowed)
        if self.coef is None:
            for j, k in enumerate(spec.kinds):
                if k == "B" and not spec.apart[j]:
                    merged[j] = ZERO
        out = []
        for al in ((allowed,) if merged == allowed else (allowed, merged)):
            size = self.sizes(al)
            if self.coef is not None:
                first = size              # first touches: every point of the tile
            elif any(al[j] == NONZERO for j in self.temporal):
                first = 0                 # without an axis: the tuples with temporal indices 0
            else:
                first = self.sizes([ZERO if j in self.temporal else a for j, a in enumerate(al)])
            if cls[0] in (FIRST, ALL):
                same = 0
            elif self.coef is None:
                same = size               # no axis: the (empty) tile is always the held one
            else:
                same = self.sizes(al, held) if held is not None else 0
            out.append((size, same, same, first))
        return out[0], out[-1]


def distinct_points(spec: GroupSpec) -> int:
    """Distinct (indices of the parent's spatial loops, tensor point at the tile's origin)
    over the group's valid tuples (model `_Remainders._first_points`, one group). `spec`
    holds all the group's loops, those above the parent as kind "P", and nominal tiles 1.

    One dimension: its loops' steps are mixed radix (the innermost steps by 1), so a point
    names its tuple and the distinct pairs are the valid tuples; with no axis only the
    parent's indices tell tuples apart, and a projected tuple is valid iff it is with the
    other loops at 0, so they are the valid tuples of the parent's loops alone."""
    parent = [k == "P" for k in spec.kinds]
    if len(spec.sizes) == 1 and (not spec.axes or (len(spec.axes) == 1 and len(spec.axes[0]) == 1)):
        mine = [j for j in range(len(spec.factors)) if parent[j] or spec.axes]
        return valid_tuples(tuple(spec.factors[j] for j in mine), tuple(spec.steps[j] for j in mine),
                            spec.sizes[0])
    g = _Grid(spec)
    lo, _ = g.boxes(g.ix)
    keys = np.concatenate([g.ix[:, [j for j, p in enumerate(parent) if p]], lo], axis=1)
    return len(_distinct_rows(keys)) if keys.shape[1] else min(1, len(keys))
