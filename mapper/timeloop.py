"""Timeloop interoperability: problems, architectures (with energy tables and constraints),
mappings and result export.

Plain functions, no global state. Every user error is a `SpecError` naming the file and
the part of it that is wrong.

Conventions (Timeloop's, as in ../shared/reference/timeloop/README.md and its source):

* Problems (`CNN_Layer`): dimensions map to ours by identical names (N, G, C, M, P, Q, R, S).
  Timeloop's Inputs projection pairs P with R through Wstride/Wdilation and Q with S through
  Hstride/Hdilation; ours pairs P with R through stride[0]/dilation[0] and Q with S through
  stride[1]/dilation[1]. So our stride = (Wstride, Hstride), dilation = (Wdilation,
  Hdilation), and we write H = (P-1)*Wstride + (R-1)*Wdilation + 1 (W likewise) with pad 0,
  so P and Q come out exactly. Our C and M are totals: a Timeloop problem with G > 1 and
  C = 1 is our depthwise layer (C = G, M = G*M); with C > 1 a grouped conv (C*G, M*G, groups G).
* Architectures (v0.4 processed tree, `subtree`/`local`, or the nested v0.3 tree): storage
  levels in tree order, outermost first. Instances come from name ranges (`PE[0..167]`);
  meshX/meshY default to (instances, 1) as in Timeloop. Between consecutive storage levels
  the growth of meshX and meshY is a fan-out {X, Y}. Its spatial loops belong, in Timeloop,
  to the outer level; so a fan-out below a `dummy_storage` level takes that level's name
  (the dummy itself holds nothing and disappears as storage; a dummy with no growth below
  it becomes a 1 x 1 fan-out so that every Timeloop level keeps a counterpart), and a
  fan-out below a real storage level S is named `S_spatial`. Capacity = depth * width /
  datawidth words (divided by multiple_buffering); energy per word = ERT energy per action
  / (width / datawidth); leakage = the ERT's `leak` energy per cycle per instance.
* Mappings: `permutation` lists a level's loops innermost first; in a spatial directive
  the loops at permutation index < `split` are on X, the rest on Y (default split: all X).
  Missing factors are 1, missing permutation dimensions are appended (outermost), missing
  datatype directives keep every tensor: Timeloop's defaults (src/mapping/parser.cpp).
"""
from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import yaml

from .arch import Arch, Storage, load_arch, parse_arch
from .mapping import Loop, Mapping, check, normalize, parse_mapping
from .problem import DIMS, TENSORS, Layer
from .spec import MapperError, SpecError, as_int, as_number, clip, closest, load_json, load_yaml

#: Timeloop CNN_Layer dimension order (the order Timeloop's own files list factors in).
TIMELOOP_DIMS = ("C", "M", "R", "S", "N", "P", "Q")
VERSIONS = ("0.3", "0.4")

_RANGE = re.compile(r"^(?P<base>.*?)\[(?P<lo>-?\d+)\.\.(?P<hi>-?\d+)\]$")
_FACTOR = re.compile(r"([A-Za-z]+)\s*=?\s*(\d+)(?:,(\d+))?")


# ---------------------------------------------------------------------------------------
# Small helpers

def _split_range(name: str) -> tuple[str, int]:
    """'PE[0..167]' -> ('PE', 168); 'DRAM' -> ('DRAM', 1)."""
    m = _RANGE.match(str(name))
    if not m:
        return str(name), 1
    return m.group("base"), int(m.group("hi")) - int(m.group("lo")) + 1


def _path_parts(full: str) -> list[str]:
    """'system.PE[0..167].mac' -> ['system', 'PE[0..167]', 'mac'] (dots inside ranges kept)."""
    return re.split(r"\.(?![^\[]*\])", str(full))


def _strip_ranges(full: str) -> str:
    return ".".join(_split_range(part)[0] for part in _path_parts(full))


def _check_version(value: Any, src: str, field: str, required: bool = False) -> None:
    if value is None:
        if required:
            raise SpecError(src, field, "missing version; supported: " + ", ".join(VERSIONS))
        return
    text = str(value).strip()
    if text not in VERSIONS:
        raise SpecError(src, field, f"unsupported version {value!r}; supported: {', '.join(VERSIONS)}")


def _mapping_of(value: Any, src: str, field: str) -> dict:
    if not isinstance(value, dict):
        raise SpecError(src, field or "(top level)", f"expected a mapping of fields, got {type(value).__name__}")
    return value


