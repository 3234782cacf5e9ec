"""The analytic bound's spatial classes (mapper/search/bound.py): every valid mapping costs at
least its class' bound, so the least over the classes of energy, cycles and EDP bounds every
mapping; the classes are every spatial assignment the arch allows."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from ortools.sat.python import cp_model

from mapper.arch import load_arch
from mapper.batch import evaluate_batch, objective_of
from mapper.problem import TENSORS, layer_from_dims
from mapper.search.bound import (IRRELEVANT, _axis_dims, _signatures, class_objective, class_of, lower_bound,
                                 objective_bound, signature_columns, spatial_classes)
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


def _sampled(layer, arch, seed, n=3000):
    """Valid mappings sampled as random search samples them, with their batch costs."""
    space = space_of(layer, arch)
    f, o, k = sample(space, np.random.default_rng(seed), n)
    ok = space.valid(f, k)
    return space, f[ok], o[ok], k[ok], evaluate_batch(space.enc, f[ok], o[ok], k[ok])


@pytest.mark.parametrize("density", [None, (0.5, 0.7)], ids=["dense", "sparse"])
@pytest.mark.parametrize("arch_name", ["eyeriss_v2", "eyeriss_v1_scaled"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_every_sampled_mapping_costs_at_least_its_class_bound(name, arch_name, density):
    """What lets CP-SAT leave classes out (Builder.restrict_classes): a mapping's class, read
    off its factors (class_of), is one the bound lists, and the mapping's energy, cycles and
    compute cycles are at least that class's bound (not only the least over classes)."""
    arch = load_arch(arch_name)
    stride = (2, 2) if name == "strided" else (1, 1)
    layer = layer_from_dims(name, stride=stride, **LAYERS[name])
    if density:
        layer = layer.with_density({"weights": density[0], "inputs": density[1]})
    classes = dict(spatial_classes(layer, arch))
    space, f, _, _, cost = _sampled(layer, arch, seed=11)
    columns = signature_columns(arch, space.enc.slots)
    seen = set()
    for i in range(len(f)):
        sig = class_of(columns, f[i])
        assert sig in classes, f"mapping {i}: class {sig} not listed"
        # the mapping is in one of its class' cases: at least that case's energy and cycles
        assert any(cost.energy_pj[i] >= energy * (1 - REL) and cost.cycles[i] >= cycles
                   and cost.compute_cycles[i] >= compute for energy, cycles, compute in classes[sig])
        seen.add(sig)
    assert len(seen) >= 5, "the samples should span several classes"


@pytest.mark.parametrize("objective", ["energy", "delay"])
def test_a_restricted_model_admits_exactly_the_classes_that_can_beat_the_value(objective):
    """Builder.restrict_classes(V, own): a mapping pinned in the CP-SAT model stays feasible
    if and only if its class's bound is at most V or it is in the class of `own`."""
    from mapper.search.cpsat import pinned
    arch = load_arch("eyeriss_v2")
    layer = layer_from_dims("conv", M=8, C=4, P=4, Q=4, R=3, S=3)
    classes = dict(spatial_classes(layer, arch))
    space, f, o, k, _ = _sampled(layer, arch, seed=5, n=600)
    columns = signature_columns(arch, space.enc.slots)
    sigs = [class_of(columns, x) for x in f]
    bound = {sig: class_objective(objective, classes[sig]) for sig in set(sigs)}
    value = float(np.median(list(bound.values())))
    own = max(range(len(f)), key=lambda i: bound[sigs[i]])          # a class the value excludes
    first = {}
    for i, sig in enumerate(sigs):
        first.setdefault(sig, i)
    outcomes = set()
    for sig, i in list(first.items())[:24]:
        b = pinned(space, objective, f[i], o[i], k[i])
        b.restrict_classes(value, f[own])
        solver = cp_model.CpSolver()
        solver.parameters.num_workers = 1
        status = solver.Solve(b.m)
        admitted = bound[sig] <= value * (1 + 1e-9) or sig == sigs[own]
        assert (status == cp_model.OPTIMAL) == admitted, f"class {sig}: bound {bound[sig]} vs {value}"
        outcomes.add(admitted)
    assert outcomes == {True, False}, "both admitted and excluded classes should be checked"


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
    from mapper.search.bound import _class_cases
    arch = load_arch("eyeriss_v1_scaled")
    layer = layer_from_dims("pw", M=16, C=12)
    by = {sig: cases[0] for sig, cases in zip(_signatures(layer, arch), _class_cases(layer, arch))}
    wide, narrow = by[((192, 1, 16, 12),)], by[((12, 1, 1, 12),)]
    assert wide[1] == narrow[1] == 192 // 8
    per_iact = arch.level("ifmap_spad").energy_of("Inputs")[1] + arch.level("array").energy_of("Inputs")
    assert wide[0] - narrow[0] == pytest.approx(12 * 15 * per_iact)
    assert objective_bound(layer, arch, "energy") <= narrow[0]



