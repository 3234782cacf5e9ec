"""Layers and networks: the loop nest a mapping schedules.

A convolution is the 8-deep loop nest over N (batch), G (groups), M and C (output and
input channels per group), P and Q (output rows and columns), R and S (filter rows and
columns). Depthwise layers are the case G = C with one input channel per group; fully
connected layers the case H = W = R = S = 1. The three tensors and the dimensions that
index them:

    Weights[g][m][c][r][s]     Inputs[n][g][c][h][w]      Outputs[n][g][m][p][q]

with h = p*stride_v + r*dilation_v and w = q*stride_h + s*dilation_h (in padded
coordinates): P and R slide over the input's rows, Q and S over its columns. A matmul
Out[b][m][n] = sum_k A[b][m][k] * B[b][k][n] is the case R = S = P = Q = 1 with A as Inputs
and B as Weights (see parse_matmul).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .spec import MAX_DIM, MAX_MACS, Fields, SpecError, as_int, as_number, closest, load_yaml, pair, resolve

DIMS = ("N", "G", "M", "C", "P", "Q", "R", "S")
TENSORS = ("Weights", "Inputs", "Outputs")
LAYER_TYPES = ("conv", "depthwise", "fc", "matmul")



@dataclass(frozen=True)
class Axis:
    """One axis of a tensor: a projection (one dimension, coefficient 1) or a sliding
    window (an output dimension at the layer's stride plus a filter dimension at its
    dilation, `side` 0 for rows and 1 for columns)."""

    dims: tuple[str, ...]
    side: int | None = None          # None: a projection; 0 / 1: stride[side], dilation[side]

    @property
    def sliding(self) -> bool:
        return self.side is not None

    def coefficients(self, layer: "Layer") -> tuple[tuple[str, int], ...]:
        """(dimension, coefficient) terms: the axis's index is their weighted sum."""
        if self.side is None:
            return ((self.dims[0], 1),)
        out, filt = self.dims
        return ((out, layer.stride[self.side]), (filt, layer.dilation[self.side]))


#: The one table of which dimensions index each tensor and how (see the module docstring);
#: every other module derives its rules from it.
AXES: dict[str, tuple[Axis, ...]] = {
    "Weights": (Axis(("G",)), Axis(("M",)), Axis(("C",)), Axis(("R",)), Axis(("S",))),
    "Inputs": (Axis(("N",)), Axis(("G",)), Axis(("C",)), Axis(("P", "R"), 0), Axis(("Q", "S"), 1)),
    "Outputs": (Axis(("N",)), Axis(("G",)), Axis(("M",)), Axis(("P",)), Axis(("Q",))),
}

#: The dimensions that index each tensor; a loop over any other dimension reuses the tensor.
RELEVANT: dict[str, frozenset[str]] = {t: frozenset(d for a in axes for d in a.dims) for t, axes in AXES.items()}

#: Dimensions that are a whole axis of each tensor on their own (projections), in DIMS order.
PROJECTED: dict[str, tuple[str, ...]] = {
    t: tuple(d for d in DIMS if any(a.dims == (d,) for a in axes)) for t, axes in AXES.items()}

#: The (output, filter) dimension pairs that slide over one input axis: (P, R), (Q, S).
SLIDING_PAIRS: tuple[tuple[str, str], ...] = tuple(a.dims for axes in AXES.values() for a in axes if a.sliding)

#: Dimensions on some sliding axis (their loops can overlap consecutive input tiles).
SLIDING_DIMS: frozenset[str] = frozenset(d for pair in SLIDING_PAIRS for d in pair)

#: Dimensions that index Outputs, in DIMS order: unrolling any other one (C, R, S) sums
#: partial results across instances (spatial reduction).
OUTPUT_DIMS: tuple[str, ...] = tuple(d for d in DIMS if d in RELEVANT["Outputs"])

#: Dimensions summed over into each output (those not indexing Outputs), in DIMS order.
REDUCTION_DIMS: tuple[str, ...] = tuple(d for d in DIMS if d not in RELEVANT["Outputs"])


