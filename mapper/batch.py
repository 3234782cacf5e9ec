"""The cost model for many candidate mappings at once (numpy).

Search evaluates millions of candidates, so the hot path works on arrays instead of
`Mapping` objects. A candidate is encoded per *slot*: each storage level has one temporal
slot, each fan-out an X and a Y slot (in arch order, outermost first). For n candidates:

    factors: int64 [n, slots, 8]     the factor of each dimension (order of DIMS) in each slot
    orders:  int64 [n, storages, 8]  each storage level's loop order, outermost first (dim indices)
    keep:    bool  [n, storages, 3]  which tensors (order of TENSORS) each storage level keeps

`evaluate_batch` returns the same numbers as `mapper.model.evaluate` (tested); the formulas
are the ones documented there, written with arrays, and which access terms a keep pattern
charges comes from `mapper.access` (shared with the CP-SAT formulation). Within a slot each dimension has one
loop, which is what makes the "innermost relevant loop" a small array computation.

What depends only on the layer, the arch and the keep patterns (the links and their terms,
tensor axes, bit masks) is built once per Encoding (`Encoding.plans`); a batch of mixed keep
patterns is evaluated in one pass over the union of their links. Products of factors are
integers below 2**53, so they are exact in any order; sums involving fractional
coefficients (sparsity, energies) keep the scalar model's order, so results do not depend on
the batch they are evaluated in.
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .access import CHILD, DISTINCT, FETCHED, FILLS, MACS, OPS, PARENT, READS, TOUCHED, UPDATES, links
from .arch import Arch, Fanout, Storage
from .mapping import Loop, Mapping, normalize
from .model import Sparse, distinct_offsets
from .problem import DIMS, RELEVANT, TENSORS, Layer, tensor_axes

D = {d: i for i, d in enumerate(DIMS)}
CHUNK = 4096
T_INDEX = {t: i for i, t in enumerate(TENSORS)}
# Bit tricks of the hot path (DIMS has 8 dimensions: one byte holds one flag per loop position).
assert len(DIMS) == 8
_POSITION_BITS = (1 << np.arange(8)).astype(np.uint8)
_LOWEST_BIT = np.array([(v & -v).bit_length() - 1 if v else 0 for v in range(256)], dtype=np.int64)
# Per dimension, one bit per tensor that depends on it, in byte ti of a word (so one sum
# over loop positions packs every tensor's relevant positions into its own byte).
_RELEVANT_BYTES = np.array([sum(1 << (8 * ti) for ti, t in enumerate(TENSORS) if d in RELEVANT[t]) for d in DIMS],
                           dtype=np.uint32)
_POSITION_WEIGHTS = (1 << np.arange(8)).astype(np.uint32)


@dataclass(frozen=True)
class Encoding:
    """How mappings of one layer on one architecture become arrays."""

    layer: Layer
    arch: Arch
    slots: tuple[tuple[int, str], ...]        # (arch level index, "T" | "X" | "Y")
    storage_levels: tuple[int, ...]           # arch level index of each storage level
    storage_slot: tuple[int, ...]             # slot of each storage level
    mode_fans: tuple[int, ...] = ()           # arch level index of each fan-out with network modes
    # What evaluate_batch derives from the layer and arch alone (per keep pattern: the links,
    # their terms, axes and constants), built on first use instead of once per batch.
    plans: dict = field(default_factory=dict, init=False, compare=False, hash=False, repr=False)

    @classmethod
    def of(cls, layer: Layer, arch: Arch) -> "Encoding":
        slots, storage_levels, storage_slot = [], [], []
        for i, level in enumerate(arch.levels):
            if isinstance(level, Storage):
                storage_levels.append(i)
                storage_slot.append(len(slots))
                slots.append((i, "T"))
            else:
                slots.append((i, "X"))
                slots.append((i, "Y"))
        mode_fans = tuple(i for i, l in enumerate(arch.levels) if isinstance(l, Fanout) and l.modes)
        return cls(layer, arch, tuple(slots), tuple(storage_levels), tuple(storage_slot), mode_fans)

    def assignments(self) -> np.ndarray:
        """Every choice of network modes: [A, mode fan-outs, 3] indices into each fan-out's
        modes for each tensor (A = 1 with an empty middle axis when there are none)."""
        choices = [range(len(self.arch.levels[i].modes_of(t))) for i in self.mode_fans for t in TENSORS]
        combos = np.array(list(itertools.product(*choices)), dtype=np.int64)
        return combos.reshape(len(combos), len(self.mode_fans), len(TENSORS))

    def encode_modes(self, mapping: Mapping) -> np.ndarray:
        out = np.zeros((len(self.mode_fans), len(TENSORS)), dtype=np.int64)
        for j, i in enumerate(self.mode_fans):
            fan = self.arch.levels[i]
            for ti, t in enumerate(TENSORS):
                out[j, ti] = fan.modes_of(t).index(mapping.mode(fan.name, t))
        return out

    def decode_modes(self, modes: np.ndarray | None) -> dict[str, dict[str, str]]:
        if modes is None:
            return {}
        return {self.arch.levels[i].name: {t: self.arch.levels[i].modes_of(t)[int(modes[j, ti])]
                                           for ti, t in enumerate(TENSORS)}
                for j, i in enumerate(self.mode_fans)}

    @property
    def n_slots(self) -> int:
        return len(self.slots)

    def encode(self, mapping: Mapping) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One mapping as (factors [slots, 8], orders [storages, 8], keep [storages, 3])."""
        index = {l.name: i for i, l in enumerate(self.arch.levels)}
        slot_of = {(lv, kind): s for s, (lv, kind) in enumerate(self.slots)}
        factors = np.ones((self.n_slots, len(DIMS)), dtype=np.int64)
        orders = np.zeros((len(self.storage_levels), len(DIMS)), dtype=np.int64)
        keep = np.zeros((len(self.storage_levels), len(TENSORS)), dtype=bool)
        for si, li in enumerate(self.storage_levels):
            name = self.arch.levels[li].name
            mine = [D[l.dim] for l in mapping.loops if l.level == name]
            orders[si] = mine + [d for d in range(len(DIMS)) if d not in mine]
            for t in mapping.kept(name):
                keep[si, T_INDEX[t]] = True
        for l in mapping.loops:
            factors[slot_of[(index[l.level], l.spatial or "T")], D[l.dim]] *= l.factor
        return factors, orders, keep

    def decode(self, factors: np.ndarray, orders: np.ndarray, keep: np.ndarray,
               modes: np.ndarray | None = None) -> Mapping:
        """The Mapping of one encoded candidate (with its network modes, if any)."""
        loops: list[Loop] = []
        keep_map = {}
        for s, (li, kind) in enumerate(self.slots):
            name = self.arch.levels[li].name
            if kind == "T":
                si = self.storage_slot.index(s)
                dims = [int(d) for d in orders[si]]
                keep_map[name] = [t for t, k in zip(TENSORS, keep[si]) if k]
            else:
                dims = range(len(DIMS))
            for d in dims:
                if factors[s, d] > 1:
                    loops.append(Loop(name, DIMS[d], int(factors[s, d]), None if kind == "T" else kind))
        return normalize(loops, self.arch, keep_map, self.decode_modes(modes))


