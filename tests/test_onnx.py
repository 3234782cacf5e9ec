"""ONNX import: graphs built here with onnx.helper (nothing downloaded), their imported layers
and MAC totals checked against numbers derived in the tests; the CLI's errors in a subprocess."""
from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

onnx = pytest.importorskip("onnx")
import numpy as np  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from mapper.onnx_import import NAME_LIMIT, import_onnx, safe_name  # noqa: E402
from mapper.problem import load_network, parse_network  # noqa: E402
from mapper.spec import SpecError  # noqa: E402

MAPPER = shutil.which("mapper") or str(Path(sys.executable).parent / "mapper")


def weight(name, *shape):
    return numpy_helper.from_array(np.zeros(shape, np.float32), name)


def save(tmp_path, nodes, inputs, inits, name="m.onnx", graph="g"):
    """A model of `nodes` with graph inputs {name: shape} (a str dim is symbolic)."""
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()]
    produced = {o for nd in nodes for o in nd.output}
    consumed = {i for nd in nodes for i in nd.input}
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in sorted(produced - consumed)]
    model = helper.make_model(helper.make_graph(nodes, graph, ins, outs, inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def out_size(size, begin, end, k, stride, dilation):
    """PyTorch / ONNX: floor((size + pads - dilation*(k-1) - 1) / stride) + 1."""
    return (size + begin + end - dilation * (k - 1) - 1) // stride + 1


# (attributes, expected output rows/columns derived from the ONNX definition of each form)
CONV_FORMS = [
    ({"pads": [3, 3, 3, 3], "strides": [2, 2]}, out_size(224, 3, 3, 7, 2, 1)),        # 112
    ({"pads": [0, 2, 1, 0], "strides": [2, 2]}, None),                                  # asymmetric
    ({"auto_pad": "SAME_UPPER", "strides": [2, 2]}, -(-224 // 2)),                      # ceil(224 / 2)
    ({"auto_pad": "SAME_LOWER", "strides": [3, 3]}, -(-224 // 3)),                      # ceil(224 / 3) = 75
    ({"auto_pad": "VALID", "strides": [2, 2]}, out_size(224, 0, 0, 7, 2, 1)),         # 109
    ({"auto_pad": "NOTSET"}, out_size(224, 0, 0, 7, 1, 1)),                            # 218
    ({"pads": [6, 6, 6, 6], "dilations": [2, 2], "strides": [1, 1]}, 224),             # 224 + 12 - 12 - 1 + 1
]


@pytest.mark.parametrize("attrs, side", CONV_FORMS)
def test_conv_padding_forms(tmp_path, attrs, side):
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", **attrs)
    path = save(tmp_path, [node], {"x": [1, 3, 224, 224]}, [weight("w", 16, 3, 7, 7)])
    layer = load_network(path).layers[0]
    if side is None:      # pads [top, left, bottom, right] = [0, 2, 1, 0] (ONNX: begins then ends)
        rows, cols = out_size(224, 0, 1, 7, 2, 1), out_size(224, 2, 0, 7, 2, 1)
    else:
        rows = cols = side
    assert (layer.P, layer.Q) == (rows, cols)
    assert layer.macs == 16 * 3 * rows * cols * 7 * 7


def test_grouped_depthwise_gemm_and_skipped_ops(tmp_path):
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], name="grouped", group=4, pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["a2"]),
        helper.make_node("Conv", ["a2", "w2"], ["b"], name="dw", group=32, pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["b"], ["b2"]),
        helper.make_node("GlobalAveragePool", ["b2"], ["c"]),
        helper.make_node("Flatten", ["c"], ["d"]),
        helper.make_node("Gemm", ["d", "fc_w", "fc_b"], ["e"], name="fc", transB=1),
    ]
    path = save(tmp_path, nodes, {"x": [1, 16, 32, 32]},
                [weight("w1", 32, 4, 3, 3), weight("w2", 64, 1, 3, 3), weight("fc_w", 10, 64), weight("fc_b", 10)])
    imported = import_onnx(path)
    assert dict(imported.skipped) == {"Relu": 2, "GlobalAveragePool": 1, "Flatten": 1}
    assert imported.summary() == ["not a MAC layer, skipped: Relu x 2, GlobalAveragePool x 1, Flatten x 1"]
    net = parse_network(imported.data, str(path))
    grouped, dw, fc = net.layers
    # grouped: 4 groups of 4 -> 8 channels, 32 x 32 outputs (pad 1)
    assert (grouped.type, grouped.G, grouped.C, grouped.M, grouped.P) == ("conv", 4, 4, 8, 32)
    # depthwise with channel multiplier 2: 32 groups, 1 input and 2 outputs each; (32+2-3)//2+1 = 16
    assert (dw.type, dw.G, dw.C, dw.M, dw.P) == ("depthwise", 32, 1, 2, 16)
    # Gemm with transB: weight [10, 64] -> K = 64, N = 10; one row
    assert (fc.type, fc.macs, fc.tensor_size("Weights")) == ("matmul", 64 * 10, 640)
    assert net.macs == 32 * 4 * 32 * 32 * 9 + 64 * 16 * 16 * 9 + 640


def test_gemm_trans_a_and_two_activations(tmp_path):
    nodes = [helper.make_node("Gemm", ["a", "b"], ["y"], name="g", transA=1)]
    path = save(tmp_path, nodes, {"a": [5, 3], "b": [5, 7]}, [])       # A^T: [3, 5]
    layer = load_network(path).layers[0]
    assert dict(layer.written)["M"] == 3 and dict(layer.written)["K"] == 5 and dict(layer.written)["N"] == 7
    assert dict(layer.written)["b_role"] == "activations"


def test_batched_matmul_forms(tmp_path):
    heads, seq, dk = 12, 16, 8
    nodes = [
        # a linear layer on [batch, seq, 32] with an initializer weight: rows = batch * seq
        helper.make_node("MatMul", ["x", "wq"], ["q"], name="proj"),
        # attention scores: [b, h, s, dk] x [b, h, dk, s] -> batch = b * h, both activations
        helper.make_node("MatMul", ["qh", "kt"], ["s"], name="scores"),
    ]
    path = save(tmp_path, nodes, {"x": ["batch", seq, 32], "qh": ["batch", heads, seq, dk],
                                  "kt": ["batch", heads, dk, seq]}, [weight("wq", 32, 24)])
    net = load_network(path, batch=2)
    proj, scores = net.layers
    assert (proj.macs, proj.tensor_size("Weights")) == (2 * seq * 32 * 24, 32 * 24)   # one weight for both
    assert dict(proj.written)["b_role"] == "weights" and proj.N == 2 * seq and proj.samples == 2
    assert scores.G == 2 * heads and scores.macs == 2 * heads * seq * seq * dk
    assert scores.tensor_size("Weights") == 2 * heads * dk * seq       # K^T differs per head and sample
    assert scores.samples == 2


def test_broadcast_matmul_shares_the_broadcast_operand(tmp_path):
    heads, seq, dk = 3, 16, 8
    # A broadcast over B's batch: [s, dk] x [h, dk, 4] -> A is the shared operand
    nodes = [helper.make_node("MatMul", ["p", "v"], ["o"], name="bcast")]
    path = save(tmp_path, nodes, {"p": [seq, dk], "v": [heads, dk, 4]}, [])
    bcast = load_network(path).layers[0]
    assert bcast.macs == heads * seq * dk * 4
    # the shared [s, dk] operand plays the weights once, not once per head
    assert bcast.tensor_size("Weights") == seq * dk
    assert bcast.tensor_size("Outputs") == heads * seq * 4


def test_symbolic_batch_and_unique_safe_names(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"], name="block/conv:0"),
             helper.make_node("Conv", ["a", "w"], ["b"], name="block/conv:0"),
             helper.make_node("Conv", ["b", "w"], ["c"], name=""),
             helper.make_node("Conv", ["c", "w"], ["d"], name="." * 3 + "x" * 200)]
    path = save(tmp_path, nodes, {"x": ["N", 4, 8, 8]}, [weight("w", 4, 4, 1, 1)])
    net = load_network(path, batch=3)
    names = [l.name for l in net.layers]
    assert names[:3] == ["block_conv_0", "block_conv_0_2", "conv2"]
    assert len(set(names)) == 4 and len(names[3]) <= NAME_LIMIT and not names[3].startswith(".")
    assert all(safe_name(n, "?") == n for n in names)
    assert all(l.N == 3 for l in net.layers) and net.macs == 4 * (3 * 4 * 4 * 8 * 8)


def test_unsupported_mac_op_is_reported(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"], name="c"),
             helper.make_node("ConvTranspose", ["a", "wt"], ["b"], name="up")]
    path = save(tmp_path, nodes, {"x": [1, 4, 8, 8]}, [weight("w", 4, 4, 3, 3), weight("wt", 4, 4, 2, 2)])
    imported = import_onnx(path)
    assert [l["name"] for l in imported.data["layers"]] == ["c"]
    assert any("ConvTranspose x 1" in line and "unsupported" in line for line in imported.summary())


def test_one_dimensional_conv(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="c1d", strides=[2], pads=[1, 1])]
    path = save(tmp_path, nodes, {"x": [1, 8, 50]}, [weight("w", 16, 8, 3)])
    layer = load_network(path).layers[0]
    assert (layer.P, layer.Q, layer.R, layer.S) == (1, out_size(50, 1, 1, 3, 2, 1), 1, 3)


# ---------------------------------------------------------------------------------------
# Errors: exit code 2, one line naming the file and the node, nothing written

def run(*args, cwd):
    return subprocess.run([MAPPER, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120)


def bad_models(tmp_path):
    (tmp_path / "text.onnx").write_text("this is not a model\n")
    conv3d = save(tmp_path, [helper.make_node("Conv", ["x", "w"], ["y"], name="c3d")],
                  {"x": [1, 2, 4, 4, 4]}, [weight("w", 2, 2, 3, 3, 3)], name="conv3d.onnx")
    seq = save(tmp_path, [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
               {"x": [1, "seq", 8]}, [weight("w", 8, 8)], name="seq.onnx")
    mismatch = save(tmp_path, [helper.make_node("Conv", ["x", "w"], ["y"], name="bad_conv")],
                    {"x": [1, 3, 8, 8]}, [weight("w", 4, 5, 3, 3)], name="mismatch.onnx")
    # shapes that cannot be inferred: [1, 3] + [1, 4] does not broadcast
    noshape = save(tmp_path, [helper.make_node("Add", ["a", "b"], ["c"], name="add"),
                              helper.make_node("MatMul", ["c", "w"], ["y"], name="mm")],
                   {"a": [1, 3], "b": [1, 4]}, [weight("w", 4, 2)], name="noshape.onnx")
    badpads = save(tmp_path, [helper.make_node("Conv", ["x", "w"], ["y"], name="c", pads=[1, 1])],
                   {"x": [1, 2, 8, 8]}, [weight("w", 2, 2, 3, 3)], name="badpads.onnx")
    good = save(tmp_path, [helper.make_node("Conv", ["x", "w"], ["y"], name="c")], {"x": [1, 2, 8, 8]},
                [weight("w", 2, 2, 3, 3)], name="good.onnx")
    (tmp_path / "empty.onnx").write_bytes(b"")
    (tmp_path / "truncated.onnx").write_bytes(good.read_bytes()[:40])
    batch0 = save(tmp_path, [helper.make_node("Conv", ["x", "w"], ["y"], name="c")], {"x": [0, 2, 8, 8]},
                  [weight("w", 2, 2, 3, 3)], name="batch0.onnx")
    negative = save(tmp_path, [helper.make_node("Conv", ["x", "w"], ["y"], name="c")], {"x": [1, 2, -8, 8]},
                    [weight("w", 2, 2, 3, 3)], name="negative.onnx")
    no_weights = save(tmp_path, [helper.make_node("Conv", ["x", "w"], ["y"], name="c")], {"x": [1, 2, 8, 8]},
                      [], name="noweights.onnx")
    only_transpose = save(tmp_path, [helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="up")],
                          {"x": [1, 2, 8, 8]}, [weight("w", 2, 2, 3, 3)], name="convt.onnx")
    return [("text.onnx", ["text.onnx", "ONNX"]),
            ("empty.onnx", ["empty.onnx", "no nodes"]),
            ("truncated.onnx", ["truncated.onnx", "not a readable ONNX model"]),
            (batch0.name, ["batch0.onnx", "input 'x'", "dimension 0 is 0"]),       # not a free batch
            (negative.name, ["negative.onnx", "dimension 2 is -8"]),
            (no_weights.name, ["noweights.onnx", "'w'"]),
            (only_transpose.name, ["convt.onnx", "no MAC layers", "unsupported: ConvTranspose x 1"]),
            (badpads.name, ["badpads.onnx", "node name: c", "pads"]),
            (noshape.name, ["noshape.onnx", "shape inference failed"]),
            (conv3d.name, ["conv3d.onnx", "c3d", "3-D"]),
            (seq.name, ["seq.onnx", "dimension 1", "symbolic"]),
            (mismatch.name, ["mismatch.onnx"])]


@pytest.mark.slow
def test_import_errors(tmp_path):
    for model, fragments in bad_models(tmp_path):
        out = tmp_path / "net.yaml"
        res = run("import", "onnx", model, "-o", out, cwd=tmp_path)
        assert res.returncode == 2, (model, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
        assert all(f in lines[0] for f in fragments), (fragments, lines[0])
        assert not out.exists()
        # the same line from a command that takes --problem
        res = run("layers", model, cwd=tmp_path)
        assert res.returncode == 2 and res.stderr.strip().splitlines() == lines


def test_import_output_errors(tmp_path):
    path = save(tmp_path, [helper.make_node("Conv", ["x", "w"], ["y"], name="c")], {"x": [1, 2, 4, 4]},
                [weight("w", 2, 2, 1, 1)])
    before = path.read_bytes()
    for out, fragment in [(path.name, "the model itself"), (".", "folder")]:
        res = run("import", "onnx", path.name, "-o", out, cwd=tmp_path)
        assert res.returncode == 2 and fragment in res.stderr and len(res.stderr.splitlines()) == 1
    assert path.read_bytes() == before
    res = run("import", "onnx", "missing.onnx", cwd=tmp_path)
    assert res.returncode == 2 and "missing.onnx: cannot read file" in res.stderr


def test_import_writes_a_file_that_reads_back(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"], name="c", pads=[0, 0, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["a"], ["b"])]
    path = save(tmp_path, nodes, {"x": ["N", 3, 9, 9]}, [weight("w", 8, 3, 3, 3)], graph="my net")
    res = run("import", "onnx", path.name, "-o", "net.yaml", "--batch", "2", "--name", "my net", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "Relu x 1" in res.stderr
    net = load_network(tmp_path / "net.yaml")
    assert net.name == "my_net"
    assert load_network(path).name == "m"          # default: the file's stem
    # rows: (9 + 0 + 1 - 3) // 2 + 1 = 4
    assert net.layers[0].N == 2 and (net.layers[0].P, net.layers[0].Q) == (4, 4)
    assert net.macs == 2 * 8 * 3 * 4 * 4 * 9
    assert f"{net.macs:,} MACs" in (tmp_path / "net.yaml").read_text()


def test_batch_for_a_fixed_batch_model_is_an_error(tmp_path):
    path = save(tmp_path, [helper.make_node("Conv", ["x", "w"], ["y"], name="c")], {"x": [1, 4, 8, 8]},
                [weight("w", 4, 4, 1, 1)])
    assert load_network(path).layers[0].N == 1
    with pytest.raises(SpecError) as err:
        load_network(path, batch=4)
    assert err.value.field == "--batch" and "symbolic" in err.value.message


def test_import_as_library_raises_spec_error(tmp_path):
    (tmp_path / "x.onnx").write_bytes(b"\x00\x01garbage")
    with pytest.raises(SpecError) as err:
        import_onnx(tmp_path / "x.onnx")
    assert err.value.source.endswith("x.onnx")


# ---------------------------------------------------------------------------------------
# Optional: a torchvision model exported with random weights (skipped without torch)

def test_torchvision_resnet18_matches_its_modules(tmp_path):
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18(weights=None).eval()
    path = tmp_path / "r18.onnx"
    try:      # the TorchScript exporter (torch >= 2.5 defaults to dynamo, which needs onnxscript)
        torch.onnx.export(model, torch.zeros(1, 3, 224, 224), str(path), opset_version=17, dynamo=False)
    except TypeError:
        torch.onnx.export(model, torch.zeros(1, 3, 224, 224), str(path), opset_version=17)
    net = load_network(path)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(net.layers) == len(convs) + len(linears)
    # MACs per conv from torchvision's own module attributes and hooks' output sizes
    sizes = []
    hooks = [m.register_forward_hook(lambda m, i, o: sizes.append(o.shape)) for m in convs]
    model(torch.zeros(1, 3, 224, 224))
    for h in hooks:
        h.remove()
    expected = sum(m.out_channels * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1] * s[2] * s[3]
                   for m, s in zip(convs, sizes))
    expected += sum(m.in_features * m.out_features for m in linears)
    assert net.macs == expected


@pytest.mark.parametrize("a_shape, b_shape", [
    ([2, 3, 16, 8], [3, 8, 4]),          # B broadcast over A's leading batch dimension
    ([3, 1, 16, 8], [3, 5, 8, 4]),       # each operand broadcast over a dimension of the other
    ([1, 16, 8], [2, 3, 8, 4]),          # A shared by the whole batch
])
def test_partial_broadcast_matmul_counts_each_operand_once(tmp_path, a_shape, b_shape):
    # numpy's broadcasting defines the truth: each operand is stored once at its own shape,
    # the output has the broadcast shape, and every output element takes K MACs
    nodes = [helper.make_node("MatMul", ["a", "b"], ["o"], name="mm")]
    path = save(tmp_path, nodes, {"a": a_shape, "b": b_shape}, [])
    layer = load_network(path).layers[0]
    out = np.broadcast_shapes(tuple(a_shape[:-2]), tuple(b_shape[:-2])) + (a_shape[-2], b_shape[-1])
    sizes = sorted([layer.tensor_size("Inputs"), layer.tensor_size("Weights")])
    assert sizes == sorted([math.prod(a_shape), math.prod(b_shape)])
    assert layer.tensor_size("Outputs") == math.prod(out)
    assert layer.macs == math.prod(out) * a_shape[-1]
