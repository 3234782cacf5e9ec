"""Problem and architecture files: what the parser derives from them.

Every expected number here is derived in this file from shapes transcribed from the
published layer shapes (AlexNet: Krizhevsky et al. 2012, grouped, as the Eyeriss JSSC
paper's Table III lists it; MobileNet v1: Howard et al. 2017, 224 x 224, alpha 1.0) or from the
Eyeriss papers' organisation as quoted in the shipped arch files; none is copied from the
parser's output. The published totals (724,406,816 / 665,784,864 / 568,740,352 MACs) are
asserted as well, so a transcription slip in the tables below would also fail.
"""
from __future__ import annotations

import pytest
import yaml

from mapper.arch import Fanout, Storage, load_arch, parse_arch
from mapper.problem import label, load_network, parse_layer
from mapper.spec import SpecError

# ---------------------------------------------------------------------------------------
# AlexNet (reference table 4.1): name, C per group, M (total), input H=W before padding,
# R=S, stride, pad (each side), groups, published output E=F, published MACs.
ALEXNET_CONV = [
    ("conv1", 3, 96, 227, 11, 4, 0, 1, 55, 105_415_200),
    ("conv2", 48, 256, 27, 5, 1, 2, 2, 27, 223_948_800),
    ("conv3", 256, 384, 13, 3, 1, 1, 1, 13, 149_520_384),
    ("conv4", 192, 384, 13, 3, 1, 1, 2, 13, 112_140_288),
    ("conv5", 192, 256, 13, 3, 1, 1, 2, 13, 74_760_192),
]
# name, C, M, published MACs
ALEXNET_FC = [
    ("fc6", 256 * 6 * 6, 4096, 37_748_736),
    ("fc7", 4096, 4096, 16_777_216),
    ("fc8", 4096, 1000, 4_096_000),
]
ALEXNET_CONV_TOTAL = 665_784_864       # [P] ISSCC "666M MACs" / reference table
ALEXNET_TOTAL = 724_406_816


