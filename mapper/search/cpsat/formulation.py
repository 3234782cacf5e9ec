"""The CP-SAT formulation of one keep pattern: decisions, capacities, access counts,
cycles, energy and the objective, every count the model's exact value (see the package
docstring)."""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
from ortools.sat.python import cp_model

from ...access import CHILD, DISTINCT, FETCHED, MACS, OPS, PARENT, TOUCHED, Link, links
from ...arch import Fanout, Storage
from ...batch import objective_of
from ...model import Sparse, distinct_offsets
from ...problem import AXES, DIMS, RELEVANT, SLIDING_DIMS, TENSORS, tensor_axes
from ..bound import class_objective, class_of, lower_bound, signature_columns, spatial_classes
from ..space import Space
from .expressions import DOMAIN_LIMIT, Expressions, ModelOverflow, assignments
from .groups import Group, build_groups

#: The order in which a link's terms are built (it fixes CP-SAT's variable order).
_TERM_ORDER = ((DISTINCT, OPS), (PARENT, TOUCHED), (MACS, OPS),
               (CHILD, FETCHED), (DISTINCT, FETCHED), (CHILD, TOUCHED), (DISTINCT, TOUCHED))


@dataclass
class _Traffic:
    """The access terms of one model: (factor, term) lists per (storage, tensor) for reads,
    fills and updates; (energy, term) pairs of words carried on fan-outs; and the words
    per limited (fan-out, tensor) for its bandwidth."""

    reads: dict = field(default_factory=dict)
    fills: dict = field(default_factory=dict)
    updates: dict = field(default_factory=dict)
    carried: list = field(default_factory=list)
    demand: dict = field(default_factory=dict)


