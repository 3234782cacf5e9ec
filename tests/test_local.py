"""Local refinement (mapper/search/local.py): the reordered pair moves.

The start is a mapping of AlexNet conv5 on Eyeriss v2 that single moves, pair moves and
order moves cannot improve (hybrid search stopped there, even with 60 s): its output-row
loop sits at DRAM, outside the GLB's weight loops, so every weight is fetched from DRAM
13 times (v2 does not keep weights in the GLB). Moving that loop into the GLB, inside the
weight loops, needs the group loop to leave the GLB at once (inputs would not fit) and the
moved loop to go innermost there: one reordered pair move.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from mapper.arch import load_arch
from mapper.mapping import Loop, Mapping
from mapper.model import evaluate
from mapper.problem import load_network
from mapper.search.local import refine, reordered_pairs
from mapper.search.space import Space

KEEP = (("DRAM", ("Weights", "Inputs", "Outputs")), ("GLB", ("Inputs", "Outputs")), ("iact_spad", ("Inputs",)),
        ("weights_spad", ("Weights",)), ("psum_spad", ("Outputs",)))
NETWORK = (("cluster_array", (("Weights", "unicast"), ("Inputs", "grouped"), ("Outputs", "interleaved"))),)
INNER = (Loop("cluster_array", "M", 2, "X"), Loop("cluster_array", "C", 8, "Y"), Loop("pe_cluster", "C", 4, "X"),
         Loop("pe_cluster", "C", 3, "Y"), Loop("weights_spad", "R", 3, None), Loop("weights_spad", "S", 3, None),
         Loop("psum_spad", "M", 8, None), Loop("simd", "M", 2, "X"))
STUCK = Mapping(loops=(Loop("DRAM", "P", 13, None), Loop("GLB", "G", 2, None), Loop("GLB", "M", 4, None),
                       Loop("GLB", "C", 2, None), Loop("GLB", "Q", 13, None)) + INNER, keep=KEEP, network=NETWORK)
# the same loops with P moved inside the GLB's weight loops and G moved out to DRAM
MOVED = Mapping(loops=(Loop("DRAM", "G", 2, None), Loop("GLB", "M", 4, None), Loop("GLB", "C", 2, None),
                       Loop("GLB", "P", 13, None), Loop("GLB", "Q", 13, None)) + INNER, keep=KEEP, network=NETWORK)


@lru_cache(maxsize=1)
def _conv5():
    layer = next(l for l in load_network("alexnet").layers if l.name == "conv5")
    arch = load_arch("eyeriss_v2")
    return layer, arch, Space.build(layer, arch)


def test_reordered_pairs_are_two_factor_moves_with_permuted_orders():
    layer, arch, space = _conv5()
    f, o, _ = space.enc.encode(STUCK)
    out = reordered_pairs(space, f, o, np.random.default_rng(0))
    assert out is not None
    fs, os_ = out
    assert len(fs) == len(os_) > 0
    # every order row stays a permutation of the 8 dims
    assert (np.sort(os_, axis=2) == np.arange(8)).all()
    # the factors of every dim keep their product (a move shifts a prime between slots)
    assert (np.prod(fs, axis=1) == np.prod(f, axis=0)).all()
    # and the moved candidates include the one that fixes the weights' refetches
    target, _, _ = space.enc.encode(MOVED)
    assert any((fs[i] == target).all() for i in range(len(fs)))


def test_refine_escapes_the_weight_refetch_local_optimum():
    layer, arch, space = _conv5()
    stuck, moved = evaluate(layer, arch, STUCK), evaluate(layer, arch, MOVED)
    # the start is what the hand-moved mapping improves on, through DRAM weight reads
    assert moved.edp < stuck.edp
    assert moved.levels["DRAM"]["Weights"].reads < stuck.levels["DRAM"]["Weights"].reads
    f, o, k = space.enc.encode(STUCK)
    f2, o2, k2, md, value, n = refine(space, "edp", f, o, k, None, stuck.edp)
    found = evaluate(layer, arch, space.enc.decode(f2, o2, k2, md))
    assert n > 0 and abs(found.edp - value) <= 1e-9 * value
    assert value <= moved.edp
