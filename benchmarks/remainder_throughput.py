"""How fast the batch counts candidates with remainders (imperfect factorization), per layer,
against the scalar model (`mapper.model.evaluate`, the reference it must equal).

    python benchmarks/remainder_throughput.py [--archs eyeriss_v1 eyeriss_v2] [--layers conv1 ...]
                                              [--candidates 20] [--seed 0] [--repeat 1] [--no-model]

Workload: AlexNet (batch 1) layers. Per layer and arch, candidates are drawn from the pruned
imperfect mapspace (`mapper.search.random.sample`), kept when valid and with remainders,
until there are `--candidates`; the same candidates (same seed) go to
`mapper.remainder_batch.evaluate_remainders` (with counts) and to the scalar model. With
network modes (Eyeriss v2) the batch is timed twice: choosing every candidate's modes by EDP
(as the search calls it: all assignments evaluated) and with the modes it chose fixed; the
model evaluates those fixed modes. Printed per layer: ms per remainder candidate in the batch
(fixed modes), its candidates/s, the model's ms per candidate and the model/batch ratio,
and the batch's ms per candidate choosing modes. Times are this process's CPU time
(time.process_time: other jobs on a shared machine do not count, though they still slow
its caches), batch and model one after the other on the same candidates.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from mapper.arch import load_arch  # noqa: E402
from mapper.model import evaluate  # noqa: E402
from mapper.problem import load_network  # noqa: E402
from mapper.remainder_batch import evaluate_remainders, remainder_rows  # noqa: E402
from mapper.search.random import sample  # noqa: E402
from mapper.search.space import space_of  # noqa: E402

LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")


def candidates(space, n: int, seed: int):
    """n valid remainder candidates of the space (fewer if the space has too few)."""
    rng = np.random.default_rng(seed)
    parts, have = [], 0
    for _ in range(200):
        f, o, k = sample(space, rng, 512)
        ok = space.valid(f, k) & remainder_rows(space.enc, f)
        parts.append((f[ok], o[ok], k[ok]))
        have += int(ok.sum())
        if have >= n:
            break
    return tuple(np.concatenate([p[i] for p in parts])[:n] for i in range(3))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", nargs="+", default=["eyeriss_v1", "eyeriss_v2"])
    ap.add_argument("--layers", nargs="+", default=list(LAYERS))
    ap.add_argument("--candidates", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-model", action="store_true", help="Time the batch only.")
    ap.add_argument("--repeat", type=int, default=1, help="Time the batch this many times, keep the fastest.")
    args = ap.parse_args(argv)
    net = load_network("alexnet")
    print(f"{'arch':11s} {'layer':6s} {'n':>4s} {'batch ms/cand':>13s} {'cand/s':>9s} "
          f"{'model ms/cand':>13s} {'model/batch':>11s} {'choosing modes':>14s}")
    for arch_name in args.archs:
        arch = load_arch(arch_name)
        for name in args.layers:
            layer = net.layer(name)
            space = space_of(layer, arch, "imperfect")
            f, o, k = candidates(space, args.candidates, args.seed)
            n = len(f)
            if not n:
                print(f"{arch_name:11s} {name:6s}    0 (no remainder candidates)")
                continue
            evaluate_remainders(space.enc, f[:1], o[:1], k[:1], None, "edp", True)    # warm-up
            choosing = batch = math.inf
            for _ in range(args.repeat):
                t0 = time.process_time()
                *_, modes = evaluate_remainders(space.enc, f, o, k, None, "edp", True)
                choosing = min(choosing, (time.process_time() - t0) / n)
                if space.enc.mode_fans:
                    t0 = time.process_time()
                    evaluate_remainders(space.enc, f, o, k, modes, "edp", True)
                    batch = min(batch, (time.process_time() - t0) / n)
                else:
                    batch = choosing
            line = f"{arch_name:11s} {name:6s} {n:4d} {1e3 * batch:13.2f} {1 / batch:9.1f}"
            if not args.no_model:
                t0 = time.process_time()
                for i in range(n):
                    m = space.enc.decode(f[i], o[i], k[i], modes[i] if space.enc.mode_fans else None)
                    evaluate(layer, arch, m, validate=False)
                model = (time.process_time() - t0) / n
                line += f" {1e3 * model:13.2f} {model / batch:11.1f}"
            else:
                line += f" {'-':>13s} {'-':>11s}"
            line += f" {1e3 * choosing:14.2f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
