"""Local refinement: steepest descent over single moves from a candidate.

A move shifts one prime factor of one dimension from one slot to another, switches one
level's loop order, or flips a keep/bypass choice. All neighbours are evaluated in one
numpy batch; the best valid one is taken while it improves the objective. When no single
move improves, pairs of factor moves are tried (a factor can only leave a full buffer or
fan-out axis if another one makes room at once, which no single move does), and then pairs
that also put the moved loops innermost or outermost at the levels they land in.
"""
from __future__ import annotations

import numpy as np

from ..batch import score
from .space import Space, prime_factors


def neighbours(space: Space, factors: np.ndarray, orders: np.ndarray, keep: np.ndarray):
    """All single-move neighbours of one candidate, as arrays."""
    fs, os_, ks = [], [], []
    for d, a, b, p in factor_moves(space, factors):
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


PAIRS = 40_000         # at most this many pair moves per step (a deterministic subset)


def factor_moves(space: Space, factors: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Every single factor move (dim, from slot, to slot, prime) of one candidate."""
    out = []
    for d, slots in enumerate(space.dim_slots):
        for a in slots:
            f = int(factors[a, d])
            if f == 1:
                continue
            for p, _ in prime_factors(f):
                out.extend((d, a, b, p) for b in slots if b != a)
    return out


def pair_neighbours(space: Space, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """Factors of the candidates two factor moves away (the second applied after the
    first), at most PAIRS of them, chosen by `rng` when there are more."""
    moves = factor_moves(space, factors)
    n = len(moves)
    if n < 2:
        return None
    pairs = np.stack(np.triu_indices(n, 1), axis=1)
    if len(pairs) > PAIRS:
        pairs = pairs[np.sort(rng.choice(len(pairs), PAIRS, replace=False))]
    mv = np.array(moves, dtype=np.int64)
    out = np.repeat(factors[None], len(pairs), axis=0)
    rows = np.arange(len(pairs))
    for col in (0, 1):
        d, a, b, p = mv[pairs[:, col]].T
        ok = out[rows, a, d] % p == 0              # the second move may no longer apply
        out[rows[ok], a[ok], d[ok]] //= p[ok]
        out[rows[ok], b[ok], d[ok]] *= p[ok]
    return out


def reordered_pairs(space: Space, factors: np.ndarray, orders: np.ndarray,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray] | None:
    """Pair factor moves that also move the moved dims to the innermost, or the outermost,
    loop of each storage level they land in (factors, orders; at most PAIRS candidates).

    A factor moved into a level keeps the candidate's loop order there, which is often the
    wrong place for it: e.g. an output-row loop moved from DRAM into the GLB only saves the
    weights' refetches if it goes inside the GLB's weight loops, and it only fits if another
    loop leaves the GLB at once (a pair). Neither the pair moves nor the order moves alone
    reach such a candidate."""
    moves = factor_moves(space, factors)
    n = len(moves)
    if n < 2:
        return None
    storage_of = {space.enc.storage_slot[si]: si for si in range(len(space.enc.storage_slot))}
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)
             if moves[i][2] in storage_of or moves[j][2] in storage_of]
    if not pairs:
        return None
    if 2 * len(pairs) > PAIRS:
        pick = np.sort(rng.choice(len(pairs), PAIRS // 2, replace=False))
        pairs = [pairs[k] for k in pick]
    fs, os_ = [], []
    for i, j in pairs:
        new = factors.copy()
        for d, a, b, p in (moves[i], moves[j]):
            if new[a, d] % p:
                break
            new[a, d] //= p
            new[b, d] *= p
        else:
            for inner in (True, False):
                order = orders.copy()
                for d, _, b, _ in (moves[i], moves[j]):
                    if b in storage_of:
                        row = [x for x in order[storage_of[b]] if x != d]
                        order[storage_of[b]] = row + [d] if inner else [d] + row
                fs.append(new)
                os_.append(order)
    if not fs:
        return None
    return np.stack(fs), np.stack(os_)


def refine(space: Space, objective: str, factors: np.ndarray, orders: np.ndarray, keep: np.ndarray,
           modes: np.ndarray, value: float, max_steps: int = 200, deadline: float | None = None):
    """Steepest descent from one candidate (network modes are re-chosen for every neighbour);
    returns (factors, orders, keep, modes, value, evaluated)."""
    import time
    evaluated = 0
    rng = np.random.default_rng(0)          # which pair moves, when there are too many
    for _ in range(max_steps):
        if deadline is not None and time.monotonic() > deadline:
            break
        step = None
        nb = neighbours(space, factors, orders, keep)
        if nb is not None:
            step, n = _best_step(space, objective, *nb, value)
            evaluated += n
        if step is None and (deadline is None or time.monotonic() < deadline):
            pf = pair_neighbours(space, factors, rng)
            if pf is not None:
                step, n = _best_step(space, objective, pf, np.repeat(orders[None], len(pf), axis=0),
                                     np.repeat(keep[None], len(pf), axis=0), value)
                evaluated += n
        if step is None and (deadline is None or time.monotonic() < deadline):
            rp = reordered_pairs(space, factors, orders, rng)
            if rp is not None:
                step, n = _best_step(space, objective, rp[0], rp[1], np.repeat(keep[None], len(rp[0]), axis=0),
                                     value)
                evaluated += n
        if step is None:
            break
        factors, orders, keep, modes, value = step
    return factors, orders, keep, modes, value, evaluated


def _best_step(space: Space, objective: str, nf, no, nk, value: float):
    """The best valid candidate among (nf, no, nk) if it improves on `value` (else None),
    and how many were evaluated."""
    ok = space.valid(nf, nk)
    if not ok.any():
        return None, len(nf)
    idx = np.nonzero(ok)[0]
    vals, md = score(space.enc, nf[idx], no[idx], nk[idx], objective)
    j = int(np.argmin(vals))
    if not vals[j] < value * (1 - 1e-12):
        return None, len(nf)
    return (nf[idx[j]], no[idx[j]], nk[idx[j]], md[j], float(vals[j])), len(nf)
