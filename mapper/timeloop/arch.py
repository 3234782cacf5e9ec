"""Timeloop architectures (with their Accelergy energy table and constraints) as our
architecture files (conventions: mapper.timeloop)."""
from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml

from ..arch import parse_arch
from ..problem import DIMS, TENSORS
from ..spec import SpecError, as_int, closest, load_yaml
from .common import (_check_version, _comment, _flow, _list_of, _mapping_of, _number, _parse_factors,
                     _parse_permutation, _path_parts, _section, _split_range, _strip_ranges)

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


@dataclass(frozen=True, eq=False)
class _Component:
    """One `local` component of the tree, with where it sits and what it says."""

    full: str                # its path, e.g. 'system.PE[0..167].mac'
    cls: str                 # its class
    attrs: dict              # its attributes with those inherited from enclosing subtrees
    own: dict                # its own attributes only
    instances: int
    where: str               # the field path in the file, for errors
    extra: dict              # its other fields (required_actions, enabled, ...)

    @property
    def base(self) -> str:
        """Its name without path or instance range ('mac')."""
        return _split_range(_path_parts(self.full)[-1])[0]

    @property
    def kind(self) -> str:
        """dummy, storage, compute, network or unknown, from the class name as Timeloop tells them."""
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


def _read_tree(arch_path: str | Path, unsupported: list[str]) -> tuple[str, list[_Component], dict[str, list[tuple[str, Any]]]]:
    """(source name, components, subtree attributes) of a Timeloop architecture file: its
    version checked, the node-list format refused, sections other than the tree noted."""
    src = str(arch_path)
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
    return src, comps, tree_attrs


def _clock_mhz(tree_attrs: dict[str, list[tuple[str, Any]]], src: str) -> float:
    """The clock from the tree's global_cycle_seconds (the last one given; Timeloop's default 1 GHz)."""
    cycle = None
    for sub, value in tree_attrs.get("global_cycle_seconds", []):
        cycle = _number(value, src, f"architecture ({sub}).attributes.global_cycle_seconds")
    return round(1e-6 / cycle, 6) if cycle else 1000.0


def _levels_and_mac(comps: list[_Component], src: str, unsupported: list[str]) -> tuple[list[_Component], _Component]:
    """The storage (and dummy) levels outermost first and the one compute component, after
    checking that the tree is a chain of storage levels ending in the MACs (networks noted)."""
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
    return storages, computes[0]


def _note_unused_attributes(tree_attrs: dict[str, list[tuple[str, Any]]], chain: list[_Component],
                            unsupported: list[str]) -> None:
    """Note every attribute (of a subtree or a component) we do not use, aggregated by name with its reason."""
    unused: "OrderedDict[str, list[str]]" = OrderedDict()
    for key, owners in tree_attrs.items():
        if key != "global_cycle_seconds":
            unused.setdefault(key, []).extend(f"{_split_range(o)[0]}={v}" for o, v in owners)
    for c in chain:
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


def _mesh(c: _Component, src: str) -> tuple[int, int]:
    """(meshX, meshY) of a component: given, or completed from its instances (default instances x 1)."""
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


def _fanouts(chain: list[_Component], meshes: list[tuple[int, int]], src: str) -> list[tuple[int, int] | None]:
    """The fan-out {X, Y} below each level of the chain (the growth of its mesh), None where it
    does not grow (a dummy level always gets one, so that every Timeloop level has a counterpart)."""
    fanouts: list[tuple[int, int] | None] = []
    for i in range(len(chain) - 1):
        (ox, oy), (ix, iy) = meshes[i], meshes[i + 1]
        if ix % ox or iy % oy or chain[i + 1].instances % chain[i].instances:
            raise SpecError(src, chain[i + 1].where, f"'{chain[i + 1].full}' ({ix} x {iy}) is not a whole "
                            f"fan-out of '{chain[i].full}' ({ox} x {oy})")
        fx, fy = ix // ox, iy // oy
        fanouts.append((fx, fy) if fx * fy > 1 or chain[i].kind == "dummy" else None)
    return fanouts


def _constraints_by_target(constraints_path: str | Path | None, storages: list[_Component], src: str,
                           unsupported: list[str]) -> tuple[dict[str, list[dict]], str]:
    """The constraints file's directives grouped by target level name (every target must be a level)."""
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
    return by_target, csrc


def _forced(e: dict, csrc: str) -> tuple[set[str], list[str]]:
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


