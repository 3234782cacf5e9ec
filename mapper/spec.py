"""Strict reading of the YAML files users write (problems, architectures, mappings).

Every problem in a user file becomes one `SpecError` naming the file, the field and
what is wrong, so the CLI can print one line and exit with code 2 instead of a traceback.
Unknown fields are errors (with the closest known name suggested): a misspelled field
that is silently ignored is the most common complaint about peer tools.
"""
from __future__ import annotations

import difflib
import json
import math
import os
import reprlib
import stat
import unicodedata
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


# Limits on what a reader accepts. They bound time and memory on hostile input and keep every
# number inside what numpy's int64 and CP-SAT's integers hold; real specs are far inside them.
MAX_FILE_BYTES = 16 * 2 ** 20       # 16 MiB: the largest shipped spec or result is under 100 kB
MAX_DEPTH = 64                      # nesting of mappings/lists (specs nest about 6 deep)
MAX_NODES = 100_000                 # values, aliases expanded (a network of 1000 layers has ~20k)
MAX_DIGITS = 30                     # digits of an integer literal (2**62 has 19)
MAX_INT = 2 ** 40                   # any size, count or capacity: 2^40 * 2^20 products fit int64
MAX_NUMBER = 1e15                   # any real quantity (pJ, MHz, words/cycle): sums stay finite
MAX_DIM = 2 ** 24                   # a loop bound: factorized by trial division up to 4096
MAX_MACS = 2 ** 50                  # MACs of one layer: products of tiles and counts fit int64


LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")    # where str.splitlines splits


def _surrogates(text: str) -> bool:
    """Whether text holds a lone surrogate (from a YAML escape), which UTF-8 cannot encode."""
    return any(0xD800 <= ord(ch) <= 0xDFFF for ch in text)


