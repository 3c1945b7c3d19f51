"""What isolation costs: wall time of a full run (every shipped case, numpy and torch-cpu) with backend calls in
worker processes (the default) and in the runner's process (--no-isolation), alternated in one session.

Run: python benchmarks/isolation_cost.py [--repeat N]. Target (issue 6): isolated under 1.5x in-process.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from run_time import timed_run
from tabulate import tabulate

TARGET_RATIO = 1.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    walls: dict[str, list[float]] = {"isolated": [], "in-process": []}
    with tempfile.TemporaryDirectory() as folder:
        reports = {mode: Path(folder) / f"{mode}.json" for mode in walls}
        for _ in range(args.repeat):  # alternated, so that a busy neighbour slows both alike
            walls["isolated"].append(timed_run(reports["isolated"]))
            walls["in-process"].append(timed_run(reports["in-process"], "--no-isolation"))
        counts = {mode: len(json.loads(report.read_text())["results"]) for mode, report in reports.items()}
    medians = {mode: statistics.median(times) for mode, times in walls.items()}
    ratio = medians["isolated"] / medians["in-process"]
    rows = [[mode, counts[mode], medians[mode], min(walls[mode]), ", ".join(f"{w:.2f}" for w in walls[mode])]
            for mode in walls]
    print(tabulate(rows, headers=["mode", "results", "median s", "best s", "all runs (s)"], floatfmt=".3f"))
    best = min(walls["isolated"]) / min(walls["in-process"])
    print(f"isolated / in-process: {ratio:.2f}x (median), {best:.2f}x (best)")
    print(f"target: under {TARGET_RATIO}x -> {'met' if ratio < TARGET_RATIO else 'NOT met'}")


if __name__ == "__main__":
    main()
