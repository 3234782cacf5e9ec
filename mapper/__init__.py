"""mapper: mapping-space search for DNN accelerators.

The Python API the `mapper` command is a thin layer over:

    import mapper
    net = mapper.load_network("alexnet")
    arch = mapper.load_arch("eyeriss_v1")
    result = mapper.search(net.layer("conv3"), arch)
    cost = mapper.evaluate(net.layer("conv3"), arch, result.best.mapping)

`mapper.search` is the function below, with the `mapper search` command's defaults. The
subpackage of the same name stays importable by its full names (`from mapper.search.space
import Space`, `from mapper.search import search_network`): Python binds the attribute
`mapper.search` to the subpackage when the subpackage is first imported (here, before the
function is defined) and never again once it is in sys.modules. Only the attribute form
(`import mapper.search.space as s`, `mapper.search.space`) sees the function instead.
"""
__version__ = "0.1.0"

import os as _os
import sys as _sys


def _the_command() -> bool:
    """Whether this process is the `mapper` command (its script, or `python -m mapper`),
    not a program that imports the package."""
    main = getattr(_sys.modules.get("__main__"), "__file__", None) or ""
    return _os.path.basename(main) == "mapper" or list(getattr(_sys, "orig_argv", [])[1:3]) == ["-m", "mapper"]


def _exit_interrupted(signum, frame) -> None:
    _sys.stderr.write("error: interrupted\n")
    _os._exit(130)


if _the_command():
    # Ctrl-C while the command is still importing (its first second): exit as an interrupted
    # run does, not with an import traceback (nothing is written yet); cli.entry puts
    # Python's own handler back before it starts work
    import signal as _signal
    _signal.signal(_signal.SIGINT, _exit_interrupted)

from .arch import Arch, Fanout, Storage, load_arch, parse_arch  # noqa: E402
from .mapping import Loop, Mapping, MappingError, check, loop_nest_text, normalize, parse_mapping  # noqa: E402
from .model import Cost, Counts, evaluate  # noqa: E402
from .problem import DIMS, TENSORS, Layer, Network, layer_from_dims, load_network  # noqa: E402
from .spec import MapperError, SpecError  # noqa: E402
from .progress import Progress  # noqa: E402
from .search import Found, SearchResult  # noqa: E402
from .search import search as _search  # noqa: E402

#: The `mapper search` command's defaults (seconds per layer; workers: every core).
SEARCH_SECONDS = 60.0


def search(layer: Layer, arch: Arch, algorithm: str = "hybrid", objective: str = "edp", seed: int = 0,
           workers: int | None = None, time_limit: float | None = SEARCH_SECONDS, budget: int | None = None,
           patience: int | None = None, top: int = 1, progress: Progress | None = None,
           factorization: str = "perfect") -> SearchResult:
    """The best mappings of one layer on one arch, with `mapper search`'s defaults: 60 s,
    every core (`time_limit=None` searches until done), perfect factorization (`"imperfect"`
    adds remainder tiles). See `mapper.search.search`."""
    workers = max(1, _os.cpu_count() or 1) if workers is None else workers
    return _search(layer, arch, algorithm=algorithm, objective=objective, seed=seed, workers=workers,
                   time_limit=time_limit, budget=budget, patience=patience, top=top, progress=progress,
                   factorization=factorization)


__all__ = ["Arch", "Fanout", "Storage", "load_arch", "parse_arch", "Loop", "Mapping", "MappingError",
           "check", "loop_nest_text", "normalize", "parse_mapping", "Cost", "Counts", "evaluate",
           "DIMS", "TENSORS", "Layer", "Network", "layer_from_dims", "load_network",
           "MapperError", "SpecError", "Found", "SearchResult", "search", "SEARCH_SECONDS"]