def tensor_axes(layer: "Layer", tensor: str) -> tuple[tuple[tuple[str, int], ...], ...]:
    """Each tensor as a product of axes; an axis is a sum of (dimension, coefficient) terms.
    Inputs' rows and columns combine two dimensions each (the sliding window)."""
    return tuple(a.coefficients(layer) for a in AXES[tensor])

#: Density keys a problem file may give (the fraction of non-zero values).
DENSITY_KEYS = ("weights", "inputs")


@dataclass(frozen=True)
class Layer:
    """One layer with its derived loop bounds (per group) and strides."""

    name: str
    type: str
    N: int
    G: int
    M: int
    C: int
    P: int
    Q: int
    R: int
    S: int
    stride: tuple[int, int] = (1, 1)       # (vertical: P/R over rows, horizontal: Q/S over columns)
    dilation: tuple[int, int] = (1, 1)
    pad: tuple[int, int] = (0, 0)          # total padding added to (rows, columns)
    H: int = 1                             # input rows before padding
    W: int = 1                             # input columns before padding
    density: tuple[tuple[str, float], ...] = (("weights", 1.0), ("inputs", 1.0))
    # What a user calls the tensors and dimensions when they differ from ours (a matmul's
    # A, B and Out; its M, N, K); printing only (see `label`), never part of the cost.
    labels: tuple[tuple[str, str], ...] = ()
    # The layer's own sizes as written, when they are not the loop bounds (a matmul's M, N, K).
    written: tuple[tuple[str, Any], ...] = ()

    @property
    def dims(self) -> dict[str, int]:
        return {d: getattr(self, d) for d in DIMS}

    @property
    def macs(self) -> int:
        return math.prod(self.dims.values())

    @property
    def samples(self) -> int:
        """The batch size (inferences) this layer is run for: N, except for a matmul, whose
        rows N are tokens times samples (see parse_matmul)."""
        return int(dict(self.written).get("samples", self.N))

    def densities(self) -> dict[str, float]:
        return dict(self.density)

    def axis_size(self, axis: Axis) -> int:
        """Extent of one tensor axis over the whole layer: sum of c x (size - 1), plus 1."""
        dims = self.dims
        return sum(c * (dims[d] - 1) for d, c in axis.coefficients(self)) + 1

    @property
    def input_rows(self) -> int:
        """Rows of the (padded) input the layer reads: (P-1)*stride + (R-1)*dilation + 1."""
        return self.axis_size(AXES["Inputs"][3])

    @property
    def input_cols(self) -> int:
        return self.axis_size(AXES["Inputs"][4])

    def tensor_size(self, tensor: str) -> int:
        return math.prod(self.axis_size(a) for a in AXES[tensor])

    def shape_key(self) -> tuple:
        """Everything the cost of a mapping depends on (not the name): equal keys, equal layers."""
        return (self.N, self.G, self.M, self.C, self.P, self.Q, self.R, self.S,
                self.stride, self.dilation, self.density)

    def with_density(self, density: dict[str, float]) -> "Layer":
        merged = {**self.densities(), **density}
        return _replace(self, density=tuple(sorted(merged.items(), key=lambda kv: DENSITY_KEYS.index(kv[0]))))

    def describe(self) -> dict[str, Any]:
        """The derived view `mapper layers` prints and result documents carry."""
        extra = {"as_written": dict(self.written), "labels": dict(self.labels)} if self.written else {}
        return {
            "name": self.name, "type": self.type, **extra,
            "dims": self.dims,
            "stride": list(self.stride), "dilation": list(self.dilation), "pad_total": list(self.pad),
            "input": [self.H, self.W],
            "density": self.densities(),
            "macs": self.macs,
        }


def label(layer: Layer, name: str) -> str:
    """How to print a tensor or dimension of `layer`: the user's name with ours (the one arch
    and mapping files use) in brackets when they differ, e.g. a matmul's 'B (Weights)'."""
    theirs = dict(layer.labels).get(name)
    return f"{theirs} ({name})" if theirs else name


def _replace(layer: Layer, **changes) -> Layer:
    from dataclasses import replace
    return replace(layer, **changes)


