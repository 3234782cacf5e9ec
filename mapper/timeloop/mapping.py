"""Timeloop mappings (map.yaml) read as and written from our Mapping, and the export of
our result documents (conventions: mapper.timeloop)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import yaml

from ..arch import Arch, Storage, load_arch
from ..mapping import Loop, Mapping, check, normalize, parse_mapping
from ..problem import DIMS, TENSORS, Layer
from ..spec import MAX_DIM, Fields, MapperError, SpecError, as_int, as_number, clip, closest, load_json, short
from .common import TIMELOOP_DIMS, _comment, _list_of, _load, _mapping_of, _parse_factors, _parse_permutation


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
    temporal, spatial, keep = _directives(data, src, arch, layer, [t[0] for t in tl])
    loops = _loops(tl, arch, temporal, spatial, keep, src)
    # storage targets carry our level names (see _timeloop_levels); check() below also
    # reports factors that do not multiply to the layer's dimensions
    mapping = normalize(loops, arch, {n: sorted(keep.get(n, set(TENSORS)), key=TENSORS.index)
                                      for n, kind, _, _ in tl if kind == "storage"})
    check(mapping, layer, arch, src)
    return mapping


_Temporal = dict[str, tuple[dict[str, int], list[str], str]]              # target -> (factors, perm, where)
_Spatial = dict[str, tuple[dict[str, int], list[str], int, str]]          # target -> (factors, perm, split, where)


def _directives(data: list, src: str, arch: Arch, layer: Layer,
                levels: list[str]) -> tuple[_Temporal, _Spatial, dict[str, set[str]]]:
    """A Timeloop mapping's directives, checked, by target level: the temporal and the spatial
    directives (factors, permutation innermost first and padded, split) and the tensors kept."""
    known = ("target", "type", "factors", "permutation", "split", "keep", "bypass")
    temporal: _Temporal = {}
    spatial: _Spatial = {}
    keep: dict[str, set[str]] = {}
    for i, d in enumerate(data):
        where = f"mapping[{i}]"
        d = _mapping_of(d, src, where)
        for k in d:
            if k not in known:
                raise SpecError(src, f"{where}.{k}", f"unsupported directive field{closest(k, known)}; "
                                f"supported: {', '.join(known)}")
        target = d.get("target")
        if target not in levels:
            raise SpecError(src, f"{where}.target", f"no level '{target}' in arch {arch.name}"
                            f"{closest(str(target), levels)}; Timeloop levels: {', '.join(levels)}")
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
    return temporal, spatial, keep


def _loops(tl: list[tuple[str, str, int | None, int | None]], arch: Arch, temporal: _Temporal, spatial: _Spatial,
           keep: dict[str, set[str]], src: str) -> list[Loop]:
    """Our loops, outermost first, for the directives of each Timeloop level (a dummy level's
    temporal factors merged into the enclosing storage level's innermost loops)."""
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
    return loops


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
    uses it; pass `problem_dims(path)` for a problem file that lists G). A mapping with
    remainders is written with its step counts, whose products exceed the layer's sizes, which
    timeloop-model rejects (result_to_timeloop refuses it before writing)."""
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
    from ..result import result_layer, select_results
    src = str(result_json_path)
    data = load_json(result_json_path, "result document")
    docs = select_results(data, src, layer)
    if layer is not None:
        # select_results passes a single document through whatever `layer` is (evaluate
        # checks it against that layer); exporting must not silently use another layer
        names = [result_layer(d) for d in docs]
        if any(n is not None and n != layer for n in names):
            listed = ", ".join(dict.fromkeys(n for n in names if n))
            raise MapperError(f"{src}: no result for layer {layer!r} (layers in the file: {listed})")
    return docs


def export_result(result_json_path: str | Path, out_path: str | Path, arch: Arch | str | Path | None = None,
                  dims: Sequence[str] | None = None, layer: str | None = None, doc: dict | None = None) -> dict:
    """Write the Timeloop map.yaml of the mapping in one of our result documents (from
    `mapper evaluate/search --json`; `layer` picks one of a whole network's, `doc` gives
    it already read); `arch` defaults to the one the document names. Returns the Timeloop
    mapping dict."""
    from ..result import write_text
    data, text = result_to_timeloop(result_json_path, arch, dims, layer, doc)
    write_text(out_path, text)
    return data


def result_to_timeloop(result_json_path: str | Path, arch: Arch | str | Path | None = None,
                       dims: Sequence[str] | None = None, layer: str | None = None,
                       doc: dict | None = None) -> tuple[dict, str]:
    """(Timeloop mapping dict, map.yaml text) of export_result, nothing written: a whole
    network's maps are all made before any is written."""
    from ..result import result_layer
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
        from ..spec import builtins
        if not isinstance(arch_name, str) or arch_name not in builtins("arch"):
            raise SpecError(src, "arch.name", f"'{clip(arch_name)}' is not a built-in arch; give --arch "
                            "with the arch file the result is for")
    arch = _as_arch(arch if arch is not None else arch_name)
    if arch_name and arch_name != arch.name:
        raise SpecError(src, "arch.name", f"the result is for arch '{arch_name}', not '{arch.name}'")
    mapping = parse_mapping(doc, arch, src)
    name, ldims = _layer_section(doc, src)
    energy, cycles = _cost_section(doc, src)
    if ldims is not None:
        product = mapping.dim_products()
        over = [f"{d} {product[d]} for {ldims[d]}" for d in DIMS
                if isinstance(ldims.get(d), int) and product[d] > ldims[d]]
        if over:
            # timeloop-model's mapping parser requires each dimension's factors to multiply
            # to the workload's size (NVlabs/timeloop#300); Ruby's residual form (P=4,3) is a
            # mapspace feature, and timeloop-model pads its partial passes (#328, #153).
            raise SpecError(src, "mapping", f"the mapping has remainders (factors multiply to {', '.join(over)}): "
                            "timeloop-model accepts only perfect factors in a mapping file, so no Timeloop "
                            "mapping is written")
        for d in DIMS:
            if d in ldims and product[d] != ldims[d]:
                raise SpecError(src, "mapping", f"factors of {d} multiply to {product[d]} but layer "
                                f"{name} has {d} = {ldims[d]}")
        if dims is None and ldims.get("G", 1) > 1:
            dims = TIMELOOP_DIMS + ("G",)
    try:
        data = mapping_to_timeloop(mapping, arch, dims)
    except MapperError as exc:      # name the file and the layer whose mapping Timeloop cannot express
        raise SpecError(src, f"layer {clip(str(name))}", str(exc)) from None
    head = [f"Timeloop mapping exported by mapper from {src}",
            f"layer {name}, arch {arch.name}"
            + (f": our model's energy {energy:.6g} pJ, {cycles} cycles" if energy is not None else ""),
            "Check with: timeloop-model ARCH.yaml PROBLEM.yaml THIS_FILE ERT.yaml [ART.yaml]"]
    return data, mapping_yaml(data, head)


