"""Mappings as data: loop factors and orders per level, spatial unrolling, kept tensors.

A mapping is a list of loops, outermost first. Each loop belongs to a level of the
architecture: a temporal loop to a storage level (it iterates over that level's tile), a
spatial loop to a fan-out, on its X or Y axis. Every dimension's factors multiply to the
layer's size (perfect factorization), or, with remainders (imperfect factorization), the
nest covers the dimension with nominal tiles clipped at its end: a loop's `factor` is its
number of steps, the tile it steps over is the product of the factors inside it on the same
dimension (nominal), and coordinates at or beyond the layer's size are not iterated, so only
the last tile of each loop is partial (55 output rows as P 4 x P 14: tiles 0-13, 14-27,
28-41, 42-54). This is Timeloop's Ruby residual form: in the final pass each loop runs its
residual number of steps (`DimPlan`). `keep` names the tensors each storage level holds;
a tensor it does not keep bypasses it.

The tile a storage level holds is everything the loops at that level and below touch;
`tile_words` gives its size, the input halo included: a tile spanning p output rows and r
filter rows reads (p-1)*stride + (r-1)*dilation + 1 input rows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

from .arch import Arch, Fanout, Storage
from .problem import DIMS, OUTPUT_DIMS, TENSORS, Layer, label, tensor_axes  # noqa: F401 (also imported from here)
from .spec import Fields, MapperError, SpecError, as_int, closest

def footprint(layer: Layer, tensor: str, extent: dict[str, int]) -> int:
    """Words of `tensor` touched by a block of iterations with these per-dimension extents."""
    size = 1
    for axis in tensor_axes(layer, tensor):
        size *= sum(coef * (extent[d] - 1) for d, coef in axis) + 1
    return size


class MappingError(SpecError):
    """A mapping that is not valid for this layer and architecture."""


@dataclass(frozen=True)
class DimPlan:
    """How one dimension's loops cover it, outermost first: each loop's number of steps, the
    nominal tile it steps over, and in the final pass (every outer loop on this dimension at
    its last step) its residual steps and the size of its last tile. A perfect dimension's
    residuals equal its factors and its last tiles are nominal."""

    dim: str
    size: int
    loops: tuple[int, ...]        # indices into Mapping.loops
    factors: tuple[int, ...]
    steps: tuple[int, ...]        # nominal tile of each loop = product of the factors inside it
    residual: tuple[int, ...]     # steps in the final pass (Timeloop's residual)
    last: tuple[int, ...]         # size of the final pass's last tile

    @property
    def perfect(self) -> bool:
        return math.prod(self.factors) == self.size


def dim_plan(mapping: Mapping, layer: Layer, dim: str) -> DimPlan:
    """The DimPlan of `dim` (assumes the factors cover it, see problems_of)."""
    idx = tuple(k for k, l in enumerate(mapping.loops) if l.dim == dim)
    factors = tuple(mapping.loops[k].factor for k in idx)
    steps = tuple(math.prod(factors[j + 1:]) for j in range(len(factors)))
    residual, last = [], []
    remaining = layer.dims[dim]
    for f, s in zip(factors, steps):
        n = min(f, -(-remaining // s))
        residual.append(n)
        remaining = remaining - (n - 1) * s
        last.append(remaining)
    return DimPlan(dim, layer.dims[dim], idx, factors, steps, tuple(residual), tuple(last))


def require_perfect(mapping: Mapping, layer: Layer, what: str) -> None:
    """Refuse a mapping with remainders where `what` counts perfect nests only (it would
    silently miscount the partial tiles)."""
    require_perfect_products(mapping.dim_products(), layer, what)


def require_perfect_products(products: dict[str, int], layer: Layer, what: str) -> None:
    """`require_perfect` on each dimension's product of factors."""
    off = [f"{d} {p} for {layer.dims[d]}" for d, p in products.items() if p != layer.dims[d]]
    if off:
        raise MapperError(f"{what} handles perfect factorizations only, but this mapping has remainders "
                          f"(factors multiply to {', '.join(off)}); evaluate it with mapper.model.evaluate "
                          f"(mapper evaluate)")


@dataclass(frozen=True)
class Loop:
    level: str
    dim: str
    factor: int
    spatial: str | None = None     # None for temporal loops, "X" or "Y" at a fan-out

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "dim": self.dim, "factor": self.factor, "spatial": self.spatial}


