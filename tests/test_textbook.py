"""Textbook dataflows on a small 3-level machine, with every number derived by hand.

Machine: DRAM -> GLB -> PE array (2 x 2 fan-out) -> RF (one per PE) -> MAC. Every
expected count below is worked out from first principles in the comment next to it;
none is copied from the model. Each case checks the analytical model and the loop-nest
oracle (tests/oracle.py) against the same hand numbers.

Notation in comments: "per PE" = per RF instance; a tile is what the loops at a level and
below touch; fills of a level are walked over the loops outside it (first tile whole,
then only the new part when the innermost relevant loop r steps, nothing when the new
tile is exactly the one held, else the whole tile when a loop outside r steps); partial sums start at zero, so
the first touch of an output is not fetched.
"""
from __future__ import annotations

import pytest
import yaml

from mapper.arch import parse_arch
from mapper.mapping import Loop, normalize, problems_of
from mapper.model import evaluate
from mapper.problem import TENSORS, layer_from_dims

from oracle import simulate

ARCH_YAML = """
name: textbook
mac: {energy: 1.0}
levels:
  - name: DRAM
    keeps: [Weights, Inputs, Outputs]
    energy: 100.0
  - name: GLB
    keeps: [Weights, Inputs, Outputs]
    energy: 10.0
  - name: PE
    fanout: {X: 2, Y: 2}
    # Distinct powers of two per tensor: the network energy decodes into words per tensor.
    energy: {Weights: 1.0, Inputs: 65536.0, Outputs: 4294967296.0}
    multicast: exact
  - name: RF
    keeps: [Weights, Inputs, Outputs]
    energy: 1.0
"""


def make_arch(multicast: str = "exact"):
    data = yaml.safe_load(ARCH_YAML)
    data["levels"][2]["multicast"] = multicast
    return parse_arch(data, f"<textbook {multicast}>")


def words(network_pj: float) -> dict[str, int]:
    n = int(network_pj)
    assert n == network_pj
    return {"Weights": n & 0xFFFF, "Inputs": (n >> 16) & 0xFFFF, "Outputs": n >> 32}


def counts_of_model(layer, arch, mapping) -> dict:
    cost = evaluate(layer, arch, mapping)
    out = {(lv, t, what): getattr(c, what) for lv, ts in cost.levels.items() for t, c in ts.items()
           for what in ("reads", "fills", "updates")}
    out.update({("PE", t, "words"): w for t, w in words(cost.network_pj["PE"]).items()})
    out["compute_cycles"] = cost.compute_cycles
    out["active_pes"] = cost.active_pes
    return out


def counts_of_oracle(layer, arch, mapping) -> dict:
    res = simulate(layer, arch, mapping)
    out = {}
    for (lv, t), n in res.reads.items():
        out[lv, t, "reads"] = n
        out[lv, t, "fills"] = res.fills[lv, t]
        out[lv, t, "updates"] = res.updates[lv, t]
    out.update({("PE", t, "words"): res.carried["PE", t] for t in TENSORS})
    out["compute_cycles"] = res.compute_cycles
    out["active_pes"] = res.active_pes
    return out


def expand(table: dict) -> dict:
    """{(level, tensor): (reads, fills, updates)} plus scalars -> flat keys."""
    out = {}
    for key, value in table.items():
        if isinstance(key, tuple) and len(key) == 2 and key[0] != "PE":
            for what, v in zip(("reads", "fills", "updates"), value):
                out[key[0], key[1], what] = v
        elif isinstance(key, tuple):
            out[key[0], key[1], "words"] = value
        else:
            out[key] = value
    return out


def mapping_of(layer, arch, loops):
    mapping = normalize([Loop(*l) for l in loops], arch)
    assert problems_of(mapping, layer, arch) == []
    return mapping


def assert_counts(got: dict, expected: dict, who: str):
    wrong = {k: (expected[k], got.get(k)) for k in expected if got.get(k) != expected[k]}
    assert set(got) == set(expected), f"{who}: keys differ: {set(got) ^ set(expected)}"
    assert not wrong, f"{who}: (expected, got) {wrong}"


# ---------------------------------------------------------------------------------------
# 1D convolution, two filters on two PEs: weight stationary vs output stationary

CONV1D = layer_from_dims("conv1d", M=2, P=4, R=3)    # 24 MACs; 6 weights, 6 inputs, 8 outputs


