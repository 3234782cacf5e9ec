"""The analytical cost model: exact access counts, energy and cycles of one mapping.

This is the readable reference path; `mapper.batch` computes the same numbers for many
candidates at once with numpy and is tested against this module. Both are tested against
a literal loop-nest simulator (tests/oracle.py).

Counting conventions (per tensor t and storage level L that keeps t; "instance" is one
copy of L below the fan-outs, and only instances that receive work are counted):

* Tile. L holds the data touched by the loops at L and below, as a box per tensor axis;
  an input tile spanning p output rows and r filter rows has (p-1)*stride + (r-1)*dilation
  + 1 rows (the halo).
* Fills (temporal reuse). The loops outside L, in nest order, step L through a sequence of
  tiles. A tile stays resident while only loops irrelevant to t iterate (stationarity).
  Let r be the innermost outer loop that is relevant to t: each step of r fetches only the
  part of the next tile not in the current one (for inputs, the sliding window keeps the
  overlapping rows or columns); a step of a loop k outside r refetches the whole tile,
  unless the new tile is exactly the one held: on an input axis p*stride + r*dilation, k's
  move can cancel the reset of the loops inside it (e.g. R steps by dilation while P's
  loops return by stride x their span), and then nothing is fetched (`_Nest.unchanged`).
  Hence fills = T * (sweeps - unchanged steps) + sweeps * (b_r - 1) * (T - overlap_r), with
  sweeps the product of the bounds outside r. This follows Timeloop's nest analysis
  (reference/timeloop/README.md): as its source reads, it fetches the difference from the
  held tile but drops the held tile when the tile's stride changes, unless the whole tile
  stays resident (the unchanged case is not checked against timeloop-model's output here).
* Outputs. Partial sums start at zero: the first touch of each output point is not
  fetched (fills exclude it). Every resident tile is written back to the next outer level
  that keeps Outputs when it leaves (an update there). At the innermost level keeping
  Outputs each MAC is a read-modify-write: updates = MACs, reads = MACs - first touches.
  Reading a tile to drain it upward is not counted as a read (as in Timeloop).
* Multicast and spatial reduction. Below a fan-out, children that need identical data
  (identical tiles) share one read of the parent: parent reads = distinct child tiles x
  fills per child. A fan-out with `multicast: exact` recognises every identical tile among
  its own X x Y children, including the diagonal reuse of input rows in a row-stationary
  array (equal p*stride + r*dilation); `multicast: projection` only recognises replication
  by a loop over a dimension that does not index t. Across two fan-outs the counts multiply
  (children of different parents are never merged), as in Timeloop, which compares
  children within one spatial level. Children writing the same output tile are reduced in
  the network: the parent sees one update per distinct tile; partial sums sent back down
  are read once per group and, as in Timeloop, counted as a fill at every child.
* Reads of the innermost level that keeps a read-only tensor: one per MAC (no operand
  register below it); multicast applies if a fan-out sits between that level and the MACs
  (e.g. a SIMD fan-out below the innermost storage: two MAC lanes sharing one input read).
* Energy = sum over levels and tensors of reads*read + fills*write + updates*update
  (per-word energies), + words carried through each fan-out * its energy per word (each
  delivery to a child and each writeback from one), + MACs * MAC energy.
* Leakage: a level with `leakage` (pJ per cycle per instance) adds leakage x cycles x active
  instances; the arch's `cycle_energy` (clock network, static power of the whole chip)
  adds cycle_energy x cycles. Off-chip energy is the outermost level's (accesses and
  leakage); chip energy is the rest.
* Cycles = max(compute cycles, each level's bandwidth-bound cycles), where compute cycles =
  MACs per active MAC unit and a level's cycles = its per-instance reads / read bandwidth,
  (fills + updates) / write bandwidth, or their sum / shared bandwidth, whichever is largest;
  a fan-out with `port_words` bounds each tensor's words per fan-out instance by
  Fanout.bandwidth (streams of the network mode x ports x words per port). EDP = energy (pJ) x cycles.
* Utilization = performed MACs / (cycles x all MAC units) (`utilization`; a network's is
  `network_utilization`). Performed MACs are the MACs that take a MAC unit's cycle: the
  layer's MACs x the fraction the arch does not skip in cycles (`Sparse.mac_cycles`: the
  effectual fraction where zeros are skipped, 1 where they are only gated), the count the
  compute cycles are made of. So utilization is at most 1, and equals MACs / (cycles x MAC
  units) when nothing is skipped; `Cost.macs` stays the layer's (dense) MAC count.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from .arch import Arch, Fanout, Storage
from .mapping import Mapping, check, footprint, tensor_axes
from .problem import DIMS, RELEVANT, TENSORS, Layer


@dataclass(frozen=True)
class Counts:
    """Accesses of one tensor at one storage level, summed over its instances."""

    reads: int = 0
    fills: int = 0
    updates: int = 0
    energy_pj: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"reads": self.reads, "fills": self.fills, "updates": self.updates,
                "energy_pj": self.energy_pj}


@dataclass(frozen=True)
class Cost:
    """Everything the model says about one mapping."""

    macs: int
    energy_pj: float
    cycles: int
    compute_cycles: int
    utilization: float
    active_pes: int
    performed_macs: float       # the MACs that take a MAC unit's cycle (see `utilization`)
    levels: dict[str, dict[str, Counts]] = field(default_factory=dict)
    network_pj: dict[str, float] = field(default_factory=dict)
    mac_pj: float = 0.0
    level_cycles: dict[str, float] = field(default_factory=dict)
    leakage_pj: float = 0.0
    cycle_pj: float = 0.0       # cycles x the arch's per-cycle (clock, static) energy
    offchip_pj: float = 0.0     # the outermost level's (DRAM's) accesses and leakage

    @property
    def chip_energy_pj(self) -> float:
        """Energy spent on chip: everything but the outermost (off-chip) level's."""
        return self.energy_pj - self.offchip_pj

    @property
    def edp(self) -> float:
        return self.energy_pj * self.cycles

    @property
    def pj_per_mac(self) -> float:
        return self.energy_pj / self.macs

    def bottleneck(self) -> tuple[str, float]:
        """(storage level whose bandwidth bounds the cycles, its cycles), or ('compute',
        compute cycles) when no level needs more cycles than the MACs."""
        level, cycles = max(self.level_cycles.items(), key=lambda kv: kv[1], default=("", 0.0))
        if cycles > self.compute_cycles:
            return level, cycles
        return "compute", float(self.compute_cycles)

    def objective(self, name: str) -> float:
        """energy, delay (cycles), edp, or compute (cycles ignoring bandwidth; for Eyexam)."""
        return {"energy": self.energy_pj, "delay": float(self.cycles), "edp": self.edp,
                "compute": float(self.compute_cycles)}[name]

    def to_dict(self) -> dict[str, Any]:
        return {
            "energy_pj": self.energy_pj, "pj_per_mac": self.pj_per_mac, "cycles": self.cycles,
            "compute_cycles": self.compute_cycles, "utilization": self.utilization,
            "active_pes": self.active_pes, "edp": self.edp, "macs": self.macs,
            "performed_macs": self.performed_macs,
            "mac_energy_pj": self.mac_pj,
            "network_energy_pj": dict(self.network_pj),
            "leakage_energy_pj": self.leakage_pj,
            "cycle_energy_pj": self.cycle_pj,
            "chip_energy_pj": self.chip_energy_pj, "offchip_energy_pj": self.offchip_pj,
            "level_cycles": dict(self.level_cycles),
            "levels": {lv: {t: c.to_dict() for t, c in ts.items()} for lv, ts in self.levels.items()},
        }


