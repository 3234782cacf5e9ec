"""The batch's remainder path (mapper.remainder_batch with mapper.remainder_groups) equals
the scalar model (mapper.model.evaluate, whose `_Remainders` is the reference) on random
candidates with remainders: small arch variants of both Eyeriss level structures with
odd, strided, dilated, depthwise and FC shapes, densities, network modes, and AlexNet
layers on the real eyeriss_v1 / eyeriss_v2 from the imperfect mapspace. The closed forms
are also checked group by group against the pass over the tuples they replace."""
from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from mapper.arch import load_arch
from mapper.batch import Encoding, evaluate_batch, objective_of
from mapper.model import evaluate
from mapper.problem import DIMS, layer_from_dims, load_network
from mapper.remainder_batch import evaluate_remainders, remainder_rows
from mapper.remainder_groups import (ALL, FIRST, GroupSpec, _Radix, distinct_points, grid_sums,
                                     group_sums, valid_tuples)

from imperfect_gen import random_imperfect_mapping
from test_imperfect import SHAPES, V1, V2
from test_oracle import arch_of

TENSORS = ("Weights", "Inputs", "Outputs")
DENSITIES = ({}, {"weights": 0.4, "inputs": 0.7})


def assert_batch_equals_model(enc, f, o, k, modes=None, objective="edp", rivals: int | None = None) -> int:
    """evaluate_remainders on these rows equals the model on each decoded mapping (with the
    modes the batch chose or was given), counts included; with modes chosen, no other mode
    assignment (all, or `rivals` of them drawn at random) is better for the model. Returns
    the rows checked."""
    layer, arch = enc.layer, enc.arch
    energy, cycles, compute, counts, chosen = evaluate_remainders(enc, f, o, k, modes, objective, True)
    for i in range(len(f)):
        m = enc.decode(f[i], o[i], k[i], chosen[i] if enc.mode_fans else None)
        ref = evaluate(layer, arch, m)
        where = f"{arch.name} {layer.name} row {i}"
        assert energy[i] == pytest.approx(ref.energy_pj, rel=1e-9), where
        assert cycles[i] == ref.cycles and compute[i] == ref.compute_cycles, where
        for si, li in enumerate(enc.storage_levels):
            per = ref.levels[arch.levels[li].name]
            for ti, t in enumerate(TENSORS):
                want = (per[t].reads, per[t].fills, per[t].updates) if t in per else (0, 0, 0)
                assert tuple(counts[i, si, ti]) == pytest.approx(want, rel=1e-9), (where, arch.levels[li].name, t)
        if modes is None and enc.mode_fans:
            best = float(objective_of(objective, energy[i], cycles[i], compute[i]))
            options = enc.assignments()
            if rivals is not None and rivals < len(options):
                options = options[np.random.default_rng(i).choice(len(options), rivals, replace=False)]
            for md in options:
                c = evaluate(layer, arch, enc.decode(f[i], o[i], k[i], md), validate=False)
                assert float(objective_of(objective, c.energy_pj, c.cycles, c.compute_cycles)) >= best * (1 - 1e-9)
    return len(f)


def small_cases(archs, per_case: int, seed: str):
    """(layer, arch, mappings) over arch variants, shapes and densities."""
    for a in archs:
        arch = arch_of(a)
        for shape, dims in SHAPES.items():
            for dens in DENSITIES:
                layer = layer_from_dims(shape, **dims).with_density(dens) if dens else layer_from_dims(shape, **dims)
                rng = random.Random(f"{seed}/{a}/{shape}/{sorted(dens.items())}")
                maps = [m for m in (random_imperfect_mapping(layer, arch, rng) for _ in range(per_case)) if m]
                if maps:
                    yield layer, arch, maps


def check_small(archs, per_case: int, seed: str, rivals: int | None = None) -> int:
    checked = 0
    for layer, arch, maps in small_cases(archs, per_case, seed):
        enc = Encoding.of(layer, arch)
        rows = [enc.encode(m) for m in maps]
        f, o, k = (np.stack([r[i] for r in rows]) for i in range(3))
        assert remainder_rows(enc, f).all()
        checked += assert_batch_equals_model(enc, f, o, k, rivals=rivals)
        if enc.mode_fans:         # the mappings' own (random) modes, fixed
            modes = np.stack([enc.encode_modes(m) for m in maps])
            checked += assert_batch_equals_model(enc, f, o, k, modes)
    return checked


