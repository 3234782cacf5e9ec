"""Architectures: a chain of storage levels from DRAM inward, with spatial fan-outs between them.

An architecture file lists `levels` outermost first. A storage level holds tiles of the
tensors it keeps (each instance its own copy); a fan-out level (`fanout: {X, Y}`) splits
the machine into X x Y copies of everything below it and carries the network's cost and
rules (which dimensions may be unrolled on each axis, multicast, spatial reduction).
The MACs sit below the innermost level; their count is the product of all fan-outs.

Energies are per word (one scalar of the level's word width) and per action: `read`
(a word sent to a child level or to the MACs), `write` (a word filled from the parent)
and `update` (a partial sum written back by a child), plus an optional `cycle_energy` for
the whole chip per cycle (clock network, static power). Bandwidths are words per cycle per
instance; the outermost level's is the off-chip condition a result states. See README
"Architecture files" for every field.
"""
from __future__ import annotations

import dataclasses
import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .problem import DIMS, PROJECTED, TENSORS
from .spec import MAX_INT, Fields, MapperError, SpecError, as_int, as_number, closest, load_yaml, resolve, short

ACTIONS = ("read", "write", "update")
MAX_FANOUT = 2 ** 20        # PEs along one axis; with MAX_DIM it keeps fan-out products in int64
MAX_WORD_BITS = 4096
MULTICAST = ("exact", "projection")
SKIP_CYCLES = ("always", "multi_channel", "never")
CAPACITY_UNITS = ("words", "nonzeros")

#: Network modes of a fan-out (Eyeriss v2's hierarchical mesh): which children can share
#: one parent read (multicast credit on the X and/or Y axis) and how many independent
#: streams deliver words (per parent instance), as a function of the fan-out's X and Y.
#: unicast: every child its own stream, no sharing (high bandwidth); grouped: the children
#: of one row (same Y, any X) share a stream; interleaved: the children of one column share
#: a stream; broadcast: one stream reaches all children (high reuse). Each stream has the
#: fan-out's `ports` per tensor, each carrying `port_words` words per cycle.
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
    capacity_unit: str = "words"   # or "nonzeros": compressed tensors count non-zero entries
    # Address limits of compressed (CSC) storage: (tensor, most columns per instance, the
    # dimension each column runs along); a tile has dense words / extent(along) columns.
    columns: tuple[tuple[str, int, str], ...] = ()

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
    # Axes along which partial sums may be reduced spatially (both, one, or none).
    reduction: tuple[str, ...] = ("X", "Y")
    instances: int = 1   # instances of the level above (parents)
    # Network modes offered per tensor (empty: no modes, `multicast` applies); per tensor,
    # the ports of each stream and the words per cycle one port delivers (absent: no limit).
    modes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    port_words: tuple[tuple[str, float], ...] = ()
    port_counts: tuple[tuple[str, int], ...] = ()

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

    def reduces(self, axis: str) -> bool:
        """Whether partial sums may be reduced across the children on `axis` (X or Y)."""
        return axis in self.reduction

    def streams(self, mode: str | None) -> int:
        """Independent streams per parent instance: set by the network mode (1 without modes)."""
        return 1 if mode is None else NETWORK_MODES[mode][2](self.X, self.Y)

    def limited(self, tensor: str) -> bool:
        return tensor in dict(self.port_words)

    def bandwidth(self, tensor: str, mode: str | None) -> float | None:
        """Words of `tensor` per cycle per parent instance: streams x ports x words per port
        (None: unlimited)."""
        words = dict(self.port_words).get(tensor)
        if words is None:
            return None
        return self.streams(mode) * dict(self.port_counts).get(tensor, 1) * words

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
    skip_cycles: str = "always"
    nonzero_capacity: tuple[str, ...] = ()    # levels whose capacity counts non-zero entries

    def factor(self, level: str, tensor: str, density: float) -> float:
        """Fraction of the dense words stored or moved for this tensor at this level."""
        overhead = dict(dict(self.compressed).get(level, ())).get(tensor)
        if overhead is None or density >= 1.0:
            return 1.0
        return min(1.0, density * (1.0 + overhead))

    def capacity_factor(self, level: str, tensor: str, density: float) -> float:
        """Fraction of the dense tile's size counted against the level's capacity: the
        stored words, or at a `capacity_unit: nonzeros` level one entry (a count, value
        pair) per non-zero of a compressed tensor."""
        compressed = tensor in dict(dict(self.compressed).get(level, ()))
        if level in self.nonzero_capacity and compressed:
            return min(1.0, density)
        return self.factor(level, tensor, density)

    def skips_cycles(self, channels_per_group: int) -> bool:
        """Whether zero MACs also save cycles for a layer with this many input channels per
        group (`skip_cycles: multi_channel`: not for depthwise layers, whose single input
        and output channel per PE leaves nothing to skip)."""
        if not self.skip_zero_macs or self.skip_cycles == "never":
            return False
        return self.skip_cycles == "always" or channels_per_group > 1


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
    cycle_energy: float = 0.0   # pJ per cycle for the whole chip (clock network, static power)
    energy_unit: str = "pJ"            # what one energy unit of this file is (outputs print it)
    energy_calibrated: bool = True     # False: the unit is an assumption; only ratios are meaningful

    @property
    def storages(self) -> tuple[Storage, ...]:
        return tuple(l for l in self.levels if isinstance(l, Storage))

    @property
    def fanouts(self) -> tuple[Fanout, ...]:
        return tuple(l for l in self.levels if isinstance(l, Fanout))

    @property
    def pes(self) -> int:
        """MACs per cycle at full use: the product of every fan-out (SIMD lanes included)."""
        return math.prod(f.size for f in self.fanouts)

    @property
    def unit_name(self) -> str:
        """What outputs call the units `pes` counts: "PEs", or "MAC lanes" when a fan-out
        below the innermost storage level (SIMD) gives a PE several MACs."""
        last = max(i for i, l in enumerate(self.levels) if isinstance(l, Storage))
        simd = any(isinstance(l, Fanout) for l in self.levels[last + 1:])
        return "MAC lanes" if simd else "PEs"

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
                "levels": [l.name for l in self.levels],
                "offchip_bandwidth": offchip_bandwidth(self), "cycle_energy": self.cycle_energy,
                "energy_unit": {"name": self.energy_unit, "calibrated": self.energy_calibrated}}


