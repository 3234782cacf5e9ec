"""CP-SAT search: the mapspace as a constraint program with the model's exact cost.

Formulation (see README "Search"). The dimensions fall into six groups, N, G, M, C,
(P, R) and (Q, S); pairing P with R and Q with S makes every input tile extent, halo and
multicast count a constant of one group's choice. Each group chooses one *option*: a
complete assignment of its dimensions' factors to the slots (temporal loops of each
storage level, X and Y of each fan-out), precomputed from the pruned factorizations.
Each storage level chooses one canonical loop order, and the run fixes one keep pattern
per model (a model per pattern).

Every access count of the model is a product over groups of a per-group integer, so it
is an exact product of CP-SAT integer variables:
* tile sizes, instance counts, distinct-tile (multicast) counts and MAC counts are
  per-option constants;
* a buffer's fills are the tile times, for each loop outside it, its bound if the loop
  counts and 1 otherwise. A relevant loop always counts; an irrelevant one counts iff it
  sits outside the innermost relevant loop with factor > 1 ("r"), which boolean variables
  derive from the factors (s = factor > 1) and the order choice; when r slides (an input
  halo), r's group contributes E + (b_r - 1) * min(E, shift) instead of E * b_r. Steps
  that bring back exactly the held input tile save a whole tile each: one more product
  per candidate loop (its group's axis moves cancel, no other relevant loop iterates
  inside it), subtracted.
Capacities and fan-outs are exact integer constraints on products. Energies are integers
after scaling (floored, so CP-SAT's bound stays a valid lower bound of the true cost);
with the built-in archs' energies the scaling is exact. The objective is the model's
energy, cycles (max of compute and every level's bandwidth cycles) or their product.
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
from ortools.sat.python import cp_model

from ..arch import Fanout, Storage
from ..batch import evaluate_batch
from ..model import Sparse, distinct_offsets
from ..problem import AXES, DIMS, RELEVANT, SLIDING_DIMS, SLIDING_PAIRS, TENSORS, tensor_axes
from .space import Space

#: Dimensions chosen jointly: each sliding pair (an input axis's two dimensions) is one
#: group, every other dimension one on its own.
GROUPS = tuple((d,) for d in DIMS if d not in SLIDING_DIMS) + SLIDING_PAIRS


@dataclass
class Group:
    dims: tuple[int, ...]           # dim indices
    factors: np.ndarray             # [options, slots, len(dims)] factor per slot
    x: list = field(default_factory=list)      # one-hot literals (None when a single option)

    @property
    def n(self) -> int:
        return len(self.factors)


def build_groups(space: Space) -> list[Group]:
    groups = []
    for names in GROUPS:
        dims = tuple(DIMS.index(d) for d in names)
        per = []
        for d in dims:
            full = np.ones((len(space.factorizations[d]), space.enc.n_slots), dtype=np.int64)
            if space.dim_slots[d]:
                full[:, list(space.dim_slots[d])] = space.factorizations[d]
            per.append(full)
        combos = np.array(list(itertools.product(*[range(len(p)) for p in per])), dtype=np.int64)
        fac = np.stack([per[j][combos[:, j]] for j in range(len(dims))], axis=2)
        if len(dims) == 2:
            fac = fac[_joint_fits(space, dims, fac)]
        groups.append(Group(dims, fac))
    return groups


def _joint_fits(space: Space, dims, fac) -> np.ndarray:
    """Options of a (P, R) or (Q, S) group whose input tile alone fits every buffer that
    must keep Inputs (the per-dimension check cannot see the combined halo)."""
    ok = np.ones(len(fac), dtype=bool)
    layer, arch, enc = space.layer, space.arch, space.enc
    axis = [a for a in tensor_axes(layer, "Inputs") if len(a) == 2 and DIMS.index(a[0][0]) in dims][0]
    coef = {DIMS.index(d): c for d, c in axis}
    for si, li in enumerate(enc.storage_levels):
        level: Storage = arch.levels[li]
        part = level.partition_of("Inputs")
        if part is None or "Inputs" in level.may_bypass:
            continue
        slot = enc.storage_slot[si]
        extent = 1 + sum(coef[d] * (np.prod(fac[:, slot:, j], axis=1) - 1) for j, d in enumerate(dims))
        ok &= extent <= part[1]
    return ok


class Builder:
    """Builds the CP-SAT model of one keep pattern."""

    def __init__(self, space: Space, objective: str, keep: np.ndarray, scale: int):
        self.space, self.objective, self.keep, self.scale = space, objective, keep, scale
        self.enc, self.arch, self.layer = space.enc, space.arch, space.layer
        self.m = cp_model.CpModel()
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
        self._s, self._before, self._sb, self._rc = {}, {}, {}, {}
        # Every count is at most (temporal iterations x instances) x the input halo's growth:
        # a tile of weights or outputs has at most one word per inner iteration, an input
        # tile at most stride x dilation times that per axis.
        sv, sh = self.layer.stride
        dv, dh = self.layer.dilation
        self.cap = max(1 << 20, 4 * self.layer.macs * (sv + dv) * (sh + dh))
        self.bounds: dict[int, tuple[int, int]] = {}

    # -- per-option constants as integer expressions -------------------------------------
    def value(self, g: Group, values: np.ndarray):
        """The linear expression equal to values[chosen option] (ints)."""
        values = np.asarray(values, dtype=np.int64)
        if g.n == 1:
            return int(values[0])
        base = int(values.min())
        return base + cp_model.LinearExpr.WeightedSum(g.x, [int(v) - base for v in values])

    def var_of(self, g: Group, values: np.ndarray):
        """An IntVar equal to values[chosen option] (for products)."""
        values = np.asarray(values, dtype=np.int64)
        if g.n == 1 or (values == values[0]).all():
            return int(values[0])
        v = self.new_var(sorted(set(int(x) for x in values)))
        self.m.Add(v == self.value(g, values))
        return v

    def new_var(self, values=None, lo=None, hi=None):
        """An IntVar over a set of values or a range, remembering its bounds for products."""
        if values is not None:
            v = self.m.NewIntVarFromDomain(cp_model.Domain.FromValues(values), "")
            self.bounds[v.Index()] = (values[0], values[-1])
        else:
            v = self.m.NewIntVar(int(lo), int(hi), "")
            self.bounds[v.Index()] = (int(lo), int(hi))
        return v

    def product(self, factors, cap: int | None = None):
        """An IntVar equal to the product of ints and IntVars, at most `cap` (default
        `self.cap`, the bound of any access count)."""
        cap = self.cap if cap is None else cap
        consts = [f for f in factors if isinstance(f, (int, np.integer))]
        vars_ = [f for f in factors if not isinstance(f, (int, np.integer))]
        c = math.prod(int(x) for x in consts)
        if not vars_:
            return c
        lo, hi = c, c
        for v in vars_:
            vlo, vhi = self.bounds[v.Index()]
            lo, hi = lo * vlo, hi * vhi
        # No access count can exceed `cap` (see __init__); the cap keeps CP-SAT's domains small.
        lo, hi = min(lo, cap), min(hi, cap)
        if len(vars_) == 1 and c == 1:
            return vars_[0]
        out = self.new_var(lo=lo, hi=hi)
        # Linear cuts for the LP relaxation: out >= c * u_g * (product of the others' minima).
        for i, v in enumerate(vars_):
            rest = c * math.prod(self.bounds[w.Index()][0] for j, w in enumerate(vars_) if j != i)
            if rest > 1 and len(vars_) > 1:
                self.m.Add(out >= rest * v)
        # A chain of two-factor products (CP-SAT reduces wider ones itself; doing it here
        # keeps every intermediate's domain tight).
        acc, acc_lo, acc_hi = vars_[0], *self.bounds[vars_[0].Index()]
        for k, v in enumerate(vars_[1:], start=1):
            vlo, vhi = self.bounds[v.Index()]
            acc_lo, acc_hi = min(acc_lo * vlo, cap), min(acc_hi * vhi, cap)
            nxt = out if (k == len(vars_) - 1 and c == 1) else self.new_var(lo=acc_lo, hi=acc_hi)
            self.m.AddMultiplicationEquality(nxt, [acc, v])
            acc = nxt
        if c != 1:
            self.m.Add(out == c * acc)
        return out

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

    def spatial_all(self, g: Group) -> np.ndarray:
        return self.spatial_above(g, self.enc.n_slots)

    def tile_part(self, g: Group, t: str, slot: int) -> np.ndarray:
        """Group g's factor of the tile of t at a storage slot (its axes' extents)."""
        part = np.ones(g.n, dtype=np.int64)
        for axis in tensor_axes(self.layer, t):
            coef = {DIMS.index(d): c for d, c in axis}
            if not set(coef) & set(g.dims):
                continue
            e = np.ones(g.n, dtype=np.int64)
            for d, c in coef.items():
                e = e + c * (self.inner_ext(g, slot, d) - 1)
            part = part * e
        return part

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

    def select(self, options):
        """An IntVar equal to the term of the chosen option: [(literals, term)]."""
        if len(options) == 1 and not options[0][0]:
            return options[0][1]
        lo = min(self._lo(term) for _, term in options)
        hi = max(self._hi(term) for _, term in options)
        out = self.new_var(lo=lo, hi=hi)
        for lits, term in options:
            self.m.Add(out == term).OnlyEnforceIf(lits)
        return out

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

    def both(self, a, b):
        """Literal for a AND b (a, b literals or Python bools)."""
        if a is False or b is False:
            return False
        if a is True:
            return b
        if b is True:
            return a
        key = ("and", a.Index(), b.Index())     # literal indices (negative for negations)
        if key not in self._sb:
            v = self.m.NewBoolVar("")
            self.m.AddBoolAnd([a, b]).OnlyEnforceIf(v)
            self.m.AddBoolOr([a.Not(), b.Not(), v])
            self._sb[key] = (v, a, b)
        return self._sb[key][0]

    def any_of(self, lits):
        """Literal for OR of literals/bools."""
        lits = [l for l in lits if l is not False]
        if any(l is True for l in lits):
            return True
        if not lits:
            return False
        if len(lits) == 1:
            return lits[0]
        v = self.m.NewBoolVar("")
        self.m.AddBoolOr(lits).OnlyEnforceIf(v)
        for l in lits:
            self.m.AddImplication(l, v)
        return v

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
        out = self.new_var(lo=0, hi=self._hi(total))
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
                    parts.append(self._from_states(g, states))
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
        for bits in itertools.product([False, True], repeat=len(same_level)):
            lits, vals, feasible = [], base.copy(), True
            inside = []                      # (slot, d) of g's temporal loops between k and the buffer
            for d, outside in zip(same_level, bits):
                lit = self.before(so, d, dk)
                if lit is True or lit is False:
                    if lit != outside:
                        feasible = False
                        break
                else:
                    lits.append(lit if outside else lit.Not())
                if outside:
                    vals = vals * self.fac(g, k_slot, d)
                else:
                    inside.append((k_slot, d))
            if not feasible:
                continue
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
        for bits in itertools.product([False, True], repeat=len(irrelevant)):
            lits, vals, feasible = [], base.copy(), True
            for (so, d), on in zip(irrelevant, bits):
                lit = counted[so, d]
                if lit is True or lit is False:
                    if lit != on:
                        feasible = False
                        break
                else:
                    lits.append(lit if on else lit.Not())
                if on:
                    vals = vals * self.fac(g, self.enc.storage_slot[so], d)
            if feasible:
                states.append((lits, vals))
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
        return self._from_states(g, states)

    def _from_states(self, g: Group, states):
        """An IntVar (or int) equal to the per-option values of the state whose enforcement
        literals hold: [(literals, values)], exactly one state holding."""
        if len(states) == 1:
            return self.var_of(g, states[0][1])
        if all((vals == states[0][1]).all() for _, vals in states):
            return self.var_of(g, states[0][1])
        allvals = sorted(set(int(v) for _, vals in states for v in vals))
        out = self.new_var(allvals)
        for lits, vals in states:
            ct = self.m.Add(out == self.value(g, vals))
            if lits:
                ct.OnlyEnforceIf(lits)
        return out

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
                e = np.ones(g.n, dtype=np.int64)
                for dd, c in coef.items():
                    e = e + c * (self.inner_ext(g, slot, dd) - 1)
                return e
        raise KeyError(d)

    def const_product(self, per_group):
        """Product over groups of per-option constants (list of arrays, one per group)."""
        return self.product([self.var_of(g, v) for g, v in zip(self.groups, per_group)])

    # -- the whole model ------------------------------------------------------------------
    def build(self):
        m, enc, arch, keep = self.m, self.enc, self.arch, self.keep
        G = self.groups
        # fan-out sizes
        for s, (li, kind) in enumerate(enc.slots):
            if kind == "T":
                continue
            fan = arch.levels[li]
            size = fan.X if kind == "X" else fan.Y
            prod = self.const_product([np.prod(g.factors[:, s, :], axis=1) for g in G])
            if not isinstance(prod, int):
                m.Add(prod <= size)
        sparse = Sparse.of(self.layer, arch)
        self.mode_literals()
        # capacities (compressed tensors take their stored fraction: ceil(f*T) <= C iff f*T <= C)
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
        ops = self.const_product([self.temporal_all(g) for g in G])
        reads, fills, updates = {}, {}, {}
        carried = []
        demand = {}
        n_levels = len(arch.levels)

        def add(d, key, term, factor=1.0):
            d.setdefault(key, []).append((factor, term))

        for ti, t in enumerate(TENSORS):
            chain = [si for si in range(self.n_st) if keep[si, ti]]
            for k, p in enumerate(chain):
                c = chain[k + 1] if k + 1 < len(chain) else None
                p_level = enc.storage_levels[p]
                c_level = n_levels if c is None else enc.storage_levels[c]
                p_slot = enc.storage_slot[p]
                combos = list(self.mode_combos(t, p_level, c_level))
                # distinct child tiles in the whole machine, per group, per mode choice
                groups = [[self.spatial_above(g, p_slot) * self.distinct_part(g, t, p_level, c_level, modes)
                           for g in G] for modes, _ in combos]
                between = [i for i in range(p_level + 1, c_level) if isinstance(arch.levels[i], Fanout)]
                e_net = sum(arch.levels[i].energy_of(t) for i in between)
                if c is None:
                    work = sparse.operand(t)
                    term = self.select([(lits, self.const_product([gv * self.temporal_all(g)
                                                                   for g, gv in zip(G, gr)]))
                                        for (_, lits), gr in zip(combos, groups)])
                    add(updates if t == "Outputs" else reads, (p, ti), term, work)
                    down = [(work, term)]
                    if t == "Outputs":
                        add(reads, (p, ti), term, work)
                        touched = self.const_product([self.spatial_above(g, p_slot) *
                                                      self._touched_part(g, t, p) for g in G])
                        add(reads, (p, ti), touched, -work)
                        down = [(2 * work, term)]
                    if e_net:
                        carried.append((e_net * work, self.const_product([self.spatial_all(g) * self.temporal_all(g)
                                                                          for g in G])))
                else:
                    c_slot = enc.storage_slot[c]
                    n_c = [self.spatial_above(g, c_slot) for g in G]
                    total_c = self.fills(t, c, n_c)
                    per_group = self.select([(lits, self.fills(t, c, gr)) for (_, lits), gr in zip(combos, groups)])
                    if t == "Outputs":
                        touched_c = self.const_product([nc * self._touched_part(g, t, c) for g, nc in zip(G, n_c)])
                        touched_g = self.select([(lits, self.const_product([gv * self._touched_part(g, t, c)
                                                                            for g, gv in zip(G, gr)]))
                                                 for (_, lits), gr in zip(combos, groups)])
                        add(reads, (p, ti), per_group)
                        add(reads, (p, ti), touched_g, -1.0)
                        add(fills, (c, ti), total_c)
                        add(fills, (c, ti), touched_c, -1.0)
                        add(updates, (p, ti), per_group)
                        down = [(2.0, per_group), (-1.0, touched_g)]
                        if e_net:
                            carried += [(2 * e_net, total_c), (-e_net, touched_c)]
                    else:
                        at_p = sparse.stored(arch.levels[p_level].name, t)
                        at_c = sparse.stored(arch.levels[c_level].name, t)
                        add(reads, (p, ti), per_group, at_p)
                        add(fills, (c, ti), total_c, at_c)
                        down = [(at_p, per_group)]
                        if e_net:
                            carried.append((e_net * at_c, total_c))
                for i in between:
                    if arch.levels[i].limited(t):
                        demand.setdefault((i, t), []).extend(down)
        # cycles. They are at most a level's traffic per instance over its bandwidth (which
        # may be < 1 word per cycle); cycles x instances (bandwidth constraints, leakage) is
        # no access count: neither is bounded by `cap` (that would exclude a slow mapping on
        # many PEs).
        bws = [bw for li in enc.storage_levels for bw in (arch.levels[li].read_bw, arch.levels[li].write_bw,
                                                           arch.levels[li].shared_bw) if bw]
        bws += [words for i, _ in demand for _, words in arch.levels[i].port_words]
        cycles_cap = 8 * self.cap * max(1, math.ceil(1 / min(bws, default=1)))
        cyc = self.new_var(lo=1, hi=cycles_cap)

        def cycles_times(inst, li):
            copies = math.prod(l.X * l.Y for l in arch.levels[:li] if isinstance(l, Fanout))
            return self.product([cyc, inst], cycles_cap * min(copies, self._hi(inst)))

        mc = _fraction_up(sparse.mac_cycles)
        m.Add(mc.denominator * cyc >= mc.numerator * ops)
        # energy (scaled, floored coefficients keep CP-SAT's bound a valid lower bound)
        terms = []
        for si, li in enumerate(enc.storage_levels):
            level: Storage = arch.levels[li]
            for ti, t in enumerate(TENSORS):
                er, ew, eu = level.energy_of(t)
                for dct, e in ((reads, er), (fills, ew), (updates, eu)):
                    for factor, term in dct.get((si, ti), []):
                        terms.append((factor * e, term))
        for e, term in carried:
            terms.append((e, term))
        for si, li in enumerate(enc.storage_levels):
            if arch.levels[li].leakage:
                inst = self.const_product([self.spatial_above(g, enc.storage_slot[si]) for g in G])
                terms.append((arch.levels[li].leakage, cycles_times(inst, li)))
        if arch.cycle_energy:      # the chip's per-cycle energy (clock, static): linear in the cycles
            terms.append((arch.cycle_energy, cyc))
        energy_const = self.layer.macs * arch.mac_energy * sparse.mac_energy
        self._fit_scale(terms, energy_const)
        coef_terms = [(self._scaled(e), term) for e, term in terms if e]
        energy = sum(c * term for c, term in coef_terms) + self._scaled(energy_const)
        energy_hi = sum(max(c * self._hi(t), c * self._lo(t)) for c, t in coef_terms) + self._scaled(energy_const)
        for si, li in enumerate(enc.storage_levels):
            level: Storage = arch.levels[li]
            inst = self.const_product([self.spatial_above(g, enc.storage_slot[si]) for g in G])
            r = [(f, term) for ti in range(3) for f, term in reads.get((si, ti), [])]
            w = [(f, term) for ti in range(3) for dct in (fills, updates) for f, term in dct.get((si, ti), [])]
            cn = cycles_times(inst, li)
            for bw, traffic in ((level.read_bw, r), (level.write_bw, w), (level.shared_bw, r + w)):
                self._bandwidth(bw, cn, traffic)
        for (i, t), traffic in demand.items():
            fan: Fanout = arch.levels[i]
            fan_slot = enc.slots.index((i, "X"))
            inst = self.const_product([self.spatial_above(g, fan_slot) for g in G])
            cn = cycles_times(inst, i)
            if i in enc.mode_fans:
                for mode, lit in self.mode_lits[i, t]:
                    self._bandwidth(fan.bandwidth(t, mode), cn, traffic, [] if lit is True else [lit])
            else:
                self._bandwidth(fan.bandwidth(t, None), cn, traffic)
        self.cycles = cyc
        if self.objective == "energy":
            self.goal = energy
        elif self.objective == "delay":
            self.goal = cyc
        elif self.objective == "compute":
            self.goal = ops if not isinstance(ops, int) else m.NewConstant(ops)
        else:
            e_hi = min(int(energy_hi), 2 ** 60)
            e_var = m.NewIntVar(0, e_hi, "energy")
            m.Add(e_var == energy)
            e_small = m.NewIntVar(0, e_hi >> self.edp_shift, "")
            m.Add(e_small * (1 << self.edp_shift) <= e_var)          # e_small = floor(E / 2^shift)
            m.Add(e_var < (e_small + 1) * (1 << self.edp_shift))
            edp = m.NewIntVar(0, min(2 ** 60, (e_hi >> self.edp_shift) * cycles_cap), "edp")
            m.AddMultiplicationEquality(edp, [e_small, cyc])
            self.goal = edp
        m.Minimize(self.goal)
        return self

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

    def _bandwidth(self, bw, cn, traffic, lits=()) -> None:
        """cycles x instances x bandwidth >= sum of factor x term (exact rationals)."""
        traffic = [(Fraction(f).limit_denominator(10 ** 6), term) for f, term in traffic
                   if not isinstance(term, (int, np.integer)) or term]
        if not bw or not traffic:
            return
        fb = Fraction(bw).limit_denominator(1000)
        den = math.lcm(fb.denominator, *[f.denominator for f, _ in traffic])
        ct = self.m.Add(int(fb * den) * cn >= sum(int(f * den) * term for f, term in traffic))
        if lits:
            ct.OnlyEnforceIf(list(lits))

    def _hi(self, term) -> int:
        return int(term) if isinstance(term, (int, np.integer)) else self.bounds[term.Index()][1]

    def _lo(self, term) -> int:
        return int(term) if isinstance(term, (int, np.integer)) else self.bounds[term.Index()][0]

    def _scaled(self, e: float) -> int:
        return int(math.floor(e * self.scale + 1e-9))

    def _fit_scale(self, terms, const) -> None:
        """Lower the energy scale (by powers of ten) until every sum stays inside 60 bits."""
        total = sum(abs(e) * self._hi(term) for e, term in terms) + abs(const)
        while self.scale > 1 and total * self.scale > 2 ** 60:
            self.scale //= 10

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


@dataclass
class PatternResult:
    """What one keep pattern's solve produced (built in a worker thread, merged by solve)."""

    status: int
    bound: float                      # valid lower bound of the true objective in this pattern
    solutions: list                   # [(factors, orders, keep)] found, best last
    found: int
    best: "_Incumbent"                # the best mapping known after this solve


