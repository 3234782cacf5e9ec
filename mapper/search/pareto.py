"""Energy-delay trade-off fronts: the non-dominated (energy, cycles) mappings of a layer,
and of a network (the sums over its layers).

A mapping dominates another when it needs no more energy and no more cycles, and less of
one. `layer_front` is exact for a layer whose pruned space can be enumerated within
`exact_limit` factorizations x keep patterns: every candidate is evaluated (with the
network modes best for energy and those best for delay, where the arch offers modes).
For a larger layer it is the non-dominated set of every candidate evaluated (random
samples from the pruned space), with the two ends searched for directly: the
minimum-energy and minimum-cycles mappings found by `search` (optimal where its status
says so), so the ends are as good as a search finds and the points between are a lower
envelope of what was sampled, not a proof. The network front is exact given the layers'
fronts: layers run one after another, so a network point is one point per layer, with
energies and cycles summed, and only the non-dominated sums are kept.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..arch import Arch
from ..batch import evaluate_batch, score
from ..mapping import Mapping
from ..model import Cost, evaluate
from ..problem import Layer
from .space import space_of

EXACT_LIMIT = 300_000          # factorizations x keep patterns enumerated exactly
NETWORK_POINTS = 400           # a network front keeps at most this many points (evenly thinned)


@dataclass(frozen=True)
class Point:
    mapping: Mapping
    cost: Cost


@dataclass(frozen=True)
class Front:
    """The non-dominated mappings of one layer, by ascending cycles (descending energy)."""

    layer: Layer
    arch: Arch
    points: tuple[Point, ...]
    exact: bool
    guarantee: str                 # what the front is, in a sentence
    evaluated: int
    seconds: float


@dataclass(frozen=True)
class NetworkPoint:
    energy_pj: float
    cycles: int
    choice: tuple[int, ...]        # index of the point of each layer's front


def nondominated(energy: np.ndarray, cycles: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated (energy, cycles) pairs, by ascending cycles; of equal
    pairs the first is kept."""
    order = np.lexsort((np.arange(len(energy)), energy, cycles))     # cycles, then energy, then index
    keep, best = [], np.inf
    for i in order:
        if energy[i] < best:
            keep.append(i)
            best = energy[i]
    return np.array(keep, dtype=np.int64)


class _Collector:
    """The running front of encoded candidates (arrays), merged batch by batch."""

    def __init__(self, enc):
        self.enc = enc
        self.rows = None           # (energy, cycles, factors, orders, keep, modes)
        self.evaluated = 0

    def add(self, f, o, k) -> None:
        if not len(f):
            return
        self.evaluated += len(f)
        parts = []
        for objective in ("energy", "delay"):
            _, md = score(self.enc, f, o, k, objective)
            c = evaluate_batch(self.enc, f, o, k, md)
            parts.append((c.energy_pj, c.cycles, f, o, k, md))
        if self.rows is not None:
            parts.append(self.rows)
        cat = [np.concatenate([p[i] for p in parts]) for i in range(6)]
        idx = nondominated(cat[0], cat[1])
        self.rows = tuple(a[idx] for a in cat)


def layer_front(layer: Layer, arch: Arch, seed: int = 0, time_limit: float | None = 60.0, workers: int = 1,
                exact_limit: int = EXACT_LIMIT, samples: int = 400_000) -> Front:
    """The energy-delay front of one layer (see the module docstring for what it guarantees)."""
    from .exhaustive import enumerate_space
    start = time.monotonic()
    deadline = None if time_limit is None else start + time_limit
    space = space_of(layer, arch)
    out_of_time = lambda: deadline is not None and time.monotonic() > deadline   # noqa: E731
    col = _Collector(space.enc)
    ends = []   # the searched ends (sampled branch only; an exhaustive pass cut by time has none)
    if space.n_factorizations * len(space.keeps) <= exact_limit:
        done = enumerate_space(space, "energy", lambda v, f, o, k, md, frac: col.add(f, o, k), out_of_time)
        exact = done >= 0
        guarantee = ("exact: every candidate of the pruned space evaluated" if exact else
                     f"partial: non-dominated among the {col.evaluated:,} candidates evaluated before the time limit")
        if arch.fanouts and any(f.modes for f in arch.fanouts):
            guarantee += " (network modes: the best for energy and the best for delay of each candidate)"
    else:
        exact = False
        # a third of the time for sampling, a third for each end's search
        share = None if time_limit is None else time_limit / 3
        from .random import sample
        rng = np.random.default_rng(seed)
        n = 0
        while n < samples and not (share is not None and time.monotonic() > start + share):
            f, o, k = sample(space, rng, 8192)
            n += len(f)
            ok = np.nonzero(space.valid(f, k))[0]
            col.add(f[ok], o[ok], k[ok])
        ends = _ends(layer, arch, seed, workers, share)
        statuses = ", ".join(f"min {r.settings['objective']} {r.status}"
                             + ("" if r.status == "optimal" else f" ({r.reason})") for r in ends)
        guarantee = (f"sampled: non-dominated among {col.evaluated:,} valid sampled candidates and the searched ends "
                     f"({statuses}); points between the ends are not proven")
    points = _points(space, layer, arch, col)
    if ends:
        points = _with_ends(points, ends)
    return Front(layer, arch, tuple(points), exact, guarantee, col.evaluated, time.monotonic() - start)


