"""Helpers shared by the Timeloop readers and writers (mapper.timeloop): names with
instance ranges, field checks that raise one-line SpecErrors, factor and permutation
strings, and YAML text snippets."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from ..spec import SpecError, as_number, load_yaml

#: Timeloop CNN_Layer dimension order (the order Timeloop's own files list factors in).
TIMELOOP_DIMS = ("C", "M", "R", "S", "N", "P", "Q")
VERSIONS = ("0.3", "0.4")

_RANGE = re.compile(r"^(?P<base>.*?)\[(?P<lo>-?\d+)\.\.(?P<hi>-?\d+)\]$")
_FACTOR = re.compile(r"([A-Za-z]+)\s*=?\s*(\d+)(?:,(\d+))?")


def _split_range(name: str) -> tuple[str, int]:
    """'PE[0..167]' -> ('PE', 168); 'DRAM' -> ('DRAM', 1)."""
    m = _RANGE.match(str(name))
    if not m:
        return str(name), 1
    return m.group("base"), int(m.group("hi")) - int(m.group("lo")) + 1


def _path_parts(full: str) -> list[str]:
    """'system.PE[0..167].mac' -> ['system', 'PE[0..167]', 'mac'] (dots inside ranges kept)."""
    return re.split(r"\.(?![^\[]*\])", str(full))


def _strip_ranges(full: str) -> str:
    return ".".join(_split_range(part)[0] for part in _path_parts(full))


def _check_version(value: Any, src: str, field: str, required: bool = False) -> None:
    if value is None:
        if required:
            raise SpecError(src, field, "missing version; supported: " + ", ".join(VERSIONS))
        return
    text = str(value).strip()
    if text not in VERSIONS:
        raise SpecError(src, field, f"unsupported version {value!r}; supported: {', '.join(VERSIONS)}")


def _mapping_of(value: Any, src: str, field: str) -> dict:
    if not isinstance(value, dict):
        raise SpecError(src, field or "(top level)", f"expected a mapping of fields, got {type(value).__name__}")
    return value


def _list_of(value: Any, src: str, field: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise SpecError(src, field, f"expected a list, got {type(value).__name__}")
    return value


def _number(value: Any, src: str, field: str) -> float:
    """A non-negative number; Timeloop files also write numbers as strings."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    return as_number(value, src, field)


def _load(data_or_path: Any, what: str) -> tuple[Any, str]:
    """(parsed data, source name) from a path or already-parsed data."""
    if isinstance(data_or_path, (str, Path)):
        return load_yaml(data_or_path), str(data_or_path)
    return data_or_path, what


def _parse_factors(text: Any, src: str, field: str) -> dict[str, tuple[int, int | None]]:
    """'C1 M2 R11' or 'C=1,M=2' (or a list of such items) -> {dim: (factor, residual)}."""
    if isinstance(text, (list, tuple)):
        text = " ".join(str(t) for t in text)
    if not isinstance(text, str):
        raise SpecError(src, field, f"expected a factors string such as 'C1 M2 R3', got {text!r}")
    body = text.split("#", 1)[0]
    out: dict[str, tuple[int, int | None]] = {}
    pos = 0
    for m in _FACTOR.finditer(body):
        gap = body[pos:m.start()].strip(" ,\t")
        if gap:
            raise SpecError(src, field, f"cannot read {gap!r} in factors {text!r} (expected items like C1 or C=1)")
        pos = m.end()
        dim = m.group(1)
        if dim in out:
            raise SpecError(src, field, f"dimension {dim} is given twice in factors {text!r}")
        out[dim] = (int(m.group(2)), int(m.group(3)) if m.group(3) else None)
    rest = body[pos:].strip(" ,\t")
    if rest:
        raise SpecError(src, field, f"cannot read {rest!r} in factors {text!r} (expected items like C1 or C=1)")
    return out


def _parse_permutation(text: Any, src: str, field: str) -> list[str]:
    """'MCRSNPQ' (innermost first; one letter per dimension) or a list of names."""
    if text is None:
        return []
    if isinstance(text, (list, tuple)):
        dims = [str(t) for t in text]
    elif isinstance(text, str):
        dims = [c for c in text if not c.isspace()]
    else:
        raise SpecError(src, field, f"expected a permutation string such as 'MCRSNPQ', got {text!r}")
    seen = set()
    for d in dims:
        if d in seen:
            raise SpecError(src, field, f"dimension {d} appears twice in permutation {text!r}")
        seen.add(d)
    return dims


def _flow(value: Any) -> str:
    """A value as one line of YAML flow style."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30, sort_keys=False).strip()
    return text.removesuffix("\n...").strip()       # a scalar document ends with a '...' line


def _comment(text: str, indent: str = "") -> list[str]:
    return [f"{indent}# {line}".rstrip() for line in str(text).splitlines()]


def _section(path: str | Path, key: str, hint: str) -> dict:
    """The required top-level `key` of a Timeloop/Accelergy file, its version checked."""
    src = str(path)
    data = _mapping_of(load_yaml(path), src, "")
    if key not in data:
        raise SpecError(src, key, f"missing required field ({hint})")
    section = _mapping_of(data[key], src, key)
    _check_version(section.get("version"), src, f"{key}.version")
    return section
