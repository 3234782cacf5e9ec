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
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

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
_RELEVANT_BITS = np.array([sum(1 << ti for ti, t in enumerate(TENSORS) if d in RELEVANT[t]) for d in DIMS],
                          dtype=np.uint8)


@dataclass(frozen=True)
class Encoding:
    """How mappings of one layer on one architecture become arrays."""

    layer: Layer
    arch: Arch
    slots: tuple[tuple[int, str], ...]        # (arch level index, "T" | "X" | "Y")
    storage_levels: tuple[int, ...]           # arch level index of each storage level
    storage_slot: tuple[int, ...]             # slot of each storage level
    mode_fans: tuple[int, ...] = ()           # arch level index of each fan-out with network modes

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
    from .remainder_batch import evaluate_remainders, remainder_rows
    odd = remainder_rows(enc, factors)
    if odd.any():
        # Remainder nests are counted exactly by the scalar model, one at a time; the
        # perfect ones stay vectorized.
        out = BatchCost(np.zeros(n), np.zeros(n), np.zeros(n), np.zeros((n, len(enc.storage_levels), 3, 3))
                        if with_counts else None, np.zeros((n, len(enc.mode_fans), len(TENSORS)), dtype=np.int64))
        rest = np.nonzero(~odd)[0]
        if len(rest):
            part = evaluate_batch(enc, factors[rest], orders[rest], keep[rest],
                                  None if modes is None else modes[rest], objective, with_counts)
            for f in ("energy_pj", "cycles", "compute_cycles", "counts", "modes"):
                if getattr(out, f) is not None:
                    getattr(out, f)[rest] = getattr(part, f)
        idx = np.nonzero(odd)[0]
        e, cyc, comp, cnt, md = evaluate_remainders(enc, factors[idx], orders[idx], keep[idx],
                                                    None if modes is None else modes[idx], objective, with_counts)
        out.energy_pj[idx], out.cycles[idx], out.compute_cycles[idx], out.modes[idx] = e, cyc, comp, md
        if with_counts:
            out.counts[idx] = cnt
        return out
    if n > 2 * CHUNK:
        # Blocks of a few thousand candidates keep the working arrays in cache (about 2x faster).
        parts = [evaluate_batch(enc, factors[i:i + CHUNK], orders[i:i + CHUNK], keep[i:i + CHUNK],
                                None if modes is None else modes[i:i + CHUNK], objective, with_counts)
                 for i in range(0, n, CHUNK)]
        cat = lambda xs: None if xs[0] is None else np.concatenate(xs)   # noqa: E731
        return BatchCost(*(cat([getattr(p, f) for p in parts])
                           for f in ("energy_pj", "cycles", "compute_cycles", "counts", "modes")))
    energy, cycles, ops = np.zeros(n), np.zeros(n), np.ones(n)
    counts = np.zeros((n, len(enc.storage_levels), 3, 3)) if with_counts else None
    chosen = np.zeros((n, len(enc.mode_fans), len(TENSORS)), dtype=np.int64)
    all_assignments = enc.assignments()
    # Candidates with the same keep pattern (and fixed modes) share their level chains.
    flat = keep.reshape(n, -1)
    code = flat.astype(np.int64) @ (1 << np.arange(flat.shape[1], dtype=np.int64))
    if modes is not None and enc.mode_fans:
        # the row of each candidate's modes in all_assignments (itertools.product order:
        # mixed radix, the last fan-out's last tensor varying fastest)
        radix = np.array([len(enc.arch.levels[i].modes_of(t)) for i in enc.mode_fans for t in TENSORS])
        weight = np.concatenate([np.cumprod(radix[::-1])[::-1][1:], [1]])
        code = code * len(all_assignments) + modes.reshape(n, -1) @ weight
    ordered_codes = np.sort(code)       # (np.unique hashes, several times slower here)
    for c in ordered_codes[np.concatenate(([True], ordered_codes[1:] != ordered_codes[:-1]))]:
        rows = np.nonzero(code == c)[0]
        pattern = flat[rows[0]].reshape(keep.shape[1:])
        assign = all_assignments if modes is None or not enc.mode_fans else modes[rows[:1]]
        whole = len(rows) == n               # one pattern: no need to gather copies
        e, cyc, o, cnt, pick = _evaluate_pattern(enc, factors if whole else factors[rows],
                                                 orders if whole else orders[rows], pattern, assign,
                                                 objective, with_counts)
        energy[rows], cycles[rows], ops[rows] = e, cyc, o
        if with_counts:
            counts[rows] = cnt
        chosen[rows] = assign[pick]
    return BatchCost(energy, cycles, ops, counts, chosen)


