"""A lower bound on the cost of every mapping of a layer, from the layer and arch alone.

Under the counting rules of `mapper.model`, every mapping
  * pays for all its MACs (scaled as the chip scales zero MACs);
  * reads every weight and input word some MAC uses from the outermost level at least
    once, and writes every output back there at least once (scaled by the smallest
    density factor that can apply to that traffic);
  * feeds every MAC from the innermost level holding each tensor, one access shared by
    at most all the PEs below that level, and reads back a partial sum there for every
    update but each instance's first touch of an output;
  * needs at least MACs / usable PEs compute cycles (usable_pes), and at least the
    cycles the outermost level's bandwidth needs for that compulsory traffic;
  * pays leakage and the per-cycle energy for at least those cycles.
All other terms are non-negative. The bound is also taken per class of spatial mappings
(`_signatures`): in a class, a word is needed by every instance of a buffer that differs
from another only along dims the tensor does not depend on (each is filled, and each
crossing of the fan-outs above counted), the partial-sum spread is fixed, and compute
cycles are MACs / the class' MAC units. Within a class, the operand SPads' capacity bounds
how long a partial sum can stay in the innermost level holding Outputs, unless the weights
are refilled for every step above them (`_Residency`: two cases, each with its own energy
and cycles). Energy, cycles and EDP take the least over classes and cases. When CP-SAT has
no bound of its own (random search, a solve cut off early), this one keeps the reported gap
meaningful. Tested against exhaustive optima, whole small spaces and sampled mappings
(tests/test_search.py, tests/test_bound.py).

The imperfect bound (`factorization="imperfect"`: remainder mappings too, counted as
`mapper.model._Remainders` counts them: each loop's last tile clipped, idle PEs doing
nothing) keeps the arguments that hold for every tile, clipped or not, and weakens the rest:
  * MACs, compulsory traffic, network crossings, fills (once per word) and the levels
    that must keep a tensor: unchanged, since the clipped tiles still cover every word
    and MAC once, and per-instance bandwidth is averaged over the active instances
    (at most the fan-out's), so total / all instances still bounds it;
  * sharing at the innermost level and compute cycles: a spatial factor may be any
    integer up to the dim (not only a divisor), and a remainder pass only has fewer
    children in a group and fewer active units (`_sharing` with integer factors); compute
    cycles are the temporal steps that do work, at least prod_d ceil(d / the product of
    d's spatial factors), least over integer factors that fit (`fewest_steps`: at least
    MACs / `usable_pes`, and at most the perfect compute bound);
  * partial sums: an output need not be spread over the whole reduction factor, so the
    spread becomes a continuous variable between 1 and its most (`_partial_sums_imperfect`);
  * no classes: with a dim's spatial loops on several axes or fan-outs, the instances
    along it that do work are fewer than the product of the factors (5 as 3 x 2: 5 of
    6), so the per-class fill, spread and MAC-unit arguments (products of factors) do not
    hold as stated. The imperfect bound is one (energy, cycles) pair, and its EDP the
    product of the two least (weaker than the perfect bound's least product over classes).
"""
from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from ..arch import Arch, Fanout, Storage
from ..batch import objective_of
from ..model import Sparse, bandwidth_cycles, distinct_offsets
from ..problem import DIMS, OUTPUT_DIMS, REDUCTION_DIMS, RELEVANT, SLIDING_PAIRS, TENSORS, Layer, tensor_axes


#: Per tensor, the dims it does not depend on (every value of one uses every word).
IRRELEVANT = {t: frozenset(d for d in DIMS if d not in RELEVANT[t]) for t in TENSORS}


def used_words(layer: Layer, tensor: str) -> int:
    """Distinct words of `tensor` that some MAC touches (strided inputs may skip rows)."""
    dims = layer.dims
    return math.prod(distinct_offsets(tuple((dims[d], c) for d, c in axis))
                     for axis in tensor_axes(layer, tensor))


def _axis_dims(fan: Fanout, axis: str) -> tuple[str, ...]:
    """Dims a mapping may unroll on one axis of a fan-out (no reduction dim where the axis
    does not reduce partial sums)."""
    allowed = fan.x_dims if axis == "X" else fan.y_dims
    return tuple(d for d in allowed if fan.reduces(axis) or d in OUTPUT_DIMS)


def _reach(size: int, dims: dict[str, int], names, imperfect: bool = False) -> set[int]:
    """Every product of one divisor of each named dim that is at most `size`: what an axis
    of that size can hold of those dims (factors divide the loop bounds). `imperfect`: one
    factor from 1 to the dim's size each, divisor or not (a remainder loop's factor need not
    divide, but is never above the dim: the outermost loop of a dim starts its last step
    inside it, mapping.problems_of, so every loop of d has at most d steps)."""
    reach = {1}
    for d in names:
        factors = [k for k in range(1, min(dims[d], size) + 1) if imperfect or dims[d] % k == 0]
        reach = {r * k for r in reach for k in factors if r * k <= size}
    return reach


def _best_product(size: int, dims: dict[str, int], names, imperfect: bool = False) -> int:
    """The most an axis of that size can hold of the named dims (see _reach)."""
    return max(_reach(size, dims, names, imperfect))


def _replications(layer: Layer, fans: list[Fanout]) -> list[tuple[int, ...]]:
    """The possible spatial reduction factors (C, R, S unrolled on reducing axes) of each of
    `fans`, jointly at most C x R x S: each factor is how many children hold partial sums
    of one output."""
    dims = layer.dims
    most = dims["C"] * dims["R"] * dims["S"]
    options = []
    for fan in fans:
        per = {1}
        for axis, size in (("X", fan.X), ("Y", fan.Y)):
            if fan.reduces(axis):
                names = [d for d in _axis_dims(fan, axis) if d in REDUCTION_DIMS]
                per = {a * b for a in per for b in _reach(size, dims, names) if a * b <= most}
        options.append(sorted(per))
    return [c for c in itertools.product(*options) if most % math.prod(c) == 0]


