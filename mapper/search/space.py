"""The mapspace of one layer on one architecture, as named subspaces, and its pruning.

Subspaces: the factorization of every dimension over the slots that may hold it (each
storage level's temporal loops, each fan-out's X and Y axes, restricted by the arch's
constraints); the loop order of each storage level; and keep/bypass where the arch allows.

Pruning that never removes an optimum:
* factorizations whose factor on a fan-out axis exceeds that axis, or whose own tile
  already overflows a buffer that must keep the tensor, are dropped per dimension; joint
  capacity is checked exactly (integers) before a candidate is evaluated;
* loop orders: only loops with factor > 1 have an order, and only the relative order of
  loops relevant and irrelevant to each tensor matters. The loops irrelevant to a tensor
  are {N, P, Q} for Weights, {M} for Inputs and {C, R, S} for Outputs; G indexes all three,
  so it goes outermost. An order's reuse is fixed by its tail: the trailing loops
  irrelevant to one tensor and, for Inputs, which loop slides. Any order is matched or
  beaten by one that keeps each of the three groups contiguous, so a level needs at most
  36 canonical orders (the 6 arrangements of the groups, times the internal orders of the
  group whose last loop matters), deduplicated for the level's allowed dimensions. The
  unchanged-tile rule (model._Nest.unchanged) breaks that argument for Inputs: a step of
  R outside P (or P outside R, S/Q, Q/S) with nothing else iterating inside can bring
  back the held tile, which no group-contiguous order may offer. Orders ending in such a
  pair (M before, between or after it) are added, at most 48 orders in all. That these
  suffice is checked, not proven: on random factorizations of small layers no order of a
  level's loops beats the best kept one (tests/test_search.py, kept_orders).

Factorizations come in two spaces (`FACTORIZATIONS`). `perfect`: every dimension's factors
multiply to its size. `imperfect`: remainder nests too (mapper.mapping: a factor is a
number of steps over nominal tiles clipped at the layer's end). Built from the innermost
slot out: with n tiles of the inner nominal extent still to cover, a slot's factor f leaves
ceil(n / f) tiles for the slots outside it, and the outermost slot with a factor > 1 takes
exactly what is left (the validity rule of mapping.problems_of, so every valid remainder
nest arises once). Pruning keeps, for every number of outer tiles q = ceil(n / f), only the
smallest factor that gives it, f = ceil(n / q) (the balanced split: n = 55 gives 1, 2, 3,
4, 5, 6, 7, 8, 10, 11, 14, 19, 28, 55). Why: every loop outside runs the same number of
steps, so compute cycles (the valid temporal tuples) are equal; the nominal tile at and
above the slot is the smallest, so every buffer holds no more (any candidate that fits
with a larger f fits with the balanced one); the tiles differ only in where the partial one
falls. That the energy is never lower with the larger factor is checked, not proven
(exhaustive search over the unpruned and the pruned imperfect spaces of small layers,
tests/test_search_imperfect.py). Divisors are balanced (ceil(n / (n / f)) = f), so the
perfect space is a subset of the imperfect one, whose rows it marks (`Space.perfect`).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from ..arch import Arch, Fanout, Storage
from ..batch import Encoding, capacity_ok
from ..model import Sparse
from ..problem import DIMS, OUTPUT_DIMS, RELEVANT, SLIDING_DIMS, SLIDING_PAIRS, TENSORS, Layer, tensor_axes
from ..spec import MAX_DIM, MapperError

GROUPS = {"A": ("N", "P", "Q"), "B": ("M",), "C": ("C", "R", "S")}


MAX_FACTORIZATIONS = 2_000_000     # rows per dimension: at most 2e6 x slots x 8 bytes in memory
#: The factorization spaces `Space.build` offers (see the module docstring).
FACTORIZATIONS = ("perfect", "imperfect")


def prime_factors(n: int) -> list[tuple[int, int]]:
    """(prime, exponent) pairs of n by trial division: n is a loop bound, at most MAX_DIM
    (2^24), so this takes at most 4096 steps."""
    if not 1 <= n <= MAX_DIM:
        raise MapperError(f"cannot factorize {n}: loop bounds must be in 1..{MAX_DIM:,}")
    out, p = [], 2
    while p * p <= n:
        if n % p == 0:
            e = 0
            while n % p == 0:
                n //= p
                e += 1
            out.append((p, e))
        p += 1
    if n > 1:
        out.append((n, 1))
    return out


def count_factorizations(n: int, k: int) -> int:
    """How many ordered k-tuples of positive ints multiply to n, counted without listing them:
    each prime's exponent e is spread over k slots in C(e + k - 1, k - 1) ways."""
    if k == 0:
        return 1 if n == 1 else 0
    return math.prod(math.comb(e + k - 1, k - 1) for _, e in prime_factors(n))


