"""Timeloop's Eyeriss-like example and what timeloop-model printed for it, as Python data.

The facts come from timeloop-accelergy-exercises@2d55108, example_designs/eyeriss_like
(the v0.4 architecture, its energy and area tables, its constraints, ten layer problems,
and two mappings with the timeloop-model statistics printed for them). They are written
here as numbers, and `write_reference(folder)` writes them in Timeloop's input format, so
the tests need no file outside the repository.
"""
from __future__ import annotations

from pathlib import Path

import yaml

# -- architecture (v0.4 tree: one subtree, components listed outermost first) --------------
# Attributes every storage component of the example carries (the converter reports most of
# them as unsupported, by name).
_COMMON = {"has_power_gating": False, "n_banks": 2, "cluster_size": 1, "reduction_supported": True,
           "multiple_buffering": 1, "min_utilization": 0, "allow_overbooking": False}
_RF = {"width": 16, "datawidth": 8, "read_bandwidth": 2, "write_bandwidth": 2, "technology": "32nm"}
_DUMMY = {"width": 1, "depth": 1, "datawidth": 1, "technology": -1}
# name, instances, class, (meshX, meshY), attributes besides _COMMON
COMPONENTS = [
    ("DRAM", 1, "DRAM", (1, 1), {"type": "LPDDR4", "width": 64, "datawidth": 8}),
    ("shared_glb", 1, "smartbuffer_SRAM", (1, 1),
     {"depth": 16384, "width": 64, "n_banks": 32, "datawidth": 8, "read_bandwidth": 16, "write_bandwidth": 16,
      "technology": "32nm"}),
    ("inter_PE_column_spatial", 1, "dummy_storage", (1, 1), _DUMMY),
    ("inter_PE_spatial", 14, "dummy_storage", (14, 1), _DUMMY),
    ("ifmap_spad", 168, "smartbuffer_RF", (14, 12), {"depth": 12, **_RF}),
    ("weights_spad", 168, "smartbuffer_RF", (14, 12), {"depth": 192, **_RF}),
    ("psum_spad", 168, "smartbuffer_RF", (14, 12), {"depth": 16, **_RF, "update_fifo_depth": 2, "datawidth": 16}),
]
MAC = ("mac", 168, "intmac", (14, 12), {"multiplier_width": 8, "adder_width": 16, "technology": "32nm"})
TOP = "system_top_level"


def arch_tree() -> dict:
    local = []
    for name, n, cls, (mx, my), attrs in COMPONENTS:
        comp = {"name": f"{name}[1..{n}]", "class": cls,
                "attributes": {**attrs, **{k: v for k, v in _COMMON.items() if k not in attrs},
                               "meshX": mx, "meshY": my, "power_gated_at": None}}
        if cls != "dummy_storage":
            comp["required_actions"] = ["leak", "write", "read", "update"]
        local.append({**comp, "enabled": True})
    name, n, cls, (mx, my), attrs = MAC
    local.append({"name": f"{name}[1..{n}]", "class": cls,
                  "attributes": {**attrs, "has_power_gating": False, "meshX": mx, "meshY": my, "power_gated_at": None},
                  "required_actions": ["compute"], "enabled": True})
    return {"architecture": {"version": "0.4", "subtree": [{
        "name": TOP, "attributes": {"version": "0.4", "technology": "SET ME", "global_cycle_seconds": 1e-9,
                                    "has_power_gating": False, "power_gated_at": None},
        "local": local}]}}


# -- energy per action (pJ per vector access) and area, by component -------------------------
ERT = {
    "DRAM": {"leak": 0.0, "write": 512.0, "read": 512.0, "update": 512.0},
    "shared_glb": {"write": 14.137929, "read": 18.183829, "leak": 0.005652, "update": 14.137929},
    "ifmap_spad": {"write": 0.176713, "read": 0.202442, "leak": 0.000101, "update": 0.176713},
    "weights_spad": {"write": 1.881657, "read": 1.976602, "leak": 0.001592, "update": 1.881657},
    "psum_spad": {"write": 0.2191, "read": 0.2513, "leak": 0.000134, "update": 0.2191},
    "mac": {"compute": 0.207692, "leak": 0.002374},
}
ART = {"DRAM": 0.0, "inter_PE_column_spatial": 1.0, "inter_PE_spatial": 1.0, "shared_glb": 217363.36892,
       "ifmap_spad": 70.091961, "weights_spad": 5816.44278, "psum_spad": 123.627348, "mac": 191.82}


