"""Timeloop CNN_Layer problems (v0.3 / v0.4) as our problem files (conventions: mapper.timeloop)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..problem import DIMS, PROJECTED, SLIDING_PAIRS, TENSORS
from ..spec import SpecError, as_int, closest
from .common import TIMELOOP_DIMS, _comment, _flow, _list_of, _mapping_of, _number, _section

_CNN_SHAPE_NAMES = ("cnn_layer", "cnn-layer")
#: Instance fields Timeloop's front end writes for information (sizes before padding).
_INFO_INSTANCE_FIELDS = ("H", "W", "Hpad", "Wpad")


def _axes(projection: Any, src: str, field: str) -> list[list[tuple[str, str | None]]]:
    """A data space's projection as axes, each a list of (dimension, coefficient name)."""
    axes = []
    for i, axis in enumerate(_list_of(projection, src, field)):
        where = f"{field}[{i}]"
        terms = []
        for j, term in enumerate(_list_of(axis, src, where)):
            if not isinstance(term, list) or not 1 <= len(term) <= 2 or not all(isinstance(x, str) for x in term):
                raise SpecError(src, f"{where}[{j}]", f"expected [dimension] or [dimension, coefficient], got {term!r}")
            terms.append((term[0], term[1] if len(term) == 2 else None))
        axes.append(terms)
    return axes


#: The built-in CNN_Layer's coefficient per role and their defaults.
_BUILTIN_ROLES = {"Pstride": "Wstride", "Rdil": "Wdilation", "Qstride": "Hstride", "Sdil": "Hdilation"}
_BUILTIN_DEFAULTS = {"Wstride": 1, "Hstride": 1, "Wdilation": 1, "Hdilation": 1}

_Shape = tuple[tuple[str, ...], dict[str, str | None], dict[str, int]]
_Spaces = dict[str, tuple[list[list[tuple[str, str | None]]], Any, str]]     # name -> (axes, read_write, where)


def _cnn_shape(shape: Any, src: str) -> _Shape:
    """Check that a problem shape is Timeloop's CNN_Layer (optionally with G).

    Returns (dimensions, coefficient name per role {Pstride, Rdil, Qstride, Sdil}, coefficient defaults).
    """
    shape = _builtin_or_explicit(shape, src)
    if shape is None:
        return TIMELOOP_DIMS, dict(_BUILTIN_ROLES), dict(_BUILTIN_DEFAULTS)
    coef_defaults = _coefficient_defaults(shape, src)
    dims = _shape_dims(shape, src)
    spaces = _data_spaces(shape, src)
    has_g = "G" in dims
    _check_weights_and_outputs(spaces, has_g, src)
    roles = _input_roles(spaces, has_g, src)
    if not spaces["Outputs"][1]:
        raise SpecError(src, f"{spaces['Outputs'][2]}.read_write", "Outputs must be read_write: true as in CNN_Layer")
    return dims, roles, {**_BUILTIN_DEFAULTS, **coef_defaults}


def _builtin_or_explicit(shape: Any, src: str) -> dict | None:
    """None for the built-in CNN_Layer (no shape, or named), else the explicit shape to check."""
    if shape is None:
        return None
    if isinstance(shape, str):
        if shape.lower() in _CNN_SHAPE_NAMES:
            return None
        raise SpecError(src, "problem.shape", f"shape '{shape}' is not Timeloop's CNN_Layer; only CNN_Layer "
                        "problems (convolutions, optionally grouped with G) are supported")
    shape = _mapping_of(shape, src, "problem.shape")
    name = str(shape.get("name", ""))
    if "data_spaces" not in shape:
        if name.lower() in _CNN_SHAPE_NAMES:
            return None
        raise SpecError(src, "problem.shape", f"shape '{name}' has no data_spaces and is not the built-in "
                        "CNN_Layer; only CNN_Layer problems are supported")
    return shape


def _coefficient_defaults(shape: dict, src: str) -> dict[str, int]:
    """The shape's coefficients (strides, dilations) with their defaults."""
    coef_defaults = {}
    for i, c in enumerate(_list_of(shape.get("coefficients"), src, "problem.shape.coefficients")):
        c = _mapping_of(c, src, f"problem.shape.coefficients[{i}]")
        if "name" not in c:
            raise SpecError(src, f"problem.shape.coefficients[{i}].name", "missing required field")
        coef_defaults[str(c["name"])] = as_int(c.get("default", 1), src,
                                               f"problem.shape.coefficients[{i}].default")
    return coef_defaults


