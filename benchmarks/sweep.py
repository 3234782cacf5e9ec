"""Sweep benchmark: AlexNet and MobileNet v1 over Eyeriss v1 and v2 as one sweep.

    python benchmarks/sweep.py [--time-limit 5] [--workers N] [--out results/bench_sweep]

Prints the wall time and the network summary. Target (issue 4, 2 cores): <= 90 s.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from mapper.arch import load_arch  # noqa: E402
from mapper.problem import load_network  # noqa: E402
from mapper.sweep import sweep  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-limit", type=float, default=5.0)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", default="results/bench_sweep")
    args = ap.parse_args(argv)
    shutil.rmtree(args.out, ignore_errors=True)
    archs = [load_arch("eyeriss_v1"), load_arch("eyeriss_v2")]
    nets = [(n, list(n.layers)) for n in (load_network("alexnet"), load_network("mobilenet_v1"))]
    start = time.monotonic()
    summary = sweep(archs, nets, args.out, {"algorithm": "hybrid", "objective": "edp", "seed": 0,
                                            "time_limit": args.time_limit}, workers=args.workers)
    wall = time.monotonic() - start
    for net, per_arch in summary["networks"].items():
        for arch, t in per_arch.items():
            print(f"{net:14s} {arch:11s} {t['energy_pj'] / 1e6:10.1f} uJ {t['pj_per_mac']:7.3f} pJ/MAC "
                  f"{t['latency_ms']:8.3f} ms {t['inferences_per_s']:8.1f} inf/s {100 * t['utilization']:5.1f}% util")
    print(f"{summary['jobs']['run']} jobs in {wall:.1f} s wall ({args.workers} workers); "
          f"target <= 90 s: {'met' if wall <= 90 else 'NOT met'}; results in {args.out}")


if __name__ == "__main__":
    main()