@dataclass(frozen=True)
class Mapping:
    loops: tuple[Loop, ...]                                   # outermost first
    keep: tuple[tuple[str, tuple[str, ...]], ...]             # storage level -> kept tensors
    # fan-out -> tensor -> network mode, for fan-outs that offer modes (Eyeriss v2's HM-NoC)
    network: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()

    def kept(self, level: str) -> tuple[str, ...]:
        return dict(self.keep)[level]

    def mode(self, fanout: str, tensor: str) -> str | None:
        return dict(dict(self.network).get(fanout, ())).get(tensor)

    def is_perfect(self, layer: Layer) -> bool:
        """Whether every dimension's factors multiply to the layer's size (no remainders)."""
        return self.dim_products() == layer.dims

    def dim_products(self) -> dict[str, int]:
        """Each dimension's product of factors over all loops (a valid mapping's equals the layer's size)."""
        product = {d: 1 for d in DIMS}
        for l in self.loops:
            product[l.dim] *= l.factor
        return product

    def to_dict(self) -> dict[str, Any]:
        out = {"loops": [l.to_dict() for l in self.loops],
               "keep": {level: list(ts) for level, ts in self.keep}}
        if self.network:
            out["network"] = {fan: dict(modes) for fan, modes in self.network}
        return out

    def key(self) -> tuple:
        """Identity of the mapping, ignoring factor-1 loops."""
        return (tuple(l for l in self.loops if l.factor > 1), self.keep, self.network)


def normalize(loops: Iterable[Loop], arch: Arch, keep: dict[str, Iterable[str]] | None = None,
              network: dict[str, dict[str, str]] | None = None) -> Mapping:
    """Canonical form: levels in arch order (loop order within a level kept), factor-1 loops
    dropped, X before Y at fan-outs, every storage level's kept tensors listed, and every
    fan-out with network modes given a mode per tensor (by default the last one the arch
    lists, its highest-reuse mode)."""
    index = {l.name: i for i, l in enumerate(arch.levels)}
    loops = [l for l in loops if l.factor > 1]
    loops.sort(key=lambda l: (index[l.level], {None: 0, "X": 0, "Y": 1}[l.spatial]))
    keep = dict(keep or {})
    full = tuple((s.name, tuple(t for t in TENSORS if t in keep.get(s.name, s.keeps)))
                 for s in arch.storages)
    network = network or {}
    modes = tuple((f.name, tuple((t, network.get(f.name, {}).get(t, f.modes_of(t)[-1])) for t in TENSORS))
                  for f in arch.fanouts if f.modes)
    return Mapping(loops=tuple(loops), keep=full, network=modes)


# ---------------------------------------------------------------------------------------
# Reading mappings from documents and checking them

def parse_mapping(data: Any, arch: Arch, src: str) -> Mapping:
    """A mapping from its JSON/YAML form: {loops: [...], keep: {...}} or a result document."""
    if isinstance(data, dict) and "mapping" in data and "loops" not in data:
        data = data["mapping"]
        where = "mapping"
    else:
        where = ""
    f = Fields(data, src, where, ("loops", "keep", "network"), required=("loops",))
    raw = f.get("loops")
    if not isinstance(raw, list):
        raise f.error("loops", "expected a list of loops, outermost first")
    names = [l.name for l in arch.levels]
    loops = []
    for i, item in enumerate(raw):
        lf = Fields(item, src, f.path(f"loops[{i}]"), ("level", "dim", "factor", "spatial"),
                    required=("level", "dim", "factor"))
        level = lf.string("level")
        if level not in names:
            raise lf.error("level", f"no level '{level}' in arch {arch.name}{closest(level, names)}; "
                           f"levels: {', '.join(names)}")
        dim = lf.choice("dim", DIMS)
        spatial = lf.get("spatial")
        if spatial not in (None, "X", "Y"):
            raise lf.error("spatial", f"expected null, X or Y, got {spatial!r}")
        is_fanout = isinstance(arch.level(level), Fanout)
        if is_fanout and spatial is None:
            raise lf.error("spatial", f"level '{level}' is a fan-out: its loops are spatial (X or Y)")
        if not is_fanout and spatial is not None:
            raise lf.error("spatial", f"level '{level}' is a storage level: its loops are temporal (spatial: null)")
        loops.append(Loop(level, dim, as_int(lf.get("factor"), src, lf.path("factor")), spatial))
    keep_raw = f.get("keep", {})
    kf = Fields(keep_raw, src, f.path("keep"), [s.name for s in arch.storages])
    keep = {level: kf.names(level, TENSORS) for level in keep_raw}
    net_raw = f.get("network", {})
    with_modes = [fan.name for fan in arch.fanouts if fan.modes]
    nf = Fields(net_raw, src, f.path("network"), with_modes)
    network = {}
    for fan in net_raw:
        tf = Fields(nf.get(fan), src, nf.path(fan), TENSORS)
        network[fan] = {t: tf.string(t) for t in tf.data}
    _check_order(loops, arch, src, f)
    seen = set()
    for i, l in enumerate(loops):
        k = (l.level, l.dim, l.spatial)
        if k in seen:
            raise SpecError(src, f.path(f"loops[{i}]"), f"a second {l.dim} loop at level '{l.level}'"
                            + (f" axis {l.spatial}" if l.spatial else "") + "; merge their factors")
        seen.add(k)
    return normalize(loops, arch, keep, network)