class Builder(Expressions):
    """Builds the CP-SAT model of one keep pattern."""

    def __init__(self, space: Space, objective: str, keep: np.ndarray, scale: int):
        # Every count is at most (temporal iterations x instances) x the input halo's growth:
        # a tile of weights or outputs has at most one word per inner iteration, an input
        # tile at most stride x dilation times that per axis.
        layer = space.layer
        (sv, sh), (dv, dh) = layer.stride, layer.dilation
        super().__init__(cap=max(1 << 20, 4 * layer.macs * (sv + dv) * (sh + dh)))
        self.space, self.objective, self.keep, self.scale = space, objective, keep, scale
        self.enc, self.arch, self.layer = space.enc, space.arch, layer
        self.groups = build_groups(space)
        for g in self.groups:
            if g.n == 0:
                raise ValueError("empty group")
            if g.n > 1:
                g.x = [self.m.NewBoolVar("") for _ in range(g.n)]
                self.m.AddExactlyOne(g.x)
        self.n_st = len(self.enc.storage_levels)
        self.order_vars = []
        for si in range(self.n_st):
            k = len(space.orders[si])
            ys = [self.m.NewBoolVar("") for _ in range(k)] if k > 1 else []
            if ys:
                self.m.AddExactlyOne(ys)
            self.order_vars.append(ys)
        self._s, self._before, self._rc = {}, {}, {}

    # -- factors per option ---------------------------------------------------------------
    def fac(self, g: Group, slot: int, d: int) -> np.ndarray:
        return g.factors[:, slot, g.dims.index(d)]

    def inner_ext(self, g: Group, slot: int, d: int) -> np.ndarray:
        """Product of dim d's factors in slots >= slot, per option."""
        return np.prod(g.factors[:, slot:, g.dims.index(d)], axis=1)

    def spatial_above(self, g: Group, slot: int) -> np.ndarray:
        sl = [s for s in range(slot) if self.enc.slots[s][1] != "T"]
        return np.prod(g.factors[:, sl, :], axis=(1, 2)) if sl else np.ones(g.n, dtype=np.int64)

    def temporal_all(self, g: Group) -> np.ndarray:
        sl = [s for s in range(self.enc.n_slots) if self.enc.slots[s][1] == "T"]
        return np.prod(g.factors[:, sl, :], axis=(1, 2))

    def tile_part(self, g: Group, t: str, slot: int) -> np.ndarray:
        """Group g's factor of the tile of t at a storage slot (its axes' extents)."""
        part = np.ones(g.n, dtype=np.int64)
        for axis in tensor_axes(self.layer, t):
            coef = {DIMS.index(d): c for d, c in axis}
            if not set(coef) & set(g.dims):
                continue
            part = part * self._extent(g, coef, slot)
        return part

    def _extent(self, g: Group, coef: dict[int, int], slot: int) -> np.ndarray:
        """Per option, the extent of one tensor axis (index = sum of coef x dim) over the
        tile at `slot`: 1 + sum of c x (the dim's extent - 1); the axis's dims are g's."""
        e = np.ones(g.n, dtype=np.int64)
        for d, c in coef.items():
            e = e + c * (self.inner_ext(g, slot, d) - 1)
        return e

    def distinct_part(self, g: Group, t: str, p_level: int, c_level: int,
                      modes: dict[int, str] | None = None) -> np.ndarray:
        """Group g's factor of the distinct child tiles of t per parent instance, with the
        network mode `modes[fan-out level]` where the fan-out offers modes."""
        out = np.ones(g.n, dtype=np.int64)
        rel = {DIMS.index(d) for d in RELEVANT[t]}
        for li in range(p_level + 1, c_level):
            fan = self.arch.levels[li]
            if not isinstance(fan, Fanout):
                continue
            credit = fan.credit((modes or {}).get(li))
            slots = [s for s, (l2, k) in enumerate(self.enc.slots) if l2 == li]
            for s in slots:
                label = credit[self.enc.slots[s][1]]
                for d in g.dims:
                    if label == "none" or (label == "projection" and d in rel):
                        out = out * self.fac(g, s, d)
            shared = [s for s in slots if credit[self.enc.slots[s][1]] == "exact"]
            for axis in tensor_axes(self.layer, t):
                coef = {DIMS.index(d): c for d, c in axis}
                mine = [d for d in coef if d in g.dims]
                if not mine or not shared:
                    continue
                if len(coef) > 1:
                    # (count, step) of each shared loop, per option (arrays built once: the
                    # per-option loop below is the hot spot of building a model)
                    counts = np.stack([self.fac(g, s, d) for s in shared for d in mine], axis=1).tolist()
                    steps = np.stack([coef[d] * self.inner_ext(g, s + 1, d) for s in shared for d in mine],
                                     axis=1).tolist()
                    vals = [distinct_offsets(tuple(zip(c, st))) for c, st in zip(counts, steps)]
                    out = out * np.array(vals, dtype=np.int64)
                else:
                    for s in shared:
                        for d in mine:
                            out = out * self.fac(g, s, d)
        return out

    def mode_literals(self):
        """One-hot literals choosing each mode fan-out's network mode per tensor."""
        self.mode_lits = {}
        for li in self.enc.mode_fans:
            fan = self.arch.levels[li]
            for t in TENSORS:
                options = fan.modes_of(t)
                lits = [self.m.NewBoolVar("") for _ in options] if len(options) > 1 else [True]
                if len(options) > 1:
                    self.m.AddExactlyOne(lits)
                self.mode_lits[li, t] = list(zip(options, lits))

    def mode_combos(self, t: str, p_level: int, c_level: int):
        """(modes by fan-out level, enforcement literals) for every mode choice on a path."""
        fans = [li for li in range(p_level + 1, c_level) if li in self.enc.mode_fans]
        for combo in itertools.product(*[self.mode_lits[li, t] for li in fans]):
            modes = {li: m for li, (m, _) in zip(fans, combo)}
            lits = [lit for _, lit in combo if lit is not True]
            yield modes, lits

    # -- booleans for loop order and support ------------------------------------------
    def s(self, si: int, d: int):
        """Literal: the factor of d at storage level si is > 1 (or a Python bool)."""
        key = (si, d)
        if key not in self._s:
            g = self.group_of(d)
            big = self.fac(g, self.enc.storage_slot[si], d) > 1
            if not big.any():
                self._s[key] = False
            elif big.all():
                self._s[key] = True
            else:
                v = self.m.NewBoolVar("")
                self.m.Add(v == cp_model.LinearExpr.Sum([g.x[o] for o in np.nonzero(big)[0]]))
                self._s[key] = v
        return self._s[key]

    def before(self, si: int, d1: int, d2: int):
        """Literal: d1 comes before (outside) d2 in level si's chosen order."""
        key = (si, d1, d2)
        if key not in self._before:
            orders = self.space.orders[si]
            yes = [k for k in range(len(orders)) if list(orders[k]).index(d1) < list(orders[k]).index(d2)]
            if len(yes) == len(orders):
                self._before[key] = True
            elif not yes:
                self._before[key] = False
            else:
                v = self.m.NewBoolVar("")
                self.m.Add(v == cp_model.LinearExpr.Sum([self.order_vars[si][k] for k in yes]))
                self._before[key] = v
        return self._before[key]

    def group_of(self, d: int) -> Group:
        return next(g for g in self.groups if d in g.dims)

    # -- fills of one buffer ---------------------------------------------------------------
    def fills(self, t: str, si: int, mult: list[np.ndarray]):
        """IntVar: words of t fetched per instance of storage level si over the run, times
        a per-group constant multiplier (instances, distinct tiles) folded into each group's
        factor, so products that are constant (e.g. instances x MACs) stay constants."""
        if (t, si) not in self._rc:
            self._rc[t, si] = self._reuse_literals(t, si)
        outer, rel, R, counted = self._rc[t, si]
        slot = self.enc.storage_slot[si]
        total = self.product([self._fills_part(g, t, slot, outer, rel, R, counted, m)
                              for g, m in zip(self.groups, mult)])
        saved = self._unchanged_terms(t, si, mult)
        if not saved:
            return total
        out = self.new_var(lo=0, hi=self.hi(total))
        self.m.Add(out == total - sum(saved))
        return out

    def _unchanged_terms(self, t: str, si: int, mult: list[np.ndarray]) -> list:
        """The whole tiles not fetched because a step of an outer loop k brings back exactly
        the held tile (model._Nest.unchanged), one product per candidate k = (level so, dim
        dk on a sliding axis): tile x mult x (bounds of every loop outside k) x (b_k - 1) x
        [the step leaves every axis in place]. Each factor is per group: the window group
        of dk checks that its axis's moves cancel, every other group indexing t that none
        of its loops between k and the buffer iterates."""
        if not any(len(axis) > 1 for axis in tensor_axes(self.layer, t)):
            return []
        terms = []
        for so in range(si):
            for dk in range(len(DIMS)):
                if DIMS[dk] not in SLIDING_DIMS or self.s(so, dk) is False:
                    continue
                parts = []
                for g, m in zip(self.groups, mult):
                    states = self._unchanged_states(g, t, si, so, dk, m)
                    if not states:
                        break
                    parts.append(self.from_states(g, states))
                else:
                    if all(not isinstance(p, (int, np.integer)) or p for p in parts):
                        terms.append(self.product(parts))
        return [term for term in terms if not isinstance(term, (int, np.integer)) or term]

    def _unchanged_states(self, g: Group, t, si, so, dk, mult):
        """[(enforcement literals, per-option values)] of group g's factor of one unchanged-
        tile term (see _unchanged_terms), one entry per order state; [] when the factor is
        zero in every state."""
        slot, k_slot = self.enc.storage_slot[si], self.enc.storage_slot[so]
        rel = {DIMS.index(d) for d in RELEVANT[t]}
        base = self.tile_part(g, t, slot) * mult
        for so2 in range(so):
            for d in g.dims:
                base = base * self.fac(g, self.enc.storage_slot[so2], d)
        same_level = [d for d in g.dims if d != dk]
        states = []
        for bits, lits in assignments([self.before(so, d, dk) for d in same_level]):
            vals = base.copy()
            inside = []                      # (slot, d) of g's temporal loops between k and the buffer
            for d, outside in zip(same_level, bits):
                if outside:
                    vals = vals * self.fac(g, k_slot, d)
                else:
                    inside.append((k_slot, d))
            inside += [(self.enc.storage_slot[so2], d) for so2 in range(so + 1, si) for d in g.dims]
            if dk in g.dims:
                # dk's axis: dk moves by its step minus the resets of the dk loops between,
                # its partner by minus the resets of its loops between; they must cancel.
                move = {d: np.zeros(g.n, dtype=np.int64) for d in g.dims}
                move[dk] = move[dk] + self.inner_ext(g, k_slot + 1, dk)
                for sl, d in inside:
                    move[d] = move[d] - (self.fac(g, sl, d) - 1) * self.inner_ext(g, sl + 1, d)
                shift = sum(self._coef(t, d) * move[d] for d in g.dims)
                vals = vals * (self.fac(g, k_slot, dk) - 1) * (shift == 0)
            elif set(g.dims) & rel:
                for sl, d in inside:
                    vals = vals * (self.fac(g, sl, d) == 1)
            states.append((lits, vals))
        # every order state is listed (exactly one holds); none can save anything: no term
        return states if any(vals.any() for _, vals in states) else []

    def _reuse_literals(self, t: str, si: int):
        """For buffer si and tensor t: the outer loops, which is r, which irrelevant loops count."""
        rel = {DIMS.index(d) for d in RELEVANT[t]}
        outer = [(so, d) for so in range(si) for d in range(len(DIMS))
                 if self.s(so, d) is not False]
        # R[(so, d)]: the relevant outer loop (so, d) is the innermost one with factor > 1
        R = {}
        for so, d in outer:
            if d not in rel:
                continue
            later = [self.s(so2, d2) for so2 in range(so + 1, si) for d2 in rel]
            later += [self.both(self.s(so, d2), self.before(so, d, d2)) for d2 in rel if d2 != d]
            blocked = self.any_of(later)
            R[so, d] = self.both(self.s(so, d), True if blocked is False else
                                 (False if blocked is True else blocked.Not()))
        # counted[(so, d)]: the irrelevant outer loop (so, d) sits outside r
        counted = {}
        for so, d in outer:
            if d in rel:
                continue
            lits = [R[key] for key in R if key[0] > so]
            lits += [self.both(R[so, d2], self.before(so, d, d2)) for d2 in rel if (so, d2) in R]
            counted[so, d] = self.any_of(lits)
        return outer, rel, R, counted

    def _fills_part(self, g: Group, t, slot, outer, rel, R, counted, mult):
        """Group g's factor of the fills of t at the buffer in `slot`, times mult."""
        base = self.tile_part(g, t, slot) * mult
        mine = [(so, d) for so, d in outer if d in g.dims]
        for so, d in mine:
            if d in rel:
                base = base * self.fac(g, self.enc.storage_slot[so], d)
        irrelevant = [(so, d) for so, d in mine if d not in rel]
        sliding = [(so, d) for so, d in mine if self._on_sliding_axis(t, d)]
        states = []   # (enforcement literals, per-option values)
        for bits, lits in assignments([counted[key] for key in irrelevant]):
            vals = base
            for (so, d), on in zip(irrelevant, bits):
                if on:
                    vals = vals * self.fac(g, self.enc.storage_slot[so], d)
            states.append((lits, vals.copy()))
        if sliding:
            new_states = []
            r_lits = [R[k] for k in sliding]
            for lits, vals in states:
                # r outside this group: the plain product
                none = [l.Not() for l in r_lits if l is not True and l is not False]
                if all(l is not True for l in r_lits):
                    new_states.append((lits + none, vals))
                for (so, d), lit in zip(sliding, r_lits):
                    if lit is False:
                        continue
                    oslot = self.enc.storage_slot[so]
                    b = self.fac(g, oslot, d)
                    ext_axis = self._axis_extent(g, t, d, slot)
                    shift = self._coef(t, d) * self.inner_ext(g, oslot + 1, d)
                    bracket = ext_axis + (b - 1) * np.minimum(ext_axis, shift)
                    alt = vals // (ext_axis * b) * bracket
                    new_states.append((lits + ([] if lit is True else [lit]), alt))
            states = new_states
        return self.from_states(g, states)

    def _on_sliding_axis(self, t: str, d: int) -> bool:
        """Dimension d is on one of t's two-dimension (sliding) axes."""
        return any(a.sliding and DIMS[d] in a.dims for a in AXES[t])

    def _coef(self, t, d):
        for axis in tensor_axes(self.layer, t):
            for dd, c in axis:
                if DIMS.index(dd) == d:
                    return c
        return 1

    def _axis_extent(self, g: Group, t, d, slot):
        for axis in tensor_axes(self.layer, t):
            coef = {DIMS.index(dd): c for dd, c in axis}
            if d in coef:
                return self._extent(g, coef, slot)
        raise KeyError(d)

    def const_product(self, per_group):
        """Product over groups of per-option constants (list of arrays, one per group)."""
        return self.product([self.var_of(g, v) for g, v in zip(self.groups, per_group)])

    # -- the whole model ------------------------------------------------------------------
    def build(self):
        """The whole model, step by step (the order fixes CP-SAT's variable order)."""
        self._limit_fanouts()
        sparse = Sparse.of(self.layer, self.arch)
        self.mode_literals()
        self._limit_capacities(sparse)
        ops = self.const_product([self.temporal_all(g) for g in self.groups])
        traffic = _Traffic()
        for link in links(self.arch, self.enc.storage_levels, self.keep, sparse):
            self._link(traffic, link)
        cyc, cycles_times, cycles_cap = self._cycles(sparse, ops, traffic)
        energy, energy_hi = self._energy(sparse, traffic, cyc, cycles_times)
        self._bandwidths(traffic, cycles_times)
        self.cycles = cyc
        self.goal = self._goal(energy, energy_hi, ops, cyc, cycles_cap)
        self.m.Minimize(self.goal)
        return self

    def _limit_fanouts(self) -> None:
        """Each fan-out axis's spatial factors multiply to at most its size."""
        for s, (li, kind) in enumerate(self.enc.slots):
            if kind == "T":
                continue
            fan = self.arch.levels[li]
            size = fan.X if kind == "X" else fan.Y
            prod = self.const_product([np.prod(g.factors[:, s, :], axis=1) for g in self.groups])
            if not isinstance(prod, int):
                self.m.Add(prod <= size)

    def _limit_capacities(self, sparse: Sparse) -> None:
        """Kept tiles fit each capacity partition (compressed tensors take their stored
        fraction: ceil(f*T) <= C iff f*T <= C) and each address storage's columns."""
        m, enc, arch, keep, G = self.m, self.enc, self.arch, self.keep, self.groups
        for si, li in enumerate(enc.storage_levels):
            level: Storage = arch.levels[li]
            slot = enc.storage_slot[si]
            for tensors, cap in level.partitions:
                terms = [(_fraction_up(sparse.capacity(level.name, t)),
                          self.const_product([self.tile_part(g, t, slot) for g in G]))
                         for t in tensors if keep[si, TENSORS.index(t)]]
                if terms:
                    den = math.lcm(*[f.denominator for f, _ in terms])
                    m.Add(sum(int(f * den) * term for f, term in terms) <= cap * den)
            for t, most, along in level.columns:     # columns = tile / extent along one dim
                if keep[si, TENSORS.index(t)]:
                    a = DIMS.index(along)
                    cols = self.const_product([self.tile_part(g, t, slot) // self.inner_ext(g, slot, a)
                                               if a in g.dims else self.tile_part(g, t, slot) for g in G])
                    if not isinstance(cols, int):
                        m.Add(cols <= most)
                    elif cols > most:
                        m.Add(0 == 1)

    def _link(self, traffic: "_Traffic", link: Link) -> None:
        """The accesses of one link of a tensor's chain (see mapper.access): its counts at
        the parent and child, the words carried over the fan-outs between (for their
        energy) and the words sent down through limited ones (for their bandwidth)."""
        t = TENSORS[link.tensor]
        e_net = sum(self.arch.levels[i].energy_of(t) for i in link.fanouts)
        wanted = {(x.term.copies, x.term.quantity) for x in link.counts}
        if e_net:
            wanted |= {(w.copies, w.quantity) for w in link.words}
        value = {key: self._access_term(link, *key) for key in _TERM_ORDER if key in wanted}
        for x in link.counts:
            getattr(traffic, x.kind).setdefault((x.storage, link.tensor), []).append(
                (x.term.coefficient, value[x.term.copies, x.term.quantity]))
        if e_net:
            traffic.carried += [(e_net * w.coefficient, value[w.copies, w.quantity]) for w in link.words]
        down = [(d.coefficient, value[d.copies, d.quantity]) for d in link.down]
        for i in link.fanouts:
            if self.arch.levels[i].limited(t):
                traffic.demand.setdefault((i, t), []).extend(down)

    def _access_term(self, link: Link, copies: str, quantity: str):
        """copies x quantity of one link as a CP-SAT term: the copies a per-group constant
        multiplier (under each network-mode choice for DISTINCT, selected by its literals),
        folded into the quantity's product."""
        enc, G, t = self.enc, self.groups, TENSORS[link.tensor]
        p_slot = enc.storage_slot[link.parent]
        if copies == DISTINCT:
            options = [(lits, [self.spatial_above(g, p_slot) *
                               self.distinct_part(g, t, link.parent_level, link.child_level, modes) for g in G])
                       for modes, lits in self.mode_combos(t, link.parent_level, link.child_level)]
        else:       # instances of the parent, of the child, or every MAC unit (spatial factors above)
            slot = {PARENT: p_slot, MACS: enc.n_slots, CHILD: None}[copies]
            if slot is None:
                slot = enc.storage_slot[link.child]
            options = [([], [self.spatial_above(g, slot) for g in G])]
        at = link.parent if link.child is None else link.child
        if quantity == OPS:
            make = lambda mult: self.const_product([m * self.temporal_all(g) for g, m in zip(G, mult)])  # noqa: E731
        elif quantity == FETCHED:
            make = lambda mult: self.fills(t, at, mult)  # noqa: E731
        else:
            make = lambda mult: self.const_product([m * self._touched_part(g, t, at)  # noqa: E731
                                                    for g, m in zip(G, mult)])
        return self.select([(lits, make(mult)) for lits, mult in options])

    def _cycles(self, sparse: Sparse, ops, traffic: "_Traffic"):
        """The cycles variable (at least the MAC cycles; the bandwidths are added later),
        a helper for cycles x instances, and the cycles' upper bound.

        Cycles are at most a level's traffic per instance over its bandwidth (which may be
        < 1 word per cycle); cycles x instances (bandwidth constraints, leakage) is no
        access count: neither is bounded by `cap` (that would exclude a slow mapping on
        many PEs)."""
        enc, arch = self.enc, self.arch
        bws = [bw for li in enc.storage_levels for bw in (arch.levels[li].read_bw, arch.levels[li].write_bw,
                                                           arch.levels[li].shared_bw) if bw]
        bws += [words for i, _ in traffic.demand for _, words in arch.levels[i].port_words]
        cycles_cap = 8 * self.cap * max(1, math.ceil(1 / min(bws, default=1)))
        # No mapping takes fewer cycles than the analytic bound (bound.py: the MACs over the
        # most MAC units a mapping can use, the compulsory traffic over the bandwidths).
        # The products above reach it only once most options are fixed; as the domain's
        # floor, it turns an EDP cutoff at once into an energy ceiling (2-2.5x shorter
        # proofs of MobileNet (0.5, 128) pw3 on Eyeriss v2).
        floor = int(lower_bound(self.layer, self.arch, self.space.factorization)[1])
        cyc = self.new_var(lo=max(1, min(floor, cycles_cap)), hi=cycles_cap)

        def cycles_times(inst, li):
            copies = math.prod(l.X * l.Y for l in arch.levels[:li] if isinstance(l, Fanout))
            return self.product([cyc, inst], cycles_cap * min(copies, self.hi(inst)))

        mc = _fraction_up(sparse.mac_cycles)
        self.m.Add(mc.denominator * cyc >= mc.numerator * ops)
        return cyc, cycles_times, cycles_cap

    def _energy(self, sparse: Sparse, traffic: "_Traffic", cyc, cycles_times):
        """The scaled energy expression and its upper bound (floored coefficients keep
        CP-SAT's bound a valid lower bound)."""
        enc, arch = self.enc, self.arch
        terms = []
        for si, li in enumerate(enc.storage_levels):
            level: Storage = arch.levels[li]
            for ti, t in enumerate(TENSORS):
                er, ew, eu = level.energy_of(t)
                for dct, e in ((traffic.reads, er), (traffic.fills, ew), (traffic.updates, eu)):
                    for factor, term in dct.get((si, ti), []):
                        terms.append((factor * e, term))
        for e, term in traffic.carried:
            terms.append((e, term))
        for si, li in enumerate(enc.storage_levels):
            if arch.levels[li].leakage:
                inst = self.const_product([self.spatial_above(g, enc.storage_slot[si]) for g in self.groups])
                terms.append((arch.levels[li].leakage, cycles_times(inst, li)))
        if arch.cycle_energy:      # the chip's per-cycle energy (clock, static): linear in the cycles
            terms.append((arch.cycle_energy, cyc))
        energy_const = self.layer.macs * arch.mac_energy * sparse.mac_energy
        self._fit_scale(terms, energy_const)
        coef_terms = [(self._scaled(e), term) for e, term in terms if e]
        energy = sum(c * term for c, term in coef_terms) + self._scaled(energy_const)
        energy_hi = sum(max(c * self.hi(t), c * self.lo(t)) for c, t in coef_terms) + self._scaled(energy_const)
        return energy, energy_hi

    def _bandwidths(self, traffic: "_Traffic", cycles_times) -> None:
        """Cycles x instances x bandwidth cover every level's and every limited fan-out's
        traffic (a fan-out with network modes: under the chosen mode's bandwidth)."""
        enc, arch = self.enc, self.arch
        for si, li in enumerate(enc.storage_levels):
            level: Storage = arch.levels[li]
            inst = self.const_product([self.spatial_above(g, enc.storage_slot[si]) for g in self.groups])
            r = [(f, term) for ti in range(3) for f, term in traffic.reads.get((si, ti), [])]
            w = [(f, term) for ti in range(3) for dct in (traffic.fills, traffic.updates)
                 for f, term in dct.get((si, ti), [])]
            cn = cycles_times(inst, li)
            for bw, words in ((level.read_bw, r), (level.write_bw, w), (level.shared_bw, r + w)):
                self.at_least(bw, cn, words)
        for (i, t), words in traffic.demand.items():
            fan: Fanout = arch.levels[i]
            fan_slot = enc.slots.index((i, "X"))
            inst = self.const_product([self.spatial_above(g, fan_slot) for g in self.groups])
            cn = cycles_times(inst, i)
            if i in enc.mode_fans:
                for mode, lit in self.mode_lits[i, t]:
                    self.at_least(fan.bandwidth(t, mode), cn, words, [] if lit is True else [lit])
            else:
                self.at_least(fan.bandwidth(t, None), cn, words)

    def _goal(self, energy, energy_hi: int, ops, cyc, cycles_cap: int):
        """The objective's variable: energy, cycles, MAC cycles or (energy >> edp_shift) x cycles."""
        m = self.m
        if self.objective == "energy":
            return energy
        if self.objective == "delay":
            return cyc
        if self.objective == "compute":
            return ops if not isinstance(ops, int) else m.NewConstant(ops)
        e_hi = min(int(energy_hi), 2 ** 60)
        e_var = m.NewIntVar(0, e_hi, "energy")
        m.Add(e_var == energy)
        e_small = m.NewIntVar(0, e_hi >> self.edp_shift, "")
        m.Add(e_small * (1 << self.edp_shift) <= e_var)          # e_small = floor(E / 2^shift)
        m.Add(e_var < (e_small + 1) * (1 << self.edp_shift))
        edp = m.NewIntVar(0, min(2 ** 60, (e_hi >> self.edp_shift) * cycles_cap), "edp")
        m.AddMultiplicationEquality(edp, [e_small, cyc])
        return edp

    def cutoff(self, energy_pj: float, cycles: int) -> None:
        """Only look for solutions at least as good as a known mapping's (which stays feasible:
        floored coefficients never raise its scaled energy)."""
        e = math.ceil(energy_pj * self.scale) + 1
        if self.objective == "energy":
            self.m.Add(self.goal <= e)
        elif self.objective == "delay":
            self.m.Add(self.goal <= int(cycles))
        elif self.objective == "compute":
            pass
        else:
            self.m.Add(self.goal <= (e >> self.edp_shift) * int(cycles) + int(cycles))

    def restrict_classes(self, value: float, factors: np.ndarray) -> None:
        """Only look in the spatial classes whose bound (bound.spatial_classes) could beat an
        objective of `value`, and in the class of `factors` (a mapping's [slots, dims]
        factors, kept feasible for its hint). The search's bound stays valid: a class left
        out costs at least `value`. On Eyeriss v2 only 2-4% of the classes can beat the best
        mapping the search finds, and the solver no longer has to close the others itself
        (a one-worker search proves MobileNet (0.5, 128) dw3 in 10 s instead of 19 s,
        AlexNet conv3 in 19 s instead of not in 40 s)."""
        classes = spatial_classes(self.layer, self.arch) if self.space.factorization == "perfect" else None
        if classes is None:
            return
        columns = signature_columns(self.arch, self.enc.slots)
        own = class_of(columns, factors)
        flat = dict(classes)
        if own not in flat:
            return          # a class the bound does not list: restrict nothing
        allowed = {sig for sig, b in flat.items() if class_objective(self.objective, b) <= value * (1 + 1e-9)} | {own}
        # (A table over the entries' product variables proved fastest of the encodings we
        # tried: against their prime exponents as one-hot sums, with or without each class's
        # energy and cycle bounds as constraints.)
        terms = [self.const_product([np.prod(g.factors[:, slots][:, :, [j for j, d in enumerate(g.dims) if d in dims]],
                                             axis=(1, 2)) for g in self.groups]) for slots, dims in columns]
        free = [k for k, t in enumerate(terms) if not isinstance(t, (int, np.integer))]
        rows = {tuple(sig[k] for k in free) for sig in allowed
                if all(sig[k] == t for k, t in enumerate(terms) if k not in free)}
        if not rows:
            self.m.AddBoolOr([])        # no class of this model can beat `value`
        elif free:
            self.m.AddAllowedAssignments([terms[k] for k in free], sorted(rows))

    edp_shift = 0

    def _touched_part(self, g: Group, t: str, si: int) -> np.ndarray:
        """Group g's factor of the distinct t words an instance of storage si touches."""
        rel = {DIMS.index(d) for d in RELEVANT[t]}
        part = self.tile_part(g, t, self.enc.storage_slot[si])
        for so in range(si):
            for d in g.dims:
                if d in rel:
                    part = part * self.fac(g, self.enc.storage_slot[so], d)
        return part

    def _scaled(self, e: float) -> int:
        return int(math.floor(e * self.scale + 1e-9))

    def _fit_scale(self, terms, const) -> None:
        """Lower the energy scale (by powers of ten) until every sum stays inside 60 bits."""
        total = sum(abs(e) * self.hi(term) for e, term in terms) + abs(const)
        while self.scale > 1 and total * self.scale > 2 ** 60:
            self.scale //= 10
        if total * self.scale > DOMAIN_LIMIT:
            # even at 1 pJ resolution the sum leaves CP-SAT's 64-bit integers (its Python
            # layer would turn the products into floats and reject the constraint)
            raise ModelOverflow(f"energy up to {total:.3g} beyond CP-SAT's integers")

    # -- solutions ------------------------------------------------------------------------
    def decode(self, solver):
        """(factors, orders, keep, modes) of the solver's solution."""
        enc = self.enc
        factors = np.ones((enc.n_slots, len(DIMS)), dtype=np.int64)
        for g in self.groups:
            o = 0 if g.n == 1 else next(i for i, x in enumerate(g.x) if solver.BooleanValue(x))
            for j, d in enumerate(g.dims):
                factors[:, d] = g.factors[o, :, j]
        orders = np.stack([self.space.orders[si][0 if not ys else
                           next(k for k, y in enumerate(ys) if solver.BooleanValue(y))]
                           for si, ys in enumerate(self.order_vars)])
        modes = np.zeros((len(enc.mode_fans), len(TENSORS)), dtype=np.int64)
        for j, li in enumerate(enc.mode_fans):
            for ti, t in enumerate(TENSORS):
                options = self.mode_lits[li, t]
                modes[j, ti] = next(k for k, (_, lit) in enumerate(options) if lit is True or solver.BooleanValue(lit))
        return factors, orders, self.keep.copy(), modes

    def hint(self, factors: np.ndarray, orders: np.ndarray, modes: np.ndarray | None = None) -> None:
        if modes is not None:
            for j, li in enumerate(self.enc.mode_fans):
                for ti, t in enumerate(TENSORS):
                    for k, (_, lit) in enumerate(self.mode_lits[li, t]):
                        if lit is not True:
                            self.m.AddHint(lit, k == modes[j, ti])
        for g in self.groups:
            if g.n == 1:
                continue
            want = factors[:, list(g.dims)]
            match = np.nonzero((g.factors == want[None]).all(axis=(1, 2)))[0]
            if len(match):
                for o, x in enumerate(g.x):
                    self.m.AddHint(x, o == match[0])
        for si, ys in enumerate(self.order_vars):
            if ys:
                match = np.nonzero((self.space.orders[si] == orders[si]).all(axis=1))[0]
                if len(match):
                    for k, y in enumerate(ys):
                        self.m.AddHint(y, k == match[0])