@pytest.mark.parametrize("density", [None, pytest.param((0.5, 0.7), marks=pytest.mark.slow)], ids=["dense", "sparse"])
def test_residency_cases_hold_over_a_whole_space_and_are_attained(density, monkeypatch):
    """The capacity cases (bound._Residency) over every candidate of a v2 space whose
    reduction (C = 32) is more than the iact SPad lets one partial sum accumulate (16):
    every candidate costs at least the energy and cycles of one case of its
    class, some classes' cases rise above the bound without them (partial sums refilled),
    and (dense) in some of those the best candidate costs exactly its case's bound."""
    from mapper.search import bound as bound_module
    from mapper.search.exhaustive import _batches
    arch = load_arch("eyeriss_v2")
    layer = layer_from_dims("deep", M=2, C=32, P=2, Q=2)
    if density:
        layer = layer.with_density({"weights": density[0], "inputs": density[1]})
    sigs = _signatures(layer, arch)
    with_cases = dict(zip(sigs, bound_module._class_cases(layer, arch)))
    monkeypatch.setattr(bound_module._Residency, "of", classmethod(lambda cls, s: None))
    without = dict(zip(sigs, bound_module._class_cases(layer, arch)))
    monkeypatch.undo()
    flat = {tuple(x for fan in sig for x in fan): sig for sig in sigs}
    space = space_of(layer, arch)
    columns = signature_columns(arch, space.enc.slots)
    best: dict = {}
    n = 0
    for f, o, k, _ in _batches(space, 1 << 15, lambda: False):
        cost = evaluate_batch(space.enc, f, o, k)
        for i in range(len(f)):
            sig = flat[class_of(columns, f[i])]
            e, c = cost.energy_pj[i], cost.cycles[i]
            assert any(e >= a * (1 - REL) and c >= b for a, b, _ in with_cases[sig]), (sig, e, c)
            best[sig] = min(best.get(sig, math.inf), e * c)
        n += len(f)
    assert n > 10_000
    raised = [sig for sig in best if class_objective("edp", with_cases[sig]) > class_objective("edp", without[sig]) * 1.001]
    assert raised, "the SPads' capacity should raise some classes' bounds"
    if density is None:         # (zeros make the counts fractional: the dense case is the sharp one)
        attained = [sig for sig in raised if best[sig] <= class_objective("edp", with_cases[sig]) * (1 + REL)]
        assert attained, "some raised class bound should be met by a mapping of the class"

# ---------------------------------------------------------------------------------------
# The imperfect bound (factorization="imperfect"): every mapping with remainders too

#: Odd sizes (primes) so that most splits leave remainders (as tests/test_imperfect.py).
ODD = {
    "odd": dict(M=3, C=3, P=5, Q=3, R=3, S=2),
    "stride2": dict(stride=(2, 2), M=3, C=2, P=5, Q=3, R=3, S=2),
    "depthwise": dict(G=5, C=1, M=1, P=5, Q=3, R=3, S=3),
    "fc": dict(N=3, M=7, C=5),
}


