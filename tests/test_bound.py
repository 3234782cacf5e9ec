"""The analytic bound's spatial classes (mapper/search/bound.py): every valid mapping costs at
least its class' bound, so the least over the classes of energy, cycles and EDP bounds every
mapping; the classes are every spatial assignment the arch allows."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from mapper.arch import load_arch
from mapper.batch import evaluate_batch
from mapper.problem import TENSORS, layer_from_dims
from mapper.search.bound import IRRELEVANT, _axis_dims, _signatures, lower_bound, objective_bound
from mapper.search.random import sample
from mapper.search.space import space_of

REL = 1e-9
LAYERS = {
    "pointwise": dict(M=16, C=12, P=4, Q=4),
    "depthwise": dict(G=12, P=4, Q=4, R=3, S=3),
    "conv": dict(M=8, C=4, P=4, Q=4, R=3, S=3),
    "strided": dict(M=6, C=4, P=3, Q=3, R=3, S=3),
}


@pytest.mark.parametrize("density", [None, (0.5, 0.7)], ids=["dense", "sparse"])
@pytest.mark.parametrize("arch_name", ["eyeriss_v2", "eyeriss_v1_scaled"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_every_sampled_mapping_costs_at_least_the_bound(name, arch_name, density):
    arch = load_arch(arch_name)
    stride = (2, 2) if name == "strided" else (1, 1)
    layer = layer_from_dims(name, stride=stride, **LAYERS[name])
    if density:
        layer = layer.with_density({"weights": density[0], "inputs": density[1]})
    bounds = {o: objective_bound(layer, arch, o) for o in ("energy", "delay", "edp")}
    energy, cycles, _ = lower_bound(layer, arch)
    assert bounds["energy"] == pytest.approx(energy) and bounds["delay"] == cycles
    # EDP couples energy and cycles per class: never below the product of the two least
    assert bounds["edp"] >= energy * cycles * (1 - REL)
    space = space_of(layer, arch)
    rng = np.random.default_rng(7)
    checked = 0
    for objective in ("energy", "delay", "edp"):
        f, o, k = sample(space, rng, 3000)
        ok = space.valid(f, k)
        cost = evaluate_batch(space.enc, f[ok], o[ok], k[ok], objective=objective)
        assert cost.energy_pj.min() >= bounds["energy"] * (1 - REL)
        assert cost.cycles.min() >= bounds["delay"]
        assert (cost.energy_pj * cost.cycles).min() >= bounds["edp"] * (1 - REL)
        checked += int(ok.sum())
    assert checked > 100


def _brute_classes(layer, arch):
    """Every spatial assignment by brute force: per axis, every tuple of per-dim divisors
    whose product fits the axis; kept if every dim's factors over all axes divide it."""
    dims = layer.dims
    fans = list(arch.fanouts)
    axes = [(k, size, _axis_dims(fan, axis)) for k, fan in enumerate(fans)
            for axis, size in (("X", fan.X), ("Y", fan.Y)) if size > 1]
    per_axis = []
    for _, size, allowed in axes:
        opts = []
        for combo in itertools.product(*[[v for v in range(1, dims[d] + 1) if dims[d] % v == 0] for d in allowed]):
            if math.prod(combo) <= size:
                opts.append(dict(zip(allowed, combo)))
        per_axis.append(opts)
    out = set()
    for choice in itertools.product(*per_axis):
        total = {d: 1 for d in dims}
        for c in choice:
            for d, v in c.items():
                total[d] *= v
        if any(dims[d] % total[d] for d in dims):
            continue
        sig = [[1, 1, 1, 1] for _ in fans]
        for (k, _, _), c in zip(axes, choice):
            for d, v in c.items():
                sig[k][0] *= v
                for j, t in enumerate(TENSORS):
                    if d in IRRELEVANT[t]:
                        sig[k][1 + j] *= v
        out.add(tuple(tuple(x) for x in sig))
    return out


@pytest.mark.parametrize("arch_name", ["eyeriss_v2", "eyeriss_v1_5"])
def test_classes_are_every_spatial_assignment(arch_name):
    arch = load_arch(arch_name)
    layer = layer_from_dims("small", M=4, C=6, P=2, Q=2, R=3, S=1)
    assert set(_signatures(layer, arch)) == _brute_classes(layer, arch)


def test_replication_raises_the_pointwise_bound_on_v1_scaled():
    """Hand-derived: on v1-scaled's 16 x 12 array, a 1 x 1 layer with M = 16, C = 12 (one
    output pixel) has a class with M on all 16 columns and C on the 12 rows, and one with C
    on the rows alone. Both need the 192 weights at 8 per cycle (24 cycles), so they differ
    only in the iacts: with M across 16 columns each of the 12 iacts is filled into 16 ifmap
    SPads and crosses the array 16 times, 12 x 15 fills and crossings more than with one."""
    from mapper.search.bound import _bounds
    arch = load_arch("eyeriss_v1_scaled")
    layer = layer_from_dims("pw", M=16, C=12)
    by = dict(zip(_signatures(layer, arch), _bounds(layer, arch)))
    wide, narrow = by[((192, 1, 16, 12),)], by[((12, 1, 1, 12),)]
    assert wide[1] == narrow[1] == 192 // 8
    per_iact = arch.level("ifmap_spad").energy_of("Inputs")[1] + arch.level("array").energy_of("Inputs")
    assert wide[0] - narrow[0] == pytest.approx(12 * 15 * per_iact)
    assert objective_bound(layer, arch, "energy") <= narrow[0]
