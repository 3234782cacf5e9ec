"""Strict reading of the YAML files users write (problems, architectures, mappings).

Every problem in a user file becomes one `SpecError` naming the file, the field and
what is wrong, so the CLI can print one line and exit with code 2 instead of a traceback.
Unknown fields are errors (with the closest known name suggested): a misspelled field
that is silently ignored is the most common complaint about peer tools.
"""
from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml


class MapperError(Exception):
    """An error the user can fix; the CLI prints it on one line and exits with code 2."""


class SpecError(MapperError):
    """A problem in a user-written file: which file, which field, what is wrong."""

    def __init__(self, source: str, field: str, message: str):
        self.source, self.field, self.message = source, field, message
        where = f"{source}: " if source else ""
        what = f"{field}: " if field else ""
        super().__init__(f"{where}{what}{message}")


def load_yaml(path: str | Path) -> Any:
    """Parse a YAML file; a missing file or a syntax error becomes a SpecError."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(str(path), "", f"cannot read file ({exc.strerror or exc})") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(str(path), "", f"malformed YAML: {line}{problem}") from None


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping (YAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"field '{key}' is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def closest(name: str, known: Iterable[str]) -> str:
    """' (did you mean X?)' for the closest known name, or ''."""
    match = difflib.get_close_matches(str(name), list(known), n=1, cutoff=0.5)
    if not match:
        match = [k for k in known if str(k).lower() == str(name).lower()]
    return f" (did you mean '{match[0]}'?)" if match else ""


class Fields:
    """A mapping read from YAML whose keys are checked against the known ones.

    `src` is the file and `where` the path of this mapping inside it (e.g. 'layers[2]'),
    so every error names both.
    """

    def __init__(self, data: Any, src: str, where: str, known: Iterable[str],
                 required: Iterable[str] = ()):
        self.src, self.where = src, where
        if not isinstance(data, Mapping):
            raise SpecError(src, where or "(top level)",
                            f"expected a mapping of fields, got {type(data).__name__}")
        self.data = dict(data)
        known = list(known)
        for key in self.data:
            if key not in known:
                raise SpecError(src, self.path(key),
                                f"unknown field{closest(key, known)}; known fields: {', '.join(known)}")
        for key in required:
            if key not in self.data:
                raise SpecError(src, self.path(key), "missing required field")

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else str(key)

    def has(self, key: str) -> bool:
        return key in self.data and self.data[key] is not None

    def get(self, key: str, default: Any = None) -> Any:
        value = self.data.get(key)
        return default if value is None else value

    def error(self, key: str, message: str) -> SpecError:
        return SpecError(self.src, self.path(key), message)

    def string(self, key: str, default: str | None = None) -> str:
        value = self.get(key, default)
        if value is None:
            raise self.error(key, "missing required field")
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise self.error(key, f"expected a name, got {value!r}")
        return str(value)

    def integer(self, key: str, default: int | None = None, minimum: int = 1) -> int:
        value = self.get(key, default)
        if value is None:
            raise self.error(key, "missing required field")
        return as_int(value, self.src, self.path(key), minimum)

    def number(self, key: str, default: float | None = None, minimum: float = 0.0,
               allow_none: bool = False) -> float | None:
        value = self.get(key, default)
        if value is None:
            if allow_none:
                return None
            raise self.error(key, "missing required field")
        return as_number(value, self.src, self.path(key), minimum)

    def choice(self, key: str, options: Iterable[str], default: str | None = None) -> str:
        options = list(options)
        value = self.string(key, default)
        if value not in options:
            raise self.error(key, f"'{value}' is not one of {', '.join(options)}{closest(value, options)}")
        return value

    def names(self, key: str, options: Iterable[str], default: Iterable[str] = ()) -> tuple[str, ...]:
        """A list of names, each one of `options` (tensor or dimension names)."""
        options = list(options)
        value = self.get(key, list(default))
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise self.error(key, f"expected a list of names, got {value!r}")
        out = []
        for item in value:
            if item not in options:
                raise self.error(key, f"'{item}' is not one of {', '.join(options)}{closest(item, options)}")
            if item not in out:
                out.append(item)
        return tuple(out)


def as_int(value: Any, src: str, field: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value != int(value):
        raise SpecError(src, field, f"expected a whole number, got {value!r}")
    value = int(value)
    if value < minimum:
        raise SpecError(src, field, f"must be at least {minimum}, got {value}")
    return value


def as_number(value: Any, src: str, field: str, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpecError(src, field, f"expected a number, got {value!r}")
    if value < minimum:
        raise SpecError(src, field, f"must be at least {minimum}, got {value}")
    return float(value)


def pair(value: Any, src: str, field: str, minimum: int) -> tuple[int, int]:
    """An int or a [vertical, horizontal] pair."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise SpecError(src, field, f"expected a number or [vertical, horizontal], got {value!r}")
        return (as_int(value[0], src, field, minimum), as_int(value[1], src, field, minimum))
    v = as_int(value, src, field, minimum)
    return (v, v)


def resolve(name_or_path: str, folder: str, kind: str) -> Path:
    """A built-in name (a file in the shipped folder) or a path to a user file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml", ".onnx") or path.exists() or "/" in str(name_or_path):
        if not path.exists():
            raise SpecError(str(path), "", f"{kind} file not found")
        return path
    builtin = builtin_dir(folder) / f"{name_or_path}.yaml"
    if builtin.exists():
        return builtin
    names = builtins(folder)
    raise SpecError("", f"--{kind}", f"unknown {kind} '{name_or_path}'{closest(name_or_path, names)}; "
                    f"built-in {kind}s: {', '.join(names)} (or give a path to a YAML file)")


def builtin_dir(folder: str) -> Path:
    """The folder of shipped spec files (`arch/`, `problems/`), installed with the package."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "data" / folder, here.parent / folder):
        if candidate.is_dir():
            return candidate
    return here.parent / folder


def builtins(folder: str) -> list[str]:
    return sorted(p.stem for p in builtin_dir(folder).glob("*.yaml"))