def _instances(name: str) -> int:
    return next(n for c, n, *_ in COMPONENTS + [MAC] if c == name)


def ert_tree() -> dict:
    return {"ERT": {"version": "0.4", "tables": [
        {"name": f"{TOP}.{name}[1..{_instances(name)}]",
         "actions": [{"name": a, "arguments": {}, "energy": e} for a, e in actions.items()]}
        for name, actions in ERT.items()]}}


def art_tree() -> dict:
    return {"ART": {"version": "0.4", "tables": [{"name": f"{TOP}.{name}[1..{_instances(name)}]", "area": a}
                                                 for name, a in ART.items()]}}


# -- constraints: (target, type, content) --------------------------------------------------
CONSTRAINTS = [
    ("DRAM", "temporal", {"permutation": "N"}),
    ("shared_glb", "bypass", {"keep": ["Inputs", "Outputs"], "bypass": ["Weights"]}),
    ("shared_glb", "temporal", {"permutation": "N"}),
    ("inter_PE_column_spatial", "spatial", {"factors": "N=1,C=1,P=1,R=1,S=1", "permutation": "NCPRSQM", "split": 999}),
    ("inter_PE_column_spatial", "temporal", {"factors": "C=1,M=1,R=1,S=1,N=1,P=1,Q=1", "permutation": "CMRSNPQ"}),
    ("inter_PE_column_spatial", "bypass", {"bypass": ["Weights", "Inputs", "Outputs"]}),
    ("inter_PE_spatial", "spatial", {"factors": "N=1,P=1,Q=1,R=1", "permutation": "NPQRSCM", "split": 0}),
    ("inter_PE_spatial", "temporal", {"factors": "C=1,M=1,R=1,S=1,N=1,P=1,Q=1", "permutation": "CMRSNPQ"}),
    ("inter_PE_spatial", "bypass", {"bypass": ["Weights", "Inputs", "Outputs"]}),
    ("ifmap_spad", "bypass", {"keep": ["Inputs"], "bypass": ["Weights", "Outputs"]}),
    ("ifmap_spad", "temporal", {"permutation": "NMCPQRS", "factors": "N=1,M=1,C=1,P=1,Q=1,R=1,S=1"}),
    ("weights_spad", "bypass", {"keep": ["Weights"], "bypass": ["Outputs", "Inputs"]}),
    ("weights_spad", "temporal", {"permutation": "NMPQSCR", "factors": "N=1,M=1,P=1,Q=1,S=1"}),
    ("psum_spad", "bypass", {"keep": ["Outputs"], "bypass": ["Weights", "Inputs"]}),
    ("psum_spad", "temporal", {"permutation": "NCPQRSM", "factors": "N=1,C=1,R=1,S=1,P=1,Q=1"}),
]


def constraints_tree() -> dict:
    return {"architecture_constraints": {"targets": [{"target": t, "type": k, **c} for t, k, c in CONSTRAINTS]},
            "mapspace": {"version": "0.4", "template": "uber"}}


# -- problems (CNN_Layer instances; ref_default_problem is the example's own, with its pads) --
_UNIT = {"Wstride": 1, "Hstride": 1, "Wdilation": 1, "Hdilation": 1}
PROBLEMS = {
    "alexnet_conv1": {"C": 3, "M": 96, "N": 1, "P": 55, "Q": 55, "R": 11, "S": 11, **_UNIT, "Wstride": 4, "Hstride": 4},
    "alexnet_conv2": {"C": 96, "M": 256, "N": 1, "P": 27, "Q": 27, "R": 5, "S": 5, **_UNIT},
    "alexnet_conv3": {"C": 256, "M": 384, "N": 1, "P": 13, "Q": 13, "R": 3, "S": 3, **_UNIT},
    "alexnet_conv4": {"C": 384, "M": 384, "N": 1, "P": 13, "Q": 13, "R": 3, "S": 3, **_UNIT},
    "alexnet_conv5": {"C": 384, "M": 256, "N": 1, "P": 13, "Q": 13, "R": 3, "S": 3, **_UNIT},
    "mobilenetv1_dw1": {"N": 1, "G": 32, "C": 1, "M": 1, "R": 3, "S": 3, "P": 112, "Q": 112, **_UNIT},
    "mobilenetv1_dw7": {"N": 1, "G": 512, "C": 1, "M": 1, "R": 3, "S": 3, "P": 14, "Q": 14, **_UNIT},
    "mobilenetv1_pw1": {"N": 1, "G": 1, "C": 32, "M": 64, "R": 1, "S": 1, "P": 112, "Q": 112, **_UNIT},
    "mobilenetv1_pw7": {"N": 1, "G": 1, "C": 512, "M": 512, "R": 1, "S": 1, "P": 14, "Q": 14, **_UNIT},
    "ref_default_problem": {"C": 3, "H": 224, "Hpad": 1, "M": 32, "N": 1, "P": 112, "Q": 112, "R": 3, "S": 3,
                            "W": 224, "Wpad": 1, **_UNIT, "Wstride": 2, "Hstride": 2, "densities": {}},
}
SHAPE_NAMES = {"ref_default_problem": "conv2D"}


