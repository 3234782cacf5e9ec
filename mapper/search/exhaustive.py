"""Exhaustive enumeration of the pruned space (ground truth for small layers).

Factorizations are enumerated in chunks and checked exactly for capacity and fan-out;
each valid one is combined only with the loop orders that differ for its own loops
(canonical orders of the dimensions whose factor is > 1 at each level), which keeps the
enumeration exact and far smaller than factorizations x all canonical orders.
"""
from __future__ import annotations

import itertools
import math
from functools import lru_cache

import numpy as np

from ..batch import score
from ..problem import DIMS
from .space import Space, canonical_orders

CHUNK = 1 << 15
REMAINDER_CHUNK = 256


@lru_cache(maxsize=4096)
def _orders_for(support: tuple[str, ...], below: frozenset) -> np.ndarray:
    return canonical_orders(support, below)


def enumerate_space(space: Space, objective: str, on_batch, out_of_time) -> int:
    """Evaluate every candidate; on_batch(values, factors, orders, keep, modes, done_fraction) gets
    each evaluated batch. Returns the number of candidates considered, or -1 if stopped."""
    # remainder candidates are counted one at a time (mapper.remainder_batch): small batches
    # let a time limit or Ctrl-C stop the enumeration between them
    chunk = CHUNK if space.factorization == "perfect" else REMAINDER_CHUNK
    considered = 0
    for batch in _batches(space, chunk, out_of_time):
        if batch is None or out_of_time():
            return -1
        f, o, k, done = batch
        values, modes = score(space.enc, f, o, k, objective)
        considered += len(values)
        on_batch(values, f, o, k, modes, done)
    return considered


def count_candidates(space: Space, limit: int) -> int | None:
    """How many candidates enumerate_space would evaluate, or None if more than `limit`
    (the count stops there; nothing is scored)."""
    n = 0
    for f, _, _, _ in _batches(space, CHUNK, lambda: False):
        n += len(f)
        if n > limit:
            return None
    return n


def _batches(space: Space, chunk: int, stop):
    """Every candidate of the space, as (factors, orders, keep, done_fraction) batches of
    about `chunk` candidates (the last may be smaller); None, and no more, once `stop()` is
    true (checked before each block of factorizations: most of a block may be invalid)."""
    enc = space.enc
    radices = [len(f) for f in space.factorizations]
    total = math.prod(radices)
    n_st = len(enc.storage_levels)
    below = [frozenset(t for lj in enc.storage_levels[si + 1:] for t in space.arch.levels[lj].keeps)
             for si in range(n_st)]
    buffer: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    buffered = 0

    def flush():
        nonlocal buffered
        batch = tuple(np.concatenate([b[i] for b in buffer]) for i in range(3))
        buffer.clear()
        buffered = 0
        return batch

    for lo in range(0, total, CHUNK):
        if stop():
            yield None
            return
        idx = np.stack(np.unravel_index(np.arange(lo, min(total, lo + CHUNK)), radices), axis=1)
        for ki in range(len(space.keeps)):
            factors, _, keep = space.assemble(idx, np.zeros((len(idx), n_st), np.int64),
                                              np.full(len(idx), ki))
            ok = space.valid(factors, keep)
            sel = np.nonzero(ok)[0]
            if not len(sel):
                continue
            f = factors[sel]
            support = np.stack([f[:, enc.storage_slot[si], :] > 1 for si in range(n_st)], axis=1)
            keys, inverse = np.unique(support.reshape(len(sel), -1), axis=0, return_inverse=True)
            inverse = inverse.reshape(-1)
            for u, key in enumerate(keys):
                rows = np.nonzero(inverse == u)[0]
                key = key.reshape(n_st, len(DIMS))
                per_level = [_orders_for(tuple(d for d, on in zip(DIMS, key[si]) if on), below[si])
                             for si in range(n_st)]
                combos = np.array(list(itertools.product(*[range(len(o)) for o in per_level])), dtype=np.int64)
                orders = np.stack([per_level[si][combos[:, si]] for si in range(n_st)], axis=1)
                buffer.append((np.repeat(f[rows], len(combos), axis=0), np.tile(orders, (len(rows), 1, 1)),
                               np.repeat(keep[sel][rows], len(combos), axis=0)))
                buffered += len(rows) * len(combos)
                if buffered >= chunk:
                    yield flush() + (min(1.0, (lo + CHUNK) / total),)
    if buffer:
        yield flush() + (1.0,)
