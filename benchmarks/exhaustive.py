"""An exhaustive float32 sweep of one op x target x backend, against the backend kernel's own rate, in one run.

Run: python benchmarks/exhaustive.py [--op bce_with_logits] [--target 0] [--backend torch-cpu] [--workers N]
[--sample N [--rounds R]]. It times torch's binary_cross_entropy_with_logits (one thread, reduction 'none') on 2^24
float32 elements: the kernel's rate, in wall and in CPU seconds (best of 5). Then

- without --sample: it builds the atlas of every exhaustive region of the op with that hard target (for
  bce_with_logits: every finite float32 logit, 4,278,190,079 points; for bce every p in [0, 1]) in float32, on a
  Dask LocalCluster of N workers with --workers, else in this process, and prints the wall time, the points per
  second (goal, issue 16: the whole op x target in 3 minutes or less), the CPU seconds of this process and its
  workers (what a quiet machine would need: on a shared one the wall time is the other jobs' as much as ours),
  and the peak RSS of this process and of the largest worker (memory stays flat);
- with --sample N: it sweeps N tasks of 16 chunks (4 Mi points) per region, evenly spread, in this process, R
  times alternating with the kernel's timing, and prints the harness's own rate (points per CPU second of the
  sweep outside the backend: the reference, the ulp comparison and the statistics) against the kernel's (goal:
  at least half), the medians over the rounds, and the full sweep's time extrapolated from the sample's rate.

CPU seconds come from the process clock (the backend's are measured around its calls by a wrapper), so the
ratios hold on a loaded machine better than wall seconds do.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "reference"))  # the checkout's bce_reference
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # and its conformance, installed or not

from conformance import distributed
from conformance.accuracy.atlas import TASK_CHUNKS, build, keep_freed_memory, sweep_part
from conformance.accuracy.regions import Region, load_regions
from conformance.accuracy.sampling import plan
from conformance.registry import Entry, select
from conformance.runner import inspect

KERNEL_ELEMENTS = 1 << 24


def kernel_rates(repeat: int = 5) -> tuple[float, float]:
    """Elements per wall second and per CPU second of torch's binary_cross_entropy_with_logits on 2^24 float32
    logits, one thread (best of `repeat`)."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    logits = torch.from_numpy(np.random.default_rng(0).uniform(-100, 100, KERNEL_ELEMENTS).astype(np.float32))
    target = torch.zeros_like(logits)
    wall = cpu = float("inf")
    for _ in range(repeat):
        start, clock = time.perf_counter(), time.process_time()
        F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        wall, cpu = min(wall, time.perf_counter() - start), min(cpu, time.process_time() - clock)
    return KERNEL_ELEMENTS / wall, KERNEL_ELEMENTS / cpu


class Timed:
    """A backend whose calls' CPU seconds are added up (the process clock: torch runs on one thread here)."""

    def __init__(self, backend: Any) -> None:
        self.backend, self.cpu = backend, 0.0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.backend, name)
        if name not in ("bce", "bce_with_logits"):
            return attribute

        def timed(*args: Any, **kwargs: Any) -> Any:
            clock = time.process_time()
            try:
                return attribute(*args, **kwargs)
            finally:
                self.cpu += time.process_time() - clock
        return timed