def short(value: Any, limit: int = 60) -> str:
    """A bounded repr for messages (a value from a file can be huge or alias-expanded)."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def clip(text: Any, limit: int = 60) -> str:
    """str(text), cut to `limit` characters for a message."""
    text = str(text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _bounded_repr():
    r = reprlib.Repr()
    r.maxlevel, r.maxlist, r.maxtuple, r.maxdict, r.maxset = 2, 4, 4, 4, 4
    r.maxstring, r.maxother, r.maxlong = 40, 40, 24
    return r


_REPR = _bounded_repr()


def read_text(path: str | Path, what: str = "file") -> str:
    """The text of a regular file of at most MAX_FILE_BYTES, decoded as UTF-8. A FIFO, a
    device or a folder is refused before it is opened for reading (it could block or never
    end); every problem is a SpecError naming the file."""
    src = str(path)
    try:
        st = os.stat(path)
    except (OSError, ValueError) as exc:
        raise SpecError(src, "", f"cannot read {what} ({getattr(exc, 'strerror', None) or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file (a FIFO, socket or device)"
        raise SpecError(src, "", f"cannot read {what}: {kind}")
    if st.st_size > MAX_FILE_BYTES:
        raise SpecError(src, "", f"{what} too large: {st.st_size:,} bytes (limit {MAX_FILE_BYTES:,})")
    try:
        # O_NONBLOCK: if the path was swapped for a FIFO after the check, open() does not block
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise SpecError(src, "", f"cannot read {what}: not a regular file")
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SpecError(src, "", f"cannot read {what} ({exc.strerror or exc})") from None
    if len(data) > MAX_FILE_BYTES:
        raise SpecError(src, "", f"{what} too large (limit {MAX_FILE_BYTES:,} bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(src, "", f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                        "save the file as UTF-8") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\x00" in text:
        raise SpecError(src, "", "not a text file (contains a NUL byte)")
    return text


def load_yaml(path: str | Path) -> Any:
    """Parse a YAML file; a missing file, a syntax error or any of the limits above becomes a
    SpecError."""
    text = read_text(path)
    return parse_yaml(text, str(path))


def parse_yaml(text: str, src: str) -> Any:
    """Parse YAML text from `src` with _StrictLoader (see its limits)."""
    try:
        # the reader refuses control characters (e.g. binary garbage) as soon as it is made
        loader = _StrictLoader(text)
    except yaml.reader.ReaderError as exc:
        char = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "\0")
        raise SpecError(src, "", f"not a YAML text file (control character U+{char:04X} at offset "
                                 f"{exc.position})") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_size(node, src)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(src, "", f"malformed YAML: {line}{clip(problem, 200)}") from None
    except RecursionError:
        raise SpecError(src, "", f"nested too deeply (limit {MAX_DEPTH} levels)") from None
    finally:
        loader.dispose()


def _check_size(node, src: str) -> None:
    """Refuse a document nested deeper than MAX_DEPTH or with more than MAX_NODES values once
    aliases are expanded ("billion laughs"), counting without expanding anything."""
    sizes: dict[int, int] = {}

    def size(n, depth):
        if depth > MAX_DEPTH:
            raise SpecError(src, "", f"nested too deeply (limit {MAX_DEPTH} levels)")
        if id(n) in sizes:
            return sizes[id(n)]
        total = 1
        if isinstance(n, yaml.SequenceNode):
            for item in n.value:
                total += size(item, depth + 1)
        elif isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                total += size(k, depth + 1) + size(v, depth + 1)
        if total > MAX_NODES:
            raise SpecError(src, "", f"too many values (limit {MAX_NODES:,}, aliases counted as expanded)")
        sizes[id(n)] = total
        return total

    size(node, 0)


def load_json(path: str | Path, what: str = "JSON file") -> Any:
    """Parse a JSON file with the same limits as YAML (size, depth, integer digits); NaN and
    Infinity are refused (they are not JSON)."""
    src = str(path)
    text = read_text(path, what)

    def parse_int(digits: str) -> int:
        if len(digits.lstrip("-")) > MAX_DIGITS:
            raise _Refused(f"an integer of {len(digits):,} digits (limit {MAX_DIGITS})")
        return int(digits)

    def parse_constant(name: str):
        raise _Refused(f"{name} is not a number JSON allows")

    try:
        data = json.loads(text, parse_int=parse_int, parse_constant=parse_constant)
    except _Refused as exc:
        raise SpecError(src, "", str(exc)) from None
    except json.JSONDecodeError as exc:
        raise SpecError(src, "", f"malformed JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except (RecursionError, ValueError) as exc:
        msg = f"nested too deeply (limit {MAX_DEPTH} levels)" if isinstance(exc, RecursionError) \
            else f"malformed JSON ({short(str(exc), 80)})"
        raise SpecError(src, "", msg) from None
    check_depth(data, src)
    return data


class _Refused(ValueError):
    pass


def check_depth(data: Any, src: str) -> None:
    """Refuse parsed data nested deeper than MAX_DEPTH or with more than MAX_NODES values."""
    stack, count = [(data, 0)], 0
    while stack:
        value, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH:
            raise SpecError(src, "", f"nested too deeply (limit {MAX_DEPTH} levels)")
        if count > MAX_NODES:
            raise SpecError(src, "", f"too many values (limit {MAX_NODES:,})")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping (YAML keeps the last), a key
    that is a list or mapping, an integer of more than MAX_DIGITS digits and nesting deeper
    than MAX_DEPTH (PyYAML composes recursively: deep input would be a RecursionError)."""

    _depth = 0
    _nodes = 0

    def compose_node(self, parent, index):
        self._depth += 1
        self._nodes += 1            # stops a huge flat document early (aliases: see _check_size)
        try:
            if self._depth > MAX_DEPTH or self._nodes > MAX_NODES:
                mark = self.peek_event().start_mark
                what = f"nested too deeply (limit {MAX_DEPTH} levels)" if self._depth > MAX_DEPTH \
                    else f"too many values (limit {MAX_NODES:,})"
                raise yaml.composer.ComposerError(None, None, what, mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue                # '<<: *base' merges a mapping in (checked as its own keys)
            if not isinstance(key_node, yaml.ScalarNode):
                raise yaml.constructor.ConstructorError(
                    None, None, "a field name must be a plain name, not a list or mapping", key_node.start_mark)
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"field '{clip(key)}' is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node):
        digits = sum(c.isdigit() for c in str(node.value))
        if digits > MAX_DIGITS:
            raise yaml.constructor.ConstructorError(
                None, None, f"an integer of {digits:,} digits (limit {MAX_DIGITS})", node.start_mark)
        return super().construct_yaml_int(node)


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_yaml_int)


