"""Mapping search: `search(layer, arch, ...)` finds the best mappings of one layer.

Algorithms: `random` (parallel random-pruned sampling, joblib), `exhaustive` (every
candidate of the pruned space; for small layers and tests), `cpsat` (OR-Tools CP-SAT over
the same space with the model's exact cost, proving optimality where it can), and
`hybrid` (the default: random sampling and local refinement give CP-SAT its starting
point, CP-SAT improves it or proves it optimal, and its answer is refined locally).
Every returned mapping is re-evaluated by the scalar model in `mapper.model`.
"""
from __future__ import annotations

import math
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import InitVar, dataclass, field
from typing import Any, Callable

import numpy as np

from ..arch import Arch, naming_source
from ..batch import score
from ..mapping import Mapping, problems_of
from ..model import Cost, evaluate
from ..problem import DIMS, Layer
from ..progress import Board, Progress, QueueProgress, Reporter
from ..result import document
from ..spec import MapperError
from .bound import objective_bound
from .pool import Pool
from .space import FACTORIZATIONS, Space, space_of

ALGORITHMS = ("hybrid", "cpsat", "random", "exhaustive")
#: Why a search ended: how `optimal` was proven, or what stopped an unproven search.
REASONS = ("cpsat proof", "exhaustive", "analytic bound", "time limit", "interrupted", "evaluation budget",
           "patience", "perfect subspace proof", "cpsat overflow")
#: `perfect subspace proof` (status feasible, --factorization imperfect only): CP-SAT proved
#: the best perfect mapping optimal among perfect mappings (SearchResult.subspace_bound), but
#: its formulation has no remainder options: the best found may be beaten by a remainder
#: mapping not found, and the bound and gap are the imperfect analytic bound's (bound.py).
#: `cpsat overflow`: the layer's energies, cycles or counts do not fit
#: CP-SAT's 64-bit integers, so CP-SAT was skipped and random sampling took its place.
OBJECTIVES = ("energy", "delay", "edp")
#: How search_network uses several workers: layers side by side, or each layer with all of them.
PARALLEL = ("layers", "within")
INTERNAL_OBJECTIVES = OBJECTIVES + ("compute",)     # compute cycles only: Eyexam's storage step
EXHAUSTIVE_LIMIT = 50_000_000
#: An imperfect space of at most this many candidates is enumerated by the hybrid and CP-SAT
#: searches (CP-SAT has no remainder options, so only enumeration proves optimality there):
#: remainder candidates are counted exactly at 1-4 ms each (README, "Remainders"), so about
#: 3-12 s at most; the count stops early (exhaustive.count_candidates) and is tried only
#: when the space has at most SMALL_ROWS factorization x keep rows to check.
SMALL_IMPERFECT = 3_000
SMALL_ROWS = 20_000


@dataclass
class Found:
    mapping: Mapping
    cost: Cost
    found_by: str


@dataclass
class SearchResult:
    layer: Layer
    arch: Arch
    found: list[Found]
    settings: dict[str, Any]
    evaluated: int
    valid: int
    seconds: float
    status: str                    # optimal | feasible | budget
    bound: float | None = None     # proven lower bound on the objective, if any
    notes: list[str] = field(default_factory=list)
    reason: str = ""               # why the search ended with this status (one of REASONS)
    reused_from: str | None = None  # the layer of the same shape whose search this result reuses
    # --factorization imperfect: a lower bound proven over the perfect subspace only (CP-SAT)
    subspace_bound: float | None = None

    @property
    def best(self) -> Found:
        return self.found[0]

    @property
    def gap(self) -> float | None:
        if self.bound is None:
            return None
        best = self.best.cost.objective(self.settings["objective"])
        return max(0.0, (best - self.bound) / best) if best > 0 else 0.0

    def search_section(self, rank: int = 0) -> dict[str, Any]:
        s = self.settings
        return {"algorithm": s["algorithm"], "objective": s["objective"], "seed": s["seed"],
                "workers": s["workers"], "time_limit": s["time_limit"], "evaluated": self.evaluated,
                "valid": self.valid, "seconds": round(self.seconds, 3), "status": self.status,
                "bound": self.bound, "gap": self.gap, "reason": self.reason, "found_by": self.found[rank].found_by,
                "rank": rank + 1, "factorization": s.get("factorization", "perfect"),
                "perfect_subspace_bound": self.subspace_bound}

    def documents(self) -> list[dict[str, Any]]:
        """One result document per mapping found (best first)."""
        out = []
        for rank, f in enumerate(self.found):
            doc = document(self.layer, self.arch, f.mapping, f.cost, search_settings(self.settings))
            doc["search"] = self.search_section(rank)
            out.append(doc)
        return out