def _ends(layer, arch, seed, workers, time_limit):
    """The minimum-energy and minimum-cycles searches (the ends of a sampled front)."""
    from . import search
    return [search(layer, arch, objective=obj, seed=seed, workers=workers, time_limit=time_limit)
            for obj in ("energy", "delay")]


def _points(space, layer, arch, col) -> list[Point]:
    if col.rows is None:
        return []
    out = []
    for e, c, f, o, k, md in zip(*col.rows):
        m = space.enc.decode(f, o, k, md)
        out.append(Point(m, evaluate(layer, arch, m)))
    return out


def _with_ends(points: list[Point], ends) -> list[Point]:
    """The points and the searched ends, non-dominated."""
    allp = points + [Point(r.best.mapping, r.best.cost) for r in ends]
    idx = nondominated(np.array([p.cost.energy_pj for p in allp]), np.array([p.cost.cycles for p in allp]))
    return [allp[i] for i in idx]


def network_front(fronts: list[Front], limit: int = NETWORK_POINTS) -> list[NetworkPoint]:
    """The non-dominated sums of one point per layer (exact while it has at most `limit`
    points; beyond, thinned evenly along the front, keeping both ends)."""
    energy = np.zeros(1)
    cycles = np.zeros(1, dtype=np.int64)
    choice = np.zeros((1, 0), dtype=np.int64)
    for fr in fronts:
        e = np.array([p.cost.energy_pj for p in fr.points])
        c = np.array([p.cost.cycles for p in fr.points], dtype=np.int64)
        E = (energy[:, None] + e[None, :]).ravel()
        C = (cycles[:, None] + c[None, :]).ravel()
        ch = np.concatenate([np.repeat(choice, len(e), axis=0),
                             np.tile(np.arange(len(e)), len(energy))[:, None]], axis=1)
        idx = nondominated(E, C)
        if len(idx) > limit:
            idx = idx[np.unique(np.linspace(0, len(idx) - 1, limit).round().astype(int))]
        energy, cycles, choice = E[idx], C[idx], ch[idx]
    return [NetworkPoint(float(e), int(c), tuple(int(x) for x in ch)) for e, c, ch in zip(energy, cycles, choice)]


def front_document(fronts: list[Front], network: list[NetworkPoint] | None = None) -> dict:
    """The JSON of `search --pareto`: per layer its guarantee and points (result
    documents, ascending cycles), and the network front (sums, with each layer's point)."""
    from ..result import document
    layers = []
    for fr in fronts:
        docs = [document(fr.layer, fr.arch, p.mapping, p.cost, {"pareto": True}) for p in fr.points]
        layers.append({"layer": fr.layer.name, "exact": fr.exact, "guarantee": fr.guarantee,
                       "evaluated": fr.evaluated, "seconds": round(fr.seconds, 3), "points": docs})
    out = {"pareto": "energy-cycles", "arch": fronts[0].arch.describe() if fronts else None, "layers": layers}
    if network is not None:
        out["network"] = [{"energy_pj": p.energy_pj, "cycles": p.cycles,
                           "points": {fr.layer.name: i for fr, i in zip(fronts, p.choice)}} for p in network]
    return out