@dataclass(frozen=True)
class _LevelConstraints:
    """What one level's constraint directives say (None: no directive of that kind)."""

    keep: set[str] | None = None              # tensors a bypass/datatype directive keeps
    bypass: set[str] | None = None            # tensors it bypasses
    temporal_dims: tuple[str, ...] | None = None   # dims its temporal directives leave free
    spatial: dict | None = None               # its spatial directive


def _level_constraints(c: _Component, cons: list[dict], levels: list[dict], csrc: str,
                       unsupported: list[str]) -> _LevelConstraints:
    """Read one level's constraint directives (`levels`: those converted so far, for a dummy
    level's temporal loops) and note what they ask that is not enforced."""
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
            ones, fixed = _forced(e, csrc)
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
    return _LevelConstraints(keep_c, bypass_c, t_dims, s_entry)


def _word_layout(c: _Component, src: str) -> tuple[int, Any, int]:
    """(datawidth in bits, width as given, words per access) of a storage component: an access
    moves block_size words, else width / datawidth, else one."""
    a = c.attrs
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
    return dw, width, block


def _storage_energies(entry: dict[str, list[float]], c: _Component, ert_src: str,
                      unsupported: list[str]) -> tuple[float, float, float, float]:
    """(read, write, update, leak) energies per access of a storage component from its ERT entry
    (update defaults to write, leak to 0); other actions noted."""
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
    return e_read, e_write, e_update, e_leak


def _storage_level(c: _Component, idx: int, cons: _LevelConstraints, mesh: tuple[int, int], tables: dict,
                   ert_src: str, src: str, csrc: str, unsupported: list[str]) -> dict[str, Any]:
    """One real storage level (the idx-th, outermost first) as our level dict: keeps, capacity
    in words, energy per word from the ERT, bandwidth, temporal_dims, leakage, with notes."""
    a = c.attrs
    entry = _ert_entry(tables, c, ert_src)
    dw, width, block = _word_layout(c, src)
    e_read, e_write, e_update, e_leak = _storage_energies(entry, c, ert_src, unsupported)
    level: dict[str, Any] = {"name": c.base}
    keeps = [t for t in TENSORS if cons.bypass is None or t not in cons.bypass]
    if idx == 0:
        if cons.bypass:
            raise SpecError(csrc, "targets", f"the outermost level {c.base} must keep every tensor "
                            f"(it bypasses {', '.join(sorted(cons.bypass))})")
        keeps = list(TENSORS)
    level["keeps"] = keeps
    if idx > 0:
        may = [t for t in keeps if cons.keep is None or t not in cons.keep]
        if may:
            level["may_bypass"] = may
    notes = [f"{c.full} ({c.cls}), {c.instances} instance(s) as {mesh[0]} x {mesh[1]}."]
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
    if cons.temporal_dims is not None and idx > 0:
        level["temporal_dims"] = list(cons.temporal_dims)
        notes.append("temporal_dims: the dimensions its temporal factors constraint leaves free.")
    level["word_bits"] = dw
    if e_leak:
        level["leakage"] = e_leak
        notes.append(f"leakage = ERT leak {e_leak:g} pJ per cycle per instance.")
    if cons.keep is not None or cons.bypass is not None:
        notes.append("keeps / may_bypass from the bypass constraint.")
    level["notes"] = " ".join(notes)
    return level


def _fanout_level(c: _Component, nxt: _Component, fan: tuple[int, int] | None, s_entry: dict | None,
                  meshes: tuple[tuple[int, int], tuple[int, int]], csrc: str,
                  unsupported: list[str]) -> dict[str, Any] | None:
    """The fan-out below level `c` (towards `nxt`) as our level dict, its spatial_dims from the
    spatial constraint; None when there is no fan-out there (a spatial constraint is then noted)."""
    if fan is None:
        if s_entry is not None:
            ones, _ = _forced(s_entry, csrc)
            if any(d not in ones for d in DIMS):
                unsupported.append(f"constraint {s_entry['_where']}: spatial at {c.base}, which has no fan-out "
                                   "below it (ignored)")
        return None
    fx, fy = fan
    xd = list(DIMS) if fx > 1 else []
    yd = list(DIMS) if fy > 1 else []
    fnotes = []
    if s_entry is not None:
        where = s_entry["_where"]
        ones, fixed = _forced(s_entry, csrc)
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
    (ox, oy), (ix, iy) = meshes
    fnotes.insert(0, f"Timeloop's spatial loops at {c.base}: {c.full} -> {nxt.full}, meshX "
                  f"{ox} -> {ix}, meshY {oy} -> {iy}.")
    if c.kind == "dummy" and fx * fy == 1:
        fnotes.append("A dummy level with no fan-out below it: kept as a 1 x 1 fan-out so that exported "
                      "mappings name it.")
    fnotes.append("multicast exact: Timeloop credits identical child tiles within one spatial level.")
    return {"name": fname, "fanout": {"X": fx, "Y": fy}, "spatial_dims": {"X": xd, "Y": yd},
            "multicast": "exact", "reduction": True, "notes": " ".join(fnotes)}


