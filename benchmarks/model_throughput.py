"""How many candidate mappings per second the batch (numpy) cost model evaluates.

    python benchmarks/model_throughput.py [--workers N] [--seconds S] [--batch B] [--pool P]

Workload: AlexNet conv3 on Eyeriss v1. Each worker is a joblib (loky) process that

  1. builds the pruned mapspace and draws candidates with `mapper.search.random.sample`,
     keeping the valid ones (`space.valid`) until it holds a pool of P valid candidates;
     this phase is timed on its own (sampling + validity checks);
  2. waits for a common start time, then evaluates its pool with
     `mapper.batch.evaluate_batch` in batches of B, cycling through the pool, for S seconds;
     only this phase counts as model throughput.

Per-core throughput is each worker's evaluated candidates / its measured window; the total
is the sum over workers (their windows are simultaneous; the overlap is printed). The
combined rate (sample, check and evaluate) per core is also printed, since a search pays
for all three.

Reference: Timeloop's mapper evaluates "a few hundred" mappings per second per core; we
take 300 per second per core as that reference (an assumption, not a measurement here).
Target: 1,000,000 evaluated candidates per second on 2 cores.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

TIMELOOP_PER_CORE = 300.0          # "a few hundred per second per core" -> 300 (assumed)
TARGET_TOTAL = 1_000_000.0         # candidates per second ...
TARGET_CORES = 2                   # ... on this many cores


def workload():
    from mapper.arch import load_arch
    from mapper.problem import load_network
    return load_network("alexnet").layer("conv3"), load_arch("eyeriss_v1")


def prepare(seed: int, pool: int, batch: int):
    """A pool of valid candidates, and how long sampling + validity took."""
    from mapper.search.random import sample
    from mapper.search.space import space_of
    layer, arch = workload()
    t0 = time.perf_counter()
    space = space_of(layer, arch)
    build = time.perf_counter() - t0
    rng = np.random.default_rng(seed)
    parts, sampled, have = [], 0, 0
    t0 = time.perf_counter()
    while have < pool:
        f, o, k = sample(space, rng, batch)
        ok = space.valid(f, k)
        sampled += len(ok)
        parts.append((f[ok], o[ok], k[ok]))
        have += int(ok.sum())
    seconds = time.perf_counter() - t0
    f, o, k = (np.concatenate([p[i] for p in parts])[:pool] for i in range(3))
    return space, (f, o, k), {"build_s": build, "sampled": sampled, "valid": have, "sample_s": seconds}


def worker(index: int, seed: int, pool: int, batch: int, seconds: float, start_at: float) -> dict:
    from mapper.batch import evaluate_batch
    space, (f, o, k), stats = prepare(seed, pool, batch)
    ready = time.time()
    if ready < start_at:
        time.sleep(start_at - ready)
    end_at = start_at + seconds
    evaluated = 0
    i = 0
    t_start = time.time()
    t0 = time.perf_counter()
    while time.time() < end_at:
        j = i + batch
        if j > len(f):
            i, j = 0, batch
        evaluate_batch(space.enc, f[i:j], o[i:j], k[i:j])
        evaluated += j - i
        i = j
    elapsed = time.perf_counter() - t0
    return {**stats, "worker": index, "pid": os.getpid(), "evaluated": evaluated, "eval_s": elapsed,
            "start": t_start, "end": time.time(), "late": max(0.0, ready - start_at)}


def spot_check(n: int = 20, seed: int = 12345) -> int:
    """Evaluate a few candidates both ways so the timed path is known to compute the model."""
    from mapper.batch import evaluate_batch
    from mapper.model import evaluate
    layer, arch = workload()
    space, (f, o, k), _ = prepare(seed, n, 512)
    cost = evaluate_batch(space.enc, f, o, k)
    for j in range(n):
        ref = evaluate(layer, arch, space.enc.decode(f[j], o[j], k[j]))
        assert ref.cycles == cost.cycles[j] and abs(ref.energy_pj - cost.energy_pj[j]) <= 1e-9 * ref.energy_pj
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2, help="joblib worker processes (default 2)")
    ap.add_argument("--seconds", type=float, default=10.0, help="evaluation time per worker (default 10)")
    ap.add_argument("--batch", type=int, default=8192, help="candidates per evaluate_batch call (default 8192)")
    ap.add_argument("--pool", type=int, default=65536, help="valid candidates pre-sampled per worker")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.workers < 1 or args.seconds <= 0 or args.batch < 1 or args.pool < args.batch:
        ap.error("need --workers >= 1, --seconds > 0, --batch >= 1 and --pool >= --batch")

    from joblib import Parallel, delayed
    import mapper

    layer, arch = workload()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"mapper {mapper.__version__}; numpy {np.__version__}; {os.cpu_count()} CPUs visible; "
          f"1-min load average before start {load:.2f} (other busy processes share the cores)")
    print(f"workload: {layer.name} of alexnet ({layer.macs:,} MACs) on {arch.name}; "
          f"{args.workers} worker(s), batches of {args.batch:,}, pool of {args.pool:,} valid candidates "
          f"per worker, {args.seconds:g} s of evaluation")
    print(f"spot check: batch model equals the scalar model on {spot_check()} candidates")

    # Time one preparation here to pick a common start time the workers can all make.
    t0 = time.perf_counter()
    prepare(args.seed + 999, args.pool, args.batch)
    prep = time.perf_counter() - t0
    start_at = time.time() + 3.0 + 2.0 * prep
    seeds = np.random.SeedSequence(args.seed).generate_state(args.workers)
    results = Parallel(n_jobs=args.workers, backend="loky")(
        delayed(worker)(w, int(seeds[w]), args.pool, args.batch, args.seconds, start_at)
        for w in range(args.workers))

    print()
    print("worker  pid      sampled/s   valid/s  valid%   evaluated/s  late s")
    for r in results:
        print(f"{r['worker']:>6}  {r['pid']:<7} {r['sampled'] / r['sample_s']:>10,.0f} "
              f"{r['valid'] / r['sample_s']:>9,.0f} {100 * r['valid'] / r['sampled']:>6.1f}% "
              f"{r['evaluated'] / r['eval_s']:>13,.0f} {r['late']:>7.2f}")
    pids = {r["pid"] for r in results}
    overlap = min(r["end"] for r in results) - max(r["start"] for r in results)
    window = max(r["end"] for r in results) - min(r["start"] for r in results)
    eval_rates = [r["evaluated"] / r["eval_s"] for r in results]
    sample_rates = [r["sampled"] / r["sample_s"] for r in results]
    valid_rates = [r["valid"] / r["sample_s"] for r in results]
    total = sum(eval_rates)
    per_core = total / len(results)
    # Combined per core: time per valid candidate = sampling it (with the invalid ones drawn
    # alongside) + evaluating it.
    combined = [1.0 / (1.0 / v + 1.0 / e) for v, e in zip(valid_rates, eval_rates)]
    print()
    print(f"evaluation windows overlap {overlap:.2f} s of {window:.2f} s; {len(pids)} distinct process(es)")
    print(f"evaluation only (pre-sampled valid candidates): {per_core:,.0f} /s per core, {total:,.0f} /s total")
    print(f"sampling + validity only: {np.mean(sample_rates):,.0f} candidates/s per core "
          f"({np.mean(valid_rates):,.0f} valid/s per core)")
    print(f"sample + check + evaluate: {np.mean(combined):,.0f} valid candidates/s per core, "
          f"{sum(combined):,.0f} /s total")
    print(f"vs Timeloop's mapper (assumed {TIMELOOP_PER_CORE:.0f} /s per core, 'a few hundred per second "
          f"per core'): {per_core / TIMELOOP_PER_CORE:,.0f}x per core (evaluation only), "
          f"{np.mean(combined) / TIMELOOP_PER_CORE:,.0f}x (sample + check + evaluate)")
    scope = "" if args.workers == TARGET_CORES else f" (measured with {args.workers} workers, not {TARGET_CORES})"
    verdict = "MET" if total >= TARGET_TOTAL and args.workers <= TARGET_CORES else "NOT MET"
    print(f"target {TARGET_TOTAL:,.0f} /s on {TARGET_CORES} cores (evaluation only): {verdict}{scope} "
          f"-- measured {total:,.0f} /s = {100 * total / TARGET_TOTAL:.0f}% of target")
    verdict2 = "MET" if sum(combined) >= TARGET_TOTAL and args.workers <= TARGET_CORES else "NOT MET"
    print(f"same target counting sampling and validity too: {verdict2} ({sum(combined):,.0f} /s)")


if __name__ == "__main__":
    main()