@lru_cache(maxsize=4096)
def ordered_factorizations(n: int, limits: tuple[int | None, ...]) -> np.ndarray:
    """Every tuple (f_1..f_k) of positive ints with product n and f_i <= limits[i] (None = any)."""
    k = len(limits)
    if k == 0:     # no slot may hold this dimension: only size 1 fits
        return np.ones((1 if n == 1 else 0, 0), dtype=np.int64)
    total = count_factorizations(n, k)
    if total > MAX_FACTORIZATIONS:
        raise MapperError(f"a loop bound of {n:,} has {total:.3g} ordered factorizations over {k} slots "
                          f"(limit {MAX_FACTORIZATIONS:.0e}): too large a mapspace to search")
    rows = [np.ones(k, dtype=np.int64)]
    lim = np.array([l if l is not None else np.iinfo(np.int64).max for l in limits])
    for p, e in prime_factors(n):
        # all ways to distribute e copies of p over k slots
        powers = np.array([[p ** x for x in c] for c in _compositions(e, k)], dtype=np.int64)
        cur = np.array(rows)
        rows = (cur[:, None, :] * powers[None, :, :]).reshape(-1, k)
        rows = rows[(rows <= lim).all(axis=1)]
    return np.array(rows, dtype=np.int64).reshape(-1, k)


def _compositions(e: int, k: int):
    if k == 1:
        yield (e,)
        return
    for first in range(e + 1):
        for rest in _compositions(e - first, k - 1):
            yield (first,) + rest