@dataclass
class BatchCost:
    energy_pj: np.ndarray          # [n]
    cycles: np.ndarray             # [n] (float, already rounded up)
    compute_cycles: np.ndarray     # [n]
    counts: np.ndarray | None      # [n, storages, 3 tensors, 3 (reads, fills, updates)] when asked
    modes: np.ndarray | None = None  # [n, mode fan-outs, 3]: the network modes used (0 fan-outs: none)

    def objective(self, name: str) -> np.ndarray:
        return objective_of(name, self.energy_pj, self.cycles, self.compute_cycles)


def objective_of(name: str, energy, cycles, compute):
    if name == "energy":
        return energy
    if name == "delay":
        return cycles
    if name == "compute":
        return compute
    return energy * cycles


def _axes_index(layer: Layer, tensor: str):
    return [tuple((D[d], c) for d, c in axis) for axis in tensor_axes(layer, tensor)]


def _tile_extents(layer: Layer, tensor: str, ext: np.ndarray, one: np.ndarray):
    """(words, per-axis extents) of the tile of `tensor` spanning per-dimension extents
    ext [8, n] (mapping.footprint on arrays); `one` is ones of the wanted dtype."""
    tile, extents = one, []
    for axis in _axes_index(layer, tensor):
        e = one
        for d, c in axis:
            e = e + c * (ext[d] - 1)
        extents.append(e)
        tile = tile * e
    return tile, extents


def evaluate_batch(enc: Encoding, factors: np.ndarray, orders: np.ndarray, keep: np.ndarray,
                   modes: np.ndarray | None = None, objective: str = "edp",
                   with_counts: bool = False) -> BatchCost:
    """Energy and cycles of n encoded candidates (assumed valid).

    With network modes in the arch, `modes` [n, mode fan-outs, 3] fixes them; None picks,
    for every candidate, the modes that minimise `objective` (exactly: all choices are
    evaluated) and returns them in BatchCost.modes.
    """
    n = factors.shape[0]
    if n > 2 * CHUNK:
        # Blocks of a few thousand candidates keep the working arrays in cache (about 2x faster).
        parts = [evaluate_batch(enc, factors[i:i + CHUNK], orders[i:i + CHUNK], keep[i:i + CHUNK],
                                None if modes is None else modes[i:i + CHUNK], objective, with_counts)
                 for i in range(0, n, CHUNK)]
        cat = lambda xs: None if xs[0] is None else np.concatenate(xs)   # noqa: E731
        return BatchCost(*(cat([getattr(p, f) for p in parts])
                           for f in ("energy_pj", "cycles", "compute_cycles", "counts", "modes")))
    groups = _pattern_groups(enc, factors, orders, keep, modes)
    if groups is None:
        return _with_remainders(enc, factors, orders, keep, modes, objective, with_counts)
    return _evaluate_groups(enc, n, groups, objective, with_counts)


def _with_remainders(enc: Encoding, factors, orders, keep, modes, objective: str, with_counts: bool) -> BatchCost:
    """evaluate_batch of a batch with remainder nests: those are counted exactly by the
    scalar model, one at a time; the perfect ones stay vectorized."""
    from .remainder_batch import evaluate_remainders, remainder_rows
    n = factors.shape[0]
    odd = remainder_rows(enc, factors)
    out = BatchCost(np.zeros(n), np.zeros(n), np.zeros(n), np.zeros((n, len(enc.storage_levels), 3, 3))
                    if with_counts else None, np.zeros((n, len(enc.mode_fans), len(TENSORS)), dtype=np.int64))
    rest = np.nonzero(~odd)[0]
    if len(rest):
        groups = _pattern_groups(enc, factors[rest], orders[rest], keep[rest], None if modes is None else modes[rest],
                                 check=False)
        part = _evaluate_groups(enc, len(rest), groups, objective, with_counts)
        for f in ("energy_pj", "cycles", "compute_cycles", "counts", "modes"):
            if getattr(out, f) is not None:
                getattr(out, f)[rest] = getattr(part, f)
    idx = np.nonzero(odd)[0]
    if len(idx):
        e, cyc, comp, cnt, md = evaluate_remainders(enc, factors[idx], orders[idx], keep[idx],
                                                    None if modes is None else modes[idx], objective, with_counts)
        out.energy_pj[idx], out.cycles[idx], out.compute_cycles[idx], out.modes[idx] = e, cyc, comp, md
        if with_counts:
            out.counts[idx] = cnt
    return out


def _pattern_groups(enc: Encoding, factors, orders, keep, modes, check: bool = True):
    """The candidates grouped by fixed network modes (one group without them): per group
    (rows or None for all, plan of its keep patterns, each row's pattern (None: one), assign,
    factors as float [slots, 8, rows], inner products [slots + 1, 8, rows], orders
    [rows, storages, 8]). None if `check` and some candidate has remainders.

    Every perfect nest's factors of a dimension multiply to its size, so the product over
    all slots (inner[0], needed anyway) is an exact test: the factors are positive integers
    and a float product is exact below 2**53, and at or above it cannot equal a size."""
    n = factors.shape[0]
    layout = _layout(enc)
    all_assignments = layout.assignments
    flat = keep.reshape(n, keep.shape[1] * keep.shape[2])
    fixed = modes is not None and bool(enc.mode_fans)
    if not n:
        found = []
    elif not fixed or (modes == modes[0]).all():
        found = [None]          # one group: no gathers
    else:
        # the row of each candidate's modes in all_assignments (itertools.product order:
        # mixed radix, the last fan-out's last tensor varying fastest)
        found = _same_code(modes.reshape(n, -1) @ layout.mode_weight)[1]
    groups = []
    for rows in found:
        first = 0 if rows is None else rows[0]
        assign = all_assignments if not fixed else modes[first:first + 1]
        pattern = flat if rows is None else flat[rows]
        if (pattern == pattern[0]).all():
            patterns, pattern_id = [pattern[0]], None
        else:
            # Candidates with other keep patterns differ in some tensors' level chains only:
            # one pass evaluates the union of their links, each on the rows that have it.
            pattern_id, members = _same_code(pattern @ layout.keep_weight)
            patterns = [pattern[m[0]] for m in members]
        plan = _plan(enc, [p.reshape(keep.shape[1:]) for p in patterns])
        F = factors if rows is None else np.take(factors, rows, axis=0)
        Ff = _transposed(F)                                                   # [S, 8, rows]
        # inner[s, d]: product of dimension d's factors in slots s.. (inside and at slot s).
        inner = np.empty((Ff.shape[0] + 1,) + Ff.shape[1:])
        inner[-1] = 1.0
        for s in range(Ff.shape[0] - 1, -1, -1):
            np.multiply(inner[s + 1], Ff[s], out=inner[s])
        if check and (inner[0] != layout.sizes).any():
            return None
        groups.append((rows, plan, pattern_id, assign, Ff, inner,
                       orders if rows is None else np.take(orders, rows, axis=0)))
    return groups