@dataclass(frozen=True)
class Network:
    """A named list of layers, as read from a problem file."""

    name: str
    layers: tuple[Layer, ...]
    source: str = ""
    presets: tuple[tuple[str, tuple[tuple[str, tuple[tuple[str, float], ...]], ...]], ...] = field(default=())

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        names = [l.name for l in self.layers]
        raise SpecError(self.source, "--layer", f"no layer '{name}' in {self.name}{closest(name, names)}; "
                        f"layers: {', '.join(names)}")

    def preset(self, name: str) -> dict[str, dict[str, float]]:
        presets = {k: {layer: dict(d) for layer, d in v} for k, v in self.presets}
        if name not in presets:
            raise SpecError(self.source, "--density-preset",
                            f"no density preset '{name}' in {self.name}{closest(name, presets)}; "
                            f"presets: {', '.join(presets) or '(none)'}")
        return presets[name]


LAYER_FIELDS = ("name", "type", "C", "M", "H", "W", "R", "S", "stride", "pad", "groups",
                "dilation", "N", "density")


def _output_size(size: int, pad: int, kernel: int, stride: int, dilation: int,
                 src: str, where: str, axis: str) -> int:
    """Outputs along one axis as PyTorch and ONNX count them: floor(span / stride) + 1.
    Trailing input rows a floor leaves are never read (Layer.input_rows counts read rows)."""
    span = size + pad - dilation * (kernel - 1) - 1
    out = span // stride + 1
    if out < 1:
        raise SpecError(src, where, f"output {axis} would be {out} (< 1): ({size} + pad {pad} - "
                        f"{dilation}*({kernel}-1) - 1) // {stride} + 1; the filter ({kernel} with "
                        f"dilation {dilation}) is larger than the padded input {axis}")
    return out


PAD_FORMS = "a number, [vertical, horizontal], [top, bottom, left, right] or 'same'"