def closest(name: str, known: Iterable[str]) -> str:
    """' (did you mean X?)' for the closest known name, or ''."""
    name = str(name)[:100]      # difflib is quadratic in the length
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
        key = clip(key)
        if not str(key).isprintable() or _surrogates(str(key)):
            key = ascii(str(key))      # an error line never spans lines or fails to encode
        return f"{self.where}.{key}" if self.where else key

    def name(self, key: str = "name") -> str:
        """A name (network, layer, arch, level): one line of text without control characters
        or lone surrogates, which would break one-line errors, tables and UTF-8 output."""
        value = self.string(key)
        if not value.strip():
            raise self.error(key, "an empty name; give a name")
        # control characters (NUL, tab, escape, ...) garble tables and terminals and cannot be
        # typed back as --layer; line breaks beyond them (U+2028, ...) would split error lines
        if _surrogates(value) or any(ch in LINE_BREAKS or unicodedata.category(ch) == "Cc" for ch in value):
            raise self.error(key, f"{ascii(clip(value))}: a name must be one line of printable text "
                                  f"(no control characters such as NUL, tab or newline, no lone surrogates)")
        return value

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
            raise self.error(key, f"expected a name, got {short(value)}")
        return str(value)

    def integer(self, key: str, default: int | None = None, minimum: int = 1, maximum: int = MAX_INT) -> int:
        value = self.get(key, default)
        if value is None:
            raise self.error(key, "missing required field")
        return as_int(value, self.src, self.path(key), minimum, maximum)

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
            raise self.error(key, f"{short(value)} is not one of {', '.join(options)}{closest(value, options)}")
        return value

    def names(self, key: str, options: Iterable[str], default: Iterable[str] = ()) -> tuple[str, ...]:
        """A list of names, each one of `options` (tensor or dimension names)."""
        options = list(options)
        value = self.get(key, list(default))
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise self.error(key, f"expected a list of names, got {short(value)}")
        out = []
        for item in value:
            if item not in options:
                raise self.error(key, f"{short(item)} is not one of {', '.join(options)}{closest(item, options)}")
            if item not in out:
                out.append(item)
        return tuple(out)


def as_int(value: Any, src: str, field: str, minimum: int = 1, maximum: int = MAX_INT) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            (isinstance(value, float) and (not math.isfinite(value) or value != int(value))):
        raise SpecError(src, field, f"expected a whole number, got {short(value)}")
    if not minimum <= value <= maximum:
        bound = f"at least {minimum}" if value < minimum else f"at most {maximum:,}"
        raise SpecError(src, field, f"must be {bound}, got {short(value)}")
    return int(value)


def as_number(value: Any, src: str, field: str, minimum: float = 0.0, maximum: float = MAX_NUMBER) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpecError(src, field, f"expected a number, got {short(value)}")
    if value < minimum:
        raise SpecError(src, field, f"must be at least {minimum}, got {short(value)}")
    if value > maximum:
        raise SpecError(src, field, f"must be at most {maximum:g}, got {short(value)}")
    return float(value)


def pair(value: Any, src: str, field: str, minimum: int) -> tuple[int, int]:
    """An int or a [vertical, horizontal] pair."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise SpecError(src, field, f"expected a number or [vertical, horizontal], got {short(value)}")
        return (as_int(value[0], src, field, minimum), as_int(value[1], src, field, minimum))
    v = as_int(value, src, field, minimum)
    return (v, v)


def resolve(name_or_path: str, folder: str, kind: str) -> Path:
    """A built-in name (a file in the shipped folder) or a path to a user file."""
    if "\x00" in str(name_or_path):
        raise SpecError("", f"--{kind}", f"a NUL byte in the {kind} name {short(name_or_path)}")
    path = Path(name_or_path)
    # a folder of that name (e.g. a sweep's output folder named after an arch) is not a spec
    if path.suffix in (".yaml", ".yml", ".onnx") or (path.exists() and not path.is_dir()) or "/" in str(name_or_path):
        if not path.exists():
            raise SpecError(str(path), "", f"{kind} file not found")
        return path
    builtin = builtin_dir(folder) / f"{name_or_path}.yaml"
    if builtin.exists():
        return builtin
    names = builtins(folder)
    raise SpecError("", f"--{kind}", f"unknown {kind} '{short(name_or_path)}'{closest(name_or_path, names)}; "
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
