"""An exhaustive float32 sweep of one op x target x backend, against the backend kernel's own rate, in one run.

Run: python benchmarks/exhaustive.py [--op bce_with_logits] [--target 0] [--backend torch-cpu] [--workers N]
[--limit-regions]. It first times torch's binary_cross_entropy_with_logits (one thread, reduction 'none') on
2^24 float32 elements: the kernel's rate. Then it builds the atlas of every exhaustive region of the op with that
hard target (for bce_with_logits: every finite float32 logit, 4,278,190,080 points; for bce every p in [0, 1])
in float32, on a Dask LocalCluster of N workers with --workers, else in this process, and prints

- the wall time and the atlas's points per second (goal, issue 16: the whole op x target in 3 minutes or less);
- the harness's own rate: points per second of the time that is not the backend's (the reference, the ulp
  comparison and the statistics), in CPU seconds summed over the workers (goal: at least half the kernel's rate);
- the peak RSS of this process (and of the largest worker, with --workers): memory stays flat.

With --sample N it sweeps only N tasks of 16 chunks (4 Mi points each) per region, spread evenly over the region,
and extrapolates the full sweep's time from their rate: a measured fraction, printed as such.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "reference"))  # the checkout's bce_reference
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # and its conformance, installed or not

from conformance import distributed
from conformance.accuracy.atlas import TASK_CHUNKS, Part, build, keep_freed_memory, sweep_part
from conformance.accuracy.regions import Region, load_regions
from conformance.accuracy.sampling import plan
from conformance.registry import Entry, select
from conformance.runner import inspect

KERNEL_ELEMENTS = 1 << 24


def kernel_rate(repeat: int = 5) -> float:
    """Elements per second of torch's binary_cross_entropy_with_logits on 2^24 float32 logits, one thread."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    logits = torch.from_numpy(np.random.default_rng(0).uniform(-100, 100, KERNEL_ELEMENTS).astype(np.float32))
    target = torch.zeros_like(logits)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        best = min(best, time.perf_counter() - start)
    return KERNEL_ELEMENTS / best


def sampled(regions: list[Region], entries: list[Entry], count: int, cluster: object) -> tuple[list[Part], int]:
    """`count` tasks per region, evenly spread, swept on the cluster (or here): their parts, and the full sweep's points."""
    inspect(entries)
    plans = [plan(region, "float32") for region in regions]
    tasks = [(p, start) for p in plans
             for start in sorted({(p.chunk_count - TASK_CHUNKS) * k // max(count - 1, 1) for k in range(count)})]
    if cluster is None:
        parts = [sweep_part(p, entries, start, start + TASK_CHUNKS) for p, start in tasks]
    else:
        futures = [cluster.submit(sweep_part, p, entries, start, start + TASK_CHUNKS, pure=False)  # type: ignore[attr-defined]
                   for p, start in tasks]
        parts = cluster.gather(futures)  # type: ignore[attr-defined]
    return parts, sum(p.points for p in plans)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--op", default="bce_with_logits", choices=["bce", "bce_with_logits"])
    parser.add_argument("--target", type=float, default=0.0, choices=[0.0, 1.0])
    parser.add_argument("--backend", default="torch-cpu")
    parser.add_argument("--workers", type=int)
    parser.add_argument("--limit-regions", type=int, metavar="K", help="sweep only the first K regions (a trial)")
    parser.add_argument("--sample", type=int, metavar="N", help="sweep N tasks of 4 Mi points per region and extrapolate")
    args = parser.parse_args()
    regions = [r for r in load_regions() if r.exhaustive and r.op == args.op and r.target == args.target]
    regions = regions[:args.limit_regions] if args.limit_regions else regions
    keep_freed_memory()  # as the sweep does: measured in the same conditions
    kernel = kernel_rate()
    print(f"kernel: torch binary_cross_entropy_with_logits, 2^24 float32, one thread: {kernel / 1e6:.1f} M elements/s")
    start, cpu = time.perf_counter(), time.process_time()
    with distributed.client(args.workers) as cluster:
        if args.sample:
            parts, total = sampled(regions, select([args.backend]), args.sample, cluster)
            points = sum(part.progress.points for part in parts)
            backend = sum(row.seconds for part in parts for row in part.rows.values())
            reference = sum(part.progress.reference_seconds for part in parts)
            worst = {name: max((part.rows[name].worst.ulp_error for part in parts if part.rows[name].worst), default=None)
                     for name in parts[0].rows}
        else:
            atlas = build(regions, select([args.backend]), ["float32"], progress=False, client=cluster)
            points = total = sum(s.points for s in atlas.swept)
            backend = sum(r.seconds for r in atlas.rows)
            reference = sum(s.reference_seconds for s in atlas.swept)
        worker_rss = max(cluster.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss).values()) \
            if cluster is not None else 0
    wall = time.perf_counter() - start
    print(f"regions: {', '.join(r.id for r in regions)}; {points:,} points swept of {total:,}")
    if args.sample:
        print(f"sample: {wall:.1f} s wall, {points / wall / 1e6:.1f} M points/s; the full sweep, extrapolated: "
              f"{wall * total / points:.0f} s (goal: 180 s or less); worst in the sample: {worst}")
    else:
        print(f"atlas: {wall:.1f} s wall, {points / wall / 1e6:.1f} M points/s (goal: the op x target in 180 s or less); "
              f"every input: {all(s.exhaustive for s in atlas.swept)}; bounds: {[r.bound for r in atlas.rows]}")
    print(f"inside the backend {backend:.1f} s, the reference {reference:.1f} s; "
          f"this process {time.process_time() - cpu:.1f} CPU s")
    own = (wall * (args.workers or 1)) - backend
    print(f"harness share: {points / own / 1e6:.1f} M points/s of the time not in the backend (wall x "
          f"{args.workers or 1} process(es) - backend) = {points / own / kernel:.2f} of the kernel's rate "
          f"(goal: 0.5 or more)")
    print(f"peak RSS: this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
          + (f", largest worker {worker_rss / 1024:.0f} MiB" if worker_rss else ""))
    if not args.sample:
        for row in atlas.rows:
            print(f"  {row.region}: max {row.max_ulp} ulp ({row.bound} bound), {row.points:,} points")


if __name__ == "__main__":
    main()