def solve(run, workers: int, hints: bool) -> None:
    """Run CP-SAT on every keep pattern; offer solutions to the run's pool, set its bound.

    Each solve uses one CP-SAT worker, which is deterministic; with several patterns and
    workers the patterns are solved concurrently in threads (CP-SAT releases the GIL).
    Workers left over (fewer patterns than workers) run each pattern's proof check
    alongside its first solve.
    """
    space: Space = run.space
    if not len(run.pool.values):
        run.seed_baseline()
    scale = energy_scale(space)
    patterns = list(range(len(space.keeps)))
    best_keep = run.pool.keep[0]
    patterns.sort(key=lambda j: not np.array_equal(space.keeps[j], best_keep))
    incumbent = _Incumbent.of(run)
    concurrent = min(workers, len(patterns))
    cp_workers = workers // concurrent          # > 1: the pattern's solve and check run at once
    left = run.time_left()
    if left is not None and left <= 0.05:
        run.stopped_by_limit = True
        return
    started = itertools.count()          # thread-safe enough: next() on a count is atomic in CPython

    def one(j):
        # Each pattern gets an even share of the time left when it starts, so time a quick
        # pattern leaves unused goes to the ones after it.
        waiting = len(patterns) - next(started)
        left = run.time_left()
        budget = None if left is None else max(0.0, left) / math.ceil(waiting / concurrent)
        return _solve_pattern(run, space, space.keeps[j], scale, cp_workers, hints, budget, incumbent)

    try:
        if concurrent > 1:
            from concurrent.futures import ThreadPoolExecutor
            with ThreadPoolExecutor(concurrent) as pool:
                results = list(pool.map(one, patterns))
        else:
            results = []
            for j in patterns:
                results.append(one(j))
                incumbent = results[-1].best
    except _Overflow:
        # energies x access counts beyond CP-SAT's 64-bit integers even at 1 pJ resolution
        run.notes.append("CP-SAT skipped: the energies overflow its 64-bit integers (sampled best kept)")
        run.stopped_by_limit = True
        return
    all_proven = True
    for res in results:
        run.evaluated += res.found
        for f, o, k, md in res.solutions:
            _offer(run, f, o, k, md)
        if res.status not in (cp_model.OPTIMAL, cp_model.INFEASIBLE) or run.interrupted:
            all_proven = False
            run.stopped_by_limit = True
    bound = min(min(r.bound for r in results), run.pool.best)
    if all_proven:
        run.proven = True
        bound = run.pool.best
    run.bound = bound if run.bound is None else max(run.bound, bound)


