"""The imperfect (remainder) mapspace and search over it (`--factorization imperfect`).

The space (mapper.search.space): every row of a dimension's remainder factorizations is a
valid remainder nest (mapping.problems_of accepts it), the unpruned enumeration is every
valid nest (brute force over all factor tuples), counting agrees with listing, the
pruning keeps the balanced factors, and the perfect factorizations are a subset.
Search: exhaustive over the imperfect space of small layers is never worse than over the
perfect one (a subset), the pruned imperfect space loses nothing against the unpruned one
on tiny layers, random and hybrid are reproducible by seed and never worse than their
perfect runs, a hybrid result over the imperfect space never claims a proof CP-SAT
did not give, and on spaces small enough to enumerate hybrid and CP-SAT equal exhaustive. Its bound and gap are the imperfect analytic bound's (bound.py), which is
never above the exhaustive imperfect optimum (where the perfect bound can be).
"""
from __future__ import annotations

import importlib
import itertools
import math
from functools import lru_cache

import numpy as np
import pytest

from mapper.mapping import Loop, normalize, problems_of
from mapper.problem import DIMS, layer_from_dims
from mapper.search import search
from mapper.search.bound import objective_bound
from mapper.search.space import (Space, balanced_factors, count_remainder_factorizations,
                                 ordered_factorizations, remainder_factorizations)
from mapper.spec import MapperError

from test_search import CASE, arch

REL = 1e-9


def valid_nest(n: int, row: tuple[int, ...]) -> bool:
    """The validity rule of mapping.problems_of for one dimension's loops (outermost first),
    written out: the factors cover n and the outermost loop's last step starts inside."""
    loops = [f for f in row if f > 1]
    if math.prod(loops) < n:
        return False
    if not loops:
        return n == 1
    step = math.prod(loops[1:])
    return (loops[0] - 1) * step < n


@pytest.mark.parametrize("n,limits", [(7, (None, None, None)), (12, (None, 3, None)), (10, (None, 4, 2, None)),
                                      (1, (None, None)), (9, (2, 2))])
def test_unpruned_remainder_nests_are_exactly_the_valid_ones(n, limits):
    rows = {tuple(r) for r in remainder_factorizations(n, limits, False)}
    tops = [n if l is None else min(n, l) for l in limits]
    brute = {r for r in itertools.product(*(range(1, t + 1) for t in tops)) if valid_nest(n, r)}
    assert rows == brute
    assert count_remainder_factorizations(n, limits, False) == len(brute)


