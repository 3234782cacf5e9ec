"""Eyeriss v1 vs v2, dense and sparse: inferences/s and inferences/J at each chip's clock.

    python benchmarks/eyeriss_compare.py [--networks mobilenet_v1_050_128,alexnet] [--time-limit 5]

For each network, architecture and density (dense, or the problem file's `published`
preset), every layer is searched (hybrid, EDP, all cores) and the network is totalled.
The published headline is printed beside ours: sparse MobileNet (0.5, 128 x 128) on
Eyeriss v2 at batch 1: 1470.6 inferences/s and 2560.3 inferences/J, 12.6x faster and 2.5x
more energy-efficient than Eyeriss v1 (arXiv 1807.07928; reference/eyeriss.md 2.1).
See README "Eyeriss v1 vs v2" for why the numbers differ.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from mapper.arch import load_arch  # noqa: E402
from mapper.problem import load_network  # noqa: E402
from mapper.search import search_network  # noqa: E402

HEADLINE = {"inf_per_s": 1470.6, "inf_per_j": 2560.3, "speedup_vs_v1": 12.6, "efficiency_vs_v1": 2.5}


def run(network: str, arch_name: str, sparse: bool, time_limit: float, workers: int):
    net = load_network(network)
    arch = load_arch(arch_name)
    preset = net.preset("published") if sparse else {}
    layers = [l.with_density(preset[l.name]) if l.name in preset else l for l in net.layers]
    start = time.monotonic()
    results = search_network(layers, arch, workers=workers, algorithm="hybrid", objective="edp",
                             time_limit=time_limit)
    seconds = time.monotonic() - start
    energy = sum(r.best.cost.energy_pj for r in results)
    cycles = sum(r.best.cost.cycles for r in results)
    latency = cycles / (arch.clock_mhz * 1e6)
    return {"network": network, "arch": arch_name, "sparse": sparse, "inf_per_s": 1 / latency,
            "inf_per_j": 1 / (energy * 1e-12), "energy_uj": energy / 1e6, "cycles": cycles,
            "seconds": seconds, "optimal": sum(r.status == "optimal" for r in results), "layers": results,
            "utilization": {r.layer.name: r.best.cost.utilization for r in results}}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", default="mobilenet_v1_050_128,alexnet")
    ap.add_argument("--time-limit", type=float, default=5.0, help="seconds per layer search")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args(argv)
    rows = []
    for network in args.networks.split(","):
        for arch_name in ("eyeriss_v1", "eyeriss_v2"):
            for sparse in (False, True):
                r = run(network, arch_name, sparse, args.time_limit, args.workers)
                rows.append(r)
                print(f"{network:22s} {arch_name:10s} {'sparse' if sparse else 'dense ':6s} "
                      f"{r['inf_per_s']:10.1f} inf/s {r['inf_per_j']:10.1f} inf/J  "
                      f"{r['energy_uj']:10.1f} uJ  ({r['optimal']}/{len(r['layers'])} layers optimal, "
                      f"{r['seconds']:.0f} s)", flush=True)
                low = sorted(r["utilization"].items(), key=lambda kv: kv[1])[:3]
                print("    lowest utilization: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in low))
    print()
    for network in args.networks.split(","):
        by = {(r["arch"], r["sparse"]): r for r in rows if r["network"] == network}
        v1, v2 = by[("eyeriss_v1", True)], by[("eyeriss_v2", True)]
        speed = v2["inf_per_s"] / v1["inf_per_s"]
        eff = v2["inf_per_j"] / v1["inf_per_j"]
        print(f"{network}: sparse v2 vs sparse v1: {speed:.2f}x faster, {eff:.2f}x more energy-efficient")
        if network == "mobilenet_v1_050_128":
            print(f"  published (sparse MobileNet on v2): {HEADLINE['inf_per_s']} inf/s, {HEADLINE['inf_per_j']} inf/J, "
                  f"{HEADLINE['speedup_vs_v1']}x faster and {HEADLINE['efficiency_vs_v1']}x more efficient than v1")
            print(f"  ours / published: {v2['inf_per_s'] / HEADLINE['inf_per_s']:.2f}x inf/s, "
                  f"{v2['inf_per_j'] / HEADLINE['inf_per_j']:.2f}x inf/J; speedup ratio "
                  f"{speed / HEADLINE['speedup_vs_v1']:.2f}, efficiency ratio {eff / HEADLINE['efficiency_vs_v1']:.2f}")
            print("  (energies are the ISCA 2016 normalized table with 1 unit = 1 pJ [U]: inf/J is not absolute)")


if __name__ == "__main__":
    main()