def _transposed(F: np.ndarray) -> np.ndarray:
    """F [n, S, 8] as float [S, 8, n], copied in blocks of candidates (a whole large batch
    at once is about 1.5x slower: the strided reads leave the cache)."""
    out = np.empty(F.shape[1:] + F.shape[:1])
    for a in range(0, len(F), 512):
        out[..., a:a + 512] = F[a:a + 512].transpose(1, 2, 0)
    return out


def _same_code(code: np.ndarray):
    """(index of each row's code among the distinct codes, the rows of each distinct code),
    codes in increasing order."""
    ordered = np.sort(code)       # (np.unique hashes, several times slower here)
    distinct = ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]
    index = np.searchsorted(distinct, code)
    return index, [np.nonzero(index == i)[0] for i in range(len(distinct))]


def _evaluate_groups(enc: Encoding, n: int, groups, objective: str, with_counts: bool) -> BatchCost:
    if len(groups) == 1 and groups[0][0] is None:
        _, plan, pattern_id, assign, Ff, inner, orders = groups[0]
        e, cyc, o, cnt, pick = _evaluate_pattern(enc, plan, pattern_id, Ff, inner, orders, assign, objective,
                                                 with_counts)
        return BatchCost(e, cyc, o, cnt, assign[pick].astype(np.int64, copy=False))
    energy, cycles, ops = np.zeros(n), np.zeros(n), np.ones(n)
    counts = np.zeros((n, len(enc.storage_levels), 3, 3)) if with_counts else None
    chosen = np.zeros((n, len(enc.mode_fans), len(TENSORS)), dtype=np.int64)
    for rows, plan, pattern_id, assign, Ff, inner, orders in groups:
        e, cyc, o, cnt, pick = _evaluate_pattern(enc, plan, pattern_id, Ff, inner, orders, assign, objective,
                                                 with_counts)
        energy[rows], cycles[rows], ops[rows] = e, cyc, o
        if with_counts:
            counts[rows] = cnt
        chosen[rows] = assign[pick]
    return BatchCost(energy, cycles, ops, counts, chosen)


class _Layout:
    """What evaluating any keep pattern needs of the layer and arch alone (slot kinds, tensor
    axes, relevant dimensions, the unchanged-tile rule's bit masks), derived once per
    Encoding instead of once per batch."""

    def __init__(self, enc: Encoding):
        layer, arch = enc.layer, enc.arch
        self.sparse = Sparse.of(layer, arch)
        self.temporal = [s for s, (_, k) in enumerate(enc.slots) if k == "T"]
        self.spatial = [s for s, (_, k) in enumerate(enc.slots) if k != "T"]
        self.axes = [_axes_index(layer, t) for t in TENSORS]
        self.rel = [np.array([d in RELEVANT[t] for d in DIMS]) for t in TENSORS]
        self.rel_dims = [np.nonzero(r)[0] for r in self.rel]
        self.coefficients = [_coefficients(axes) for axes in self.axes]       # [axes, 8] per tensor
        self.sizes = np.array([layer.dims[d] for d in DIMS], dtype=np.float64)[:, None]
        # Per tensor, the sliding axes (two dimensions, e.g. P and R over input rows): the
        # axis' position and its coefficient of each dimension.
        self.sliding = [[(a, _coefficients([axis])[0]) for a, axis in enumerate(axes) if len(axis) > 1]
                        for axes in self.axes]
        self.unchanged = [_UnchangedRule(axes) for axes in self.axes]
        self.fan_slots = {li: [s for s in self.spatial if enc.slots[s][0] == li]
                          for li, level in enumerate(arch.levels) if isinstance(level, Fanout)}
        self.assignments = enc.assignments()
        width = len(enc.storage_levels) * len(TENSORS)
        self.keep_weight = 1 << np.arange(width, dtype=np.int64)
        radix = np.array([len(arch.levels[i].modes_of(t)) for i in enc.mode_fans for t in TENSORS], dtype=np.int64)
        self.mode_weight = np.concatenate([np.cumprod(radix[::-1])[::-1][1:], [1]]).astype(np.int64)


def _coefficients(axes) -> np.ndarray:
    """[axes, 8]: each axis' coefficient of each dimension (0 where it does not depend on it)."""
    out = np.zeros((len(axes), len(DIMS)))
    for a, axis in enumerate(axes):
        for d, c in axis:
            out[a, d] += c
    return out


def _layout(enc: Encoding) -> _Layout:
    if "layout" not in enc.plans:
        enc.plans["layout"] = _Layout(enc)
    return enc.plans["layout"]


@dataclass(frozen=True)
class _LinkPlan:
    """One link of a keep pattern (access.Link) with its per-batch work resolved: which fills
    it needs, the fan-out parts of its distinct-tile count, and where its terms go."""

    link: object                      # access.Link
    fills_at: int | None              # storage whose fetched / touched quantities the link uses
    # per fan-out between: (mode fan-out index or None, part key per mode (one without modes))
    parts: tuple
    energy_fans: tuple                # (fan-out level, energy per word) charged for the words carried
    limited_fans: tuple               # (fan-out level, its X slot) whose bandwidth the link loads
    patterns: tuple[int, ...] | None = None   # the keep patterns having the link (None: all)


@dataclass(frozen=True)
class _Plan:
    """Everything about a batch's keep patterns that does not depend on the factors: the
    union of their links (per row, each count, carried word and fan-out demand comes from
    exactly one link of its pattern's chain, so the union adds each row's own terms)."""

    layout: _Layout
    keep: tuple[tuple[bool, ...], ...]       # [storage][tensor]: kept by some pattern
    links: tuple[_LinkPlan, ...]
    fills: tuple[tuple[int, int], ...]       # (tensor, storage) whose fills quantities are needed
    tensors: list[int]                       # the tensors of `fills`
    deepest_fill: int                        # the innermost storage of `fills`


def _plan(enc: Encoding, patterns: list[np.ndarray]) -> _Plan:
    """The plan of keep patterns [storages, 3] (candidates of one batch), built once per
    Encoding."""
    key = tuple(p.tobytes() for p in patterns)
    if key not in enc.plans:
        arch, layout = enc.arch, _layout(enc)
        plans, members, fills = {}, {}, []
        for k, pattern in enumerate(patterns):
            for link in links(arch, enc.storage_levels, pattern, layout.sparse):
                at = link.tensor, link.parent, link.child      # the same terms in every pattern
                members.setdefault(at, []).append(k)
                if at not in plans:
                    plans[at] = _link_plan(enc, link)
                    if plans[at].fills_at is not None and (link.tensor, plans[at].fills_at) not in fills:
                        fills.append((link.tensor, plans[at].fills_at))
        union = tuple(dataclasses.replace(lp, patterns=None if len(members[at]) == len(patterns)
                                          else tuple(members[at])) for at, lp in plans.items())
        keep = tuple(tuple(any(bool(p[si][ti]) for p in patterns) for ti in range(len(TENSORS)))
                     for si in range(len(enc.storage_levels)))
        enc.plans[key] = _Plan(layout, keep, union, tuple(fills), sorted({ti for ti, _ in fills}),
                               max((si for _, si in fills), default=0))
    return enc.plans[key]


