"""Which bandwidth binds a mapping's cycles: a storage level's or a fan-out's network (Eyexam
steps 6 and 7)."""
from __future__ import annotations

from typing import Any

from ..arch import Arch
from ..mapping import Mapping
from ..model import Cost
from ..problem import TENSORS


def _plural(n: float, word: str) -> str:
    return f"{n:g} {word}" + ("" if n == 1 else "s")


def binding_bandwidth(cost: Cost, mapping: Mapping, arch: Arch) -> dict[str, Any] | None:
    """The bandwidth that bounds `cost`'s cycles (None when compute-bound): a storage level's
    read, write or shared bandwidth per instance, or one tensor's network at a fan-out (its
    streams in the mapping's mode x ports x words per port). `name` says which (e.g. "array
    Weights network"), `text` adds the words per cycle, for notes and plots."""
    key, cycles = cost.bottleneck()
    if key == "compute":
        return None
    for fan in arch.fanouts:
        for t in TENSORS:
            if key != f"{fan.name} {t}":
                continue
            mode = mapping.mode(fan.name, t)
            streams, ports = fan.streams(mode), dict(fan.port_counts).get(t, 1)
            per_port = dict(fan.port_words)[t]
            words = fan.bandwidth(t, mode)
            how = f"{_plural(streams, 'stream')} x {_plural(ports, 'port')} x {_plural(per_port, 'word')}"
            name = f"{fan.name} {t} network"
            return {"kind": "network", "name": name, "level": fan.name, "tensor": t, "mode": mode,
                    "streams": streams, "ports": ports, "port_words": per_port, "words_per_cycle": words,
                    "cycles": cycles,
                    "text": f"{name}: {words:g} words/cycle ({f'{mode}: ' if mode else ''}{how})"}
    level = next(s for s in arch.storages if s.name == key)
    counts = cost.levels.get(level.name, {}).values()
    reads = sum(c.reads for c in counts)
    writes = sum(c.fills + c.updates for c in counts)
    # The instances share the totals evenly, so the limit with the most words per unit of
    # bandwidth is the one that gives the level's cycles.
    limits = [(w / bw, kind, bw) for kind, bw, w in (("read", level.read_bw, reads), ("write", level.write_bw, writes),
                                                     ("shared", level.shared_bw, reads + writes)) if bw]
    total_cycles, kind, bw = max(limits)
    instances = max(1, round(total_cycles / cycles))     # total words / per-instance words
    name = f"{level.name} {kind} bandwidth"
    each = f" per instance ({instances:,} instances)" if instances > 1 else ""
    return {"kind": "storage", "name": name, "level": level.name, "limit": kind, "words_per_cycle": bw,
            "instances": instances, "cycles": cycles, "text": f"{name}: {bw:g} words/cycle{each}"}