def test_weight_stationary():
    """GLB loops: for r in 3: for p in 4 (p innermost), M=2 across the PEs. Each PE keeps
    one weight in its RF while the 4 output positions stream past it."""
    arch = make_arch()
    mapping = mapping_of(CONV1D, arch, [("GLB", "R", 3), ("GLB", "P", 4), ("PE", "M", 2, "X")])
    expected = expand({
        # DRAM: GLB holds the whole layer (no loops above it): each weight and input read
        # once (6 weights = M2*R3; 6 inputs = P4+R3-1); outputs start at zero so none are
        # read; the 8 outputs (M2*P4) are written back once.
        ("DRAM", "Weights"): (6, 0, 0),
        ("DRAM", "Inputs"): (6, 0, 0),
        ("DRAM", "Outputs"): (0, 0, 8),
        # GLB fills = the whole tiles once (6, 6; outputs 8 first touches -> 0 fetched).
        # GLB weight reads: a PE's weight changes only when r steps: 3 per PE, the two PEs
        # need different filters -> 2*3 = 6.
        ("GLB", "Weights"): (6, 6, 0),
        # Inputs: every step of p (and each r step, which resets p) brings a new input
        # word: 3*4 = 12 per PE; both PEs need the same input (M does not index it) ->
        # one multicast read each: 12.
        ("GLB", "Inputs"): (12, 6, 0),
        # Outputs: each PE's output word changes at every step: 12 tiles written back per
        # PE -> updates 2*12 = 24; of those 12, the first 4 (one per p) are first touches,
        # so 8 psums per PE are read back down -> reads 2*8 = 16.
        ("GLB", "Outputs"): (16, 0, 24),
        # RF: one MAC per temporal iteration (3*4 = 12 per PE) reads one weight and one
        # input: reads 2*12 = 24 each; fills = 3 weights and 12 inputs per PE (x2 PEs).
        ("RF", "Weights"): (24, 6, 0),
        ("RF", "Inputs"): (24, 24, 0),
        # RF outputs: 12 read-modify-writes per PE -> updates 24; the first touch of each of
        # the 4 outputs per PE reads nothing -> reads 24 - 2*4 = 16; fills = the 8 psums per
        # PE fetched back = 16.
        ("RF", "Outputs"): (16, 16, 24),
        # Words through the array: weights 2 PEs * 3 = 6; inputs 2 * 12 = 24; outputs 16
        # psums down + 2*12 written back = 40.
        ("PE", "Weights"): 6, ("PE", "Inputs"): 24, ("PE", "Outputs"): 40,
        "compute_cycles": 12,     # R3 * P4 temporal iterations
        "active_pes": 2,          # M2 spatial
    })
    assert_counts(counts_of_model(CONV1D, arch, mapping), expected, "model")
    assert_counts(counts_of_oracle(CONV1D, arch, mapping), expected, "oracle")


def test_output_stationary():
    """GLB loops: for p in 4: for r in 3 (r innermost): each PE accumulates one output in
    its RF over the 3 filter taps before moving on."""
    arch = make_arch()
    mapping = mapping_of(CONV1D, arch, [("GLB", "P", 4), ("GLB", "R", 3), ("PE", "M", 2, "X")])
    expected = expand({
        ("DRAM", "Weights"): (6, 0, 0),     # whole layer in GLB: each word once
        ("DRAM", "Inputs"): (6, 0, 0),
        ("DRAM", "Outputs"): (0, 0, 8),     # 8 outputs written back once, never read
        # Weights: the PE's weight changes at every step (r steps, or p steps and r
        # resets): 12 per PE, different filters per PE -> 2*12 = 24.
        ("GLB", "Weights"): (24, 6, 0),
        # Inputs: h = p + r changes at every step (p+2 -> p+1 when p steps): 12 per PE,
        # shared by both PEs -> 12.
        ("GLB", "Inputs"): (12, 6, 0),
        # Outputs: stationary while r iterates; each output leaves the RF once, finished:
        # 4 per PE written back -> 8 updates; never read back (first touches).
        ("GLB", "Outputs"): (0, 0, 8),
        ("RF", "Weights"): (24, 24, 0),     # 12 MACs per PE read a weight; 12 fills per PE
        ("RF", "Inputs"): (24, 24, 0),
        # 24 read-modify-writes; 2*4 first touches read nothing -> 16 reads; no psum fills.
        ("RF", "Outputs"): (16, 0, 24),
        # Array words: 2*12 weights, 2*12 inputs, outputs 0 down + 2*4 written back.
        ("PE", "Weights"): 24, ("PE", "Inputs"): 24, ("PE", "Outputs"): 8,
        "compute_cycles": 12,
        "active_pes": 2,
    })
    assert_counts(counts_of_model(CONV1D, arch, mapping), expected, "model")
    assert_counts(counts_of_oracle(CONV1D, arch, mapping), expected, "oracle")


