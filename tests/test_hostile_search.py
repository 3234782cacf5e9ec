"""Extreme-but-allowed inputs to the search: each either searches (CP-SAT skipped with a
note when its 64-bit integers cannot hold the model) or fails with one MapperError, never
a traceback, unbounded memory or a run far past the time limit.

Each test builds its arch from the repository's arch/eyeriss_v1.yaml with one field
changed, and its layer from loop bounds.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import yaml

import mapper
from mapper.arch import parse_arch
from mapper.problem import layer_from_dims
from mapper.search.space import (MAX_FACTORIZATIONS, _remainder_rows, count_remainder_factorizations,
                                 space_of)

EYERISS_V1 = Path(__file__).resolve().parent.parent / "arch" / "eyeriss_v1.yaml"


def _arch(**dram):
    """eyeriss_v1 with the given fields of its first (DRAM) level replaced."""
    data = yaml.safe_load(EYERISS_V1.read_text())
    data = copy.deepcopy(data)
    data["levels"][0].update(dram)
    return parse_arch(data, "eyeriss_v1-hostile.yaml")


def _conv1():
    return layer_from_dims("conv1", stride=(4, 4), C=3, M=96, P=55, Q=55, R=11, S=11)


BUDGET = 150_000       # a budget, not a time limit: the count does not depend on the machine's load


def _searches_without_cpsat(result):
    assert result.best is not None
    assert any("CP-SAT skipped" in n and "64-bit" in n for n in result.notes), result.notes
    assert result.best.cost.energy_pj > 0 and result.best.cost.cycles > 0
    # its own reason (before: "time limit", reached or not), and sampling took CP-SAT's place
    assert result.reason == "cpsat overflow" and result.status != "optimal"
    assert result.evaluated > 100_000           # the hybrid's first round is 60,000


# -- 1. imperfect factorization of a huge prime dimension --------------------------------

@pytest.mark.parametrize("limits", [(None,), (None, None), (None, 14, None), (None, 12, 14, None),
                                    (4, None, 3), (None,) * 4])
@pytest.mark.parametrize("pruned", [True, False])
def test_remainder_counts_match_the_listing(limits, pruned):
    for n in list(range(1, 70)) + [97, 128, 224, 1000]:
        assert count_remainder_factorizations(n, limits, pruned) == len(_remainder_rows(n, limits, pruned))


def test_remainder_count_of_a_huge_prime_lists_nothing():
    # before: range(1, n + 1) per slot and per tile count (4.6 GB, then MemoryError)
    n = 16_777_213
    assert count_remainder_factorizations(n, (None, 12, 14, None, None), True) > MAX_FACTORIZATIONS
    # the unpruned count over free slots (mapper space's "before pruning"), derived here in
    # closed form: over 2 slots every inner factor 1..n works once; over 3, an inner f leaves
    # ceil(n / f) tiles, T(m) = sum_g ceil(m / g) = D(m - 1) + m nests of them over 2 slots
    # (D: the divisor summatory function, by Dirichlet's hyperbola method); over 4, the sum
    # of T over the tiles each inner factor leaves
    assert count_remainder_factorizations(n, (None,) * 2, False) == n
    assert count_remainder_factorizations(n, (None,) * 3, False) == _three_slots(n)
    k = math.isqrt(n)        # inner factors up to k one by one, the rest by their tile count q
    four = sum(_three_slots(-(-n // f)) for f in range(1, k + 1))
    for q in range(1, -(-n // (k + 1)) + 1):
        lo, hi = (n - 1) // q, ((n - 1) // (q - 1) if q > 1 else n)   # ceil(n / f) = q for lo < f <= hi
        four += max(0, hi - max(lo, k)) * _three_slots(q)
    assert count_remainder_factorizations(n, (None,) * 4, False) == four == 2_832_302_636


def _divisor_sum(m: int) -> int:
    """D(m) = sum_{k <= m} d(k) = 2 sum_{i <= sqrt m} floor(m / i) - floor(sqrt m)^2."""
    r = math.isqrt(m)
    return 2 * sum(m // i for i in range(1, r + 1)) - r * r


def _three_slots(m: int) -> int:
    return _divisor_sum(m - 1) + m


def test_imperfect_space_of_a_huge_prime_dim_is_one_error():
    layer = layer_from_dims("a", C=16_777_213, M=16_777_213)
    with pytest.raises(mapper.MapperError, match="16,777,213 has .* remainder factorizations"):
        space_of(layer, mapper.load_arch(str(EYERISS_V1)), "imperfect")


# -- 2.-4. numbers beyond CP-SAT's 64-bit integers -----------------------------------------

def test_dram_energy_1e15_searches_without_cpsat():
    # before: TypeError "Linear constraints only accept integer values" (int64 overflow
    # turned the energy sum into floats)
    r = mapper.search(_conv1(), _arch(energy=1e15), workers=1, budget=BUDGET)
    _searches_without_cpsat(r)


def test_cpsat_alone_samples_when_it_overflows():
    """--algo cpsat on a layer CP-SAT cannot model: random sampling searches instead (before,
    the result was the 1-PE baseline, with a note claiming a sampled best), seeded like
    --algo random."""
    r = mapper.search(_conv1(), _arch(energy=1e15), algorithm="cpsat", workers=1, budget=BUDGET)
    _searches_without_cpsat(r)
    assert r.best.cost.active_pes > 1
    again = mapper.search(_conv1(), _arch(energy=1e15), algorithm="random", workers=1, budget=BUDGET)
    assert again.best.mapping == r.best.mapping


@pytest.mark.parametrize("bw", [1e-9, 1e-6])
def test_dram_bandwidth_1e9_searches_without_cpsat(bw):
    # before: TypeError from ortools' Domain (a cycles bound beyond int64)
    r = mapper.search(_conv1(), _arch(bandwidth={"read": bw, "write": bw}), workers=1, budget=BUDGET)
    _searches_without_cpsat(r)


def test_2_48_macs_searches_without_cpsat():
    # before: AssertionError "invalid CP-SAT model: var ... domain do not fall in ..."
    layer = layer_from_dims("a", C=2 ** 24, M=2 ** 24)
    r = mapper.search(layer, mapper.load_arch(str(EYERISS_V1)), workers=1, budget=BUDGET)
    _searches_without_cpsat(r)


# -- 5. a Pareto front cut by the time limit -----------------------------------------------

def test_pareto_front_cut_by_time_returns_what_it_has():
    # before: UnboundLocalError 'ends' (only the sampled branch searched the ends)
    from mapper.search.pareto import layer_front
    layer = layer_from_dims("fc8", C=4096, M=1000)
    front = layer_front(layer, mapper.load_arch(str(EYERISS_V1)), time_limit=1e-6, exact_limit=10 ** 12)
    assert not front.exact
    assert front.guarantee.startswith("partial")
