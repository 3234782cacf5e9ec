"""A literal loop-nest simulator: access counts found by walking every iteration.

This is the reference the analytical model (mapper.model) is tested against. It shares
no arithmetic with the model: it does not import mapper.model and does not use
mapper.mapping's tile helpers. It enumerates every iteration of the mapping's loop nest,
computes the coordinates each iteration touches in each tensor, and derives tiles,
fills, multicast groups and reductions from those coordinate sets. From mapper it uses
only data: the architecture's levels, the layer's sizes, the mapping's loops and kept
tensors.

The counting contract it implements:

* Instance of a storage level L: the tuple of spatial loop indices of the fan-outs above L;
  only instances that occur in the nest are counted.
* Tile of t at L for fixed values of the loops outside L: the coordinates of t touched by
  the loops at L and below, as a bounding box per axis (exact ranges except the input's
  h and w, whose boxes include the halo).
* Fills: per instance, walk the temporal loops outside L in nest order, tracking the box
  the buffer holds. First step: the whole tile. Later steps: nothing if the new tile is
  exactly the held contents (whichever loop stepped); the new box minus the held one if
  the loop that incremented is r (the innermost outer temporal loop whose dimension
  indexes t); otherwise the whole new tile. Outputs exclude first touches (zero-init).
* Chain of t: the levels keeping t; each parent serves its next inner keeper (or the
  MACs). Children of one parent instance that one read serves are grouped: "exact" fan-outs
  merge children with identical tile sequences, "projection" fan-outs only children that
  agree on every loop over a dim indexing t; with a network mode, children that differ on
  an axis the mode does not share are never merged. Read-only tensors: parent reads = groups x
  fills per child, child fills = instances x fills per child. Outputs: parent reads =
  groups x (W - first touches), parent updates = groups x W (W = words loaded), psum fills
  at the child. MAC children: one operand (or read-modify-write) per MAC unit group per
  temporal iteration, the first touch of each output point per parent instance reading
  nothing. Words carried through a fan-out: every delivery to a child and every writeback.

`Conventions` selects between the variants that have been specified: where partial sums
sent down are counted (every child, or one per reduction group), whether identical tiles
are merged across two fan-outs, whether an unchanged input tile is refetched (the model
before issue 12) or not (the contract), and whether a partial overlap after a step outside
r is kept (not the contract).
"""
from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from mapper.arch import Arch, Fanout, Storage
from mapper.mapping import Mapping
from mapper.problem import DIMS, TENSORS, Layer

#: Network modes (Eyeriss v2): the fan-out axes along which children may share one parent
#: read (grouped: a row, the children with the same Y; interleaved: a column).
SHARED_AXES = {"unicast": (), "grouped": ("X",), "interleaved": ("Y",), "broadcast": ("X", "Y")}

#: Axis names of each tensor, in storage order (for messages only).
AXES = {
    "Weights": ("g", "m", "c", "r", "s"),
    "Inputs": ("n", "g", "c", "h", "w"),
    "Outputs": ("n", "g", "m", "p", "q"),
}


def tensor_coords(layer: Layer, tensor: str, c: dict[str, np.ndarray]) -> np.ndarray:
    """Coordinates of `tensor` touched by iterations with dimension coordinates `c`: (n, 5)."""
    sv, sh = layer.stride
    dv, dh = layer.dilation
    if tensor == "Weights":
        cols = [c["G"], c["M"], c["C"], c["R"], c["S"]]
    elif tensor == "Inputs":
        cols = [c["N"], c["G"], c["C"], c["P"] * sv + c["R"] * dv, c["Q"] * sh + c["S"] * dh]
    elif tensor == "Outputs":
        cols = [c["N"], c["G"], c["M"], c["P"], c["Q"]]
    else:
        raise ValueError(tensor)
    return np.stack([np.asarray(x, dtype=np.int64) for x in cols], axis=-1)


def indexing_dims(layer: Layer, tensor: str) -> frozenset[str]:
    """Dimensions whose coordinate moves `tensor`'s coordinates (probed, not tabulated)."""
    out = set()
    for d in DIMS:
        base = {x: np.zeros(1, dtype=np.int64) for x in DIMS}
        moved = dict(base)
        moved[d] = np.ones(1, dtype=np.int64)
        if not np.array_equal(tensor_coords(layer, tensor, base), tensor_coords(layer, tensor, moved)):
            out.add(d)
    return frozenset(out)


