"""Random-pruned search: sample the pruned mapspace, drop invalid candidates before
evaluating them, evaluate the rest in numpy batches.

Each worker owns a disjoint part of the space (the factorizations of the dimension with
the most options are dealt round-robin to the workers) and its own random stream derived
from the seed, and works in fixed-size rounds, so the same seed and worker count give
the same mapping whatever the machine's speed (unless the time limit stops the search).
A worker stops when `patience` consecutive valid candidates brought no improvement
(Timeloop's victory condition) or when its share of the evaluation budget is spent.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..batch import score
from .pool import Pool
from .space import Space, space_of

ROUND = 8192          # candidates each worker samples per round


@dataclass
class WorkerState:
    """Everything a worker carries from one round to the next (picklable)."""

    worker: int
    workers: int
    rng_state: dict
    pool: Pool
    sampled: int = 0
    evaluated: int = 0
    valid: int = 0
    stale: int = 0            # valid candidates since the last improvement
    done: bool = False
    factorization: str = "perfect"    # which space the worker samples (space.FACTORIZATIONS)


def start_states(space: Space, seed: int, workers: int, k: int) -> list[WorkerState]:
    seqs = np.random.SeedSequence(seed).spawn(workers)
    return [WorkerState(w, workers, np.random.default_rng(s).bit_generator.state,
                        Pool.empty(k, space.enc), factorization=space.factorization)
            for w, s in enumerate(seqs)]


def sample(space: Space, rng: np.random.Generator, n: int, worker: int = 0, workers: int = 1):
    """n random candidates (factors, orders, keep) from this worker's part of the space."""
    sizes = [len(f) for f in space.factorizations]
    fact_idx = np.stack([rng.integers(0, s, n) for s in sizes], axis=1)
    part = int(np.argmax(sizes))
    if workers > 1 and sizes[part] >= workers:
        share = (sizes[part] - worker + workers - 1) // workers
        fact_idx[:, part] = worker + workers * rng.integers(0, share, n)
    order_idx = np.stack([rng.integers(0, len(o), n) for o in space.orders], axis=1)
    keep_idx = rng.integers(0, len(space.keeps), n)
    return space.assemble(fact_idx, order_idx, keep_idx)


def run_round(layer, arch, objective: str, state: WorkerState, budget: int | None,
              patience: int | None) -> WorkerState:
    """One round of one worker: sample, prune, evaluate, update its pool and counters."""
    if state.done:
        return state
    space = space_of(layer, arch, state.factorization)
    rng = np.random.default_rng()
    rng.bit_generator.state = state.rng_state
    n = ROUND if budget is None else min(ROUND, max(0, budget - state.sampled))
    if n == 0:
        state.done = True
        return state
    factors, orders, keep = sample(space, rng, n, state.worker, state.workers)
    state.sampled += n
    ok = space.valid(factors, keep)
    idx = np.nonzero(ok)[0]
    if len(idx):
        values, modes = score(space.enc, factors[idx], orders[idx], keep[idx], objective)
        # Victory condition, counted candidate by candidate in sampling order.
        best_before = np.minimum.accumulate(np.concatenate([[state.pool.best], values]))[:-1]
        improved = np.nonzero(values < best_before)[0]
        marks = np.concatenate([[-state.stale - 1], improved, [len(values)]])
        gaps = np.diff(marks) - 1
        if patience is not None and (gaps >= patience).any():
            g = int(np.argmax(gaps >= patience))
            stop = int(marks[g] + patience)           # index of the last counted candidate
            values, idx, modes = values[:stop + 1], idx[:stop + 1], modes[:stop + 1]
            state.done = True
            state.stale = patience
        else:
            state.stale = int(len(values) - 1 - improved[-1]) if len(improved) else state.stale + len(values)
        top = np.argsort(values, kind="stable")[:state.pool.k]
        state.pool = state.pool.add(values[top], factors[idx][top], orders[idx][top], keep[idx][top], modes[top])
        state.valid += len(values)
    state.evaluated += n
    state.rng_state = rng.bit_generator.state
    if budget is not None and state.sampled >= budget:
        state.done = True
    return state
