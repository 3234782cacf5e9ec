"""Local refinement: steepest descent over single moves from a candidate.

A move shifts one prime factor of one dimension from one slot to another, switches one
level's loop order, or flips a keep/bypass choice. All neighbours are evaluated in one
numpy batch; the best valid one is taken while it improves the objective.
"""
from __future__ import annotations

import numpy as np

from ..batch import score
from .space import Space, prime_factors


def neighbours(space: Space, factors: np.ndarray, orders: np.ndarray, keep: np.ndarray):
    """All single-move neighbours of one candidate, as arrays."""
    fs, os_, ks = [], [], []
    for d, slots in enumerate(space.dim_slots):
        for a in slots:
            f = int(factors[a, d])
            if f == 1:
                continue
            for p, _ in prime_factors(f):
                for b in slots:
                    if b == a:
                        continue
                    new = factors.copy()
                    new[a, d] //= p
                    new[b, d] *= p
                    fs.append(new)
                    os_.append(orders)
                    ks.append(keep)
    for si, options in enumerate(space.orders):
        for opt in options:
            if not np.array_equal(opt, orders[si]):
                new = orders.copy()
                new[si] = opt
                fs.append(factors)
                os_.append(new)
                ks.append(keep)
    for kp in space.keeps:
        if not np.array_equal(kp, keep):
            fs.append(factors)
            os_.append(orders)
            ks.append(kp)
    if not fs:
        return None
    return np.stack(fs), np.stack(os_), np.stack(ks)


def refine(space: Space, objective: str, factors: np.ndarray, orders: np.ndarray, keep: np.ndarray,
           modes: np.ndarray, value: float, max_steps: int = 200, deadline: float | None = None):
    """Steepest descent from one candidate (network modes are re-chosen for every neighbour);
    returns (factors, orders, keep, modes, value, evaluated)."""
    import time
    evaluated = 0
    for _ in range(max_steps):
        if deadline is not None and time.monotonic() > deadline:
            break
        nb = neighbours(space, factors, orders, keep)
        if nb is None:
            break
        nf, no, nk = nb
        ok = space.valid(nf, nk)
        evaluated += len(nf)
        if not ok.any():
            break
        idx = np.nonzero(ok)[0]
        vals, md = score(space.enc, nf[idx], no[idx], nk[idx], objective)
        j = int(np.argmin(vals))
        if not vals[j] < value * (1 - 1e-12):
            break
        factors, orders, keep, modes, value = nf[idx[j]], no[idx[j]], nk[idx[j]], md[j], float(vals[j])
    return factors, orders, keep, modes, value, evaluated