@dataclass
class _Incumbent:
    """The best known mapping's objective, energy and cycles (cutoff and EDP scaling)."""

    value: float
    energy: float
    cycles: int
    factors: np.ndarray
    orders: np.ndarray
    keep: np.ndarray
    modes: np.ndarray
    objective: str

    @classmethod
    def of(cls, run) -> "_Incumbent":
        p = run.pool
        c = evaluate_batch(run.space.enc, p.factors[:1], p.orders[:1], p.keep[:1], p.modes[:1])
        return cls(p.best, float(c.energy_pj[0]), int(c.cycles[0]), p.factors[0], p.orders[0], p.keep[0],
                   p.modes[0], run.objective)


def _solve_pattern(run, space, keep, scale, workers, hints, budget, incumbent: "_Incumbent") -> PatternResult:
    """Build and solve the model of one keep pattern, cut off at the incumbent, and check
    any proof (see `_solve_checked`). For EDP the energy is rounded relative to the
    incumbent; if the solve finds a much better mapping, it solves again with the finer
    rounding that mapping allows."""
    start = time.monotonic()
    solutions, found = [], 0
    best = incumbent
    for attempt in range(3):
        shift = _edp_shift(best.value, scale) if run.objective == "edp" else 0

        def build():
            b = Builder(space, run.objective, keep, scale)
            b.edp_shift = shift
            b.build()
            b.cutoff(best.energy, best.cycles)
            if hints and np.array_equal(best.keep, keep):
                b.hint(best.factors, best.orders, best.modes)
            return b

        left = None if budget is None else budget - (time.monotonic() - start)
        status, bound_cp, sols, n = _solve_checked(run, build, workers, left)
        found += n
        for f, o, k, md in sols:
            solutions.append((f, o, k, md))
            c = evaluate_batch(space.enc, f[None], o[None], k[None], md[None])
            value = float(c.objective(run.objective)[0])
            if value < best.value:
                best = _Incumbent(value, float(c.energy_pj[0]), int(c.cycles[0]), f, o, k, md, run.objective)
        bound = float("inf") if bound_cp is None else _true_bound(run, shift, bound_cp, scale)
        finer = run.objective == "edp" and shift > _edp_shift(best.value, scale) + 3
        if not finer or status not in (cp_model.OPTIMAL, cp_model.INFEASIBLE) or run.interrupted:
            break
    return PatternResult(status, bound, solutions, found, best)


