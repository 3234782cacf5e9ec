"""Run the `mapper` command in this process, as the console script would run it.

A subprocess costs about a second of Python start-up and imports; most CLI tests only need
the exit code and the two streams, which `run_in_process` gives exactly as a user sees them:
it calls mapper.cli.entry (the console script's function, which turns click's usage errors
into one `error:` line) and maps its exit the way the interpreter does. A few tests in each
file still run the real command in a subprocess, to keep this helper honest.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import traceback
import types
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from mapper.cli import entry


@dataclass(frozen=True)
class Ran:
    """What a finished command left: its exit code, stdout, stderr, and both interleaved as a
    terminal shows them (`output`). Same field names as subprocess.CompletedProcess."""
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    output: str


def _exit_code(code) -> tuple[int, str]:
    """The process exit code and extra stderr text for `sys.exit(code)`, as CPython maps them."""
    if code is None:
        return 0, ""
    if isinstance(code, int):
        return code, ""
    return 1, f"{code}\n"


def run_in_process(*args, cwd: str | Path | None = None) -> Ran:
    """`mapper ARGS` in folder `cwd` (default: the current one), in-process. An uncaught
    exception becomes exit code 1 with its traceback on stderr, as in a real process."""
    argv = ["mapper", *map(str, args)]
    old_argv, old_cwd, old_sigint = sys.argv, os.getcwd(), signal.getsignal(signal.SIGINT)
    old_main = sys.modules["__main__"]
    with CliRunner().isolation() as (out, err, mixed):
        sys.argv = argv
        # click names the program after __main__ ("python -m pytest" here); the console
        # script's __main__ is a plain script, so click names it after argv[0], "mapper"
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            if cwd is not None:
                os.chdir(cwd)
            entry()
            code, extra = 0, ""
        except SystemExit as exc:
            code, extra = _exit_code(exc.code)
        except Exception:                   # noqa: BLE001 -- the interpreter would print it
            code, extra = 1, traceback.format_exc()
        finally:
            sys.argv = old_argv
            sys.modules["__main__"] = old_main
            os.chdir(old_cwd)
            signal.signal(signal.SIGINT, old_sigint)      # entry() installs its own handler
        sys.stderr.write(extra)
        sys.stdout.flush()
        sys.stderr.flush()
        return Ran(argv[1:], code, out.getvalue().decode(), err.getvalue().decode(errors="replace"),
                   mixed.getvalue().decode(errors="replace"))


def run_subprocess(*args, cwd: str | Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python3 -m mapper ARGS` in a real subprocess, with this checkout first on the path."""
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "mapper", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env=env)
