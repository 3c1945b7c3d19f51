"""Wall time of `python -m conformance run` on every shipped case with numpy and torch-cpu, and where it goes.

Run: python benchmarks/run_time.py [--repeat N]. Target (issue 2): under 10 s on a 2-core machine,
torch import included. All figures come from the same runs, so the shares are side by side.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

TARGET_S = 10.0


def timed_run(report: Path, *options: str, subcommand: str = "run") -> float:
    command = [sys.executable, "-m", "conformance", subcommand, "--backend", "numpy", "--backend", "torch-cpu",
               "--format", "json", "--output", str(report), "--no-progress", *options]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def import_time(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    return float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.json"
        walls = [timed_run(report) for _ in range(args.repeat)]
        results = json.loads(report.read_text())["results"]
    wall = statistics.median(walls)
    backend = {name: sum(r["seconds"] for r in results if r["backend"] == name) for name in ("numpy", "torch-cpu")}
    torch_import = statistics.median(import_time("torch") for _ in range(args.repeat))
    harness_import = statistics.median(import_time("conformance.cli") for _ in range(args.repeat))
    rows = [
        ["whole run (median wall)", wall, 1.0],
        ["inside numpy backend", backend["numpy"], backend["numpy"] / wall],
        ["inside torch-cpu backend", backend["torch-cpu"], backend["torch-cpu"] / wall],
        ["import torch (separate process)", torch_import, torch_import / wall],
        ["import harness (separate process)", harness_import, harness_import / wall],
    ]
    print(f"{len(results)} results per run; {args.repeat} runs: " + ", ".join(f"{w:.2f} s" for w in walls))
    print(tabulate(rows, headers=["stage", "seconds", "share of wall"], floatfmt=".3f"))
    print(f"target: under {TARGET_S:.0f} s -> {'met' if wall < TARGET_S else 'NOT met'} ({wall / TARGET_S:.2f} of it)")


if __name__ == "__main__":
    main()
