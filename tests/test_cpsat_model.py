"""CP-SAT's formulation (`mapper.search.cpsat`) against the batch and scalar models.

For valid candidates sampled the way random search samples them (`Space` +
`mapper.search.random.sample`, filtered by `space.valid`), with random network modes
where the arch offers them, every CP-SAT decision is fixed to the candidate
(`cpsat.pinned`: group options, each level's order, each network mode, the keep
pattern) and the pinned model is solved. Its objective must equal the models' cost after
the documented scaling: energy x scale (cpsat.py floors each scaled energy coefficient,
so the value is exact when every coefficient is an integer after scaling), cycles as they
are, and energy x scale x cycles for EDP. The scalar model must agree with the batch
model on the same candidate, so all three encodings are compared on each one.

Scaling: the Eyeriss files' energies are integers (`energy_scale` = 1: exact for dense
layers). Sparse layers use densities 0.5 and 0.25, so every density factor (products of
two densities, times 1 + a metadata overhead with two decimals) is a multiple of 10^-4
and scale x 10^4 makes every coefficient an integer again: exact too. Timeloop's
Eyeriss-like energies need 10^9, more than `energy_scale` allows (10^6), so there the
floored value is a lower bound of the true one, below it by less than one scaled unit per
counted word (see `_floor_tolerance`).

A failure here is a formulation bug: CP-SAT would optimise a different cost than the one
reported, which looks exactly like OR-Tools "proving" a wrong optimum.
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from ortools.sat.python import cp_model

from mapper.arch import Fanout, Storage, load_arch
from mapper.batch import evaluate_batch
from mapper.model import evaluate
from mapper.problem import TENSORS, layer_from_dims, load_network
from mapper.search.cpsat import _edp_shift, energy_scale, pinned
from mapper.search.random import sample
from mapper.search.space import Space

ROOT = Path(__file__).resolve().parent.parent
ARCHS = {"v1": "eyeriss_v1", "v2": "eyeriss_v2", "tl": str(ROOT / "arch" / "timeloop_eyeriss_like.yaml")}
EXACT = {"v1": True, "v2": True, "tl": False}          # every scaled energy coefficient an integer
OBJECTIVES = ("energy", "delay", "edp")
SPARSE = {"weights": 0.5, "inputs": 0.25}
SPARSE_SCALE = 10 ** 4       # density factors are multiples of 1e-4 (module docstring)

LAYERS = {
    "conv": lambda: layer_from_dims("conv", M=4, C=3, P=5, Q=6, R=3, S=3),
    "strided": lambda: layer_from_dims("strided", M=4, C=3, P=5, Q=6, R=3, S=3, stride=(2, 2)),
    "depthwise": lambda: layer_from_dims("dw", G=8, P=6, Q=6, R=3, S=3, stride=(2, 1)),
    "fc": lambda: layer_from_dims("fc", M=16, C=24),
    "grouped": lambda: layer_from_dims("grouped", N=2, G=2, M=3, C=2, P=4, Q=3, R=2, S=3, stride=(1, 2),
                                       dilation=(2, 1)),
}
# Real layers for the slow tier (larger tiles, several sliding loops, real group counts).
REAL = {
    "alexnet.conv2": lambda: load_network("alexnet").layer("conv2"),
    "mobilenet.dw2": lambda: load_network("mobilenet_v1").layer("dw2"),
}
FAST_PER_CASE = 1            # 3 archs x 5 layers x dense/sparse = 30 candidates, 3 objectives each (slow: 12 each)
SLOW_PER_CASE = 12


@lru_cache(maxsize=None)
def arch_of(key):
    return load_arch(ARCHS[key])


@lru_cache(maxsize=None)
def space_of(key, layer_name, sparse):
    layer = {**LAYERS, **REAL}[layer_name]()
    if sparse:
        layer = layer.with_density(SPARSE)
    return Space.build(layer, arch_of(key))


def candidates(space: Space, n: int, seed: int):
    """n valid candidates (factors, orders, keep, modes) with random network modes."""
    rng = np.random.default_rng(seed)
    enc = space.enc
    out = []
    for _ in range(50):
        f, o, k = sample(space, rng, 4096)
        for i in np.nonzero(space.valid(f, k))[0]:
            modes = np.zeros((len(enc.mode_fans), len(TENSORS)), dtype=np.int64)
            for j, li in enumerate(enc.mode_fans):
                for ti, t in enumerate(TENSORS):
                    modes[j, ti] = rng.integers(0, len(enc.arch.levels[li].modes_of(t)))
            out.append((f[i], o[i], k[i], modes))
            if len(out) == n:
                return out
    raise AssertionError(f"fewer than {n} valid candidates sampled for {space.layer.name} on {space.arch.name}")


def solve_pinned(space, objective, f, o, k, md, scale=None, shift=0):
    """(CP-SAT objective value, scale used) of the candidate's pinned model."""
    b = pinned(space, objective, f, o, k, md, scale, shift)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    status = solver.Solve(b.m)
    assert status == cp_model.OPTIMAL, (f"the pinned model of a valid candidate is {solver.StatusName(status)}: "
                                        "the formulation excludes a valid mapping")
    return solver.Value(b.goal), b.scale         # exact integer (ObjectiveValue is a double)