def usable_pes(layer: Layer, arch: Arch, imperfect: bool = False) -> int:
    """MAC units a mapping can use at most: the largest product of fan-out axis factors
    with every factor a divisor that fits its axis and each dim's factors over all axes
    dividing the dim (a SIMD fan-out over M gives a depthwise layer nothing; a 3-wide axis
    holds at most 2 of power-of-two dims). Searched jointly over the axes; if that takes
    too long (huge arrays), the product of each axis' own best is the (weaker) answer.

    `imperfect` (remainder mappings too): the MAC units active in one step, at most. A dim's
    spatial loops may have any factors up to the dim that fit their axes, and their product
    may pass the dim (d = 5 as 3 x 2), but the index tuples of d's spatial loops that do
    work in one step have distinct offsets inside d (mixed radix), so at most
    min(d, product of d's spatial factors) of them: the largest product over the dims of
    that is searched jointly (`_joint_cover`). Compute cycles count the temporal steps that
    do work (model._Remainders.valid_count), each at most that many MACs, so
    MACs / this <= compute cycles for every mapping, a remainder pass's idle PEs included."""
    axes = [(size, _axis_dims(fan, axis)) for fan in arch.fanouts
            for axis, size in (("X", fan.X), ("Y", fan.Y)) if size > 1]
    alone = math.prod(_best_product(size, layer.dims, names, imperfect) for size, names in axes)
    if any(size > 64 for size, _ in axes):      # each axis' choices alone would be many
        return alone
    try:
        if imperfect:
            return _joint_cover(layer.dims, tuple(axes), alone)
        return _joint_best(layer.dims, tuple(axes), alone)
    except _TooLong:
        return alone


class _TooLong(Exception):
    pass