def alexnet_expected():
    """{layer: (dims dict, macs)} computed from the transcribed shapes."""
    out = {}
    for name, c_pg, m, h, r, stride, pad, groups, e_pub, macs_pub in ALEXNET_CONV:
        e = (h + 2 * pad - r) // stride + 1
        assert (h + 2 * pad - r) % stride == 0
        assert e == e_pub, name                                  # table is self-consistent
        macs = e * e * r * r * c_pg * m                           # M total = groups * M per group
        assert macs == macs_pub, name
        dims = {"N": 1, "G": groups, "M": m // groups, "C": c_pg, "P": e, "Q": e, "R": r, "S": r}
        out[name] = (dims, macs)
    for name, c, m, macs_pub in ALEXNET_FC:
        assert c * m == macs_pub, name
        out[name] = ({"N": 1, "G": 1, "M": m, "C": c, "P": 1, "Q": 1, "R": 1, "S": 1}, c * m)
    return out


# MobileNet v1 (reference table 4.2): name, kind, C in, M out, input H=W, R=S, stride,
# published output E=F, published MACs. dw7..dw11 / pw7..pw11 are expanded.
MOBILENET = [
    ("conv1", "conv", 3, 32, 224, 3, 2, 112, 10_838_016),
    ("dw1", "dw", 32, 32, 112, 3, 1, 112, 3_612_672),
    ("pw1", "pw", 32, 64, 112, 1, 1, 112, 25_690_112),
    ("dw2", "dw", 64, 64, 112, 3, 2, 56, 1_806_336),
    ("pw2", "pw", 64, 128, 56, 1, 1, 56, 25_690_112),
    ("dw3", "dw", 128, 128, 56, 3, 1, 56, 3_612_672),
    ("pw3", "pw", 128, 128, 56, 1, 1, 56, 51_380_224),
    ("dw4", "dw", 128, 128, 56, 3, 2, 28, 903_168),
    ("pw4", "pw", 128, 256, 28, 1, 1, 28, 25_690_112),
    ("dw5", "dw", 256, 256, 28, 3, 1, 28, 1_806_336),
    ("pw5", "pw", 256, 256, 28, 1, 1, 28, 51_380_224),
    ("dw6", "dw", 256, 256, 28, 3, 2, 14, 451_584),
    ("pw6", "pw", 256, 512, 14, 1, 1, 14, 25_690_112),
] + [row for i in range(7, 12) for row in (
    (f"dw{i}", "dw", 512, 512, 14, 3, 1, 14, 903_168),
    (f"pw{i}", "pw", 512, 512, 14, 1, 1, 14, 51_380_224))] + [
    ("dw12", "dw", 512, 512, 14, 3, 2, 7, 225_792),
    ("pw12", "pw", 512, 1024, 7, 1, 1, 7, 25_690_112),
    ("dw13", "dw", 1024, 1024, 7, 3, 1, 7, 451_584),
    ("pw13", "pw", 1024, 1024, 7, 1, 1, 7, 51_380_224),
    ("fc", "fc", 1024, 1000, 1, 1, 1, 1, 1_024_000),
]
MOBILENET_BODY_TOTAL = 567_716_352
MOBILENET_TOTAL = 568_740_352


def mobilenet_expected():
    out = {}
    for name, kind, c, m, h, r, stride, e_pub, macs_pub in MOBILENET:
        e = -(-h // stride)                    # "same" padding: ceil(H / stride)
        assert e == e_pub, name
        if kind == "dw":                       # one filter per channel: groups = C
            dims = {"N": 1, "G": c, "M": 1, "C": 1, "P": e, "Q": e, "R": r, "S": r}
            macs = e * e * r * r * c
        else:
            dims = {"N": 1, "G": 1, "M": m, "C": c, "P": e, "Q": e, "R": r, "S": r}
            macs = e * e * r * r * c * m
        assert macs == macs_pub, name
        out[name] = (dims, macs, stride)
    return out


# ---------------------------------------------------------------------------------------
# Networks

def test_reference_tables_add_up_to_published_totals():
    alex = alexnet_expected()
    assert sum(macs for name, (_, macs) in alex.items() if name.startswith("conv")) == ALEXNET_CONV_TOTAL
    assert sum(macs for _, macs in alex.values()) == ALEXNET_TOTAL
    mob = mobilenet_expected()
    assert len(mob) == 28
    assert sum(macs for name, (_, macs, _) in mob.items() if name != "fc") == MOBILENET_BODY_TOTAL
    assert sum(macs for _, macs, _ in mob.values()) == MOBILENET_TOTAL


def test_alexnet_layers_and_totals():
    net = load_network("alexnet")
    expected = alexnet_expected()
    assert [l.name for l in net.layers] == list(expected)
    for layer in net.layers:
        dims, macs = expected[layer.name]
        assert layer.dims == dims, layer.name
        assert layer.macs == macs, layer.name
    assert net.macs == ALEXNET_TOTAL == 724_406_816
    assert sum(l.macs for l in net.layers if l.type == "conv") == ALEXNET_CONV_TOTAL == 665_784_864
    assert [l.type for l in net.layers] == ["conv"] * 5 + ["fc"] * 3


def test_alexnet_grouped_layers_split_channels_per_group():
    net = load_network("alexnet")
    conv2, conv4, conv5 = (net.layer(n) for n in ("conv2", "conv4", "conv5"))
    # conv2: 96 input channels and 256 filters split over the two GPUs.
    assert (conv2.G, conv2.C, conv2.M) == (2, 48, 128)
    assert (conv4.G, conv4.C, conv4.M) == (2, 192, 192)
    assert (conv5.G, conv5.C, conv5.M) == (2, 192, 128)
    # conv1: stride 4, no padding: (227 - 11) / 4 + 1 = 55
    conv1 = net.layer("conv1")
    assert conv1.stride == (4, 4) and conv1.pad == (0, 0) and (conv1.P, conv1.Q) == (55, 55)
    # conv2's input tile is the padded 31 x 31 (27 + 2*2) that Eyeriss's table lists
    assert conv2.pad == (4, 4) and conv2.input_rows == 31 and conv2.input_cols == 31
    # fc6 flattens 256 x 6 x 6
    fc6 = net.layer("fc6")
    assert (fc6.C, fc6.M, fc6.P, fc6.R) == (9216, 4096, 1, 1)
    assert fc6.tensor_size("Weights") == 9216 * 4096


def test_mobilenet_layers_and_totals():
    net = load_network("mobilenet_v1")
    expected = mobilenet_expected()
    assert len(net.layers) == 28
    assert [l.name for l in net.layers] == list(expected)
    for layer in net.layers:
        dims, macs, stride = expected[layer.name]
        assert layer.dims == dims, layer.name
        assert layer.macs == macs, layer.name
        assert layer.stride == (stride, stride), layer.name
    assert net.macs == MOBILENET_TOTAL == 568_740_352


def test_mobilenet_depthwise_layers():
    net = load_network("mobilenet_v1")
    for name in ("dw1", "dw2", "dw13"):
        layer = net.layer(name)
        assert layer.type == "depthwise"
        channels = {"dw1": 32, "dw2": 64, "dw13": 1024}[name]
        # one group per channel, one input and one output channel per group
        assert (layer.G, layer.C, layer.M) == (channels, 1, 1)
        assert layer.tensor_size("Weights") == channels * 9


def test_pad_same_stride_2_is_tensorflow_asymmetric():
    net = load_network("mobilenet_v1")
    # TF 'same', stride 2, 3x3 on an even input: out = H/2, total pad = (out-1)*2 + 3 - H = 1
    conv1 = net.layer("conv1")           # 224 -> 112
    assert (conv1.P, conv1.Q) == (112, 112)
    assert conv1.pad == (1, 1)
    assert conv1.input_rows == 111 * 2 + 3 == 225 == 224 + 1
    dw2 = net.layer("dw2")               # 112 -> 56
    assert (dw2.P, dw2.Q, dw2.pad) == (56, 56, (1, 1))
    # stride 1 'same' pads 1 on each side (total 2)
    assert net.layer("dw1").pad == (2, 2) and net.layer("dw1").P == 112
    # 1x1 layers: no padding needed
    assert net.layer("pw1").pad == (0, 0)


@pytest.mark.parametrize("H, W, R, stride, dilation, P, Q, pad", [
    # out = ceil(size / stride); total = max((out-1)*stride + (R-1)*dilation + 1 - size, 0)
    (8, 7, 3, 2, 1, 4, 4, (1, 2)),       # 8: (3*2+3-8)=1; 7: out 4, (3*2+3-7)=2
    (7, 7, 3, 2, 1, 4, 4, (2, 2)),
    (10, 10, 3, 1, 2, 10, 10, (4, 4)),   # dilation 2: span 5, total pad 4
    (9, 9, 5, 3, 1, 3, 3, (2, 2)),       # out 3: (2*3 + 5 - 9) = 2
    (7, 7, 1, 2, 1, 4, 4, (0, 0)),       # 1x1 stride 2, odd input: (3*2 + 1 - 7) = 0
    # 1x1 stride 2 on an even input (ResNet's projection shortcut, 56 -> 28): TF gives
    # ceil(56/2) = 28 outputs with zero padding; the last input row is simply not read.
    (56, 56, 1, 2, 1, 28, 28, (0, 0)),
])
def test_pad_same_derivation(H, W, R, stride, dilation, P, Q, pad):
    layer = parse_layer({"name": "x", "type": "conv", "C": 2, "M": 2, "H": H, "W": W, "R": R, "S": R,
                         "stride": stride, "dilation": dilation, "pad": "same"}, "<t>", "layers[0]")
    assert (layer.P, layer.Q) == (P, Q)
    assert layer.pad == pad


def test_explicit_pad_pair_and_stride_pair():
    layer = parse_layer({"name": "x", "type": "conv", "C": 4, "M": 8, "H": 9, "W": 12, "R": 3, "S": 5,
                         "stride": [2, 1], "pad": [1, 0]}, "<t>", "layers[0]")
    # rows: (9 + 2 - 3)/2 + 1 = 5; columns: (12 + 0 - 5)/1 + 1 = 8
    assert (layer.P, layer.Q) == (5, 8)
    assert layer.stride == (2, 1) and layer.pad == (2, 0)
    assert layer.macs == 4 * 8 * 5 * 8 * 3 * 5


@pytest.mark.parametrize("H, R, stride, pad, dilation, P", [
    # PyTorch / ONNX: P = floor((H + pad_top + pad_bottom - dilation*(R-1) - 1) / stride) + 1
    (224, 7, 2, 3, 1, 112),      # ResNet-50 conv1: (224 + 6 - 6 - 1) = 223, 223 // 2 + 1 = 112
    (56, 1, 2, 0, 1, 28),        # ResNet-50 projection shortcut: 55 // 2 + 1 = 28
    (112, 3, 2, 1, 1, 56),       # (112 + 2 - 2 - 1) = 111, 111 // 2 + 1 = 56
    (10, 3, 3, 0, 2, 2),         # dilation 2: span 10 - 4 - 1 = 5, 5 // 3 + 1 = 2
])
def test_output_size_floors_as_pytorch(H, R, stride, pad, dilation, P):
    layer = parse_layer({"name": "x", "type": "conv", "C": 3, "M": 4, "H": H, "W": H, "R": R, "S": R,
                         "stride": stride, "pad": pad, "dilation": dilation}, "f.yaml", "layers[0]")
    assert (layer.P, layer.Q) == (P, P)
    # only the rows some output reads are fetched: never more than the padded input
    read = (P - 1) * stride + (R - 1) * dilation + 1
    assert layer.input_rows == read <= H + 2 * pad
    assert layer.tensor_size("Inputs") == 3 * read * read


def test_pad_four_sides_is_asymmetric():
    # [top, bottom, left, right] = [0, 1, 2, 0]: rows (8 + 1 - 3) // 2 + 1 = 4, columns (8 + 2 - 3) // 1 + 1 = 8
    layer = parse_layer({"name": "x", "type": "conv", "C": 2, "M": 2, "H": 8, "W": 8, "R": 3, "S": 3,
                         "stride": [2, 1], "pad": [0, 1, 2, 0]}, "f.yaml", "layers[0]")
    assert (layer.P, layer.Q) == (4, 8)
    assert layer.pad == (1, 2)


@pytest.mark.parametrize("pad", [[1, 2, 3], "valid", [1, -1, 0, 0]])
def test_bad_pad_forms(pad):
    with pytest.raises(SpecError) as err:
        parse_layer({"name": "x", "type": "conv", "C": 2, "M": 2, "H": 8, "W": 8, "R": 3, "S": 3, "pad": pad},
                    "f.yaml", "layers[0]")
    assert err.value.field == "layers[0].pad"


def test_output_size_below_one_is_an_error_with_the_numbers():
    with pytest.raises(SpecError) as err:
        parse_layer({"name": "x", "type": "conv", "C": 3, "M": 4, "H": 4, "W": 8, "R": 7, "S": 3,
                     "stride": 2, "pad": 1}, "f.yaml", "layers[0]")
    # (4 + 2 - 6 - 1) = -1, -1 // 2 + 1 = 0
    assert err.value.source == "f.yaml" and err.value.field == "layers[0].H"
    assert "would be 0" in str(err.value) and "(4 + pad 2 - 1*(7-1) - 1)" in str(err.value)


def write_problem(tmp_path, text, name="net.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


NET_YAML = """
name: tiny
{batch}
layers:
  - {{name: a, type: conv, C: 4, M: 6, H: 6, W: 6, R: 3, S: 3}}
  - {{name: b, type: fc, C: 10, M: 5}}
"""


def test_batch_top_level_and_override(tmp_path):
    # a: 4*6 * 4*4 * 9 = 3456 MACs per image; b: 50
    per_image = 4 * 6 * 4 * 4 * 9 + 10 * 5
    plain = load_network(write_problem(tmp_path, NET_YAML.format(batch=""), "plain.yaml"))
    assert [l.N for l in plain.layers] == [1, 1] and plain.macs == per_image
    four = write_problem(tmp_path, NET_YAML.format(batch="batch: 4"), "four.yaml")
    net = load_network(four)
    assert [l.N for l in net.layers] == [4, 4] and net.macs == 4 * per_image
    over = load_network(four, batch=2)
    assert [l.N for l in over.layers] == [2, 2] and over.macs == 2 * per_image
    alex3 = load_network("alexnet", batch=3)
    assert all(l.N == 3 for l in alex3.layers) and alex3.macs == 3 * ALEXNET_TOTAL
    # Inputs and outputs scale with N, weights do not
    a1, a3 = load_network("alexnet").layer("conv3"), alex3.layer("conv3")
    assert a3.tensor_size("Weights") == a1.tensor_size("Weights")
    assert a3.tensor_size("Inputs") == 3 * a1.tensor_size("Inputs") == 3 * 256 * 15 * 15
    assert a3.tensor_size("Outputs") == 3 * 384 * 13 * 13


def test_batch_zero_is_an_error(tmp_path):
    with pytest.raises(SpecError) as err:
        load_network(write_problem(tmp_path, NET_YAML.format(batch="batch: 0")))
    assert err.value.field == "batch"


def test_per_layer_N(tmp_path):
    path = write_problem(tmp_path, "name: t\nlayers:\n  - {name: a, type: fc, C: 3, M: 2, N: 5}\n")
    layer = load_network(path).layer("a")
    assert layer.N == 5 and layer.macs == 30


def test_density_parsing(tmp_path):
    path = write_problem(tmp_path, """
name: sparse
layers:
  - {name: a, type: conv, C: 4, M: 6, H: 6, W: 6, R: 3, S: 3, density: {weights: 0.4}}
  - {name: b, type: fc, C: 10, M: 5, density: {weights: 0.25, inputs: 0.5}}
  - {name: c, type: fc, C: 10, M: 5}
density_presets:
  pruned: {a: {inputs: 0.3}, c: {weights: 0.1}}
""")
    net = load_network(path)
    assert net.layer("a").densities() == {"weights": 0.4, "inputs": 1.0}
    assert net.layer("b").densities() == {"weights": 0.25, "inputs": 0.5}
    assert net.layer("c").densities() == {"weights": 1.0, "inputs": 1.0}
    # density changes the shape key (costs differ) but not the MAC count of the loop nest
    assert net.layer("b").shape_key() != load_network(path).layer("c").shape_key()
    merged = net.layer("a").with_density({"inputs": 0.6})
    assert merged.densities() == {"weights": 0.4, "inputs": 0.6}
    assert net.preset("pruned") == {"a": {"inputs": 0.3}, "c": {"weights": 0.1}}
    with pytest.raises(SpecError):
        net.preset("nope")


@pytest.mark.parametrize("density, field, fragment", [
    ("{weights: 0}", "layers[0].density.weights", "(0, 1]"),
    ("{weights: 1.5}", "layers[0].density.weights", "(0, 1]"),
    ("{inputs: -0.1}", "layers[0].density.inputs", ""),
    ("{weight: 0.5}", "layers[0].density.weight", "did you mean 'weights'"),
    ("{outputs: 0.5}", "layers[0].density.outputs", "unknown field"),
    ("0.5", "layers[0].density", "mapping"),
    ("{weights: dense}", "layers[0].density.weights", "number"),
])
def test_bad_density(tmp_path, density, field, fragment):
    path = write_problem(tmp_path, f"name: t\nlayers:\n  - {{name: a, type: fc, C: 3, M: 2, density: {density}}}\n")
    with pytest.raises(SpecError) as err:
        load_network(path)
    assert err.value.source == str(path)
    assert err.value.field == field
    assert fragment in str(err.value)


@pytest.mark.parametrize("fields, field, fragment", [
    ({"strid": 2}, "layers[0].strid", "did you mean 'stride'"),
    ({"C": 0}, "layers[0].C", "at least 1"),
    ({"C": 2.5}, "layers[0].C", "whole number"),
    ({"type": "depthwise", "groups": 2}, "layers[0].groups", "groups = C"),
    ({"groups": 3}, "layers[0].groups", "divisible"),
    ({"type": "fc", "H": 1, "W": 1, "R": 3}, "layers[0].R", "fully connected"),
    ({"pad": "valid"}, "layers[0].pad", "same"),
    ({"H": 2}, "layers[0].H", "larger than the padded input"),
])
def test_bad_layer_fields(fields, field, fragment):
    data = {"name": "x", "type": "conv", "C": 4, "M": 4, "H": 8, "W": 8, "R": 3, "S": 3, **fields}
    with pytest.raises(SpecError) as err:
        parse_layer(data, "f.yaml", "layers[0]")
    assert err.value.field == field
    assert fragment in err.value.message


def test_depthwise_defaults_and_multiplier():
    layer = parse_layer({"name": "d", "type": "depthwise", "C": 8, "H": 5, "W": 5, "R": 3, "S": 3, "pad": 1},
                        "<t>", "layers[0]")
    assert (layer.G, layer.C, layer.M, layer.P) == (8, 1, 1, 5)
    # channel multiplier 2: M = 16 -> 2 filters per group
    layer = parse_layer({"name": "d", "type": "depthwise", "C": 8, "M": 16, "H": 5, "W": 5, "R": 3, "S": 3},
                        "<t>", "layers[0]")
    assert (layer.G, layer.C, layer.M, layer.P) == (8, 1, 2, 3)
    assert layer.macs == 8 * 2 * 3 * 3 * 9


def test_dilation_derivation():
    # H 12, R 3, dilation 2: effective filter span 5 -> P = 12 - 5 + 1 = 8
    layer = parse_layer({"name": "d", "type": "conv", "C": 2, "M": 2, "H": 12, "W": 12, "R": 3, "S": 3,
                         "dilation": 2}, "<t>", "layers[0]")
    assert (layer.P, layer.Q) == (8, 8) and layer.dilation == (2, 2)
    assert layer.input_rows == 7 * 1 + 2 * 2 + 1 == 12


# ---------------------------------------------------------------------------------------
# Architectures

def test_builtin_archs_load():
    v1, v2 = load_arch("eyeriss_v1"), load_arch("eyeriss_v2")
    assert (v1.name, v2.name) == ("eyeriss_v1", "eyeriss_v2")
    assert isinstance(v1.levels[0], Storage) and v1.levels[0].name == "DRAM"
    assert isinstance(v2.levels[0], Storage) and v2.levels[0].name == "DRAM"


def test_eyeriss_v1_organisation():
    arch = load_arch("eyeriss_v1")
    # 12 rows x 14 columns of PEs = 168
    assert arch.pes == 12 * 14 == 168
    (array,) = arch.fanouts
    assert (array.X, array.Y) == (14, 12)
    assert set(array.x_dims) == set("PMNG") and set(array.y_dims) == set("RCMG")
    assert [l.name for l in arch.levels] == ["DRAM", "GLB", "array", "ifmap_spad", "weights_spad", "psum_spad"]
    instances = {l.name: l.instances for l in arch.levels}
    assert instances == {"DRAM": 1, "GLB": 1, "array": 1, "ifmap_spad": 168, "weights_spad": 168,
                         "psum_spad": 168}
    glb = arch.level("GLB")
    # 100 KB ifmap+psum and 8 KB filter SRAM in 16-bit words
    assert dict(glb.partitions) == {("Inputs", "Outputs"): 100 * 1024 // 2, ("Weights",): 8 * 1024 // 2}
    assert glb.may_bypass == ("Weights",)
    # 24 B, 448 B and 48 B scratchpads in 16-bit words
    assert arch.level("ifmap_spad").partitions == ((("Inputs",), 24 // 2),)
    assert arch.level("weights_spad").partitions == ((("Weights",), 448 // 2),)
    assert arch.level("psum_spad").partitions == ((("Outputs",), 48 // 2),)
    assert arch.level("ifmap_spad").temporal_dims == ()
    assert set(arch.level("weights_spad").temporal_dims) == {"C", "S"}
    assert arch.level("psum_spad").temporal_dims == ("M",)
    assert arch.level("DRAM").energy_of("Inputs") == (200.0, 200.0, 200.0)
    assert arch.mac_energy == 1.0 and arch.word_bits == 16


def test_eyeriss_v2_organisation():
    arch = load_arch("eyeriss_v2")
    # 8 x 2 clusters of 3 x 4 PEs = 192 PEs, 2 SIMD MACs each [P] P1
    clusters, pes, simd = arch.fanouts
    assert (clusters.X * clusters.Y, pes.X * pes.Y, simd.X * simd.Y) == (16, 12, 2)
    assert arch.pes == (8 * 2) * (3 * 4) * 2 == 384
    # the HM-NoC sits between the GLB clusters and the PE clusters: one GLB level of 16 clusters
    instances = {l.name: l.instances for l in arch.levels}
    assert instances == {"DRAM": 1, "GLB": 1, "cluster_array": 1, "pe_cluster": 16, "iact_spad": 192,
                         "weights_spad": 192, "psum_spad": 192, "simd": 192}
    glb = arch.level("GLB")
    assert "Weights" not in glb.keeps            # weights stream DRAM -> PE spads
    # 16 GLB clusters x (3 iact banks of 1.5 KB of 8-bit values, 4 psum banks of 768 entries) [P] P1
    assert dict(glb.partitions) == {("Inputs",): 16 * 3 * 1536, ("Outputs",): 16 * 4 * 768}
    assert arch.word_bits == 8


def test_arch_capacity_and_energy_forms():
    data = {
        "name": "t", "mac": {"energy": 0.5},
        "levels": [
            {"name": "DRAM", "keeps": ["Weights", "Inputs", "Outputs"], "energy": 100},
            {"name": "buf", "keeps": ["Inputs", "Outputs"], "capacity": 64,
             "energy": {"read": 1, "write": 2, "update": 3}},
            {"name": "pe", "fanout": {"X": 2, "Y": 3}},
            {"name": "rf", "keeps": ["Weights", "Outputs"], "capacity": {"Weights": 8, "Outputs": 4},
             "energy": {"Weights": 1, "Inputs": 0, "Outputs": {"read": 4, "write": 5, "update": 6}}},
        ],
    }
    arch = parse_arch(data, "<t>")
    assert arch.pes == 6 and arch.level("rf").instances == 6 and arch.level("pe").instances == 1
    assert arch.level("buf").partitions == ((("Inputs", "Outputs"), 64),)
    assert dict(arch.level("rf").partitions) == {("Weights",): 8, ("Outputs",): 4}
    assert arch.level("buf").energy_of("Inputs") == (1.0, 2.0, 3.0)
    assert arch.level("rf").energy_of("Weights") == (1.0, 1.0, 1.0)
    assert arch.level("rf").energy_of("Outputs") == (4.0, 5.0, 6.0)
    assert arch.level("DRAM").bounded is False and arch.level("rf").bounded is True
    assert isinstance(arch.level("pe"), Fanout) and arch.level("pe").multicast == "exact"

    bad = yaml.safe_load(yaml.safe_dump(data))
    bad["levels"][3]["capacity"] = {"Weights": 8}        # Outputs kept but not given a capacity
    with pytest.raises(SpecError) as err:
        parse_arch(bad, "a.yaml")
    assert err.value.field == "levels[3].capacity" and "Outputs" in err.value.message

    bad = yaml.safe_load(yaml.safe_dump(data))
    bad["levels"][1]["capacty"] = bad["levels"][1].pop("capacity")
    with pytest.raises(SpecError) as err:
        parse_arch(bad, "a.yaml")
    assert err.value.field == "levels[1].capacty" and "did you mean 'capacity'" in err.value.message

    bad = yaml.safe_load(yaml.safe_dump(data))
    bad["levels"][0]["keeps"] = ["Weights", "Inputs"]
    with pytest.raises(SpecError) as err:
        parse_arch(bad, "a.yaml")
    assert err.value.field == "levels[0]"


# ---------------------------------------------------------------------------------------
# Matmul layers: Out[b][m][n] = sum_k A[b][m][k] * B[b][k][n] on the conv loop nest

@pytest.mark.parametrize("role, samples", [("weights", 1), ("weights", 3), ("activations", 1), ("activations", 3)])
def test_matmul_tensors_are_the_operands(role, samples):
    M, N, K, heads = 6, 5, 4, 2
    layer = parse_layer({"name": "mm", "type": "matmul", "M": M, "N": N, "K": K, "batch": heads, "b_role": role},
                        "f.yaml", "layers[0]", batch=samples)
    assert layer.macs == samples * heads * M * N * K
    # A: one [M x K] per head and sample; Out: one [M x N] per head and sample
    assert layer.tensor_size("Inputs") == samples * heads * M * K
    assert layer.tensor_size("Outputs") == samples * heads * M * N
    # B: a weight is shared by every sample; an activation (attention's K^T, V) is per sample
    b_copies = heads if role == "weights" else heads * samples
    assert layer.tensor_size("Weights") == b_copies * K * N
    # one MAC per (b, m, n, k): no sliding window
    assert (layer.P, layer.Q, layer.R, layer.S) == (1, 1, 1, 1)
    assert label(layer, "Weights") == "B (Weights)" and label(layer, "C") == "K (C)"
    # inferences per run (sweeps' inferences/s): the samples, not the rows
    assert layer.samples == samples


def test_matmul_density_and_network(tmp_path):
    path = write_problem(tmp_path, "name: t\nbatch: 2\nlayers:\n"
                         "  - {name: fc, type: matmul, M: 128, N: 3072, K: 768, density: {weights: 0.5}}\n"
                         "  - {name: qk, type: matmul, M: 128, N: 128, K: 64, batch: 12, b_role: activations}\n")
    net = load_network(path)
    fc, qk = net.layers
    assert fc.densities() == {"weights": 0.5, "inputs": 1.0}
    assert net.macs == 2 * (128 * 3072 * 768 + 12 * 128 * 128 * 64)
    assert qk.describe()["as_written"]["b_role"] == "activations"


@pytest.mark.parametrize("fields, field, fragment", [
    ({"K": None}, "layers[0].K", "missing"),
    ({"H": 4}, "layers[0].H", "unknown field"),
    ({"b_role": "weight"}, "layers[0].b_role", "did you mean 'weights'"),
    ({"batch": 0}, "layers[0].batch", "at least 1"),
])
def test_bad_matmul_fields(fields, field, fragment):
    data = {"name": "x", "type": "matmul", "M": 4, "N": 4, "K": 4, **fields}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(SpecError) as err:
        parse_layer(data, "f.yaml", "layers[0]")
    assert err.value.field == field
    assert fragment in err.value.message


# ---------------------------------------------------------------------------------------
# The model zoo against published, independent counts

@pytest.mark.parametrize("name, gmacs, layers", [
    # torchvision's documented GFLOPS (multiply-accumulates of conv and linear layers) for
    # ResNet50_Weights, VGG16_Weights and MobileNet_V2_Weights.IMAGENET1K_V1
    ("resnet50", 4.09, 53 + 1),        # He et al. Table 1: 1 + 3*(3+4+6+3) = 49 convs + 4 shortcuts, FC
    ("vgg16", 15.47, 13 + 3),
    ("mobilenet_v2", 0.30, 1 + 2 + 16 * 3 + 1 + 1),   # the first block has no expansion
])
def test_zoo_matches_published_macs(name, gmacs, layers):
    net = load_network(name)
    assert round(net.macs / 1e9, 2) == gmacs
    assert len(net.layers) == layers


def test_resnet50_pytorch_sizes():
    net = load_network("resnet50")
    conv1 = net.layer("conv1")              # 224, 7x7, stride 2, pad 3 -> 112
    assert (conv1.P, conv1.Q) == (112, 112)
    down = net.layer("layer2.0.downsample")  # 1x1 stride 2 on 56 -> 28
    assert (down.H, down.P, down.input_rows) == (56, 28, 55)
    assert net.layer("layer4.2.conv3").P == 7


def test_bert_base_from_the_paper_shapes():
    # Devlin et al. 2019: L = 12, H = 768, A = 12, FFN 4H; sequence length 128
    L, H, A, T = 12, 768, 12, 128
    per_layer = 4 * T * H * H + 2 * A * T * T * (H // A) + 2 * T * H * 4 * H
    net = load_network("bert_base")
    assert net.macs == L * per_layer
    assert len(net.layers) == L * 8 and {l.type for l in net.layers} == {"matmul"}
    qk = net.layer("l1.qk")
    assert qk.G == A and qk.tensor_size("Weights") == A * (H // A) * T   # K^T per head
    # identical encoder layers, and Q, K, V, O of one shape: 5 shapes to search, not 96
    assert len({(l.type, l.shape_key()) for l in net.layers}) == 5