def _list_of(value: Any, src: str, field: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise SpecError(src, field, f"expected a list, got {type(value).__name__}")
    return value


def _number(value: Any, src: str, field: str) -> float:
    """A non-negative number; Timeloop files also write numbers as strings."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    return as_number(value, src, field)


def _load(data_or_path: Any, what: str) -> tuple[Any, str]:
    """(parsed data, source name) from a path or already-parsed data."""
    if isinstance(data_or_path, (str, Path)):
        return load_yaml(data_or_path), str(data_or_path)
    return data_or_path, what


def _parse_factors(text: Any, src: str, field: str) -> dict[str, tuple[int, int | None]]:
    """'C1 M2 R11' or 'C=1,M=2' (or a list of such items) -> {dim: (factor, residual)}."""
    if isinstance(text, (list, tuple)):
        text = " ".join(str(t) for t in text)
    if not isinstance(text, str):
        raise SpecError(src, field, f"expected a factors string such as 'C1 M2 R3', got {text!r}")
    body = text.split("#", 1)[0]
    out: dict[str, tuple[int, int | None]] = {}
    pos = 0
    for m in _FACTOR.finditer(body):
        gap = body[pos:m.start()].strip(" ,\t")
        if gap:
            raise SpecError(src, field, f"cannot read {gap!r} in factors {text!r} (expected items like C1 or C=1)")
        pos = m.end()
        dim = m.group(1)
        if dim in out:
            raise SpecError(src, field, f"dimension {dim} is given twice in factors {text!r}")
        out[dim] = (int(m.group(2)), int(m.group(3)) if m.group(3) else None)
    rest = body[pos:].strip(" ,\t")
    if rest:
        raise SpecError(src, field, f"cannot read {rest!r} in factors {text!r} (expected items like C1 or C=1)")
    return out


def _parse_permutation(text: Any, src: str, field: str) -> list[str]:
    """'MCRSNPQ' (innermost first; one letter per dimension) or a list of names."""
    if text is None:
        return []
    if isinstance(text, (list, tuple)):
        dims = [str(t) for t in text]
    elif isinstance(text, str):
        dims = [c for c in text if not c.isspace()]
    else:
        raise SpecError(src, field, f"expected a permutation string such as 'MCRSNPQ', got {text!r}")
    seen = set()
    for d in dims:
        if d in seen:
            raise SpecError(src, field, f"dimension {d} appears twice in permutation {text!r}")
        seen.add(d)
    return dims


def _flow(value: Any) -> str:
    """A value as one line of YAML flow style."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30, sort_keys=False).strip()
    return text.removesuffix("\n...").strip()       # a scalar document ends with a '...' line


def _comment(text: str, indent: str = "") -> list[str]:
    return [f"{indent}# {line}".rstrip() for line in str(text).splitlines()]


# ---------------------------------------------------------------------------------------
# Problems

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


def _cnn_shape(shape: Any, src: str) -> tuple[tuple[str, ...], dict[str, str | None], dict[str, int]]:
    """Check that a problem shape is Timeloop's CNN_Layer (optionally with G).

    Returns (dimensions, coefficient name per role {Pstride, Rdil, Qstride, Sdil}, coefficient defaults).
    """
    builtin = {"Pstride": "Wstride", "Rdil": "Wdilation", "Qstride": "Hstride", "Sdil": "Hdilation"}
    defaults = {"Wstride": 1, "Hstride": 1, "Wdilation": 1, "Hdilation": 1}
    if shape is None:
        return TIMELOOP_DIMS, builtin, defaults
    if isinstance(shape, str):
        if shape.lower() in _CNN_SHAPE_NAMES:
            return TIMELOOP_DIMS, builtin, defaults
        raise SpecError(src, "problem.shape", f"shape '{shape}' is not Timeloop's CNN_Layer; only CNN_Layer "
                        "problems (convolutions, optionally grouped with G) are supported")
    shape = _mapping_of(shape, src, "problem.shape")
    name = str(shape.get("name", ""))
    if "data_spaces" not in shape:
        if name.lower() in _CNN_SHAPE_NAMES:
            return TIMELOOP_DIMS, builtin, defaults
        raise SpecError(src, "problem.shape", f"shape '{name}' has no data_spaces and is not the built-in "
                        "CNN_Layer; only CNN_Layer problems are supported")
    coef_defaults = {}
    for i, c in enumerate(_list_of(shape.get("coefficients"), src, "problem.shape.coefficients")):
        c = _mapping_of(c, src, f"problem.shape.coefficients[{i}]")
        if "name" not in c:
            raise SpecError(src, f"problem.shape.coefficients[{i}].name", "missing required field")
        coef_defaults[str(c["name"])] = as_int(c.get("default", 1), src,
                                                      f"problem.shape.coefficients[{i}].default")
    dims = tuple(str(d) for d in _list_of(shape.get("dimensions"), src, "problem.shape.dimensions"))
    not_cnn = [d for d in dims if d not in DIMS]
    if not dims or not_cnn:
        raise SpecError(src, "problem.shape.dimensions",
                        f"dimensions {list(dims)} are not CNN_Layer's (C, M, R, S, N, P, Q and optionally G)"
                        + (f"; {', '.join(not_cnn)} has no equivalent" if not_cnn else ""))
    has_g = "G" in dims
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
    g = {("G", None)} if has_g else set()
    expected = {
        "Weights": {("C", None), ("M", None), ("R", None), ("S", None)} | g,
        "Outputs": {("N", None), ("M", None), ("P", None), ("Q", None)} | g,
    }
    for t, want in expected.items():
        axes, _, where = spaces[t]
        got = [tuple(a) for a in axes]
        if any(len(a) != 1 for a in got) or {a[0] for a in got} != want or len(got) != len(want):
            raise SpecError(src, f"{where}.projection", f"{t} is indexed by {axes}, not by "
                            f"{sorted(d for d, _ in want)} one dimension per axis as in CNN_Layer")
    axes, _, where = spaces["Inputs"]
    singles = sorted(a[0][0] for a in axes if len(a) == 1 and a[0][1] is None)
    pairs = [dict((d, c) for d, c in a) for a in axes if len(a) == 2]
    want_singles = sorted(["N", "C"] + (["G"] if has_g else []))
    ok = singles == want_singles and len(pairs) == 2 and len(axes) == len(want_singles) + 2
    roles = {}
    if ok:
        for pr in pairs:
            if set(pr) == {"P", "R"}:
                roles["Pstride"], roles["Rdil"] = pr["P"], pr["R"]
            elif set(pr) == {"Q", "S"}:
                roles["Qstride"], roles["Sdil"] = pr["Q"], pr["S"]
        ok = len(roles) == 4
    if not ok:
        raise SpecError(src, f"{where}.projection", f"Inputs is indexed by {axes}, not as in CNN_Layer "
                        "(N, C, [R*dilation + P*stride], [S*dilation + Q*stride])")
    if not spaces["Outputs"][1]:
        raise SpecError(src, f"{spaces['Outputs'][2]}.read_write", "Outputs must be read_write: true as in CNN_Layer")
    return dims, roles, {**defaults, **coef_defaults}


def _section(path: str | Path, key: str, hint: str) -> dict:
    """The required top-level `key` of a Timeloop/Accelergy file, its version checked."""
    src = str(path)
    data = _mapping_of(load_yaml(path), src, "")
    if key not in data:
        raise SpecError(src, key, f"missing required field ({hint})")
    section = _mapping_of(data[key], src, key)
    _check_version(section.get("version"), src, f"{key}.version")
    return section


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
            density[t.lower()] = _number(value, src, where)
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
    from .problem import parse_network
    from .result import write_text
    data = problem_from_timeloop(path_in)
    parse_network(data, str(path_out))       # our own parser must accept what we write
    lines = _comment(f"Converted by mapper.timeloop.write_problem from {path_in}.")
    lines.append(f"name: {_flow(data['name'])}")
    lines.append(f"description: {_flow(data['description'])}")
    lines.append("layers:")
    lines.append(f"  - {_flow(data['layers'][0])}")
    write_text(path_out, "\n".join(lines) + "\n")
    return data


# ---------------------------------------------------------------------------------------
# Architectures

_BUFFER_WORDS = ("DRAM", "SRAM", "regfile", "smartbuffer", "storage")   # Timeloop: substring match
_COMPUTE_WORDS = ("mac", "compute")
_NETWORK_CLASSES = ("XY_NoC", "Legacy", "ReductionTree", "SimpleMulticast")

#: Component attributes we use.
_USED_ATTRS = {"depth", "width", "memory_depth", "memory_width", "datawidth", "word-bits", "word_bits",
               "block_size", "block-size",
               "read_bandwidth", "write_bandwidth", "shared_bandwidth", "meshX", "meshY", "instances",
               "multiple_buffering", "entries"}
#: Why each attribute we do not use has no equivalent.
_ATTR_REASONS = {
    "n_banks": "banking is not modelled (Accelergy used it for the ERT/ART)",
    "cluster_size": "clusters are not modelled (1 = none)",
    "min_utilization": "a minimum-utilization requirement is not enforced",
    "allow_overbooking": "overbooking is not modelled (every tile must fit)",
    "has_power_gating": "power gating is not modelled",
    "power_gated_at": "power gating is not modelled",
    "reduction_supported": "fan-outs always allow spatial reduction here",
    "update_fifo_depth": "no update FIFO is modelled",
    "technology": "used by Accelergy only: energies come from the ERT",
    "type": "used by Accelergy only: energies come from the ERT",
    "multiplier_width": "used by Accelergy only: MAC energy comes from the ERT",
    "adder_width": "used by Accelergy only: MAC energy comes from the ERT",
    "version": "informational",
    "global_cycle_seconds": None,    # used: the clock
}


class _Component:
    def __init__(self, full: str, cls: str, attrs: dict, own: dict, instances: int, where: str, extra: dict):
        # attrs: its attributes with those inherited from enclosing subtrees; own: its own only.
        self.full, self.cls, self.attrs, self.own, self.instances, self.where, self.extra = \
            full, cls, attrs, own, instances, where, extra
        self.base = _split_range(_path_parts(full)[-1])[0]

    @property
    def kind(self) -> str:
        if "dummy" in self.cls:
            return "dummy"
        if any(w in self.cls for w in _BUFFER_WORDS):
            return "storage"
        if any(w in self.cls for w in _COMPUTE_WORDS):
            return "compute"
        if self.cls in _NETWORK_CLASSES:
            return "network"
        return "unknown"


def _named(node: Any, src: str, where: str) -> tuple[dict, str]:
    """A tree node as a mapping, and its required name."""
    node = _mapping_of(node, src, where)
    if "name" not in node:
        raise SpecError(src, f"{where}.name", "missing required field")
    return node, str(node["name"])


def _walk_tree(arch: dict, src: str) -> tuple[list[_Component], dict[str, list[tuple[str, Any]]]]:
    """Components in tree order (outermost first) and the attributes of enclosing subtrees."""
    comps: list[_Component] = []
    tree_attrs: dict[str, list[tuple[str, Any]]] = {}

    def visit(node: dict, prefix: str, mult: int, where: str, attrs: dict):
        for i, comp in enumerate(_list_of(node.get("local"), src, f"{where}.local")):
            cwhere = f"{where}.local[{i}]"
            comp, name = _named(comp, src, cwhere)
            base, count = _split_range(name)
            cattrs = {**attrs, **_mapping_of(comp.get("attributes") or {}, src, f"{cwhere}.attributes")}
            instances = mult * count
            if "instances" in cattrs:
                instances = mult * as_int(cattrs["instances"], src, f"{cwhere}.attributes.instances")
            cls = comp.get("class")
            if not isinstance(cls, str):
                raise SpecError(src, f"{cwhere}.class", f"missing or invalid class for component '{name}'")
            extra = {k: v for k, v in comp.items() if k not in ("name", "class", "attributes")}
            own = _mapping_of(comp.get("attributes") or {}, src, f"{cwhere}.attributes")
            comps.append(_Component(f"{prefix}{name}", cls, cattrs, own, instances, cwhere, extra))
        for i, sub in enumerate(_list_of(node.get("subtree"), src, f"{where}.subtree")):
            swhere = f"{where}.subtree[{i}]"
            sub, name = _named(sub, src, swhere)
            _, count = _split_range(name)
            sattrs = _mapping_of(sub.get("attributes") or {}, src, f"{swhere}.attributes")
            for k, v in sattrs.items():
                tree_attrs.setdefault(k, []).append((name, v))
            visit(sub, f"{prefix}{name}.", mult * count, swhere, {**attrs, **sattrs})

    visit(arch, "", 1, "architecture", {})
    return comps, tree_attrs


def _load_ert(ert_path: str | Path) -> tuple[dict[str, dict[str, list[float]]], str]:
    src = str(ert_path)
    ert = _section(ert_path, "ERT", "an Accelergy energy reference table has a top-level 'ERT'")
    tables: dict[str, dict[str, list[float]]] = {}
    for i, t in enumerate(_list_of(ert.get("tables"), src, "ERT.tables")):
        where = f"ERT.tables[{i}]"
        t, tname = _named(t, src, where)
        actions: dict[str, list[float]] = {}
        for j, a in enumerate(_list_of(t.get("actions"), src, f"{where}.actions")):
            a = _mapping_of(a, src, f"{where}.actions[{j}]")
            if "name" not in a or "energy" not in a:
                raise SpecError(src, f"{where}.actions[{j}]", "an action needs a name and an energy")
            actions.setdefault(str(a["name"]), []).append(_number(a["energy"], src, f"{where}.actions[{j}].energy"))
        tables[tname] = actions
    return tables, src


def _ert_entry(tables: dict, comp: _Component, src: str) -> dict[str, list[float]]:
    if comp.full in tables:
        return tables[comp.full]
    stripped = {_strip_ranges(k): k for k in tables}
    key = stripped.get(_strip_ranges(comp.full))
    if key is not None:
        return tables[key]
    raise SpecError(src, "ERT.tables", f"no entry for component '{comp.full}' (class {comp.cls}) of the "
                    f"architecture{closest(comp.full, tables)}; the table has: {', '.join(tables) or 'nothing'}")


def _action(entry: dict[str, list[float]], names: Sequence[str], comp: _Component, src: str,
            unsupported: list[str], required: bool = True) -> float | None:
    for n in names:
        if n in entry:
            values = entry[n]
            if len(set(values)) > 1:
                unsupported.append(f"ERT {comp.full} action '{n}' has {len(values)} entries with different "
                                   f"arguments ({', '.join(map(str, values))} pJ); we use the largest")
            return max(values)
    if required:
        raise SpecError(src, "ERT.tables", f"component '{comp.full}' has no '{names[0]}' action "
                        f"(it has: {', '.join(entry) or 'none'})")
    return None


def _constraint_entries(constraints_path: str | Path | None, unsupported: list[str]) -> tuple[list[dict], str]:
    """The constraint directives of a Timeloop constraints file, each with its '_where'."""
    if constraints_path is None:
        return [], ""
    src = str(constraints_path)
    data = _mapping_of(load_yaml(constraints_path), src, "")
    entries: list[dict] = []
    roots = ("architecture_constraints", "mapspace_constraints", "constraints")
    found = False
    for key, value in data.items():
        if key in roots:
            found = True
            block = value
            if isinstance(block, dict):
                _check_version(block.get("version"), src, f"{key}.version")
                for k in block:
                    if k not in ("targets", "version"):
                        unsupported.append(f"constraints {key}.{k}: no equivalent")
                block = block.get("targets")
            for i, e in enumerate(_list_of(block, src, f"{key}.targets")):
                entries.append(dict(_mapping_of(e, src, f"{key}.targets[{i}]"), _where=f"{key}.targets[{i}]"))
        elif key == "mapspace":
            ms = _mapping_of(value, src, "mapspace")
            _check_version(ms.get("version"), src, "mapspace.version")
            for k, v in ms.items():
                if k == "version":
                    continue
                if k == "template" and v == "uber":
                    unsupported.append("constraints mapspace.template = uber: perfect factorization only "
                                       "(as our mapspace)")
                elif k == "template":
                    unsupported.append(f"constraints mapspace.template = {v}: imperfect factorization is not supported")
                else:
                    unsupported.append(f"constraints mapspace.{k}: no equivalent")
        else:
            unsupported.append(f"constraints {key}: no equivalent (ignored)")
    if not found:
        raise SpecError(src, "architecture_constraints", "missing required field (expected architecture_constraints "
                        "or mapspace_constraints with a list of targets)")
    return entries, src


def arch_from_timeloop(arch_path: str | Path, ert_path: str | Path, constraints_path: str | Path | None = None,
                       name: str | None = None, art_path: str | Path | None = None) -> tuple[dict, list[str]]:
    """A Timeloop architecture (v0.4 processed `subtree`/`local` tree, or v0.3) with its Accelergy
    energy table (ERT) and optional constraints, as our architecture-file structure.

    Returns (arch dict, unsupported): `unsupported` names every part of the inputs that has no
    equivalent here (attribute, constraint, ERT action, area table) and was therefore not converted.
    Each level of the dict carries `notes` saying where its numbers come from.
    """
    src = str(arch_path)
    unsupported: list[str] = []
    data = _mapping_of(load_yaml(arch_path), src, "")
    if "architecture" not in data:
        raise SpecError(src, "architecture", "missing required field (a Timeloop architecture file has a "
                        "top-level 'architecture')")
    for key in data:
        if key not in ("architecture", "dumped_by_timeloop_front_end", "globals"):
            unsupported.append(f"{key}: not an architecture section (ignored)")
    arch = _mapping_of(data["architecture"], src, "architecture")
    _check_version(arch.get("version"), src, "architecture.version", required=True)
    if "nodes" in arch:
        raise SpecError(src, "architecture.nodes", "the node-list (!Component/!Container) format is not supported; "
                        "give the processed subtree/local tree (timeloopfe's parsed-processed-input.yaml)")
    comps, tree_attrs = _walk_tree(arch, src)
    tables, ert_src = _load_ert(ert_path)

    # Clock.
    cycle = None
    for sub, value in tree_attrs.get("global_cycle_seconds", []):
        cycle = _number(value, src, f"architecture ({sub}).attributes.global_cycle_seconds")
    clock_mhz = round(1e-6 / cycle, 6) if cycle else 1000.0     # Timeloop's default: 1 GHz
    unused: "OrderedDict[str, list[str]]" = OrderedDict()
    for key, owners in tree_attrs.items():
        if key != "global_cycle_seconds":
            unused.setdefault(key, []).extend(f"{_split_range(o)[0]}={v}" for o, v in owners)

    storages = [c for c in comps if c.kind in ("storage", "dummy")]
    computes = [c for c in comps if c.kind == "compute"]
    for c in comps:
        if c.kind == "network":
            unsupported.append(f"network {c.full} (class {c.cls}): explicit networks are not converted; "
                               "fan-outs carry no energy")
        elif c.kind == "unknown":
            raise SpecError(src, f"{c.where}.class", f"class '{c.cls}' of '{c.full}' is neither storage "
                            f"({', '.join(_BUFFER_WORDS)}, dummy_storage) nor compute (mac, intmac, compute)")
        if c.extra.get("enabled") is False:
            raise SpecError(src, f"{c.where}.enabled", f"component '{c.full}' is disabled; remove it first")
    if not storages:
        raise SpecError(src, "architecture", "no storage level (DRAM, SRAM, regfile, smartbuffer, storage)")
    if len(computes) != 1:
        raise SpecError(src, "architecture", f"expected one compute component (mac), found "
                        f"{len(computes)}: {', '.join(c.full for c in computes) or 'none'}")
    if comps.index(computes[0]) != len(comps) - 1 and any(c.kind in ("storage", "dummy")
                                                          for c in comps[comps.index(computes[0]):]):
        raise SpecError(src, computes[0].where, "the compute component must come after every storage level")
    if storages[0].kind == "dummy":
        raise SpecError(src, storages[0].where, "the outermost level must be real storage (DRAM), not dummy_storage")

    # Unused attributes, aggregated by attribute name.
    for c in storages + computes:
        for k, v in c.own.items():
            if k in _USED_ATTRS or k == "global_cycle_seconds":
                continue
            if c.kind == "dummy" and k in ("width", "depth", "datawidth"):
                continue
            unused.setdefault(k, []).append(f"{c.base}={v}")
        for k, v in c.extra.items():
            if k in ("required_actions", "enabled"):
                continue
            unused.setdefault(k, []).append(f"{c.base}={v}")
    for k, owners in unused.items():
        unsupported.append(f"{k} ({', '.join(owners)}): {_ATTR_REASONS.get(k) or 'no equivalent'}")

    # Mesh shape of every level.
    def mesh(c: _Component) -> tuple[int, int]:
        mx, my = c.attrs.get("meshX"), c.attrs.get("meshY")
        n = c.instances
        if mx is not None:
            mx = as_int(mx, src, f"{c.where}.attributes.meshX")
        if my is not None:
            my = as_int(my, src, f"{c.where}.attributes.meshY")
        if mx is None and my is None:
            mx, my = n, 1
        elif my is None:
            if n % mx:
                raise SpecError(src, f"{c.where}.attributes.meshX", f"meshX {mx} does not divide {n} instances")
            my = n // mx
        elif mx is None:
            if n % my:
                raise SpecError(src, f"{c.where}.attributes.meshY", f"meshY {my} does not divide {n} instances")
            mx = n // my
        if mx * my != n:
            raise SpecError(src, f"{c.where}.attributes", f"meshX {mx} x meshY {my} != {n} instances of '{c.full}'")
        return mx, my

    chain = storages + computes
    meshes = [mesh(c) for c in chain]
    fanouts: list[tuple[int, int] | None] = []
    for i in range(len(chain) - 1):
        (ox, oy), (ix, iy) = meshes[i], meshes[i + 1]
        if ix % ox or iy % oy or chain[i + 1].instances % chain[i].instances:
            raise SpecError(src, chain[i + 1].where, f"'{chain[i + 1].full}' ({ix} x {iy}) is not a whole "
                            f"fan-out of '{chain[i].full}' ({ox} x {oy})")
        fx, fy = ix // ox, iy // oy
        fanouts.append((fx, fy) if fx * fy > 1 or chain[i].kind == "dummy" else None)

    # Constraints, by target level name.
    entries, csrc = _constraint_entries(constraints_path, unsupported)
    by_target: dict[str, list[dict]] = {}
    names = [c.base for c in storages]
    for e in entries:
        where = e["_where"]
        target = e.get("target")
        if target not in names:
            raise SpecError(csrc, f"{where}.target", f"no level '{target}' in {src}{closest(str(target), names)}; "
                            f"levels: {', '.join(names)}")
        by_target.setdefault(str(target), []).append(e)

    def forced(e: dict) -> tuple[set[str], list[str]]:
        """Dims forced to 1 by a factors constraint, and descriptions of other fixed factors."""
        where = e["_where"]
        if "factors" not in e:
            return set(), []
        ones, fixed = set(), []
        for d, (f, res) in _parse_factors(e["factors"], csrc, f"{where}.factors").items():
            if d not in DIMS:
                raise SpecError(csrc, f"{where}.factors", f"'{d}' is not a CNN_Layer dimension")
            if f == 1 and res is None:
                ones.add(d)
            else:
                fixed.append(f"{d}={f}" + (f",{res}" if res is not None else ""))
        return ones, fixed

    levels: list[dict] = []
    word_bits = None
    for idx, c in enumerate(storages):
        cons = by_target.get(c.base, [])
        keep_c, bypass_c, t_dims, s_entry = None, None, None, None
        for e in cons:
            where = e["_where"]
            kind = e.get("type")
            for k in e:
                if k not in ("target", "type", "factors", "permutation", "split", "keep", "bypass", "_where"):
                    unsupported.append(f"constraint {where} ({c.base}) {k} = {e[k]}: no equivalent")
            if kind in ("bypass", "datatype"):
                keep_c = set(keep_c or ()) | {str(t) for t in _list_of(e.get("keep"), csrc, f"{where}.keep")}
                bypass_c = set(bypass_c or ()) | {str(t) for t in _list_of(e.get("bypass"), csrc, f"{where}.bypass")}
                for t in keep_c | bypass_c:
                    if t not in TENSORS:
                        raise SpecError(csrc, where, f"'{t}' is not a data space{closest(t, TENSORS)}")
            elif kind == "temporal":
                ones, fixed = forced(e)
                allowed = tuple(d for d in DIMS if d not in ones)
                if c.kind == "dummy":
                    # Its temporal loops sit right inside the enclosing storage level's loops when no
                    # fan-out separates them: the same loops are available there.
                    outer = levels[-1] if levels and "fanout" not in levels[-1] else None
                    there = set(outer.get("temporal_dims", DIMS)) if outer else set()
                    lost = [d for d in allowed if d not in there]
                    if lost:
                        unsupported.append(f"constraint {where}: temporal loops over {', '.join(lost)} at dummy "
                                           f"level {c.base} are not available (it becomes a fan-out"
                                           + (f" and {outer['name']} does not allow them)" if outer else
                                              " between two fan-outs)"))
                else:
                    t_dims = allowed if t_dims is None else tuple(d for d in t_dims if d in allowed)
                if fixed:
                    unsupported.append(f"constraint {where}: fixed temporal factors {' '.join(fixed)} at "
                                       f"{c.base} are not enforced")
                if e.get("permutation") is not None and c.kind != "dummy":
                    unsupported.append(f"constraint {where}: loop order '{e['permutation']}' at {c.base} is not "
                                       "enforced (the search chooses orders)")
            elif kind == "spatial":
                s_entry = e
            elif kind in ("utilization", "parallelism"):
                unsupported.append(f"constraint {where}: {kind} {dict((k, v) for k, v in e.items() if k != '_where')}"
                                   ": minimum utilization is not enforced")
            else:
                unsupported.append(f"constraint {where}: type '{kind}' has no equivalent")

        # The storage level itself.
        if c.kind != "dummy":
            a = c.attrs
            entry = _ert_entry(tables, c, ert_src)
            dw = a.get("datawidth", a.get("word-bits", a.get("word_bits")))
            width = a.get("width", a.get("memory_width"))
            if dw is None:
                raise SpecError(src, f"{c.where}.attributes.datawidth", f"'{c.full}' has no datawidth (word bits)")
            dw = as_int(dw, src, f"{c.where}.attributes.datawidth")
            block = a.get("block_size", a.get("block-size"))
            if block is not None:
                block = as_int(block, src, f"{c.where}.attributes.block_size")
            elif width is not None:
                width = as_int(width, src, f"{c.where}.attributes.width")
                if width % dw:
                    raise SpecError(src, f"{c.where}.attributes.width", f"width {width} is not a multiple of "
                                    f"datawidth {dw}")
                block = width // dw
            else:
                block = 1
            word_bits = word_bits or dw
            e_read = _action(entry, ("read",), c, ert_src, unsupported)
            e_write = _action(entry, ("write",), c, ert_src, unsupported, required=False)
            e_update = _action(entry, ("update",), c, ert_src, unsupported, required=False)
            e_leak = _action(entry, ("leak",), c, ert_src, unsupported, required=False) or 0.0
            if e_write is None:
                raise SpecError(ert_src, "ERT.tables", f"component '{c.full}' has no 'write' action")
            if e_update is None:
                e_update = e_write
            for act in entry:
                if act not in ("read", "write", "update", "leak"):
                    unsupported.append(f"ERT {c.full} action '{act}': no equivalent (ignored)")
            level: dict[str, Any] = {"name": c.base}
            keeps = [t for t in TENSORS if bypass_c is None or t not in bypass_c]
            if idx == 0:
                if bypass_c:
                    raise SpecError(csrc, "targets", f"the outermost level {c.base} must keep every tensor "
                                    f"(it bypasses {', '.join(sorted(bypass_c))})")
                keeps = list(TENSORS)
            level["keeps"] = keeps
            if idx > 0:
                may = [t for t in keeps if keep_c is None or t not in keep_c]
                if may:
                    level["may_bypass"] = may
            notes = [f"{c.full} ({c.cls}), {c.instances} instance(s) as {meshes[idx][0]} x {meshes[idx][1]}."]
            depth = a.get("entries", a.get("depth", a.get("memory_depth")))
            if depth is not None and idx > 0:
                depth = as_int(depth, src, f"{c.where}.attributes.depth")
                words = depth * block if "entries" not in a else depth
                mb = a.get("multiple_buffering", 1)
                mb = _number(mb, src, f"{c.where}.attributes.multiple_buffering") or 1
                level["capacity"] = int(words // mb)
                notes.append(f"capacity = depth {depth} x width {width} / datawidth {dw} = {words} words"
                             + (f", / multiple_buffering {mb:g}" if mb != 1 else "") + ".")
            elif depth is not None:
                unsupported.append(f"{c.base}.depth = {depth}: the outermost level holds whole tensors (ignored)")
            level["energy"] = {"read": e_read / block, "write": e_write / block, "update": e_update / block}
            notes.append(f"energy per word = ERT {c.full} per action (read {e_read:g}, write {e_write:g}, update "
                         f"{e_update:g} pJ) / {block} words per access (width / datawidth).")
            bw = {}
            for key, ours in (("read_bandwidth", "read"), ("write_bandwidth", "write"), ("shared_bandwidth", "shared")):
                if a.get(key) is not None:
                    bw[ours] = _number(a[key], src, f"{c.where}.attributes.{key}")
            if bw:
                level["bandwidth"] = bw
                notes.append("bandwidth in words per cycle per instance, as Timeloop's.")
            if t_dims is not None and idx > 0:
                level["temporal_dims"] = list(t_dims)
                notes.append("temporal_dims: the dimensions its temporal factors constraint leaves free.")
            level["word_bits"] = dw
            if e_leak:
                level["leakage"] = e_leak
                notes.append(f"leakage = ERT leak {e_leak:g} pJ per cycle per instance.")
            if keep_c is not None or bypass_c is not None:
                notes.append("keeps / may_bypass from the bypass constraint.")
            level["notes"] = " ".join(notes)
            levels.append(level)
        else:
            if keep_c:
                raise SpecError(csrc, "targets", f"dummy level {c.base} cannot keep {', '.join(sorted(keep_c))}")

        # The fan-out below it.
        fan = fanouts[idx]
        if fan is None:
            if s_entry is not None:
                ones, _ = forced(s_entry)
                if any(d not in ones for d in DIMS):
                    unsupported.append(f"constraint {s_entry['_where']}: spatial at {c.base}, which has no fan-out "
                                       "below it (ignored)")
            continue
        fx, fy = fan
        xd = list(DIMS) if fx > 1 else []
        yd = list(DIMS) if fy > 1 else []
        fnotes = []
        if s_entry is not None:
            where = s_entry["_where"]
            ones, fixed = forced(s_entry)
            allowed = [d for d in DIMS if d not in ones]
            perm = _parse_permutation(s_entry.get("permutation"), csrc, f"{where}.permutation")
            split = s_entry.get("split")
            if split is None:            # no split: the mapper may put any dimension on either axis
                on_x = on_y = set(DIMS)
            else:
                split = as_int(split, csrc, f"{where}.split", 0)
                on_x = set(perm[:split]) | {d for d in DIMS if d not in perm}
                on_y = set(perm[split:]) | {d for d in DIMS if d not in perm}
            xd = [d for d in allowed if d in on_x] if fx > 1 else []
            yd = [d for d in allowed if d in on_y] if fy > 1 else []
            fnotes.append("spatial_dims from the spatial constraint (its factors=1 entries, split and permutation).")
            if fixed:
                unsupported.append(f"constraint {where}: fixed spatial factors {' '.join(fixed)} at {c.base} "
                                   "are not enforced")
        fname = c.base if c.kind == "dummy" else f"{c.base}_spatial"
        nxt = chain[idx + 1]
        fnotes.insert(0, f"Timeloop's spatial loops at {c.base}: {c.full} -> {nxt.full}, meshX "
                      f"{meshes[idx][0]} -> {meshes[idx + 1][0]}, meshY {meshes[idx][1]} -> {meshes[idx + 1][1]}.")
        if c.kind == "dummy" and fx * fy == 1:
            fnotes.append("A dummy level with no fan-out below it: kept as a 1 x 1 fan-out so that exported "
                          "mappings name it.")
        fnotes.append("multicast exact: Timeloop credits identical child tiles within one spatial level.")
        levels.append({"name": fname, "fanout": {"X": fx, "Y": fy}, "spatial_dims": {"X": xd, "Y": yd},
                       "multicast": "exact", "reduction": True, "notes": " ".join(fnotes)})

    # The MACs: a fan-out from the innermost storage level to them, if they outnumber it.
    mac = computes[0]
    entry = _ert_entry(tables, mac, ert_src)
    e_mac = _action(entry, ("compute", "mac_random", "multiply_add"), mac, ert_src, unsupported)
    for act, values in entry.items():
        if act == "leak" and max(values) > 0:
            unsupported.append(f"ERT {mac.full} leak {max(values):g} pJ/cycle: MAC leakage is not modelled "
                               "(timeloop-model does not charge it either)")
        elif act not in ("compute", "mac_random", "multiply_add", "leak"):
            unsupported.append(f"ERT {mac.full} action '{act}': no equivalent (ignored)")
    for t in tables:
        if not any(t == c.full or _strip_ranges(t) == _strip_ranges(c.full) for c in comps):
            unsupported.append(f"ERT entry {t}: no such component in the architecture (ignored)")
    if art_path is not None:
        art = _mapping_of(load_yaml(art_path), str(art_path), "")
        n = len(_list_of(_mapping_of(art.get("ART", {}), str(art_path), "ART").get("tables"), str(art_path), "ART.tables"))
        unsupported.append(f"ART {art_path}: areas of {n} components are not modelled (no area model)")

    arch_name = name or ("timeloop_" + Path(arch_path).name.split(".")[0])
    out = {
        "name": arch_name,
        "description": f"Converted by mapper.timeloop from {src} and the energy table {ert_src}"
                       + (f" with constraints {csrc}" if csrc else "") + ".",
        "clock_mhz": clock_mhz,
        "word_bits": word_bits or 16,
        "mac": {"energy": e_mac},
        "levels": levels,
    }
    parse_arch(out, src)          # validate with our own parser
    return out, unsupported


def arch_yaml(arch: dict, unsupported: Sequence[str] = (), header: Sequence[str] = ()) -> str:
    """Our architecture YAML text for a converted arch dict, with its notes as comments."""
    lines: list[str] = []
    for h in header:
        lines += _comment(h)
    if unsupported:
        lines.append("#")
        lines.append("# Parts of the Timeloop inputs with no equivalent here (not converted):")
        for u in unsupported:
            lines += _comment(f"  - {u}")
    if header or unsupported:
        lines.append("")
    lines.append(f"name: {_flow(arch['name'])}")
    if arch.get("description"):
        lines.append(f"description: {_flow(arch['description'])}")
    lines.append(f"clock_mhz: {_flow(arch['clock_mhz'])}")
    lines.append(f"word_bits: {_flow(arch['word_bits'])}")
    lines.append(f"mac: {_flow(arch['mac'])}")
    lines.append("levels:")
    for level in arch["levels"]:
        notes = level.get("notes")
        if notes:
            for sentence in re.split(r"(?<=\.) ", notes):
                lines += _comment(sentence, "  ")
        first = True
        for key, value in level.items():
            if key == "notes":
                continue
            lines.append(f"  {'- ' if first else '  '}{key}: {_flow(value)}")
            first = False
    return "\n".join(lines) + "\n"


def write_arch(arch_path: str | Path, ert_path: str | Path, out_path: str | Path,
               constraints_path: str | Path | None = None, name: str | None = None,
               art_path: str | Path | None = None, header: Sequence[str] = ()) -> list[str]:
    """Convert a Timeloop architecture (+ ERT, optional constraints) and write our arch YAML
    with comments. Returns the list of unsupported parts (also written as comments)."""
    from .result import write_text
    arch, unsupported = arch_from_timeloop(arch_path, ert_path, constraints_path, name=name, art_path=art_path)
    head = list(header) or [f"Converted by mapper.timeloop.write_arch from {arch_path}",
                            f"with the energy table {ert_path}"
                            + (f" and the constraints {constraints_path}." if constraints_path else ".")]
    text = arch_yaml(arch, unsupported, head)
    parse_arch(yaml.safe_load(text), str(out_path))
    write_text(out_path, text)
    return unsupported


# ---------------------------------------------------------------------------------------
# Mappings

def is_timeloop_mapping(data: Any) -> bool:
    """True for a parsed Timeloop mapping (`mapping:` a list of directives with targets),
    False for our mapping documents ({loops, keep} or a result document)."""
    if isinstance(data, dict) and "mapping" in data:
        data = data["mapping"]
    return isinstance(data, list) and bool(data) and all(isinstance(d, dict) and "target" in d for d in data)


def _timeloop_levels(arch: Arch) -> list[tuple[str, str, int | None, int | None]]:
    """Timeloop's levels for one of our archs: (timeloop name, kind, storage index, fan-out index),
    outermost first. kind is 'storage' or 'dummy'."""
    out: list[list] = []
    for i, level in enumerate(arch.levels):
        if isinstance(level, Storage):
            out.append([level.name, "storage", i, None])
        else:
            prev = arch.levels[i - 1] if i > 0 else None
            if isinstance(prev, Storage) and level.name == f"{prev.name}_spatial" and out and out[-1][3] is None:
                out[-1][3] = i
            else:
                out.append([level.name, "dummy", None, i])
    return [tuple(x) for x in out]


def _as_arch(arch: Arch | str | Path) -> Arch:
    return arch if isinstance(arch, Arch) else load_arch(arch)


def mapping_from_timeloop(data_or_path: Any, arch: Arch | str | Path, layer: Layer,
                          source: str | None = None) -> Mapping:
    """Read a Timeloop mapping (map.yaml: temporal, spatial and datatype/bypass directives per
    target level; a path or the parsed data) as our Mapping, checked against the layer and arch
    (`mapper.mapping.check`); every problem is a SpecError naming `source` (default: the path).

    Timeloop's defaults apply: missing factors are 1, missing permutation dimensions are
    appended outermost, a spatial directive without split is all-X, a storage level without a
    datatype directive keeps every tensor. A dummy level (a fan-out here) must keep nothing;
    its temporal factors, if any, are merged into the enclosing storage level's innermost loops
    (exact when no fan-out separates them, an error otherwise)."""
    arch = _as_arch(arch)
    data, src = _load(data_or_path, source or "mapping")
    if source:
        src = source
    if isinstance(data, dict):
        if "mapping" not in data:
            raise SpecError(src, "mapping", "missing required field (a Timeloop mapping file has a top-level "
                            "'mapping' list)")
        extra = [k for k in data if k != "mapping"]
        if extra:
            raise SpecError(src, extra[0], "unknown field in a Timeloop mapping file (expected only 'mapping')")
        data = data["mapping"]
    if not isinstance(data, list) or not data:
        raise SpecError(src, "mapping", "expected a non-empty list of directives")
    tl = _timeloop_levels(arch)
    by_name = {t[0]: t for t in tl}
    known = ("target", "type", "factors", "permutation", "split", "keep", "bypass")
    temporal: dict[str, tuple[dict, list[str], str]] = {}
    spatial: dict[str, tuple[dict, list[str], int, str]] = {}
    keep: dict[str, set[str]] = {}
    for i, d in enumerate(data):
        where = f"mapping[{i}]"
        d = _mapping_of(d, src, where)
        for k in d:
            if k not in known:
                raise SpecError(src, f"{where}.{k}", f"unsupported directive field{closest(k, known)}; "
                                f"supported: {', '.join(known)}")
        target = d.get("target")
        if target not in by_name:
            raise SpecError(src, f"{where}.target", f"no level '{target}' in arch {arch.name}"
                            f"{closest(str(target), by_name)}; Timeloop levels: {', '.join(by_name)}")
        kind = d.get("type")
        if kind not in ("temporal", "spatial", "datatype", "bypass"):
            raise SpecError(src, f"{where}.type", f"unsupported directive type {kind!r}; supported: temporal, "
                            "spatial, datatype, bypass")
        if kind in ("temporal", "spatial"):
            for k in ("keep", "bypass"):
                if k in d:
                    raise SpecError(src, f"{where}.{k}", f"a {kind} directive has no {k} list")
            factors = _parse_factors(d.get("factors", ""), src, f"{where}.factors")
            for dim, (f, res) in factors.items():
                if dim not in DIMS:
                    raise SpecError(src, f"{where}.factors", f"'{dim}' is not a dimension of layer {layer.name} "
                                    f"({', '.join(DIMS)})")
                if res is not None and res != f:
                    raise SpecError(src, f"{where}.factors", f"imperfect factor {dim}{f},{res} is not supported")
            factors = {dim: (f if f else layer.dims[dim]) for dim, (f, _) in factors.items()}
            perm = _parse_permutation(d.get("permutation"), src, f"{where}.permutation")
            for p in perm:
                if p not in DIMS:
                    raise SpecError(src, f"{where}.permutation", f"'{p}' is not a dimension ({', '.join(DIMS)})")
            perm += [x for x in TIMELOOP_DIMS + ("G",) if x not in perm]     # Timeloop pads outermost
            if kind == "temporal":
                if "split" in d:
                    raise SpecError(src, f"{where}.split", "split belongs to spatial directives")
                if target in temporal:
                    raise SpecError(src, where, f"a second temporal directive for {target} "
                                    f"(first at {temporal[target][2]})")
                temporal[target] = (factors, perm, where)
            else:
                split = d.get("split")
                split = len(perm) if split is None else as_int(split, src, f"{where}.split", 0)
                if target in spatial:
                    raise SpecError(src, where, f"a second spatial directive for {target} "
                                    f"(first at {spatial[target][3]})")
                spatial[target] = (factors, perm, split, where)
        else:
            for k in ("factors", "permutation", "split"):
                if k in d:
                    raise SpecError(src, f"{where}.{k}", f"a {kind} directive has no {k}")
            kept = set(keep.get(target, set(TENSORS)))
            for k, action in (("keep", kept.add), ("bypass", kept.discard)):
                for t in _list_of(d.get(k), src, f"{where}.{k}"):
                    if t not in TENSORS:
                        raise SpecError(src, f"{where}.{k}", f"'{t}' is not a data space{closest(str(t), TENSORS)}")
                    action(t)
            keep[target] = kept

    loops: list[Loop] = []
    for name, kind, _, fi in tl:
        factors, perm, where = temporal.get(name, ({}, list(TIMELOOP_DIMS), "(none)"))
        inner_first = [(x, factors.get(x, 1)) for x in perm]
        if kind == "storage":
            for x, f in reversed(inner_first):
                loops.append(Loop(name, x, f))
        else:
            busy = [(x, f) for x, f in inner_first if f > 1]
            if busy:
                # Temporal loops at a dummy level sit right inside the enclosing storage level's
                # own loops when no fan-out separates them: merge them there.
                prev = arch.levels[fi - 1] if fi else None
                if not isinstance(prev, Storage):
                    raise SpecError(src, where, f"temporal factors {' '.join(f'{x}{f}' for x, f in busy)} at "
                                    f"{name}: a dummy level between two fan-outs has no equivalent")
                for x, f in reversed(busy):
                    loops.append(Loop(prev.name, x, f))
            if keep.get(name):
                raise SpecError(src, "mapping", f"{name} keeps {', '.join(sorted(keep[name]))}, but it is a "
                                "dummy level (a fan-out here) that holds nothing; bypass every tensor there")
        if name in spatial:
            factors, perm, split, where = spatial[name]
            busy = [(x, factors.get(x, 1), "X" if k < split else "Y") for k, x in enumerate(perm)]
            if fi is None:
                if any(f > 1 for _, f, _ in busy):
                    raise SpecError(src, where, f"spatial factors at {name}, which has no fan-out below it in "
                                    f"arch {arch.name}")
            else:
                fan = arch.levels[fi]
                for axis in ("X", "Y"):
                    for x, f, a in reversed(busy):
                        if a == axis:
                            loops.append(Loop(fan.name, x, f, axis))
    # storage targets carry our level names (see _timeloop_levels); check() below also
    # reports factors that do not multiply to the layer's dimensions
    mapping = normalize(loops, arch, {n: sorted(keep.get(n, set(TENSORS)), key=TENSORS.index)
                                      for n, kind, _, _ in tl if kind == "storage"})
    check(mapping, layer, arch, src)
    return mapping


def _dims_for(mapping: Mapping, dims: Sequence[str] | None) -> tuple[str, ...]:
    if dims is None:
        dims = TIMELOOP_DIMS + (("G",) if any(l.dim == "G" for l in mapping.loops) else ())
    dims = tuple(dims)
    for l in mapping.loops:
        if l.dim not in dims:
            raise MapperError(f"mapping has a {l.dim} loop (factor {l.factor}) but the Timeloop problem's "
                              f"dimensions are {', '.join(dims)}")
    return dims


def mapping_to_timeloop(mapping: Mapping, arch: Arch | str | Path, dims: Sequence[str] | None = None) -> dict:
    """Our Mapping as a Timeloop mapping ({'mapping': [directives]}) for timeloop-model: a datatype
    directive for every storage level, one temporal directive per level with every dimension's
    factor and a full permutation (innermost first), one spatial directive per fan-out with split.

    `dims`: the Timeloop problem's dimensions (default C M R S N P Q, plus G if the mapping
    uses it; pass `problem_dims(path)` for a problem file that lists G)."""
    arch = _as_arch(arch)
    dims = _dims_for(mapping, dims)
    modes = [f"{fan}: {', '.join(f'{t} {m}' for t, m in ms)}" for fan, ms in getattr(mapping, "network", ()) if ms]
    if modes:
        raise MapperError(f"the mapping chooses network modes ({'; '.join(modes)}), which a Timeloop "
                          "mapping cannot express")
    tl = _timeloop_levels(arch)
    datatype, tiling = [], []
    for name, kind, si, fi in reversed(tl):
        if kind == "storage":
            kept = list(mapping.kept(name))
            datatype.append({"target": name, "type": "datatype", "keep": kept,
                             "bypass": [t for t in TENSORS if t not in kept]})
            mine = [l for l in mapping.loops if l.level == name]
        else:
            datatype.append({"target": name, "type": "datatype", "keep": [], "bypass": list(TENSORS)})
            mine = []
        factors = {d: 1 for d in dims}
        for l in mine:
            factors[l.dim] *= l.factor
        order = []
        for l in reversed(mine):          # innermost first
            if l.dim not in order:
                order.append(l.dim)
        if len(order) != len(mine):
            raise MapperError(f"level {name} has two temporal loops over one dimension; Timeloop allows one")
        order += [d for d in dims if d not in order]
        tiling.append({"target": name, "type": "temporal",
                       "factors": " ".join(f"{d}{factors[d]}" for d in dims), "permutation": "".join(order)})
        if fi is not None:
            fan = arch.levels[fi]
            sl = [l for l in mapping.loops if l.level == fan.name]
            xs = [l for l in reversed(sl) if l.spatial == "X"]
            ys = [l for l in reversed(sl) if l.spatial == "Y"]
            if len({l.dim for l in xs}) != len(xs) or len({l.dim for l in ys}) != len(ys) or \
                    {l.dim for l in xs} & {l.dim for l in ys}:
                raise MapperError(f"fan-out {fan.name} unrolls one dimension twice; Timeloop's spatial "
                                  "directive has one factor per dimension")
            sf = {d: 1 for d in dims}
            for l in sl:
                sf[l.dim] *= l.factor
            perm = [l.dim for l in xs] + [l.dim for l in ys]
            perm += [d for d in dims if d not in perm]
            tiling.append({"target": name, "type": "spatial",
                           "factors": " ".join(f"{d}{sf[d]}" for d in dims), "permutation": "".join(perm),
                           "split": len(xs)})
    return {"mapping": datatype + tiling}


def mapping_yaml(data: dict, header: Sequence[str] = ()) -> str:
    """Timeloop map.yaml text for mapping_to_timeloop's output (block style, as Timeloop writes it)."""
    lines = []
    for h in header:
        lines += _comment(h)
    body = yaml.safe_dump(data, default_flow_style=False, sort_keys=False, width=1 << 30)
    return "\n".join(lines + [body.rstrip("\n")]) + "\n"


def read_results(result_json_path: str | Path, layer: str | None = None) -> list[dict]:
    """The result documents of a file from `mapper evaluate/search --json` (one, or a
    whole network's list): the one of `layer` if given, else the best of each layer."""
    from .result import select_results
    src = str(result_json_path)
    data = load_json(result_json_path, "result document")
    return select_results(data, src, layer)


def export_result(result_json_path: str | Path, out_path: str | Path, arch: Arch | str | Path | None = None,
                  dims: Sequence[str] | None = None, layer: str | None = None, doc: dict | None = None) -> dict:
    """Write the Timeloop map.yaml of the mapping in one of our result documents (from
    `mapper evaluate/search --json`; `layer` picks one of a whole network's, `doc` gives
    it already read); `arch` defaults to the one the document names. Returns the Timeloop
    mapping dict."""
    from .result import result_layer, write_text
    src = str(result_json_path)
    if doc is None:
        docs = read_results(result_json_path, layer)
        if len(docs) > 1:
            names = ", ".join(str(result_layer(d)) for d in docs)
            raise SpecError(src, "", f"holds results for {len(docs)} layers ({names}): give --layer, or -o a "
                            "folder for one map per layer")
        doc = docs[0]
    if not isinstance(doc, dict) or "mapping" not in doc:
        raise SpecError(src, "mapping", "missing required field (expected a result document from "
                        "`mapper evaluate` or `mapper search`)")
    arch_name = doc["arch"].get("name") if isinstance(doc.get("arch"), dict) else None
    if arch is None and not arch_name:
        raise SpecError(src, "arch.name", "cannot tell the arch; give --arch")
    if arch is None:
        # never open a path taken from the document: only a built-in arch is found by name
        from .spec import builtins
        if not isinstance(arch_name, str) or arch_name not in builtins("arch"):
            raise SpecError(src, "arch.name", f"'{clip(arch_name)}' is not a built-in arch; give --arch "
                            "with the arch file the result is for")
    arch = _as_arch(arch if arch is not None else arch_name)
    if arch_name and arch_name != arch.name:
        raise SpecError(src, "arch.name", f"the result is for arch '{arch_name}', not '{arch.name}'")
    mapping = parse_mapping(doc, arch, src)
    layer = doc.get("layer") or {}
    ldims = layer.get("dims")
    if isinstance(ldims, dict):
        product = {d: 1 for d in DIMS}
        for l in mapping.loops:
            product[l.dim] *= l.factor
        for d in DIMS:
            if d in ldims and product[d] != ldims[d]:
                raise SpecError(src, "mapping", f"factors of {d} multiply to {product[d]} but layer "
                                f"{layer.get('name')} has {d} = {ldims[d]}")
        if dims is None and ldims.get("G", 1) > 1:
            dims = TIMELOOP_DIMS + ("G",)
    data = mapping_to_timeloop(mapping, arch, dims)
    cost = doc.get("cost") or {}
    head = [f"Timeloop mapping exported by mapper from {src}",
            f"layer {layer.get('name')}, arch {arch.name}"
            + (f": our model's energy {cost['energy_pj']:.6g} pJ, {cost.get('cycles')} cycles"
               if "energy_pj" in cost else ""),
            "Check with: timeloop-model ARCH.yaml PROBLEM.yaml THIS_FILE ERT.yaml [ART.yaml]"]
    write_text(out_path, mapping_yaml(data, head))
    return data
