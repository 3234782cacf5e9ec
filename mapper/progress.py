"""Progress reporting on stderr: one rewritten line on a terminal, plain lines otherwise.

`Progress` prints one search's status line. `Board` is the line of a run of many layers
(a network search or a sweep): layers done / total, an upper bound on the time left, and
the latest status of each running layer, which layers in worker processes send through a
queue (`QueueProgress`). We keep this small module instead of tqdm or rich: a search has
phases of unknown length rather than a count to fill a bar with, the line must be fed
from other processes, and neither library is a runtime dependency.
"""
from __future__ import annotations

import queue as queue_module
import shutil
import sys
import threading
import time


class Progress:
    """Call `update(text)` often; it prints at most every `interval` seconds (always on a
    terminal line it rewrites in place), and `done()` ends the line, first printing the
    latest text if it was held back (so the last state shown is the last one given)."""

    def __init__(self, enabled: bool = True, interval: float | None = None, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval if interval is not None else (0.2 if self.tty else 5.0)
        self.last = 0.0
        self.width = 0
        self.pending: str | None = None     # the latest text held back by the interval

    def update(self, text: str, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.last < self.interval:
            self.pending = text
            return
        self.last = now
        self.pending = None
        if self.tty:
            text = text[:self.columns()]
            pad = max(0, self.width - len(text))
            self.stream.write("\r" + text + " " * pad)
            self.width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def columns(self) -> int | None:
        """Characters a terminal line can show (one less than its width), None on a pipe."""
        return max(20, shutil.get_terminal_size((120, 20)).columns - 1) if self.tty else None

    def done(self, text: str | None = None) -> None:
        if not self.enabled:
            return
        if text is None:
            text = self.pending
        if text is not None:
            self.update(text, force=True)
        if self.tty and self.width:
            self.stream.write("\n")
            self.stream.flush()
        self.width = 0


class QueueProgress:
    """A Progress stand-in for a search in a worker process: sends (key, text) to the
    parent's Board through `queue` at most every `interval` seconds."""

    def __init__(self, queue, key: str, interval: float = 0.5):
        self.queue, self.key, self.interval = queue, key, interval
        self.last = 0.0
        self.enabled = True
        self.pending: str | None = None     # the latest text held back by the interval

    def update(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.interval:
            self.pending = text
            return
        self.last = now
        self.pending = None
        try:
            self.queue.put_nowait((self.key, text))
        except Exception:           # the parent has gone (Ctrl-C): progress is not worth failing for
            pass

    def done(self, text: str | None = None) -> None:
        text = self.pending if text is None else text
        if text is not None:
            self.update(text, force=True)


class Reporter:
    """A Progress stand-in for a search run in-process under a Board: its lines become the
    board's entry `key`."""

    def __init__(self, board: "Board", key: str):
        self.board, self.key = board, key
        self.enabled = True

    def update(self, text: str, force: bool = False) -> None:
        self.board.report(self.key, text)

    def done(self, text: str | None = None) -> None:
        if text is not None:
            self.board.report(self.key, text)


class Board:
    """The live line of a run of `total` jobs on `processes` workers, each job stopping
    within `time_limit` seconds: `[title] d/total done, at most T left | job: status | ...`.
    It is redrawn every `interval` seconds from a thread (so it moves from the first
    second, while no job has finished) and on every `finished(key)`. With a queue (see
    `queue()`) jobs in worker processes report their status; `report(key, text)` does the
    same in-process."""

    def __init__(self, progress: Progress, title: str, total: int, time_limit: float | None = None,
                 processes: int = 1, interval: float | None = None):
        self.progress, self.title, self.total = progress, title, total
        self.time_limit, self.processes = time_limit, max(1, processes)
        self.interval = interval if interval is not None else (1.0 if progress.tty else 10.0)
        self.done_count = 0
        self.running: dict[str, tuple[float, str]] = {}      # key -> (first seen, latest text)
        self.ended: set[str] = set()
        self.start = time.monotonic()
        self._queue = None
        self._manager = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        # One line drawn at a time, none after the board ends: a line the thread composed
        # before a job finished must not overwrite (or follow) the line that counts it.
        self._draw_lock = threading.RLock()
        self._closed = False
        self._thread = None

    def queue(self):
        """A queue worker processes can put (key, text) on (a multiprocessing manager's)."""
        if self._queue is None and self.progress.enabled:
            from multiprocessing.managers import SyncManager
            self._manager = SyncManager()
            # Ctrl-C is for the search: a manager killed by it would leave the workers'
            # progress calls waiting for an answer (the board shuts it down on exit)
            from .workers import ignore_sigint
            self._manager.start(ignore_sigint)
            self._queue = self._manager.Queue()
        return self._queue

    def __enter__(self) -> "Board":
        self.draw(force=True)
        if self.progress.enabled:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        with self._draw_lock:
            if self.progress.tty:
                self.draw(force=True)                          # the final count
            self._closed = True
            self.progress.done()
        if self._manager is not None:
            try:
                self._manager.shutdown()
            except Exception:
                pass

    def _loop(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            self._drain()
            now = time.monotonic()
            if now - last >= self.interval:
                self.draw(force=True)
                last = now
            self._stop.wait(0.2)

    def _drain(self) -> None:
        q = self._queue
        while q is not None:
            try:
                key, text = q.get_nowait()
            except (queue_module.Empty, EOFError, OSError, BrokenPipeError):
                return
            except Exception:
                return
            self.report(key, text)

    def report(self, key: str, text: str) -> None:
        with self._lock:
            if key in self.ended:        # a late message from a job that has finished
                return
            first = self.running.get(key, (time.monotonic(), ""))[0]
            self.running[key] = (first, text)

    def finished(self, key: str, status: str) -> None:
        """A job ended: count it, print a line for it on a pipe, redraw."""
        with self._lock:
            self.running.pop(key, None)
            self.ended.add(key)
            self.done_count += 1
        if self.progress.tty:
            self.draw(force=True)
        else:
            with self._draw_lock:
                if not self._closed:
                    self.progress.update(f"[{self.title}] {self.done_count}/{self.total} done: {key} {status}",
                                         force=True)

    def time_left(self) -> float | None:
        """An upper bound on the seconds left: jobs still queued run in waves of `processes`,
        each at most the time limit, after the running ones use up theirs."""
        if self.time_limit is None:
            return None
        now = time.monotonic()
        with self._lock:
            running = [max(0.0, self.time_limit - (now - first)) for first, _ in self.running.values()]
        queued = max(0, self.total - self.done_count - len(running))
        waves = -(-queued // self.processes)
        return (max(running) if running else 0.0) + waves * self.time_limit

    def line(self, width: int | None = None) -> str:
        """The board's line; where it would not fit in `width` characters, the header is
        cut to the count so the running jobs' best values stay on screen."""
        elapsed = time.monotonic() - self.start
        left = self.time_left()
        head = f"[{self.title}] {self.done_count}/{self.total} done"
        with self._lock:
            jobs = [text for _, text in self.running.values()]
        if not jobs and self.done_count < self.total:
            jobs = ["starting"]
        full = " | ".join([head + f", {duration(elapsed)} elapsed"
                           + ("" if left is None else f", at most {duration(left)} left (time limits)")] + jobs)
        return full if width is None or len(full) <= width else " | ".join([head] + jobs)

    def draw(self, force: bool = False) -> None:
        with self._draw_lock:
            if self._closed:
                return
            self._drain()
            self.progress.update(self.line(self.progress.columns()), force=force)


def duration(seconds: float) -> str:
    """'42s', '3m05s' or '1h02m'."""
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