def offchip_bandwidth(arch: Arch) -> dict[str, float] | str:
    """The outermost level's bandwidth limits in words per cycle, or "unlimited": the
    condition a result ran under (Eyeriss v2's headline assumes no off-chip limit)."""
    top = arch.levels[0]
    limits = {k: v for k, v in (("read", top.read_bw), ("write", top.write_bw),
                                ("shared", top.shared_bw)) if v}
    return limits or "unlimited"


def with_offchip_bandwidth(arch: Arch, words_per_cycle: float | None, unit: str = "words") -> Arch:
    """The arch with its outermost level's bandwidth replaced: None = unlimited, a number =
    that many words (or, with unit="bytes", bytes of its word_bits-wide words) per cycle for
    reads and writes together (a `shared` bandwidth)."""
    if unit not in ("words", "bytes"):
        raise MapperError(f"off-chip bandwidth: unit must be words or bytes, got {unit!r}")
    if words_per_cycle is not None and not words_per_cycle > 0:
        raise MapperError(f"off-chip bandwidth: must be a positive number of {unit} per cycle, "
                          f"got {words_per_cycle!r}")
    if words_per_cycle is not None and unit == "bytes":
        words_per_cycle = words_per_cycle * 8 / arch.levels[0].word_bits
    top = dataclasses.replace(arch.levels[0], read_bw=None, write_bw=None,
                              shared_bw=None if words_per_cycle is None else float(words_per_cycle))
    return dataclasses.replace(arch, levels=(top,) + arch.levels[1:])


STORAGE_FIELDS = ("name", "capacity", "keeps", "may_bypass", "energy", "bandwidth",
                  "temporal_dims", "word_bits", "leakage", "capacity_unit", "columns", "notes")
