"""ONNX models -> our network files: the MAC layers (Conv, Gemm, MatMul) with their shapes.

Shapes come from onnx's own shape inference (we never read protobuf by hand). A symbolic
batch dimension (the first dimension of a graph input) is set to 1 and becomes the network's
`batch:` (the `--batch` given, default 1), which scales every layer as it does in any
network file (conv N; a matmul's rows or its batch, by its b_role). Every
other op is counted in `Imported.skipped` so the caller can say what was left out; an op
whose attributes the loop nest cannot model is a SpecError naming the file and the node.
Needs the optional `onnx` package (pip install 'mapper[onnx]').
"""
from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .spec import SpecError

MAC_OPS = ("Conv", "Gemm", "MatMul")
#: Ops that multiply and accumulate but that the loop nest does not model (yet).
UNSUPPORTED_MAC_OPS = ("ConvTranspose", "ConvInteger", "QLinearConv", "MatMulInteger", "QLinearMatMul", "Einsum")
#: Ops whose output is still a constant when their data input is (a weight stored transposed).
_PASS_THROUGH = ("Identity", "Transpose", "Cast", "Reshape", "Squeeze", "Unsqueeze", "DequantizeLinear")
NAME_LIMIT = 64


@dataclass(frozen=True)
class Imported:
    """A network file's structure read from an ONNX model, and what was not imported."""

    data: dict[str, Any]                  # name, description, layers (as parse_network reads them)
    skipped: tuple[tuple[str, int], ...]  # ops that are not MAC layers, with their counts
    unsupported: tuple[tuple[str, int], ...]  # MAC ops the loop nest does not model

    def summary(self) -> list[str]:
        """The lines to tell the user (on stderr): each left-out op once, with its count."""
        lines = []
        if self.skipped:
            lines.append("not a MAC layer, skipped: " + ", ".join(f"{op} x {n}" for op, n in self.skipped))
        if self.unsupported:
            lines.append("unsupported MAC op, not imported (its MACs are not counted): "
                         + ", ".join(f"{op} x {n}" for op, n in self.unsupported))
        return lines