def pinned(space: Space, objective: str, factors: np.ndarray, orders: np.ndarray, keep: np.ndarray,
           modes: np.ndarray | None = None, scale: int | None = None, edp_shift: int = 0) -> Builder:
    """The CP-SAT model of `keep`'s pattern with every decision fixed to one candidate: each
    group's option, each storage level's order and each network mode. Its optimum is the
    formulation's objective of that candidate (energy x `scale`, floored coefficients, for
    energy; cycles for delay; (scaled energy >> edp_shift) x cycles for edp), which tests
    compare with the models. Raises ValueError when the candidate is not in the space."""
    b = Builder(space, objective, np.asarray(keep, dtype=bool), energy_scale(space) if scale is None else scale)
    b.edp_shift = edp_shift
    b.build()
    for g in b.groups:
        want = np.asarray(factors)[:, list(g.dims)]
        match = np.nonzero((g.factors == want[None]).all(axis=(1, 2)))[0]
        if not len(match):
            raise ValueError(f"dimensions {[DIMS[d] for d in g.dims]}: the candidate's factors are not an option")
        for o, x in enumerate(g.x):
            b.m.Add(x == int(o == match[0]))
    for si, ys in enumerate(b.order_vars):
        match = np.nonzero((space.orders[si] == np.asarray(orders)[si]).all(axis=1))[0]
        if not len(match):
            raise ValueError(f"storage level {si}: the candidate's order is not a canonical order")
        for k, y in enumerate(ys):
            b.m.Add(y == int(k == match[0]))
    for j, li in enumerate(b.enc.mode_fans):
        for ti, t in enumerate(TENSORS):
            want = 0 if modes is None else int(modes[j, ti])
            for k, (_, lit) in enumerate(b.mode_lits[li, t]):
                if lit is not True:
                    b.m.Add(lit == int(k == want))
    return b


def _fraction_up(x: float) -> Fraction:
    """A density factor as an exact small fraction (decimal densities come back exactly);
    never below x, so a capacity check with it never admits an overflowing tile."""
    f = Fraction(x).limit_denominator(10 ** 6)
    return f if f >= x else f + Fraction(1, 10 ** 6)


def energy_scale(space: Space) -> int:
    """Smallest power of ten that makes every energy an integer (capped at 10^6)."""
    values = [space.arch.mac_energy, space.arch.cycle_energy]
    for level in space.arch.levels:
        if isinstance(level, Storage):
            values += [e for _, es in level.energy for e in es] + [level.leakage]
        else:
            values += [e for _, e in level.energy]
    for k in range(7):
        if all(abs(v * 10 ** k - round(v * 10 ** k)) < 1e-9 for v in values):
            return 10 ** k
    return 10 ** 6