@pytest.mark.parametrize("density", [None, (0.5, 0.7)], ids=["dense", "sparse"])
@pytest.mark.parametrize("arch_name", ["eyeriss_v1", "eyeriss_v2"])
@pytest.mark.parametrize("name", list(ODD))
def test_every_remainder_mapping_costs_at_least_the_imperfect_bound(name, arch_name, density):
    """Random valid remainder mappings (tests/imperfect_gen.py: random slots, factors,
    keeps and network modes), each counted exactly by the scalar model, never go below the
    imperfect bound; that bound is no higher than the perfect one (every argument is a
    relaxation of it) and not trivial (above the MAC energy, at least MACs / PEs cycles)."""
    import random

    from imperfect_gen import random_imperfect_mapping
    from mapper.model import Sparse, evaluate
    arch = load_arch(arch_name)
    layer = layer_from_dims(name, **ODD[name])
    if density:
        layer = layer.with_density({"weights": density[0], "inputs": density[1]})
    objectives = ("energy", "delay", "edp")
    bounds = {o: objective_bound(layer, arch, o, "imperfect") for o in objectives}
    energy, cycles, _ = lower_bound(layer, arch, "imperfect")
    assert bounds["energy"] == pytest.approx(energy) and bounds["delay"] == cycles
    assert bounds["edp"] == pytest.approx(energy * cycles)      # one (energy, cycles) pair: no classes
    for o in objectives:
        assert bounds[o] <= objective_bound(layer, arch, o) * (1 + REL)
    sparse = Sparse.of(layer, arch)
    assert energy > layer.macs * arch.mac_energy * sparse.mac_energy
    assert cycles >= math.ceil(layer.macs * sparse.mac_cycles / arch.pes - 1e-9)
    rng = random.Random(f"bound/{arch_name}/{name}/{density}")
    costs = [evaluate(layer, arch, m) for m in (random_imperfect_mapping(layer, arch, rng) for _ in range(25))
             if m is not None]
    assert len(costs) >= 20
    for o in objectives:
        assert min(c.objective(o) for c in costs) >= bounds[o] * (1 - REL), o
    assert min(c.compute_cycles for c in costs) >= lower_bound(layer, arch, "imperfect")[2]


def test_a_remainder_pass_beats_the_perfect_compute_bound_but_not_the_imperfect_one():
    """Hand-derived: a depthwise layer of G = 5 on v1s's 4 x 3 array. No divisor of 5 fits
    an axis, so perfect mappings run on one PE (5 compute cycles); G as 3 steps of 2 on X
    over 2 on Y covers the 5 groups in one step (offsets 2x + y < 5: five of the six PEs),
    one compute cycle, which is what the imperfect bound allows."""
    from test_search import arch as small_arch

    from mapper.mapping import Loop, normalize, problems_of
    from mapper.model import evaluate
    from mapper.search.bound import usable_pes
    arch = small_arch("v1s")
    layer = layer_from_dims("dw5", G=5)
    m = normalize([Loop("array", "G", 3, "X"), Loop("array", "G", 2, "Y")], arch)
    assert not problems_of(m, layer, arch)
    cost = evaluate(layer, arch, m)
    assert (cost.compute_cycles, cost.active_pes) == (1, 5)
    assert (usable_pes(layer, arch), usable_pes(layer, arch, imperfect=True)) == (1, 5)
    assert lower_bound(layer, arch)[2] == 5 > cost.compute_cycles == lower_bound(layer, arch, "imperfect")[2]
    assert cost.energy_pj >= lower_bound(layer, arch, "imperfect")[0] * (1 - REL)


def test_imperfect_usable_pes_and_steps_on_eyeriss_v1_alexnet_conv1():
    """Hand-derived: conv1 (M 96, C 3, P 55, R 11) on the 14 x 12 array. Divisors reach
    12 x 12 = 144 (M 12 on X, C 3 x M 4 on Y; 55's divisors 5, 11 leave X short); with
    remainders P 55 fills the 14 columns (4 passes, the last on 13) and C 3 x M 4 the rows."""
    from mapper.search.bound import fewest_steps, usable_pes
    layer = layer_from_dims("conv1", M=96, C=3, P=55, Q=55, R=11, S=11, stride=(4, 4))
    arch = load_arch("eyeriss_v1")
    assert usable_pes(layer, arch) == 144
    assert usable_pes(layer, arch, imperfect=True) == 168
    # but not evenly: P 55 in 4 steps of 14 and C 3 x M 4 on the rows (M in 24 steps), or
    # M 12 on the rows (8 steps, C 3 in time), leave Q 55, R 11, S 11 in time: 638,880
    # steps, above MACs / 168 = 627,472 and below the perfect 732,050
    assert fewest_steps(layer, arch) == 4 * 24 * 55 * 11 * 11 == lower_bound(layer, arch, "imperfect")[2]
    assert layer.macs / 168 < 638_880 < lower_bound(layer, arch)[2] == 732_050