def problem_tree(name: str) -> dict:
    inst = PROBLEMS[name]
    grouped = "G" in inst
    g = [[["G"]]] if grouped else []
    spaces = [
        {"name": "Weights", "projection": [[["C"]], [["M"]], [["R"]], [["S"]]] + g},
        {"name": "Inputs", "projection": [[["N"]], [["C"]], [["R", "Wdilation"], ["P", "Wstride"]],
                                          [["S", "Hdilation"], ["Q", "Hstride"]]] + g},
        {"name": "Outputs", "projection": [[["N"]], [["M"]], [["Q"]], [["P"]]] + g, "read_write": True},
    ]
    return {"problem": {"version": 0.4, "instance": dict(inst), "shape": {
        "name": SHAPE_NAMES.get(name, "CNN_Layer"),
        "coefficients": [{"name": c, "default": 1} for c in ("Wstride", "Hstride", "Wdilation", "Hdilation")],
        "data_spaces": spaces,
        "dimensions": ["C", "M", "R", "S", "N", "P", "Q"] + (["G"] if grouped else [])}}}


# -- the two reference mappings ------------------------------------------------------------
KEEP = [("psum_spad", ["Outputs"]), ("weights_spad", ["Weights"]), ("ifmap_spad", ["Inputs"]),
        ("inter_PE_spatial", []), ("inter_PE_column_spatial", []), ("shared_glb", ["Inputs", "Outputs"]),
        ("DRAM", ["Weights", "Inputs", "Outputs"])]
DIMS7 = "CMRSNPQ"
# example -> problem, and the loops innermost level first: (target, type, {dim: factor}, permutation, split)
EXAMPLES = {
    "alexnet_conv1": ("alexnet_conv1", [
        ("psum_spad", "temporal", {"M": 2}, "MCRSNPQ", None),
        ("weights_spad", "temporal", {"R": 11}, "RCMSNPQ", None),
        ("ifmap_spad", "temporal", {}, "CMRSNPQ", None),
        ("inter_PE_spatial", "spatial", {"M": 12}, "MCRSNPQ", 0),
        ("inter_PE_spatial", "temporal", {}, "CMRSNPQ", None),
        ("inter_PE_column_spatial", "spatial", {"Q": 11}, "QCMRSNP", 1),
        ("inter_PE_column_spatial", "temporal", {}, "CMRSNPQ", None),
        ("shared_glb", "temporal", {"C": 3, "P": 55}, "PCMRSNQ", None),
        ("DRAM", "temporal", {"M": 4, "S": 11, "Q": 5}, "SMQCRNP", None)]),
    "default_problem": ("ref_default_problem", [
        ("psum_spad", "temporal", {"M": 8}, "MCRSNPQ", None),
        ("weights_spad", "temporal", {"R": 3}, "RCMSNPQ", None),
        ("ifmap_spad", "temporal", {}, "CMRSNPQ", None),
        ("inter_PE_spatial", "spatial", {"C": 3, "S": 3}, "SCMRNPQ", 0),
        ("inter_PE_spatial", "temporal", {}, "CMRSNPQ", None),
        ("inter_PE_column_spatial", "spatial", {"Q": 14}, "QCMRSNP", 1),
        ("inter_PE_column_spatial", "temporal", {}, "CMRSNPQ", None),
        ("shared_glb", "temporal", {"P": 14, "Q": 4}, "QPCMRSN", None),
        ("DRAM", "temporal", {"M": 4, "P": 8, "Q": 2}, "MQPCRSN", None)]),
}