def _evaluate_pattern(enc: Encoding, F: np.ndarray, orders: np.ndarray, keep: np.ndarray,
                      assign: np.ndarray, objective: str, with_counts: bool):
    """One keep pattern; `assign` [A, mode fan-outs, 3] lists the network-mode choices to
    evaluate (the cheapest per candidate by `objective` is kept).

    Working arrays keep the candidate axis last, so every per-slot, per-dimension or
    per-level row is one contiguous vector (about twice as fast as candidate-major)."""
    arch, layer = enc.arch, enc.layer
    A = len(assign)
    sparse = Sparse.of(layer, arch)
    n, S, ND = F.shape
    Ff = np.ascontiguousarray(F.transpose(1, 2, 0), dtype=np.float64)     # [S, 8, n]
    # inner[s, d]: product of dimension d's factors in slots s.. (inside and at slot s).
    inner = np.ones((S + 1, ND, n))
    for s in range(S - 1, -1, -1):
        np.multiply(inner[s + 1], Ff[s], out=inner[s])
    temporal = [s for s, (_, k) in enumerate(enc.slots) if k == "T"]
    spatial = [s for s, (_, k) in enumerate(enc.slots) if k != "T"]
    slot_prod = np.prod(Ff, axis=1)                                          # [S, n]
    ops = np.prod(slot_prod[temporal], axis=0) if temporal else np.ones(n)
    mac_units = np.prod(slot_prod[spatial], axis=0) if spatial else np.ones(n)
    # used instances of each slot's level: spatial factors in slots above it
    per_slot_spatial = slot_prod.copy()
    per_slot_spatial[temporal] = 1.0
    instances_at = np.ones((S + 1, n))
    for s in range(S):
        np.multiply(instances_at[s], per_slot_spatial[s], out=instances_at[s + 1])

    n_st = len(enc.storage_levels)
    reads = np.zeros((n_st, 3, A, n))       # reads and updates may depend on the network modes
    fills = np.zeros((n_st, 3, n))
    updates = np.zeros((n_st, 3, A, n))
    carried = {}
    demand = {}                              # (fan-out level, tensor) -> [A, n] words per fan-out instance
    rows = np.arange(n)
    # Each storage level's temporal loops, innermost first: the dimension and factor at each
    # position, and the product of the factors of the loops outside each position.
    st_slots = list(enc.storage_slot)
    O = np.ascontiguousarray(orders[:, :, ::-1].transpose(1, 2, 0))        # [st, 8, n] dims
    level_f = Ff[st_slots]                                                  # [st, 8, n] by dim
    # ordered[si, q] = level_f[si, O[si, q]]: one gather in the flattened array
    level_offset = rows + (np.arange(n_st) * (ND * n))[:, None]           # [st, n]
    ordered = level_f.reshape(-1)[O * n + level_offset[:, None, :]]
    outside = np.ones_like(ordered)
    for q in range(ND - 2, -1, -1):
        np.multiply(outside[:, q + 1], ordered[:, q + 1], out=outside[:, q])
    iterating = ordered > 1
    relevant_bits = _RELEVANT_BITS.take(O)          # bit ti set: the loop's dim matters to tensor ti
    level_prod = slot_prod[st_slots]                                        # [st, n]
    outer_prod = np.ones((n_st, n))
    for si in range(1, n_st):
        outer_prod[si] = outer_prod[si - 1] * level_prod[si - 1]

    tiles = {}

    def tile_of(ti: int, slot: int):
        if (ti, slot) not in tiles:
            tiles[ti, slot] = _tile(ti, slot)
        return tiles[ti, slot]

    def _tile(ti: int, slot: int):
        return _tile_extents(layer, TENSORS[ti], inner[slot], np.ones(n))

    reuse_cache = {}

    def reuse(ti: int):
        """Per storage level si: where the innermost relevant outer loop r is (found, sweeps,
        bound, dim, slot) and the product of the relevant outer factors (for first touches)."""
        if ti in reuse_cache:
            return reuse_cache[ti]
        rel = np.array([d in RELEVANT[TENSORS[ti]] for d in DIMS])
        mask = ((relevant_bits & (1 << ti)) != 0) & iterating               # [st, 8, n]
        # each level's innermost relevant loop r (if it has one): the lowest set bit of the
        # mask's positions packed into a byte (much faster than argmax over a middle axis)
        code = np.einsum("sqn,q->sn", mask.view(np.uint8), _POSITION_BITS)
        has = code != 0
        at = _LOWEST_BIT.take(code) * n + level_offset                     # [st, n]
        r_bound, r_before, r_dim = (a.reshape(-1)[at] for a in (ordered, outside, O))
        rel_prod = np.prod(level_f[:, rel], axis=1)                         # [st, n]
        found = np.zeros(n, dtype=bool)
        sweeps, bound, dim, slot = np.ones(n), np.ones(n), np.zeros(n, np.int64), np.zeros(n, np.int64)
        touched = np.ones(n)
        out = [(found, sweeps, bound, dim, slot, touched)]      # the outermost level: no loops outside
        for si in range(1, n_st):
            so = si - 1
            h = has[so]
            # a level with a relevant loop holds the new r; one without lies inside r (no change)
            sweeps = np.where(h, outer_prod[so] * r_before[so], sweeps)
            bound = np.where(h, r_bound[so], bound)
            dim = np.where(h, r_dim[so], dim)
            slot = np.where(h, st_slots[so], slot)
            found = found | h
            touched = touched * rel_prod[so]
            out.append((found, sweeps, bound, dim, slot, touched))
        reuse_cache[ti] = out
        return out

    def fills_of(ti: int, si: int):
        """(fetched per instance, distinct touched per instance) at storage si for tensor ti."""
        tile, extents = tile_of(ti, enc.storage_slot[si])
        found, sweeps, r_bound, r_dim, r_slot, touched = reuse(ti)[si]
        # Only a sliding axis (two dimensions, e.g. P and R over input rows) can overlap
        # between consecutive tiles; a step along any other axis brings a disjoint tile.
        overlap = np.zeros(n)
        sliding = [(axis, extent) for axis, extent in zip(_axes_index(layer, TENSORS[ti]), extents)
                   if len(axis) > 1]
        if sliding:
            # step of loop r: its dimension's factors in all slots after r's slot
            step = inner[r_slot + 1, r_dim, rows]
            for axis, extent in sliding:
                coef = np.zeros(len(DIMS))
                for d, c in axis:
                    coef[d] = c
                shift = coef[r_dim] * step
                overlap = np.where(shift > 0, tile / extent * np.maximum(0.0, extent - shift), overlap)
        fetched = np.where(found, sweeps * (tile + (r_bound - 1) * (tile - overlap)), tile)
        if sliding:
            fetched = fetched - tile * unchanged_steps(ti, si)
        return fetched, tile * touched

    def unchanged_steps(ti: int, si: int):
        """Steps of the loops outside storage si that bring back exactly the held tile of ti,
        counted per instance (see _unchanged_steps)."""
        return _unchanged_steps(_axes_index(layer, TENSORS[ti]), si, st_slots, level_f, inner, outer_prod,
                                O, iterating)

    exact_cache = {}

    def exact_part(ti: int, li: int, axes: str):
        """Distinct tile offsets along every axis of tensor ti among the children of fan-out
        li that differ only on the fan-out axes in `axes` (those sharing reads exactly)."""
        key = (ti, li, axes)
        if key not in exact_cache:
            fan_slots = [s for s in spatial if enc.slots[s][0] == li and enc.slots[s][1] in axes]
            total = np.ones(n)
            for axis in _axes_index(layer, TENSORS[ti]):
                if len(axis) > 1:
                    total = total * _distinct_batch([(Ff[s, d], c * inner[s + 1, d])
                                                     for s in fan_slots for d, c in axis])
                else:
                    # one dimension per axis: nested progressions never collide -> product
                    for s in fan_slots:
                        total = total * Ff[s, axis[0][0]]
            exact_cache[key] = total
        return exact_cache[key]

    def fanout_part(ti: int, li: int, credit: dict[str, str]):
        fan_slots = [s for s in spatial if enc.slots[s][0] == li]
        rel = np.array([d in RELEVANT[TENSORS[ti]] for d in DIMS])
        part = exact_part(ti, li, "".join(a for a in "XY" if credit[a] == "exact"))
        for s in fan_slots:
            label = credit[enc.slots[s][1]]
            if label == "none":
                part = part * per_slot_spatial[s]
            elif label == "projection":
                part = part * np.prod(Ff[s, rel], axis=0)
        return part

    def groups_of(ti: int, parent_si: int, child_si: int | None):
        """[A, n]: distinct child tiles per parent instance (the product over the fan-outs in
        between of the distinct tiles each creates, under each mode choice) times the
        parent's instances."""
        p_level = enc.storage_levels[parent_si]
        c_level = len(arch.levels) if child_si is None else enc.storage_levels[child_si]
        total = np.ones((A, 1)) * instances_at[enc.storage_slot[parent_si]]
        for li in range(p_level + 1, c_level):
            fan = arch.levels[li]
            if not isinstance(fan, Fanout):
                continue
            if li in enc.mode_fans:
                j = enc.mode_fans.index(li)
                options = fan.modes_of(TENSORS[ti])
                per_mode = np.stack([fanout_part(ti, li, fan.credit(m)) for m in options])
                total = total * per_mode[assign[:, j, ti]]
            else:
                total = total * fanout_part(ti, li, fan.credit(None))
        return total

    copies_of = {MACS: mac_units}
    for link in links(arch, enc.storage_levels, keep, sparse):
        ti = link.tensor
        copies_of[DISTINCT] = groups_of(ti, link.parent, link.child)
        copies_of[PARENT] = instances_at[enc.storage_slot[link.parent]]
        if link.child is not None:
            copies_of[CHILD] = instances_at[enc.storage_slot[link.child]]
        quantities = {OPS: ops}
        if link.child is not None or ti == T_INDEX["Outputs"]:
            quantities[FETCHED], quantities[TOUCHED] = fills_of(ti, link.parent if link.child is None else link.child)

        products = {}

        def product(term):
            """copies x quantity (each computed once per link: several terms share one)."""
            key = term.copies, term.quantity
            if key not in products:
                products[key] = copies_of[term.copies] * quantities[term.quantity]
            return products[key]

        def total(terms):
            return _weighted_sum([(t.coefficient, product(t)) for t in terms])

        for x in link.counts:
            counted = {READS: reads, FILLS: fills, UPDATES: updates}[x.kind][x.storage, ti]
            c = x.term.coefficient
            if c == 1.0:
                counted += product(x.term)
            elif c == -1.0:
                counted -= product(x.term)
            else:
                counted += c * product(x.term)
        if link.fanouts:
            words, down = total(link.words), total(link.down)
            for i in link.fanouts:
                carried[i, ti] = carried.get((i, ti), 0.0) + words
                fan_inst = instances_at[enc.slots.index((i, "X"))]
                demand[i, ti] = demand.get((i, ti), 0.0) + down / fan_inst

    energy = np.zeros((A, n))
    compute = ops * sparse.mac_cycles
    cyc = np.ones((A, 1)) * compute
    for si, li in enumerate(enc.storage_levels):
        level: Storage = arch.levels[li]
        for ti, t in enumerate(TENSORS):
            if keep[si, ti]:
                er, ew, eu = level.energy_of(t)
                energy += reads[si, ti] * er + fills[si, ti] * ew + updates[si, ti] * eu
        inst = instances_at[enc.storage_slot[si]]
        r = reads[si].sum(axis=0) / inst
        w = (fills[si][:, None, :] + updates[si]).sum(axis=0) / inst
        if level.read_bw:
            cyc = np.maximum(cyc, r / level.read_bw)
        if level.write_bw:
            cyc = np.maximum(cyc, w / level.write_bw)
        if level.shared_bw:
            cyc = np.maximum(cyc, (r + w) / level.shared_bw)
    for (i, ti), words in carried.items():
        fan: Fanout = arch.levels[i]
        energy += words * fan.energy_of(TENSORS[ti])
        if fan.limited(TENSORS[ti]):
            if i in enc.mode_fans:
                options = fan.modes_of(TENSORS[ti])
                bw = np.array([fan.bandwidth(TENSORS[ti], options[m]) for m in assign[:, enc.mode_fans.index(i), ti]])
            else:
                bw = np.full(A, fan.bandwidth(TENSORS[ti], None))
            cyc = np.maximum(cyc, demand[i, ti] / bw[:, None])
    energy += layer.macs * arch.mac_energy * sparse.mac_energy
    # The scalar model rounds up after taking the max; tolerate float noise the same way.
    cyc = np.ceil(cyc - 1e-9)
    for si, li in enumerate(enc.storage_levels):
        if arch.levels[li].leakage:
            energy += arch.levels[li].leakage * cyc * instances_at[enc.storage_slot[si]]
    if arch.cycle_energy:
        energy += arch.cycle_energy * cyc
    compute = np.ceil(compute - 1e-9)
    if A == 1:
        pick = np.zeros(n, dtype=np.int64)
    else:
        # the best mode choice per candidate; ties go to the lower energy, then the first listed
        value = objective_of(objective, energy, cyc, np.ones((A, 1)) * compute)
        best = value.min(axis=0, keepdims=True)
        tie = value <= best * (1 + 1e-12)
        pick = np.argmin(np.where(tie, energy, np.inf), axis=0)
    sel = (pick, rows)
    counts = None
    if with_counts:
        counts = np.stack([reads[:, :, pick, rows], fills, updates[:, :, pick, rows]],
                          axis=-1).transpose(2, 0, 1, 3)
    return energy[sel], cyc[sel], compute, counts, pick