def _layer_section(doc: dict, src: str) -> tuple[str | None, dict[str, int] | None]:
    """The name and dims of a result document's `layer` section, checked (None where the
    document has none: a hand-made one may give only the mapping). The export checks the
    mapping against these sizes and writes the name into map.yaml, so junk there would be
    compared as if it were sizes or printed as a comment line."""
    layer = doc.get("layer")
    if layer is None:
        return None, None
    # any field (a result document records type, stride, density, ...); name and dims are checked
    fields = Fields(layer, src, "layer", known=layer if isinstance(layer, dict) else ())
    name = None
    if fields.has("name"):
        if not isinstance(layer["name"], str):
            raise fields.error("name", f"expected a name, got {short(layer['name'])}")
        name = fields.name("name")
    if layer.get("dims") is None:
        return name, None
    dims = Fields(layer["dims"], src, "layer.dims", known=DIMS)
    return name, {d: as_int(v, src, dims.path(d), 1, MAX_DIM) for d, v in dims.data.items()}


def _cost_section(doc: dict, src: str) -> tuple[float | None, int | None]:
    """The energy and cycles of a result document's `cost` section (None if absent), checked:
    they go into map.yaml's header comment."""
    cost = doc.get("cost")
    if cost is None:
        return None, None
    fields = Fields(cost, src, "cost", known=cost if isinstance(cost, dict) else ())
    # a bound on the energy would refuse a document the search wrote; only its type is checked
    energy = as_number(cost["energy_pj"], src, fields.path("energy_pj"), 0.0, math.inf) \
        if fields.has("energy_pj") else None
    cycles = as_int(cost["cycles"], src, fields.path("cycles"), 0, 2 ** 63 - 1) if fields.has("cycles") else None
    return energy, cycles