def search_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings a result depends on (hashed into inputs_sha256)."""
    out = {k: settings[k] for k in ("algorithm", "objective", "seed", "workers", "time_limit",
                                     "budget", "patience", "top")}
    if settings.get("factorization", "perfect") != "perfect":    # (perfect results keep their hashes)
        out["factorization"] = settings["factorization"]
    return out


def check_settings(algorithm: str, objective: str, workers: int, time_limit: float | None,
                   top: int, budget: int | None, factorization: str = "perfect") -> None:
    if factorization not in FACTORIZATIONS:
        raise MapperError(f"--factorization: unknown factorization '{factorization}'; choose one of "
                          f"{', '.join(FACTORIZATIONS)}")
    if algorithm not in ALGORITHMS:
        raise MapperError(f"--algo: unknown algorithm '{algorithm}'; choose one of {', '.join(ALGORITHMS)}")
    if objective not in INTERNAL_OBJECTIVES:
        raise MapperError(f"--objective: unknown objective '{objective}'; choose one of {', '.join(OBJECTIVES)}")
    if workers < 1:
        raise MapperError(f"--workers: must be a positive number of workers, got {workers}")
    if time_limit is not None and not time_limit > 0:
        raise MapperError(f"--time-limit: must be a positive number of seconds, got {time_limit}")
    if top < 1:
        raise MapperError(f"--top: must be at least 1, got {top}")
    if budget is not None and budget < 1:
        raise MapperError(f"--budget: must be a positive number of candidates, got {budget}")


def search(layer: Layer, arch: Arch, algorithm: str = "hybrid", objective: str = "edp", seed: int = 0,
           workers: int = 1, time_limit: float | None = None, budget: int | None = None,
           patience: int | None = None, top: int = 1, progress: Progress | None = None,
           stop: Callable[[], bool] | None = None, factorization: str = "perfect") -> SearchResult:
    """Find the best mappings of `layer` on `arch` (see the module docstring) in the
    `factorization` space: perfect (the default) or imperfect (remainder tiles too). `stop`
    says whether an enclosing run already took a Ctrl-C (then the search returns at once)."""
    check_settings(algorithm, objective, workers, time_limit, top, budget, factorization)
    settings = {"algorithm": algorithm, "objective": objective, "seed": seed, "workers": workers,
                "time_limit": time_limit, "budget": budget, "patience": patience, "top": top,
                "factorization": factorization}
    progress = progress or Progress(enabled=False)
    start = time.monotonic()
    deadline = None if time_limit is None else start + time_limit
    if getattr(progress, "tty", True):      # a live line from the start (not a line of its own on a pipe)
        progress.update(f"[{layer.name}] building the mapspace: 0 candidates evaluated", force=True)
    try:
        with naming_source(arch):       # what fails here is the arch's levels with this layer
            space = space_of(layer, arch, factorization)
            explain_if_empty(space)
    except MapperError:
        progress.done()              # end the live line before the error line
        raise
    run = _Run(space, objective, top, progress, start, deadline, layer.name)
    with interruptible(run):
        if stop is not None and stop():
            run.interrupt()          # Ctrl-C came while the mapspace was being built
        try:
            if algorithm == "exhaustive":
                run.exhaustive()
            elif algorithm == "random":
                run.random(seed, workers, budget, patience)
            elif algorithm == "cpsat":
                if not run.enumerate_if_small():        # (a small imperfect space: a proof over all of it)
                    run.cpsat(workers, hints=False)
                if run.cpsat_skipped:
                    run._sample_instead(seed, workers, budget, patience)
            else:
                run.hybrid(seed, workers, budget, patience)
        except KeyboardInterrupt:
            run.interrupted = True
    if run.interrupted:
        run.notes.append("interrupted (Ctrl-C): best mapping found so far")
    try:
        res = _result(run, settings, start, budget)
    except BaseException:
        progress.done()              # end the live line (with its latest state) before the error
        raise
    # The phases' lines are throttled and come before the status is settled (a proof, the
    # analytic bound): the line left on screen must be the result, not a phase's last state.
    progress.done(done_text(res))
    return res


def _result(run: "_Run", settings: dict[str, Any], start: float, budget: int | None) -> SearchResult:
    """A finished run's result: its pool's mappings re-evaluated by the scalar model, the
    status (optimal also when the best meets the analytic bound) and the bound."""
    space, objective, algorithm = run.space, run.objective, settings["algorithm"]
    layer, arch = space.layer, space.arch
    if not len(run.pool.values):
        if run.interrupted:
            raise KeyboardInterrupt     # Ctrl-C before any mapping was found: nothing to keep
        raise MapperError(f"no valid mapping of layer {layer.name} on {arch.name} was found "
                          f"in {run.evaluated:,} candidates; raise --time-limit or --budget")
    found = []
    for i in range(len(run.pool.values)):
        m = space.enc.decode(run.pool.factors[i], run.pool.orders[i], run.pool.keep[i], run.pool.modes[i])
        cost = evaluate(layer, arch, m)
        value = cost.objective(objective)
        if not math.isclose(value, run.pool.values[i], rel_tol=1e-9):
            raise AssertionError(f"batch and scalar models disagree on {m}: {run.pool.values[i]} vs {value}")
        found.append(Found(m, cost, run.pool.found_by[i] or algorithm))
    status = run.status()
    # The analytic bound (bound.py) holds for every mapping; it matters when the search
    # proved nothing tighter (random search, or CP-SAT cut off by the time limit).
    floor = min(run.floor, run.pool.best)
    bound = floor if run.bound is None else max(run.bound, floor)
    if status != "optimal" and not run.interrupted and floor >= run.pool.best * (1 - 1e-9):
        status = "optimal"          # the best found meets the analytic bound: a proof too
        run.notes.append("optimal: meets the analytic lower bound (mapper/search/bound.py)")
        run.proof = "analytic bound"
    # (imperfect space: run.floor is the analytic bound over remainder mappings too, and
    # run.bound only an exhaustive proof's; CP-SAT's perfect-subspace bound is never used)
    return SearchResult(layer, arch, found, settings, run.evaluated, run.valid,
                        time.monotonic() - start, status, bound, run.notes, run.reason(status, budget),
                        subspace_bound=run.subspace_bound)


def objective_unit(arch: Arch, objective: str) -> str:
    """The unit an objective's values are in (the arch's energy unit, cycles, or both)."""
    return {"energy": arch.energy_unit, "delay": "cycles", "edp": f"{arch.energy_unit}*cycles"}.get(objective, "cycles")


def done_text(res: SearchResult) -> str:
    """The final progress line of a search: its best value, status and reason, gap, counts."""
    objective = res.settings["objective"]
    gap = "" if res.gap is None else f", gap {100 * res.gap:.1f}% to the lower bound"
    return (f"[{res.layer.name}] done: best {objective} {res.best.cost.objective(objective):.4g} "
            f"{objective_unit(res.arch, objective)}, status {res.status} ({res.reason}){gap}; "
            f"{res.evaluated:,} candidates evaluated in {res.seconds:.2f} s")


def search_network(layers: list[Layer], arch: Arch, progress: Progress | None = None, workers: int = 1,
                   parallel: str = "layers", **settings: Any) -> list[SearchResult]:
    """Search every layer; identical layers (same shape) are searched once and the result
    reused. With several workers, `parallel="layers"` searches the layers in parallel
    processes (one worker each, so every layer's result is the same as when searched alone
    with one worker: the fastest way through a network); `parallel="within"` searches one
    layer at a time with all the workers (each search faster, its proof likelier within
    its time limit: on Eyeriss v2 two workers run the solve and its check at once)."""
    if parallel not in PARALLEL:
        raise MapperError(f"--parallel: unknown mode '{parallel}'; choose one of {', '.join(PARALLEL)}")
    progress = progress or Progress(enabled=False)
    unique: dict[tuple, Layer] = {}
    for layer in layers:
        unique.setdefault((layer.type, layer.shape_key()), layer)
    jobs = list(unique.values())
    done: dict[tuple, SearchResult] = {}
    stop: list[int] = []
    # One Ctrl-C: running searches return their best (status budget, reason interrupted), no
    # new layer starts; the layers not searched are missing from the result. A second one raises.
    with on_sigint(lambda: stop.append(1)):
        if workers > 1 and len(jobs) > 1 and parallel == "layers":
            from ..workers import SKIPPED, run
            processes = min(workers, len(jobs))
            with Board(progress, arch.name + " layers", len(jobs), settings.get("time_limit"), processes) as board:
                queue = board.queue()
                results = run(_search_job, [(layer, arch, settings, queue) for layer in jobs], processes,
                              lambda: bool(stop))
                for _, res in results:
                    if isinstance(res, str) and res == SKIPPED:
                        continue
                    done[(res.layer.type, res.layer.shape_key())] = res
                    board.finished(res.layer.name, f"{res.status} ({res.reason})")
        elif len(jobs) == 1:        # one search: its own progress line, all the workers
            res = search(jobs[0], arch, progress=progress, workers=workers, stop=lambda: bool(stop), **settings)
            done[(res.layer.type, res.layer.shape_key())] = res
        else:
            with Board(progress, arch.name + " layers", len(jobs), settings.get("time_limit")) as board:
                for layer in jobs:
                    if stop:
                        break
                    try:
                        res = search(layer, arch, progress=Reporter(board, layer.name), workers=workers,
                                     stop=lambda: bool(stop), **settings)
                    except KeyboardInterrupt:
                        if stop:            # interrupted before it found anything: the rest is kept
                            break
                        raise
                    done[(layer.type, layer.shape_key())] = res
                    board.finished(layer.name, f"{res.status} ({res.reason})")
                    if interrupted(res):
                        break
    out = []
    first: dict[tuple, str] = {}
    for layer in layers:
        key = (layer.type, layer.shape_key())
        if key not in done:
            continue
        prev = done[key]
        if key in first:
            found = [Found(f.mapping, f.cost, f.found_by) for f in prev.found]
            out.append(SearchResult(layer, arch, found, prev.settings, prev.evaluated, prev.valid, 0.0,
                                    prev.status, prev.bound, [f"same shape as {first[key]}: reused"],
                                    prev.reason, reused_from=first[key], subspace_bound=prev.subspace_bound))
        else:
            first[key] = layer.name
            out.append(SearchResult(layer, arch, prev.found, prev.settings, prev.evaluated, prev.valid,
                                    prev.seconds, prev.status, prev.bound, prev.notes, prev.reason,
                                    subspace_bound=prev.subspace_bound))
    return out


def _search_job(job: tuple[Layer, Arch, dict[str, Any], Any]) -> SearchResult:
    """One layer's search in a worker process (Ctrl-C there stops it gracefully); its
    progress goes to the parent's Board through the job's queue (None: no progress)."""
    layer, arch, settings, queue = job
    progress = QueueProgress(queue, layer.name) if queue is not None else None
    return search(layer, arch, workers=1, progress=progress, **settings)


#: Iterated remainder descent: random kicks in a row that do not improve the best end it.
#: Measured (hybrid, EDP, 5 s per layer, seed 0, 2026-12-03): against 30, 5 kicks cost 0.3%
#: of network EDP on MobileNet v1 on Eyeriss v1 (x0.8359 vs x0.8331 of perfect) and nothing
#: on AlexNet or on v2, and halve the search time (33 s vs 70 s; perfect 16 s): almost all of
#: the gain is the first descent's (no kicks: x0.8367 in 21 s).
STALE_KICKS = 5


def interrupted(res: SearchResult) -> bool:
    """Whether Ctrl-C stopped this search (its best so far is kept, status budget)."""
    return res.reason == "interrupted"


#: Seconds after the first Ctrl-C at which a search in this process still running (in a step
#: that does not check for it, such as building a CP-SAT model) is stopped where it is.
ESCALATE = 0.6


@contextmanager
def on_sigint(callback, escalate: bool = False):
    """While the block runs, the first Ctrl-C calls `callback` (ask the work to stop and keep
    its best result) instead of raising; a second Ctrl-C raises KeyboardInterrupt. With
    `escalate`, a block still running ESCALATE seconds after the first Ctrl-C gets that
    second one itself (the work is stopped where it is)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    import _thread

    from ..workers import claim_sigint, stop_requested
    hits = []
    state = {"active": True, "timer": None, "fired": False}
    lock = threading.Lock()

    def handler(signum, frame):
        if hits:
            fired, state["fired"] = state["fired"], False
            if fired and not state["active"]:
                return          # the escalation's, arriving as the block ends: it is done anyway
            if fired and _unsafe_to_stop(frame):
                arm(0.2)        # not now: try again shortly
                return
            # a repeat: stop where the work is (a search keeps its best so far); in a worker
            # of mapper.workers the parent repeats Ctrl-C when a job has not answered
            raise KeyboardInterrupt
        hits.append(1)
        callback()
        if escalate:
            arm(ESCALATE)
        # pass the first Ctrl-C on to an enclosing handler (a sweep's, a worker's), so the
        # work around this block learns of it too
        if callable(previous) and previous is not signal.default_int_handler:
            previous(signum, frame)

    def arm(seconds):
        with lock:
            if state["active"]:
                state["timer"] = threading.Timer(seconds, fire)
                state["timer"].daemon = True
                state["timer"].start()

    def fire():
        with lock:
            if state["active"]:
                state["fired"] = True
                _thread.interrupt_main(signal.SIGINT)       # handled by `handler` (main thread)

    claim_sigint()              # before the handler is in place: it chains to the worker's
    previous = signal.signal(signal.SIGINT, handler)
    if stop_requested():
        # Ctrl-C reached this worker after its job started but before this handler was in
        # place (or the parent asked it to stop): stop at once
        hits.append(1)
        callback()
    try:
        yield
    finally:
        with lock:
            state["active"] = False
            if state["timer"] is not None:
                state["timer"].cancel()
        _let_signals_run()      # a simulated Ctrl-C already pending reaches `handler`, not `previous`
        signal.signal(signal.SIGINT, previous)