def safe_name(text: str, fallback: str) -> str:
    """A layer or network name usable as a file name: [A-Za-z0-9_.-] only, no leading dot,
    at most NAME_LIMIT characters."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).lstrip(".")[:NAME_LIMIT].strip("_")
    return name or fallback


def _load(path: Path, batch: int | None):
    """The model with its symbolic batch set to 1 and shapes inferred, and whether it had one.
    A `batch` for a model whose batch is fixed is an error: it would be silently ignored."""
    try:
        import onnx
        from onnx import shape_inference
    except ImportError:
        raise SpecError(str(path), "", "reading ONNX needs the onnx package: pip install 'mapper[onnx]'") from None
    if not path.is_file():
        raise SpecError(str(path), "", "cannot read file (not found)" if not path.exists() else "not a file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:   # protobuf DecodeError, OSError, ...: the file is not a model we can read
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SpecError(str(path), "", f"not a readable ONNX model ({reason})") from None
    if not model.graph.node:
        raise SpecError(str(path), "", "not an ONNX model with a graph (no nodes)")
    initializers = {t.name for t in model.graph.initializer}
    symbolic = False
    for value in model.graph.input:
        if value.name in initializers or not value.type.HasField("tensor_type"):
            continue
        shape = value.type.tensor_type.shape
        for i, dim in enumerate(shape.dim):
            if dim.HasField("dim_value") and dim.dim_value > 0:
                continue
            if dim.HasField("dim_value"):          # a fixed size of 0 or below is no size, not a free batch
                raise SpecError(str(path), f"input '{value.name}'",
                                f"dimension {i} is {dim.dim_value}; sizes must be at least 1")
            if i != 0:
                raise SpecError(str(path), f"input '{value.name}'",
                                f"dimension {i} is symbolic ('{dim.dim_param or '?'}'); only the first "
                                f"(batch) dimension may be: export the model with fixed sizes")
            dim.Clear()
            dim.dim_value = 1
            symbolic = True
    if batch is not None and not symbolic:
        raise SpecError(str(path), "--batch", "the model has no symbolic batch dimension (its input sizes "
                        "are fixed); export it with a dynamic batch, or leave out --batch")
    try:
        return shape_inference.infer_shapes(model, strict_mode=True, data_prop=True), symbolic
    except Exception as exc:   # onnx.shape_inference.InferenceError and checker errors
        reason = " ".join(str(exc).split())[:300]
        raise SpecError(str(path), "", f"shape inference failed: {reason}") from None


def _shapes(graph) -> dict[str, list[int]]:
    out = {}
    for value in (*graph.input, *graph.value_info, *graph.output):
        t = value.type.tensor_type
        if value.type.HasField("tensor_type") and t.HasField("shape"):
            dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
            out[value.name] = dims
    for init in graph.initializer:
        out[init.name] = list(init.dims)
    return out


def _attrs(node) -> dict[str, Any]:
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


class _Node:
    """One node being imported: its name for messages and its operands' shapes."""

    def __init__(self, node, index: int, shapes: dict, src: str):
        self.node, self.src, self.shapes = node, src, shapes
        self.label = f"node '{node.name}' ({node.op_type})" if node.name else f"node #{index} ({node.op_type})"

    def error(self, message: str) -> SpecError:
        return SpecError(self.src, self.label, message)

    def shape(self, position: int, output: bool = False) -> list[int]:
        names = self.node.output if output else self.node.input
        if position >= len(names) or not names[position]:
            raise self.error(f"missing {'output' if output else 'input'} {position}")
        shape = self.shapes.get(names[position])
        if shape is None or any(d is None or d < 1 for d in shape):
            raise self.error(f"the shape of '{names[position]}' cannot be inferred "
                             f"(got {shape}); export the model with fixed sizes")
        return shape