FAST = {"linearization_level": 0, "cp_model_probing_level": 0, "max_presolve_iterations": 1, "random_seed": 0}
CHECK = {"linearization_level": 0, "cp_model_probing_level": 1, "random_seed": 1}


@dataclass
class _Solve:
    """The outcome of one CP-SAT solve."""

    status: int
    value: int | None                 # objective (CP units) of the solution, if any
    solution: tuple | None            # (factors, orders, keep, modes)
    bound: float                      # the solver's bound (0 without a solution)
    seen: int                         # solutions reported along the way


def _one_solve(run, build, params: dict, cutoff: int | None, left: float | None) -> _Solve:
    """Solve a fresh model (constrained to goal <= cutoff if given) with one CP-SAT
    worker: deterministic, and on our models 2-10x faster than several workers in CP-SAT's
    deterministic interleaved mode (measured on AlexNet and MobileNet layers)."""
    start = time.monotonic()
    b = build()
    if cutoff is not None:
        b.m.Add(b.goal <= cutoff)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    for key, value in params.items():
        setattr(solver.parameters, key, value)
    if left is not None:        # building the model spends the same budget
        solver.parameters.max_time_in_seconds = max(0.05, left - (time.monotonic() - start))
    solver.parameters.catch_sigint_signal = False   # Ctrl-C is handled by the search
    cb = _Progress(run, b)
    status = _solve_interruptibly(run, solver, b.m, cb)
    if status == cp_model.MODEL_INVALID:
        why = b.m.Validate()
        if "overflow" in why:
            raise _Overflow()
        raise AssertionError(f"invalid CP-SAT model: {why}")
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return _Solve(status, solver.Value(b.goal), b.decode(solver),
                      solver.BestObjectiveBound(), cb.solutions)
    return _Solve(status, None, None, 0, cb.solutions)