def test_remainder_batch_equals_model_on_small_variants():
    """Fast tier: both Eyeriss level structures (plain, bypass, SIMD, network modes), every
    shape, two densities."""
    assert check_small(["v1", "v1_bypass", "v2", "v2_simd", "v2_modes"], 1, "fast", rivals=4) >= 40


@pytest.mark.slow
def test_remainder_batch_equals_model_on_many_small_variants():
    """Slow tier: every arch variant of both structures, 6 mappings per case."""
    assert check_small(list(V1) + list(V2), 6, "slow") >= 600


def alexnet_rows(arch_name: str, layer_name: str, n: int, seed: int):
    from mapper.search.random import sample
    from mapper.search.space import space_of
    layer, arch = load_network("alexnet").layer(layer_name), load_arch(arch_name)
    space = space_of(layer, arch, "imperfect")
    rng = np.random.default_rng(seed)
    parts, have = [], 0
    for _ in range(200):              # (few samples fit Eyeriss v2's capacities)
        f, o, k = sample(space, rng, 512)
        ok = space.valid(f, k) & remainder_rows(space.enc, f)
        parts.append((f[ok], o[ok], k[ok]))
        have += int(ok.sum())
        if have >= n:
            f, o, k = (np.concatenate([p[i] for p in parts])[:n] for i in range(3))
            sub = space.perfect_subspace()
            pf, po, pk = sample(sub, rng, 256)
            good = sub.valid(pf, pk)
            return space.enc, f, o, k, (pf[good][:2], po[good][:2], pk[good][:2])
    raise AssertionError("no remainder candidates sampled")


@pytest.mark.parametrize("arch_name", ["eyeriss_v1", "eyeriss_v2"])
def test_remainder_batch_equals_model_on_alexnet(arch_name):
    """Fast tier: real archs (capacities, network modes and ports on v2, sparsity), AlexNet
    conv1 (stride 4); in one evaluate_batch with perfect rows, each part as on its own."""
    enc, f, o, k, perfect = alexnet_rows(arch_name, "conv1", 2, 1)
    assert_batch_equals_model(enc, f, o, k, rivals=2)
    pf, po, pk = perfect
    both = evaluate_batch(enc, np.concatenate([f, pf]), np.concatenate([o, po]), np.concatenate([k, pk]),
                          objective="edp", with_counts=True)
    alone = evaluate_batch(enc, pf, po, pk, objective="edp", with_counts=True)
    odd = evaluate_remainders(enc, f, o, k, None, "edp", True)
    assert np.array_equal(both.energy_pj, np.concatenate([odd[0], alone.energy_pj]))
    assert np.array_equal(both.counts, np.concatenate([odd[3], alone.counts]))


@pytest.mark.slow
@pytest.mark.parametrize("arch_name", ["eyeriss_v1", "eyeriss_v2"])
def test_remainder_batch_equals_model_on_all_alexnet_layers(arch_name):
    """Slow tier: every AlexNet layer (the FC ones: one-dimension groups in closed form)."""
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"):
        enc, f, o, k, _ = alexnet_rows(arch_name, name, 3, 2)
        assert_batch_equals_model(enc, f, o, k, rivals=3)


def random_radix_spec(rng: random.Random, axis: bool) -> GroupSpec:
    """A one-dimension group: 1-4 loops, mixed-radix steps, a size its tiles cover."""
    n = rng.randint(0, 4)
    factors = tuple(rng.randint(1, 4) for _ in range(n))
    nominal = rng.randint(1, 4)
    steps, step = [], nominal
    for f in reversed(factors):
        steps.append(step)
        step *= f
    total = step                         # nominal x all factors
    size = rng.randint(max(1, total - nominal + 1), total) if n else rng.randint(1, nominal)
    kinds = tuple(rng.choice("TTPB") for _ in range(n))
    return GroupSpec(factors, tuple(reversed(steps)), (0,) * n, kinds,
                     tuple(rng.randint(0, 1) if k == "B" else -1 for k in kinds),
                     tuple(k == "B" and rng.random() < 0.5 for k in kinds), (size,), (nominal,),
                     (((0, rng.randint(1, 3)),),) if axis else ())


def all_classes(spec: GroupSpec):
    n = len(spec.factors)
    own = [("own", j) for j in range(n) if spec.kinds[j] == "T"]
    reset = sorted({("reset", j) for j in range(n + 1)
                    if j == n or spec.kinds[j] == "T"})
    return [(FIRST,), (ALL,)] + own + reset