def _conv(n: _Node) -> dict[str, Any]:
    a = _attrs(n.node)
    x, w = n.shape(0), n.shape(1)
    if len(x) not in (3, 4) or len(w) != len(x):
        raise n.error(f"a {len(x) - 2}-D convolution (input {x}, weights {w}): the loop nest models "
                      f"1-D and 2-D convolutions only")
    spatial = len(x) - 2
    group = int(a.get("group", 1))
    batch, C, *size = x
    M, c_per_group, *kernel = w
    if group < 1 or C % group or c_per_group * group != C or M % group:
        raise n.error(f"weights {w} do not fit input {x} with group = {group}")
    if "kernel_shape" in a and list(a["kernel_shape"]) != kernel:
        raise n.error(f"kernel_shape {list(a['kernel_shape'])} differs from the weights' {kernel}")
    strides = list(a.get("strides", [1] * spatial))
    dilations = list(a.get("dilations", [1] * spatial))
    if len(strides) != spatial or len(dilations) != spatial or len(a.get("pads", [0] * 2 * spatial)) != 2 * spatial:
        raise n.error(f"strides {strides}, dilations {dilations} and pads {list(a.get('pads', []))} do not "
                      f"fit a {spatial}-D convolution")
    auto_pad = a.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads_begin, pads_end = [], []
        for size_i, k, s, d in zip(size, kernel, strides, dilations):
            total = max(0, (-(-size_i // s) - 1) * s + (k - 1) * d + 1 - size_i)
            small = total // 2
            pads_begin.append(small if auto_pad == "SAME_UPPER" else total - small)
            pads_end.append(total - pads_begin[-1])
    elif auto_pad == "VALID":
        pads_begin = pads_end = [0] * spatial
    elif auto_pad == "NOTSET":
        pads = list(a.get("pads", [0] * 2 * spatial))
        pads_begin, pads_end = pads[:spatial], pads[spatial:]
    else:
        raise n.error(f"auto_pad '{auto_pad}' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID")
    if spatial == 1:      # a 1-D convolution slides along the columns of a one-row input
        size, kernel = [1, *size], [1, *kernel]
        strides, dilations = [1, *strides], [1, *dilations]
        pads_begin, pads_end = [0, *pads_begin], [0, *pads_end]
    if min(strides + dilations) < 1 or min(pads_begin + pads_end) < 0:
        raise n.error(f"strides {strides}, dilations {dilations} and pads {pads_begin + pads_end} "
                      f"must be positive (pads at least 0)")
    out = [(s + b + e - d * (k - 1) - 1) // st + 1
           for s, b, e, k, st, d in zip(size, pads_begin, pads_end, kernel, strides, dilations)]
    y = n.shapes.get(n.node.output[0]) if n.node.output else None
    if y is not None and None not in y and [batch, M, *out[2 - spatial:]] != y:
        raise n.error(f"output shape {y} is not what the convolution computes ({[batch, M, *out[2 - spatial:]]})")
    layer: dict[str, Any] = {"type": "conv", "C": C, "M": M}
    if group > 1 and group == C and c_per_group == 1:
        layer["type"] = "depthwise"
    elif group > 1:
        layer["groups"] = group
    layer.update(H=size[0], W=size[1], R=kernel[0], S=kernel[1])
    layer["stride"] = strides[0] if strides[0] == strides[1] else strides
    layer["pad"] = [pads_begin[0], pads_end[0], pads_begin[1], pads_end[1]]
    if dilations != [1, 1]:
        layer["dilation"] = dilations[0] if dilations[0] == dilations[1] else dilations
    layer["N"] = batch
    return layer


def _matmul_layer(n: _Node, a_batch: list[int], b_batch: list[int], M: int, K: int, N: int,
                  a_const: bool, b_const: bool) -> dict[str, Any]:
    """Out[..][m][n] = sum_k A[..][m][k] B[..][k][n] with numpy broadcasting over the leading
    dimensions, as an exact matmul: a batch dimension both operands vary over becomes `batch`
    (groups); one only A varies over folds into A's rows (B is shared along it) and one only
    B varies over into B's columns. The constant (or otherwise shared) operand plays B."""
    rank = max(len(a_batch), len(b_batch))
    a_batch = [1] * (rank - len(a_batch)) + a_batch
    b_batch = [1] * (rank - len(b_batch)) + b_batch
    for da, db in zip(a_batch, b_batch):
        if da != db and 1 not in (da, db):
            raise n.error(f"batch dimensions {a_batch} and {b_batch} do not broadcast")
    a_varies, b_varies = math.prod(a_batch) > 1, math.prod(b_batch) > 1
    if (b_varies and not a_varies) or (a_varies == b_varies and a_const and not b_const):
        # A is the shared operand: Out^T = B^T A^T, so A^T plays B and B^T plays A
        M, N = N, M
        a_batch, b_batch = b_batch, a_batch
        a_const, b_const = b_const, a_const
    groups = math.prod(da for da, db in zip(a_batch, b_batch) if da == db)
    rows = M * math.prod(da for da, db in zip(a_batch, b_batch) if db == 1 and da > 1)
    cols = N * math.prod(db for da, db in zip(a_batch, b_batch) if da == 1 and db > 1)
    layer = {"type": "matmul", "M": rows, "N": cols, "K": K}
    if groups > 1:
        layer["batch"] = groups
    # a constant B is a weight every sample shares (the network's batch multiplies the rows);
    # otherwise each sample has its own B (the batch multiplies the groups)
    layer["b_role"] = "weights" if b_const else "activations"
    return layer


def _gemm(n: _Node, const: set[str]) -> dict[str, Any]:
    a = _attrs(n.node)
    sa, sb = n.shape(0), n.shape(1)
    if len(sa) != 2 or len(sb) != 2:
        raise n.error(f"Gemm needs 2-D operands, got {sa} and {sb}")
    M, K = (sa[1], sa[0]) if a.get("transA", 0) else sa
    Kb, N = (sb[1], sb[0]) if a.get("transB", 0) else sb
    if K != Kb:
        raise n.error(f"operands {sa} and {sb} (transA {a.get('transA', 0)}, transB {a.get('transB', 0)}) "
                      f"do not multiply")
    return _matmul_layer(n, [], [], M, K, N, n.node.input[0] in const, n.node.input[1] in const)


def _matmul(n: _Node, const: set[str]) -> dict[str, Any]:
    sa, sb = n.shape(0), n.shape(1)
    sa2 = [1, *sa] if len(sa) == 1 else sa        # numpy: a 1-D A is one row, a 1-D B one column
    sb2 = [*sb, 1] if len(sb) == 1 else sb
    M, K = sa2[-2:]
    Kb, N = sb2[-2:]
    if K != Kb:
        raise n.error(f"operands {sa} and {sb} do not multiply")
    return _matmul_layer(n, sa2[:-2], sb2[:-2], M, K, N, n.node.input[0] in const, n.node.input[1] in const)


def import_onnx(path: str | Path, batch: int | None = None, name: str | None = None) -> Imported:
    """Read an ONNX model's MAC layers as a network file's structure (see parse_network);
    `batch` sizes a symbolic batch dimension (default 1)."""
    path = Path(path)
    model, symbolic = _load(path, batch)
    graph = model.graph
    shapes = _shapes(graph)
    const = {t.name for t in graph.initializer}
    layers, used = [], set()
    skipped, unsupported = Counter(), Counter()
    for index, node in enumerate(graph.node):
        op = node.op_type
        if op == "Constant" or op in _PASS_THROUGH and node.input and node.input[0] in const:
            const.update(node.output)
        if node.domain not in ("", "ai.onnx") or op not in MAC_OPS:
            (unsupported if op in UNSUPPORTED_MAC_OPS else skipped)[op] += 1
            continue
        n = _Node(node, index, shapes, str(path))
        layer = _conv(n) if op == "Conv" else _gemm(n, const) if op == "Gemm" else _matmul(n, const)
        if symbolic and layer.get("N") == 1:
            del layer["N"]            # the network's batch: sets it
        base = safe_name(node.name, f"{op.lower()}{index}")
        unique, k = base, 2
        while unique in used:
            suffix = f"_{k}"
            unique, k = base[:NAME_LIMIT - len(suffix)] + suffix, k + 1
        used.add(unique)
        layers.append({"name": unique, **layer})
    if not layers:
        found = "; unsupported: " + ", ".join(f"{op} x {k}" for op, k in unsupported.items()) if unsupported else ""
        raise SpecError(str(path), "", f"no MAC layers ({', '.join(MAC_OPS)}) in the model{found}")
    net_name = safe_name(name or path.stem, "onnx_model")
    data = {"name": net_name,
            "description": f"Imported from {path.name}: {len(layers)} MAC layers"
                           + (" (its symbolic batch is the network's batch)." if symbolic else "."),
            **({"batch": batch or 1} if symbolic else {}),
            "layers": layers}
    return Imported(data=data, skipped=tuple(skipped.items()), unsupported=tuple(unsupported.items()))


def network_yaml(imported: Imported, macs: int) -> str:
    """The network file's text: a comment with the provenance and what was left out, then the layers."""
    import yaml
    head = [f"# {imported.data['description']} {macs:,} MACs in all"
            + (f" at batch {imported.data['batch']}." if "batch" in imported.data else ".")]
    head += [f"# {line}" for line in imported.summary()]
    def flow(value) -> str:
        return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1 << 20).strip()
    body = [f"name: {json.dumps(imported.data['name'])}"]
    if "batch" in imported.data:
        body.append(f"batch: {imported.data['batch']}")
    body.append("layers:")
    body += [f"  - {flow(layer)}" for layer in imported.data["layers"]]
    return "\n".join(head + body) + "\n"