# ---------------------------------------------------------------------------------------
# Row stationary: filter rows on Y, output rows on X, a 1D convolution per PE

CONV2D = layer_from_dims("conv2d", P=2, Q=4, R=2, S=3)   # 48 MACs; 6 weights, 3x6 inputs, 2x4 outputs


def rs_mapping(arch):
    # PE(p, r) convolves filter row r with input row p + r into output row p; its RF loops
    # are for q in 4: for s in 3.
    return mapping_of(CONV2D, arch, [("PE", "P", 2, "X"), ("PE", "R", 2, "Y"),
                                     ("RF", "Q", 4), ("RF", "S", 3)])


def test_row_stationary_exact_multicast():
    arch = make_arch("exact")
    mapping = rs_mapping(arch)
    expected = expand({
        ("DRAM", "Weights"): (6, 0, 0),     # R2*S3 weights, once
        ("DRAM", "Inputs"): (18, 0, 0),     # rows (2+2-1) * cols (4+3-1) = 3*6, once
        ("DRAM", "Outputs"): (0, 0, 8),     # 2x4 outputs written back once
        # Each RF is filled once (no loops above the RFs). Weights: PE(p, r) holds filter
        # row r (3 words); PEs with the same r share a read: 2 rows * 3 = 6 reads.
        ("GLB", "Weights"): (6, 6, 0),
        # Inputs: PE(p, r) holds input row p + r (6 words); (0,1) and (1,0) both need row
        # 1 (diagonal reuse), so rows {0, 1, 2}: 3 * 6 = 18 reads.
        ("GLB", "Inputs"): (18, 18, 0),
        # Outputs: PE(p, r) produces output row p (4 words), reduced over r in the array:
        # one update per distinct row per word = 2*4 = 8; no psum ever read back.
        ("GLB", "Outputs"): (0, 0, 8),
        # RF: 12 MACs per PE (Q4*S3), 4 PEs: 48 weight reads and 48 input reads; fills 4
        # PEs * 3 weights = 12 and 4 * 6 inputs = 24.
        ("RF", "Weights"): (48, 12, 0),
        ("RF", "Inputs"): (48, 24, 0),
        # 48 read-modify-writes; each PE first-touches its 4 outputs: reads 48 - 16 = 32.
        ("RF", "Outputs"): (32, 0, 48),
        # Array words: each PE receives its weights (4*3) and inputs (4*6) and sends back
        # its 4 partial sums (4*4); no psums go down.
        ("PE", "Weights"): 12, ("PE", "Inputs"): 24, ("PE", "Outputs"): 16,
        "compute_cycles": 12,
        "active_pes": 4,
    })
    assert_counts(counts_of_model(CONV2D, arch, mapping), expected, "model")
    assert_counts(counts_of_oracle(CONV2D, arch, mapping), expected, "oracle")


def test_row_stationary_projection_multicast():
    """Same mapping; projection multicast only shares data across a loop over a dim that
    does not index the tensor, so the diagonal input reuse is lost."""
    arch = make_arch("projection")
    mapping = rs_mapping(arch)
    model = counts_of_model(CONV2D, arch, mapping)
    oracle = counts_of_oracle(CONV2D, arch, mapping)
    for got in (model, oracle):
        # P and R both index Inputs: all 4 PEs count as distinct, 4 * 6 = 24 GLB reads.
        assert got["GLB", "Inputs", "reads"] == 24
        # P does not index Weights: still one read per filter row, 2 * 3 = 6.
        assert got["GLB", "Weights", "reads"] == 6
        # R does not index Outputs: still reduced to 2 rows * 4 = 8 updates.
        assert got["GLB", "Outputs", "updates"] == 8
        assert got["RF", "Inputs", "fills"] == 24       # every PE still gets its 6 inputs
    assert model == oracle


# ---------------------------------------------------------------------------------------
# Sliding windows at the RF: the input halo is kept when the innermost relevant loop steps

