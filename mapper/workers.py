"""Jobs in worker processes that one Ctrl-C stops cleanly.

Ctrl-C in a terminal reaches every process of the group: the parent and its workers. The
first one asks everything to stop: a running job (a search) stops and returns its best so
far, a job not yet started in a worker is skipped (`SKIPPED`), jobs not yet handed to a
worker are cancelled, and the parent keeps collecting until every started job has
answered. A second Ctrl-C raises KeyboardInterrupt in the parent, which kills the workers
at once (results are written atomically, so no file is left half-written).
"""
from __future__ import annotations

import signal
from typing import Any, Callable, Iterable, Iterator

SKIPPED = "skipped: interrupted before it started"

# Set in a worker process by its SIGINT handler: that worker starts no further job. This is
# per-process signal state (a worker pool is created per call, so it never outlives a run).
_stop_requested = False


def _worker_start() -> None:
    signal.signal(signal.SIGINT, _worker_sigint)


def _worker_sigint(signum, frame) -> None:
    global _stop_requested
    _stop_requested = True


def _guarded(fn: Callable, arg: Any) -> Any:
    """Run fn(arg) in a worker unless Ctrl-C was pressed; a job's own handler (the search's,
    see search.on_sigint) takes over while it runs and passes Ctrl-C on to ours."""
    if _stop_requested:
        return SKIPPED
    return fn(arg)


def run(fn: Callable, items: Iterable[Any], workers: int, stop: Callable[[], bool]) -> Iterator[tuple[int, Any]]:
    """Yield (index, fn(item)) as jobs finish, in any order, on `workers` processes; an item
    skipped or lost after Ctrl-C (`stop()` true) yields (index, SKIPPED). fn must be
    picklable (a module-level function)."""
    from concurrent.futures import FIRST_COMPLETED, wait

    from joblib.externals.loky import ProcessPoolExecutor
    items = list(items)
    pool = ProcessPoolExecutor(max_workers=min(workers, len(items)), initializer=_worker_start)
    futures = {pool.submit(_guarded, fn, item): i for i, item in enumerate(items)}
    cancelled = False
    try:
        pending = set(futures)
        while pending:
            if stop() and not cancelled:
                cancelled = True
                for f in pending:
                    f.cancel()
            done, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
            for f in done:
                if f.cancelled():
                    yield futures[f], SKIPPED
                    continue
                try:
                    yield futures[f], f.result()
                except Exception:
                    if not stop():
                        raise
                    yield futures[f], SKIPPED          # a worker hit by Ctrl-C while starting
    except BaseException:
        pool.shutdown(wait=False, kill_workers=True)
        raise
    # after Ctrl-C every job has answered: the idle workers need not be waited for
    pool.shutdown(wait=not cancelled, kill_workers=cancelled)