def _link_plan(enc: Encoding, link) -> _LinkPlan:
    arch = enc.arch
    ti, t = link.tensor, TENSORS[link.tensor]
    fills_at = None
    if link.child is not None or t == "Outputs":
        fills_at = link.parent if link.child is None else link.child
    parts = []
    for li in link.fanouts:
        fan = arch.levels[li]
        if li in enc.mode_fans:
            parts.append((enc.mode_fans.index(li), tuple(_part_key(enc, ti, li, fan.credit(m))
                                                        for m in fan.modes_of(t))))
        else:
            parts.append((None, (_part_key(enc, ti, li, fan.credit(None)),)))
    # network energy and bandwidth: a fan-out without either adds exactly nothing
    energy_fans = tuple((li, arch.levels[li].energy_of(t)) for li in link.fanouts
                        if arch.levels[li].energy_of(t) != 0.0)
    limited_fans = tuple((li, enc.slots.index((li, "X"))) for li in link.fanouts if arch.levels[li].limited(t))
    return _LinkPlan(link, fills_at, tuple(parts), energy_fans, limited_fans)


def _part_key(enc: Encoding, ti: int, li: int, credit: dict[str, str]):
    """(tensor, fan-out, its axes sharing reads exactly, (slot, label) of its other slots):
    what the fan-out's factor of distinct child tiles depends on."""
    exact = "".join(a for a in "XY" if credit[a] == "exact")
    others = tuple((s, credit[enc.slots[s][1]]) for s in _layout(enc).fan_slots[li]
                   if credit[enc.slots[s][1]] != "exact")
    return ti, li, exact, others


def _evaluate_pattern(enc: Encoding, plan: _Plan, pattern_id: np.ndarray | None, Ff: np.ndarray,
                      inner: np.ndarray, orders: np.ndarray, assign: np.ndarray, objective: str, with_counts: bool):
    """Candidates of the keep patterns of `plan` (pattern_id [n]: each one's, None: all the
    same); `assign` [A, mode fan-outs, 3] lists the network-mode choices to evaluate (the
    cheapest per candidate by `objective` is kept). Ff [S, 8, n] holds the factors and
    inner [S + 1, 8, n] their products over slots s.. (see _pattern_groups).

    The roll-up, one step each: products of factors per slot -> each storage level's loop
    nest -> the innermost relevant loop outside each level -> fetched and touched words per
    fill -> reads, fills and updates per (storage, tensor) and words per fan-out, over the
    links -> energy -> cycles under bandwidth -> the cheapest mode choice.

    Working arrays keep the candidate axis last, so every per-slot, per-dimension or
    per-level row is one contiguous vector (about twice as fast as candidate-major)."""
    n = Ff.shape[-1]
    slots = _slot_products(plan.layout, Ff)
    loops = _level_loops(enc, plan, Ff, orders, slots.slot_prod)
    reuse = _innermost_relevant_loops(plan, loops)
    fill_quantities = _fill_quantities(plan, inner, loops, reuse)
    totals = _link_totals(enc, plan, pattern_id, Ff, inner, slots, fill_quantities, assign)
    compute = slots.ops * plan.layout.sparse.mac_cycles
    energy = _access_energy(enc, plan, totals, len(assign), n)
    cyc = _cycles_under_bandwidth(enc, totals, slots.instances_at, compute, assign)
    _add_time_energy(enc, energy, cyc, slots.instances_at)
    compute = np.ceil(compute - 1e-9)
    pick = _cheapest_modes(objective, energy, cyc, compute)
    sel = (pick, np.arange(n))
    counts = _counts_array(enc, totals, sel, len(assign)) if with_counts else None
    return energy[sel], cyc[sel], compute, counts, pick


class _SlotProducts(NamedTuple):
    """A batch's product of factors per slot and what follows from it alone ([.., n] each)."""

    slot_prod: np.ndarray          # [S, n]: the product of each slot's factors
    ops: np.ndarray                # [n]: temporal iterations (product over temporal slots)
    mac_units: np.ndarray          # [n]: MAC units used (product over spatial slots)
    spatial: np.ndarray            # [S, n]: slot_prod at spatial slots, 1 at temporal ones
    instances_at: np.ndarray       # [S + 1, n]: used instances of each slot's level


def _slot_products(layout: _Layout, Ff: np.ndarray) -> _SlotProducts:
    """Each slot's product of factors, the ops, MAC units and used instances per slot: every
    count of the roll-up scales by them, so they are computed once per batch."""
    S, _, n = Ff.shape
    temporal, spatial = layout.temporal, layout.spatial
    # every product of factors below is an integer under 2**53, so exact in any order
    half = Ff[:, :4] * Ff[:, 4:]
    half = half[:, :2] * half[:, 2:]
    slot_prod = half[:, 0] * half[:, 1]                                      # [S, n]
    ops = np.prod(slot_prod[temporal], axis=0) if temporal else np.ones(n)
    mac_units = np.prod(slot_prod[spatial], axis=0) if spatial else np.ones(n)
    # used instances of each slot's level: spatial factors in slots above it
    per_slot_spatial = slot_prod.copy()
    per_slot_spatial[temporal] = 1.0
    instances_at = np.ones((S + 1, n))
    for s in range(S):
        np.multiply(instances_at[s], per_slot_spatial[s], out=instances_at[s + 1])
    return _SlotProducts(slot_prod, ops, mac_units, per_slot_spatial, instances_at)


class _LevelLoops(NamedTuple):
    """The temporal loops of a batch's storage levels, as the reuse rules read them; the
    [active, 8, n] arrays hold the `active` levels only, positions innermost first."""

    st_slots: list[int]            # each storage level's temporal slot
    outer_prod: np.ndarray         # [storages, n]: product of the factors of the levels outside each
    active: list[int]              # the levels whose loops can be outside a needed tile
    O: np.ndarray                  # [active, 8, n]: the dimension at each position
    level_f: np.ndarray            # [active, 8, n]: the factors by dimension
    level_offset: np.ndarray       # [active, n]: flat index of (level, position 0, row) in these arrays
    ordered: np.ndarray            # [active, 8, n]: the factor at each position
    outside: np.ndarray            # [active, 8, n]: product of the factors of the loops outside each position
    iterating: np.ndarray          # [active, 8, n]: the loop at each position has a factor > 1


