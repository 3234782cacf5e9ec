"""The one table of tensor indexing (`problem.AXES`) and the access terms built on it
(`mapper.access`), against the convolution as written in problem.py's docstring:

    Weights[g][m][c][r][s]     Inputs[n][g][c][h][w]      Outputs[n][g][m][p][q]
    h = p*stride_v + r*dilation_v,  w = q*stride_h + s*dilation_h
"""
from __future__ import annotations

import numpy as np

from mapper.access import CHILD, DISTINCT, FETCHED, FILLS, OPS, PARENT, READS, TOUCHED, UPDATES, links
from mapper.arch import load_arch
from mapper.mapping import tensor_axes as reexported
from mapper.model import Sparse
from mapper.problem import (OUTPUT_DIMS, PROJECTED, REDUCTION_DIMS, RELEVANT, SLIDING_PAIRS, TENSORS,
                            layer_from_dims, tensor_axes)


def test_relevant_dims_are_the_convolutions_indices():
    assert RELEVANT == {"Weights": set("GMCRS"), "Inputs": set("NGCPQRS"), "Outputs": set("NGMPQ")}
    assert PROJECTED["Inputs"] == ("N", "G", "C")
    assert SLIDING_PAIRS == (("P", "R"), ("Q", "S"))
    assert OUTPUT_DIMS == ("N", "G", "M", "P", "Q") and REDUCTION_DIMS == ("C", "R", "S")


def test_input_axes_slide_with_stride_and_dilation():
    layer = layer_from_dims("x", stride=(2, 3), dilation=(1, 2), N=2, G=1, M=4, C=3, P=5, Q=6, R=3, S=2)
    axes = tensor_axes(layer, "Inputs")
    assert axes == ((("N", 1),), (("G", 1),), (("C", 1),), (("P", 2), ("R", 1)), (("Q", 3), ("S", 2)))
    assert reexported(layer, "Weights") == tensor_axes(layer, "Weights")
    rows, cols = (5 - 1) * 2 + (3 - 1) * 1 + 1, (6 - 1) * 3 + (2 - 1) * 2 + 1
    assert (layer.input_rows, layer.input_cols) == (rows, cols)
    assert layer.tensor_size("Inputs") == 2 * 1 * 3 * rows * cols
    assert layer.tensor_size("Weights") == 4 * 3 * 3 * 2
    assert layer.tensor_size("Outputs") == 2 * 4 * 5 * 6


def test_links_walk_each_tensors_chain():
    arch = load_arch("eyeriss_v1")
    storages = [i for i, level in enumerate(arch.levels) if hasattr(level, "keeps")]
    layer = layer_from_dims("x", N=1, M=4, C=4, P=4, Q=4, R=3, S=3)
    # the outermost level keeps everything, the innermost only Weights
    keep = np.zeros((len(storages), 3), dtype=bool)
    keep[0] = True
    keep[-1, TENSORS.index("Weights")] = True
    out = links(arch, tuple(storages), keep, Sparse.of(layer, arch))
    by_tensor = {t: [l for l in out if TENSORS[l.tensor] == t] for t in TENSORS}
    assert [(l.parent, l.child) for l in by_tensor["Weights"]] == [(0, len(storages) - 1), (len(storages) - 1, None)]
    assert [(l.parent, l.child) for l in by_tensor["Inputs"]] == [(0, None)]
    w_fill = by_tensor["Weights"][0]
    assert {(c.kind, c.storage, c.term.copies, c.term.quantity) for c in w_fill.counts} == {
        (READS, 0, DISTINCT, FETCHED), (FILLS, len(storages) - 1, CHILD, FETCHED)}
    # every fan-out between DRAM and the MACs lies on the links to the MACs
    assert by_tensor["Inputs"][0].fanouts == tuple(i for i in range(len(arch.levels)) if i not in storages)
    # partial sums: one update and one read back per MAC, minus the first touch of each word
    outputs = by_tensor["Outputs"][0]
    kinds = sorted((c.kind, c.term.copies, c.term.quantity, c.term.coefficient) for c in outputs.counts)
    assert kinds == sorted([(UPDATES, DISTINCT, OPS, 1.0), (READS, DISTINCT, OPS, 1.0), (READS, PARENT, TOUCHED, -1.0)])
