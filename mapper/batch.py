"""The cost model for many candidate mappings at once (numpy).

Search evaluates millions of candidates, so the hot path works on arrays instead of
`Mapping` objects. A candidate is encoded per *slot*: each storage level has one temporal
slot, each fan-out an X and a Y slot (in arch order, outermost first). For n candidates:

    factors: int64 [n, slots, 8]     the factor of each dimension (order of DIMS) in each slot
    orders:  int64 [n, storages, 8]  each storage level's loop order, outermost first (dim indices)
    keep:    bool  [n, storages, 3]  which tensors (order of TENSORS) each storage level keeps

`evaluate_batch` returns the same numbers as `mapper.model.evaluate` (tested); the formulas
are the ones documented there, written with arrays. Within a slot each dimension has one
loop, which is what makes the "innermost relevant loop" a small array computation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from .arch import Arch, Fanout, Storage
from .mapping import Loop, Mapping, normalize, tensor_axes
from .model import distinct_offsets
from .problem import DIMS, RELEVANT, TENSORS, Layer

D = {d: i for i, d in enumerate(DIMS)}
CHUNK = 4096
T_INDEX = {t: i for i, t in enumerate(TENSORS)}


@dataclass(frozen=True)
class Encoding:
    """How mappings of one layer on one architecture become arrays."""

    layer: Layer
    arch: Arch
    slots: tuple[tuple[int, str], ...]        # (arch level index, "T" | "X" | "Y")
    storage_levels: tuple[int, ...]           # arch level index of each storage level
    storage_slot: tuple[int, ...]             # slot of each storage level

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
        return cls(layer, arch, tuple(slots), tuple(storage_levels), tuple(storage_slot))

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

    def decode(self, factors: np.ndarray, orders: np.ndarray, keep: np.ndarray) -> Mapping:
        """The Mapping of one encoded candidate."""
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
        return normalize(loops, self.arch, keep_map)


@dataclass
class BatchCost:
    energy_pj: np.ndarray          # [n]
    cycles: np.ndarray             # [n] (float, already rounded up)
    compute_cycles: np.ndarray     # [n]
    counts: np.ndarray | None      # [n, storages, 3 tensors, 3 (reads, fills, updates)] when asked

    def objective(self, name: str) -> np.ndarray:
        if name == "energy":
            return self.energy_pj
        if name == "delay":
            return self.cycles
        if name == "compute":
            return self.compute_cycles
        return self.energy_pj * self.cycles


def _axes_index(layer: Layer, tensor: str):
    return [tuple((D[d], c) for d, c in axis) for axis in tensor_axes(layer, tensor)]


def evaluate_batch(enc: Encoding, factors: np.ndarray, orders: np.ndarray, keep: np.ndarray,
                   with_counts: bool = False) -> BatchCost:
    """Energy and cycles of n encoded candidates (assumed valid)."""
    n = factors.shape[0]
    if n > 2 * CHUNK:
        # Blocks of a few thousand candidates keep the working arrays in cache (about 2x faster).
        parts = [evaluate_batch(enc, factors[i:i + CHUNK], orders[i:i + CHUNK], keep[i:i + CHUNK], with_counts)
                 for i in range(0, n, CHUNK)]
        return BatchCost(np.concatenate([p.energy_pj for p in parts]), np.concatenate([p.cycles for p in parts]),
                         np.concatenate([p.compute_cycles for p in parts]),
                         np.concatenate([p.counts for p in parts]) if with_counts else None)
    energy = np.zeros(n)
    cycles = np.zeros(n)
    ops = np.ones(n)
    counts = np.zeros((n, len(enc.storage_levels), 3, 3)) if with_counts else None
    # Candidates with the same keep pattern share their tensors' level chains.
    flat = keep.reshape(n, -1)
    code = flat.astype(np.int64) @ (1 << np.arange(flat.shape[1], dtype=np.int64))
    for c in np.unique(code):
        rows = np.nonzero(code == c)[0]
        pattern = flat[rows[0]].reshape(keep.shape[1:])
        sub = _evaluate_pattern(enc, factors[rows], orders[rows], pattern, with_counts)
        if len(rows) == n:
            energy, cycles, ops = sub[0], sub[1], sub[2]
            if with_counts:
                counts = sub[3]
            break
        energy[rows], cycles[rows], ops[rows] = sub[0], sub[1], sub[2]
        if with_counts:
            counts[rows] = sub[3]
    return BatchCost(energy, cycles, ops, counts)


def _evaluate_pattern(enc: Encoding, F: np.ndarray, orders: np.ndarray, keep: np.ndarray,
                      with_counts: bool):
    arch, layer = enc.arch, enc.layer
    n, S, _ = F.shape
    Ff = F.astype(np.float64)
    # inner[:, s, d]: product of dimension d's factors in slots s.. (inside and at slot s).
    inner = np.ones((n, S + 1, len(DIMS)))
    for s in range(S - 1, -1, -1):
        inner[:, s] = inner[:, s + 1] * Ff[:, s]
    temporal = [s for s, (_, k) in enumerate(enc.slots) if k == "T"]
    spatial = [s for s, (_, k) in enumerate(enc.slots) if k != "T"]
    ops = np.prod(Ff[:, temporal, :], axis=(1, 2)) if temporal else np.ones(n)
    mac_units = np.prod(Ff[:, spatial, :], axis=(1, 2)) if spatial else np.ones(n)
    # used instances of each slot's level: spatial factors in slots above it
    spatial_mask = np.array([k != "T" for _, k in enc.slots])
    per_slot_spatial = np.prod(Ff, axis=2) * spatial_mask + (~spatial_mask)
    instances_at = np.ones((n, S + 1))
    for s in range(S):
        instances_at[:, s + 1] = instances_at[:, s] * per_slot_spatial[:, s]

    n_st = len(enc.storage_levels)
    reads = np.zeros((n, n_st, 3))
    fills = np.zeros((n, n_st, 3))
    updates = np.zeros((n, n_st, 3))
    carried = {}
    rows = np.arange(n)
    # Each storage level's temporal loops in order: factor per position [n, storages, 8],
    # and the product of the factors before each position (exclusive cumulative product).
    st_slots = list(enc.storage_slot)
    level_f = Ff[:, st_slots, :]                                           # [n, st, 8] by dim
    ordered = np.take_along_axis(level_f, orders, axis=2)                   # [n, st, 8] by position
    before = np.cumprod(ordered, axis=2) / ordered
    level_prod = np.prod(level_f, axis=2)                                   # [n, st]
    outer_prod = np.cumprod(np.concatenate([np.ones((n, 1)), level_prod[:, :-1]], axis=1), axis=1)
    last = np.arange(len(DIMS))[None, None, :]

    def tile_of(ti: int, slot: int):
        ext = inner[:, slot, :]
        tile = np.ones(n)
        extents = []
        for axis in _axes_index(layer, TENSORS[ti]):
            e = np.ones(n)
            for d, c in axis:
                e = e + c * (ext[:, d] - 1)
            extents.append(e)
            tile = tile * e
        return tile, extents

    reuse_cache = {}

    def reuse(ti: int):
        """Per storage level si: where the innermost relevant outer loop r is (found, sweeps,
        bound, dim, slot) and the product of the relevant outer factors (for first touches)."""
        if ti in reuse_cache:
            return reuse_cache[ti]
        rel = np.array([d in RELEVANT[TENSORS[ti]] for d in DIMS])
        mask = rel[orders] & (ordered > 1)                                  # [n, st, 8]
        has = mask.any(axis=2)
        pos = (len(DIMS) - 1) - np.argmax(mask[:, :, ::-1], axis=2)         # last relevant position
        idx = (rows[:, None], np.arange(n_st)[None, :], pos)
        r_bound, r_dim, r_before = ordered[idx], orders[idx], before[idx]
        rel_prod = np.prod(np.where(rel[None, None, :], level_f, 1.0), axis=2)
        out = [None]
        found = np.zeros(n, dtype=bool)
        sweeps, bound, dim, slot = np.ones(n), np.ones(n), np.zeros(n, np.int64), np.zeros(n, np.int64)
        touched = np.ones(n)
        for si in range(1, n_st):
            so = si - 1
            h = has[:, so]
            # a level with a relevant loop holds the new r; one without lies inside r (no change)
            sweeps = np.where(h, outer_prod[:, so] * r_before[:, so], sweeps)
            bound = np.where(h, r_bound[:, so], bound)
            dim = np.where(h, r_dim[:, so], dim)
            slot = np.where(h, st_slots[so], slot)
            found = found | h
            touched = touched * rel_prod[:, so]
            out.append((found, sweeps, bound, dim, slot, touched))
        reuse_cache[ti] = out
        return out

    def fills_of(ti: int, si: int):
        """(fetched per instance, distinct touched per instance) at storage si for tensor ti."""
        tile, extents = tile_of(ti, enc.storage_slot[si])
        found, sweeps, r_bound, r_dim, r_slot, touched = reuse(ti)[si]
        # step of loop r: its dimension's factors in all slots after r's slot
        step = inner[rows, r_slot + 1, r_dim]
        overlap = tile
        for axis, extent in zip(_axes_index(layer, TENSORS[ti]), extents):
            shift = np.zeros(n)
            for d, c in axis:
                shift = shift + np.where(r_dim == d, c * step, 0.0)
            overlap = np.where(shift > 0, overlap / extent * np.maximum(0.0, extent - shift), overlap)
        fetched = np.where(found, sweeps * (tile + (r_bound - 1) * (tile - overlap)), tile)
        return fetched, tile * touched

    def groups_of(ti: int, parent_si: int, child_si: int | None):
        """Distinct child tiles per parent instance (product over the fan-outs in between of
        the distinct tiles each creates) times the parent's instances."""
        p_level = enc.storage_levels[parent_si]
        c_level = len(arch.levels) if child_si is None else enc.storage_levels[child_si]
        total = instances_at[:, enc.storage_slot[parent_si]].copy()
        for li in range(p_level + 1, c_level):
            fan = arch.levels[li]
            if not isinstance(fan, Fanout):
                continue
            fan_slots = [s for s in spatial if enc.slots[s][0] == li]
            for axis in _axes_index(layer, TENSORS[ti]):
                if fan.multicast == "exact" and len(axis) > 1:
                    total = total * _distinct_batch([(Ff[:, s, d], c * inner[:, s + 1, d])
                                                     for s in fan_slots for d, c in axis])
                else:
                    # one dimension per axis: nested progressions never collide -> product
                    for s in fan_slots:
                        for d, _ in axis:
                            total = total * Ff[:, s, d]
        return total

    for ti, t in enumerate(TENSORS):
        chain = [si for si in range(n_st) if keep[si, ti]]
        for k, p in enumerate(chain):
            c = chain[k + 1] if k + 1 < len(chain) else None
            groups = groups_of(ti, p, c)
            p_level = enc.storage_levels[p]
            c_level = len(arch.levels) if c is None else enc.storage_levels[c]
            between = [i for i in range(p_level + 1, c_level) if isinstance(arch.levels[i], Fanout)]
            if c is None:
                if t == "Outputs":
                    _, touched = fills_of(ti, p)
                    updates[:, p, ti] += groups * ops
                    reads[:, p, ti] += groups * ops - instances_at[:, enc.storage_slot[p]] * touched
                else:
                    reads[:, p, ti] += groups * ops
                words = mac_units * ops
            else:
                fetched, touched = fills_of(ti, c)
                n_c = instances_at[:, enc.storage_slot[c]]
                if t == "Outputs":
                    reads[:, p, ti] += groups * (fetched - touched)
                    fills[:, c, ti] += n_c * (fetched - touched)
                    updates[:, p, ti] += groups * fetched
                    words = n_c * (fetched - touched) + n_c * fetched
                else:
                    reads[:, p, ti] += groups * fetched
                    fills[:, c, ti] += n_c * fetched
                    words = n_c * fetched
            for i in between:
                carried[i, ti] = carried.get((i, ti), 0.0) + words

    energy = np.zeros(n)
    cyc = ops.copy()
    for si, li in enumerate(enc.storage_levels):
        level: Storage = arch.levels[li]
        for ti, t in enumerate(TENSORS):
            if keep[si, ti]:
                er, ew, eu = level.energy_of(t)
                energy += reads[:, si, ti] * er + fills[:, si, ti] * ew + updates[:, si, ti] * eu
        inst = instances_at[:, enc.storage_slot[si]]
        r = reads[:, si, :].sum(axis=1) / inst
        w = (fills[:, si, :] + updates[:, si, :]).sum(axis=1) / inst
        if level.read_bw:
            cyc = np.maximum(cyc, r / level.read_bw)
        if level.write_bw:
            cyc = np.maximum(cyc, w / level.write_bw)
        if level.shared_bw:
            cyc = np.maximum(cyc, (r + w) / level.shared_bw)
    for (i, ti), words in carried.items():
        energy += words * arch.levels[i].energy_of(TENSORS[ti])
    energy += layer.macs * arch.mac_energy
    # The scalar model rounds up after taking the max; tolerate float noise the same way.
    cyc = np.ceil(cyc - 1e-9)
    for si, li in enumerate(enc.storage_levels):
        if arch.levels[li].leakage:
            energy += arch.levels[li].leakage * cyc * instances_at[:, enc.storage_slot[si]]
    counts = np.stack([reads, fills, updates], axis=-1) if with_counts else None
    return energy, cyc, ops, counts


