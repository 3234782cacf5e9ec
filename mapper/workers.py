"""Jobs in worker processes that one Ctrl-C stops cleanly, within 2 seconds.

Ctrl-C in a terminal reaches every process of the group: the parent and its workers. The
first one asks everything to stop: a running job (a search) stops and returns its best so
far; a job no worker has started has nothing to report and is skipped (`SKIPPED`) at once,
without waiting for workers still starting up. The parent waits at most GRACE seconds for
the running jobs, then kills every worker. A second Ctrl-C raises KeyboardInterrupt in the
parent, which kills the workers at once (results are written atomically, so no file is
left half-written).
"""
from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any, Callable, Iterable, Iterator

SKIPPED = "skipped: interrupted before it started"
GRACE = 1.5         # seconds after Ctrl-C for running jobs to answer (a search does within ~0.1 s of FORWARD)
FORWARD = 0.5       # seconds after which Ctrl-C is sent again to a running job that has not answered
                    # (it missed the first, or is in a step that does not check for it: a second
                    # Ctrl-C stops a search where it is, keeping its best so far)
REAP = 1.0          # seconds to wait for killed workers to be gone

# Per-process signal state of a worker (a worker pool is created per call, so it never
# outlives a run; in the parent these stay unset): whether Ctrl-C reached this worker, the
# parent's stop event (set after Ctrl-C: a worker may have missed the signal), and the
# queue on which a worker tells the parent which job it starts (its index and pid).
_stop_requested = False
_stop_event = None
_job = "idle"               # "idle", "starting" (a job runs, its own handler not yet in place) or "claimed"
_started = None


def _worker_start(stop_event, started) -> None:
    global _stop_event, _started
    _stop_event, _started = stop_event, started
    signal.signal(signal.SIGINT, _worker_sigint)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})       # blocked since the spawn (see run)


def _worker_sigint(signum, frame) -> None:
    """Ctrl-C in a worker: no further job starts. A job still setting up (building its
    mapspace, before its own handler takes Ctrl-C over) has no best mapping yet: it is
    abandoned at once rather than finishing a set-up that can take seconds."""
    global _stop_requested
    _stop_requested = True
    if _job == "starting":
        raise KeyboardInterrupt


def claim_sigint() -> None:
    """Called by a job when its own Ctrl-C handler is in place (it then stops and returns
    its best so far): from now on Ctrl-C no longer abandons it."""
    global _job
    if _job == "starting":
        _job = "claimed"


def in_worker() -> bool:
    """Whether this process is one of run()'s workers (whose parent repeats Ctrl-C to a
    job that has not answered)."""
    return _started is not None


def stop_requested() -> bool:
    """Whether Ctrl-C reached this worker process (or the parent asked it to stop), so a
    job starting now must stop at once; always false in the parent."""
    return _stop_requested or (_stop_event is not None and _stop_event.is_set())


def _guarded(fn: Callable, arg: Any, index: int) -> Any:
    """Run fn(arg) in a worker unless Ctrl-C was pressed; a job's own handler (the search's,
    see search.on_sigint) takes over while it runs and passes Ctrl-C on to ours. The job is
    marked as running (with this process's id) before the check, so the parent never skips
    a job that will go on running."""
    global _job
    _started.put((index, os.getpid()))
    if stop_requested():
        return SKIPPED
    _job = "starting"
    try:
        return fn(arg)
    except KeyboardInterrupt:
        return SKIPPED          # abandoned while setting up (see _worker_sigint)
    finally:
        _job = "idle"


