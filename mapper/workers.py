"""Jobs in worker processes that one Ctrl-C stops cleanly.

Ctrl-C in a terminal reaches every process of the group: the parent and its workers. The
first one asks everything to stop: a running job (a search) stops and returns its best so
far, a job not yet started is skipped by its worker (`SKIPPED`), and the parent keeps
collecting until every job has answered (at most GRACE seconds). A second Ctrl-C raises KeyboardInterrupt in the parent, which kills the workers
at once (results are written atomically, so no file is left half-written).
"""
from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any, Callable, Iterable, Iterator

SKIPPED = "skipped: interrupted before it started"
GRACE = 5.0         # seconds after Ctrl-C for running jobs to answer (a search stops within ~1 s)
FORWARD = 1.5       # seconds after which Ctrl-C is sent again to workers that have not answered

# Set in a worker process by its SIGINT handler: that worker starts no further job. This is
# per-process signal state (a worker pool is created per call, so it never outlives a run).
_stop_requested = False
_stop_event = None          # set by the parent after Ctrl-C (a worker may have missed the signal)


def _worker_start(stop_event) -> None:
    global _stop_event
    _stop_event = stop_event
    signal.signal(signal.SIGINT, _worker_sigint)


def _worker_sigint(signum, frame) -> None:
    global _stop_requested
    _stop_requested = True


def _guarded(fn: Callable, arg: Any) -> Any:
    """Run fn(arg) in a worker unless Ctrl-C was pressed; a job's own handler (the search's,
    see search.on_sigint) takes over while it runs and passes Ctrl-C on to ours."""
    if _stop_requested or (_stop_event is not None and _stop_event.is_set()):
        return SKIPPED
    return fn(arg)


def _forward_sigint(pool) -> None:
    """Pass Ctrl-C on to every worker (one that was starting when it was pressed missed it)."""
    for pid in list(getattr(pool, "_processes", {}) or {}):
        try:
            os.kill(pid, signal.SIGINT)
        except (OSError, TypeError):
            pass


def run(fn: Callable, items: Iterable[Any], workers: int, stop: Callable[[], bool]) -> Iterator[tuple[int, Any]]:
    """Yield (index, fn(item)) as jobs finish, in any order, on `workers` processes; an item
    skipped or lost after Ctrl-C (`stop()` true) yields (index, SKIPPED). fn must be
    picklable (a module-level function)."""
    from concurrent.futures import FIRST_COMPLETED, wait

    from joblib.externals.loky import ProcessPoolExecutor
    items = list(items)
    # A worker hit by Ctrl-C while Python starts dies with a traceback and can hang the
    # pool, so workers start with SIGINT ignored (kept through fork and exec; they are
    # spawned by submit) until their handler is in place. Meanwhile the parent blocks it
    # too, so a Ctrl-C pressed then stays pending (a blocked signal is never discarded)
    # and reaches the parent's handler once it is back; a worker that missed it gets it
    # after FORWARD seconds.
    main = threading.current_thread() is threading.main_thread()
    if main:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        from joblib.externals.loky.backend.context import get_context
        stop_event = get_context("loky").Event()
        pool = ProcessPoolExecutor(max_workers=min(workers, len(items)), initializer=_worker_start,
                                   initargs=(stop_event,))
        futures = {pool.submit(_guarded, fn, item): i for i, item in enumerate(items)}
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    cancelled = None            # when Ctrl-C was seen
    forwarded = 0
    try:
        pending = set(futures)
        while pending:
            if stop() and cancelled is None:
                # queued jobs are not cancelled (loky's shutdown then fails on them): each
                # worker skips them itself
                cancelled = time.monotonic()
                stop_event.set()
            if cancelled is not None and forwarded < 2 and time.monotonic() - cancelled > FORWARD * (forwarded + 1):
                forwarded += 1
                _forward_sigint(pool)
            if cancelled is not None and time.monotonic() - cancelled > GRACE:
                # a worker that died starting up (Ctrl-C during its imports) can leave the
                # pool waiting for ever: give up on what has not answered
                for f in pending:
                    yield futures[f], SKIPPED
                break
            done, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
            for f in done:
                try:
                    yield futures[f], f.result()
                except Exception:
                    if not stop():
                        raise
                    yield futures[f], SKIPPED          # a worker hit by Ctrl-C while starting
    except BaseException:
        _kill(pool)
        raise
    if cancelled is None:
        pool.shutdown(wait=True)
    else:
        _kill(pool)           # after Ctrl-C: the workers left have nothing to do


def _kill(pool) -> None:
    """Stop the pool's workers at once. Loky's manager thread can trip over the work items
    it was still handing out (a KeyError, printed as a thread traceback): the run is over,
    so that thread's exceptions are not printed."""
    default = threading.excepthook

    def quiet(args):
        if args.thread is None or args.thread.name != "ExecutorManagerThread":
            default(args)

    threading.excepthook = quiet
    pool.shutdown(wait=False, kill_workers=True)