def _level_loops(enc: Encoding, plan: _Plan, Ff: np.ndarray, orders: np.ndarray,
                 slot_prod: np.ndarray) -> _LevelLoops:
    """The storage levels' loop nests in position order, built once per batch because the
    innermost-relevant-loop search and the unchanged-tile rule both walk them."""
    _, ND, n = Ff.shape
    n_st = len(enc.storage_levels)
    rows = np.arange(n)
    st_slots = list(enc.storage_slot)
    level_prod = slot_prod[st_slots]                                        # [st, n]
    outer_prod = np.ones((n_st, n))
    for si in range(1, n_st):
        outer_prod[si] = outer_prod[si - 1] * level_prod[si - 1]
    # The levels whose loops can be outside a needed tile: those outside the innermost one
    # whose fills are counted, and with some factor > 1 in this batch (a level of ones has no
    # loop to reuse across, reset or step: leaving it out changes no count).
    active = [so for so in range(plan.deepest_fill) if (level_prod[so] != 1).any()]
    A_st = len(active)
    # Each active level's temporal loops, innermost first: the dimension and factor at each
    # position, and the product of the factors of the loops outside each position.
    O = np.ascontiguousarray(orders[:, active, ::-1].transpose(1, 2, 0))   # [active, 8, n] dims
    level_f = Ff[[st_slots[so] for so in active]]                          # [active, 8, n] by dim
    # ordered[i, q] = level_f[i, O[i, q]]: one gather in the flattened array
    level_offset = rows + (np.arange(A_st) * (ND * n))[:, None]           # [active, n]
    ordered = level_f.reshape(-1)[O * n + level_offset[:, None, :]]
    outside = np.ones_like(ordered)
    for q in range(ND - 2, -1, -1):
        np.multiply(outside[:, q + 1], ordered[:, q + 1], out=outside[:, q])
    return _LevelLoops(st_slots, outer_prod, active, O, level_f, level_offset, ordered, outside, ordered > 1)


class _Reuse(NamedTuple):
    """Per tensor of plan.tensors ([tensors, n] each), the innermost relevant loop r outside
    one storage level and what the level's fills need of it."""

    found: np.ndarray              # bool: some relevant loop iterates outside the level
    sweeps: np.ndarray             # how many times r's loop starts (the product of the factors outside it)
    bound: np.ndarray              # r's factor
    step_index: np.ndarray         # flat index in inner of r's step (its dimension's factors inside r)
    touched: np.ndarray            # product of the relevant factors outside the level


def _innermost_relevant_loops(plan: _Plan, loops: _LevelLoops) -> list[_Reuse]:
    """Per storage level si (0 to the deepest fill), where the innermost relevant loop r
    outside si is and the product of the relevant factors outside si (for first touches),
    all tensors at once: the fills of every level follow from these."""
    layout, active, st_slots = plan.layout, loops.active, loops.st_slots
    _, ND, n = loops.O.shape
    rows = np.arange(n)
    tensors = plan.tensors
    found = np.zeros((len(tensors), n), dtype=bool)
    sweeps, bound, touched = np.ones((len(tensors), n)), np.ones((len(tensors), n)), np.ones((len(tensors), n))
    step_index = np.broadcast_to(ND * n + rows, found.shape)
    reused = [_Reuse(found, sweeps, bound, step_index, touched)]      # the outermost level: no loops outside
    if active:
        # each level's innermost relevant loop r (if it has one): the lowest set bit of the
        # positions of iterating loops relevant to the tensor, packed into a byte per tensor
        # (much faster than argmax over a middle axis)
        packed = np.einsum("sqn,q->sn", _RELEVANT_BYTES.take(loops.O) * loops.iterating, _POSITION_WEIGHTS)
        code = np.stack([(packed >> np.uint32(8 * ti)) & np.uint32(0xFF) for ti in tensors])     # [T, active, n]
        has = code != 0
        at = _LOWEST_BIT.take(code) * n + loops.level_offset                # [T, active, n]
        r_bound, r_before, r_dim = (a.reshape(-1)[at] for a in (loops.ordered, loops.outside, loops.O))
        r_sweeps = loops.outer_prod[active] * r_before
        rel_prod = np.stack([_product(loops.level_f[:, d] for d in layout.rel_dims[ti]) for ti in tensors])
        # r's step (its dimension's factors in all slots after r's slot) sits at
        # inner[slot + 1, dim, row]: flat index ((slot + 1) * 8 + dim) * n + row
        step_at = (r_dim + ((np.array([st_slots[so] for so in active]) + 1) * ND)[:, None]) * n + rows
    for so in range(plan.deepest_fill):
        if so in active:
            i = active.index(so)
            h = has[:, i]
            # a level with a relevant loop holds the new r; one without lies inside r (no change)
            sweeps = np.where(h, r_sweeps[:, i], sweeps)
            bound = np.where(h, r_bound[:, i], bound)
            step_index = np.where(h, step_at[:, i], step_index)
            found = found | h
            touched = touched * rel_prod[:, i]
        reused.append(_Reuse(found, sweeps, bound, step_index, touched))
    return reused