def _check_order(loops: list[Loop], arch: Arch, src: str, f: Fields) -> None:
    """Loops are listed outermost first, so their levels come in the arch's order (outermost
    level first). A loop at an outer level listed after one at an inner level has no reading
    in that order (a nest listed innermost first would also have each level's loops
    reversed): an error, never a silent re-sort."""
    index = {l.name: i for i, l in enumerate(arch.levels)}
    for i in range(1, len(loops)):
        before, loop = loops[i - 1], loops[i]
        if index[loop.level] < index[before.level]:
            raise SpecError(src, f.path(f"loops[{i}]"),
                            f"level '{loop.level}' is listed after level '{before.level}' (loops[{i - 1}]), "
                            f"which is inside it; loops are listed outermost first, levels in the arch's "
                            f"order ({', '.join(index)})")


def check(mapping: Mapping, layer: Layer, arch: Arch, src: str = "mapping") -> None:
    """Raise MappingError with the first reason the mapping is invalid for this layer and arch."""
    problems = problems_of(mapping, layer, arch)
    if problems:
        field, message = problems[0]
        raise MappingError(src, field, message)


def problems_of(mapping: Mapping, layer: Layer, arch: Arch) -> list[tuple[str, str]]:
    """Every reason the mapping is invalid, as (field, message) pairs; empty when valid."""
    out: list[tuple[str, str]] = []
    dims = layer.dims
    product = mapping.dim_products()
    for l in mapping.loops:
        if l.factor < 1:
            out.append((f"level {l.level}", f"dim {l.dim} has factor {l.factor}; factors are numbers of "
                        f"steps, at least 1"))
    if out:
        return out
    for d in DIMS:
        if product[d] < dims[d]:
            out.append((f"dim {d}", f"factors multiply to {product[d]} but layer {layer.name} has "
                        f"{d} = {dims[d]}: the tiles do not cover the dimension"))
        elif product[d] > dims[d]:
            # Imperfect: nominal tiles clipped at the end. Only the outermost loop's last step
            # can lie wholly past the end (inner loops step inside its tiles); then some tile
            # would be iterated empty or, read as wrapping, cover rows twice.
            first = next(l for l in mapping.loops if l.dim == d)
            step = product[d] // first.factor
            if (first.factor - 1) * step >= dims[d]:
                need = -(-dims[d] // step)
                out.append((f"level {first.level}", f"dim {d} factor {first.factor} steps over tiles of "
                            f"{step}, so its last step starts at {(first.factor - 1) * step}, past "
                            f"{d} = {dims[d]}: the tiles cover the dimension more than once "
                            f"(use factor {need})"))
    for level in arch.levels:
        mine = [l for l in mapping.loops if l.level == level.name]
        if isinstance(level, Storage):
            for l in mine:
                if l.dim not in level.temporal_dims:
                    allowed = ", ".join(level.temporal_dims) or "none"
                    out.append((f"level {level.name}", f"dim {l.dim} may not have a temporal factor here "
                                f"(factor {l.factor}; allowed dims: {allowed})"))
            kept = mapping.kept(level.name)
            for t in kept:
                if t not in level.keeps:
                    out.append((f"level {level.name}", f"cannot keep {t} (it keeps only {', '.join(level.keeps)})"))
            for t in level.keeps:
                if t not in kept and t not in level.may_bypass:
                    out.append((f"level {level.name}", f"must keep {t} (it may bypass only "
                                f"{', '.join(level.may_bypass) or 'nothing'})"))
        else:
            for axis, size, allowed in (("X", level.X, level.x_dims), ("Y", level.Y, level.y_dims)):
                on = [l for l in mine if l.spatial == axis]
                used = math.prod(l.factor for l in on)
                if used > size:
                    parts = " x ".join(f"{l.dim} {l.factor}" for l in on)
                    out.append((f"level {level.name}", f"{axis} factors multiply to {used} ({parts}) but "
                                f"the fan-out has {size} on {axis} (over by {used - size})"))
                for l in on:
                    if l.dim not in allowed:
                        out.append((f"level {level.name}", f"dim {l.dim} may not be unrolled on {axis} "
                                    f"(allowed: {', '.join(allowed) or 'none'})"))
            for t in TENSORS:
                mode = mapping.mode(level.name, t)
                if level.modes and mode not in level.modes_of(t):
                    out.append((f"level {level.name}", f"network mode '{mode}' for {t} is not offered "
                                f"(modes: {', '.join(level.modes_of(t))})"))
            for l in mine:
                if l.spatial and not level.reduces(l.spatial) and l.dim not in OUTPUT_DIMS:
                    out.append((f"level {level.name}", f"dim {l.dim} unrolled on {l.spatial} would need spatial "
                                f"reduction of Outputs along {l.spatial}, which this network does not support "
                                f"(reduction: {list(level.reduction)})"))
    if out:
        return out
    for level, tensor, words, capacity, group, unit in overflows(mapping, layer, arch):
        out.append((f"level {level}", f"tiles need {words} {unit} ({group}) but the capacity is "
                    f"{capacity} (over by {words - capacity})"))
    return out


def tile_extents(mapping: Mapping, arch: Arch, level: str, layer: Layer | None = None) -> dict[str, int]:
    """Per-dimension extent of the largest tile held at `level`: the product of factors at and
    below it (the nominal tile), clipped to the layer's size when the mapping has remainders
    and `layer` is given. Capacity is checked on this largest tile."""
    start = arch.index(level)
    index = {l.name: i for i, l in enumerate(arch.levels)}
    ext = {d: 1 for d in DIMS}
    for l in mapping.loops:
        if index[l.level] >= start:
            ext[l.dim] *= l.factor
    if layer is not None:
        ext = {d: min(e, layer.dims[d]) for d, e in ext.items()}
    return ext


def tile_words(mapping: Mapping, layer: Layer, arch: Arch, level: str, tensor: str) -> int:
    """Words the tile occupies: compressed size where the arch stores this tensor compressed
    (sparse data takes min(1, density x (1 + metadata overhead)) of the dense words)."""
    dense = footprint(layer, tensor, tile_extents(mapping, arch, level, layer))
    d = layer.densities()
    factor = arch.sparsity.capacity_factor(level, tensor,
                                           {"Weights": d["weights"], "Inputs": d["inputs"]}.get(tensor, 1.0))
    return dense if factor == 1.0 else math.ceil(dense * factor - 1e-9)


def overflows(mapping: Mapping, layer: Layer, arch: Arch):
    """(level, tensor, amount, capacity, description, unit) for every capacity partition
    over its size (words) and every tile with more columns than the level's address
    storage holds (columns)."""
    for storage in arch.storages[1:]:
        kept = mapping.kept(storage.name)
        for t, most, along in storage.columns:
            if t in kept:
                ext = tile_extents(mapping, arch, storage.name, layer)
                n = footprint(layer, t, ext) // ext[along]
                if n > most:
                    yield storage.name, t, n, most, f"{t} columns along {along}", "columns"
        for tensors, capacity in storage.partitions:
            sizes = {t: tile_words(mapping, layer, arch, storage.name, t) for t in tensors if t in kept}
            words = sum(sizes.values())
            if words > capacity:
                group = " + ".join(f"{t} {w}" for t, w in sizes.items())
                yield storage.name, "+".join(sizes), words, capacity, group, "words"


# ---------------------------------------------------------------------------------------
# Printing

def loop_nest_text(mapping: Mapping, layer: Layer, arch: Arch) -> str:
    """The mapping as an indented loop nest, outermost first, with level boundaries and tiles."""
    lines = []
    depth = 0
    plans = {d: dim_plan(mapping, layer, d) for d in DIMS}
    where = {k: (plans[l.dim], plans[l.dim].loops.index(k)) for k, l in enumerate(mapping.loops)}
    for level in arch.levels:
        mine = [l for l in mapping.loops if l.level == level.name]
        if isinstance(level, Storage):
            kept = mapping.kept(level.name)
            tiles = ", ".join(f"{label(layer, t)} {tile_words(mapping, layer, arch, level.name, t):,} words" for t in kept)
            lines.append(f"{'  ' * depth}{level.name} [{tiles or 'bypassed'}]")
        else:
            lines.append(f"{'  ' * depth}{level.name} (fan-out {level.X} x {level.Y})")
        for l in mine:
            tag = f"  (spatial {l.spatial})" if l.spatial else ""
            plan, j = where[mapping.loops.index(l)]
            if plan.perfect:
                lines.append(f"{'  ' * depth}| for {label(layer, l.dim)} in [0:{l.factor}){tag}")
            else:
                # the range this loop covers, its step (nominal tile), and the final pass
                span = plan.size if j == 0 else plan.factors[j] * plan.steps[j]
                if j == 0:
                    final = f"last {plan.last[j]}"
                else:
                    final = f"{plan.residual[j]} in the last pass" + \
                        (f", the last of them {plan.last[j]}" if plan.last[j] != plan.steps[j] else "")
                lines.append(f"{'  ' * depth}| for {label(layer, l.dim)} in [0:{span}) step {plan.steps[j]} "
                             f"({l.factor} steps, {final}){tag}")
            depth += 1
    lines.append(f"{'  ' * depth}  << MAC >>")
    return "\n".join(lines)
