"""The imperfect (remainder) mapspace and search over it (`--factorization imperfect`).

The space (mapper.search.space): every row of a dimension's remainder factorizations is a
valid remainder nest (mapping.problems_of accepts it), the unpruned enumeration is every
valid nest (brute force over all factor tuples), counting agrees with listing, the
pruning keeps the balanced factors, and the perfect factorizations are a subset.
Search: exhaustive over the imperfect space of small layers is never worse than over the
perfect one (a subset), the pruned imperfect space loses nothing against the unpruned one
on tiny layers, random and hybrid are reproducible by seed and never worse than their
perfect runs, and a hybrid result over the imperfect space never claims a proof CP-SAT
did not give.
"""
from __future__ import annotations

import itertools
import math
from functools import lru_cache

import numpy as np
import pytest

from mapper.mapping import Loop, normalize, problems_of
from mapper.problem import DIMS, layer_from_dims
from mapper.search import search
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


@lru_cache(maxsize=None)
def exhaustive(cid: str, factorization: str):
    key, layer = CASE[cid]
    return search(layer, arch(key), algorithm="exhaustive", factorization=factorization)


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


@pytest.mark.parametrize("cid", SMALL)
def test_hybrid_imperfect_status_and_quality(cid):
    key, layer = CASE[cid]
    per = search(layer, arch(key), seed=3)
    imp = search(layer, arch(key), seed=3, factorization="imperfect")
    # the perfect space is a subset: the perfect phases alone reach the perfect result
    assert best(imp) <= best(per) * (1 + REL)
    # CP-SAT models perfect options only: never "optimal" for the imperfect space from it
    assert imp.status != "optimal"
    assert imp.reason == "perfect subspace proof" and imp.bound is None and imp.gap is None
    assert imp.subspace_bound == pytest.approx(best(per), rel=1e-6)
    doc = imp.documents()[0]["search"]
    assert doc["perfect_subspace_bound"] == imp.subspace_bound and doc["bound"] is None


@pytest.mark.parametrize("algorithm,budget", [pytest.param("random", 800, marks=pytest.mark.slow), ("hybrid", None)])
def test_imperfect_search_is_reproducible_by_seed(algorithm, budget):
    key, layer = CASE["v1s-fc"]
    runs = [search(layer, arch(key), algorithm=algorithm, seed=5, budget=budget, factorization="imperfect")
            for _ in range(2)]
    assert runs[0].best.mapping == runs[1].best.mapping
    assert best(runs[0]) == best(runs[1])


def test_random_imperfect_samples_remainders_and_claims_no_bound():
    """Random over the imperfect space evaluates remainder candidates (exactly: search()
    re-checks the best with the scalar model), is bounded below by the imperfect exhaustive
    optimum, and claims no bound (the analytic one assumes divisor factors)."""
    key, layer = CASE["v1s-fc"]
    imp = search(layer, arch(key), algorithm="random", seed=2, budget=1500, factorization="imperfect", top=5)
    ex = exhaustive("v1s-fc", "imperfect")
    assert best(ex) <= best(imp) * (1 + REL)
    assert imp.status != "optimal" and imp.bound is None
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
    assert doc["search"]["status"] != "optimal" and doc["search"]["bound"] is None
    assert doc["search"]["reason"] in ("perfect subspace proof", "time limit")
    assert "status feasible (perfect subspace proof)" in res.stdout or "time limit" in res.stdout
    per = cli("search", "-a", "eyeriss_v1", "-p", "p.yaml", "-l", "fc", "--time-limit", "20", "--json", "p.json",
              "--quiet", cwd=tmp_path)
    assert json.loads((tmp_path / "p.json").read_text())["search"]["factorization"] == "perfect"
    assert doc["cost"]["edp"] <= json.loads((tmp_path / "p.json").read_text())["cost"]["edp"] * (1 + 1e-9)
    sp = cli("space", "-a", "eyeriss_v1", "-p", "p.yaml", "-l", "fc", "--factorization", "imperfect", cwd=tmp_path)
    assert sp.returncode == 0 and "factorization (imperfect" in sp.stdout and "perfect)" in sp.stdout
    bad = cli("search", "-a", "eyeriss_v1", "-p", "p.yaml", "--factorization", "ragged", cwd=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "factorization" in bad.stderr


def test_cpsat_over_the_imperfect_space_proves_the_perfect_subspace_only():
    key, layer = CASE["v1s-fc"]
    per = search(layer, arch(key), algorithm="cpsat")
    imp = search(layer, arch(key), algorithm="cpsat", factorization="imperfect")
    assert per.status == "optimal"
    assert imp.status == "feasible" and imp.reason == "perfect subspace proof"
    assert imp.bound is None and imp.subspace_bound == pytest.approx(best(per), rel=1e-6)
    assert best(imp) == pytest.approx(best(per), rel=REL)     # CP-SAT alone finds no remainder mapping
    assert any("perfect mappings" in n for n in imp.notes)
