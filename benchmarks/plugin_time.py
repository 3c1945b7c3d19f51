"""The pytest plugin on numpy, serial and with pytest-xdist's -n 2, with the reference computed and from a warm cache.

Run: python benchmarks/plugin_time.py [--rounds 3]. Each round runs the four configurations one after the other
(`pytest --conformance-backend numpy [-n 2] [--conformance-no-cache]` in an empty folder, so that only the
plugin's tests are collected), in fresh interpreters; the median wall of each is printed. The warm runs share
a cache filled before the first round (a temporary cache directory). Beside the wall time it prints the CPU
seconds of pytest and its workers, which a shared machine distorts less. Issue 16: with a warm cache, -n 2 must
beat serial, and both must beat the runs that compute the reference (before the cache, every run did).
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--conformance-backend", "numpy"]
CONFIGURATIONS = {
    "serial, reference computed": ["-n", "0", "--conformance-no-cache"],
    "-n 2, reference computed": ["-n", "2", "--conformance-no-cache"],
    "serial, warm cache": ["-n", "0"],
    "-n 2, warm cache": ["-n", "2"],
}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(options: list[str], folder: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds, and CPU seconds of pytest and its xdist workers (they are its children)."""
    start, cpu = time.perf_counter(), _children_cpu()
    subprocess.run(PYTEST + options, cwd=folder, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start, _children_cpu() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    walls: dict[str, list[float]] = {name: [] for name in CONFIGURATIONS}
    cpus: dict[str, list[float]] = {name: [] for name in CONFIGURATIONS}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        env = {**os.environ, "BCE_CONFORMANCE_CACHE_DIR": str(folder / "cache")}
        (folder / "empty").mkdir()
        timed(CONFIGURATIONS["serial, warm cache"], folder / "empty", env)  # fills the cache
        for _ in range(args.rounds):
            for name, options in CONFIGURATIONS.items():
                wall, cpu = timed(options, folder / "empty", env)
                walls[name].append(wall)
                cpus[name].append(cpu)
    rows = [[name, statistics.median(walls[name]), ", ".join(f"{v:.2f}" for v in walls[name]),
             statistics.median(cpus[name])] for name in CONFIGURATIONS]
    print(f"pytest --conformance-backend numpy; {args.rounds} rounds, alternating")
    print(tabulate(rows, headers=["configuration", "median s", "rounds", "median CPU s (all processes)"],
                   floatfmt=".2f"))


if __name__ == "__main__":
    main()
