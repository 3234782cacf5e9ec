"""Solving CP-SAT models of a run's keep patterns: concurrent patterns in threads, every
claimed optimum checked by a second solve, Ctrl-C and the run's deadline honoured."""
from __future__ import annotations

import functools
import itertools
import math
import time
from dataclasses import dataclass

import numpy as np
from ortools.sat.python import cp_model

from ...batch import evaluate_batch
from ..space import Space
from .expressions import ModelOverflow
from .formulation import Builder, energy_scale

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
    patterns = _best_first(run)
    incumbent = _Incumbent.of(run)
    concurrent = min(workers, len(patterns))
    cp_workers = workers // concurrent          # > 1: the pattern's solve and check run at once
    left = run.time_left()
    if left is not None and left <= 0.05:
        run.stopped_by_limit = True
        return
    plan = _Plan(run, patterns, scale, concurrent, cp_workers, hints)
    try:
        results = _first_pass(plan, incumbent)
        _second_pass(plan, results)
    except _Overflow:
        # energies x access counts beyond CP-SAT's 64-bit integers even at 1 pJ resolution
        run.notes.append("CP-SAT skipped: the energies or cycles overflow its 64-bit integers; random sampling searches instead")
        run.cpsat_skipped = True
        return
    _collect(run, results)


def _best_first(run) -> list[int]:
    """The keep patterns' indices, the pattern of the best known mapping first (its hint and
    cutoff make the others' solves shorter)."""
    space = run.space
    patterns = list(range(len(space.keeps)))
    best_keep = run.pool.keep[0]
    patterns.sort(key=lambda j: not np.array_equal(space.keeps[j], best_keep))
    return patterns


@dataclass
class _Plan:
    """What every pattern's solve in one `solve` shares: the run, the patterns in solving
    order, and how many are solved at once with how many CP-SAT workers each."""

    run: object
    patterns: list[int]
    scale: int
    concurrent: int
    cp_workers: int
    hints: bool

    def solve(self, j: int, budget: float | None, incumbent: "_Incumbent") -> PatternResult:
        space = self.run.space
        return _solve_pattern(self.run, space, space.keeps[j], self.scale, self.cp_workers, self.hints,
                              budget, incumbent)


def _first_pass(plan: _Plan, incumbent: "_Incumbent") -> list[PatternResult]:
    """Solve every pattern once, each with its share of the time left, concurrently in
    threads if there are workers for it (one after another, each cut off at the best so far)."""
    started = itertools.count()          # thread-safe enough: next() on a count is atomic in CPython
    if plan.concurrent > 1:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(plan.concurrent) as pool:
            return list(pool.map(functools.partial(_solve_in_turn, plan, started, incumbent), plan.patterns))
    results = []
    for j in plan.patterns:
        results.append(_solve_in_turn(plan, started, incumbent, j))
        incumbent = results[-1].best
    return results


def _solve_in_turn(plan: _Plan, started, incumbent: "_Incumbent", j: int) -> PatternResult:
    """Solve pattern `j` with an even share of the time left when it starts."""
    # Each pattern gets an even share of the time left when it starts, so time a quick
    # pattern leaves unused goes to the ones after it.
    waiting = len(plan.patterns) - next(started)
    left = plan.run.time_left()
    budget = None if left is None else max(0.0, left) / math.ceil(waiting / plan.concurrent)
    return plan.solve(j, budget, incumbent)


def _second_pass(plan: _Plan, results: list[PatternResult]) -> None:
    """Solve the patterns cut off by their share again with the time the others left, in
    place in `results`."""
    run = plan.run
    # A pattern cut off by its share of the time (not by the run's deadline) gets the
    # time the patterns after it left unused: solve the unfinished ones again, cut off at
    # the best known, until they finish or the run's time is up.
    while not run.interrupted:
        left = run.time_left()
        todo = [i for i, r in enumerate(results) if r.status not in (cp_model.OPTIMAL, cp_model.INFEASIBLE)]
        if not todo or left is None or left <= 0.05:
            break
        incumbent = min((r.best for r in results), key=lambda b: b.value)
        finished = False
        for i in todo:
            left = run.time_left()
            if run.interrupted or left <= 0.05:
                break
            again = plan.solve(plan.patterns[i], left / len([t for t in todo if t >= i]), incumbent)
            old = results[i]
            results[i] = PatternResult(again.status, max(old.bound, again.bound), old.solutions + again.solutions,
                                       old.found + again.found, again.best)
            incumbent = again.best
            finished |= again.status in (cp_model.OPTIMAL, cp_model.INFEASIBLE)
        if not finished:
            # No pattern finished: the time left now is what solves that returned early,
            # unproven, did not use; solving them again would only repeat that until the
            # deadline.
            break


def _collect(run, results: list[PatternResult]) -> None:
    """Offer every pattern's solutions to the run's pool and set its bound: the best found
    if every pattern was proven, else the least of the patterns' bounds."""
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
            b.restrict_classes(best.value, best.factors)
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


# Pseudo-cost branching (on the variables whose fixing moved the objective bound most) is
# what proves our models fastest: on MobileNet (0.5, 128) pw3 on Eyeriss v2, from the
# optimum's cutoff, 3.8 s against 21 s with CP-SAT's automatic search (33 s with full
# probing, no end with linearization 1 or 2 in 40 s). The check keeps other presolve
# settings and another seed; light probing doubled its time there and is off.
FAST = {"linearization_level": 0, "cp_model_probing_level": 0, "max_presolve_iterations": 1, "random_seed": 0,
        "search_branching": "PSEUDO_COST_SEARCH"}
CHECK = {"linearization_level": 0, "cp_model_probing_level": 0, "random_seed": 1,
         "search_branching": "PSEUDO_COST_SEARCH"}


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
        if isinstance(value, str):      # an enum value by name (the parameters' class holds them)
            value = getattr(type(solver.parameters), value)
        setattr(solver.parameters, key, value)
    if left is not None:        # building the model spends the same budget
        solver.parameters.max_time_in_seconds = max(0.05, left - (time.monotonic() - start))
    solver.parameters.catch_sigint_signal = False   # Ctrl-C is handled by the search
    cb = _Progress(run, b)
    status = _solve_interruptibly(run, solver, b.m, cb)
    if status == cp_model.MODEL_INVALID:
        why = b.m.Validate()
        if "overflow" in why or "domain do not fall in" in why:
            raise _Overflow(why)
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
    second solve with other settings (full presolve, another seed) finds nothing better
    than V; whatever it finds instead is kept and checked in turn. On every wrong proof we
    found (tests/test_search.py, and a comparison with exhaustive search on random small
    layers) the check was right. With a spare
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


_Overflow = ModelOverflow     # the model's numbers do not fit CP-SAT's integers


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