def sample(regions: list[Region], entry: Entry, count: int) -> tuple[int, int, float, float, float]:
    """`count` tasks per region, evenly spread, swept here: points swept, the full sweep's points, wall and CPU
    seconds, and the backend's CPU seconds."""
    plans = [plan(region, "float32") for region in regions]
    tasks = [(p, start) for p in plans
             for start in sorted({(p.chunk_count - TASK_CHUNKS) * k // max(count - 1, 1) for k in range(count)})]
    timed = Timed(entry.backend)
    wrapped = Entry(entry.name, entry.origin, timed, entry.load_error)
    start, clock = time.perf_counter(), time.process_time()
    points = sum(sweep_part(p, [wrapped], first, first + TASK_CHUNKS).progress.points for p, first in tasks)
    return points, sum(p.points for p in plans), time.perf_counter() - start, time.process_time() - clock, timed.cpu


def sampled(regions: list[Region], entry: Entry, count: int, rounds: int) -> None:
    ratios, rates, kernels, extrapolated = [], [], [], []
    for _ in range(rounds):
        _, kernel = kernel_rates()
        points, total, wall, cpu, backend = sample(regions, entry, count)
        own = points / (cpu - backend)
        kernels.append(kernel)
        rates.append(own)
        ratios.append(own / kernel)
        extrapolated.append(cpu * total / points / 2)
        print(f"  kernel {kernel / 1e6:.1f} M elements/CPU s; sample: {points:,} points in {wall:.1f} s wall, "
              f"{cpu:.1f} CPU s, {backend:.1f} of them in the backend; harness {own / 1e6:.1f} M points/CPU s "
              f"= {own / kernel:.2f} of the kernel's rate")
    print(f"median over {rounds} rounds: kernel {statistics.median(kernels) / 1e6:.1f} M elements/CPU s, "
          f"harness {statistics.median(rates) / 1e6:.1f} M points/CPU s: {statistics.median(ratios):.2f} of the "
          f"kernel's rate (goal: 0.5 or more)")
    print(f"the full sweep of {total:,} points, extrapolated from the sample's CPU seconds on 2 cores: "
          f"{statistics.median(extrapolated):.0f} s (goal: 180 s or less)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--op", default="bce_with_logits", choices=["bce", "bce_with_logits"])
    parser.add_argument("--target", type=float, default=0.0, choices=[0.0, 1.0])
    parser.add_argument("--backend", default="torch-cpu")
    parser.add_argument("--workers", type=int)
    parser.add_argument("--sample", type=int, metavar="N", help="sweep N tasks of 4 Mi points per region, here")
    parser.add_argument("--rounds", type=int, default=3, help="with --sample: rounds, alternating with the kernel")
    args = parser.parse_args()
    regions = [r for r in load_regions() if r.exhaustive and r.op == args.op and r.target == args.target]
    keep_freed_memory()  # as the sweep does: the kernel is timed in the same conditions
    entries = select([args.backend])
    inspect(entries)
    print(f"regions: {', '.join(r.id for r in regions)}; backend {args.backend}; torch one thread")
    if args.sample:
        sampled(regions, entries[0], args.sample, args.rounds)
        return
    wall_rate, cpu_rate = kernel_rates()
    print(f"kernel: torch binary_cross_entropy_with_logits, 2^24 float32: {wall_rate / 1e6:.1f} M elements/s, "
          f"{cpu_rate / 1e6:.1f} M elements/CPU s")
    start, clock = time.perf_counter(), time.process_time()
    with distributed.client(args.workers) as cluster:
        atlas = build(regions, entries, ["float32"], progress=False, client=cluster)
        worker_rss = max(cluster.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss).values()) \
            if cluster is not None else 0
    wall = time.perf_counter() - start
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the workers, once the cluster has closed
    cpu = time.process_time() - clock + children.ru_utime + children.ru_stime
    points = sum(s.points for s in atlas.swept)
    backend = sum(r.seconds for r in atlas.rows)
    print(f"atlas: {points:,} points in {wall:.1f} s wall ({points / wall / 1e6:.1f} M points/s; goal: 180 s or "
          f"less); every input: {all(s.exhaustive for s in atlas.swept)}; bounds: {[r.bound for r in atlas.rows]}")
    print(f"CPU: {cpu:.1f} s in this process and its workers ({points / cpu / 1e6:.1f} M points/CPU s): "
          f"{cpu / 2:.0f} s of wall on 2 idle cores; wall seconds inside the backend {backend:.1f}, "
          f"in the reference {sum(s.reference_seconds for s in atlas.swept):.1f}")
    print(f"peak RSS: this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
          + (f", largest worker {worker_rss / 1024:.0f} MiB" if worker_rss else ""))
    for row in atlas.rows:
        print(f"  {row.region}: max {row.max_ulp} ulp ({row.bound} bound), {row.points:,} points")


if __name__ == "__main__":
    main()
