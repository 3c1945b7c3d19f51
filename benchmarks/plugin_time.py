"""The pytest plugin, serial and with pytest-xdist's -n 2, with the reference computed and from a warm cache.

Run: python benchmarks/plugin_time.py [--rounds 3] [--workload numpy --workload numpy,torch-cpu] [--baseline REF]
[--warm-only]. A workload is the
backends of one session (`pytest --conformance-backend NAME ...`); the default ones are numpy alone (about 1 ms a
test) and numpy with torch-cpu, the command line's default run on a machine without a GPU. Each round runs the four
configurations of each workload one after the other (`[-n 2] [--conformance-no-cache]`, in an empty folder, so
that only the plugin's tests are collected), in fresh interpreters; the median wall of each is printed, beside the
CPU seconds of pytest and its workers, which a shared machine distorts less. The warm runs share a cache filled
before the first round (a temporary cache directory). Issue 16: with a warm cache, -n 2 must beat serial, and both
must beat the runs that compute the reference (before the cache, every run did). With --baseline, every run is
made with the source tree of REF too (git archive, on PYTHONPATH, as the working tree is), alternating with the
working tree's, so that load on the machine falls on both alike.

The interpreters cache their bytecode, as Python does by default: where PYTHONDONTWRITEBYTECODE is set, every
process (each xdist worker too) would compile every module it imports from source, a cost of the environment that
an installed package does not pay; the benchmark unsets it for its runs, and says so.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from tabulate import tabulate
from trees import ROOT, extracted, timed

PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
CONFIGURATIONS = {
    "serial, reference computed": ["-n", "0", "--conformance-no-cache"],
    "-n 2, reference computed": ["-n", "2", "--conformance-no-cache"],
    "serial, warm cache": ["-n", "0"],
    "-n 2, warm cache": ["-n", "2"],
}
WORKLOADS = ["numpy", "numpy,torch-cpu"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workload", action="append", metavar="BACKEND[,BACKEND...]",
                        help=f"backends of one session (repeatable; default: {' and '.join(WORKLOADS)})")
    parser.add_argument("--baseline", metavar="REF", help="also run the source tree of this git ref, alternating")
    parser.add_argument("--warm-only", action="store_true", help="only the warm-cache configurations")
    args = parser.parse_args()
    workloads = args.workload or WORKLOADS
    configurations = {name: options for name, options in CONFIGURATIONS.items()
                      if not args.warm_only or "warm" in name}
    unset = "PYTHONDONTWRITEBYTECODE" in os.environ
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        trees = {"working tree": ROOT}
        if args.baseline:
            trees = {args.baseline: extracted(args.baseline, folder / "baseline"), **trees}
        runs = {(tree, workload, name): PYTEST + [arg for backend in workload.split(",")
                                                  for arg in ("--conformance-backend", backend)] + options
                for workload in workloads for name, options in configurations.items() for tree in trees}
        walls: dict[tuple[str, str, str], list[float]] = {key: [] for key in runs}
        cpus: dict[tuple[str, str, str], list[float]] = {key: [] for key in runs}
        env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
        env["BCE_CONFORMANCE_CACHE_DIR"] = str(folder / "cache")
        (folder / "empty").mkdir()
        for tree in trees:
            for workload in workloads:  # fills the cache (and the bytecode caches)
                timed(runs[tree, workload, "serial, warm cache"], trees[tree], folder / "empty", env)
        for _ in range(args.rounds):
            for key, command in runs.items():
                wall, cpu = timed(command, trees[key[0]], folder / "empty", env)
                walls[key].append(wall)
                cpus[key].append(cpu)
    print(f"pytest --conformance-backend ...; {args.rounds} rounds, alternating"
          + ("; PYTHONDONTWRITEBYTECODE unset for the runs" if unset else ""))
    rows = [[tree, workload.replace(",", " + "), name, statistics.median(walls[tree, workload, name]),
             ", ".join(f"{v:.2f}" for v in walls[tree, workload, name]), statistics.median(cpus[tree, workload, name])]
            for tree, workload, name in runs]
    print(tabulate(rows, headers=["harness", "backends", "configuration", "median s", "rounds",
                                  "median CPU s (all processes)"], floatfmt=".2f"))
    for tree in trees:
        for workload in workloads:
            serial, parallel = (statistics.median(walls[tree, workload, f"{how}, warm cache"])
                                for how in ("serial", "-n 2"))
            print(f"{tree}, {workload.replace(',', ' + ')}, warm cache: -n 2 / serial = {parallel / serial:.2f}")


if __name__ == "__main__":
    main()