def _shape_dims(shape: dict, src: str) -> tuple[str, ...]:
    """The shape's dimensions, each one of ours."""
    dims = tuple(str(d) for d in _list_of(shape.get("dimensions"), src, "problem.shape.dimensions"))
    not_cnn = [d for d in dims if d not in DIMS]
    if not dims or not_cnn:
        raise SpecError(src, "problem.shape.dimensions",
                        f"dimensions {list(dims)} are not CNN_Layer's (C, M, R, S, N, P, Q and optionally G)"
                        + (f"; {', '.join(not_cnn)} has no equivalent" if not_cnn else ""))
    return dims


def _data_spaces(shape: dict, src: str) -> _Spaces:
    """The shape's data spaces by name: exactly CNN_Layer's three, each with its projection axes."""
    spaces = {}
    for i, ds in enumerate(_list_of(shape.get("data_spaces"), src, "problem.shape.data_spaces")):
        where = f"problem.shape.data_spaces[{i}]"
        ds = _mapping_of(ds, src, where)
        dname = str(ds.get("name"))
        if dname not in TENSORS:
            raise SpecError(src, f"{where}.name", f"data space '{dname}' is not one of CNN_Layer's "
                            f"{', '.join(TENSORS)}{closest(dname, TENSORS)}")
        spaces[dname] = (_axes(ds.get("projection"), src, f"{where}.projection"), ds.get("read_write", False), where)
    for t in TENSORS:
        if t not in spaces:
            raise SpecError(src, "problem.shape.data_spaces", f"no data space '{t}': not a CNN_Layer shape")
    return spaces


def _check_weights_and_outputs(spaces: _Spaces, has_g: bool, src: str) -> None:
    """Weights and Outputs are indexed as in CNN_Layer: one dimension per axis."""
    expected = {t: {(d, None) for d in PROJECTED[t] if has_g or d != "G"} for t in ("Weights", "Outputs")}
    for t, want in expected.items():
        axes, _, where = spaces[t]
        got = [tuple(a) for a in axes]
        if any(len(a) != 1 for a in got) or {a[0] for a in got} != want or len(got) != len(want):
            raise SpecError(src, f"{where}.projection", f"{t} is indexed by {axes}, not by "
                            f"{sorted(d for d, _ in want)} one dimension per axis as in CNN_Layer")


def _input_roles(spaces: _Spaces, has_g: bool, src: str) -> dict[str, str | None]:
    """The coefficient names of Inputs' two sliding axes (P*stride + R*dilation, Q likewise), by role."""
    axes, _, where = spaces["Inputs"]
    singles = sorted(a[0][0] for a in axes if len(a) == 1 and a[0][1] is None)
    pairs = [dict((d, c) for d, c in a) for a in axes if len(a) == 2]
    want_singles = sorted(d for d in PROJECTED["Inputs"] if has_g or d != "G")
    ok = singles == want_singles and len(pairs) == len(SLIDING_PAIRS) and len(axes) == len(want_singles) + len(pairs)
    roles = {}
    if ok:
        for pr in pairs:
            for out, filt in SLIDING_PAIRS:       # (P, R), (Q, S): stride and dilation names
                if set(pr) == {out, filt}:
                    roles[f"{out}stride"], roles[f"{filt}dil"] = pr[out], pr[filt]
        ok = len(roles) == 2 * len(SLIDING_PAIRS)
    if not ok:
        raise SpecError(src, f"{where}.projection", f"Inputs is indexed by {axes}, not as in CNN_Layer "
                        "(N, C, [R*dilation + P*stride], [S*dilation + Q*stride])")
    return roles


