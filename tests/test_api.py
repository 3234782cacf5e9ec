"""The Python API as the README shows it: its example runs, and `mapper.search` has the
command's defaults while the `mapper.search` subpackage stays importable."""
from __future__ import annotations

import contextlib
import inspect
import io
import re
from pathlib import Path

import pytest

import mapper

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_example() -> str:
    """The python block of the README's "Python API" section."""
    section = README.read_text().split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the Python API section should show exactly one example"
    return blocks[0]


@pytest.mark.slow          # a real search (about 5-10 s): the slow tier runs it
def test_readme_example_runs():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(readme_example(), str(README), "exec"), {})
    lines = out.getvalue().splitlines()
    assert re.match(r"(optimal|feasible|budget) [\d,]+ pJ [\d,]+ cycles$", lines[0]), lines[0]
    nest = "\n".join(lines[1:])
    assert "<< MAC >>" in nest and re.search(r"for [NGMCPQRS] in \[0:\d+\)", nest)


def test_search_has_the_command_defaults():
    from mapper.cli import SEARCH_SECONDS
    params = inspect.signature(mapper.search).parameters
    assert params["time_limit"].default == SEARCH_SECONDS == mapper.SEARCH_SECONDS
    assert params["workers"].default is None          # every core, as `mapper search`
    assert params["algorithm"].default == "hybrid" and params["objective"].default == "edp"


def test_search_subpackage_still_importable():
    from mapper.search import search, search_network
    from mapper.search.space import Space
    assert callable(mapper.search) and callable(search) and callable(search_network)
    assert Space.__module__ == "mapper.search.space"


def test_readme_names_exist():
    for name in ("load_network", "load_arch", "search", "evaluate", "loop_nest_text"):
        assert callable(getattr(mapper, name)), name
    assert (Path(mapper.__file__).parent / "py.typed").is_file()
