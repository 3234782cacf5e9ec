"""Progress reporting on stderr: one rewritten line on a terminal, plain lines otherwise."""
from __future__ import annotations

import sys
import time


class Progress:
    """Call `update(text)` often; it prints at most every `interval` seconds (always on a
    terminal line it rewrites in place), and `done()` ends the line."""

    def __init__(self, enabled: bool = True, interval: float | None = None, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval if interval is not None else (0.2 if self.tty else 5.0)
        self.last = 0.0
        self.width = 0

    def update(self, text: str, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.last < self.interval:
            return
        self.last = now
        if self.tty:
            pad = max(0, self.width - len(text))
            self.stream.write("\r" + text + " " * pad)
            self.width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def done(self, text: str | None = None) -> None:
        if not self.enabled:
            return
        if text is not None:
            self.update(text, force=True)
        if self.tty and self.width:
            self.stream.write("\n")
            self.stream.flush()
        self.width = 0


def eta(done: float, total: float, elapsed: float) -> str:
    if done <= 0 or total <= 0:
        return "?"
    left = elapsed * (total - done) / done
    return f"{left:.0f}s" if left < 120 else f"{left / 60:.1f}min"
