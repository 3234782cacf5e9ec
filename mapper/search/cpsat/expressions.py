"""Integer expressions for CP-SAT: per-option constants, exact products with tight
domains, selections under enforcement literals, and boolean connectives.

A *term* is a Python int or an IntVar whose bounds `Expressions` remembers (so products
of terms get tight domains and linear cuts). Per-option constants are arrays indexed by a
group's option (see groups.py): the group's one-hot literals select the entry.
"""
from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
from ortools.sat.python import cp_model

from .groups import Group


def assignments(literals: list):
    """Every truth assignment of `literals` (CP-SAT literals, or Python bools that are
    fixed) consistent with the fixed ones, in the order of itertools.product: (values,
    the enforcement literals that make exactly this assignment hold)."""
    for bits in itertools.product([False, True], repeat=len(literals)):
        if any((lit is True or lit is False) and lit != on for lit, on in zip(literals, bits)):
            continue
        yield bits, [lit if on else lit.Not() for lit, on in zip(literals, bits)
                     if lit is not True and lit is not False]


# CP-SAT's variable domains must lie in [-kint64max / 2, kint64max / 2] (Validate() rejects
# wider ones), and its linear sums must not leave the 64-bit integers.
DOMAIN_LIMIT = (2 ** 63 - 1) // 2


class ModelOverflow(Exception):
    """The model's numbers do not fit CP-SAT's integers (a domain or a sum beyond its 64-bit
    range): the search goes on without CP-SAT."""


class Expressions:
    """A CP-SAT model with the helpers that build exact integer expressions in it."""

    def __init__(self, cap: int):
        self.m = cp_model.CpModel()
        self.cap = cap                                # the bound of any access count
        self.bounds: dict[int, tuple[int, int]] = {}  # IntVar index -> (lo, hi)
        self._sb = {}                                 # cached AND literals

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
        lo_, hi_ = (values[0], values[-1]) if values is not None else (lo, hi)
        if not -DOMAIN_LIMIT <= int(lo_) <= int(hi_) <= DOMAIN_LIMIT:
            raise ModelOverflow(f"domain {lo_}..{hi_} beyond CP-SAT's integers")
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

    def select(self, options):
        """An IntVar equal to the term of the chosen option: [(literals, term)]."""
        if len(options) == 1 and not options[0][0]:
            return options[0][1]
        lo = min(self.lo(term) for _, term in options)
        hi = max(self.hi(term) for _, term in options)
        out = self.new_var(lo=lo, hi=hi)
        for lits, term in options:
            self.m.Add(out == term).OnlyEnforceIf(lits)
        return out

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

    def from_states(self, g: Group, states):
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

    def at_least(self, bw, cn, traffic, lits=()) -> None:
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

    def hi(self, term) -> int:
        return int(term) if isinstance(term, (int, np.integer)) else self.bounds[term.Index()][1]

    def lo(self, term) -> int:
        return int(term) if isinstance(term, (int, np.integer)) else self.bounds[term.Index()][0]
