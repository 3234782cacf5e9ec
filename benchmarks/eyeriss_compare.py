"""Eyeriss v1 (scaled) vs v1.5 vs v2, dense and sparse, with and without an off-chip limit.

    python benchmarks/eyeriss_compare.py [--networks mobilenet_v1_050_128,alexnet]
        [--archs eyeriss_v1_scaled,eyeriss_v1_5,eyeriss_v2] [--conditions paper,ddr4]
        [--time-limit 5] [--objective edp] [--json OUT.json]

Every layer (layers of identical shape and density once) is searched on every arch, for
the dense network and for the problem file's `published` densities, under two stated
conditions:

* paper: no off-chip bandwidth limit, the condition of Eyeriss v2's headline (P1, JETCAS
  2019; reference/eyeriss_v2.md 1). The shipped arch files have no DRAM bandwidth.
* ddr4: one DDR4-3200 x64 channel, 3200 MT/s x 8 B = 25.6 GB/s, at the 200 MHz core clock
  128 B per cycle = 128 8-bit words per cycle, read and write together [D]. The paper also
  reports a DDR4-class result whose limit is not in our sources [U].

Printed per run: inferences/s at the arch's clock, chip inferences/J (the paper's way: on-chip
energy only, DRAM energy excluded; reference/eyeriss_v2.md 1) and total inferences/J; then the
ratios beside the paper's: v2 : v1 12.6x speed and 2.5x energy efficiency, v1.5 : v1 5.6x and
1.8x (the HM-NoC alone), sparse : dense on v2 1.2x and 1.3x, and 1470.6 inferences/s for
sparse MobileNet (0.5, 128) on v2. Energies are the arch files' units (one 16-bit 65 nm MAC
of the ISCA 2016 table, reported as pJ): they are NOT calibrated, so absolute inferences/J are
relative units and only the ratios compare with the paper's 2560.3 inferences/J.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from mapper.arch import Arch, load_arch, with_offchip_bandwidth  # noqa: E402
from mapper.problem import load_network  # noqa: E402
from mapper.search import search_network  # noqa: E402

#: Off-chip conditions: words per cycle read and written together (None: unlimited).
DDR4_WORDS_PER_CYCLE = 3200e6 * 8 / 200e6          # DDR4-3200 x64 at 200 MHz, 8-bit words
CONDITIONS = {"paper": None, "ddr4": DDR4_WORDS_PER_CYCLE}

STARVED = 5_000             # fewer candidates evaluated than this: the layer's result is flagged
HEADLINE_INF_S = 1470.6     # sparse MobileNet (0.5, 128) on v2, batch 1 [P] P1
HEADLINE_INF_J = 2560.3     # chip energy [P] P1
#: (faster arch, sparse?), (slower arch, sparse?), paper's speed and energy-efficiency ratios.
PAPER_RATIOS = [
    ("v2 : v1-scaled, both on the sparse model", ("eyeriss_v2", True), ("eyeriss_v1_scaled", True), 12.6, 2.5),
    ("v1.5 : v1-scaled, the HM-NoC alone", ("eyeriss_v1_5", True), ("eyeriss_v1_scaled", True), 5.6, 1.8),
    ("v2 sparse : v2 dense, sparsity", ("eyeriss_v2", True), ("eyeriss_v2", False), 1.2, 1.3),
    ("v2 : v1.5, SIMD + sparse PE [D: 12.6/5.6, 2.5/1.8]", ("eyeriss_v2", True), ("eyeriss_v1_5", True),
     12.6 / 5.6, 2.5 / 1.8),
]


def with_offchip(arch: Arch, words_per_cycle: float | None, condition: str) -> Arch:
    """The arch with its outermost level's bandwidth set (None: unlimited), named after the
    condition unless it is the paper's."""
    limited = with_offchip_bandwidth(arch, words_per_cycle)
    return limited if condition == "paper" else dataclasses.replace(limited, name=f"{arch.name}@{condition}")


def chip_energy(cost, arch: Arch) -> float:
    """On-chip energy (the paper's inferences/J leave DRAM out)."""
    return cost.chip_energy_pj