def _unchanged_steps(axes, si: int, st_slots, level_f, inner, outer_prod, O, iterating) -> np.ndarray:
    """[n]: steps of the loops outside storage si that bring back exactly the held tile of a
    tensor with `axes` (model._Nest.unchanged: the moves of a two-dimension axis cancel),
    counted per instance; each saves a whole tile.

    Such a step is rare, so a cheap bitmask test first finds the candidates that may have
    one, and the exact arithmetic runs on those only. A step of loop k over dimension dk
    moves dk forward (by more than its own resets, which telescope) and resets the loops
    inside k; every axis must end where it was, so the resetting loops may only be over dk
    and dimensions sharing an axis with dk, and at least one of those partners must reset.
    """
    n = level_f.shape[-1]
    saved = np.zeros(n)
    weighted = [(d, c) for axis in axes for d, c in axis if c]
    multi = [axis for axis in axes if len(axis) > 1]
    if not multi or si == 0:
        return saved
    bit = lambda ds: sum(1 << d for d in set(ds))            # noqa: E731
    counted = np.uint8(bit(d for d, _ in weighted))           # dims whose resets move the tile
    allowed = np.zeros(len(DIMS), dtype=np.uint8)             # dk and the dims sharing an axis
    partner = np.zeros(len(DIMS), dtype=np.uint8)
    for axis in multi:
        for d, _ in axis:
            allowed[d] |= bit(e for e, _ in axis)
            partner[d] |= bit(e for e, _ in axis if e != d)
    # dims iterating at each storage level, one bit each
    level_bits = np.einsum("sdn,d->sn", (level_f[:si] > 1).view(np.uint8), _POSITION_BITS)
    maybe = np.zeros(n, dtype=bool)
    between = np.zeros(n, dtype=np.uint8)          # dims iterating at the levels inside so, outside si
    for so in range(si - 1, -1, -1):
        bits = np.where(iterating[so], np.left_shift(np.uint8(1), O[so].astype(np.uint8)), np.uint8(0))
        inside = np.zeros_like(bits)               # dims iterating at level so's positions inside q
        np.bitwise_or.accumulate(bits[:-1], axis=0, out=inside[1:])
        resets = (inside | between) & counted
        ok = iterating[so] & ((resets & ~allowed.take(O[so])) == 0) & ((resets & partner.take(O[so])) != 0)
        maybe |= ok.any(axis=0)
        between |= level_bits[so]
    rows = np.nonzero(maybe)[0]
    if not len(rows):
        return saved
    level_f, inner, outer_prod, O = level_f[..., rows], inner[..., rows], outer_prod[..., rows], O[..., rows]
    window = sorted({d for axis in multi for d, _ in axis})
    part = np.zeros(len(rows))
    # term[so][d]: how far level so's loop over d resets when a loop outside it steps
    term = [(level_f[so] - 1) * inner[st_slots[so] + 1] for so in range(si)]
    between = np.zeros((len(DIMS), len(rows)))   # resets of the levels strictly inside so, outside si
    for so in range(si - 1, -1, -1):
        pos = np.argsort(O[so], axis=0)          # pos[d]: dimension d's position (0 = innermost)
        for dk in window:
            b = level_f[so, dk]
            inside = pos < pos[dk]                              # [8, rows] loops nested in k
            move = -(between + term[so] * inside)
            move[dk] += inner[st_slots[so] + 1, dk]
            same = b > 1
            for axis in axes:
                same &= sum(c * move[d] for d, c in axis) == 0
            if same.any():
                count = outer_prod[so] * np.prod(np.where(pos > pos[dk], level_f[so], 1.0), axis=0) * (b - 1)
                part += np.where(same, count, 0.0)
        between = between + term[so]
    saved[rows] = part
    return saved


def _weighted_sum(terms):
    """sum of coefficient x array, without multiplying by 1."""
    out = None
    for c, a in terms:
        v = a if c == 1.0 else c * a
        out = v if out is None else out + v
    return out


def _distinct_batch(terms: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """distinct_offsets for every candidate: closed form for up to two non-trivial
    progressions, the scalar routine for the rare candidates with more."""
    if not terms:
        return 1.0
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