@lru_cache(maxsize=65536)
def distinct_offsets(progressions: tuple[tuple[int, int], ...]) -> int:
    """Number of distinct values of sum_i k_i * step_i with 0 <= k_i < count_i.

    `progressions` is a tuple of (count, step). Children of a fan-out whose tiles start at
    the same offset hold identical data; this counts the distinct offsets along one axis.
    """
    terms = [(c, s) for c, s in progressions if c > 1]
    if not terms:
        return 1
    if len(terms) == 1:
        return terms[0][0]
    if len(terms) == 2:
        # {k*a + j*b}: with g = gcd(a, b), k*a + j*b = k'*a + j'*b iff (k - k') = t*b/g and
        # (j' - j) = t*a/g; counting one representative per class gives the closed form.
        (K, a), (J, b) = terms
        g = math.gcd(a, b)
        a1, b1 = a // g, b // g
        return min(K, b1) * J + max(0, K - b1) * min(J, a1)
    values = {0}
    for count, step in terms:
        values = {v + k * step for v in values for k in range(count)}
    return len(values)


class _Nest:
    """The mapping's loops in nest order with the quantities every count needs."""

    def __init__(self, layer: Layer, arch: Arch, mapping: Mapping):
        self.layer, self.arch, self.mapping = layer, arch, mapping
        index = {l.name: i for i, l in enumerate(arch.levels)}
        # (level index, dim, factor, spatial) outermost first; factor-1 loops are absent.
        self.loops = [(index[l.level], l.dim, l.factor, l.spatial) for l in mapping.loops]
        # step[k]: how far loop k moves its dimension = product of that dimension's
        # factors in all loops nested inside k.
        self.step = []
        for k, (_, d, _, _) in enumerate(self.loops):
            self.step.append(math.prod(f for _, d2, f, _ in self.loops[k + 1:] if d2 == d))
        self.ops_per_mac = math.prod(f for _, _, f, s in self.loops if s is None)
        self.mac_units = math.prod(f for _, _, f, s in self.loops if s is not None)

    def extents(self, li: int) -> dict[str, int]:
        ext = {d: 1 for d in DIMS}
        for lvl, d, f, _ in self.loops:
            if lvl >= li:
                ext[d] *= f
        return ext

    def instances(self, li: int) -> int:
        """Instances of level li that receive work: the spatial factors above it."""
        return math.prod(f for lvl, _, f, s in self.loops if s is not None and lvl < li)

    def outer_temporal(self, li: int) -> list[int]:
        return [k for k, (lvl, _, _, s) in enumerate(self.loops) if s is None and lvl < li]

    def fills(self, tensor: str, li: int) -> tuple[int, int]:
        """(words fetched per instance over the run, distinct words touched per instance)."""
        ext = self.extents(li)
        tile = footprint(self.layer, tensor, ext)
        outer = self.outer_temporal(li)
        relevant = [k for k in outer if self.loops[k][1] in RELEVANT[tensor]]
        distinct = tile * math.prod(self.loops[k][2] for k in relevant)
        if not relevant:
            return tile, distinct
        r = relevant[-1]
        sweeps = math.prod(self.loops[k][2] for k in outer if k < r)
        _, dim, bound, _ = self.loops[r]
        # The overlap between consecutive tiles when loop r advances by one step.
        overlap = tile
        for axis in tensor_axes(self.layer, tensor):
            extent = sum(c * (ext[d] - 1) for d, c in axis) + 1
            shift = sum(c * self.step[r] for d, c in axis if d == dim)
            overlap = overlap // extent * max(0, extent - shift)
        # Each sweep of r starts with a whole tile, except where the loop k that stepped
        # (r and the loops between reset) brings back exactly the tile just held.
        starts = sweeps - sum(math.prod(self.loops[j][2] for j in outer if j < k) * (self.loops[k][2] - 1)
                              for k in relevant[:-1] if self.unchanged(tensor, li, k))
        return starts * tile + sweeps * (bound - 1) * (tile - overlap), distinct

    def unchanged(self, tensor: str, li: int, k: int) -> bool:
        """Whether a step of the outer temporal loop k leaves level li's tile of `tensor` where it
        was. When k advances, the temporal loops between k and li (all at their last index)
        reset to 0, so dimension d's offset moves by [d is k's dim] * step[k] minus the sum of
        (bound - 1) * step over those loops over d; spatial loops keep their index. A tensor
        axis moves by the sum of its coefficients times these moves, and only an axis indexed
        by two dimensions (p*stride + r*dilation) can have two nonzero moves that cancel: a
        step of R by dilation*step[k] undone by P's loops resetting by stride*(their span),
        or the reverse. The new tile is then the held one and nothing is fetched."""
        _, dim, _, _ = self.loops[k]
        move = {d: (self.step[k] if d == dim else 0) for d in DIMS}
        for j in self.outer_temporal(li):
            if j > k:
                _, d, f, _ = self.loops[j]
                move[d] -= (f - 1) * self.step[j]
        return all(sum(c * move[d] for d, c in axis) == 0 for axis in tensor_axes(self.layer, tensor))

    def distinct_children(self, tensor: str, parent: int, child: int | None) -> int:
        """Distinct child tiles of `tensor` under one parent instance (child None = the MACs):
        the product over the fan-outs in between of the distinct tiles each one creates."""
        end = len(self.arch.levels) if child is None else child
        total = 1
        for fan in range(parent + 1, end):
            if not isinstance(self.arch.levels[fan], Fanout):
                continue
            loops = [k for k, (lvl, _, _, s) in enumerate(self.loops) if s is not None and lvl == fan]
            level: Fanout = self.arch.levels[fan]
            credit = level.credit(self.mapping.mode(level.name, tensor))
            for k in loops:
                _, d, f, axis = self.loops[k]
                if credit[axis] == "none" or (credit[axis] == "projection" and d in RELEVANT[tensor]):
                    total *= f
            for axis in tensor_axes(self.layer, tensor):
                coef = dict(axis)
                # identical tiles share a read: count distinct offsets along this tensor axis
                shared = tuple((self.loops[k][2], coef[self.loops[k][1]] * self.step[k]) for k in loops
                               if self.loops[k][1] in coef and credit[self.loops[k][3]] == "exact")
                total *= distinct_offsets(shared)
        return total