def _let_signals_run() -> None:
    """Python runs pending signal handlers at the start of a Python call: this is one."""


def _unsafe_to_stop(frame) -> bool:
    """Whether the main thread is where a KeyboardInterrupt would do harm: importing a
    module (an extension's import then fails for good: ImportError) or waiting for a
    CP-SAT solve (which it stops on Ctrl-C within 0.1 s; leaving that wait would leave the
    solver's thread running)."""
    while frame is not None:
        code = frame.f_code
        if code.co_name == "_solve_interruptibly" or code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def interruptible(run: "_Run"):
    """Ctrl-C asks a search run to stop (its loops and CP-SAT check run.interrupted); one
    still running ESCALATE s later is stopped where it is, keeping its best so far."""
    from ..workers import in_worker
    return on_sigint(run.interrupt, escalate=not in_worker())       # a worker's parent escalates


def explain_if_empty(space: Space) -> None:
    """Raise a MapperError naming the constraint that rules out every mapping, if one does."""
    from ..problem import DIMS
    for i, (d, facts) in enumerate(zip(DIMS, space.factorizations)):
        if len(facts) == 0:
            size = space.layer.dims[d]
            slots = [space.arch.levels[space.enc.slots[s][0]].name + ("" if space.enc.slots[s][1] == "T"
                     else f".{space.enc.slots[s][1]}") for s in space.dim_slots[i]]
            raise MapperError(f"no valid mapping of layer {space.layer.name} on {space.arch.name}: "
                              f"dimension {d} = {size} cannot be split over the levels that allow it "
                              f"({', '.join(slots) or 'none'}) without overflowing a buffer or a fan-out")
    # The candidate with every factor as far out as allowed has the smallest tiles.
    outer = _outermost(space)
    ok = space.valid(*outer[0::2])
    if not ok[0]:
        m = space.enc.decode(outer[0][0], outer[1][0], outer[2][0])
        reasons = problems_of(m, space.layer, space.arch)
        why = reasons[0][0] + ": " + reasons[0][1] if reasons else "capacity"
        raise MapperError(f"no valid mapping of layer {space.layer.name} on {space.arch.name}: even the "
                          f"smallest tiles do not fit ({why})")