def _fill_quantities(plan: _Plan, inner: np.ndarray, loops: _LevelLoops, reused: list[_Reuse]) -> dict:
    """(tensor, storage) -> (fetched per instance, distinct touched per instance) for each of
    plan.fills: the tile times how often it is brought in, less the overlap a sliding axis
    keeps and the steps that bring back the held tile."""
    layout, st_slots, tensors = plan.layout, loops.st_slots, plan.tensors
    ND, n = inner.shape[1:]
    nest = _Nest(st_slots, loops.active, loops.level_f, inner, loops.outer_prod, loops.O, loops.iterating)
    quantities_at = {}
    for ti, si in plan.fills:
        extents = layout.coefficients[ti] @ (inner[st_slots[si]] - 1.0) + 1.0   # [axes, n], exact integers
        tile = _product(extents)
        found, sweeps, r_bound, step_index, touched = (x[tensors.index(ti)] for x in reused[si])
        # Only a sliding axis (two dimensions, e.g. P and R over input rows) can overlap
        # between consecutive tiles; a step along any other axis brings a disjoint tile.
        overlap = np.zeros(n)
        sliding = layout.sliding[ti]
        if sliding:
            step = inner.reshape(-1)[step_index]
            r_dim = (step_index // n) % ND
            for a, coef in sliding:
                extent = extents[a]
                shift = coef.take(r_dim) * step
                overlap = np.where(shift > 0, tile / extent * np.maximum(0.0, extent - shift), overlap)
        fetched = np.where(found, sweeps * (tile + (r_bound - 1) * (tile - overlap)), tile)
        if sliding:
            fetched = fetched - tile * nest.unchanged_steps(layout.unchanged[ti], si)
        quantities_at[ti, si] = fetched, tile * touched
    return quantities_at


class _DistinctTiles:
    """The factor of distinct child tiles each fan-out creates in a batch, per part key (see
    _part_key), computed once: several links and mode choices share one."""

    def __init__(self, enc: Encoding, layout: _Layout, Ff: np.ndarray, inner: np.ndarray, spatial: np.ndarray):
        self.enc, self.layout, self.Ff, self.inner, self.spatial = enc, layout, Ff, inner, spatial
        self.parts, self.exact = {}, {}

    def part(self, key) -> np.ndarray:
        """[n]: the factor of distinct child tiles one fan-out creates (see _part_key)."""
        if key not in self.parts:
            ti, li, exact, others = key
            part = self.exact_part(ti, li, exact)
            for s, label in others:
                if label == "none":
                    part = part * self.spatial[s]
                elif label == "projection":
                    part = part * np.prod(self.Ff[s, self.layout.rel[ti]], axis=0)
            self.parts[key] = part
        return self.parts[key]

    def exact_part(self, ti: int, li: int, axes: str) -> np.ndarray:
        """Distinct tile offsets along every axis of tensor ti among the children of fan-out
        li that differ only on the fan-out axes in `axes` (those sharing reads exactly)."""
        key = (ti, li, axes)
        if key not in self.exact:
            Ff, inner = self.Ff, self.inner
            fan_slots = [s for s in self.layout.fan_slots[li] if self.enc.slots[s][1] in axes]
            total = np.ones(Ff.shape[-1])
            for axis in self.layout.axes[ti]:
                if len(axis) > 1:
                    total = total * _distinct_batch([(Ff[s, d], c * inner[s + 1, d])
                                                     for s in fan_slots for d, c in axis])
                else:
                    # one dimension per axis: nested progressions never collide -> product
                    for s in fan_slots:
                        total = total * Ff[s, axis[0][0]]
            self.exact[key] = total
        return self.exact[key]


class _Totals:
    """A batch's counts, carried words and fan-out demand summed over its plan's links; each
    row takes the values of its own pattern's links only."""

    def __init__(self, pattern_id: np.ndarray | None):
        # (storage, tensor) -> count; absent ones are zero (so add nothing, exactly). Reads and
        # updates may depend on the network modes ([A, n] or [n]), fills do not ([n]).
        self.counted = {READS: {}, FILLS: {}, UPDATES: {}}
        self.carried = {}                    # (fan-out level, tensor) -> words carried
        self.demand = {}                     # (fan-out level, tensor) -> [A, n] words per fan-out instance
        self.pattern_id = pattern_id
        self.masks = {}                      # patterns -> [n] bool: the rows having one of them

    def merge(self, into: dict, key, value, patterns):
        """Store a link's count (or words): per row, only one link of its pattern's chain
        has it, so the rows of the link's patterns take its value."""
        if patterns is None:
            into[key] = value
            return
        if patterns not in self.masks:
            self.masks[patterns] = _sum([self.pattern_id == k for k in patterns])    # (np.isin: ~40x slower here)
        into[key] = np.where(self.masks[patterns], value, into[key] if key in into else 0.0)


class _TermProducts:
    """copies x quantity of one link's terms (each computed once per link: several terms
    share one)."""

    def __init__(self, copies_of: dict, quantities: dict):
        self.copies_of, self.quantities, self.cache = copies_of, quantities, {}

    def of(self, term) -> np.ndarray:
        """The term's copies x quantity, without its coefficient."""
        key = term.copies, term.quantity
        if key not in self.cache:
            self.cache[key] = self.copies_of[term.copies] * self.quantities[term.quantity]
        return self.cache[key]

    def total(self, terms) -> np.ndarray:
        """The sum of the terms' coefficient x product."""
        return _weighted_sum([(t.coefficient, self.of(t)) for t in terms])


def _distinct_copies(lp: _LinkPlan, tiles: _DistinctTiles, parent_instances: np.ndarray,
                     assign: np.ndarray) -> np.ndarray:
    """[A, n]: distinct child tiles per parent instance (the product over the fan-outs in
    between of the distinct tiles each creates, under each mode choice) times the parent's
    instances."""
    ti = lp.link.tensor
    distinct = np.ones((len(assign), 1)) * parent_instances
    for j, keys in lp.parts:
        if j is None:
            distinct = distinct * tiles.part(keys[0])
        else:
            distinct = distinct * np.stack([tiles.part(k) for k in keys])[assign[:, j, ti]]
    return distinct


def _link_counts(link, products: _TermProducts) -> dict:
    """(kind, storage) -> the link's count of that kind at that storage: its terms summed in
    the scalar model's order."""
    mine = {}
    for x in link.counts:
        key = x.kind, x.storage
        c = x.term.coefficient
        p = products.of(x.term)
        # not in place: products are shared between terms (0.0 + keeps the sign of a zero)
        if key not in mine:
            mine[key] = p if c == 1.0 else 0.0 - p if c == -1.0 else 0.0 + c * p
        elif c == -1.0:
            mine[key] = mine[key] - p
        else:
            mine[key] = mine[key] + (p if c == 1.0 else c * p)
    return mine


def _link_totals(enc: Encoding, plan: _Plan, pattern_id: np.ndarray | None, Ff: np.ndarray, inner: np.ndarray,
                 slots: _SlotProducts, quantities_at: dict, assign: np.ndarray) -> _Totals:
    """Every link's reads, fills and updates per (storage, tensor), words carried and
    bandwidth demand per (fan-out, tensor), merged over the plan's patterns: the counts
    energy and cycles are computed from."""
    tiles = _DistinctTiles(enc, plan.layout, Ff, inner, slots.spatial)
    totals = _Totals(pattern_id)
    instances_at = slots.instances_at
    for lp in plan.links:
        link = lp.link
        ti = link.tensor
        parent = instances_at[enc.storage_slot[link.parent]]
        copies_of = {MACS: slots.mac_units, DISTINCT: _distinct_copies(lp, tiles, parent, assign), PARENT: parent}
        if link.child is not None:
            copies_of[CHILD] = instances_at[enc.storage_slot[link.child]]
        quantities = {OPS: slots.ops}
        if lp.fills_at is not None:
            quantities[FETCHED], quantities[TOUCHED] = quantities_at[ti, lp.fills_at]
        products = _TermProducts(copies_of, quantities)
        for (kind, si), value in _link_counts(link, products).items():
            totals.merge(totals.counted[kind], (si, ti), value, lp.patterns)
        if lp.energy_fans:
            words = products.total(link.words)
            for i, _ in lp.energy_fans:
                totals.merge(totals.carried, (i, ti), words, lp.patterns)
        if lp.limited_fans:
            down = products.total(link.down)
            for i, x_slot in lp.limited_fans:
                totals.merge(totals.demand, (i, ti), down / instances_at[x_slot], lp.patterns)
    return totals


def _access_energy(enc: Encoding, plan: _Plan, totals: _Totals, A: int, n: int) -> np.ndarray:
    """[A, n]: the energy of the storage accesses, the words carried by fan-outs and the
    MACs, added in the scalar model's order (so sums do not depend on the batch)."""
    arch = enc.arch
    counted = totals.counted
    energy = np.zeros((A, n))
    for si, li in enumerate(enc.storage_levels):
        level: Storage = arch.levels[li]
        for ti, t in enumerate(TENSORS):
            if plan.keep[si][ti]:
                # the terms of absent (zero) counts would add exactly 0.0: left out
                terms = [x[(si, ti)] * e for x, e in zip((counted[READS], counted[FILLS], counted[UPDATES]),
                                                         level.energy_of(t)) if (si, ti) in x]
                if terms:
                    energy += _sum(terms)
    carried = totals.carried
    # in a chain's order (tensor, then outermost fan-out first), as one pattern adds them
    for i, ti in sorted(carried, key=lambda it: (it[1], it[0])):
        energy += carried[i, ti] * arch.levels[i].energy_of(TENSORS[ti])
    energy += enc.layer.macs * arch.mac_energy * plan.layout.sparse.mac_energy
    return energy


def _cycles_under_bandwidth(enc: Encoding, totals: _Totals, instances_at: np.ndarray, compute: np.ndarray,
                            assign: np.ndarray) -> np.ndarray:
    """[A, n]: cycles, the most of the compute cycles and the cycles each storage level's and
    fan-out's bandwidth needs for its words per instance, rounded up as the scalar model."""
    arch, n = enc.arch, len(compute)
    reads, fills, updates = totals.counted[READS], totals.counted[FILLS], totals.counted[UPDATES]
    A = len(assign)
    cyc = np.ones((A, 1)) * compute
    zero = np.zeros(n)
    for si, li in enumerate(enc.storage_levels):
        level: Storage = arch.levels[li]
        inst = instances_at[enc.storage_slot[si]]
        r = _sum([reads[si, ti] for ti in range(len(TENSORS)) if (si, ti) in reads], zero) / inst
        w = _sum([_sum([x[si, ti] for x in (fills, updates) if (si, ti) in x])
                  for ti in range(len(TENSORS)) if (si, ti) in fills or (si, ti) in updates], zero) / inst
        if level.read_bw:
            cyc = np.maximum(cyc, r / level.read_bw)
        if level.write_bw:
            cyc = np.maximum(cyc, w / level.write_bw)
        if level.shared_bw:
            cyc = np.maximum(cyc, (r + w) / level.shared_bw)
    for (i, ti), words in totals.demand.items():
        fan: Fanout = arch.levels[i]
        if i in enc.mode_fans:
            options = fan.modes_of(TENSORS[ti])
            bw = np.array([fan.bandwidth(TENSORS[ti], options[m]) for m in assign[:, enc.mode_fans.index(i), ti]])
        else:
            bw = np.full(A, fan.bandwidth(TENSORS[ti], None))
        cyc = np.maximum(cyc, words / bw[:, None])
    # The scalar model rounds up after taking the max; tolerate float noise the same way.
    return np.ceil(cyc - 1e-9)


def _add_time_energy(enc: Encoding, energy: np.ndarray, cyc: np.ndarray, instances_at: np.ndarray):
    """Add (in place) the energy that grows with the cycles: each storage instance's leakage
    and the arch's energy per cycle; last, as the scalar model adds them."""
    arch = enc.arch
    for si, li in enumerate(enc.storage_levels):
        if arch.levels[li].leakage:
            energy += arch.levels[li].leakage * cyc * instances_at[enc.storage_slot[si]]
    if arch.cycle_energy:
        energy += arch.cycle_energy * cyc


def _cheapest_modes(objective: str, energy: np.ndarray, cyc: np.ndarray, compute: np.ndarray) -> np.ndarray:
    """[n]: per candidate, the network-mode choice (row of energy [A, n]) that minimises the
    objective; ties go to the lower energy, then the first listed."""
    A, n = energy.shape
    if A == 1:
        return np.zeros(n, dtype=np.int64)
    value = objective_of(objective, energy, cyc, np.ones((A, 1)) * compute)
    best = value.min(axis=0, keepdims=True)
    tie = value <= best * (1 + 1e-12)
    return np.argmin(np.where(tie, energy, np.inf), axis=0)


def _counts_array(enc: Encoding, totals: _Totals, sel: tuple, A: int) -> np.ndarray:
    """[n, storages, 3 tensors, 3 (reads, fills, updates)]: the counts under each candidate's
    chosen modes (`sel`: (mode choice, row) per candidate), for BatchCost.counts."""
    n = len(sel[1])
    counts = np.zeros((n, len(enc.storage_levels), len(TENSORS), 3))
    for a, kind in enumerate((READS, FILLS, UPDATES)):
        for (si, ti), v in totals.counted[kind].items():
            counts[:, si, ti, a] = v if v.ndim == 1 else np.broadcast_to(v, (A, n))[sel]
    return counts


class _UnchangedRule:
    """The constants of _Nest.unchanged_steps for a tensor with `axes` (see there)."""

    def __init__(self, axes):
        self.multi = [axis for axis in axes if len(axis) > 1]
        bit = lambda ds: sum(1 << d for d in set(ds))            # noqa: E731
        self.counted = np.uint8(bit(d for axis in axes for d, c in axis if c))   # dims whose resets move the tile
        allowed = np.zeros(len(DIMS), dtype=np.uint8)             # dk and the dims sharing an axis
        self.partner = np.zeros(len(DIMS), dtype=np.uint8)
        for axis in self.multi:
            for d, _ in axis:
                allowed[d] |= bit(e for e, _ in axis)
                self.partner[d] |= bit(e for e, _ in axis if e != d)
        self.not_allowed = ~allowed
        self.window = np.array(sorted({d for axis in self.multi for d, _ in axis}), dtype=np.int64)
        self.coefficients = _coefficients(axes)                   # [axes, 8]


class _Nest:
    """The temporal loop nests of one pattern's candidates (storage levels outermost first,
    positions innermost first), for the unchanged-tile rule; what several tensors and
    storage levels share is computed once."""

    def __init__(self, st_slots, active, level_f, inner, outer_prod, O, iterating):
        """level_f, O and iterating hold the `active` storage levels only: the others have
        no factor > 1 (no loop that can step or reset)."""
        self.st_slots, self.level_f, self.inner, self.outer_prod = st_slots, level_f, inner, outer_prod
        self.row = {so: i for i, so in enumerate(active)}
        self.O, self.iterating = O, iterating
        self.cache = {}

    def _once(self, key, make):
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]

    def inside(self, i: int):
        """([8, n], [n]): per position q of active level i, the dims iterating at its
        positions inside q, and all dims iterating at that level (one bit each)."""
        def make():
            bits = _POSITION_BITS.take(self.O[i]) * self.iterating[i]
            inside = np.empty_like(bits)
            inside[0] = 0
            for q in range(1, len(bits)):       # (bitwise_or.accumulate over axis 0 is ~25x slower)
                np.bitwise_or(inside[q - 1], bits[q - 1], out=inside[q])
            return inside, inside[-1] | bits[-1]
        return self._once(("inside", i), make)

    def unchanged_steps(self, rule: _UnchangedRule, si: int) -> np.ndarray:
        """[n]: steps of the loops outside storage si that bring back exactly the held tile of
        a tensor (model._Nest.unchanged: the moves of a two-dimension axis cancel), counted
        per instance; each saves a whole tile.

        Such a step is rare, so a cheap bitmask test first finds the candidates that may
        have one, and the exact arithmetic runs on those only. A step of loop k over
        dimension dk moves dk forward (by more than its own resets, which telescope) and
        resets the loops inside k; every axis must end where it was, so the resetting loops
        may only be over dk and dimensions sharing an axis with dk, and at least one of
        those partners must reset.
        """
        n = self.inner.shape[-1]
        saved = np.zeros(n)
        if not rule.multi or si == 0:
            return saved
        maybe = np.zeros(n, dtype=bool)
        between = np.zeros(n, dtype=np.uint8)          # dims iterating at the levels inside so, outside si
        outer = [self.row[so] for so in range(si - 1, -1, -1) if so in self.row]     # inside out
        for i in outer:
            inside, level_bits = self.inside(i)
            resets = (inside | between) & rule.counted
            not_allowed, partner = self._once((id(rule), i), lambda: (rule.not_allowed.take(self.O[i]),
                                                                      rule.partner.take(self.O[i])))
            ok = self.iterating[i] & ((resets & not_allowed) == 0) & ((resets & partner) != 0)
            maybe |= ok.any(axis=0)
            between |= level_bits
        rows = np.nonzero(maybe)[0]
        if not len(rows):
            return saved
        m, window = len(rows), rule.window
        part = np.zeros(m)
        between = np.zeros((len(DIMS), m))   # resets of the levels strictly inside so, outside si
        for so in range(si - 1, -1, -1):
            if so not in self.row:
                continue        # no factor > 1: nothing steps or resets there
            i = self.row[so]
            f = self.level_f[i][:, rows]                         # [8, m] by dim
            step = self.inner[self.st_slots[so] + 1][:, rows]    # [8, m]
            term = (f - 1) * step      # how far level so's loop over d resets when a loop outside it steps
            pos = np.empty((len(DIMS), m), dtype=np.int64)     # pos[d]: dimension d's position (0 = innermost)
            pos[self.O[i][:, rows], np.arange(m)] = np.arange(len(DIMS))[:, None]
            pk = pos[window]                                     # [W, m]: each window dim dk's position
            # per dk: the step of its loop k moves dk forward and resets the loops nested in k
            move = -(between + term * (pos < pk[:, None]))       # [W, 8, m]
            move[np.arange(len(window)), window] += step[window]
            b = f[window]
            same = (b > 1) & ~(np.einsum("ad,wdm->wam", rule.coefficients, move) != 0).any(axis=1)
            if same.any():
                count = self.outer_prod[so][rows] * np.prod(np.where(pos > pk[:, None], f, 1.0), axis=1) * (b - 1)
                part += np.where(same, count, 0.0).sum(axis=0)
            between = between + term
        saved[rows] = part
        return saved