def balanced_factors(n: int) -> tuple[int, ...]:
    """The factors worth trying when n tiles remain to cover: for each number of outer tiles
    q, the smallest factor f with ceil(n / f) = q, i.e. ceil(n / q) (O(sqrt n) values)."""
    return tuple(sorted({-(-n // q) for q in _quotients(n)}))


def _quotient_ranges(n: int, top: int):
    """(q, how many f) for each value q of ceil(n / f) over f = 1..top, in O(sqrt n) steps:
    the f with the same q form one range, ending at (n - 1) // (q - 1) (q > 1)."""
    f = 1
    while f <= top:
        q = -(-n // f)
        last = min(top, (n - 1) // (q - 1)) if q > 1 else top
        yield q, last - f + 1
        f = last + 1


def _quotients(n: int) -> set[int]:
    """Every value of ceil(n / f) for f = 1..n (at most 2 sqrt(n) values)."""
    return {q for q, _ in _quotient_ranges(n, n)}


def _slot_options(n: int, limit: int | None, pruned: bool) -> tuple[int, ...]:
    top = n if limit is None else min(n, limit)
    if pruned:
        return tuple(f for f in balanced_factors(n) if f <= top)
    return tuple(range(1, top + 1))


def _slot_quotients(n: int, limit: int | None, pruned: bool):
    """(tiles left outside, how many of the slot's factors leave that many) over the slot's
    factors (_slot_options), in O(sqrt n) steps whatever the slot's limit."""
    if pruned:
        return [(-(-n // f), 1) for f in _slot_options(n, limit, True)]
    return _quotient_ranges(n, n if limit is None else min(n, limit))


@lru_cache(maxsize=65536)
def count_remainder_factorizations(n: int, limits: tuple[int | None, ...], pruned: bool = True) -> int:
    """How many remainder nests cover n tiles over slots with these limits (outermost first),
    counted without listing them (see remainder_factorizations)."""
    if not limits:
        return 1 if n == 1 else 0
    *outer, limit = limits
    if not outer:
        return 1 if n <= (n if limit is None else limit) else 0   # the outermost slot takes all
    return sum(k * count_remainder_factorizations(q, tuple(outer), pruned)
               for q, k in _slot_quotients(n, limit, pruned))


@lru_cache(maxsize=4096)
def remainder_factorizations(n: int, limits: tuple[int | None, ...], pruned: bool = True) -> np.ndarray:
    """Every remainder nest (f_1..f_k, outermost first) of a dimension of size n over slots
    with these limits: each slot's factor leaves ceil(tiles / f) tiles to the slots outside
    it, and the outermost ones must leave 1 (see the module docstring); `pruned` keeps only
    balanced factors. Perfect factorizations are among them."""
    k = len(limits)
    total = count_remainder_factorizations(n, limits, pruned)
    if total > MAX_FACTORIZATIONS:
        raise MapperError(f"a loop bound of {n:,} has {total:.3g} remainder factorizations over {k} slots "
                          f"(limit {MAX_FACTORIZATIONS:.0e}): too large a mapspace to search")
    rows = _remainder_rows(n, limits, pruned)
    return np.array(rows, dtype=np.int64).reshape(-1, k)


@lru_cache(maxsize=65536)
def _remainder_rows(n: int, limits: tuple[int | None, ...], pruned: bool) -> tuple[tuple[int, ...], ...]:
    if not limits:
        return ((),) if n == 1 else ()
    *outer, limit = limits
    out: list[tuple[int, ...]] = []
    for f in _slot_options(n, limit, pruned):
        out += [r + (f,) for r in _remainder_rows(-(-n // f), tuple(outer), pruned)]
    return tuple(out)


def canonical_orders(allowed: tuple[str, ...], below: frozenset[str] = frozenset(TENSORS)) -> np.ndarray:
    """Canonical loop orders (outermost first, as dim indices over all 8 dims) for a level
    whose temporal loops may use `allowed` dims, with tensors `below` kept by inner levels
    (only their reuse depends on this order); see the module docstring. Orders that give
    every tensor below the same reuse for every set of loops with factor > 1 are merged."""
    allowed_set = set(allowed)
    seen, out = set(), []
    for arrangement in itertools.permutations("ABC"):
        decisive = arrangement[-1] if arrangement[-1] != "B" else arrangement[-2]
        for inner in itertools.permutations(GROUPS[decisive]):
            seq = ["G"]
            for g in arrangement:
                seq += list(inner) if g == decisive else list(GROUPS[g])
            seq = [d for d in seq if d in allowed_set]
            key = _reuse_key(seq, below)
            if key in seen:
                continue
            seen.add(key)
            full = seq + [d for d in DIMS if d not in seq]
            out.append([DIMS.index(d) for d in full])
    # A step of the outer of two loops over one input axis (R then P, or S then Q, ...) can
    # bring back the held input tile when nothing else iterates inside it (model._Nest.
    # unchanged), which the group-contiguous orders above cannot express: add orders that
    # end in such a pair, with M before, between or after it.
    # Only the subsets of loops with factor > 1 that contain the pair need them (for the
    # others the orders above already suffice), so they are deduplicated on those alone.
    bases = [[DIMS[i] for i in o if DIMS[i] in allowed_set] for o in out]
    for x, y in [xy for a, b in SLIDING_PAIRS for xy in ((b, a), (a, b))]:
        if not {x, y} <= allowed_set:
            continue
        pair = frozenset((x, y))
        seen_pair = {_reuse_key([DIMS[i] for i in o if DIMS[i] in allowed_set], below, pair) for o in out}
        for base in bases:
            rest = [d for d in base if d not in (x, y)]
            bare = [d for d in rest if d != "M"]
            tails = [rest + [x, y]] + ([bare + [x, "M", y], bare + [x, y, "M"]] if "M" in rest else [])
            for seq in tails:
                key = _reuse_key(seq, below, pair)
                if key in seen_pair:
                    continue
                seen_pair.add(key)
                full = seq + [d for d in DIMS if d not in seq]
                out.append([DIMS.index(d) for d in full])
    return np.array(out, dtype=np.int64)


def _reuse_key(seq: list[str], below: frozenset[str], must: frozenset[str] = frozenset()) -> tuple:
    """What an order means for reuse, for every subset of its loops having factor > 1 (that
    contains `must`): per tensor below, the trailing loops irrelevant to it and (Inputs)
    the sliding loop and the pair of loops over one axis before it (see canonical_orders)."""
    key = []
    dims = sorted(seq, key=DIMS.index)          # subsets by dimension, not by position
    for mask in range(1 << len(dims)):
        chosen = {d for i, d in enumerate(dims) if mask >> i & 1}
        if not must <= chosen:
            continue
        present = [d for d in seq if d in chosen]
        entry = []
        for t in TENSORS:
            if t not in below:
                continue
            rel = RELEVANT[t]
            tail = []
            for d in reversed(present):
                if d in rel:
                    break
                tail.append(d)
            last_rel = next((d for d in reversed(present) if d in rel), None)
            slide = last_rel if (t == "Inputs" and last_rel in SLIDING_DIMS) else None
            # Inputs: the loop before the sliding one, if it is the other loop over the same
            # axis, and what lies inside it (its step may bring back the held tile)
            pair = None
            rels = [i for i, d in enumerate(present) if d in rel]
            if slide and len(rels) > 1 and {present[rels[-2]], slide} in [set(p) for p in SLIDING_PAIRS]:
                pair = (present[rels[-2]], frozenset(present[rels[-2] + 1:]))
            entry.append((frozenset(tail), slide, pair))
        key.append(tuple(entry))
    return tuple(key)


@dataclass
class Space:
    """The pruned mapspace of one layer on one arch."""

    layer: Layer
    arch: Arch
    enc: Encoding
    dim_slots: list[tuple[int, ...]]            # per dim: slots it may use
    factorizations: list[np.ndarray]            # per dim: [k_d, len(dim_slots[d])]
    orders: list[np.ndarray]                    # per storage level: [m, 8]
    keeps: np.ndarray                           # [j, storages, 3]
    unpruned: dict = field(default_factory=dict)
    factorization: str = "perfect"              # one of FACTORIZATIONS
    perfect: list[np.ndarray] = field(default_factory=list)   # per dim: which rows are perfect

    @classmethod
    def build(cls, layer: Layer, arch: Arch, factorization: str = "perfect", prune: bool = True) -> "Space":
        """The space of `factorization` (perfect | imperfect); `prune=False` keeps every
        remainder nest (for checking the pruning rule on small layers)."""
        if factorization not in FACTORIZATIONS:
            raise MapperError(f"--factorization: unknown factorization '{factorization}'; choose one of "
                              f"{', '.join(FACTORIZATIONS)}")
        enc = Encoding.of(layer, arch)
        dims = layer.dims
        dim_slots, facts, perfect = [], [], []
        unpruned = {"factorizations_unconstrained": 1, "factorizations_arch": 1}
        for d in DIMS:
            slots, limits = [], []
            for s, (li, kind) in enumerate(enc.slots):
                level = arch.levels[li]
                if kind == "T" and d in level.temporal_dims:
                    slots.append(s)
                    limits.append(None)
                elif kind == "X" and d in level.x_dims and (level.reduces("X") or d in OUTPUT_DIMS):
                    slots.append(s)
                    limits.append(level.X)
                elif kind == "Y" and d in level.y_dims and (level.reduces("Y") or d in OUTPUT_DIMS):
                    slots.append(s)
                    limits.append(level.Y)
            if factorization == "perfect":
                unpruned["factorizations_unconstrained"] *= count_factorizations(dims[d], enc.n_slots)
                unpruned["factorizations_arch"] *= count_factorizations(dims[d], len(slots))
                f = ordered_factorizations(dims[d], tuple(limits))
            else:
                # the searched (limited) nests first: a dimension with too many fails before
                # the slower counts of the unpruned ones (O(n^3/4) steps for a prime n)
                f = remainder_factorizations(dims[d], tuple(limits), prune)
                unpruned["factorizations_unconstrained"] *= count_remainder_factorizations(
                    dims[d], (None,) * enc.n_slots, False)
                unpruned["factorizations_arch"] *= count_remainder_factorizations(dims[d], tuple(limits), False)
            f = f[_fits_alone(layer, arch, enc, DIMS.index(d), slots, f)]
            dim_slots.append(tuple(slots))
            facts.append(f)
            perfect.append(np.prod(f, axis=1) == dims[d])
        orders = []
        for si, li in enumerate(enc.storage_levels):
            below = frozenset(t for lj in enc.storage_levels[si + 1:] for t in arch.levels[lj].keeps)
            # only dimensions that can have a factor > 1 here have an order
            slot = enc.storage_slot[si]
            movable = tuple(d for i, d in enumerate(DIMS) if slot in dim_slots[i] and
                            (facts[i][:, dim_slots[i].index(slot)] > 1).any())
            orders.append(canonical_orders(movable, below))
        choice = []
        for li in enc.storage_levels:
            s: Storage = arch.levels[li]
            opts = []
            for bypass in itertools.chain.from_iterable(
                    itertools.combinations(s.may_bypass, k) for k in range(len(s.may_bypass) + 1)):
                opts.append([t in s.keeps and t not in bypass for t in TENSORS])
            choice.append(opts)
        keeps = np.array([list(c) for c in itertools.product(*choice)], dtype=bool)
        unpruned["orders"] = [math.factorial(len(arch.levels[li].temporal_dims)) for li in enc.storage_levels]
        return cls(layer, arch, enc, dim_slots, facts, orders, keeps, unpruned, factorization, perfect)

    def factor_neighbours(self, factors: np.ndarray) -> np.ndarray:
        """[m, slots, 8]: the candidates whose factorization of one dimension is another row
        of this space differing from the current one in at most two slots (local search's
        factor moves in a remainder space, where moving a prime factor between slots would
        break the coverage rule)."""
        out = []
        for d, slots in enumerate(self.dim_slots):
            if not slots:
                continue
            rows = self.factorizations[d]
            here = factors[list(slots), d]
            differ = (rows != here[None, :]).sum(axis=1)
            for r in rows[(differ >= 1) & (differ <= 2)]:
                new = factors.copy()
                new[list(slots), d] = r
                out.append(new)
        return np.stack(out) if out else np.zeros((0,) + factors.shape, dtype=np.int64)

    def perfect_subspace(self) -> "Space":
        """The perfect factorizations of this space (itself when it is perfect): what CP-SAT
        models (its per-option constants are those of perfect nests)."""
        if self.factorization == "perfect":
            return self
        return space_of(self.layer, self.arch, "perfect")

    # -- sizes --------------------------------------------------------------------------
    @property
    def n_factorizations(self) -> int:
        return math.prod(len(f) for f in self.factorizations)

    @property
    def n_orders(self) -> int:
        return math.prod(len(o) for o in self.orders)

    @property
    def size(self) -> int:
        return self.n_factorizations * self.n_orders * len(self.keeps)

    # -- assembling candidates ----------------------------------------------------------
    def assemble(self, fact_idx: np.ndarray, order_idx: np.ndarray, keep_idx: np.ndarray):
        """Arrays (factors, orders, keep) for candidates given by index rows:
        fact_idx [n, 8] (one factorization per dim), order_idx [n, storages], keep_idx [n]."""
        n = fact_idx.shape[0]
        factors = np.ones((n, self.enc.n_slots, len(DIMS)), dtype=np.int64)
        for d in range(len(DIMS)):
            if self.dim_slots[d]:
                factors[:, list(self.dim_slots[d]), d] = self.factorizations[d][fact_idx[:, d]]
        orders = np.stack([self.orders[si][order_idx[:, si]] for si in range(len(self.orders))], axis=1)
        return factors, orders, self.keeps[keep_idx]

    def valid(self, factors: np.ndarray, keep: np.ndarray) -> np.ndarray:
        """Exact joint checks: capacity partitions and fan-out axis products."""
        ok = capacity_ok(self.enc, factors, keep)
        for s, (li, kind) in enumerate(self.enc.slots):
            if kind != "T":
                fan: Fanout = self.arch.levels[li]
                ok &= np.prod(factors[:, s, :], axis=1) <= (fan.X if kind == "X" else fan.Y)
        return ok

    def report(self) -> list[tuple[str, str, str]]:
        """(subspace, before pruning, after pruning) rows for `mapper space`."""
        rows = []
        rows.append((f"factorization ({self.factorization}; all dims x all slots)", f"{self.unpruned['factorizations_unconstrained']:.3g}",
                     f"{self.n_factorizations:.3g}"))
        for i, (d, f) in enumerate(zip(DIMS, self.factorizations)):
            if self.factorization == "perfect":
                full = count_factorizations(self.layer.dims[d], len(self.dim_slots[i]))
                rows.append((f"  {d} = {self.layer.dims[d]} over {len(self.dim_slots[i])} slots", f"{full:,}",
                             f"{len(f):,}"))
            else:
                full = count_remainder_factorizations(self.layer.dims[d], (None,) * len(self.dim_slots[i]), False)
                rows.append((f"  {d} = {self.layer.dims[d]} over {len(self.dim_slots[i])} slots (with remainders)",
                             f"{full:,}", f"{len(f):,} ({int(self.perfect[i].sum()):,} perfect)"))
        for si, li in enumerate(self.enc.storage_levels):
            rows.append((f"loop order at {self.arch.levels[li].name}", f"{self.unpruned['orders'][si]:,}",
                         f"{len(self.orders[si]):,}"))
        rows.append(("keep/bypass", f"{len(self.keeps):,}", f"{len(self.keeps):,}"))
        before = self.unpruned["factorizations_arch"] * math.prod(self.unpruned["orders"]) * len(self.keeps)
        rows.append(("total (arch constraints applied)", f"{before:.3g}", f"{self.size:.3g}"))
        return rows


def _fits_alone(layer: Layer, arch: Arch, enc: Encoding, d: int, slots: tuple[int, ...] | list[int],
                facts: np.ndarray) -> np.ndarray:
    """Mask of factorizations of dim d whose tile, with every other dim at 1, fits every
    capacity partition (its stored size: compressed where the arch compresses) and column
    limit of a level that must keep the tensor (a necessary condition)."""
    ok = np.ones(len(facts), dtype=bool)
    dim = DIMS[d]
    sparse = Sparse.of(layer, arch)

    def alone(t, ext):
        tile = np.ones(len(facts), dtype=np.int64)
        for axis in tensor_axes(layer, t):
            coef = dict(axis)
            if dim in coef:
                tile = tile * (coef[dim] * (ext - 1) + 1)
        return tile

    for si, li in enumerate(enc.storage_levels):
        level: Storage = arch.levels[li]
        slot = enc.storage_slot[si]
        inside = [j for j, s in enumerate(slots) if s >= slot]
        ext = np.prod(facts[:, inside], axis=1) if inside else np.ones(len(facts), dtype=np.int64)
        ext = np.minimum(ext, layer.dims[dim])      # the largest tile of a remainder nest is clipped
        for tensors, capacity in level.partitions:
            words = np.zeros(len(facts), dtype=np.int64)
            for t in tensors:
                if t in level.may_bypass:
                    continue
                factor = sparse.capacity(level.name, t)
                tile = alone(t, ext)
                words = words + (tile if factor == 1.0 else np.ceil(tile * factor - 1e-9).astype(np.int64))
            ok &= words <= capacity
        for t, most, along in level.columns:
            if t not in level.may_bypass:
                ok &= alone(t, ext) // (ext if along == dim else 1) <= most
    return ok


@lru_cache(maxsize=16)
def space_of(layer: Layer, arch: Arch, factorization: str = "perfect") -> Space:
    """The Space of a (layer, arch) pair, built once per process (workers reuse it)."""
    return Space.build(layer, arch, factorization)