def _outermost(space: Space):
    idx = np.zeros((1, len(space.factorizations)), dtype=np.int64)
    for d, facts in enumerate(space.factorizations):
        # the factorization putting the most into the first (outermost) slot
        idx[0, d] = int(np.lexsort(facts.T[::-1])[-1]) if len(facts) and facts.shape[1] else 0
    f, o, k = space.assemble(idx, np.zeros((1, len(space.orders)), np.int64), np.zeros(1, np.int64))
    return f, o, k


@dataclass(eq=False)
class _Run:
    """Shared state of one search, read and updated by every phase (random, refine,
    exhaustive here; CP-SAT in cpsat/): the pool of best candidates, counters, bounds,
    the deadline and why the search stopped."""

    space: Space
    objective: str
    top: InitVar[int]                 # how many candidates the pool keeps
    progress: Progress
    start: float                      # time.monotonic() at the start
    deadline: float | None
    label: str                        # the layer's name, for progress lines
    pool: Pool = field(init=False)
    evaluated: int = field(default=0, init=False)
    valid: int = field(default=0, init=False)
    bound: float | None = field(default=None, init=False)      # proven lower bound on the objective
    cp_bound: float | None = field(default=None, init=False)   # CP-SAT's live bound, when it holds for the whole space
    floor: float = field(init=False)                            # analytic bound: holds for every mapping
    proven: bool = field(default=False, init=False)
    proof: str = field(default="cpsat proof", init=False)      # how `proven` was reached (exhaustive sets its own)
    stopped_by_limit: bool = field(default=False, init=False)
    interrupted: bool = field(default=False, init=False)       # set by Ctrl-C (see interruptible)
    subspace_bound: float | None = field(default=None, init=False)   # imperfect: CP-SAT's, perfect part only
    perfect_proven: bool = field(default=False, init=False)          # imperfect: CP-SAT proved the perfect part
    cpsat_skipped: bool = field(default=False, init=False)           # its numbers overflow CP-SAT's integers
    _child: "_Run | None" = field(default=None, init=False)          # a sub-run (CP-SAT on the perfect part)
    notes: list[str] = field(default_factory=list, init=False)
    # counters of the phases before the current random phase (its workers count from 0)
    _base_eval: int = field(default=0, init=False)
    _base_valid: int = field(default=0, init=False)

    def __post_init__(self, top: int) -> None:
        self.pool = Pool.empty(max(top, 1), self.space.enc)
        # The analytic bound of the space's factorization: over an imperfect space, the one
        # that holds for remainder mappings too (integer factors, no classes: weaker).
        self.floor = objective_bound(self.space.layer, self.space.arch, self.objective, self.space.factorization)

    def interrupt(self) -> None:
        """Ctrl-C: every phase stops at its next check and the best found so far is kept."""
        self.interrupted = True
        if self._child is not None:
            self._child.interrupt()

    def time_left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def out_of_time(self) -> bool:
        if self.interrupted:
            return True
        left = self.time_left()
        if left is not None and left <= 0:
            self.stopped_by_limit = True
            return True
        return False

    def offer(self, values, factors, orders, keep, modes, by: str) -> None:
        self.pool = self.pool.add(values, factors, orders, keep, modes, by)

    def show(self, phase: str, extra: str = "", bound: float | None = None) -> None:
        """The progress line: phase, best objective (with its unit), the gap between it and
        the best lower bound known (`bound`: one a phase has proven for the whole space),
        candidates evaluated and the time left."""
        left = self.time_left()
        tl = f", {left:.0f}s left" if left is not None else ""
        unit = objective_unit(self.space.arch, self.objective)
        if len(self.pool.values):
            best = self.pool.best
            low = max(self.floor, self.bound or 0.0, bound or 0.0, self.cp_bound or 0.0)
            gap = f", gap {100 * max(0.0, best - low) / best:.1f}% to the lower bound" if best > 0 else ""
            text = f"best {self.objective} {best:.4g} {unit}{gap}"
        else:
            text = f"no valid {self.objective} yet"
        self.progress.update(f"[{self.label}] {phase}: {text}; {self.evaluated:,} candidates evaluated{tl}{extra}")

    def reason(self, status: str, budget: int | None) -> str:
        """Why the search ended with `status` (one of REASONS)."""
        if status == "optimal":
            return self.proof
        if self.interrupted:
            return "interrupted"
        if self.cpsat_skipped:
            return "cpsat overflow"         # what keeps it from a proof, whatever else ended it
        if self.stopped_by_limit:
            return "time limit"
        if self.perfect_proven:
            return "perfect subspace proof"
        return "evaluation budget" if budget is not None else "patience"

    def status(self) -> str:
        if self.proven and not self.interrupted:
            return "optimal"
        if self.interrupted or self.stopped_by_limit:
            return "budget"
        return "feasible"

    # -- algorithms ---------------------------------------------------------------------
    def seed_baseline(self) -> None:
        """Offer the smallest-tile candidate (valid whenever anything is)."""
        f, o, k = _outermost(self.space)
        v, md = score(self.space.enc, f, o, k, self.objective)
        self.offer(v, f, o, k, md, "baseline")

    def exhaustive(self) -> None:
        from .exhaustive import enumerate_space
        space = self.space
        if space.n_factorizations * len(space.keeps) > EXHAUSTIVE_LIMIT:
            raise MapperError(f"--algo exhaustive: {space.layer.name} has {space.n_factorizations:.3g} "
                              f"factorizations to enumerate (limit {EXHAUSTIVE_LIMIT:.0e}); "
                              f"use --algo hybrid or cpsat")

        def on_batch(values, f, o, k, md, done):
            self.evaluated += len(values)
            self.valid += len(values)
            top = np.argsort(values, kind="stable")[:self.pool.k]
            self.offer(values[top], f[top], o[top], k[top], md[top], "exhaustive")
            self.show("exhaustive", f", {100 * done:.0f}% of the factorizations")

        if enumerate_space(space, self.objective, on_batch, self.out_of_time) < 0:
            return
        self.proven = True
        self.proof = "exhaustive"
        if len(self.pool.values):
            self.bound = self.pool.best

    def enumerate_if_small(self) -> bool:
        """An imperfect space of at most SMALL_IMPERFECT candidates: enumerate it (its proof
        covers remainder mappings, which CP-SAT's does not). True if it was (proven, or
        stopped by the time limit or Ctrl-C)."""
        from .exhaustive import count_candidates
        space = self.space
        if space.factorization == "perfect" or space.n_factorizations * len(space.keeps) > SMALL_ROWS:
            return False
        if count_candidates(space, SMALL_IMPERFECT) is None:
            return False
        self.exhaustive()
        return True

    def random(self, seed: int, workers: int, budget: int | None, patience: int | None,
               label: str = "random", perfect_only: bool = False) -> None:
        from ..workers import map_short
        from .random import run_round, start_states
        space = self.space.perfect_subspace() if perfect_only else self.space
        if patience is None and budget is None:
            patience = 20000        # stop once sampling stops improving (or at the time limit)
        states = start_states(space, seed, workers, self.pool.k)
        shares = None if budget is None else [budget // workers + (w < budget % workers) for w in range(workers)]
        layer, arch = space.layer, space.arch
        self.seed_baseline()
        # One round of a perfect space (~0.05 s per worker, in this process) runs even past
        # the deadline: setting up the space and the bound on a loaded machine can eat a
        # short time limit, and a search must not return the 1-PE baseline for that
        # (remainder rounds are much slower). A round's result does not depend on where it runs.
        first = space.factorization == "perfect"
        try:
            while not all(s.done for s in states):
                late = self.out_of_time()
                if late and (self.interrupted or not first):
                    break
                first = False
                jobs = [(layer, arch, self.objective, s, None if shares is None else shares[s.worker], patience)
                        for s in states]
                if workers == 1 or late:
                    states = [run_round(*job) for job in jobs]
                else:
                    done = map_short(run_round, jobs, workers, stop=lambda: self.interrupted)
                    if done is None:            # Ctrl-C: this round's samples are dropped
                        break
                    states = done
                self.evaluated = self._base_eval + sum(s.evaluated for s in states)
                self.valid = self._base_valid + sum(s.valid for s in states)
                merged = self.pool
                for s in states:
                    merged = merged.merge(s.pool, by=label)
                self.pool = merged
                self.show(label)
        finally:
            self._base_eval, self._base_valid = self.evaluated, self.valid

    def refine(self, label: str = "refine") -> None:
        from .local import refine
        pool = self.pool
        # local.refine moves prime factors between slots, which keeps a perfect nest perfect
        # but breaks a remainder nest's coverage: in an imperfect space it refines the
        # perfect candidates within the perfect subspace (see remainders() for the others)
        space = self.space.perfect_subspace()
        for i in range(len(pool.values)):
            if self.out_of_time():
                return
            if space is not self.space and not self._is_perfect(pool.factors[i]):
                continue
            f, o, k, md, v, n = refine(space, self.objective, pool.factors[i], pool.orders[i],
                                       pool.keep[i], pool.modes[i], float(pool.values[i]), deadline=self.deadline)
            self.evaluated += n
            self.valid += n
            if v < pool.values[i]:
                self.offer(np.array([v]), f[None], o[None], k[None], md[None], label)
        self._base_eval, self._base_valid = self.evaluated, self.valid
        self.show(label)

    def cpsat(self, workers: int, hints: bool) -> None:
        from .cpsat import solve
        if self.space.factorization == "perfect":
            solve(self, workers, hints)
            return
        # CP-SAT's options are perfect factorizations: run it on the perfect subspace, seeded
        # with the best perfect candidates found so far; its proof and bound hold there only.
        sub = _Run(self.space.perfect_subspace(), self.objective, self.pool.k, self.progress, self.start,
                   self.deadline, self.label)
        sub.interrupted = self.interrupted
        keep = [i for i in range(len(self.pool.values)) if self._is_perfect(self.pool.factors[i])]
        if keep:
            p = self.pool
            sub.offer(p.values[keep], p.factors[keep], p.orders[keep], p.keep[keep], p.modes[keep],
                      [p.found_by[i] for i in keep])
        self._child = sub
        try:
            solve(sub, workers, hints)
        finally:
            self._child = None
        self.pool = self.pool.merge(sub.pool)
        self.evaluated += sub.evaluated
        self.valid += sub.valid
        self._base_eval, self._base_valid = self.evaluated, self.valid
        self.stopped_by_limit |= sub.stopped_by_limit
        self.cpsat_skipped |= sub.cpsat_skipped
        self.notes += sub.notes
        if sub.proven and not sub.interrupted:
            self.perfect_proven = True
            self.subspace_bound = sub.pool.best
            self.notes.append(f"CP-SAT proved the best perfect mapping optimal among perfect mappings "
                              f"({self.objective} {sub.pool.best:.4g}); remainder mappings are bounded only by "
                              f"the imperfect analytic bound")
        else:
            self.subspace_bound = max(sub.bound or 0.0, min(sub.floor, sub.pool.best))

    def remainders(self, seed: int = 0, label: str = "remainders") -> None:
        """Descent over remainder moves (imperfect space only) from the best candidate, then,
        while time is left, iterated: a random valid move from the best found (seeded),
        and descent from there (a descent ends in a local optimum, often well before the
        budget now that remainder candidates are cheap; the kicks use that time)."""
        space = self.space
        if space.factorization == "perfect" or not len(self.pool.values):
            return
        rng = np.random.default_rng(seed)
        p = self.pool
        point = (p.factors[0], p.orders[0], p.keep[0], float(p.values[0]))
        stale, best = 0, self.pool.best
        # kicks that did not improve the best end it too (a search without a time limit)
        while self._descend(*point, label) and not self.meets_floor() and stale < STALE_KICKS:
            stale = 0 if self.pool.best < best else stale + 1
            best = self.pool.best
            f, o, k = self.pool.factors[0], self.pool.orders[0], self.pool.keep[0]
            nb = space.factor_neighbours(f)
            nb = nb[space.valid(nb, np.repeat(k[None], len(nb), axis=0))] if len(nb) else nb
            if not len(nb) or self.out_of_time():
                break
            kick = nb[rng.integers(len(nb))]
            vals, modes = self._score_one(kick, o, k)
            self.offer(vals, kick[None], o[None], k[None], modes, label)
            point = (kick, o, k, float(vals[0]))

    def _score_one(self, f: np.ndarray, o: np.ndarray, k: np.ndarray):
        """(objective [1], modes) of one valid candidate, counted as evaluated."""
        vals, modes = score(self.space.enc, f[None], o[None], k[None], self.objective)
        self.evaluated += 1
        self.valid += 1
        self._base_eval, self._base_valid = self.evaluated, self.valid
        return vals, modes

    def _descend(self, f: np.ndarray, o: np.ndarray, k: np.ndarray, value: float, label: str) -> bool:
        """Descent from candidate (f, o, k) of objective `value`: one dimension's
        factorization replaced by another row of the space differing in at most two slots.
        Remainder candidates are counted one at a time (exact, slower than a perfect one:
        mapper.remainder_batch), so the moves are tried best-first by how few temporal steps
        they leave (fewer compute cycles: filling the array is where remainders pay, cf.
        Ruby), one at a time, the first improving one taken; a move is not started when the
        time left is below what the last one took. True at a local optimum, False when it
        stopped for time or Ctrl-C."""
        space = self.space
        temporal = [s for s, (_, kind) in enumerate(space.enc.slots) if kind == "T"]
        seen, took = set(), 0.0
        while not self.out_of_time():
            nb = space.factor_neighbours(f)
            if not len(nb):
                return True
            nb = nb[space.valid(nb, np.repeat(k[None], len(nb), axis=0))]
            steps = np.prod(nb[:, temporal, :].reshape(len(nb), -1).astype(np.float64), axis=1)
            nb = nb[np.argsort(steps, kind="stable")]
            improved = False
            for cand in nb:
                tag = cand.tobytes()
                if tag in seen:
                    continue
                left = self.time_left()
                if self.interrupted or (left is not None and left < took):
                    self.stopped_by_limit = not self.interrupted
                    return False
                seen.add(tag)
                t0 = time.monotonic()
                vals, modes = self._score_one(cand, o, k)
                took = time.monotonic() - t0
                if vals[0] < value * (1 - 1e-12):
                    f, value = cand, float(vals[0])
                    self.offer(vals, cand[None], o[None], k[None], modes, label)
                    self.show(label)
                    improved = True
                    break
            if not improved:
                return True
        return False

    def meets_floor(self) -> bool:
        """Whether the best found meets the analytic bound of the space (a proof)."""
        return bool(len(self.pool.values)) and self.pool.best <= self.floor * (1 + 1e-9)

    def _is_perfect(self, factors: np.ndarray) -> bool:
        """Whether an encoded candidate's factors multiply to the layer's sizes."""
        dims = self.space.layer.dims
        return bool((np.prod(factors, axis=0) == np.array([dims[d] for d in DIMS])).all())

    def hybrid(self, seed: int, workers: int, budget: int | None, patience: int | None) -> None:
        if self.space.factorization != "perfect":
            return self.hybrid_imperfect(seed, workers, budget, patience)
        # A short random phase and local refinement give CP-SAT a good starting point.
        quick = min(budget, 60000) if budget is not None else 60000
        # in this process: 60,000 candidates take ~0.3 s, starting worker processes ~1.5 s
        self.random(seed, 1, quick, patience)
        self.refine()
        if self.out_of_time():
            return
        if self.meets_floor():
            return          # already meets the analytic bound: search() reports the proof
        self.cpsat(workers, hints=True)
        if self.cpsat_skipped:
            self._sample_instead(seed + 1, workers, budget, patience)      # new samples
        if not self.proven:
            self.refine("refine")

    def _sample_instead(self, seed: int, workers: int, budget: int | None, patience: int | None) -> None:
        """CP-SAT could not model the layer (its numbers overflow): the search goes on as the
        random search would, with the rest of the budget, sampling with `seed`."""
        left = None if budget is None else budget - self.evaluated
        if (left is None or left > 0) and not self.out_of_time():
            self.random(seed, workers, left, patience)

    def hybrid_imperfect(self, seed: int, workers: int, budget: int | None, patience: int | None) -> None:
        """Hybrid over the imperfect space: the perfect phases (random, refine), then, for a
        small space, enumeration; else CP-SAT on the perfect subspace with 60% of the time
        left, refine, and remainder descent from the best with the rest. Remainder candidates
        are evaluated one at a time, so sampling the whole imperfect space at random would
        spend the budget on a few hundred."""
        quick = min(budget, 60000) if budget is not None else 60000
        self.random(seed, 1, quick, patience, perfect_only=True)
        self.refine()
        if self.out_of_time() or self.meets_floor() or self.enumerate_if_small():
            return
        deadline = self.deadline
        left = self.time_left()
        if left is not None:
            self.deadline = time.monotonic() + 0.6 * left
        try:
            self.cpsat(workers, hints=True)
            self.refine("refine")
        finally:
            self.deadline = deadline
        if not self.interrupted and not self.meets_floor():
            cut = self.stopped_by_limit and not self.perfect_proven     # CP-SAT's share ran out
            self.stopped_by_limit = False
            self.remainders(seed)
            self.stopped_by_limit |= cut