def _solve_checked(run, build, workers: int, budget: float | None):
    """Solve fast, then check the proof.

    OR-Tools 9.15 sometimes "proves" a wrong optimum on our models (a model with more
    constraints reached a better value; which instances fail depends on the parameters).
    So a claimed optimum V (or "nothing beats the incumbent") is only accepted once a
    second solve with other settings (full presolve with light probing, another seed)
    finds nothing better than V; whatever it finds instead is kept and checked in turn. On
    every wrong proof we found (tests/test_search.py) the check was right; full probing
    (level 2) is as right there but 2-3x slower on AlexNet's conv3/conv4. With a spare
    worker the first solve and the check run at once (the check then without a cutoff),
    and two agreeing proofs confirm each other. Returns (status, bound in CP units or None
    for "nothing in this pattern beats the cutoff", solutions, solutions seen).
    """
    start = time.monotonic()
    sols, seen = [], 0
    cutoff = None
    for round_ in range(20):
        left = None if budget is None else budget - (time.monotonic() - start)
        if left is not None and left <= 0.05:
            return cp_model.FEASIBLE if sols else cp_model.UNKNOWN, 0, sols, seen
        if round_ == 0 and workers > 1:
            from concurrent.futures import ThreadPoolExecutor
            with ThreadPoolExecutor(2) as pool:
                results = list(pool.map(lambda params: _one_solve(run, build, params, None, left),
                                        (FAST, CHECK)))
        else:
            results = [_one_solve(run, build, FAST if round_ == 0 else CHECK, cutoff, left)]
        for r in results:
            seen += r.seen
            if r.solution is not None:
                sols.append(r.solution)
        if run.interrupted or any(r.status not in (cp_model.OPTIMAL, cp_model.INFEASIBLE) for r in results):
            return cp_model.FEASIBLE if sols else cp_model.UNKNOWN, min(r.bound for r in results), sols, seen
        claims = [r.value for r in results if r.status == cp_model.OPTIMAL]
        checked = round_ > 0 or len(results) == 2
        if checked and len(claims) == 2 and claims[0] == claims[1]:
            return cp_model.OPTIMAL, claims[0], sols, seen          # two proofs agree
        if checked and not claims:
            if cutoff is None:       # confirmed: nothing in this pattern beats the incumbent
                return cp_model.INFEASIBLE, None, sols, seen
            return cp_model.OPTIMAL, cutoff + 1, sols, seen      # confirmed optimum
        # a claim to check (or a better solution the check found): look strictly below it
        if claims:
            cutoff = min(claims) - 1
    return cp_model.FEASIBLE if sols else cp_model.UNKNOWN, 0, sols, seen