def ignore_sigint() -> None:
    """A helper process's initializer: Ctrl-C is the parent's to handle."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})       # blocked since the spawn


def map_short(fn: Callable, items: Iterable[tuple], workers: int, stop: Callable[[], bool]) -> list[Any] | None:
    """[fn(*args) for args in items] on `workers` reused processes that ignore Ctrl-C, for
    jobs of a fraction of a second (a round of sampling): the parent alone takes Ctrl-C,
    and once `stop()` is true it abandons the round (None) and kills the workers rather
    than wait for them (they may still be starting up). Workers are spawned with SIGINT
    blocked, as in `run`, so none dies with a traceback."""
    from concurrent.futures import FIRST_EXCEPTION, wait

    from joblib.externals.loky import get_reusable_executor
    from multiprocessing import resource_tracker
    resource_tracker.ensure_running()
    main = threading.current_thread() is threading.main_thread()
    if main:
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        executor = get_reusable_executor(max_workers=workers, initializer=ignore_sigint)
        futures = [executor.submit(fn, *args) for args in items]
    finally:
        if main:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    pending = set(futures)
    try:
        while pending:
            if stop():
                _kill(executor)
                return None
            done, pending = wait(pending, timeout=0.05, return_when=FIRST_EXCEPTION)
            for f in done:
                f.result()          # a job's exception is the caller's
    except BaseException:           # a KeyboardInterrupt raised here, or a job's exception
        _kill(executor)
        raise
    return [f.result() for f in futures]


def run(fn: Callable, items: Iterable[Any], workers: int, stop: Callable[[], bool]) -> Iterator[tuple[int, Any]]:
    """Yield (index, fn(item)) as jobs finish, in any order, on `workers` processes; an item
    skipped or lost after Ctrl-C (`stop()` true) yields (index, SKIPPED). fn must be
    picklable (a module-level function)."""
    from concurrent.futures import FIRST_COMPLETED, wait

    from joblib.externals.loky import ProcessPoolExecutor
    from joblib.externals.loky.backend.context import get_context
    items = list(items)
    context = get_context("loky")
    stop_event = context.Event()
    started = context.SimpleQueue()
    pool = ProcessPoolExecutor(max_workers=min(workers, len(items)), initializer=_worker_start,
                               initargs=(stop_event, started))
    from multiprocessing import resource_tracker
    resource_tracker.ensure_running()           # before blocking SIGINT: see below
    # A worker hit by Ctrl-C while Python starts dies with a traceback, so workers start
    # with SIGINT blocked (the signal mask is kept through fork and exec; they are spawned
    # by submit, and later by the executor's thread, which inherits the mask) and unblock
    # it once their handler is in place: a Ctrl-C pressed meanwhile stays pending, never
    # lost. The parent keeps its handler (SIG_IGN here would let one of its other threads
    # take and discard the signal). Python's and loky's resource trackers are started
    # first: starting Python's (at the first spawn) unblocks SIGINT when done.
    main = threading.current_thread() is threading.main_thread()
    if main:
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        futures = {pool.submit(_guarded, fn, item, i): i for i, item in enumerate(items)}
    finally:
        if main:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    cancelled = None            # when Ctrl-C was seen
    running: dict[int, int] = {}            # job index -> pid of the worker that started it
    forwarded: set[int] = set()
    try:
        pending = set(futures)
        while pending:
            if stop() and cancelled is None:
                # queued jobs are not cancelled (loky's shutdown then fails on them): the
                # workers are killed once the running jobs have answered
                cancelled = time.monotonic()
                stop_event.set()
            while not started.empty():          # drained as it comes (a full pipe would block a worker)
                index, pid = started.get()
                running[index] = pid
            if cancelled is not None:
                # a job no worker has started has nothing to report: skip it now rather
                # than wait for a worker to start up and skip it itself
                for f in [f for f in pending if futures[f] not in running]:
                    pending.discard(f)
                    yield futures[f], SKIPPED
                waited = time.monotonic() - cancelled
                if waited > FORWARD:
                    # a job that started just as Ctrl-C was pressed may have missed it
                    for f in pending:
                        if futures[f] not in forwarded and not f.done():
                            forwarded.add(futures[f])
                            _signal(running.get(futures[f], 0), signal.SIGINT)
                if waited > GRACE:
                    for f in pending:
                        yield futures[f], SKIPPED
                    break
                if not pending:
                    break
            done, pending = wait(pending, timeout=0.05 if cancelled is not None else 0.1,
                                 return_when=FIRST_COMPLETED)
            for f in done:
                try:
                    yield futures[f], f.result()
                except Exception:
                    if not stop():
                        raise
                    yield futures[f], SKIPPED          # a worker that died after Ctrl-C
    except BaseException:
        _kill(pool)
        raise
    if cancelled is None:
        pool.shutdown(wait=True)
    else:
        _kill(pool)           # after Ctrl-C: the workers left have nothing to do


def _signal(pid: int, signum: int) -> None:
    if pid > 0:
        try:
            os.kill(pid, signum)
        except OSError:
            pass                # already gone


def _kill(pool) -> None:
    """Stop the pool's workers at once (SIGKILL: one still starting up has Ctrl-C blocked
    and would finish its imports first) and wait briefly until they are gone, so none outlives
    the command. Loky's manager thread can trip over the work items it was still handing
    out (a KeyError, printed as a thread traceback): the run is over, so that thread's
    exceptions are not printed."""
    default = threading.excepthook

    def quiet(args):
        if args.thread is None or args.thread.name != "ExecutorManagerThread":
            default(args)

    threading.excepthook = quiet
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for p in processes:
        _signal(p.pid or 0, signal.SIGKILL)
    pool.shutdown(wait=False, kill_workers=True)
    deadline = time.monotonic() + REAP
    for p in processes:
        p.join(max(0.0, deadline - time.monotonic()))