def _weighted_sum(terms):
    """sum of coefficient x array, without multiplying by 1."""
    out = None
    for c, a in terms:
        v = a if c == 1.0 else c * a
        out = v if out is None else out + v
    return out


def _sum(arrays, empty=None):
    """The sum of arrays, added in order (`empty` if there are none)."""
    out = None
    for x in arrays:
        out = x if out is None else out + x
    return empty if out is None else out


def _product(arrays):
    """The product of arrays (or of an array's rows), multiplied in order."""
    out = None
    for x in arrays:
        out = x if out is None else out * x
    return out


def _distinct_batch(terms: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """distinct_offsets for every candidate: closed form for up to two non-trivial
    progressions, the scalar routine for the rare candidates with more."""
    if not terms:
        return 1.0
    counts = np.stack([c for c, _ in terms])          # [terms, n]
    steps = np.stack([s for _, s in terms])
    nontrivial = counts > 1
    k = nontrivial.sum(axis=0)
    out = np.prod(counts, axis=0)           # k <= 1: the product is the single count (or 1)
    two = np.nonzero(k == 2)[0]
    if two.size:
        # the first two non-trivial progressions: the lowest two set bits of a bit per term
        # (at most 8 terms: two fan-out axes x two dimensions of an axis in practice)
        assert len(terms) <= 8
        bits = np.einsum("kn,k->n", nontrivial[:, two].view(np.uint8), _POSITION_BITS[:len(terms)])
        first = _LOWEST_BIT.take(bits)
        second = _LOWEST_BIT.take(bits & (bits - 1))
        n = counts.shape[1]
        K0, K1 = counts.reshape(-1)[first * n + two], counts.reshape(-1)[second * n + two]
        s0, s1 = (steps.reshape(-1)[i * n + two].astype(np.int64) for i in (first, second))
        g = np.gcd(s0, s1)
        a1, b1 = s0 // g, s1 // g
        out[two] = np.minimum(K0, b1) * K1 + np.maximum(0, K0 - b1) * np.minimum(K1, a1)
    for row in np.nonzero(k > 2)[0]:
        out[row] = distinct_offsets(tuple((int(c), int(s)) for c, s in zip(counts[:, row], steps[:, row])))
    return out


def capacity_ok(enc: Encoding, factors: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """[n] bool: every kept tile fits its capacity partition (exact integer arithmetic)."""
    n = factors.shape[0]
    ok = np.ones(n, dtype=bool)
    sparse = Sparse.of(enc.layer, enc.arch)
    # candidate axis last, as in _evaluate_pattern: per-dimension rows are contiguous
    F = np.ascontiguousarray(factors.transpose(1, 2, 0))                  # [slots, 8, n]
    inner = np.ones((enc.n_slots + 1, len(DIMS), n), dtype=np.int64)
    for s in range(enc.n_slots - 1, -1, -1):
        np.multiply(inner[s + 1], F[s], out=inner[s])
    # a remainder nest's largest tile is its nominal one clipped at the layer's end
    sizes = np.array([enc.layer.dims[d] for d in DIMS], dtype=np.int64)[:, None]
    if (inner[0] != sizes).any():
        np.minimum(inner, sizes[None], out=inner)
    for si, li in enumerate(enc.storage_levels):
        level: Storage = enc.arch.levels[li]
        ext = inner[enc.storage_slot[si]]
        one = np.ones(n, dtype=np.int64)
        for t, most, along in level.columns:        # address storage of compressed tiles
            tile, _ = _tile_extents(enc.layer, t, ext, one)
            ok &= ~keep[:, si, T_INDEX[t]] | (tile // ext[D[along]] <= most)
        for tensors, capacity in level.partitions:
            words = np.zeros(n, dtype=np.int64)
            for t in tensors:
                tile, _ = _tile_extents(enc.layer, t, ext, one)
                factor = sparse.capacity(level.name, t)
                if factor != 1.0:          # compressed storage (see mapping.tile_words)
                    tile = np.ceil(tile * factor - 1e-9).astype(np.int64)
                words = words + np.where(keep[:, si, T_INDEX[t]], tile, 0)
            ok &= words <= capacity
    return ok


def score(enc: Encoding, factors, orders, keep, objective: str):
    """(objective values, network modes chosen) of candidates, the modes picked per candidate."""
    cost = evaluate_batch(enc, factors, orders, keep, objective=objective)
    return cost.objective(objective), cost.modes
