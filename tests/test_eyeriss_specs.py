"""The shipped Eyeriss arch files as the v2 paper describes them, and the MobileNet-0.5/128
densities from the authors' pruned model.

Expected numbers are derived here from the facts quoted in the files' comments (P1 = Eyeriss
v2, JETCAS 2019; P3 = its authors' Sparseloop artifact), not copied from the parser's output.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from mapper.arch import Fanout, Storage, load_arch
from mapper.mapping import check
from mapper.model import evaluate
from mapper.problem import layer_from_dims, load_network
from mapper.search import search

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted(p.stem for p in (ROOT / "arch").glob("*.yaml"))
PAPER_ARCHS = ("eyeriss_v1_scaled", "eyeriss_v1_5", "eyeriss_v2")


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_arch_parses(name):
    arch = load_arch(name)
    assert arch.name == name and arch.pes >= 1 and isinstance(arch.levels[0], Storage)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in ("eyeriss_v1_5", "eyeriss_v2") else n
                                  for n in PAPER_ARCHS])
def test_small_layer_searches_to_a_valid_mapping(name):
    arch = load_arch(name)
    layer = layer_from_dims("small", M=4, C=4, P=4, Q=4, R=3, S=3)
    res = search(layer, arch, objective="edp", workers=1, time_limit=10, seed=1)
    check(res.best.mapping, layer, arch)                 # raises if invalid
    cost = evaluate(layer, arch, res.best.mapping)
    assert cost.cycles == res.best.cost.cycles and cost.cycles >= math.ceil(layer.macs / arch.pes)


def test_v1_scaled_is_v1_at_v2s_size_and_precision():
    v1s, v2 = load_arch("eyeriss_v1_scaled"), load_arch("eyeriss_v2")
    assert v1s.pes == 192 == 12 * 16 and v1s.word_bits == 8 == v2.word_bits
    (array,) = v1s.fanouts
    assert (array.X, array.Y) == (16, 12)
    # v1's single multicast network: one stream per data type
    assert all(array.modes_of(t) == ("broadcast",) for t in ("Weights", "Inputs", "Outputs"))
    # v2's storage capacities, level by level (GLB and the three data SPads)
    cap = {s.name: dict(s.partitions) for s in v1s.storages if s.bounded}
    cap2 = {s.name: dict(s.partitions) for s in v2.storages if s.bounded}
    assert cap["GLB"] == cap2["GLB"] == {("Inputs",): 16 * 3 * 1536, ("Outputs",): 16 * 4 * 768}
    assert [list(cap[n].values()) for n in ("ifmap_spad", "weights_spad", "psum_spad")] == \
        [list(cap2[n].values()) for n in ("iact_spad", "weights_spad", "psum_spad")] == [[16], [192], [32]]
    # dense PE: zeros gated, not skipped
    assert v1s.sparsity.gate_zero_inputs and not v1s.sparsity.skip_zero_macs


def test_v2_as_built():
    v2 = load_arch("eyeriss_v2")
    assert v2.levels[0].read_bw is None and v2.levels[0].write_bw is None and v2.levels[0].shared_bw is None
    noc, cluster, simd = v2.fanouts
    # the HM-NoC sits below the GLB (one stored copy per multicast), above the PE clusters
    names = [l.name for l in v2.levels]
    assert names.index("GLB") < names.index(noc.name) < names.index(cluster.name)
    assert "Weights" not in v2.level("GLB").keeps
    assert (noc.X, noc.Y, cluster.X, cluster.Y) == (2, 8, 4, 3)
    # weights only along a mesh row (X), psums reduced only along a column (Y)
    assert set(noc.modes_of("Weights")) == {"unicast", "grouped"}
    assert not {"C", "R", "S"} & set(noc.x_dims) and {"C", "R", "S"} <= set(noc.y_dims)
    # SIMD: 2 MACs per PE over output channels only, below every storage level
    assert isinstance(v2.levels[-1], Fanout) and v2.levels[-1] is simd
    assert (simd.X, simd.Y, simd.x_dims) == (2, 1, ("M",))
    assert v2.pes == 192 * 2


def test_depthwise_cannot_use_simd():
    v2 = load_arch("eyeriss_v2")
    dw = layer_from_dims("dw", G=8, M=1, C=1, P=4, Q=4, R=3, S=3)
    res = search(dw, v2, objective="delay", workers=1, time_limit=10, seed=0)
    assert not [l for l in res.best.mapping.loops if l.level == "simd" and l.factor > 1]


def test_v1_scaled_network_bounds_a_depthwise_layer_that_v15_does_not():
    """Depthwise: no iact reuse across PEs, so v1's single 8-word network is the bound.
    A 3 x 3 depthwise layer with 192 channels of 8 x 8 outputs has 192 x 10 x 10 = 19,200
    input words; through one 8-word/cycle stream that is >= 2,400 cycles, whatever the
    mapping, more than the 192 x 64 x 9 / 192 = 576 compute cycles of 192 PEs."""
    layer = layer_from_dims("dw", G=192, M=1, C=1, P=8, Q=8, R=3, S=3)
    words = load_arch("eyeriss_v1_scaled").fanouts[0].port_words
    words = words if isinstance(words, (int, float)) else dict(words)["Inputs"]   # scalar or per tensor
    v1s = search(layer, load_arch("eyeriss_v1_scaled"), objective="delay", workers=1, time_limit=10)
    assert v1s.best.cost.cycles >= 192 * 10 * 10 / words > 192 * 64 * 9 / 192
    v15 = search(layer, load_arch("eyeriss_v1_5"), objective="delay", workers=1, time_limit=10)
    assert v15.best.cost.cycles < 192 * 10 * 10 / words


# The authors' per-layer effectual fractions (GT / MACs) and masks [P] P3, as quoted in the
# problem file; rules (a)-(d) are stated there.
GT = {"conv1": 1.000, "pw1": 0.220, "pw2": 0.417, "pw3": 0.406, "pw4": 0.715, "pw5": 0.594,
      "pw6": 0.546, "pw7": 0.534, "pw8": 0.518, "pw9": 0.347, "pw10": 0.400, "pw11": 0.434,
      "pw12": 0.452, "pw13": 0.185, "fc": 0.186}
MASKS = {"pw3": (0.52, 0.73), "pw4": (0.82, 0.86), "pw6": (0.64, 0.83), "pw9": (0.55, 0.61),
         "pw10": (0.60, 0.64), "pw11": (0.70, 0.61), "pw12": (0.65, 0.68), "pw13": (0.30, 0.58),
         "dw10": (0.95, 0.49)}


def test_published_densities_follow_the_authors_model():
    preset = load_network("mobilenet_v1_050_128").preset("published")
    for name, (w, i) in MASKS.items():                                   # rule (a)
        assert (preset[name]["weights"], preset[name]["inputs"]) == (w, i), name
    pointwise = [n for n in MASKS if n.startswith("pw")]
    a = sum(math.log(MASKS[n][0]) / math.log(MASKS[n][0] * MASKS[n][1]) for n in pointwise) / len(pointwise)
    for name, gt in GT.items():
        w, i = preset[name]["weights"], preset[name]["inputs"]
        if name in MASKS:
            assert 1.0 <= gt / (w * i) <= 1.07, name                     # GT counts cycles >= effectual MACs
        else:                                                            # rules (b), (c)
            assert w * i == pytest.approx(gt, abs=1e-3), name
            assert w == pytest.approx(gt ** a, abs=1e-3), name
    for name, d in preset.items():                                       # rule (d)
        if name.startswith("dw") and name not in MASKS:
            assert d == {"weights": 1.0, "inputs": 0.66}, name


def test_outputs_call_simd_lanes_mac_lanes_not_pes():
    # v2's 192 PEs each drive a 2-lane SIMD fan-out below their SPads: 384 MACs per cycle,
    # which outputs must not call PEs; v1's fan-outs all sit above a storage level
    from mapper.arch import load_arch
    v1, v2 = load_arch("eyeriss_v1"), load_arch("eyeriss_v2")
    assert (v1.pes, v1.unit_name) == (168, "PEs")
    assert (v2.pes, v2.unit_name) == (384, "MAC lanes")