@pytest.mark.parametrize("n,limits", [(55, (None, None, 14, None)), (13, (None, 4, 3)), (27, (None, 14, None))])
def test_pruned_rows_are_valid_balanced_and_contain_the_perfect_ones(n, limits):
    rows = remainder_factorizations(n, limits, True)
    assert len(rows) == count_remainder_factorizations(n, limits, True)
    assert len({tuple(r) for r in rows}) == len(rows)
    for r in rows:
        assert valid_nest(n, tuple(r))
        # inside out, every factor is the smallest giving its number of outer tiles
        tiles = n
        for f in reversed(r):
            assert f == -(-tiles // -(-tiles // f))
            tiles = -(-tiles // f)
    perfect = {tuple(r) for r in ordered_factorizations(n, limits)}
    assert perfect <= {tuple(r) for r in rows}
    assert perfect == {tuple(r) for r in rows if math.prod(r) == n}


def test_balanced_factors():
    assert balanced_factors(55) == (1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 14, 19, 28, 55)
    for n in (1, 2, 17, 60, 97):
        want = sorted({-(-n // q) for q in range(1, n + 1)})
        assert list(balanced_factors(n)) == want
        assert all(d in balanced_factors(n) for d in range(1, n + 1) if n % d == 0)


def test_space_rows_are_valid_mappings_and_the_perfect_mask_is_right():
    key, layer = CASE["v1s-stride2"]
    a = arch(key)
    imp = Space.build(layer, a, "imperfect")
    per = Space.build(layer, a, "perfect")
    assert imp.factorization == "imperfect" and per.factorization == "perfect"
    for d, (fi, fp, mask) in enumerate(zip(imp.factorizations, per.factorizations, imp.perfect)):
        assert {tuple(r) for r in fp} == {tuple(r) for r in fi[mask]}
        assert (np.prod(fi[mask], axis=1) == layer.dims[DIMS[d]]).all()
    assert imp.n_factorizations > per.n_factorizations
    # every imperfect factorization of P with the other dims outermost is a valid mapping
    p = DIMS.index("P")
    names = [a.levels[li].name for li, _ in imp.enc.slots]
    for row in imp.factorizations[p]:
        loops = [Loop(names[s], "P", int(f), None if imp.enc.slots[s][1] == "T" else imp.enc.slots[s][1])
                 for s, f in zip(imp.dim_slots[p], row)]
        loops += [Loop(a.levels[0].name, d, layer.dims[d]) for d in DIMS if d != "P"]
        m = normalize(loops, a)
        cover = [msg for field, msg in problems_of(m, layer, a) if "cover" in msg or "factors multiply" in msg]
        assert not cover, (row, cover)


def test_space_report_names_the_factorization():
    key, layer = CASE["v1s-stride2"]
    rows = Space.build(layer, arch(key), "imperfect").report()
    assert rows[0][0].startswith("factorization (imperfect")
    assert any("perfect)" in r[2] for r in rows)


def test_unknown_factorization_is_a_clear_error():
    key, layer = CASE["v1s-stride2"]
    with pytest.raises(MapperError, match="--factorization"):
        search(layer, arch(key), factorization="ragged")


# ---------------------------------------------------------------------------------------
# Search over the imperfect space (small layers: remainder candidates are counted one at a
# time, exactly, so these stay small)

SMALL = ["v1s-fc", "v2s-fc"]


def best(res, objective="edp"):
    return res.best.cost.objective(objective)


#: M = 5 filters of C = 3 on v1s's 4 x 3 array: a remainder mapping beats the perfect bound.
ODD = ("v1s", layer_from_dims("odd", M=5, C=3))


def exhaustive(cid: str, factorization: str, objective: str = "edp"):
    return _exhaustive(cid, factorization, objective)     # (one cache entry per search)


@lru_cache(maxsize=None)
def _exhaustive(cid: str, factorization: str, objective: str):
    key, layer = ODD if cid == "odd" else CASE[cid]
    return search(layer, arch(key), algorithm="exhaustive", objective=objective, factorization=factorization)


@pytest.mark.parametrize("cid", ["v1s-fc", pytest.param("v2s-fc", marks=pytest.mark.slow)])
def test_exhaustive_imperfect_is_never_worse_than_perfect_and_is_a_proof(cid):
    per, imp = exhaustive(cid, "perfect"), exhaustive(cid, "imperfect")
    assert imp.status == "optimal" and imp.reason == "exhaustive"
    assert best(imp) <= best(per) * (1 + REL)
    assert imp.evaluated > per.evaluated
    assert imp.documents()[0]["search"]["factorization"] == "imperfect"
    assert per.documents()[0]["search"]["factorization"] == "perfect"


@pytest.mark.slow
def test_pruned_imperfect_space_loses_nothing_on_a_tiny_layer():
    """The balanced-factor rule (space.py) against every remainder nest, by exhaustive search."""
    from mapper.search import _Run
    from mapper.progress import Progress
    import time
    key, layer = "v1s", layer_from_dims("tiny", M=3, C=5)
    a = arch(key)
    values = {}
    for prune in (True, False):
        space = Space.build(layer, a, "imperfect", prune=prune)
        run = _Run(space, "edp", 1, Progress(enabled=False), time.monotonic(), None, "tiny")
        run.exhaustive()
        values[prune] = run.pool.best
    assert Space.build(layer, a, "imperfect", prune=False).n_factorizations > \
        Space.build(layer, a, "imperfect").n_factorizations
    assert values[True] == pytest.approx(values[False], rel=REL)


def assert_imperfect_gap(res, objective="edp"):
    """An imperfect search's bound is the imperfect analytic bound (capped at the best),
    and its gap is (best - bound) / best, between 0 and 1."""
    layer, a = res.layer, res.arch
    value = best(res, objective)
    floor = objective_bound(layer, a, objective, "imperfect")
    assert res.bound is not None and res.gap is not None
    assert res.bound == pytest.approx(min(floor, value), rel=REL)
    assert 0 < res.bound <= value * (1 + REL)
    assert 0 <= res.gap < 1 and res.gap == pytest.approx((value - res.bound) / value, abs=1e-12)
    doc = res.documents()[0]["search"]
    assert doc["bound"] == res.bound and doc["gap"] == res.gap


@pytest.mark.parametrize("cid", SMALL)
def test_hybrid_imperfect_status_and_quality(cid, monkeypatch):
    # as for a space too large to enumerate (see the next test for the small ones)
    monkeypatch.setattr(importlib.import_module("mapper.search"), "SMALL_IMPERFECT", 0)
    key, layer = CASE[cid]
    per = search(layer, arch(key), seed=3)
    imp = search(layer, arch(key), seed=3, factorization="imperfect")
    # the perfect space is a subset: the perfect phases alone reach the perfect result
    assert best(imp) <= best(per) * (1 + REL)
    # CP-SAT models perfect options only: "optimal" over the imperfect space only when the
    # best meets the imperfect analytic bound
    assert imp.reason == ("analytic bound" if imp.status == "optimal" else "perfect subspace proof")
    assert_imperfect_gap(imp)
    assert (imp.status == "optimal") == (imp.gap <= 1e-9)
    assert imp.subspace_bound == pytest.approx(best(per), rel=1e-6)
    doc = imp.documents()[0]["search"]
    assert doc["perfect_subspace_bound"] == imp.subspace_bound


@pytest.mark.parametrize("cid", ["v1s-fc", "odd", pytest.param("v2s-fc", marks=pytest.mark.slow)])
def test_hybrid_and_cpsat_equal_exhaustive_on_small_imperfect_spaces(cid):
    """An imperfect space of at most SMALL_IMPERFECT candidates is enumerated by the hybrid
    and CP-SAT searches: both equal exhaustive search and are proven optimal over remainder
    mappings too. On the odd layer a remainder mapping beats every perfect one, which
    CP-SAT alone (perfect options only) could not find."""
    key, layer = ODD if cid == "odd" else CASE[cid]
    ex = exhaustive(cid, "imperfect")
    for algo in ("hybrid", "cpsat"):
        res = search(layer, arch(key), algorithm=algo, factorization="imperfect")
        assert res.status == "optimal" and res.reason == "exhaustive", (algo, res.reason)
        assert best(res) == pytest.approx(best(ex), rel=REL)
        assert res.bound == pytest.approx(best(res), rel=REL) and res.gap <= REL
    if cid == "odd":
        assert best(ex) < best(exhaustive(cid, "perfect")) * (1 - 1e-6)
        assert not res.best.mapping.is_perfect(layer)


def test_candidate_count_is_what_exhaustive_evaluates_and_stops_at_its_limit():
    from mapper.search import SMALL_IMPERFECT, space_of
    from mapper.search.exhaustive import count_candidates
    key, layer = CASE["v1s-fc"]
    space = space_of(layer, arch(key), "imperfect")
    n = count_candidates(space, 10 ** 6)
    assert n == exhaustive("v1s-fc", "imperfect").evaluated
    assert count_candidates(space, n) == n and count_candidates(space, n - 1) is None
    # a space past the limit goes the CP-SAT and descent way (no enumeration proof)
    key, layer = CASE["v1s-1x1"]
    assert count_candidates(space_of(layer, arch(key), "imperfect"), SMALL_IMPERFECT) is None
    res = search(layer, arch(key), algorithm="cpsat", factorization="imperfect", workers=1)
    assert res.reason != "exhaustive"


@pytest.mark.parametrize("case,objective", [
    ("odd", "energy"), ("odd", "delay"), ("odd", "edp"), ("v1s-fc", "edp"),
    pytest.param("v1s-fc", "energy", marks=pytest.mark.slow), pytest.param("v2s-fc", "edp", marks=pytest.mark.slow)])
def test_imperfect_bound_is_below_the_exhaustive_imperfect_optimum(case, objective):
    """Exhaustive search covers the (pruned) imperfect space of these layers: its optimum
    is never below the imperfect bound, and the bound is not trivial (above the MAC
    energy, at least MACs / PEs cycles). On the odd layer the perfect bound (divisor
    factors) is above the imperfect optimum for EDP: it would claim too much there."""
    from mapper.model import Sparse
    key, layer = ODD if case == "odd" else CASE[case]
    a = arch(key)
    res = exhaustive(case, "imperfect", objective)
    assert res.status == "optimal" and res.reason == "exhaustive"
    bound = objective_bound(layer, a, objective, "imperfect")
    assert bound <= best(res, objective) * (1 + REL)
    assert bound <= objective_bound(layer, a, objective) * (1 + REL)
    sparse = Sparse.of(layer, a)
    mac_energy = layer.macs * a.mac_energy * sparse.mac_energy
    least_cycles = math.ceil(layer.macs * sparse.mac_cycles / a.pes)
    assert bound > {"energy": mac_energy, "delay": least_cycles - 1, "edp": mac_energy * least_cycles}[objective]
    if case == "odd" and objective == "edp":
        assert objective_bound(layer, a, objective) > best(res, objective) * (1 + REL)
        assert not res.best.mapping.is_perfect(layer)


def test_imperfect_search_meeting_the_bound_is_optimal_by_the_analytic_bound():
    """v1s-fc's least cycles (27) are reached by a perfect mapping and are the imperfect
    bound too: the imperfect hybrid search reports optimal (analytic bound), gap 0."""
    key, layer = CASE["v1s-fc"]
    assert objective_bound(layer, arch(key), "delay", "imperfect") == 27
    res = search(layer, arch(key), seed=1, objective="delay", factorization="imperfect")
    assert best(res, "delay") == 27
    assert res.status == "optimal" and res.reason == "analytic bound"
    assert_imperfect_gap(res, "delay")
    assert res.gap == 0


@pytest.mark.parametrize("algorithm,budget", [pytest.param("random", 800, marks=pytest.mark.slow), ("hybrid", None)])
def test_imperfect_search_is_reproducible_by_seed(algorithm, budget):
    key, layer = CASE["v1s-fc"]
    runs = [search(layer, arch(key), algorithm=algorithm, seed=5, budget=budget, factorization="imperfect")
            for _ in range(2)]
    assert runs[0].best.mapping == runs[1].best.mapping
    assert best(runs[0]) == best(runs[1])


def test_random_imperfect_samples_remainders_and_reports_the_imperfect_bound():
    """Random over the imperfect space evaluates remainder candidates (exactly: search()
    re-checks the best with the scalar model), is bounded below by the imperfect exhaustive
    optimum, which is bounded below by the reported bound (the imperfect analytic one)."""
    key, layer = CASE["v1s-fc"]
    imp = search(layer, arch(key), algorithm="random", seed=2, budget=1500, factorization="imperfect", top=5)
    ex = exhaustive("v1s-fc", "imperfect")
    assert best(ex) <= best(imp) * (1 + REL)
    assert_imperfect_gap(imp)
    assert imp.bound <= best(ex) * (1 + REL)
    assert imp.status != "optimal" or imp.reason == "analytic bound"
    assert any(not f.mapping.is_perfect(layer) for f in imp.found)


# ---------------------------------------------------------------------------------------
# The CLI option

PRIME_PROBLEM = """\
name: primes
layers:
  - {name: fc, type: fc, C: 7, M: 5}
"""


def cli(*args, cwd):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "mapper", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_cli_factorization_option(tmp_path):
    import json
    (tmp_path / "p.yaml").write_text(PRIME_PROBLEM)
    res = cli("search", "-a", "eyeriss_v1", "-p", "p.yaml", "-l", "fc", "--factorization", "imperfect",
              "--time-limit", "20", "--json", "r.json", "--quiet", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["search"]["factorization"] == "imperfect"
    assert doc["search"]["reason"] in ("perfect subspace proof", "time limit", "analytic bound")
    assert (doc["search"]["status"] == "optimal") == (doc["search"]["reason"] == "analytic bound")
    assert 0 < doc["search"]["bound"] <= doc["cost"]["edp"] * (1 + 1e-9) and 0 <= doc["search"]["gap"] < 1
    assert ("status feasible (perfect subspace proof)" in res.stdout or "time limit" in res.stdout
            or "status optimal (analytic bound)" in res.stdout)
    per = cli("search", "-a", "eyeriss_v1", "-p", "p.yaml", "-l", "fc", "--time-limit", "20", "--json", "p.json",
              "--quiet", cwd=tmp_path)
    assert json.loads((tmp_path / "p.json").read_text())["search"]["factorization"] == "perfect"
    assert doc["cost"]["edp"] <= json.loads((tmp_path / "p.json").read_text())["cost"]["edp"] * (1 + 1e-9)
    sp = cli("space", "-a", "eyeriss_v1", "-p", "p.yaml", "-l", "fc", "--factorization", "imperfect", cwd=tmp_path)
    assert sp.returncode == 0 and "factorization (imperfect" in sp.stdout and "perfect)" in sp.stdout
    bad = cli("search", "-a", "eyeriss_v1", "-p", "p.yaml", "--factorization", "ragged", cwd=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "factorization" in bad.stderr


def test_cpsat_over_the_imperfect_space_proves_the_perfect_subspace_only(monkeypatch):
    monkeypatch.setattr(importlib.import_module("mapper.search"), "SMALL_IMPERFECT", 0)     # (not enumerated)
    key, layer = CASE["v1s-fc"]
    per = search(layer, arch(key), algorithm="cpsat")
    imp = search(layer, arch(key), algorithm="cpsat", factorization="imperfect")
    assert per.status == "optimal"
    assert imp.status == "feasible" and imp.reason == "perfect subspace proof"
    assert imp.subspace_bound == pytest.approx(best(per), rel=1e-6)
    assert_imperfect_gap(imp)
    assert imp.bound < imp.subspace_bound       # the imperfect bound, not the perfect proof
    assert best(imp) == pytest.approx(best(per), rel=REL)     # CP-SAT alone finds no remainder mapping
    assert any("perfect mappings" in n for n in imp.notes)




def test_remainder_descent_is_iterated_and_ends_in_local_optima(monkeypatch):
    """After the first local optimum the remainder descent goes on from random moves of
    the best (the time after the first local optimum is not left unused), seeded, bounded
    by STALE_KICKS kicks without progress, and the best it ends on has no improving valid
    move. An hour's deadline: nothing depends on time."""
    import time

    from mapper.batch import score
    from mapper.progress import Progress
    import importlib

    from mapper.search import _Run

    monkeypatch.setattr(importlib.import_module("mapper.search"), "STALE_KICKS", 4)       # a shorter walk, the same rule

    layer = layer_from_dims("odd7", M=7, C=3, P=5, Q=5, R=3, S=3)
    space = Space.build(layer, arch("v1s"), "imperfect")

    def run_once():
        run = _Run(space, "edp", 1, Progress(enabled=False), time.monotonic(), time.monotonic() + 3600, "odd7")
        run.random(0, 1, 3000, None, perfect_only=True)
        assert not run.meets_floor()
        starts, descend = [], _Run._descend

        def recording(self, f, o, k, value, label):
            starts.append(value)
            return descend(self, f, o, k, value, label)
        monkeypatch.setattr(_Run, "_descend", recording)
        run.remainders(seed=3)
        monkeypatch.setattr(_Run, "_descend", descend)
        return run, starts
    run, starts = run_once()
    assert len(starts) > 4            # the kicks ran, and ended
    f, o, k, best = run.pool.factors[0], run.pool.orders[0], run.pool.keep[0], run.pool.best
    assert best <= min(starts)
    nb = space.factor_neighbours(f)
    nb = nb[space.valid(nb, np.repeat(k[None], len(nb), axis=0))]
    vals, _ = score(space.enc, nb, np.repeat(o[None], len(nb), axis=0), np.repeat(k[None], len(nb), axis=0), "edp")
    assert len(nb) and vals.min() >= best * (1 - 1e-12)
    again, starts2 = run_once()                               # same seed, same walk
    assert starts2 == starts and again.pool.best == best


@pytest.mark.parametrize("factorization", ["perfect", "imperfect"])
def test_exhaustive_stops_between_batches_when_asked(factorization):
    """enumerate_space checks its stop callable between batches (of 256 remainder
    candidates, whose exact counting is slow) and before every block of factorizations
    (most of which may be invalid): stopped after the first batch, it returns -1 having
    scored only that batch."""
    from mapper.search import space_of
    from mapper.search.exhaustive import REMAINDER_CHUNK, enumerate_space
    key, layer = CASE["v1s-1x1"]
    space = space_of(layer, arch(key), factorization)
    seen = []
    assert enumerate_space(space, "edp", lambda v, *rest: seen.append(len(v)), lambda: bool(seen)) == -1
    assert len(seen) == 1
    if factorization == "imperfect":
        assert REMAINDER_CHUNK <= seen[0] < 2 * REMAINDER_CHUNK + 1000
    assert enumerate_space(space, "edp", lambda *a: None, lambda: True) == -1
