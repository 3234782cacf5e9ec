"""Network benchmark: ResNet-50 and the BERT-base encoder searched on Eyeriss v1 and v2.

    python benchmarks/network.py [--time-limit 10] [--workers N] [--networks resnet50 bert_base]

Prints per network and chip the wall time, the distinct layer shapes searched (identical
layers are searched once, as `mapper search` does), how many were proven optimal, and the
network's energy and latency. Each distinct layer gets --time-limit seconds.
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


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-limit", type=float, default=10.0, help="Seconds per distinct layer.")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--networks", nargs="+", default=["resnet50", "bert_base"])
    ap.add_argument("--archs", nargs="+", default=["eyeriss_v1", "eyeriss_v2"])
    args = ap.parse_args(argv)
    print(f"{'network':12s} {'arch':11s} {'layers':>6s} {'shapes':>6s} {'optimal':>7s} {'wall s':>7s} "
          f"{'energy uJ':>10s} {'pJ/MAC':>7s} {'latency ms':>10s}")
    for net_name in args.networks:
        net = load_network(net_name)
        for arch_name in args.archs:
            arch = load_arch(arch_name)
            start = time.monotonic()
            results = search_network(list(net.layers), arch, workers=args.workers, algorithm="hybrid",
                                     objective="edp", seed=0, time_limit=args.time_limit)
            wall = time.monotonic() - start
            searched = [r for r in results if r.reused_from is None]
            optimal = sum(r.status == "optimal" for r in searched)
            energy = sum(r.best.cost.energy_pj for r in results)
            cycles = sum(r.best.cost.cycles for r in results)
            print(f"{net.name:12s} {arch.name:11s} {len(results):6d} {len(searched):6d} "
                  f"{optimal:3d}/{len(searched):<3d} {wall:7.1f} {energy / 1e6:10.1f} {energy / net.macs:7.3f} "
                  f"{cycles / (arch.clock_mhz * 1e3):10.3f}", flush=True)


if __name__ == "__main__":
    main()
