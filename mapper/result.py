"""The result document every command writes (and `evaluate` reads back), written atomically.

A result carries the layer, the architecture's name, the mapping, its full cost, the
software version and a SHA-256 of the inputs (layer shape, architecture, and the settings
that produced it), so a stale or foreign result can be recognised.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import stat
import tempfile
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import __version__
from .arch import Arch
from .mapping import Mapping
from .model import Cost
from .problem import Layer
from .spec import MapperError, clip


def inputs_sha256(layer: Layer, arch: Arch, settings: dict[str, Any] | None = None) -> str:
    """Hash of everything a result depends on: the layer's shape, the architecture and settings."""
    payload = {
        "layer": [layer.type, layer.shape_key()],
        "arch": dataclasses.asdict(arch) | {"source": "", "notes": ""},
        "settings": settings or {},
        "version": __version__,
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def document(layer: Layer, arch: Arch, mapping: Mapping, cost: Cost,
             settings: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "version": __version__,
        "inputs_sha256": inputs_sha256(layer, arch, settings),
        "layer": layer.describe(),
        "arch": arch.describe(),
        "mapping": mapping.to_dict(),
        "cost": cost.to_dict(),
    }


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically (see write_text)."""
    write_text(path, json.dumps(data, indent=2) + "\n")


def write_text(path: str | Path, text: str) -> None:
    """Write a file atomically (see `atomic`)."""
    with atomic(path) as tmp:
        with open(tmp, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())


TEMP_MARK = ".mapper-partial-"     # in every temporary file's name, so a later run can remove leftovers


@lru_cache(maxsize=1)
def file_mode() -> int:
    """The mode a new file gets under the user's umask (mkstemp would give 0600). The umask
    is read from /proc where the kernel shows it; else set and restored at once."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


NAME_MAX = 255        # bytes in one path component on Linux, macOS and Windows file systems


def check_output(path: str | Path, what: str = "output") -> None:
    """Refuse an output path that cannot be written as a regular file: an empty name, a
    name component too long for the file system, or an existing path that is a folder, a
    symlink or a special file (a FIFO, a device, a socket), which the atomic rename would
    silently replace by a new regular file."""
    text = os.fspath(path)
    if not text:
        raise MapperError(f"an empty {what} path: give a file name")
    for part in Path(text).parts:
        if len(os.fsencode(part)) > NAME_MAX:
            raise MapperError(f"{clip(text, 200)}: cannot write {what} (a name in the path is longer than "
                              f"{NAME_MAX} bytes)")
    if os.path.islink(text):
        raise MapperError(f"{clip(text, 200)}: is a symlink; not replacing it (give the path of a regular file)")
    if os.path.lexists(text):
        mode = os.lstat(text).st_mode
        if stat.S_ISDIR(mode):
            raise MapperError(f"{clip(text, 200)}: is a folder; give a file name")
        if not stat.S_ISREG(mode):
            raise MapperError(f"{clip(text, 200)}: is not a regular file (a FIFO, device or socket); "
                              f"not replacing it")


def _remove_folders(created: list[Path]) -> None:
    """Remove the folders a failed write created (deepest first), if they are still empty."""
    for folder in reversed(created):
        try:
            folder.rmdir()
        except OSError:
            break


@contextmanager
def atomic(path: str | Path):
    """Yield a temporary path in the target's folder; on success it is renamed over the
    target, on failure removed, so an interrupted run never leaves a half-written file.
    A process killed mid-write can leave the temporary file (named with TEMP_MARK)."""
    check_output(path)
    path = Path(path)
    created = [p for p in reversed(path.parents) if str(p) not in ("", ".") and not os.path.lexists(p)]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:100]}{TEMP_MARK}", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, file_mode())
        os.close(fd)
    except OSError as exc:
        _remove_folders(created)
        raise MapperError(f"{path}: cannot write output ({exc.strerror or exc})") from None
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        _remove_folders(created)
        if isinstance(exc, OSError):
            raise MapperError(f"{path}: cannot write output ({exc.strerror or exc})") from None
        raise


def result_layer(doc: Any) -> str | None:
    """The layer name a result document is for (None if it names none)."""
    layer = doc.get("layer") if isinstance(doc, dict) else None
    return layer.get("name") if isinstance(layer, dict) and isinstance(layer.get("name"), str) else None


def select_results(data: Any, src: str, layer: str | None = None) -> list[dict[str, Any]]:
    """The result documents of a file holding one document or a list (a whole-network
    search, or --top K): those of `layer` if given, else all; only the best (rank 1) of
    each layer. A single document (or a plain mapping) passes through whatever `layer`
    is: the mapping is then checked against that layer."""
    docs = data if isinstance(data, list) else [data]
    if not docs:
        raise MapperError(f"{src}: an empty list: no result documents")
    for i, d in enumerate(docs):
        if not isinstance(d, dict):
            raise MapperError(f"{src}: item {i}: expected a result document (a mapping of fields), "
                              f"got {type(d).__name__}")
    if not isinstance(data, list) or (len(docs) == 1 and layer is None):
        return docs                # one document: --layer says which layer to check it against
    best = [d for d in docs if (d.get("search") or {}).get("rank", 1) == 1] if layer is None else docs
    if layer is None:
        return best
    names = [result_layer(d) for d in docs]
    chosen = [d for d, n in zip(docs, names) if n == layer]
    if not chosen:
        if len(docs) == 1 and names[0] is None:
            return docs            # a bare mapping: the user says which layer it is for
        listed = ", ".join(dict.fromkeys(n for n in names if n)) or "none"
        raise MapperError(f"{src}: no result for layer '{layer}' (layers in the file: {listed})")
    return chosen[:1]