#: Dimensions that are a whole axis of each tensor (a CSC column can run along one).
WHOLE_AXES = PROJECTED
FANOUT_FIELDS = ("name", "fanout", "spatial_dims", "energy", "multicast", "reduction", "modes",
                 "port_words", "ports", "notes")
AXES = ("X", "Y")


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
    name = f.name("name")
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
    columns = []
    cf = Fields(f.get("columns", {}), src, f.path("columns"), keeps)
    for t in cf.data:
        tf = Fields(cf.get(t), src, cf.path(t), ("max", "along"), required=("max", "along"))
        columns.append((t, tf.integer("max"), tf.choice("along", WHOLE_AXES[t])))
    bw = Fields(f.get("bandwidth", {}), src, f.path("bandwidth"), ("read", "write", "shared"))
    return Storage(
        name=name, keeps=keeps, may_bypass=may_bypass, partitions=partitions,
        energy=_tensor_energy(f.get("energy"), src, f.path("energy"), ACTIONS),
        read_bw=bw.number("read", allow_none=True, minimum=1e-9),
        write_bw=bw.number("write", allow_none=True, minimum=1e-9),
        shared_bw=bw.number("shared", allow_none=True, minimum=1e-9),
        temporal_dims=f.names("temporal_dims", DIMS, DIMS),
        word_bits=f.integer("word_bits", word_bits, maximum=MAX_WORD_BITS), instances=instances,
        leakage=f.number("leakage", 0.0), capacity_unit=f.choice("capacity_unit", CAPACITY_UNITS, "words"),
        columns=tuple(columns))


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
    if isinstance(reduction, bool):
        reduction = AXES if reduction else ()
    else:
        if isinstance(reduction, str):
            reduction = [reduction]
        if not isinstance(reduction, list) or any(a not in AXES for a in reduction) \
                or len(set(reduction)) != len(reduction):
            raise f.error("reduction", f"expected true, false or a list of distinct axes (X, Y), got {short(reduction)}")
        reduction = tuple(a for a in AXES if a in reduction)
    modes = ()
    if f.has("modes"):
        mf = Fields(f.get("modes"), src, f.path("modes"), TENSORS, required=TENSORS)
        modes = tuple((t, mf.names(t, tuple(NETWORK_MODES))) for t in TENSORS)
        for t, ms in modes:
            if not ms:
                raise mf.error(t, "offer at least one network mode")
        if f.has("multicast"):
            raise f.error("multicast", "a fan-out with network modes takes its multicast from the mode")
    if f.has("ports") and not f.has("port_words"):
        raise f.error("ports", "ports need port_words (the words per cycle of one port)")
    port_words = _per_tensor(f, "port_words", as_number, 1e-9)
    port_counts = _per_tensor(f, "ports", as_int, 1)
    unpriced = [t for t, _ in port_counts if t not in dict(port_words)]
    if unpriced:      # such ports would be silently unlimited
        raise f.error("ports", f"ports of {', '.join(unpriced)} need port_words for {', '.join(unpriced)} "
                      "(the words per cycle of one port)")
    return Fanout(name=f.name("name"), X=size.integer("X", maximum=MAX_FANOUT),
                  Y=size.integer("Y", maximum=MAX_FANOUT),
                  x_dims=dims.names("X", DIMS, DIMS), y_dims=dims.names("Y", DIMS, DIMS),
                  energy=energy, multicast=f.choice("multicast", MULTICAST, "exact"),
                  reduction=reduction, instances=instances, modes=modes,
                  port_words=port_words, port_counts=port_counts)


def _per_tensor(f: Fields, key: str, parse, minimum) -> tuple[tuple[str, Any], ...]:
    """A fan-out value given once for all tensors or per tensor ({Inputs: 3, ...}; a tensor
    left out or null has no value)."""
    value = f.get(key)
    if value is None:
        return ()
    if isinstance(value, dict):
        tf = Fields(value, f.src, f.path(key), TENSORS)
        return tuple((t, parse(tf.get(t), f.src, tf.path(t), minimum)) for t in TENSORS
                     if tf.get(t) is not None)
    return tuple((t, parse(value, f.src, f.path(key), minimum)) for t in TENSORS)