def run(network: str, arch_name: str, sparse: bool, condition: str, settings: dict, workers: int) -> dict:
    net = load_network(network)
    arch = with_offchip(load_arch(arch_name), CONDITIONS[condition], condition)
    preset = net.preset("published") if sparse else {}
    layers = [l.with_density(preset[l.name]) if l.name in preset else l for l in net.layers]
    start = time.monotonic()
    results = search_network(layers, arch, workers=workers, **settings)
    seconds = time.monotonic() - start
    energy = sum(r.best.cost.energy_pj for r in results)
    chip = sum(chip_energy(r.best.cost, arch) for r in results)
    cycles = sum(r.best.cost.cycles for r in results)
    latency = cycles / (arch.clock_mhz * 1e6)
    return {"network": net.name, "arch": arch.name.split("@")[0], "sparse": sparse, "condition": condition,
            "offchip_words_per_cycle": CONDITIONS[condition],
            "inf_per_s": 1 / latency, "chip_inf_per_j": 1 / (chip * 1e-12), "inf_per_j": 1 / (energy * 1e-12),
            "chip_energy_pj": chip, "energy_pj": energy, "cycles": cycles, "seconds": seconds,
            "optimal": sum(r.status == "optimal" for r in results), "n_layers": len(results),
            "layers": {r.layer.name: {"cycles": r.best.cost.cycles, "energy_pj": r.best.cost.energy_pj,
                                      "utilization": r.best.cost.utilization, "status": r.status,
                                      "bound_by": r.best.cost.bottleneck()[0], "evaluated": r.evaluated,
                                      "gap": r.gap} for r in results}}


def ratios(rows: list[dict], network: str, condition: str) -> list[str]:
    by = {(r["arch"], r["sparse"]): r for r in rows if r["network"] == network and r["condition"] == condition}
    out = []
    for label, fast, slow, speed, eff in PAPER_RATIOS:
        if fast not in by or slow not in by:
            continue
        a, b = by[fast], by[slow]
        s = a["inf_per_s"] / b["inf_per_s"]
        e = a["chip_inf_per_j"] / b["chip_inf_per_j"]
        paper = f"paper {speed:.1f}x, {eff:.1f}x" if network == "mobilenet_v1_050_128" else "paper: not in our sources"
        out.append(f"  {label:52s} speed {s:6.2f}x  chip energy eff. {e:5.2f}x   ({paper})")
    v2 = by.get(("eyeriss_v2", True))
    if v2 and network == "mobilenet_v1_050_128":
        out.append(f"  sparse v2: {v2['inf_per_s']:.1f} inf/s = {v2['inf_per_s'] / HEADLINE_INF_S:.2f} x the "
                   f"paper's {HEADLINE_INF_S} (goal: within 25%); chip {v2['chip_inf_per_j']:.1f} inf/J in "
                   f"uncalibrated units (paper {HEADLINE_INF_J})")
    return out


#: Why the v2 : v1-scaled speed ratio can stay below the paper's 12.6x with a spec that
#: follows the cited facts (printed after the ratios; see arch/eyeriss_v1_scaled.yaml).
V1_NOTES = (
    "v1-scaled is the best mapping our search finds for every layer under v1's row-stationary rules "
    "(Timeloop's eyeriss_like constraints, R11); the paper ran v1's own mapping through its flow, "
    "so our v1 is an optimistic comparator.",
    "its network bandwidth is a 64-bit bus per data type (8 iacts or weights, 3 psums per cycle at "
    "v2's precision) taken from Timeloop's v1 model; v1's real bus width is not in our sources [U], "
    "and the layers it binds (depthwise, FC, the last pointwise layers) scale with it.",
    "pointwise layers (about 95% of MobileNet's MACs) reuse each iact across the filters in the psum "
    "SPad and each weight across an output row, so that bus keeps them compute-bound on v1-scaled "
    "at the same 66.7% use as on v1.5 (12 rows, like 3-row PE clusters, hold at most 8 of a power-of-"
    "two channel count): the NoC only separates the two on depthwise, FC and conv1 layers here, "
    "while the paper's 5.6x from the NoC alone means v1 also starves on pointwise layers.",
    "cycles are bounded by average bandwidth (Eyexam step 6); stalls from instantaneous bandwidth "
    "(step 7) are not modelled on either chip.",
)