def _distinct_batch(terms: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """distinct_offsets for every candidate: closed form for up to two non-trivial
    progressions, the scalar routine for the rare candidates with more."""
    counts = np.stack([c for c, _ in terms], axis=1)
    steps = np.stack([s for _, s in terms], axis=1)
    nontrivial = counts > 1
    k = nontrivial.sum(axis=1)
    out = np.prod(counts, axis=1)           # k <= 1: the product is the single count (or 1)
    two = np.nonzero(k == 2)[0]
    if two.size:
        idx = np.argsort(~nontrivial[two], axis=1, kind="stable")[:, :2]
        K = np.take_along_axis(counts[two], idx, 1)
        st = np.take_along_axis(steps[two], idx, 1).astype(np.int64)
        g = np.gcd(st[:, 0], st[:, 1])
        a1, b1 = st[:, 0] // g, st[:, 1] // g
        out[two] = np.minimum(K[:, 0], b1) * K[:, 1] + np.maximum(0, K[:, 0] - b1) * np.minimum(K[:, 1], a1)
    for row in np.nonzero(k > 2)[0]:
        out[row] = distinct_offsets(tuple((int(c), int(s)) for c, s in zip(counts[row], steps[row])))
    return out


def capacity_ok(enc: Encoding, factors: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """[n] bool: every kept tile fits its capacity partition (exact integer arithmetic)."""
    n = factors.shape[0]
    ok = np.ones(n, dtype=bool)
    inner = np.ones((n, enc.n_slots + 1, len(DIMS)), dtype=np.int64)
    for s in range(enc.n_slots - 1, -1, -1):
        inner[:, s] = inner[:, s + 1] * factors[:, s]
    for si, li in enumerate(enc.storage_levels):
        level: Storage = enc.arch.levels[li]
        ext = inner[:, enc.storage_slot[si], :]
        for tensors, capacity in level.partitions:
            words = np.zeros(n, dtype=np.int64)
            for t in tensors:
                tile = np.ones(n, dtype=np.int64)
                for axis in _axes_index(enc.layer, t):
                    e = np.ones(n, dtype=np.int64)
                    for d, c in axis:
                        e = e + c * (ext[:, d] - 1)
                    tile = tile * e
                words = words + np.where(keep[:, si, T_INDEX[t]], tile, 0)
            ok &= words <= capacity
    return ok