def _mac_energy(mac: _Component, tables: dict, ert_src: str, unsupported: list[str]) -> float:
    """Energy of one MAC from the ERT (compute, mac_random or multiply_add); other actions noted."""
    entry = _ert_entry(tables, mac, ert_src)
    e_mac = _action(entry, ("compute", "mac_random", "multiply_add"), mac, ert_src, unsupported)
    for act, values in entry.items():
        if act == "leak" and max(values) > 0:
            unsupported.append(f"ERT {mac.full} leak {max(values):g} pJ/cycle: MAC leakage is not modelled "
                               "(timeloop-model does not charge it either)")
        elif act not in ("compute", "mac_random", "multiply_add", "leak"):
            unsupported.append(f"ERT {mac.full} action '{act}': no equivalent (ignored)")
    return e_mac


def _note_unmatched_tables(tables: dict, comps: list[_Component], art_path: str | Path | None,
                           unsupported: list[str]) -> None:
    """Note ERT entries no component matches, and the area table (there is no area model)."""
    for t in tables:
        if not any(t == c.full or _strip_ranges(t) == _strip_ranges(c.full) for c in comps):
            unsupported.append(f"ERT entry {t}: no such component in the architecture (ignored)")
    if art_path is not None:
        art = _mapping_of(load_yaml(art_path), str(art_path), "")
        n = len(_list_of(_mapping_of(art.get("ART", {}), str(art_path), "ART").get("tables"), str(art_path), "ART.tables"))
        unsupported.append(f"ART {art_path}: areas of {n} components are not modelled (no area model)")


def arch_from_timeloop(arch_path: str | Path, ert_path: str | Path, constraints_path: str | Path | None = None,
                       name: str | None = None, art_path: str | Path | None = None) -> tuple[dict, list[str]]:
    """A Timeloop architecture (v0.4 processed `subtree`/`local` tree, or v0.3) with its Accelergy
    energy table (ERT) and optional constraints, as our architecture-file structure.

    Returns (arch dict, unsupported): `unsupported` names every part of the inputs that has no
    equivalent here (attribute, constraint, ERT action, area table) and was therefore not converted.
    Each level of the dict carries `notes` saying where its numbers come from.
    """
    unsupported: list[str] = []
    src, comps, tree_attrs = _read_tree(arch_path, unsupported)
    tables, ert_src = _load_ert(ert_path)
    clock_mhz = _clock_mhz(tree_attrs, src)
    storages, mac = _levels_and_mac(comps, src, unsupported)
    chain = storages + [mac]
    _note_unused_attributes(tree_attrs, chain, unsupported)
    meshes = [_mesh(c, src) for c in chain]
    fanouts = _fanouts(chain, meshes, src)
    by_target, csrc = _constraints_by_target(constraints_path, storages, src, unsupported)

    levels: list[dict] = []
    for idx, c in enumerate(storages):       # each level, then the fan-out below it (the last: to the MACs)
        cons = _level_constraints(c, by_target.get(c.base, []), levels, csrc, unsupported)
        if c.kind != "dummy":
            levels.append(_storage_level(c, idx, cons, meshes[idx], tables, ert_src, src, csrc, unsupported))
        elif cons.keep:
            raise SpecError(csrc, "targets", f"dummy level {c.base} cannot keep {', '.join(sorted(cons.keep))}")
        fan = _fanout_level(c, chain[idx + 1], fanouts[idx], cons.spatial, (meshes[idx], meshes[idx + 1]), csrc,
                            unsupported)
        if fan is not None:
            levels.append(fan)

    e_mac = _mac_energy(mac, tables, ert_src, unsupported)
    _note_unmatched_tables(tables, comps, art_path, unsupported)
    word_bits = next((level["word_bits"] for level in levels if level.get("word_bits")), None)
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
    from ..result import write_text
    arch, unsupported = arch_from_timeloop(arch_path, ert_path, constraints_path, name=name, art_path=art_path)
    head = list(header) or [f"Converted by mapper.timeloop.write_arch from {arch_path}",
                            f"with the energy table {ert_path}"
                            + (f" and the constraints {constraints_path}." if constraints_path else ".")]
    text = arch_yaml(arch, unsupported, head)
    parse_arch(yaml.safe_load(text), str(out_path))
    write_text(out_path, text)
    return unsupported