def layer_table(rows: list[dict], network: str, condition: str, sparse: bool = True) -> list[str]:
    """Per layer: cycles, utilization and what binds them (the cost's bottleneck: compute or
    the level / network whose bandwidth needs the most cycles) on every arch run."""
    runs = [r for r in rows if r["network"] == network and r["condition"] == condition and r["sparse"] == sparse]
    if len(runs) < 2:
        return []
    head = "  layer  " + "".join(f"{r['arch']:>40s}" for r in runs)
    out = [head]
    for name in runs[0]["layers"]:
        cells = []
        for r in runs:
            v = r["layers"][name]
            cells.append(f"{v['cycles']:>10,} {100 * v['utilization']:5.1f}% {v['bound_by'][:22]:>22s}")
        out.append(f"  {name:7s}" + "".join(f"{c:>40s}" for c in cells))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", default="mobilenet_v1_050_128,alexnet")
    ap.add_argument("--archs", default="eyeriss_v1_scaled,eyeriss_v1_5,eyeriss_v2")
    ap.add_argument("--conditions", default="paper,ddr4", help="paper (no off-chip limit) and/or ddr4")
    ap.add_argument("--time-limit", type=float, default=5.0, help="seconds per layer search")
    ap.add_argument("--objective", default="edp", choices=("energy", "delay", "edp"))
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", help="write every run (per layer too) to this file")
    args = ap.parse_args(argv)
    conditions = args.conditions.split(",")
    for c in conditions:
        if c not in CONDITIONS:
            ap.error(f"--conditions: unknown condition '{c}' (choose from {', '.join(CONDITIONS)})")
    settings = {"algorithm": "hybrid", "objective": args.objective, "time_limit": args.time_limit}
    print(f"conditions: paper = no off-chip limit; ddr4 = {DDR4_WORDS_PER_CYCLE:.0f} words/cycle "
          f"(DDR4-3200 x64 at 200 MHz). {args.time_limit:g} s per layer, objective {args.objective}.")
    print("inf/J: chip = on-chip energy only (the paper's way), total = with DRAM; uncalibrated units.")
    rows = []
    for network in args.networks.split(","):
        for condition in conditions:
            for arch_name in args.archs.split(","):
                for sparse in (False, True):
                    r = run(network, arch_name, sparse, condition, settings, args.workers)
                    rows.append(r)
                    low = sorted(r["layers"].items(), key=lambda kv: kv[1]["utilization"])[:3]
                    print(f"{r['network']:21s} {condition:5s} {r['arch']:17s} {'sparse' if sparse else 'dense':6s} "
                          f"{r['inf_per_s']:9.1f} inf/s  chip {r['chip_inf_per_j']:9.1f} inf/J  "
                          f"total {r['inf_per_j']:8.1f} inf/J  ({r['optimal']}/{r['n_layers']} optimal, "
                          f"{r['seconds']:.0f} s; lowest use: "
                          + ", ".join(f"{k} {100 * v['utilization']:.0f}% {v['bound_by']}" for k, v in low) + ")",
                          flush=True)
                    # A search that evaluated few candidates (a loaded machine, a slow start)
                    # may report a mapping far from the best: say so beside the numbers.
                    starved = [k for k, v in r["layers"].items() if v["evaluated"] < STARVED]
                    if starved:
                        print(f"  warning: fewer than {STARVED:,} candidates evaluated for {', '.join(starved)}; "
                              "their mappings may be far from the best (rerun with a longer --time-limit)")
    print()
    for network in dict.fromkeys(r["network"] for r in rows):
        for condition in conditions:
            print(f"{network}, condition {condition}:")
            for line in ratios(rows, network, condition):
                print(line)
            table = layer_table(rows, network, condition)
            if table:
                print("  per layer, sparse model: cycles, utilization, what binds the cycles")
                for line in table:
                    print(line)
    if any(r["arch"] == "eyeriss_v1_scaled" for r in rows):
        print("\nnotes on the v2 : v1-scaled ratio:")
        for note in V1_NOTES:
            print(f"  - {note}")
    if args.json:
        folder = os.path.dirname(os.path.abspath(args.json))
        with tempfile.NamedTemporaryFile("w", dir=folder, delete=False, suffix=".tmp") as f:
            json.dump({"settings": settings, "conditions": CONDITIONS, "runs": rows}, f, indent=1)
        os.replace(f.name, args.json)


if __name__ == "__main__":
    main()