def _timeloop_problem(path: str | Path) -> tuple[dict, str, tuple[str, ...], dict[str, int], dict[str, Any], list[str]]:
    """(instance, src, dims, values of dims and coefficients, roles, notes) of a Timeloop problem file."""
    src = str(path)
    prob = _section(path, "problem", "a Timeloop problem file has a top-level 'problem'")
    dims, roles, coef_defaults = _cnn_shape(prob.get("shape"), src)
    if "instance" not in prob:
        raise SpecError(src, "problem.instance", "missing required field")
    inst = _mapping_of(prob["instance"], src, "problem.instance")
    values: dict[str, int] = {}
    for d in dims:
        if d not in inst:
            raise SpecError(src, f"problem.instance.{d}", f"missing dimension {d} (the shape lists "
                            f"{', '.join(dims)})")
        values[d] = as_int(inst[d], src, f"problem.instance.{d}")
    for d in DIMS:
        values.setdefault(d, 1)
    for c, default in coef_defaults.items():
        values[c] = as_int(inst.get(c, default), src, f"problem.instance.{c}")
    notes = []
    for key, value in inst.items():
        if key in dims or key in coef_defaults:
            continue
        if key == "densities":
            continue
        if key in _INFO_INSTANCE_FIELDS:
            notes.append(f"instance.{key} = {value} ignored (P and Q are authoritative)")
            continue
        raise SpecError(src, f"problem.instance.{key}", f"unknown instance field{closest(key, list(dims) + list(coef_defaults))}; "
                        f"known: {', '.join(list(dims) + list(coef_defaults))}, densities")
    return inst, src, dims, values, roles, notes


def problem_dims(path: str | Path) -> tuple[str, ...]:
    """The dimension names of a Timeloop problem file (what an exported mapping must list)."""
    return _timeloop_problem(path)[2]


def problem_from_timeloop(path: str | Path) -> dict:
    """A Timeloop CNN_Layer problem (v0.3 or v0.4) as our problem-file structure: one layer,
    named after the file stem."""
    inst, src, dims, v, roles, notes = _timeloop_problem(path)
    name = Path(path).stem
    sP, dR = v[roles["Pstride"]], v[roles["Rdil"]]
    sQ, dS = v[roles["Qstride"]], v[roles["Sdil"]]
    H = (v["P"] - 1) * sP + (v["R"] - 1) * dR + 1
    W = (v["Q"] - 1) * sQ + (v["S"] - 1) * dS + 1
    G = v["G"]
    layer: dict[str, Any] = {"name": name}
    if G > 1 and v["C"] == 1:
        layer.update(type="depthwise", C=G, M=G * v["M"])
    else:
        layer.update(type="conv", C=G * v["C"], M=G * v["M"])
        if G > 1:
            layer["groups"] = G
    layer.update(H=H, W=W, R=v["R"], S=v["S"])
    layer["stride"] = sP if sP == sQ else [sP, sQ]
    if (dR, dS) != (1, 1):
        layer["dilation"] = dR if dR == dS else [dR, dS]
    layer["pad"] = 0
    layer["N"] = v["N"]
    densities = inst.get("densities") or {}
    if densities:
        density = {}
        dmap = _mapping_of(densities, src, "problem.instance.densities")
        for t, spec in dmap.items():
            where = f"problem.instance.densities.{t}"
            value = spec.get("density") if isinstance(spec, dict) else spec
            if t not in ("Weights", "Inputs") or isinstance(spec, dict) and set(spec) - {"density", "distribution"}:
                raise SpecError(src, where, "only a density (a number) for Weights or Inputs has an equivalent")
            d = _number(value, src, where)
            if not 0.0 < d <= 1.0:      # the fraction of non-zeros (problem.parse_density's bound)
                raise SpecError(src, where, f"density must be in (0, 1], got {d}")
            density[t.lower()] = d
        layer["density"] = density
    desc = (f"Converted from the Timeloop problem {src}: "
            f"{', '.join(f'{d}={v[d]}' for d in dims)}, Wstride={sP}, Hstride={sQ}, "
            f"Wdilation={dR}, Hdilation={dS}. Our stride/dilation = (Wstride, Hstride)/(Wdilation, "
            f"Hdilation); H and W are the input rows and columns P and Q read (pad 0).")
    if notes:
        desc += " " + "; ".join(notes) + "."
    return {"name": name, "description": desc, "layers": [layer]}


def write_problem(path_in: str | Path, path_out: str | Path) -> dict:
    """Convert a Timeloop problem file and write our problem YAML (with a provenance comment)."""
    from ..problem import parse_network
    from ..result import write_text
    data = problem_from_timeloop(path_in)
    parse_network(data, str(path_out))       # our own parser must accept what we write
    lines = _comment(f"Converted by mapper.timeloop.write_problem from {path_in}.")
    lines.append(f"name: {_flow(data['name'])}")
    lines.append(f"description: {_flow(data['description'])}")
    lines.append("layers:")
    lines.append(f"  - {_flow(data['layers'][0])}")
    write_text(path_out, "\n".join(lines) + "\n")
    return data
