"""Perfect vs imperfect (remainder) factorization: EDP, energy, cycles, utilization, active
PEs and search time per layer and per network.

    python benchmarks/imperfect.py [--time-limit 5] [--workers 1] [--networks alexnet]
                                   [--archs eyeriss_v1 eyeriss_v2] [--batches 1 4] [--layers conv1 ...]

Every distinct layer is searched twice with the default hybrid search, EDP objective, the
same seed and time limit: `--factorization perfect` and `--factorization imperfect`. The
network row sums energy and cycles over the layers (network EDP = energy x cycles) and
prints the imperfect/perfect EDP ratio beside Ruby's published figure (Timeloop's Ruby
mapspace, ISPASS 2022: up to 50% lower EDP, 20% on average, for ResNet-50 on an
Eyeriss-like array with imperfect spatial factors alone). Ruby's figure is per layer, on
its own arch and workload and with its own search; the comparison is of orders of
magnitude, not a replication.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from mapper.arch import load_arch  # noqa: E402
from mapper.model import network_utilization  # noqa: E402
from mapper.problem import load_network  # noqa: E402
from mapper.search import search_network  # noqa: E402

RUBY = "Ruby (ISPASS 2022, ResNet-50, Eyeriss-like, imperfect spatial factors): EDP up to 50% lower, 20% on average"


def row(name, c, arch, seconds, status):
    return (f"{name:10s} {c.edp:11.4g} {c.energy_pj:12.4g} {c.cycles:11,d} {100 * c.utilization:6.1f}% "
            f"{c.active_pes:6d}/{arch.pes:<4d} {seconds:7.2f} {status}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-limit", type=float, default=5.0, help="Seconds per distinct layer and space.")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--networks", nargs="+", default=["alexnet"])
    ap.add_argument("--archs", nargs="+", default=["eyeriss_v1", "eyeriss_v2"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1])
    ap.add_argument("--layers", nargs="+", default=None, help="Only these layers (default: all).")
    args = ap.parse_args(argv)
    head = (f"{'layer':10s} {'EDP':>11s} {'energy pJ':>12s} {'cycles':>11s} {'util':>7s} {'PEs':>11s} "
            f"{'search s':>7s} status")
    ratios = []
    for net_name in args.networks:
        for batch in args.batches:
            net = load_network(net_name, batch)
            layers = [l for l in net.layers if args.layers is None or l.name in args.layers]
            for arch_name in args.archs:
                arch = load_arch(arch_name)
                res = {}
                for fz in ("perfect", "imperfect"):
                    res[fz] = search_network(layers, arch, workers=args.workers, algorithm="hybrid", objective="edp",
                                             seed=0, time_limit=args.time_limit, factorization=fz)
                print(f"=== {net_name} batch {batch} on {arch_name}: {args.time_limit:g} s per layer and space ===")
                print(head)
                totals = {}
                for i, layer in enumerate(layers):
                    for fz in ("perfect", "imperfect"):
                        r = res[fz][i]
                        status = r.status if r.status == "optimal" else f"{r.status} ({r.reason})"
                        print(row(f"{layer.name}{'' if fz == 'perfect' else ' imp'}", r.best.cost, arch, r.seconds,
                                  status))
                    p, q = res["perfect"][i].best.cost, res["imperfect"][i].best.cost
                    print(f"{'':10s} imperfect/perfect EDP {q.edp / p.edp:.3f}, cycles {q.cycles / p.cycles:.3f}, "
                          f"energy {q.energy_pj / p.energy_pj:.3f}")
                for fz in ("perfect", "imperfect"):
                    e = sum(r.best.cost.energy_pj for r in res[fz])
                    cyc = sum(r.best.cost.cycles for r in res[fz])
                    util = network_utilization(((r.best.cost.performed_macs, r.best.cost.cycles) for r in res[fz]),
                                               arch.pes)
                    secs = sum(r.seconds for r in res[fz])
                    totals[fz] = e * cyc
                    print(f"network {fz:9s}: EDP {e * cyc:.4g} pJ*cycles, energy {e:.4g} pJ, {cyc:,} cycles, "
                          f"utilization {100 * util:.1f}%, search {secs:.1f} s")
                ratio = totals["imperfect"] / totals["perfect"]
                ratios.append((net_name, batch, arch_name, ratio))
                print(f"network EDP imperfect/perfect: {ratio:.3f} ({100 * (1 - ratio):.1f}% lower)  vs  {RUBY}")
                print()
    if len(ratios) > 1:
        print("summary: " + "; ".join(f"{n} b{b} {a}: x{r:.3f}" for n, b, a, r in ratios))
        print(RUBY)


if __name__ == "__main__":
    main()