def _joint_best(dims: dict[str, int], axes: tuple, ceiling: int, limit: int = 20_000) -> int:
    """Depth-first search of the axes' factor choices (see usable_pes), memoized on what is
    left of each dim; stops early at `ceiling` (the per-axis bound: nothing is better) and
    raises _TooLong after `limit` nodes."""
    names = sorted({d for _, ds in axes for d in ds})

    def choices(size, allowed, left):
        out = [(1, left)]
        for d in allowed:
            i = names.index(d)
            out = [(p * k, rest[:i] + (rest[i] // k,) + rest[i + 1:]) for p, rest in out
                   for k in range(1, min(rest[i], size // p) + 1) if rest[i] % k == 0]
        return {rest for _, rest in out}

    # the units are the product of the factors taken: each dim over what is left of it
    return _axis_search(axes, tuple(dims[d] for d in names), choices,
                        lambda left: math.prod(dims[d] // r for d, r in zip(names, left)), ceiling, limit)


def _joint_cover(dims: dict[str, int], axes: tuple, ceiling: int, limit: int = 20_000,
                 objective=math.prod, minimize: bool = False) -> int:
    """The imperfect usable_pes: the most of prod_d min(d, product of d's factors) over
    integer factors from 1 to d per (axis, allowed dim), each axis' product at most its
    size. Depth-first over the axes, memoized on each dim's coverage so far (capped at the
    dim: more is idle); stops early at `ceiling` (the per-axis bound), raises _TooLong
    after `limit` nodes. With `objective` (of the final coverages, per dim in sorted
    order) and `minimize`, the least of that instead (fewest_steps; `ceiling` is then a
    value nothing goes below, 0 for none)."""
    names = sorted({d for _, ds in axes for d in ds})

    def choices(size, allowed, cover):
        out = [(1, cover)]
        for d in allowed:
            i = names.index(d)
            n = dims[d]
            out = [(p * k, c[:i] + (min(n, c[i] * k),) + c[i + 1:]) for p, c in out
                   for k in range(1, min(n, size // p) + 1)
                   if k == 1 or c[i] * (k - 1) < n]         # a factor past full coverage adds nothing
        return {c for _, c in out}

    return _axis_search(axes, tuple(1 for _ in names), choices, objective, ceiling, limit, minimize)


def _axis_search(axes: tuple, start: tuple, choices, objective, ceiling: int, limit: int,
                 minimize: bool = False) -> int:
    """Depth-first over the axes (size, allowed dims) from `start`: `choices(size, allowed,
    state)` gives the states one axis' factors can lead to, `objective(state)` the value
    once every axis has chosen; the most (or least) of it. Memoized on (axis, state); stops
    early at the first axis once `ceiling` is reached (nothing is better), raises _TooLong
    after `limit` nodes."""
    visited = [0]
    memo: dict[tuple, int] = {}
    pick = min if minimize else max

    def best(a: int, state: tuple) -> int:
        if a == len(axes):
            return objective(state)
        key = (a, state)
        if key not in memo:
            visited[0] += 1
            if visited[0] > limit:
                raise _TooLong
            size, allowed = axes[a]
            top = None
            for nxt in choices(size, allowed, state):
                v = best(a + 1, nxt)
                top = v if top is None else pick(top, v)
                if a == 0 and (top <= ceiling if minimize else top >= ceiling):
                    break
            memo[key] = top
        return memo[key]

    return best(0, start)


def fewest_steps(layer: Layer, arch: Arch) -> int:
    """The fewest temporal steps that do work over remainder mappings too (compute cycles
    are these times the sparse MAC-cycle factor). Per dim d, every index of d is the offset
    of a temporal tuple plus that of a spatial one, and a full tuple inside d has its
    temporal part inside d too, so d <= (temporal tuples inside d) x (d's spatial
    factors' product): d takes at least ceil(d / that product) steps, and the steps are the
    product over the dims (model._Remainders.valid_count). The least over integer factors that fit their axes is searched
    jointly (`_joint_cover`'s nodes); if that takes too long, MACs / usable_pes.
    Perfect factors give MACs / their units, so this is at most the perfect compute bound;
    above MACs / usable PEs where no factors cover the dims evenly (conv1's 55 rows on 14
    columns take 4 steps of 14, 56 rows' worth)."""
    dims = layer.dims
    axes = tuple((size, _axis_dims(fan, axis)) for fan in arch.fanouts
                 for axis, size in (("X", fan.X), ("Y", fan.Y)) if size > 1)

    def floor() -> int:         # (the steps are never fewer: prod_d cover_d <= usable_pes)
        return math.ceil(layer.macs / usable_pes(layer, arch, imperfect=True) - 1e-9)

    if any(size > 64 for size, _ in axes):
        return floor()
    names = sorted({d for _, ds in axes for d in ds})
    rest = math.prod(n for d, n in dims.items() if d not in names)      # dims no axis holds
    try:
        least = _joint_cover(dims, axes, 0, objective=lambda cover: math.prod(
            -(-dims[d] // c) for d, c in zip(names, cover)), minimize=True)
    except _TooLong:
        return floor()
    return least * rest


def _sharing(layer: Layer, fan: Fanout, tensor: str, imperfect: bool = False) -> int:
    """At most how many of the MAC-side accesses below `fan` one access of `tensor` above it
    can serve: per axis, the most it holds of the dims along which children may share a
    word (a dim the tensor does not depend on, both loops of a sliding input axis, or a
    reduction dim for partial sums), where some network mode lets that axis share at all.
    `imperfect`: integer factors (_reach); a remainder pass's group of children sharing one
    read is never larger than that of a full pass, so the same product bounds it."""
    modes = fan.modes_of(tensor) or (None,)
    share = 1
    for axis, size in (("X", fan.X), ("Y", fan.Y)):
        if all(fan.credit(m)[axis] == "none" for m in modes):
            continue
        dims = _axis_dims(fan, axis)
        if tensor == "Outputs":
            names = [d for d in dims if d in REDUCTION_DIMS]
        else:
            names = [d for d in dims if d not in RELEVANT[tensor]]
            if tensor == "Inputs":       # overlapping windows (p*stride + r) share words
                both = set(fan.x_dims) | set(fan.y_dims)
                names += [d for d in dims for x, y in SLIDING_PAIRS if d in (x, y) and {x, y} <= both]
        share *= _best_product(size, layer.dims, sorted(set(names)), imperfect)
    return share


@functools.lru_cache(maxsize=256)
def lower_bound(layer: Layer, arch: Arch, factorization: str = "perfect") -> tuple[float, int, int]:
    """(energy in pJ, cycles, compute cycles) that no valid mapping of the `factorization`
    space (perfect, or imperfect: remainder mappings too) can go below. (Memoized: every
    CP-SAT model of a search starts its cycles there.)"""
    options = _bounds(layer, arch, factorization != "perfect")
    return (min(e for e, _, _ in options), min(c for _, c, _ in options), min(k for _, _, k in options))


@functools.lru_cache(maxsize=64)
def spatial_classes(layer: Layer, arch: Arch) -> tuple[tuple[tuple[int, ...], tuple[tuple[float, int, int], ...]], ...] | None:
    """Every class of perfect spatial mappings (`_signatures`, flattened as `class_of`
    reads them) with the (energy, cycles, compute cycles) bounds of its cases
    (`_class_cases`); None when the classes are too many to list. A search that knows a
    mapping of value V need not look in a class where every case's objective exceeds V
    (`class_objective`). (Memoized: every CP-SAT model of a search restricts itself to
    these classes.)"""
    classes = _signatures(layer, arch)
    if not classes:
        return None
    return tuple((tuple(x for fan in sig for x in fan), b) for sig, b in zip(classes, _class_cases(layer, arch)))


def class_objective(objective: str, cases: tuple[tuple[float, int, int], ...]) -> float:
    """The least `objective` a mapping of a class with these case bounds can have."""
    return min(objective_of(objective, *case) for case in cases)


def signature_columns(arch: Arch, slots) -> list[tuple[list[int], frozenset[int]]]:
    """How to read a mapping's spatial class (`_signatures`) off its factors: per entry of
    the signature, in its order (per fan-out, outermost first: all its factors, then those
    over the dims Weights, Inputs and Outputs do not depend on), the spatial slots of that
    fan-out (`slots`: (level, "T" | "X" | "Y") as in batch.Encoding) and the dim indices
    whose factors there multiply into the entry."""
    everything = frozenset(range(len(DIMS)))
    columns = []
    for li, level in enumerate(arch.levels):
        if isinstance(level, Fanout):
            mine = [s for s, (l2, kind) in enumerate(slots) if l2 == li and kind != "T"]
            columns.append((mine, everything))
            columns += [(mine, frozenset(DIMS.index(d) for d in IRRELEVANT[t])) for t in TENSORS]
    return columns


def class_of(columns: list[tuple[list[int], frozenset[int]]], factors) -> tuple[int, ...]:
    """A mapping's spatial class, flattened (the entries of its `_signatures` tuple in
    order), from its [slots, dims] factors and the arch's `signature_columns`."""
    factors = np.asarray(factors)
    return tuple(int(np.prod(factors[slots][:, sorted(dims)])) for slots, dims in columns)


def _bounds(layer: Layer, arch: Arch, imperfect: bool = False) -> list[tuple[float, int, int]]:
    """(energy, cycles, compute cycles) lower bounds: every valid mapping costs at least the
    energy and the cycles of one of them (its class' case, `_class_cases`)."""
    return [case for cases in _class_cases(layer, arch, imperfect) for case in cases]


def _class_cases(layer: Layer, arch: Arch, imperfect: bool = False) -> list[tuple[tuple[float, int, int], ...]]:
    """Per class of spatial mappings (`_signatures`, in its order), the (energy, cycles,
    compute cycles) bounds of its cases (`_Residency`): every valid mapping of the class costs
    at least the energy and the cycles of one of them. One class (no classes) when the
    classes are too many.

    `imperfect`: a bound over remainder mappings too (see the module docstring): integer
    factors where sharing and compute cycles are bounded, the partial-sum trade-off relaxed
    (`_partial_sums_imperfect`), and one entry: no classes."""
    s = _Setting.of(layer, arch, imperfect)
    tally = _tally_tensors(s)
    compute = _compute_cycles(s)
    cycles = _cycles(s, tally, compute)
    per_cycle = sum(arch.levels[i].leakage for i in s.storages) + arch.cycle_energy
    # The classes' arguments take the instances along a dim that do work as the product of
    # its factors; unrolled on several axes with a remainder they are fewer (5 as 3 x 2:
    # 5 of 6), so the imperfect bound has no classes (module docstring).
    classes = None if imperfect else _signatures(layer, arch)
    if not classes:
        return [(_total(per_cycle, tally.energy, cycles, compute),)]
    return _class_bounds(s, tally, classes, compute, cycles, per_cycle)


@dataclass(frozen=True)
class _Setting:
    """What every step of `_bounds` reads: the layer, the arch with its densities, which of
    its levels are storages and fan-outs, and which factorization space is bounded."""

    layer: Layer
    arch: Arch
    sparse: Sparse
    imperfect: bool
    storages: list[int]
    fanouts: list[int]

    @classmethod
    def of(cls, layer: Layer, arch: Arch, imperfect: bool) -> "_Setting":
        storages = [i for i, level in enumerate(arch.levels) if isinstance(level, Storage)]
        fanouts = [i for i, level in enumerate(arch.levels) if isinstance(level, Fanout)]
        return cls(layer, arch, Sparse.of(layer, arch), imperfect, storages, fanouts)

    @property
    def top(self):
        return self.arch.levels[0]


@dataclass(frozen=True)
class _Tensor:
    """One tensor's facts the bound's arguments share: how the MACs touch it, the levels
    that must keep it, whether it comes from the outermost level, and its compulsory traffic there."""

    name: str
    action: int                 # outputs are updated (2), operands read (0)
    always: list[int]           # levels that must keep it
    used: int                   # distinct words some MAC touches (used_words)
    from_top: bool              # the outermost level keeps it and cannot bypass it
    compulsory: float           # words read (outputs: written) at the outermost level, at least

    @classmethod
    def of(cls, s: _Setting, t: str) -> "_Tensor":
        top = s.top
        always = [i for i in s.storages if t in s.arch.levels[i].keeps and t not in s.arch.levels[i].may_bypass]
        used = used_words(s.layer, t)
        # compulsory traffic at the outermost level
        from_top = isinstance(top, Storage) and t in top.keeps and t not in top.may_bypass
        compulsory = used * _crossing_factor(s, t, always, 0, [0]) if from_top else 0.0
        return cls(t, 2 if t == "Outputs" else 0, always, used, from_top, compulsory)


@dataclass
class _Tally:
    """The bound's running sums over the tensors (each term added in the order of the
    arguments, so the sums are the same to the last bit), and what the classes refine."""

    energy: float
    reads: float = 0.0          # compulsory words at the outermost level
    writes: float = 0.0
    network_cycles: float = 0.0
    # per class: (tensor, level index, coefficient): energy += coefficient x (R - 1) where R is
    # the class' replication of the tensor above that level (see _replicated)
    extra: list[tuple[str, int, float]] = field(default_factory=list)
    outputs: _Tensor | None = None          # for the classes' fixed partial-sum spreads
    outputs_base: float = 0.0               # the innermost-level energy of outputs, any spread


def _tally_tensors(s: _Setting) -> _Tally:
    """Sum the MACs' energy and, per tensor, its compulsory traffic, network crossings, fills
    and the innermost level's accesses: the energy every mapping pays, and the traffic the
    cycle bound needs."""
    tally = _Tally(s.layer.macs * s.arch.mac_energy * s.sparse.mac_energy)
    for t in TENSORS:
        tensor = _Tensor.of(s, t)
        if tensor.from_top:
            _add_compulsory(tally, tensor)
            _add_crossings(s, tally, tensor)
            _add_fills(s, tally, tensor)
        base = _innermost(s, tensor)
        tally.energy += base
        if t == "Outputs":
            tally.outputs, tally.outputs_base = tensor, base
    return tally


def _crossing_factor(s: _Setting, t: str, always: list[int], i: int, holders) -> float:
    """The fraction of a used word of `t` that crosses level `i`, at least, given the levels
    `holders` that may hold it there."""
    # Levels that must keep t: where one lies below a fan-out, the words crossing it
    # move between two buffers (scaled by the fractions stored there), else they may
    # go straight to the MACs (scaled by the operand density).
    direct = [] if any(j > i for j in always) else [s.sparse.operand(t)]
    if t == "Outputs":
        return min([1.0] + direct)
    return min([s.sparse.stored(s.arch.levels[j].name, t) for j in holders] + direct or [1.0])


def _add_compulsory(tally: _Tally, tensor: _Tensor) -> None:
    """Count the tensor's compulsory traffic at the outermost level: operands read from it,
    outputs written back to it."""
    if tensor.name == "Outputs":
        tally.writes += tensor.compulsory
    else:
        tally.reads += tensor.compulsory


def _add_crossings(s: _Setting, tally: _Tally, tensor: _Tensor) -> None:
    """Add the energy and cycles of every used word crossing every fan-out."""
    t, used, always = tensor.name, tensor.used, tensor.always
    # Every word the MACs use comes from the outermost level, so it crosses every
    # fan-out at least once: network energy (scaled as the level it reaches stores
    # it), and cycles at the fan-out's best port bandwidth (scaled as the level it
    # leaves stores it; the mode with the most streams, every parent instance busy).
    for i in s.fanouts:
        fan: Fanout = s.arch.levels[i]
        holders_above = [j for j in s.storages if j < i and t in s.arch.levels[j].keeps]
        holders_below = [j for j in s.storages if j > i and t in s.arch.levels[j].keeps]
        if t != "Outputs":          # partial sums: per innermost level, below
            f = _crossing_factor(s, t, always, i, holders_below)
            tally.energy += used * f * fan.energy_of(t)
            # The first level below that keeps t, if it must: every word crosses
            # the fan-out once per instance of that level that needs it, at the
            # fraction that level stores (so R x stored >= f words per used word).
            if holders_below and holders_below[0] in always:
                c = holders_below[0]
                stored = s.sparse.stored(s.arch.levels[c].name, t)
                tally.energy += used * (stored - f) * fan.energy_of(t)
                tally.extra.append((t, c, used * stored * fan.energy_of(t)))
        bws = [fan.bandwidth(t, m) for m in (fan.modes_of(t) or (None,))]
        if all(bws):
            tally.network_cycles = max(tally.network_cycles, used * _crossing_factor(s, t, always, i, holders_above)
                                       / (max(bws) * fan.instances))


def _add_fills(s: _Setting, tally: _Tally, tensor: _Tensor) -> None:
    """Add the energy of filling the levels below the top that must keep an operand."""
    t = tensor.name
    # a level below the top that must keep an operand is filled with each used word,
    # once per instance of it that needs the word
    if t != "Outputs":
        for i in s.storages[1:]:
            level = s.arch.levels[i]
            if t in level.keeps and t not in level.may_bypass:
                fill = tensor.used * s.sparse.stored(level.name, t) * level.energy_of(t)[1]
                tally.energy += fill
                tally.extra.append((t, i, fill))


def _innermost(s: _Setting, tensor: _Tensor, reps: dict[int, int] | None = None) -> float:
    """The least energy of serving every MAC from the innermost level holding the tensor,
    over the levels that may be it (with `reps`, outputs' partial sums at those spreads)."""
    # The innermost level L holding t serves every MAC: at least MACs x density /
    # (the MAC-side accesses below L one access can serve, _sharing) accesses.
    # (L lies at or below the innermost level that cannot bypass t)
    best = math.inf
    for i in s.storages:
        level = s.arch.levels[i]
        if tensor.name not in level.keeps or (tensor.always and i < tensor.always[-1]):
            continue
        best = min(best, _served_from(s, tensor, i, reps))
    return 0.0 if best == math.inf else best


def _served_from(s: _Setting, tensor: _Tensor, i: int, reps: dict[int, int] | None) -> float:
    """The energy of serving every MAC from level `i` as the innermost holding the tensor:
    its accesses, outputs' partial sums, the levels above that must pass each word on, and
    the compulsory accesses at the top (the same accesses when `i` is the top)."""
    layer, arch, sparse, t = s.layer, s.arch, s.sparse, tensor.name
    level = arch.levels[i]
    below = math.prod(_sharing(layer, f, t, s.imperfect) for f in arch.levels[i + 1:]
                      if isinstance(f, Fanout))
    served = layer.macs * sparse.operand(t) / below
    per_mac = served * level.energy_of(t)[tensor.action]
    if t == "Outputs":
        per_mac += (_partial_sums_imperfect(layer, arch, sparse, i, below, tensor.from_top) if s.imperfect
                    else _partial_sums(layer, arch, sparse, i, below, tensor.from_top, reps))
    # a level between the top and L that must keep t passes each used word on at
    # least once (operands: reads; partial sums: updates from below)
    for j in tensor.always:
        if 0 < j < i:
            f = 1.0 if t == "Outputs" else sparse.stored(arch.levels[j].name, t)
            per_mac += tensor.used * f * arch.levels[j].energy_of(t)[2 if t == "Outputs" else 0]
    compulsory = tensor.compulsory
    at_top = compulsory * s.top.energy_of(t)[tensor.action] if compulsory else 0.0
    return max(per_mac, at_top) if i == 0 else per_mac + at_top


def _compute_cycles(s: _Setting) -> float:
    """The compute cycles no mapping goes below."""
    # compute cycles: MACs / the most MAC units one step can use; with remainders, the
    # fewest temporal steps (each dim's ceil(d / its spatial cover)), which is no less
    return (fewest_steps(s.layer, s.arch) * s.sparse.mac_cycles if s.imperfect
            else s.layer.macs * s.sparse.mac_cycles / usable_pes(s.layer, s.arch))


def _cycles(s: _Setting, tally: _Tally, compute: float) -> float:
    """The cycles no mapping goes below: its compute cycles, the network's for the
    compulsory traffic, and the outermost level's bandwidth for it."""
    cycles = max(compute, tally.network_cycles)
    top = s.top
    if isinstance(top, Storage):
        reads, writes = tally.reads, tally.writes
        for bw, words in ((top.read_bw, reads), (top.write_bw, writes), (top.shared_bw, reads + writes)):
            if bw:
                cycles = max(cycles, words / bw)
    return cycles


def _total(per_cycle: float, e: float, cyc: float, comp: float) -> tuple[float, int, int]:
    """(energy, cycles, compute cycles) with the cycles whole and their leakage and per-cycle
    energy paid."""
    cyc, comp = math.ceil(cyc - 1e-9), math.ceil(comp - 1e-9)
    return e + cyc * per_cycle, cyc, comp


def _class_bounds(s: _Setting, tally: _Tally, classes: list[tuple], compute: float, cycles: float,
                  per_cycle: float) -> list[tuple[tuple[float, int, int], ...]]:
    """The bounds refined per class of spatial mappings: its replication, partial-sum spread
    and MAC units are fixed, so its energy and compute cycles are higher. Per class, one
    (energy, cycles, compute cycles) per case of `_Residency` (every mapping of the class
    falls in one of them)."""
    fan_index = {i: k for k, i in enumerate(s.fanouts)}
    residency = _Residency.of(s)
    psums: dict = {}
    refined = []
    for sig in classes:
        units = math.prod(sig[k][0] for k in range(len(s.fanouts)))
        e = _class_energy(s, tally, sig, fan_index, psums)
        comp = max(compute, s.layer.macs * s.sparse.mac_cycles / units)
        cases = residency.cases(sig, fan_index) if residency else ((0.0, 0.0),)
        refined.append(tuple(_total(per_cycle, e + extra, max(cycles, comp, floor), comp) for extra, floor in cases))
    return refined


@dataclass(frozen=True)
class _Residency:
    """How long a partial sum can stay in the innermost level holding Outputs (O), bounded
    by the operand buffer above it: a refinement of the class bounds. W is the lowest level
    above O that must keep Weights and has a capacity for them.

    Let K be the reduction extent one residency of an output in O accumulates: the C, R, S
    factors of O's tile times the run X of temporal loops over C, R, S directly above O (a
    tile stays while only loops irrelevant to it step, model.py). Each instance of O loads
    each output it touches (C x R x S) / (spread x K) times, spread being the class' C, R,
    S spatial factors above O, so the loads over all instances are E = outputs x CRS / K,
    of which F = outputs x spread are first touches; K divides CRS / spread (perfect
    factors). Every mapping of a class is in one of two cases:
      (a) X has no loop above W. W's tile then holds K weights (a C x R x S block), and
          every level at or above W that must keep Inputs holds at least K inputs, so K is
          at most each of their capacities over the capacity factor: the largest divisor
          of CRS / spread that fits. O is then filled E - F times (partial sums sent back
          down), every fan-out between O and the next level that may keep Outputs carries
          2E - F words (each fill and each write-back), and O's write port takes the
          updates and the fills.
      (b) X has a loop above W. Every loop between O and W, and the first above W, then
          steps C, R or S, so W keeps no weight across a step of the loops above it: it is
          filled MACs / reuse times (scaled as it stores weights), where reuse, the MACs per
          weight of W's tile, is at most the N, P, Q temporal extent O's capacity allows
          times the class' N, P, Q spatial factors below W.
    None where the premises fail: O may be bypassed or is the outermost keeping Outputs, or
    there is no such W."""

    o: int                      # the innermost level holding Outputs
    w: int                      # W
    parent_fans: tuple[int, ...]    # fan-outs between O and the next level up that may keep Outputs
    weight_fans: tuple[int, ...]    # fan-outs between W and the next level up that may keep Weights
    parent_pj: float            # the least read + update energy of a level O may drain to
    k_cap: float                # K at most (case a)
    t_npq: int                  # N, P, Q temporal extent of O's tile, at most (case b)
    outputs: int
    crs: int
    below: int                  # outputs' sharing below O (as _served_from)
    weights: float              # weight words the tally's fills at W count once (0: none)
    outputs_from_top: bool      # whether _partial_sums counted the network's partial sums
    s: _Setting

    @classmethod
    def of(cls, s: _Setting) -> "_Residency | None":
        arch, layer = s.arch, s.layer
        levels = arch.levels
        holds = [i for i in s.storages if "Outputs" in levels[i].keeps]
        o = holds[-1] if holds else None
        if o is None or "Outputs" in levels[o].may_bypass or not any(
                "Outputs" not in levels[i].may_bypass for i in holds[:-1]):
            return None

        def must_keep(i: int, t: str) -> bool:
            return t in levels[i].keeps and t not in levels[i].may_bypass

        def capacity(i: int, t: str) -> float | None:
            part = levels[i].partition_of(t)
            return None if part is None else part[1] / s.sparse.capacity(levels[i].name, t)

        ws = [i for i in s.storages if 0 < i < o and must_keep(i, "Weights") and capacity(i, "Weights")]
        if not ws:
            return None
        w = ws[-1]
        # Weights and Inputs both have C, R and S on distinct axes (problem.AXES), so a
        # C x R x S block of extent K touches at least K words of each
        caps = [capacity(i, t) for i in s.storages if 0 < i <= w for t in ("Weights", "Inputs")
                if must_keep(i, t) and capacity(i, t)]
        parent = holds[-2]
        # the parent O drains to: the next level up that keeps Outputs in the mapping, at the
        # latest the first that must keep them
        candidates = []
        for i in reversed(holds[:-1]):
            candidates.append(i)
            if "Outputs" not in levels[i].may_bypass:
                break
        parent_pj = min(levels[i].energy_of("Outputs")[0] + levels[i].energy_of("Outputs")[2] for i in candidates)
        names = sorted({d for i in s.storages if i >= o for d in levels[i].temporal_dims} & IRRELEVANT["Weights"])
        out_cap = levels[o].partition_of("Outputs")
        t_npq = (_best_product(out_cap[1], layer.dims, names) if out_cap
                 else math.prod(layer.dims[d] for d in names))
        dims = layer.dims
        below = math.prod(_sharing(layer, f, "Outputs") for f in levels[o + 1:] if isinstance(f, Fanout))
        weights = _Tensor.of(s, "Weights")
        w_parent = max(i for i in s.storages if i < w and "Weights" in levels[i].keeps) if any(
            i < w and "Weights" in levels[i].keeps for i in s.storages) else -1
        return cls(o, w, tuple(j for j in s.fanouts if parent < j < o),
                   tuple(j for j in s.fanouts if w_parent < j < w), parent_pj, min(caps), t_npq,
                   used_words(layer, "Outputs"), dims["C"] * dims["R"] * dims["S"], below,
                   weights.used if weights.from_top else 0.0, _Tensor.of(s, "Outputs").from_top, s)

    def cases(self, sig: tuple, fan_index: dict[int, int]) -> tuple[tuple[float, float], ...]:
        """(energy beyond the class bound, cycles at least) of cases (a) and (b) in class `sig`."""
        s, levels = self.s, self.s.arch.levels
        out, wt = 1 + TENSORS.index("Outputs"), 1 + TENSORS.index("Weights")
        above_o = [i for i in s.fanouts if i < self.o]
        spread = math.prod(sig[fan_index[i]][out] for i in above_o)
        n_o = math.prod(sig[fan_index[i]][0] for i in above_o)
        per = self.crs // spread
        k = max(d for d in range(1, per + 1) if per % d == 0 and d <= self.k_cap + 1e-9) if self.k_cap >= 1 else 1
        first = self.outputs * spread
        work = s.sparse.operand("Outputs")
        updates = s.layer.macs * work / self.below
        reads = max(0.0, s.layer.macs / self.below - first) * work

        def o_cycles(loads: float) -> float:      # O's ports: the updates, and the refills
            return bandwidth_cycles(levels[self.o], reads / n_o, (updates + loads - first) / n_o)

        # (a) the network words _partial_sums counted at each fan-out between O and its parent
        loads = self.outputs * spread * (per // k)
        network = 0.0
        for j in self.parent_fans:
            cum = math.prod(sig[fan_index[i]][out] for i in above_o if i <= j)
            counted = self.outputs * cum if self.outputs_from_top else 0.0
            network += (2 * loads - first - counted) * levels[j].energy_of("Outputs")
        # and the parent: per output, one update per residency of an instance (merged at
        # best) and one read sent back down for each but the first; the bound counted one
        # update at the levels that must keep Outputs
        rounds = per // k
        parent = (rounds - 1) * self.outputs * self.parent_pj
        case_a = ((loads - first) * levels[self.o].energy_of("Outputs")[1] + network + parent, o_cycles(loads))
        # (b)
        reuse = self.t_npq * math.prod(sig[fan_index[i]][wt] for i in s.fanouts if i > self.w)
        stored = s.sparse.stored(levels[self.w].name, "Weights")
        fills = s.layer.macs * stored / reuse
        counted = self.weights * stored * _replicated(sig, fan_index, "Weights", self.w)
        n_w = math.prod(sig[fan_index[i]][0] for i in s.fanouts if i < self.w)
        # W's fills at W and at every fan-out between W and the next level up that may keep
        # Weights (each fill crosses them; the tally counted each used word once per instance)
        per_word = levels[self.w].energy_of("Weights")[1] + sum(levels[j].energy_of("Weights") for j in self.weight_fans)
        case_b = (max(0.0, fills - counted) * per_word,
                  max(o_cycles(first), bandwidth_cycles(levels[self.w], 0.0, fills / n_w)))
        return case_a, case_b


def _class_energy(s: _Setting, tally: _Tally, sig: tuple, fan_index: dict[int, int], psums: dict) -> float:
    """The energy bound in the class `sig`: every fill and crossing once per instance that
    needs the word, and the partial sums at the class' spread (memoized in `psums`, shared
    by classes with the same spread)."""
    e = tally.energy
    for t, c, coef in tally.extra:
        e += coef * (_replicated(sig, fan_index, t, c) - 1)
    if tally.outputs is not None:
        spread = tuple(sig[fan_index[i]][1 + TENSORS.index("Outputs")] for i in s.fanouts)
        if spread not in psums:
            psums[spread] = _innermost(s, tally.outputs, dict(zip(s.fanouts, spread)))
        e += psums[spread] - tally.outputs_base
    return e


def _replicated(sig: tuple, fan_index: dict[int, int], tensor: str, level: int) -> int:
    """How many instances of the level at index `level` need each word of `tensor`, at least,
    in the spatial class `sig`: the product over the fan-outs above it of their factors over
    dims the tensor does not depend on (every value of such a dim uses every word)."""
    slot = 1 + TENSORS.index(tensor)
    return math.prod(sig[k][slot] for i, k in fan_index.items() if i < level)


def _signatures(layer: Layer, arch: Arch, limit: int = 20_000) -> list[tuple] | None:
    """Every distinct class of spatial mappings: per fan-out (outermost first), the product of
    its spatial factors and, per tensor (Weights, Inputs, Outputs), the product of its factors
    over dims that tensor does not depend on. Factors are divisors that fit their axis, each
    dim's factors over all axes divide the dim (as in usable_pes). None if the search visits
    more than `limit` nodes."""
    fans = list(arch.fanouts)
    axes = [(k, size, _axis_dims(fan, axis)) for k, fan in enumerate(fans)
            for axis, size in (("X", fan.X), ("Y", fan.Y)) if size > 1]
    names = sorted({d for _, _, ds in axes for d in ds})
    dims = layer.dims
    visited = [0]
    memo: dict[tuple, frozenset] = {}
    one = tuple((1, 1, 1, 1) for _ in fans)

    def choices(size, allowed, left):
        out = [((1, 1, 1, 1), left)]
        for d in allowed:
            i = names.index(d)
            flags = [d in IRRELEVANT[t] for t in TENSORS]
            out = [((p[0] * k,) + tuple(v * k if fl else v for v, fl in zip(p[1:], flags)),
                    rest[:i] + (rest[i] // k,) + rest[i + 1:])
                   for p, rest in out for k in range(1, min(rest[i], size // p[0]) + 1) if rest[i] % k == 0]
        return out

    def walk(a: int, left: tuple) -> frozenset:
        if a == len(axes):
            return frozenset([one])
        key = (a, left)
        if key not in memo:
            visited[0] += 1
            if visited[0] > limit:
                raise _TooLong
            k, size, allowed = axes[a]
            found = set()
            for p, rest in choices(size, allowed, left):
                for sig in walk(a + 1, rest):
                    cur = sig[k]
                    found.add(sig[:k] + (tuple(x * y for x, y in zip(cur, p)),) + sig[k + 1:])
                    if len(found) > limit:
                        raise _TooLong
            memo[key] = frozenset(found)
        return memo[key]

    try:
        return sorted(walk(0, tuple(dims[d] for d in names)))
    except _TooLong:
        return None


def _partial_sums(layer: Layer, arch: Arch, sparse: Sparse, inner: int, below: int, from_top: bool,
                  fixed: dict[int, int] | None = None) -> float:
    """Energy of the partial sums with level `inner` the innermost holding Outputs, beyond
    its updates: the words crossing each fan-out, and the read-backs at `inner`.

    If fan-outs above `inner` unroll reduction dims by factors r_1.. r_k (outermost first),
    each output has r_1 x .. x r_j partial sums below fan-out j, each written back across it
    at least once; and `inner` reads a partial sum back for every update but each instance's
    first touch of an output, of which there are (outputs x r_1 x .. x r_k). Spreading the
    reduction saves read-backs and costs network words: the cheapest choice bounds both.
    With `fixed` (fan-out level index -> its reduction factor, from a spatial class), only
    that choice is counted."""
    used = used_words(layer, "Outputs")
    fans = [i for i in range(1, inner) if isinstance(arch.levels[i], Fanout)]
    below_fans = [i for i in range(inner + 1, len(arch.levels)) if isinstance(arch.levels[i], Fanout)]
    words = used * min(1.0, sparse.operand("Outputs"))
    base = sum(words * arch.levels[i].energy_of("Outputs") for i in below_fans) if from_top else 0.0
    read = arch.levels[inner].energy_of("Outputs")[0] * sparse.operand("Outputs")
    best = math.inf
    options = [tuple(fixed[i] for i in fans)] if fixed is not None else _replications(layer, [arch.levels[i] for i in fans])
    for reps in options:
        network, spread = 0.0, 1
        for i, r in zip(fans, reps):
            spread *= r
            network += used * spread * arch.levels[i].energy_of("Outputs") if from_top else 0.0
        best = min(best, network + max(0.0, layer.macs / below - used * spread) * read)
    return base + best


def _max_spreads(layer: Layer, fans: list[Fanout]) -> list[int]:
    """Per fan-out, at most how many of its children one output's partial sums can be
    spread over: the product over its reducing axes of the most each holds of C, R and S
    with integer factors (children touching one output differ only in those indices)."""
    dims = layer.dims
    out = []
    for fan in fans:
        spread = 1
        for axis, size in (("X", fan.X), ("Y", fan.Y)):
            if fan.reduces(axis):
                names = [d for d in _axis_dims(fan, axis) if d in REDUCTION_DIMS]
                spread *= _best_product(size, dims, names, imperfect=True)
        out.append(spread)
    return out


def _partial_sums_imperfect(layer: Layer, arch: Arch, sparse: Sparse, inner: int, below: int,
                            from_top: bool) -> float:
    """_partial_sums over remainder mappings too, where an output's partial sums lie only on
    the children whose reduction indices do work, fewer than the product of the factors
    (C = 5 as 3 on one fan-out over 2 on the next: 5 of the 6 children), so the spreads
    are not products of per-fan-out factors.

    Let N_j be the (fan-out j child, output) pairs with the child touching the output, for
    the fan-outs 1..k above `inner` (outermost first), and N_0 = outputs. Each child
    touching an output writes it back across fan-out j at least once: network >= sum_j
    e_j N_j. `inner` reads a partial sum back for every update but each instance's first
    touch of an output, and its instances touching an output are fan-out k's children
    touching it (no fan-out between them): read-backs >= U - N_k, U >= MACs / below the
    updates. And outputs <= N_j, N_j <= N_(j-1) x spread_j (_max_spreads), N_k <= outputs
    x C x R x S. With s = N_k / outputs, the cheapest N_j for j < k is outputs x max(1,
    s / spread_(j+1) x .. x spread_k), so the least of the convex piecewise-linear
    g(s) = sum_(j<k) e_j outputs max(1, s / ..) + e_k outputs s + read max(0, U - outputs s)
    over [1, cap] is at a breakpoint or an end: each is tried. Network words are those of
    _partial_sums (counted only when the outermost level keeps outputs)."""
    used = used_words(layer, "Outputs")
    dims = layer.dims
    fans = [i for i in range(1, inner) if isinstance(arch.levels[i], Fanout)]
    below_fans = [i for i in range(inner + 1, len(arch.levels)) if isinstance(arch.levels[i], Fanout)]
    words = used * min(1.0, sparse.operand("Outputs"))
    base = sum(words * arch.levels[i].energy_of("Outputs") for i in below_fans) if from_top else 0.0
    read = arch.levels[inner].energy_of("Outputs")[0] * sparse.operand("Outputs")
    updates = layer.macs / below
    spreads = _max_spreads(layer, [arch.levels[i] for i in fans])
    energies = [arch.levels[i].energy_of("Outputs") if from_top else 0.0 for i in fans]
    cap = float(min(math.prod(spreads), dims["C"] * dims["R"] * dims["S"]))
    # the spread fan-outs j+1..k can hold below one child of fan-out j
    inside = [float(math.prod(spreads[j + 1:])) for j in range(len(fans))]

    def g(s: float) -> float:
        net = sum(e * used * max(1.0, s / inside[j]) for j, e in enumerate(energies))
        return net + max(0.0, updates - used * s) * read

    points = {1.0, cap, updates / used} | set(inside)
    return base + min(g(min(cap, max(1.0, s))) for s in points)


def objective_bound(layer: Layer, arch: Arch, objective: str, factorization: str = "perfect") -> float:
    """The lower bound of `objective` (energy, delay, edp or compute) over all mappings of
    the `factorization` space: the least over the spatial classes of the objective of their
    bounds (energy and cycles of one class hold together, so EDP uses their product)."""
    return float(min(objective_of(objective, *b) for b in _bounds(layer, arch, factorization != "perfect")))