def _padding(value: Any, sizes, kernels, strides, dilations, src, where) -> tuple[int, int]:
    """Total padding per axis (rows, columns). A number or [v, h] pads both sides of an axis;
    [top, bottom, left, right] pads each side (as ONNX writes it); 'same' pads as TensorFlow
    does, so that output = ceil(size / stride)."""
    if value == "same":
        return tuple(max(0, (-(-size // s) - 1) * s + (k - 1) * d + 1 - size)
                     for size, k, s, d in zip(sizes, kernels, strides, dilations))
    if isinstance(value, str):
        raise SpecError(src, where, f"expected {PAD_FORMS}, got {value!r}")
    if isinstance(value, (list, tuple)) and len(value) == 4:
        top, bottom, left, right = (as_int(v, src, where, 0) for v in value)
        return (top + bottom, left + right)
    if isinstance(value, (list, tuple)) and len(value) != 2:
        raise SpecError(src, where, f"expected {PAD_FORMS}, got {value!r}")
    v, h = pair(value, src, where, 0)
    return (2 * v, 2 * h)


MATMUL_FIELDS = ("name", "type", "M", "N", "K", "batch", "b_role", "density")
B_ROLES = ("weights", "activations")


def parse_matmul(data: Any, src: str, where: str, samples: int | None = None) -> Layer:
    """Out[b][m][n] = sum_k A[b][m][k] * B[b][k][n] as the conv loop nest: K is the reduction C,
    matmul N the output channels M (B and Out), matmul M the rows N (A and Out), `batch` the
    groups G (all three). A plays Inputs and B Weights. `samples` (the network's batch)
    multiplies the rows when B is a weight shared by every sample (b_role: weights, a linear
    layer), and the groups when B is an activation of each sample (attention's K^T and V)."""
    f = Fields(data, src, where, MATMUL_FIELDS, required=("name", "type", "M", "N", "K"))
    name = f.name("name")
    M, N, K = (f.integer(k) for k in ("M", "N", "K"))
    heads = f.integer("batch", 1)
    role = f.choice("b_role", B_ROLES, "weights")
    n = samples if samples is not None else 1
    shared = role == "weights"
    density = parse_density(f.get("density", {}), src, f.path("density"))
    rows, groups = (M * n, heads) if shared else (M, heads * n)
    _check_size(dict(N=rows, G=groups, M=N, C=K), f, names={"N": "M", "G": "batch", "M": "N", "C": "K"})
    labels = (("Weights", "B"), ("Inputs", "A"), ("Outputs", "Out"), ("N", "M"), ("M", "N"), ("C", "K"),
              ("G", "batch"))
    return Layer(name=name, type="matmul", N=rows, G=groups,
                 M=N, C=K, P=1, Q=1, R=1, S=1,
                 density=tuple(sorted({"weights": 1.0, "inputs": 1.0, **density}.items(),
                                      key=lambda kv: DENSITY_KEYS.index(kv[0]))),
                 labels=labels, written=(("M", M), ("N", N), ("K", K), ("batch", heads), ("b_role", role),
                                         ("samples", n)))


def parse_layer(data: Any, src: str, where: str, batch: int | None = None) -> Layer:
    if isinstance(data, dict) and "type" in data and data["type"] not in LAYER_TYPES:
        # a misspelled type is the error, not the fields that belong to the intended one
        Fields({"type": data["type"]}, src, where, ("type",)).choice("type", LAYER_TYPES)
    if isinstance(data, dict) and data.get("type") == "matmul":
        return parse_matmul(data, src, where, batch)
    f = Fields(data, src, where, LAYER_FIELDS, required=("name", "type", "C"))
    name = f.name("name")
    kind = f.choice("type", LAYER_TYPES)
    C = f.integer("C")
    if kind == "fc":
        for key in ("H", "W", "R", "S", "stride", "dilation"):
            if f.has(key) and f.get(key) not in (1, [1, 1]):
                raise f.error(key, f"a fully connected layer has {key} = 1 (flatten the input into C)")
        if f.has("pad") and f.get("pad") not in (0, [0, 0], [0, 0, 0, 0]):
            raise f.error("pad", "a fully connected layer has no padding")
        M = f.integer("M")
        H = W = R = S = 1
        stride = dilation = (1, 1)
        pad_total = (0, 0)
        groups = f.integer("groups", 1)
    else:
        for key in ("H", "W", "R", "S"):
            if not f.has(key):
                raise f.error(key, f"missing required field for a {kind} layer")
        H, W, R, S = (f.integer(k) for k in ("H", "W", "R", "S"))
        stride = pair(f.get("stride", 1), src, f.path("stride"), 1)
        dilation = pair(f.get("dilation", 1), src, f.path("dilation"), 1)
        pad_total = _padding(f.get("pad", 0), (H, W), (R, S), stride, dilation, src, f.path("pad"))
        if kind == "depthwise":
            M = f.integer("M", C)
            groups = f.integer("groups", C)
            if groups != C:
                raise f.error("groups", f"a depthwise layer has groups = C = {C}, got {groups}")
            if M % C:
                raise f.error("M", f"a depthwise layer needs M a multiple of C = {C}, got {M}")
        else:
            M = f.integer("M")
            groups = f.integer("groups", 1)
    if C % groups:
        raise f.error("groups", f"C = {C} is not divisible by groups = {groups}")
    if M % groups:
        raise f.error("groups", f"M = {M} is not divisible by groups = {groups}")
    P = _output_size(H, pad_total[0], R, stride[0], dilation[0], src, f.path("H"), "height")
    Q = _output_size(W, pad_total[1], S, stride[1], dilation[1], src, f.path("W"), "width")
    N = batch if batch is not None else f.integer("N", 1)
    density = parse_density(f.get("density", {}), src, f.path("density"))
    _check_size(dict(N=N, G=groups, M=M // groups, C=C // groups, P=P, Q=Q, R=R, S=S), f)
    return Layer(name=name, type=kind, N=N, G=groups, M=M // groups, C=C // groups, P=P, Q=Q,
                 R=R, S=S, stride=stride, dilation=dilation, pad=pad_total, H=H, W=W,
                 density=tuple(sorted({"weights": 1.0, "inputs": 1.0, **density}.items(),
                                      key=lambda kv: DENSITY_KEYS.index(kv[0]))))


def _check_size(dims: dict[str, int], f: Fields, names: dict[str, str] | None = None) -> None:
    """Refuse loop bounds the search machinery cannot hold (see spec.MAX_DIM, MAX_MACS);
    `names`: the field each loop dimension comes from, where it is not the conv layer's."""
    for d, v in dims.items():
        if v > MAX_DIM:
            field = (names or {}).get(d) or {"N": "N", "G": "groups", "M": "M", "C": "C", "P": "H", "Q": "W",
                                             "R": "R", "S": "S"}[d]
            raise f.error(field, f"loop bound {d} = {v:,} is over the limit {MAX_DIM:,} "
                          "(factorization and int64 tile products are bounded by it)")
    macs = math.prod(dims.values())
    if macs > MAX_MACS:
        raise f.error("name", f"{macs:.3g} MACs is over the limit {MAX_MACS:.3g} (2^50) per layer, "
                      "so every access count fits int64")


def parse_density(value: Any, src: str, where: str) -> dict[str, float]:
    """{weights: f, inputs: f} with each f in (0, 1]."""
    f = Fields(value, src, where, DENSITY_KEYS)
    out = {}
    for key in DENSITY_KEYS:
        if f.has(key):
            d = as_number(f.get(key), src, f.path(key), 0.0)
            if not 0.0 < d <= 1.0:
                raise f.error(key, f"density must be in (0, 1], got {d}")
            out[key] = d
    return out


def parse_network(data: Any, src: str, batch: int | None = None) -> Network:
    if isinstance(data, dict) and "problem" in data and "layers" not in data:
        raise SpecError(src, "problem", "this is a Timeloop problem, not a network file: convert it with "
                        "`mapper convert timeloop-problem FILE -o NET.yaml`")
    f = Fields(data, src, "", ("name", "batch", "layers", "description", "density_presets"),
               required=("name", "layers"))
    if batch is None and f.has("batch"):
        batch = f.integer("batch")
    raw = f.get("layers")
    if not isinstance(raw, list) or not raw:
        raise f.error("layers", "expected a non-empty list of layers")
    layers = []
    for i, item in enumerate(raw):
        layers.append(parse_layer(item, src, f"layers[{i}]", batch))
    names = [l.name for l in layers]
    for i, n in enumerate(names):
        if names.index(n) != i:
            raise SpecError(src, f"layers[{i}].name", f"duplicate layer name '{n}'")
    presets = []
    raw_presets = f.get("density_presets") or {}
    if not isinstance(raw_presets, dict):
        raise f.error("density_presets", f"expected a mapping of preset names to layer densities, "
                      f"got {type(raw_presets).__name__}")
    for pname, table in raw_presets.items():
        where = f"density_presets.{pname}"
        pf = Fields(table, src, where, names)
        presets.append((str(pname), tuple(
            (lname, tuple(parse_density(pf.get(lname), src, pf.path(lname)).items()))
            for lname in names if pf.has(lname))))
    return Network(name=f.name("name"), layers=tuple(layers), source=src, presets=tuple(presets))


def load_network(name_or_path: str | Path, batch: int | None = None) -> Network:
    """Read a problem file (a built-in name such as 'alexnet', or a path), or an ONNX model
    (a .onnx path: its MAC layers, the symbolic batch set to `batch`; what is left out is
    said on stderr, as `mapper import onnx` says it)."""
    path = resolve(str(name_or_path), "problems", "problem")
    if path.suffix.lower() == ".onnx":
        import sys
        from .onnx_import import import_onnx
        imported = import_onnx(path, batch)
        for line in imported.summary():
            print(f"note: {path}: {line}", file=sys.stderr)
        return parse_network(imported.data, str(path))
    return parse_network(load_yaml(path), str(path), batch)


def layer_from_dims(name: str, stride=(1, 1), dilation=(1, 1), **dims: int) -> Layer:
    """A layer straight from its loop bounds (for tests and notebooks)."""
    full = {d: int(dims.get(d, 1)) for d in DIMS}
    unknown = set(dims) - set(DIMS)
    if unknown:
        raise ValueError(f"unknown dimensions {sorted(unknown)}")
    H = (full["P"] - 1) * stride[0] + (full["R"] - 1) * dilation[0] + 1
    W = (full["Q"] - 1) * stride[1] + (full["S"] - 1) * dilation[1] + 1
    kind = "depthwise" if full["G"] > 1 and full["C"] == 1 else "conv"
    return Layer(name=name, type=kind, stride=tuple(stride), dilation=tuple(dilation), H=H, W=W, **full)