def _box_size(lo, hi) -> int:
    return math.prod(h - l + 1 for l, h in zip(lo, hi))


def _box_overlap(lo1, hi1, lo2, hi2) -> int:
    return math.prod(max(0, min(h1, h2) - max(l1, l2) + 1) for l1, h1, l2, h2 in zip(lo1, hi1, lo2, hi2))


@dataclass
class Result:
    """Access counts of one mapping, keyed by (level name, tensor) and (fan-out name, tensor)."""

    reads: dict = field(default_factory=dict)
    fills: dict = field(default_factory=dict)
    updates: dict = field(default_factory=dict)
    carried: dict = field(default_factory=dict)
    compute_cycles: int = 0
    active_pes: int = 0
    macs: int = 0
    # Features the mapping exercised (for coverage assertions), counted over the run.
    events: Counter = field(default_factory=Counter)

    def network_pj(self, arch: Arch) -> dict[str, float]:
        out = {f.name: 0.0 for f in arch.fanouts}
        for (name, t), words in self.carried.items():
            out[name] += words * arch.level(name).energy_of(t)
        return out

    def energy_pj(self, arch: Arch) -> float:
        total = 0.0
        for (name, t), n in self.reads.items():
            er, ew, eu = arch.level(name).energy_of(t)
            total += n * er + self.fills[name, t] * ew + self.updates[name, t] * eu
        total += sum(self.network_pj(arch).values())
        return total + self.macs * arch.mac_energy