def mapping_tree(example: str) -> dict:
    out = [{"target": t, "type": "datatype", "keep": keep, "bypass": [x for x in ("Weights", "Inputs", "Outputs")
                                                                      if x not in keep]}
           for t, keep in KEEP]
    for target, kind, factors, perm, split in EXAMPLES[example][1]:
        d = {"target": target, "type": kind, "factors": " ".join(f"{x}{factors.get(x, 1)}" for x in DIMS7),
             "permutation": perm}
        if split is not None:
            d["split"] = split
        out.append(d)
    return {"mapping": out}


# -- what timeloop-model printed (timeloop-model.stats.txt of each example) -----------------
# Per storage level: vector block (words per access), leakage energy (total, pJ), and per
# tensor the per-instance scalar reads, fills, updates, utilized instances, utilized
# capacity (words) and energy (total, pJ). Then the MAC level and the summary.
_T = ("reads", "fills", "updates", "instances", "capacity", "energy_total")
STATS = {
    "alexnet_conv1": {
        "levels": {
            "psum_spad": (1, 14125.64, {"Outputs": (796400, 70400, 798600, 132, 2, 51550385.04)}),
            "weights_spad": (2, 167821.0, {"Weights": (798600, 14520, 0, 132, 22, 105985177.11)}),
            "ifmap_spad": (2, 10646.94, {"Inputs": (798600, 149820, 0, 132, 11, 12417591.31)}),
            "shared_glb": (8, 4513.69, {"Inputs": (1648020, 694620, 0, 1, 27921, 4973491.42),
                                        "Outputs": (9292800, 0, 9583200, 1, 14520, 38058160.92)}),
            "DRAM": (8, 0.0, {"Weights": (174240, 0, 0, 1, 34848, 11151360.0),
                              "Inputs": (694620, 0, 0, 1, 154587, 44455936.0),
                              "Outputs": (0, 0, 290400, 1, 290400, 18585600.0)}),
        },
        "mac": {"instances": 168, "utilized": 132, "computes": 105415200, "energy_total": 21893893.72},
        "cycles": 798600, "utilization_pct": 78.57, "energy_uj": 309.27, "computes": 105415200,
        "total_fj_per_compute": 2933.82},
    "default_problem": {
        "levels": {
            "psum_spad": (1, 1452.29, {"Outputs": (57344, 0, 86016, 126, 8, 4190338.25)}),
            "weights_spad": (2, 17254.12, {"Weights": (86016, 1536, 0, 126, 24, 10893306.24)}),
            "ifmap_spad": (2, 1094.64, {"Inputs": (86016, 10752, 0, 126, 3, 1216735.96)}),
            "shared_glb": (8, 486.16, {"Inputs": (1354752, 156600, 0, 1, 9831, 3356072.3),
                                       "Outputs": (0, 0, 401408, 1, 6272, 709384.73)}),
            "DRAM": (8, 0.0, {"Weights": (13824, 0, 0, 1, 864, 884736.0),
                              "Inputs": (156600, 0, 0, 1, 151875, 10022400.0),
                              "Outputs": (0, 0, 401408, 1, 401408, 25690112.0)}),
        },
        "mac": {"instances": 168, "utilized": 126, "computes": 10838016, "energy_total": 2250969.22},
        "cycles": 86016, "utilization_pct": 75.0, "energy_uj": 59.23, "computes": 10838016,
        "total_fj_per_compute": 5465.42},
}


def stats(example: str) -> dict:
    """The figures of one example as {levels: {name: {block, leakage_total, tensors: {t:
    {reads, fills, updates, instances, capacity, energy_total}}}}, mac: {...}, cycles, ...}."""
    s = STATS[example]
    levels = {name: {"block": block, "leakage_total": leak,
                     "tensors": {t: dict(zip(_T, v)) for t, v in tensors.items()}}
              for name, (block, leak, tensors) in s["levels"].items()}
    return {**s, "levels": levels}


def write_reference(folder: Path) -> Path:
    """Write the example in Timeloop's file layout under `folder`; returns `folder`."""
    def dump(path: Path, data: dict) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(data, sort_keys=False))

    dump(folder / "eyeriss_like.arch.yaml", arch_tree())
    dump(folder / "eyeriss_like.ERT.yaml", ert_tree())
    dump(folder / "eyeriss_like.ART.yaml", art_tree())
    dump(folder / "eyeriss_like.constraints.yaml", constraints_tree())
    for name in PROBLEMS:
        dump(folder / "problems" / f"{name}.yaml", problem_tree(name))
    for name in EXAMPLES:
        dump(folder / "examples" / name / "map.yaml", mapping_tree(name))
    return folder