class _Remainders:
    """Exact counts of a mapping with remainders (tiles clipped at the layer's end).

    Every count is a sum over the steps of a nest whose valid iterations are a product over
    dimensions (an index tuple is valid when each dimension's offset is inside the layer).
    Split the dimensions into groups, one per axis of the tensor (P with R, Q with S for
    inputs) plus one per dimension the tensor does not depend on: a tile's box is a product
    over axes, so a sum over steps of products of per-axis terms is the product over groups
    of per-group sums, and each group's sum enumerates only the index tuples of its own
    loops. Steps are classified by the temporal loop k that advanced (the innermost one with
    a nonzero index; those inside it reset): the first step fetches the whole tile; a step
    of r (the innermost relevant loop) or of a loop inside it fetches the tile minus its
    overlap with the held one; a step of a loop outside r fetches the tile unless it equals
    the held one. The held tile is the one at the instance's previous valid step: k one
    lower, the loops inside it at their largest valid indices. Children one parent read
    serves are grouped per step by their tiles (see `group_key`), so a child idle in a
    partial pass does not count, and children whose partial tiles differ are not merged.
    """

    def __init__(self, nest: "_Nest"):
        self.nest = nest
        self.layer, self.arch, self.mapping = nest.layer, nest.arch, nest.mapping
        self.loops, self.step = nest.loops, nest.step
        self.size = self.layer.dims

    # -- per-dimension structure ----------------------------------------------------------
    def valid_count(self, kind: str) -> int:
        """Index tuples of the temporal (or spatial) loops that do work, the others at 0:
        compute cycles and active MAC units."""
        total = 1
        for d in DIMS:
            mine = [k for k, (_, d2, _, s) in enumerate(self.loops) if d2 == d and (s is None) == (kind == "T")]
            total *= sum(1 for idx in itertools.product(*(range(self.loops[k][2]) for k in mine))
                         if sum(i * self.step[k] for i, k in zip(idx, mine)) < self.size[d])
        return total

    def instances(self, li: int) -> int:
        """Instances of level li that receive work (valid spatial tuples above li)."""
        total = 1
        for d in DIMS:
            mine = [k for k, (lvl, d2, _, s) in enumerate(self.loops) if d2 == d and s is not None and lvl < li]
            total *= sum(1 for idx in itertools.product(*(range(self.loops[k][2]) for k in mine))
                         if sum(i * self.step[k] for i, k in zip(idx, mine)) < self.size[d])
        return total

    def groups(self, tensor: str) -> list[tuple[tuple[tuple[tuple[str, int], ...], ...], tuple[str, ...]]]:
        """(axes, dims) per group: the tensor's axes with their dims, then each other dim alone."""
        out = [((axis,), tuple(d for d, _ in axis)) for axis in tensor_axes(self.layer, tensor)]
        used = {d for _, ds in out for d in ds}
        return out + [((), (d,)) for d in DIMS if d not in used]

    def event_range(self, k: int, event) -> tuple[int, int]:
        """(first, stop) of loop k's index in a step of `event` (see `tuples`)."""
        temporal = self.loops[k][3] is None
        if event == "first" and temporal or (isinstance(event, int) and temporal and k > event):
            return 0, 1
        return (1 if event == k else 0), self.loops[k][2]

    def tuples(self, dims: tuple[str, ...], outer: list[int], event):
        """Valid index tuples (dict loop -> index) of the loops in `outer` over `dims` for a
        step of `event` ('first': every temporal loop at 0; 'all': no constraint; a loop
        index k: k >= 1 and the temporal loops inside k at 0)."""
        mine = [k for k in outer if self.loops[k][1] in dims]
        ranges = [range(*self.event_range(k, event)) for k in mine]
        for idx in itertools.product(*ranges):
            ix = dict(zip(mine, idx))
            if all(self.offset(ix, d) < self.size[d] for d in dims):
                yield ix

    def offset(self, ix: dict[int, int], d: str) -> int:
        return sum(i * self.step[k] for k, i in ix.items() if self.loops[k][1] == d)

    def previous(self, ix: dict[int, int], k: int, outer: list[int]) -> dict[int, int]:
        """The indices at the instance's previous valid step, when loop k advanced: k one
        lower (if it is in this group) and the temporal loops inside it at their largest
        valid indices (outermost first; spatial indices are the instance's and stay)."""
        prev = dict(ix)
        if k in prev:
            prev[k] -= 1
        reset = [j for j in prev if self.loops[j][3] is None and j > k]
        for j in reset:
            prev[j] = 0
        for j in sorted(reset):
            d = self.loops[j][1]
            others = sum(prev[i] * self.step[i] for i in prev if self.loops[i][1] == d and i != j)
            prev[j] = max(v for v in range(self.loops[j][2]) if others + v * self.step[j] < self.size[d])
        return prev

    def boxes(self, ix: dict[int, int], axes, nominal: dict[str, int]) -> tuple:
        """Per axis (lo, hi) of the tile at these indices: nominal extents clipped at the end."""
        out = []
        for axis in axes:
            lo = hi = 0
            for d, c in axis:
                off = self.offset(ix, d)
                ext = min(nominal[d], self.size[d] - off)
                lo += c * off
                hi += c * (off + ext - 1)
            out.append((lo, hi))
        return tuple(out)

    def group_key(self, tensor: str, ix: dict[int, int], between: list[int], axes, nominal) -> tuple:
        """What identifies, per fan-out between parent and child, the children one read
        serves (as `_Nest.distinct_children` per fan-out): indices of loops whose axis
        shares nothing ("none") or that project on a dim indexing the tensor, and the tile of
        the child with the other fan-outs' indices at 0 (exact)."""
        key = []
        for fan in sorted({self.loops[k][0] for k in between}):
            level: Fanout = self.arch.levels[fan]
            credit = level.credit(self.mapping.mode(level.name, tensor))
            mine = [k for k in between if self.loops[k][0] == fan and k in ix]
            apart = tuple(ix[k] for k in mine if credit[self.loops[k][3]] == "none" or
                          (credit[self.loops[k][3]] == "projection" and self.loops[k][1] in RELEVANT[tensor]))
            probe = {k: (v if (k not in between or k in mine) else 0) for k, v in ix.items()}
            key.append((apart, self.boxes(probe, axes, nominal)))
        return tuple(key)

    # -- counts -----------------------------------------------------------------------------
    def link_loops(self, tensor: str, parent: int, child: int | None):
        """The loops of one (tensor, parent, child) link: those above the child (all, temporal,
        spatial above the parent, spatial between), the child's nominal tile per dimension,
        the innermost relevant temporal loop (None if none) and the events to sum over."""
        c = len(self.arch.levels) if child is None else child
        outer = [k for k, (lvl, _, _, _) in enumerate(self.loops) if lvl < c]
        temporal = [k for k in outer if self.loops[k][3] is None]
        parent_sp = [k for k in outer if self.loops[k][3] is not None and self.loops[k][0] < parent]
        between = [k for k in outer if self.loops[k][3] is not None and parent < self.loops[k][0]]
        nominal = {d: math.prod(f for lvl, d2, f, _ in self.loops if d2 == d and lvl >= c) for d in DIMS}
        relevant = [k for k in temporal if self.loops[k][1] in RELEVANT[tensor]]
        events = ["first"] + temporal if child is not None else ["all"]
        return outer, temporal, parent_sp, between, nominal, (relevant[-1] if relevant else None), events

    def sums(self, tensor: str, parent: int, child: int | None) -> dict:
        """Per event: products over groups of (all children, distinct groups) sums of the
        tile size, the overlap with the held tile, the size where the tile is the held one,
        and the first touches (Outputs)."""
        outer, temporal, parent_sp, between, nominal, r, events = self.link_loops(tensor, parent, child)
        out = {}
        for e in events:
            prod_all = {x: 1 for x in ("size", "ov", "eq", "first")}
            prod_grp = dict(prod_all)
            for axes, dims in self.groups(tensor):
                irrelevant = not axes
                tot = {x: 0 for x in prod_all}
                seen: dict = {}
                for ix in self.tuples(dims, outer, e):
                    box = self.boxes(ix, axes, nominal)
                    size = math.prod(h - l + 1 for l, h in box)
                    if isinstance(e, int):
                        held = self.boxes(self.previous(ix, e, outer), axes, nominal)
                        ov = math.prod(max(0, min(h1, h2) - max(l1, l2) + 1) for (l1, h1), (l2, h2) in zip(box, held))
                        eq = size if box == held else 0
                    else:
                        held, ov, eq = None, 0, 0
                    zero = all(ix[k] == 0 for k in temporal if k in ix)
                    first = (1 if zero else 0) if irrelevant else size
                    vals = {"size": size, "ov": ov, "eq": eq, "first": first}
                    for x in tot:
                        tot[x] += vals[x]
                    tv = tuple(ix.get(k, -1) for k in temporal)
                    pk = tuple(ix.get(k, -1) for k in parent_sp)
                    key = (tv, pk, self.group_key(tensor, ix, between, axes, nominal), box, held)
                    seen.setdefault(key, vals)
                for x in prod_all:
                    prod_all[x] *= tot[x]
                    prod_grp[x] *= sum(v[x] for v in seen.values())
            out[e] = (prod_all, prod_grp)
        return {"events": out, "r": r}

    def fills(self, tensor: str, parent: int, child: int) -> tuple[int, int, int, int]:
        """(words loaded by all children, first touches among them, words the parent reads
        for the distinct groups, first touches among those)."""
        data = self.sums(tensor, parent, child)
        r = data["r"]
        totals = [0, 0, 0, 0]
        for e, (a, g) in data["events"].items():
            for j, prods in ((0, a), (2, g)):
                if e == "first":
                    fetch = prods["size"]
                elif r is None or e >= r:
                    fetch = prods["size"] - prods["ov"]
                else:
                    fetch = prods["size"] - prods["eq"]
                totals[j] += fetch
                totals[j + 1] += prods["first"]
        return tuple(totals)

    def mac_groups(self, tensor: str, parent: int) -> tuple[int, int]:
        """(operand accesses: distinct groups of MAC units per cycle per parent instance,
        first touches: distinct (parent instance, output point))."""
        data = self.sums(tensor, parent, None)
        _, g = data["events"]["all"]
        return g["size"], self._first_points(tensor, parent)

    def _first_points(self, tensor: str, parent: int) -> int:
        nlev = len(self.arch.levels)
        outer = list(range(len(self.loops)))
        parent_sp = [k for k in outer if self.loops[k][3] is not None and self.loops[k][0] < parent]
        total = 1
        for axes, dims in self.groups(tensor):
            seen = {(tuple(ix.get(k, -1) for k in parent_sp), self.boxes(ix, axes, {d: 1 for d in DIMS}))
                    for ix in self.tuples(dims, outer, "all")}
            total *= len(seen)
        return total