class _Sim:
    def __init__(self, layer: Layer, arch: Arch, mapping: Mapping):
        self.layer, self.arch, self.mapping = layer, arch, mapping
        self.levels = arch.levels
        where = {l.name: i for i, l in enumerate(self.levels)}
        # (level index, dim, factor, spatial), outermost first, exactly as the mapping lists them.
        self.loops = [(where[l.level], l.dim, l.factor, l.spatial) for l in mapping.loops]
        lv = [l[0] for l in self.loops]
        assert lv == sorted(lv), "mapping loops are not in level order"
        for lvl, _, _, s in self.loops:
            assert (s is None) == isinstance(self.levels[lvl], Storage), "temporal/spatial mismatch"
        self.factors = [l[2] for l in self.loops]
        K = len(self.loops)
        # Every iteration of the nest, in nest order (the innermost loop varies fastest).
        if K:
            self.idx = np.indices(self.factors).reshape(K, -1).T.astype(np.int64)
        else:
            self.idx = np.zeros((1, 0), dtype=np.int64)
        # A dimension's coordinate: sum over its loops of index * (product of that
        # dimension's factors in the loops nested inside).
        coords = {d: np.zeros(self.idx.shape[0], dtype=np.int64) for d in DIMS}
        for k, (_, d, _, _) in enumerate(self.loops):
            inside = math.prod(f for _, d2, f, _ in self.loops[k + 1:] if d2 == d)
            coords[d] = coords[d] + self.idx[:, k] * inside
        sizes = layer.dims
        # With remainders the nominal nest runs past the layer: the iterations beyond a
        # dimension's end do not happen (the last step of each loop is partial).
        inside_layer = np.ones(self.idx.shape[0], dtype=bool)
        for d in DIMS:
            inside_layer &= coords[d] < sizes[d]
        self.imperfect = not bool(inside_layer.all())
        self.idx = self.idx[inside_layer]
        coords = {d: c[inside_layer] for d, c in coords.items()}
        self.n = self.idx.shape[0]
        # The nest must visit every point of the layer's iteration space exactly once.
        for d in DIMS:
            assert coords[d].min() >= 0 and coords[d].max() < sizes[d], f"dim {d} out of range"
        flat = np.zeros(self.n, dtype=np.int64)
        for d in DIMS:
            flat = flat * sizes[d] + coords[d]
        assert len(np.unique(flat)) == self.n == layer.macs, "the nest does not cover the layer once"
        self.coords = coords
        self.tc = {t: tensor_coords(layer, t, coords) for t in TENSORS}
        self.rel = {t: indexing_dims(layer, t) for t in TENSORS}
        self.spatial = [k for k, l in enumerate(self.loops) if l[3] is not None]
        self.temporal = [k for k, l in enumerate(self.loops) if l[3] is None]
        self._walks: dict = {}

    # -- per-level structure ------------------------------------------------------------
    def n_outer(self, li: int) -> int:
        """Number of loops outside level li (a prefix of the nest)."""
        return sum(1 for l in self.loops if l[0] < li)

    def walk(self, tensor: str, li: int) -> dict:
        """Per instance of level li: (words loaded W, first touches, tile-sequence identity),
        and per (instance, temporal step outside li): (box, held box, words loaded, first
        touches) in `self.steps[tensor, li]`."""
        key = (tensor, li)
        if key in self._walks:
            return self._walks[key]
        no = self.n_outer(li)
        # Blocks: runs of iterations with the same indices of the loops outside li (a
        # block is one tile; with remainders blocks differ in size).
        prefix_all = self.idx[:, :no]
        if self.n > 1 and no:
            starts = np.concatenate(([0], 1 + np.nonzero((prefix_all[1:] != prefix_all[:-1]).any(axis=1))[0]))
        else:
            starts = np.zeros(1, dtype=np.int64)
        tcs = self.tc[tensor]
        lo, hi = np.minimum.reduceat(tcs, starts, axis=0), np.maximum.reduceat(tcs, starts, axis=0)
        nb = len(starts)
        window = (3, 4) if tensor == "Inputs" else ()
        # Non-window axes must be exact index ranges (contiguous): check it on the sets.
        ends = np.append(starts[1:], self.n)
        for b in range(0, nb, max(1, nb // 50)):
            block = tcs[starts[b]:ends[b]]
            for a in range(5):
                if a not in window:
                    assert len(np.unique(block[:, a])) == hi[b, a] - lo[b, a] + 1, \
                        f"{tensor} axis {AXES[tensor][a]} tile is not a contiguous range"
        prefix = prefix_all[starts]
        sp = [k for k in self.spatial if k < no]
        tp = [k for k in self.temporal if k < no]
        rel_tp = [j for j, k in enumerate(tp) if self.loops[k][1] in self.rel[tensor] and self.factors[k] > 1]
        r = rel_tp[-1] if rel_tp else None
        by_inst: dict[tuple, list[int]] = {}
        for b in range(nb):
            by_inst.setdefault(tuple(int(v) for v in prefix[b, sp]), []).append(b)
        out = {}
        steps = {}
        lo_l, hi_l = lo.tolist(), hi.tolist()
        tv = prefix[:, tp].tolist()
        for inst, blocks in by_inst.items():
            W = first = 0
            touched: set = set()
            held = None          # the buffer's contents: the box of the tile it holds now
            prev = None
            for b in blocks:
                box = (tuple(lo_l[b]), tuple(hi_l[b]))
                size = _box_size(*box)
                if held is None:
                    fetch = size
                elif box == held:
                    # Everything the tile needs is already held: nothing is fetched, whichever
                    # loop stepped (stationarity, or p*stride + r*dilation repeating).
                    fetch = 0
                    inc = next(j for j in range(len(tp)) if tv[b][j] != tv[prev][j])
                    self.events["stationary"] += 1
                    if self.loops[tp[inc]][1] in self.rel[tensor]:
                        # A relevant loop moved (and r reset) but the contents are the same.
                        self.events[f"unchanged_after_relevant_step:{tensor}"] += 1
                        if self.conv.refetch_unchanged_tile:
                            fetch = size
                else:
                    inc = next(j for j in range(len(tp)) if tv[b][j] != tv[prev][j])
                    ov = _box_overlap(*box, *held)
                    if inc == r or self.conv.keep_overlap_after_any_step:
                        fetch = size - ov
                        if ov and inc == r:
                            self.events[f"sliding:{tensor}" if tensor == "Inputs" else "delta_overlap"] += 1
                    else:
                        fetch = size
                    if inc != r and ov:
                        self.events[f"overlap_after_outer_step:{tensor}"] += 1
                new_first = 0
                if tensor == "Outputs" and (prev is None or fetch):
                    for point in itertools.product(*(range(l, h + 1) for l, h in zip(lo_l[b], hi_l[b]))):
                        if point not in touched:
                            touched.add(point)
                            new_first += 1
                steps[inst, tuple(tv[b])] = (box, held, fetch, new_first)
                first += new_first
                held = box
                W += fetch
                prev = b
            seq = np.stack([lo[blocks], hi[blocks]], axis=1).tobytes()
            out[inst] = (W, first, seq)
        self._walks[key] = (sp, out, steps)
        return self._walks[key]

    # -- counting -------------------------------------------------------------------------
    def run(self) -> Result:
        res = Result()
        self.events = res.events
        storages = [i for i, l in enumerate(self.levels) if isinstance(l, Storage)]
        for i in storages:
            for t in self.mapping.kept(self.levels[i].name):
                k = (self.levels[i].name, t)
                res.reads[k] = res.fills[k] = res.updates[k] = 0
        for i, l in enumerate(self.levels):
            if isinstance(l, Fanout):
                for t in TENSORS:
                    res.carried[l.name, t] = 0
        temporal_tuples = {tuple(row) for row in self.idx[:, self.temporal].tolist()}
        spatial_tuples = {tuple(row) for row in self.idx[:, self.spatial].tolist()}
        res.compute_cycles = len(temporal_tuples)
        res.active_pes = len(spatial_tuples)
        res.macs = self.n

        for t in TENSORS:
            chain = [i for i in storages if t in self.mapping.kept(self.levels[i].name)]
            assert chain and chain[0] == 0, "the outermost level keeps every tensor"
            for pos, p in enumerate(chain):
                c = chain[pos + 1] if pos + 1 < len(chain) else None
                end = len(self.levels) if c is None else c
                fans = [i for i in range(p + 1, end) if isinstance(self.levels[i], Fanout)]
                parent_sp = [k for k in self.spatial if self.loops[k][0] < p]
                between = [k for k in self.spatial if p < self.loops[k][0] < end]
                if c is not None:
                    self._storage_child(res, t, p, c, parent_sp, between, fans)
                else:
                    self._mac_child(res, t, p, parent_sp, between, fans)
        return res

    def _groups(self, t, members, positions, parent_sp, between):
        """Group children (members: index tuple aligned with `positions` -> tile sequence)
        that one parent read serves; returns {member: group key}."""
        pos = {k: j for j, k in enumerate(positions)}
        fans = sorted({self.loops[k][0] for k in between})
        keys = {}
        for inst, seq in members.items():
            key = [tuple(inst[pos[k]] for k in parent_sp)]
            if self.conv.multicast_per_fanout:
                # Each fan-out merges identical tiles among its own children only: its part of
                # the key is the tile sequence of the child that agrees with this one on the
                # parent and on this fan-out's loops and has index 0 on every other fan-out in
                # between (exact), or its loops over dims indexing t (projection).
                for f in fans:
                    mine = [k for k in between if self.loops[k][0] == f]
                    mode = self.mapping.mode(self.levels[f].name, t)
                    if mode is not None:
                        # A network mode: children apart on an axis the mode does not share
                        # never share a read; among the rest, identical tile sequences do.
                        apart = tuple(inst[pos[k]] for k in mine if self.loops[k][3] not in SHARED_AXES[mode])
                        probe = tuple(v if (k not in between or k in mine) else 0
                                      for v, k in zip(inst, positions))
                        key.append((apart, members[probe]))
                    elif self.levels[f].multicast == "projection":
                        key.append(tuple(inst[pos[k]] for k in mine if self.loops[k][1] in self.rel[t]))
                    else:
                        probe = tuple(v if (k not in between or k in mine) else 0
                                      for v, k in zip(inst, positions))
                        key.append(members[probe])
            else:
                assert not any(self.mapping.mode(self.levels[f].name, t) for f in fans), \
                    "network modes are modelled per fan-out only"
                key.append(tuple(inst[pos[k]] for k in between
                                 if self.levels[self.loops[k][0]].multicast == "projection"
                                 and self.loops[k][1] in self.rel[t]))
                key.append(seq)
            keys[inst] = tuple(key)
        # Coverage bookkeeping: multicast / reduction, and merges of children that differ in
        # an index of a dim that indexes t (the diagonal reuse only exact multicast sees).
        if between:
            n_groups = len(set(keys.values()))
            if n_groups < len(members):
                self.events["multicast" if t != "Outputs" else "reduction"] += 1
            rel = [k for k in between if self.loops[k][1] in self.rel[t]]
            n_rel = len({tuple(inst[pos[k]] for k in parent_sp + rel) for inst in members})
            if n_groups < n_rel:
                self.events[f"diagonal:{t}"] += 1
        return keys

    def _storage_child(self, res, t, p, c, parent_sp, between, fans):
        if self.imperfect or self.conv.per_step:
            return self._storage_child_steps(res, t, p, c, parent_sp, between, fans)
        sp, stats, _ = self.walk(t, c)
        keys = self._groups(t, {inst: v[2] for inst, v in stats.items()}, sp, parent_sp, between)
        groups: dict = {}
        for inst, (W, first, _) in stats.items():
            assert groups.setdefault(keys[inst], (W, first)) == (W, first), \
                "children served by one read have different fills"
        self._account(res, t, p, c, groups, stats, fans)
        if len(stats) > len({tuple(inst[:len(parent_sp)]) for inst in stats}):
            self.events["fanout_between"] += 1

    def _account(self, res, t, p, c, groups, stats, fans):
        """Counts of a storage child from its groups' (W, first) (one parent read each) and
        every child's (W, first, _)."""
        P, C = self.levels[p].name, self.levels[c].name
        all_W = sum(W for W, _, _ in stats.values())
        if t == "Outputs":
            down = sum(W - first for W, first in groups.values())   # partial sums sent down
            res.reads[P, t] += down
            res.updates[P, t] += sum(W for W, _ in groups.values())  # reduced writebacks
            if self.conv.psum_fill_every_child:
                received = sum(W - first for W, first, _ in stats.values())
            else:
                received = down
            res.fills[C, t] += received
            for f in fans:
                res.carried[self.levels[f].name, t] += received + all_W
        else:
            res.reads[P, t] += sum(W for W, _ in groups.values())
            res.fills[C, t] += all_W
            for f in fans:
                res.carried[self.levels[f].name, t] += all_W

    def _step_key(self, t, inst, positions, parent_sp, between, box_at):
        """Per-step grouping (nests with remainders, where children drop out of partial
        passes): at one step, the children one parent read serves. Per fan-out f between
        parent and child, as in `_groups` but on the tiles of this step only: the tile of
        the child that agrees on the parent and on f's loops and has index 0 on the other
        fan-outs (exact), or f's loops over dims indexing t (projection); a network mode
        also keeps apart children on an axis it does not share."""
        pos = {k: j for j, k in enumerate(positions)}
        assert self.conv.multicast_per_fanout, "per-step grouping is modelled per fan-out"
        key = [tuple(inst[pos[k]] for k in parent_sp)]
        for f in sorted({self.loops[k][0] for k in between}):
            mine = [k for k in between if self.loops[k][0] == f]
            mode = self.mapping.mode(self.levels[f].name, t)
            probe = tuple(v if (k not in between or k in mine) else 0 for v, k in zip(inst, positions))
            if mode is not None:
                apart = tuple(inst[pos[k]] for k in mine if self.loops[k][3] not in SHARED_AXES[mode])
                key.append((apart, box_at(probe)))
            elif self.levels[f].multicast == "projection":
                key.append(tuple(inst[pos[k]] for k in mine if self.loops[k][1] in self.rel[t]))
            else:
                key.append(box_at(probe))
        return tuple(key)

    def _storage_child_steps(self, res, t, p, c, parent_sp, between, fans):
        """`_storage_child` with children grouped per step (see `_step_key`): the parent
        reads, per step, each distinct group's fetch once."""
        sp, stats, steps = self.walk(t, c)
        groups: dict = {}
        for (inst, tv), (box, held, fetch, first) in steps.items():
            key = (tv, self._step_key(t, inst, sp, parent_sp, between, lambda q: steps[q, tv][0]), box, held)
            assert groups.setdefault(key, (fetch, first)) == (fetch, first), \
                "children served by one read fetch different words"
        if len(groups) < len(steps) and between:
            self.events["multicast" if t != "Outputs" else "reduction"] += 1
        # (groups differ per step, so a group's (W, first) here is its step's fetch)
        self._account(res, t, p, c, groups, stats, fans)

    def _mac_child_steps(self, res, t, p, parent_sp, between, fans):
        """`_mac_child` with MAC units grouped per iteration (see `_step_key`)."""
        P = self.levels[p].name
        sps, tps = self.spatial, self.temporal
        point = {}
        for i, row in enumerate(self.idx.tolist()):
            point[tuple(row[k] for k in sps), tuple(row[k] for k in tps)] = tuple(self.tc[t][i].tolist())
        keys = {(tv, self._step_key(t, u, sps, parent_sp, between, lambda q: point[q, tv]))
                for (u, tv) in point}
        G = len(keys)
        if t == "Outputs":
            pos = {k: j for j, k in enumerate(sps)}
            first = len({(tuple(u[pos[k]] for k in parent_sp), pt) for (u, _), pt in point.items()})
            res.updates[P, t] += G
            res.reads[P, t] += G - first
        else:
            res.reads[P, t] += G
        for f in fans:
            res.carried[self.levels[f].name, t] += self.n

    def _mac_child(self, res, t, p, parent_sp, between, fans):
        if self.imperfect or self.conv.per_step:
            return self._mac_child_steps(res, t, p, parent_sp, between, fans)
        P = self.levels[p].name
        sps = self.spatial
        if sps:
            unit = np.ravel_multi_index(self.idx[:, sps].T, [self.factors[k] for k in sps])
        else:
            unit = np.zeros(self.n, dtype=np.int64)
        order = np.argsort(unit, kind="stable")
        n_units = len(np.unique(unit))
        ops = self.n // n_units
        seqs = self.tc[t][order].reshape(n_units, ops, 5)
        unit_idx = self.idx[order][::ops][:, sps].tolist()
        members = {tuple(unit_idx[u]): seqs[u].tobytes() for u in range(n_units)}
        assert len(members) == n_units
        G = len(set(self._groups(t, members, sps, parent_sp, between).values()))
        if t == "Outputs":
            # Read-modify-write per temporal iteration per group; the first touch of each
            # point (per parent instance) reads nothing.
            if parent_sp:
                parent = np.ravel_multi_index(self.idx[:, parent_sp].T, [self.factors[k] for k in parent_sp])
            else:
                parent = np.zeros(self.n, dtype=np.int64)
            rows = np.concatenate([parent[:, None], self.tc[t]], axis=1)
            first = len(np.unique(rows, axis=0))
            res.updates[P, t] += G * ops
            res.reads[P, t] += G * ops - first
        else:
            res.reads[P, t] += G * ops        # one operand per MAC unit group per iteration
        for f in fans:
            res.carried[self.levels[f].name, t] += n_units * ops


@dataclass(frozen=True)
class Conventions:
    """Points where counting conventions differ (the defaults are the contract as the
    model's docstring states it today).

    psum_fill_every_child: partial sums sent back down below a reducing fan-out count as a
        fill at every child (Timeloop, the model's docstring); False: at one child per
        reduction group (the original contract, rule 7).
    multicast_per_fanout: a fan-out merges identical tiles only among its own X x Y children,
        so across two fan-outs the group counts multiply (Timeloop, the model's docstring);
        False: identical tiles are merged across all fan-outs between parent and child.
    refetch_unchanged_tile: when a relevant loop outside r steps (r resets) and the input
        tile comes back identical (p*stride + r*dilation hits the same rows), refetch the
        whole tile (the model's rule before issue 12). False (the contract): the buffer
        already holds every word of the new tile, so nothing is fetched (Timeloop's deltas
        agree).
    per_step: group the children one parent read serves per step, not per whole tile
        sequence (the same counts on perfect nests; nests with remainders always do, since a
        child idle in a partial pass shares the other steps' reads).
    keep_overlap_after_any_step: after a step of a loop other than r that lands the tile
        partly on the held one, fetch only the words not held (a buffer that keeps whatever
        the next tile reuses). False (the contract, and Timeloop's reset of its deltas when
        the tile's stride changes): refetch the whole tile. Not a difference of the model;
        the option measures what that convention costs.
    """

    psum_fill_every_child: bool = True
    multicast_per_fanout: bool = True
    per_step: bool = False          # group children per step (always, for nests with remainders)
    refetch_unchanged_tile: bool = False
    keep_overlap_after_any_step: bool = False


#: The model's documented conventions (mapper/model.py docstring).
MODEL = Conventions()
#: The model before issue 12: a step outside r that lands the input tile on the rows the
#: buffer holds refetched it anyway.
REFETCH_UNCHANGED = Conventions(refetch_unchanged_tile=True)
#: The contract as first stated (one child per reduction group receives partial sums;
#: identical tiles merged across every fan-out between parent and child).
ORIGINAL = Conventions(psum_fill_every_child=False, multicast_per_fanout=False)


def simulate(layer: Layer, arch: Arch, mapping: Mapping, conventions: Conventions = MODEL) -> Result:
    """Count every access of `mapping` by walking its loop nest (see the module docstring)."""
    sim = _Sim(layer, arch, mapping)
    sim.conv = conventions
    return sim.run()
