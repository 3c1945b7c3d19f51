"""What isolation costs: wall time with backend calls in worker processes (the default) and in the harness's
process (--no-isolation), alternated in one session, for a full `run` (every shipped case) and for a CI-profile
`fuzz` in float32 (every property, 50 examples each), both on numpy and torch-cpu.

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
WORKLOADS = {"run": (), "fuzz": ("--profile", "ci", "--dtype", "float32")}
MODES = {"isolated": (), "in-process": ("--no-isolation",)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    walls = {(work, mode): [] for work in WORKLOADS for mode in MODES}
    with tempfile.TemporaryDirectory() as folder:
        reports = {key: Path(folder) / f"{key[0]}-{key[1]}.json" for key in walls}
        for _ in range(args.repeat):  # alternated, so that a busy neighbour slows both modes alike
            for (work, mode), times in walls.items():
                times.append(timed_run(reports[work, mode], *WORKLOADS[work], *MODES[mode], subcommand=work))
        counts = {key: len(json.loads(report.read_text())["results"]) for key, report in reports.items()}
    medians = {key: statistics.median(times) for key, times in walls.items()}
    rows = [[work, mode, counts[work, mode], medians[work, mode], min(walls[work, mode]),
             ", ".join(f"{w:.2f}" for w in walls[work, mode])] for work, mode in walls]
    print(tabulate(rows, headers=["command", "mode", "results", "median s", "best s", "all runs (s)"], floatfmt=".3f"))
    for work in WORKLOADS:
        ratio = medians[work, "isolated"] / medians[work, "in-process"]
        best = min(walls[work, "isolated"]) / min(walls[work, "in-process"])
        verdict = "met" if ratio < TARGET_RATIO else "NOT met"
        print(f"{work}: isolated / in-process {ratio:.2f}x (median), {best:.2f}x (best); "
              f"target under {TARGET_RATIO}x -> {verdict}")


if __name__ == "__main__":
    main()