def evaluate(layer: Layer, arch: Arch, mapping: Mapping, validate: bool = True, remainders: type | None = None) -> Cost:
    """Access counts, energy, cycles and utilization of a mapping (see module docstring).
    `remainders`: the class counting remainder nests (default `_Remainders`; the batch passes
    its numpy version, which must give the same numbers)."""
    if validate:
        check(mapping, layer, arch)
    nest = _Nest(layer, arch, mapping)
    storages = [i for i, l in enumerate(arch.levels) if isinstance(l, Storage)]
    reads = {(i, t): 0 for i in storages for t in TENSORS}
    fills = dict(reads)
    updates = dict(reads)
    fanouts = [i for i, l in enumerate(arch.levels) if isinstance(l, Fanout)]
    carried = {(i, t): 0 for i in fanouts for t in TENSORS}
    demand = {(i, t): 0.0 for i in fanouts for t in TENSORS}     # distinct words per fan-out instance
    ops = nest.ops_per_mac
    sparse = Sparse.of(layer, arch)
    if not mapping.is_perfect(layer):
        rem = (remainders or _Remainders)(nest)
        _count_remainders(rem, sparse, reads, fills, updates, carried, demand)
        ops = rem.valid_count("T")
        nest = _ActiveNest(rem, ops)

    for t in (TENSORS if mapping.is_perfect(layer) else ()):
        chain = [i for i in storages if t in mapping.kept(arch.levels[i].name)]
        for pos, p in enumerate(chain):
            c = chain[pos + 1] if pos + 1 < len(chain) else None
            groups = nest.instances(p) * nest.distinct_children(t, p, c)  # distinct child tiles
            between = carried_levels(arch, p, c)
            if c is None:
                work = sparse.operand(t)                  # fraction of MACs that touch t
                if t == "Outputs":
                    _, touched = nest.fills(t, p)
                    updates[p, t] += scaled(groups * ops, work)
                    # read-modify-write: every update but an output's first reads the psum
                    reads[p, t] += scaled(groups * ops - nest.instances(p) * touched, work)
                    words = 2 * scaled(groups * ops, work)
                else:
                    reads[p, t] += scaled(groups * ops, work)
                    words = scaled(groups * ops, work)
                for i in between:
                    carried[i, t] += scaled(nest.mac_units * ops, work)
                    demand[i, t] += words / nest.instances(i)
                continue
            fetched, touched = nest.fills(t, c)
            n_c = nest.instances(c)
            if t == "Outputs":
                reads[p, t] += groups * (fetched - touched)    # partial sums sent back down
                fills[c, t] += n_c * (fetched - touched)
                updates[p, t] += groups * fetched              # every resident tile is written back
                for i in between:
                    carried[i, t] += n_c * (fetched - touched) + n_c * fetched
                    demand[i, t] += groups * (2 * fetched - touched) / nest.instances(i)
            else:
                at_p, at_c = sparse.stored(arch.levels[p].name, t), sparse.stored(arch.levels[c].name, t)
                reads[p, t] += scaled(groups * fetched, at_p)
                fills[c, t] += scaled(n_c * fetched, at_c)
                for i in between:
                    carried[i, t] += scaled(n_c * fetched, at_c)
                    demand[i, t] += scaled(groups * fetched, at_p) / nest.instances(i)

    levels: dict[str, dict[str, Counts]] = {}
    level_cycles: dict[str, float] = {}
    energy = 0.0
    for i in storages:
        s: Storage = arch.levels[i]
        per = {}
        for t in TENSORS:
            if t not in mapping.kept(s.name):
                continue
            er, ew, eu = s.energy_of(t)
            e = reads[i, t] * er + fills[i, t] * ew + updates[i, t] * eu
            per[t] = Counts(reads[i, t], fills[i, t], updates[i, t], e)
            energy += e
        levels[s.name] = per
        n = nest.instances(i)
        r = sum(reads[i, t] for t in TENSORS) / n
        w = sum(fills[i, t] + updates[i, t] for t in TENSORS) / n
        level_cycles[s.name] = bandwidth_cycles(s, r, w)
    network = {}
    for (i, t), words in carried.items():
        fan: Fanout = arch.levels[i]
        network[fan.name] = network.get(fan.name, 0.0) + words * fan.energy_of(t)
        bw = fan.bandwidth(t, mapping.mode(fan.name, t))
        if bw:
            level_cycles[f"{fan.name} {t}"] = demand[i, t] / bw
    energy += sum(network.values())
    mac_pj = layer.macs * arch.mac_energy * sparse.mac_energy
    energy += mac_pj
    compute = ops * sparse.mac_cycles
    cycles = math.ceil(max([float(compute)] + list(level_cycles.values())) - 1e-9)
    leak = sum(arch.levels[i].leakage * cycles * nest.instances(i) for i in storages)
    cycle_pj = arch.cycle_energy * cycles
    energy += leak + cycle_pj
    offchip = sum(c.energy_pj for c in levels[arch.levels[0].name].values()) + arch.levels[0].leakage * cycles
    performed = scaled(layer.macs, sparse.mac_cycles)
    return Cost(macs=layer.macs, energy_pj=energy, cycles=cycles, compute_cycles=math.ceil(compute - 1e-9),
                utilization=utilization(performed, cycles, arch.pes), active_pes=nest.mac_units,
                performed_macs=performed,
                levels=levels, network_pj=network, mac_pj=mac_pj, level_cycles=level_cycles,
                leakage_pj=leak, cycle_pj=cycle_pj, offchip_pj=offchip)