def _solve_interruptibly(run, solver, model, callback):
    """Solve in a thread so the calling thread stays in Python, where Ctrl-C can reach the
    search's handler (which sets run.interrupted; the solver then stops, keeping its best)."""
    import threading
    box = {}

    def work():
        try:
            box["status"] = solver.Solve(model, callback)
        except BaseException as exc:          # re-raised in the calling thread
            box["error"] = exc

    thread = threading.Thread(target=work)
    thread.start()
    while thread.is_alive():
        thread.join(0.1)
        # CP-SAT's own max_time can overrun by a second or more on big models (loading,
        # presolve): the search's deadline is held here too
        if run.interrupted or (run.deadline is not None and time.monotonic() > run.deadline):
            solver.stop_search()
        run.show("cpsat")             # keeps the time left moving between solutions
    if "error" in box:
        raise box["error"]
    return box["status"]


class _Overflow(Exception):
    """The model's numbers do not fit CP-SAT's integers (Validate() reports an overflow)."""


def _edp_shift(best_value: float, scale: int) -> int:
    """Right shift of the scaled energy so that energy x cycles of every solution at least as
    good as the incumbent stays far inside CP-SAT's 62-bit range."""
    bits = math.log2(max(best_value * scale, 1.0))
    return max(0, int(math.ceil(bits - 56)))


def _true_bound(run, shift: int, value: float, scale: int) -> float:
    if run.objective == "energy":
        return value / scale
    if run.objective in ("delay", "compute"):
        return value
    return value * (1 << shift) / scale


def _offer(run, f, o, k, md):
    enc = run.space.enc
    if not run.space.valid(f[None], k[None])[0]:
        return      # a rounding of densities admitted a tile that does not fit: not a mapping
    v = evaluate_batch(enc, f[None], o[None], k[None], md[None]).objective(run.objective)
    run.valid += 1
    run.offer(v, f[None], o[None], k[None], md[None], "cpsat")


class _Progress(cp_model.CpSolverSolutionCallback):
    def __init__(self, run, builder: Builder):
        super().__init__()
        self.run, self.builder = run, builder
        self.solutions = 0

    def on_solution_callback(self):
        self.solutions += 1
        # CP-SAT's bound holds for the whole space only when there is one keep pattern
        run, b = self.run, self.builder
        if len(run.space.keeps) == 1:
            run.cp_bound = max(run.cp_bound or 0.0, _true_bound(run, b.edp_shift, self.BestObjectiveBound(), b.scale))
        run.show("cpsat")