@pytest.mark.parametrize("stride,expected_fills,glb_fills", [
    # stride 1: the RF tile covers p in 2, r in 3 -> (2-1) + (3-1) + 1 = 4 inputs; each of
    # the 2 later steps of the GLB p loop moves it by 2 rows, keeping 2: 4 + 2 + 2 = 8.
    # GLB holds all (6-1) + (3-1) + 1 = 8 inputs.
    ((1, 1), 8, 8),
    # stride 2: tile (2-1)*2 + (3-1) + 1 = 5 rows; each step moves it by 2*2 = 4 rows,
    # keeping 1: 5 + 4 + 4 = 13 = all (6-1)*2 + 2 + 1 = 13 input rows exactly once.
    ((2, 1), 13, 13),
])
def test_sliding_window(stride, expected_fills, glb_fills):
    layer = layer_from_dims("window", stride=stride, P=6, R=3)
    arch = make_arch()
    mapping = mapping_of(layer, arch, [("GLB", "P", 3), ("RF", "P", 2), ("RF", "R", 3)])
    for got in (counts_of_model(layer, arch, mapping), counts_of_oracle(layer, arch, mapping)):
        assert got["RF", "Inputs", "fills"] == expected_fills
        assert got["GLB", "Inputs", "reads"] == expected_fills   # one PE: reads = its fills
        assert got["GLB", "Inputs", "fills"] == glb_fills
        assert got["RF", "Weights", "fills"] == 3       # P does not index Weights: once
        # Outputs: 2 new per step, 3 steps, all first touches: nothing fetched, 6 written back.
        assert got["RF", "Outputs", "fills"] == 0
        assert got["GLB", "Outputs", "updates"] == 6


@pytest.mark.parametrize("order,inputs,weights", [
    # M inside P: inputs stay while m steps (M does not index them) and slide when p
    # steps: 4 + 2 + 2 = 8. Weights (3 per filter) change at every step: 6 * 3 = 18.
    (("P", "M"), 8, 18),
    # M outside P: each m step restarts the window (the whole 4-word tile): 2 * 8 = 16.
    # Weights change only when m steps: 2 * 3 = 6.
    (("M", "P"), 16, 6),
])
def test_loop_order_outside_the_window(order, inputs, weights):
    layer = layer_from_dims("window2", M=2, P=6, R=3)
    arch = make_arch()
    factors = {"P": 3, "M": 2}
    mapping = mapping_of(layer, arch, [("GLB", d, factors[d]) for d in order]
                         + [("RF", "P", 2), ("RF", "R", 3)])
    for got in (counts_of_model(layer, arch, mapping), counts_of_oracle(layer, arch, mapping)):
        assert got["RF", "Inputs", "fills"] == inputs
        assert got["RF", "Weights", "fills"] == weights


# ---------------------------------------------------------------------------------------
# Spatial reduction with partial sums sent back down

def test_spatial_reduction_with_psum_refetch():
    """1x1 conv, C=4 split as C2 across the PEs (Y) and C2 in time at the GLB, outside a
    P2 loop: every RF refetches its partial sums for the second c."""
    layer = layer_from_dims("reduce", C=4, P=2)      # 8 MACs
    arch = make_arch()
    mapping = mapping_of(layer, arch, [("GLB", "C", 2), ("GLB", "P", 2), ("PE", "C", 2, "Y")])
    expected = expand({
        ("DRAM", "Weights"): (4, 0, 0),     # C4 weights once
        ("DRAM", "Inputs"): (8, 0, 0),      # C4 * P2 inputs once
        ("DRAM", "Outputs"): (0, 0, 2),     # 2 outputs written back once
        # Weights: a PE's weight (its c) changes only when the GLB c steps: 2 per PE; PEs
        # hold different c: 2 * 2 = 4 reads; RF fills 2 PEs * 2 = 4.
        ("GLB", "Weights"): (4, 4, 0),
        # Inputs (c, p) change at every step: 4 per PE, different per PE: 8 reads, 8 fills.
        ("GLB", "Inputs"): (8, 8, 0),
        # Outputs: the RF's output word changes at every step: 4 tiles per PE. Both PEs
        # hold the same output (C does not index it): one reduced update per tile -> 4.
        # Of the 4, 2 are first touches (c=0); the 2 psums for c=1 are read once for the
        # pair of PEs -> 2 reads.
        ("GLB", "Outputs"): (2, 0, 4),
        ("RF", "Weights"): (8, 4, 0),       # 4 MACs per PE read a weight each: 2*4
        ("RF", "Inputs"): (8, 8, 0),
        # RF outputs: 8 read-modify-writes, 2 first touches per PE -> 8 - 4 = 4 reads;
        # psum fills: each of the 2 PEs receives the 2 refetched psums (counted at every
        # child, as the model's docstring and Timeloop do) -> 4.
        ("RF", "Outputs"): (4, 4, 8),
        # Array words: weights 2*2, inputs 2*4; outputs 4 psums delivered down + 2 PEs * 4
        # tiles written back = 12.
        ("PE", "Weights"): 4, ("PE", "Inputs"): 8, ("PE", "Outputs"): 12,
        "compute_cycles": 4,      # C2 * P2
        "active_pes": 2,
    })
    assert_counts(counts_of_model(layer, arch, mapping), expected, "model")
    assert_counts(counts_of_oracle(layer, arch, mapping), expected, "oracle")