def utilization(performed_macs: float, cycles: int, mac_units: int) -> float:
    """The share of the MAC units' cycles that do a MAC: performed MACs / (cycles x MAC
    units), with `mac_units` every MAC lane of the arch (`Arch.pes`, SIMD lanes included)
    and `performed_macs` the MACs that take a lane's cycle (`Cost.performed_macs`: skipped
    zero MACs take none). The one definition every output uses, so it is at most 1 and a
    sparse layer's reads as the busy share of the hardware, not dense-equivalent MACs.

    `evaluate` rounds compute cycles up with a 1e-9 tolerance for float noise in density
    products (a cycle count within 1e-9 above an integer is that integer), so a
    compute-bound mapping on every lane can come out about 1e-9 above 1; only ratios within
    1e-8 above 1 are clamped (anything larger is left visible, as the bug it would be)."""
    ratio = performed_macs / (cycles * mac_units)
    return 1.0 if 1.0 < ratio <= 1.0 + 1e-8 else ratio


def network_utilization(layers: Iterable[tuple[float, int]], mac_units: int) -> float:
    """Utilization of layers run one after another on one arch, from (performed MACs,
    cycles) per layer: all the performed MACs over all the cycles x MAC units (the
    cycle-weighted mean of the layers' `utilization`, by the same rule)."""
    performed = cycles = 0
    for p, c in layers:
        performed += p
        cycles += c
    return utilization(performed, cycles, mac_units)