def _floor_tolerance(arch, scale: int) -> float:
    """Relative amount the floored energy may lie below the true energy: each coefficient
    loses less than 1/scale pJ per word of its term; an access counts in at most four terms
    (a count and its first-touch correction, read and network), and every access costs at
    least the cheapest per-word energy of the arch."""
    energies = [e for level in arch.levels if isinstance(level, Storage) for _, es in level.energy for e in es]
    energies += [e for level in arch.levels if isinstance(level, Fanout) for _, e in level.energy]
    cheapest = min(e for e in energies if e > 0)
    return 4 / (scale * cheapest)


def check_case(key: str, layer_name: str, sparse: bool, per_case: int, seed: int) -> int:
    """Check sampled candidates; returns how many were compared exactly."""
    exact = 0
    space = space_of(key, layer_name, sparse)
    arch, layer, enc = space.arch, space.layer, space.enc
    scale = energy_scale(space) * (SPARSE_SCALE if sparse and EXACT[key] else 1)
    for f, o, k, md in candidates(space, per_case, seed):
        batch = evaluate_batch(enc, f[None], o[None], k[None], md[None] if enc.mode_fans else None)
        energy, cycles = float(batch.energy_pj[0]), int(batch.cycles[0])
        scalar = evaluate(layer, arch, enc.decode(f, o, k, md if enc.mode_fans else None))
        assert scalar.cycles == cycles
        assert math.isclose(scalar.energy_pj, energy, rel_tol=1e-12)
        where = f"{layer.name} on {arch.name}{' (sparse)' if sparse else ''}: {enc.decode(f, o, k, md)}"
        delay, _ = solve_pinned(space, "delay", f, o, k, md)
        assert delay == cycles, f"delay: CP-SAT {delay} vs model {cycles} for {where}"
        e_cp, e_scale = solve_pinned(space, "energy", f, o, k, md, scale)
        # EDP: the energy is shifted right as the search does for the candidate's value
        shift = _edp_shift(energy * cycles, e_scale)
        edp_cp, edp_scale = solve_pinned(space, "edp", f, o, k, md, scale, shift)
        assert edp_scale == e_scale
        # exact where the energies scale to integers, unless the scale had to be lowered to keep
        # the objective within 60 bits (a large sparse layer): then floored, as on other archs
        if EXACT[key] and e_scale == scale:
            exact += 1
            assert e_cp == round(energy * scale), f"energy: CP-SAT {e_cp} vs model {energy} x {scale} for {where}"
            assert edp_cp == (round(energy * scale) >> shift) * cycles, f"edp: CP-SAT {edp_cp} for {where}"
        else:
            tol = _floor_tolerance(arch, e_scale)
            assert e_cp <= energy * e_scale * (1 + 1e-12), f"CP-SAT above the model for {where}"
            assert e_cp >= energy * e_scale * (1 - tol), f"CP-SAT {e_cp} vs {energy * e_scale} for {where}"
            assert edp_cp == (e_cp >> shift) * cycles, f"edp: CP-SAT {edp_cp} vs its energy {e_cp} for {where}"
        if sparse and EXACT[key]:
            # With the default scale the floored coefficients keep CP-SAT's energy a lower bound.
            low, low_scale = solve_pinned(space, "energy", f, o, k, md)
            assert low <= energy * low_scale * (1 + 1e-12)
            assert low >= energy * low_scale * (1 - _floor_tolerance(arch, low_scale))
    return exact


# The grouped layer's formulation takes ~10 s a case to solve pinned: the fast tier keeps the
# case with the most features (network modes and sparsity), the other five run in the slow tier.
FAST_GROUPED = ("v2", True)
FAST_CASES = [pytest.param(a, l, s, id=f"{a}-{l}-{'sparse' if s else 'dense'}",
                           marks=pytest.mark.slow if l == "grouped" and (a, s) != FAST_GROUPED else ())
              for a in ARCHS for l in LAYERS for s in (False, True)]


@pytest.mark.parametrize("key,layer_name,sparse", FAST_CASES)
def test_pinned_cpsat_equals_model(key, layer_name, sparse):
    exact = check_case(key, layer_name, sparse, FAST_PER_CASE, seed=1)
    assert exact > 0 or not EXACT[key], "no exact comparison on the small layers of an exact arch"


@pytest.mark.slow
@pytest.mark.parametrize("key,layer_name,sparse", FAST_CASES + [
    pytest.param(a, l, s, id=f"{a}-{l}-{'sparse' if s else 'dense'}") for a in ARCHS for l in REAL
    for s in (False, True)])
def test_pinned_cpsat_equals_model_many(key, layer_name, sparse):
    check_case(key, layer_name, sparse, SLOW_PER_CASE, seed=2)


def test_the_cases_cover_modes_sparsity_and_layer_kinds():
    """The guard is only as good as its coverage: network modes, leakage, sliding inputs."""
    assert any(space_of("v2", "conv", False).enc.mode_fans for _ in [0])
    assert any(isinstance(l, Storage) and l.leakage for l in arch_of("tl").levels)
    kinds = {name: LAYERS[name]().dims for name in LAYERS}
    assert kinds["depthwise"]["G"] > 1 and kinds["depthwise"]["C"] == 1
    assert kinds["grouped"]["G"] > 1 and kinds["grouped"]["C"] > 1
    assert kinds["fc"]["P"] == kinds["fc"]["R"] == 1


def test_pinning_rejects_a_candidate_outside_the_space():
    space = space_of("v1", "conv", False)
    f, o, k, md = candidates(space, 1, seed=3)[0]
    bad = f.copy()
    bad[0, 0] = 7          # N = 1: no option has a factor of 7
    with pytest.raises(ValueError, match="not an option"):
        pinned(space, "energy", bad, o, k, md)