# ---------------------------------------------------------------------------------------
# A step outside r that lands the input tile on the rows the buffer already holds: nothing
# is fetched (Timeloop's deltas agree)

UNCHANGED = layer_from_dims("halo", P=2, R=2)     # h = p + r


def unchanged_case():
    arch = make_arch()
    # GLB loops: for p in 2: for r in 2. The RF holds one input word h = p + r; r is the
    # innermost relevant loop. Steps: (0,0) h=0 fetch 1; (0,1) h=1: r slides, 1 new word;
    # (1,0) h=1: p stepped (outside r) but the RF holds h=1 already: 0; (1,1) h=2: 1.
    # Total 3 (refetching at (1,0) would give 2 sweeps x (1 + 1) = 4).
    return arch, mapping_of(UNCHANGED, arch, [("GLB", "P", 2), ("GLB", "R", 2)])


def test_unchanged_tile():
    arch, mapping = unchanged_case()
    for got in (counts_of_model(UNCHANGED, arch, mapping), counts_of_oracle(UNCHANGED, arch, mapping)):
        assert got["RF", "Inputs", "fills"] == 3
        assert got["GLB", "Inputs", "reads"] == 3
        assert got["PE", "Inputs", "words"] == 3


DILATED = layer_from_dims("dilated_halo", M=2, P=3, R=2, dilation=(2, 1))   # h = p + 2r


@pytest.mark.parametrize("order,fills", [
    # for r in 2: for m in 2: for p in 3 (p is r-loop "r"; the RF holds one word h = p + 2r).
    # (r=0, m=0): h = 0, 1, 2: 1 + 1 + 1 = 3 (p slides one row per step).
    # (r=0, m=1): m stepped, p reset: h = 0 is not the held h = 2 -> 1; then 1, 1: 3.
    # (r=1, m=0): r stepped by dilation 2 while p reset by stride x 2 = 2: h = 2, exactly
    #             the held h = 2 -> 0; then h = 3, 4: 1 + 1 = 2.
    # (r=1, m=1): m stepped: h = 2 vs held 4 -> 1; then 1, 1: 3.      Total 3+3+2+3 = 11.
    (("R", "M", "P"), 11),
    # for m in 2: for r in 2: for p in 3: the R step comes back to the held row in both
    # m iterations: (m, r) = (0,0): 3; (0,1): 0 + 2; (1,0): m stepped, h = 0 vs held 4 -> 1
    # + 2 = 3; (1,1): 0 + 2.                                          Total 3+2+3+2 = 10.
    (("M", "R", "P"), 10),
    # for r in 2: for p in 3: for m in 2: m is inside r = p, the tile stays during m steps.
    # r=0: h = 0, 1, 2 -> 3; r=1: h = 2 (held) -> 0, then 3, 4 -> 2.   Total 5.
    (("R", "P", "M"), 5),
])
def test_unchanged_tile_after_a_dilated_step(order, fills):
    arch = make_arch()
    factor = {"M": 2, "P": 3, "R": 2}
    mapping = mapping_of(DILATED, arch, [("GLB", d, factor[d]) for d in order])
    for got in (counts_of_model(DILATED, arch, mapping), counts_of_oracle(DILATED, arch, mapping)):
        assert got["RF", "Inputs", "fills"] == fills
        assert got["GLB", "Inputs", "reads"] == fills     # one PE, no multicast
        # the GLB holds the whole input h = 0..4 once: 5 words from DRAM
        assert got["GLB", "Inputs", "fills"] == 5