@dataclass(frozen=True)
class _ActiveNest:
    """What evaluate's totals need from a nest with remainders: active instances and MAC units."""

    rem: _Remainders
    ops_per_mac: int

    def instances(self, li: int) -> int:
        return self.rem.instances(li)

    @property
    def mac_units(self) -> int:
        return self.rem.valid_count("S")


def _count_remainders(rem: _Remainders, sparse: "Sparse", reads, fills, updates, carried, demand) -> None:
    """evaluate's per-level counts for a mapping with remainders (the same conventions,
    summed over the actual tiles; see `_Remainders`)."""
    arch, mapping, layer = rem.arch, rem.mapping, rem.layer
    storages = [i for i, l in enumerate(arch.levels) if isinstance(l, Storage)]
    for t in TENSORS:
        chain = [i for i in storages if t in mapping.kept(arch.levels[i].name)]
        for pos, p in enumerate(chain):
            c = chain[pos + 1] if pos + 1 < len(chain) else None
            between = carried_levels(arch, p, c)
            if c is None:
                work = sparse.operand(t)
                groups, first = rem.mac_groups(t, p)
                if t == "Outputs":
                    updates[p, t] += scaled(groups, work)
                    reads[p, t] += scaled(groups - first, work)
                    words = 2 * scaled(groups, work)
                else:
                    reads[p, t] += scaled(groups, work)
                    words = scaled(groups, work)
                for i in between:
                    carried[i, t] += scaled(layer.macs, work)
                    demand[i, t] += words / rem.instances(i)
                continue
            child_w, child_first, group_w, group_first = rem.fills(t, p, c)
            if t == "Outputs":
                reads[p, t] += group_w - group_first
                fills[c, t] += child_w - child_first
                updates[p, t] += group_w
                for i in between:
                    carried[i, t] += (child_w - child_first) + child_w
                    demand[i, t] += (2 * group_w - group_first) / rem.instances(i)
            else:
                at_p, at_c = sparse.stored(arch.levels[p].name, t), sparse.stored(arch.levels[c].name, t)
                reads[p, t] += scaled(group_w, at_p)
                fills[c, t] += scaled(child_w, at_c)
                for i in between:
                    carried[i, t] += scaled(child_w, at_c)
                    demand[i, t] += scaled(group_w, at_p) / rem.instances(i)