@pytest.mark.parametrize("axis", [True, False])
def test_closed_form_group_sums_equal_the_pass_over_tuples(axis):
    """Every event class of 400 random one-dimension groups (with and without a tensor axis):
    the closed form (_Radix) gives the enumeration's sums, all children and distinct."""
    rng = random.Random(f"radix/{axis}")
    for _ in range(400):
        spec = random_radix_spec(rng, axis)
        assert _Radix.of(spec) is not None
        classes = all_classes(spec)
        assert group_sums(spec, classes) == grid_sums(spec, classes), spec


def test_closed_form_needs_mixed_radix_steps():
    spec = GroupSpec((3, 2), (2, 1), (0, 0), ("T", "T"), (-1, -1), (False, False), (5,), (1,), ())
    assert _Radix.of(spec) is not None
    assert _Radix.of(GroupSpec((3, 2), (4, 1), (0, 0), ("T", "T"), (-1, -1), (False, False), (5,), (1,), ())) is None


def test_valid_tuples_and_distinct_points_equal_brute_force():
    rng = random.Random("points")
    for _ in range(300):
        spec = random_radix_spec(rng, rng.random() < 0.5)
        want = sum(1 for ix in itertools.product(*(range(f) for f in spec.factors))
                   if sum(i * s for i, s in zip(ix, spec.steps)) < spec.sizes[0])
        assert valid_tuples(spec.factors, spec.steps, spec.sizes[0]) == want
        # points: every loop of the dimension (innermost step 1), parent loops random
        steps, step = [], 1
        for f in reversed(spec.factors):
            steps.append(step)
            step *= f
        size = rng.randint(max(1, step // 2), step)
        parent = tuple(rng.random() < 0.4 for _ in spec.factors)
        ps = GroupSpec(spec.factors, tuple(reversed(steps)), spec.dimpos, tuple("P" if p else "T" for p in parent),
                       (-1,) * len(parent), (False,) * len(parent), (size,), (1,), spec.axes)
        seen = {(tuple(i for i, p in zip(ix, parent) if p),
                 sum(i * s for i, s in zip(ix, ps.steps)) if spec.axes else None)
                for ix in itertools.product(*(range(f) for f in spec.factors))
                if sum(i * s for i, s in zip(ix, ps.steps)) < size}
        assert distinct_points(ps) == len(seen), ps


def random_window_spec(rng: random.Random, merge: bool) -> GroupSpec:
    """A two-dimension group (an input axis stride * p + dilation * r): 0-3 loops per dim in
    a random nest order, each dim's steps mixed radix over its nominal tile."""
    per_dim, sizes, nominal = [], [], []
    for dp in (0, 1):
        n = rng.randint(0, 3)
        factors = [rng.randint(2, 4) for _ in range(n)]
        nom = rng.randint(1, 3)
        steps, step = [], nom
        for f in reversed(factors):
            steps.append(step)
            step *= f
        sizes.append(rng.randint(max(1, step - nom + 1), step) if n else rng.randint(1, nom))
        nominal.append(nom)
        per_dim.append([(f, st, dp) for f, st in zip(factors, reversed(steps))])   # outermost first
    rows = []
    while per_dim[0] or per_dim[1]:          # interleave, each dim's loops staying in order
        rows.append(per_dim[rng.choice([d for d in (0, 1) if per_dim[d]])].pop(0))
    kinds = tuple(rng.choice("TTPB") for _ in rows)
    apart = tuple(k == "B" and (not merge or rng.random() < 0.5) for k in kinds)
    return GroupSpec(tuple(r[0] for r in rows), tuple(r[1] for r in rows), tuple(r[2] for r in rows), kinds,
                     tuple(0 if k == "B" else -1 for k in kinds), apart, tuple(sizes), tuple(nominal),
                     (((0, rng.randint(1, 3)), (1, rng.randint(1, 2))),))


def test_separable_window_sums_equal_the_pass_over_tuples():
    """300 random two-dimension groups whose children never merge: per-dimension signatures
    give the enumeration's sums for every event class; with merging children the grid is
    used (the separable form declines)."""
    from mapper.remainder_groups import _separable_sums
    rng = random.Random("window")
    used = 0
    for _ in range(300):
        spec = random_window_spec(rng, merge=False)
        classes = all_classes(spec)
        got = _separable_sums(spec, classes)
        assert got is not None
        assert got == grid_sums(spec, classes), spec
        used += 1
    declined = [s for s in (random_window_spec(rng, merge=True) for _ in range(50))
                if any(k == "B" and not a for k, a in zip(s.kinds, s.apart))]
    assert declined and all(_separable_sums(s, all_classes(s)) is None for s in declined)
    assert used == 300


def test_remainder_rows_flags_exactly_the_rows_whose_products_miss_a_size():
    layer, arch = layer_from_dims("odd", **SHAPES["odd"]), arch_of("v1")
    enc = Encoding.of(layer, arch)
    rng = np.random.default_rng(0)
    f = rng.integers(1, 6, (500, enc.n_slots, 8))
    f[:100] = 1
    f[:100, 0] = [layer.dims[d] for d in DIMS]     # perfect rows
    f[50:100, 3, DIMS.index("P")] = 2              # P's product doubled: remainder rows
    sizes = np.array([layer.dims[d] for d in DIMS])
    want = (np.prod(f, axis=1) != sizes).any(axis=1)
    assert want[50:].all() and not want[:50].any()
    assert np.array_equal(remainder_rows(enc, f), want)
    assert np.array_equal(remainder_rows(enc, f[:0]), want[:0])


def test_fast_link_sums_equal_the_models_link_by_link():
    """FastRemainders.sums equals model._Remainders.sums on every (tensor, parent, child)
    link of the small samples, every field and event (not only what evaluate reads), and
    the instance and valid counts."""
    from mapper.arch import Storage
    from mapper.model import _Nest, _Remainders
    from mapper.remainder_batch import FastRemainders
    links = 0
    for layer, arch, maps in small_cases(["v1", "v1_projection", "v2", "v2_simd", "v2_modes"], 1, "links"):
        storages = [i for i, lv in enumerate(arch.levels) if isinstance(lv, Storage)]
        for m in maps:
            nest = _Nest(layer, arch, m)
            ref, fast = _Remainders(nest), FastRemainders(nest)
            assert fast.valid_count("T") == ref.valid_count("T") and fast.valid_count("S") == ref.valid_count("S")
            for t in TENSORS:
                chain = [i for i in storages if t in m.kept(arch.levels[i].name)]
                for pos, p in enumerate(chain):
                    c = chain[pos + 1] if pos + 1 < len(chain) else None
                    assert fast.sums(t, p, c) == ref.sums(t, p, c), (arch.name, layer.name, t, p, c)
                    assert fast.instances(p) == ref.instances(p)
                    links += 1
            innermost = [i for i in storages if "Outputs" in m.kept(arch.levels[i].name)][-1]
            assert fast._first_points("Outputs", innermost) == ref._first_points("Outputs", innermost)
    assert links >= 200


@pytest.mark.parametrize("limit", [None, 3])
def test_group_cache_shared_across_batches_keeps_the_model_numbers(monkeypatch, limit):
    """The group sums are kept on the encoding across batches (the remainder descent scores
    one neighbour at a time): neighbours of a remainder candidate scored one by one, first
    to last and then last to first (other cache contents before each), equal the model;
    with a tiny limit the cache starts over instead of growing."""
    import mapper.remainder_batch as rb
    from mapper.search.space import space_of
    if limit is not None:
        monkeypatch.setattr(rb, "GROUP_CACHE_LIMIT", limit)
    enc, f, o, k, _ = alexnet_rows("eyeriss_v1", "conv2", 1, 3)
    space = space_of(enc.layer, enc.arch, "imperfect")
    nb = space.factor_neighbours(f[0])
    nb = nb[space.valid(nb, np.repeat(k[:1], len(nb), axis=0)) & remainder_rows(enc, nb)][:12]
    assert len(nb) >= 6
    cache = enc.plans.setdefault("remainder groups", {})

    def held():
        return sum(len(v) for v in cache.values())

    for rows in (range(len(nb)), reversed(range(len(nb)))):
        for i in rows:
            assert_batch_equals_model(enc, nb[i:i + 1], o[:1], k[:1])
            if limit is not None:
                now = held()
                cache.clear()
                evaluate_remainders(enc, nb[i:i + 1], o[:1], k[:1], None, "edp", False)
                # started over past the limit, then at most what this candidate adds alone
                assert now <= limit + held()
