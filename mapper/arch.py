"""Architectures: a chain of storage levels from DRAM inward, with spatial fan-outs between them.

An architecture file lists `levels` outermost first. A storage level holds tiles of the
tensors it keeps (each instance its own copy); a fan-out level (`fanout: {X, Y}`) splits
the machine into X x Y copies of everything below it and carries the network's cost and
rules (which dimensions may be unrolled on each axis, multicast, spatial reduction).
The MACs sit below the innermost level; their count is the product of all fan-outs.

Energies are per word (one scalar of the level's word width) and per action: `read`
(a word sent to a child level or to the MACs), `write` (a word filled from the parent)
and `update` (a partial sum written back by a child). Bandwidths are words per cycle per
instance. See README "Architecture files" for every field.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .problem import DIMS, TENSORS
from .spec import MAX_INT, Fields, SpecError, as_int, as_number, closest, load_yaml, resolve

ACTIONS = ("read", "write", "update")
MAX_FANOUT = 2 ** 20        # PEs along one axis; with MAX_DIM it keeps fan-out products in int64
MAX_WORD_BITS = 4096
MULTICAST = ("exact", "projection")

#: Network modes of a fan-out (Eyeriss v2's hierarchical mesh): which children can share
#: one parent read (multicast credit on the X and/or Y axis) and how many independent
#: ports deliver words (per parent instance), as a function of the fan-out's X and Y.
#: unicast: every child its own port, no sharing (high bandwidth); grouped: the children of
#: one row (same Y, any X) share a port; interleaved: the children of one column share a
#: port; broadcast: one port reaches all children (high reuse).
NETWORK_MODES = {
    "unicast": (False, False, lambda X, Y: X * Y),
    "grouped": (True, False, lambda X, Y: Y),
    "interleaved": (False, True, lambda X, Y: X),
    "broadcast": (True, True, lambda X, Y: 1),
}


@dataclass(frozen=True)
class Storage:
    """A storage level: capacity, kept tensors, per-word energies, bandwidth, loop rules."""

    name: str
    keeps: tuple[str, ...]
    may_bypass: tuple[str, ...] = ()
    # Capacity in words per instance: partitions of (tensors sharing it, words); () = unbounded.
    partitions: tuple[tuple[tuple[str, ...], int], ...] = ()
    energy: tuple[tuple[str, tuple[float, float, float]], ...] = ()   # tensor -> (read, write, update)
    read_bw: float | None = None
    write_bw: float | None = None
    shared_bw: float | None = None
    temporal_dims: tuple[str, ...] = DIMS
    word_bits: int = 16
    instances: int = 1
    leakage: float = 0.0     # pJ per cycle per instance

    @property
    def bounded(self) -> bool:
        return bool(self.partitions)

    def energy_of(self, tensor: str) -> tuple[float, float, float]:
        return dict(self.energy)[tensor]

    def partition_of(self, tensor: str) -> tuple[tuple[str, ...], int] | None:
        for tensors, words in self.partitions:
            if tensor in tensors:
                return tensors, words
        return None


@dataclass(frozen=True)
class Fanout:
    """A spatial fan-out (an array or a network): X x Y children below each parent instance."""

    name: str
    X: int
    Y: int
    x_dims: tuple[str, ...] = DIMS
    y_dims: tuple[str, ...] = DIMS
    # Energy per word carried between a parent and one child (each delivery or writeback).
    energy: tuple[tuple[str, float], ...] = (("Weights", 0.0), ("Inputs", 0.0), ("Outputs", 0.0))
    multicast: str = "exact"
    reduction: bool = True
    instances: int = 1   # instances of the level above (parents)
    # Network modes offered per tensor (empty: no modes, `multicast` applies) and the
    # words per cycle one port delivers (None: no bandwidth limit).
    modes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    port_words: float | None = None

    @property
    def size(self) -> int:
        return self.X * self.Y

    def modes_of(self, tensor: str) -> tuple[str, ...]:
        return dict(self.modes).get(tensor, ())

    def credit(self, mode: str | None) -> dict[str, str]:
        """Per axis (X, Y), which children share one parent read: "exact" (all children with
        identical tiles), "projection" (children replicated by a loop over a dimension the
        tensor does not depend on) or "none" (every child reads its own words)."""
        if mode is None:
            return {"X": self.multicast, "Y": self.multicast}
        x, y = NETWORK_MODES[mode][:2]
        return {"X": "exact" if x else "none", "Y": "exact" if y else "none"}

    def ports(self, mode: str | None) -> int:
        return 1 if mode is None else NETWORK_MODES[mode][2](self.X, self.Y)

    def energy_of(self, tensor: str) -> float:
        return dict(self.energy)[tensor]


@dataclass(frozen=True)
class Sparsity:
    """How the chip exploits zeros (see README "Sparsity").

    skip_zero_macs: MACs with a zero operand are skipped, saving energy and cycles (Eyeriss
    v2's CSC processing). gate_zero_inputs: MACs (and their weight reads) with a zero input
    activation are gated, saving energy but not cycles (Eyeriss v1). compressed: per level,
    the tensors stored in compressed form and their metadata overhead per non-zero (e.g.
    0.5 for a 4-bit count with each 8-bit value): such a tensor of density d < 1 takes
    min(1, d * (1 + overhead)) of its dense size and accesses.
    """

    skip_zero_macs: bool = False
    gate_zero_inputs: bool = False
    compressed: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = ()

    def factor(self, level: str, tensor: str, density: float) -> float:
        """Fraction of the dense words stored or moved for this tensor at this level."""
        overhead = dict(dict(self.compressed).get(level, ())).get(tensor)
        if overhead is None or density >= 1.0:
            return 1.0
        return min(1.0, density * (1.0 + overhead))


@dataclass(frozen=True)
class Arch:
    name: str
    levels: tuple[Storage | Fanout, ...]
    mac_energy: float
    clock_mhz: float
    word_bits: int = 16
    source: str = ""
    notes: str = ""
    sparsity: Sparsity = Sparsity()

    @property
    def storages(self) -> tuple[Storage, ...]:
        return tuple(l for l in self.levels if isinstance(l, Storage))

    @property
    def fanouts(self) -> tuple[Fanout, ...]:
        return tuple(l for l in self.levels if isinstance(l, Fanout))

    @property
    def pes(self) -> int:
        return math.prod(f.size for f in self.fanouts)

    def level(self, name: str) -> Storage | Fanout:
        for level in self.levels:
            if level.name == name:
                return level
        names = [l.name for l in self.levels]
        raise KeyError(f"no level '{name}' in arch {self.name}{closest(name, names)}")

    def index(self, name: str) -> int:
        return [l.name for l in self.levels].index(name)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "clock_mhz": self.clock_mhz, "pes": self.pes,
                "levels": [l.name for l in self.levels]}


STORAGE_FIELDS = ("name", "capacity", "keeps", "may_bypass", "energy", "bandwidth",
                  "temporal_dims", "word_bits", "leakage", "notes")
FANOUT_FIELDS = ("name", "fanout", "spatial_dims", "energy", "multicast", "reduction", "modes",
                 "port_words", "notes")


def _tensor_energy(value: Any, src: str, where: str, actions: tuple[str, ...]):
    """Per-tensor energies: a number, {action: pJ}, or {tensor: number | {action: pJ}}."""
    def one(v, w):
        if isinstance(v, dict):
            f = Fields(v, src, w, actions, required=actions)
            return tuple(f.number(a) for a in actions)
        x = as_number(v, src, w)
        return tuple(x for _ in actions)

    if isinstance(value, dict) and any(k in TENSORS for k in value):
        f = Fields(value, src, where, TENSORS, required=TENSORS)
        return tuple((t, one(f.get(t), f.path(t))) for t in TENSORS)
    e = one(value, where)
    return tuple((t, e) for t in TENSORS)


def _parse_storage(data: dict, src: str, where: str, word_bits: int, instances: int) -> Storage:
    f = Fields(data, src, where, STORAGE_FIELDS, required=("name", "keeps", "energy"))
    name = f.string("name")
    keeps = f.names("keeps", TENSORS)
    if not keeps:
        raise f.error("keeps", "a storage level must keep at least one tensor (a level that keeps "
                      "nothing is not a level: remove it)")
    may_bypass = f.names("may_bypass", TENSORS)
    for t in may_bypass:
        if t not in keeps:
            raise f.error("may_bypass", f"'{t}' is not in keeps {list(keeps)}")
    partitions = ()
    if f.has("capacity"):
        cap = f.get("capacity")
        if isinstance(cap, dict):
            parts, seen = [], set()
            for key, words in cap.items():
                tensors = tuple(str(key).split("+"))
                for t in tensors:
                    if t not in TENSORS:
                        raise f.error(f"capacity.{key}", f"'{t}' is not a tensor{closest(t, TENSORS)}; "
                                      f"use tensor names joined by '+' (e.g. Inputs+Outputs)")
                    if t in seen:
                        raise f.error(f"capacity.{key}", f"'{t}' appears in two partitions")
                    seen.add(t)
                parts.append((tensors, as_int(words, src, f.path(f"capacity.{key}"))))
            for t in keeps:
                if t not in seen:
                    raise f.error("capacity", f"kept tensor '{t}' has no capacity partition")
            partitions = tuple(parts)
        else:
            partitions = ((keeps, as_int(cap, src, f.path("capacity"))),)
    bw = Fields(f.get("bandwidth", {}), src, f.path("bandwidth"), ("read", "write", "shared"))
    return Storage(
        name=name, keeps=keeps, may_bypass=may_bypass, partitions=partitions,
        energy=_tensor_energy(f.get("energy"), src, f.path("energy"), ACTIONS),
        read_bw=bw.number("read", allow_none=True, minimum=1e-9),
        write_bw=bw.number("write", allow_none=True, minimum=1e-9),
        shared_bw=bw.number("shared", allow_none=True, minimum=1e-9),
        temporal_dims=f.names("temporal_dims", DIMS, DIMS),
        word_bits=f.integer("word_bits", word_bits, maximum=MAX_WORD_BITS), instances=instances,
        leakage=f.number("leakage", 0.0))


def _parse_fanout(data: dict, src: str, where: str, instances: int) -> Fanout:
    f = Fields(data, src, where, FANOUT_FIELDS, required=("name", "fanout"))
    size = Fields(f.get("fanout"), src, f.path("fanout"), ("X", "Y"), required=("X", "Y"))
    dims = Fields(f.get("spatial_dims", {"X": list(DIMS), "Y": list(DIMS)}), src,
                  f.path("spatial_dims"), ("X", "Y"))
    energy = f.get("energy", 0.0)
    if isinstance(energy, dict):
        ef = Fields(energy, src, f.path("energy"), TENSORS, required=TENSORS)
        energy = tuple((t, ef.number(t)) for t in TENSORS)
    else:
        energy = tuple((t, as_number(energy, src, f.path("energy"))) for t in TENSORS)
    reduction = f.get("reduction", True)
    if not isinstance(reduction, bool):
        raise f.error("reduction", f"expected true or false, got {reduction!r}")
    modes = ()
    if f.has("modes"):
        mf = Fields(f.get("modes"), src, f.path("modes"), TENSORS, required=TENSORS)
        modes = tuple((t, mf.names(t, tuple(NETWORK_MODES))) for t in TENSORS)
        for t, ms in modes:
            if not ms:
                raise mf.error(t, "offer at least one network mode")
        if f.has("multicast"):
            raise f.error("multicast", "a fan-out with network modes takes its multicast from the mode")
    return Fanout(name=f.string("name"), X=size.integer("X", maximum=MAX_FANOUT),
                  Y=size.integer("Y", maximum=MAX_FANOUT),
                  x_dims=dims.names("X", DIMS, DIMS), y_dims=dims.names("Y", DIMS, DIMS),
                  energy=energy, multicast=f.choice("multicast", MULTICAST, "exact"),
                  reduction=reduction, instances=instances, modes=modes,
                  port_words=f.number("port_words", allow_none=True, minimum=1e-9))


def parse_arch(data: Any, src: str) -> Arch:
    f = Fields(data, src, "", ("name", "clock_mhz", "word_bits", "mac", "levels", "description", "sparsity"),
               required=("name", "levels", "mac"))
    word_bits = f.integer("word_bits", 16, maximum=MAX_WORD_BITS)
    mac = Fields(f.get("mac"), src, "mac", ("energy",), required=("energy",))
    raw = f.get("levels")
    if not isinstance(raw, list) or not raw:
        raise f.error("levels", "expected a non-empty list of levels, outermost (DRAM) first")
    levels: list[Storage | Fanout] = []
    instances = 1
    for i, item in enumerate(raw):
        where = f"levels[{i}]"
        if isinstance(item, dict) and "fanout" in item:
            fan = _parse_fanout(item, src, where, instances)
            levels.append(fan)
            instances *= fan.size
            if instances > MAX_INT:
                raise SpecError(src, f"{where}.fanout", f"{instances:.3g} instances in all is over the limit "
                                f"{MAX_INT:.3g} (2^40)")
        else:
            levels.append(_parse_storage(item, src, where, word_bits, instances))
    names = [l.name for l in levels]
    for i, n in enumerate(names):
        if names.index(n) != i:
            raise SpecError(src, f"levels[{i}].name", f"duplicate level name '{n}'")
    if not isinstance(levels[0], Storage) or set(levels[0].keeps) != set(TENSORS) or levels[0].may_bypass:
        raise SpecError(src, "levels[0]", "the outermost level must be a storage level (DRAM) that "
                        "keeps Weights, Inputs and Outputs")
    if levels[0].bounded:
        raise SpecError(src, "levels[0].capacity", "the outermost level holds whole tensors; leave its capacity out")
    if isinstance(levels[-1], Fanout):
        pass  # MACs directly below a fan-out are fine: each MAC reads from the level above.
    return Arch(name=f.string("name"), levels=tuple(levels), mac_energy=mac.number("energy"),
                clock_mhz=f.number("clock_mhz", 200.0, minimum=1e-9), word_bits=word_bits, source=src,
                sparsity=_parse_sparsity(f.get("sparsity", {}), src, levels))


def _parse_sparsity(data: Any, src: str, levels) -> Sparsity:
    f = Fields(data, src, "sparsity", ("skip_zero_macs", "gate_zero_inputs", "compressed"))
    flags = {}
    for key in ("skip_zero_macs", "gate_zero_inputs"):
        value = f.get(key, False)
        if not isinstance(value, bool):
            raise f.error(key, f"expected true or false, got {value!r}")
        flags[key] = value
    names = {l.name: l for l in levels if isinstance(l, Storage)}
    comp = Fields(f.get("compressed", {}), src, "sparsity.compressed", list(names))
    compressed = []
    for level in comp.data:
        tf = Fields(comp.get(level), src, comp.path(level), ("Weights", "Inputs"))
        entries = []
        for t in tf.data:
            if t not in names[level].keeps:
                raise tf.error(t, f"level {level} does not keep {t}")
            entries.append((t, tf.number(t)))
        compressed.append((level, tuple(entries)))
    return Sparsity(flags["skip_zero_macs"], flags["gate_zero_inputs"], tuple(compressed))


def load_arch(name_or_path: str | Path) -> Arch:
    """Read an architecture file (a built-in name such as 'eyeriss_v1', or a path)."""
    path = resolve(str(name_or_path), "arch", "arch")
    return parse_arch(load_yaml(path), str(path))