def scaled(count, fraction: float):
    """A count times a density fraction; exact integers stay integers when dense."""
    return count if fraction == 1.0 else count * fraction


@dataclass(frozen=True)
class Sparse:
    """The density factors of one layer on one arch (all 1.0 for dense layers)."""

    weights: float
    inputs: float
    skip: bool
    gate: bool
    arch: Arch
    skip_cycles: bool = True    # skipped MACs also save cycles (see Sparsity.skips_cycles)

    @classmethod
    def of(cls, layer: Layer, arch: Arch) -> "Sparse":
        d = layer.densities()
        return cls(d["weights"], d["inputs"], arch.sparsity.skip_zero_macs, arch.sparsity.gate_zero_inputs, arch,
                   arch.sparsity.skips_cycles(layer.dims["C"]))

    @property
    def effectual(self) -> float:
        """Fraction of MACs whose operands are both non-zero."""
        return self.weights * self.inputs

    @property
    def mac_energy(self) -> float:
        return self.effectual if self.skip else (self.inputs if self.gate else 1.0)

    @property
    def mac_cycles(self) -> float:
        return self.effectual if self.skip and self.skip_cycles else 1.0

    def operand(self, tensor: str) -> float:
        """Fraction of the per-MAC accesses of `tensor` at its innermost level that happen:
        with skipping, only non-zero inputs are read and, for each, the non-zero weights;
        with gating, a zero input gates its MAC and weight read."""
        if self.skip:
            return {"Inputs": self.inputs, "Weights": self.effectual, "Outputs": self.effectual}[tensor]
        if self.gate and tensor == "Weights":
            return self.inputs
        return 1.0

    def stored(self, level: str, tensor: str) -> float:
        """Fraction of the dense words of `tensor` stored and moved at `level`."""
        d = {"Weights": self.weights, "Inputs": self.inputs}.get(tensor, 1.0)
        return self.arch.sparsity.factor(level, tensor, d)

    def capacity(self, level: str, tensor: str) -> float:
        """Fraction of the dense tile of `tensor` counted against `level`'s capacity."""
        d = {"Weights": self.weights, "Inputs": self.inputs}.get(tensor, 1.0)
        return self.arch.sparsity.capacity_factor(level, tensor, d)


def carried_levels(arch: Arch, parent: int, child: int | None) -> list[int]:
    """Fan-outs a word crosses between a parent level and a child level (or the MACs)."""
    end = len(arch.levels) if child is None else child
    return [i for i in range(parent + 1, end) if isinstance(arch.levels[i], Fanout)]


def bandwidth_cycles(level: Storage, reads: float, writes: float) -> float:
    """Cycles one instance needs to move its reads and writes at the level's bandwidths."""
    cycles = 0.0
    if level.read_bw:
        cycles = max(cycles, reads / level.read_bw)
    if level.write_bw:
        cycles = max(cycles, writes / level.write_bw)
    if level.shared_bw:
        cycles = max(cycles, (reads + writes) / level.shared_bw)
    return cycles