def parse_arch(data: Any, src: str) -> Arch:
    f = Fields(data, src, "", ("name", "clock_mhz", "word_bits", "mac", "levels", "description", "sparsity",
                               "cycle_energy", "energy_unit"),
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
    if levels[0].columns:
        raise SpecError(src, "levels[0].columns", "the outermost level holds whole tensors; leave its columns out")
    if levels[0].bounded:
        raise SpecError(src, "levels[0].capacity", "the outermost level holds whole tensors; leave its capacity out")
    if levels[0].capacity_unit != "words":
        raise SpecError(src, "levels[0].capacity_unit", "the outermost level has no capacity; leave its capacity_unit out")
    if isinstance(levels[-1], Fanout):
        pass  # MACs directly below a fan-out are fine: each MAC reads from the level above.
    return Arch(name=f.name("name"), levels=tuple(levels), mac_energy=mac.number("energy"),
                clock_mhz=f.number("clock_mhz", 200.0, minimum=1e-9), word_bits=word_bits, source=src,
                sparsity=_parse_sparsity(f.get("sparsity", {}), src, levels),
                cycle_energy=f.number("cycle_energy", 0.0),
                **_parse_energy_unit(f.get("energy_unit"), src))


def _parse_energy_unit(data: Any, src: str) -> dict[str, Any]:
    """`energy_unit: pJ` or `{name: pJ, calibrated: false}` (default: pJ, calibrated)."""
    if data is None:
        return {}
    if isinstance(data, str):
        data = {"name": data}
    f = Fields(data, src, "energy_unit", ("name", "calibrated"), required=("name",))
    calibrated = f.get("calibrated", True)
    if not isinstance(calibrated, bool):
        raise f.error("calibrated", f"expected true or false, got {calibrated!r}")
    name = f.name("name").strip()
    if not name:
        raise f.error("name", "expected a unit name such as pJ")
    if len(name) > 32 or not name.isprintable():      # it is printed after every energy
        raise f.error("name", "expected a short unit name such as pJ (at most 32 printable characters)")
    return {"energy_unit": name, "energy_calibrated": calibrated}


def _parse_sparsity(data: Any, src: str, levels) -> Sparsity:
    f = Fields(data, src, "sparsity", ("skip_zero_macs", "gate_zero_inputs", "compressed", "skip_cycles"))
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
    skip_cycles = f.choice("skip_cycles", SKIP_CYCLES, "always")
    if f.has("skip_cycles") and not flags["skip_zero_macs"]:
        raise f.error("skip_cycles", "needs skip_zero_macs: true (only skipped MACs can save cycles)")
    # (a nonzeros level that stores nothing compressed counts dense words: one per entry)
    nonzero = tuple(n for n, l in names.items() if l.capacity_unit == "nonzeros")
    return Sparsity(flags["skip_zero_macs"], flags["gate_zero_inputs"], tuple(compressed), skip_cycles, nonzero)


def load_arch(name_or_path: str | Path) -> Arch:
    """Read an architecture file (a built-in name such as 'eyeriss_v1', or a path)."""
    path = resolve(str(name_or_path), "arch", "arch")
    return parse_arch(load_yaml(path), str(path))


@contextmanager
def naming_source(arch: Arch):
    """Around building a layer's mapspace on this architecture (search, `mapper space`): its
    errors (a mapspace too large for the levels, no mapping that fits the buffers) carry no
    file name, so the arch file's is added (at the end: scripts match the messages' start).
    Not around option checks, which are not the file's. SpecErrors already name theirs."""
    try:
        yield
    except SpecError:
        raise
    except MapperError as exc:
        if not arch.source or arch.source in str(exc):
            raise
        raise MapperError(f"{exc} (arch file {arch.source}: levels)") from None
