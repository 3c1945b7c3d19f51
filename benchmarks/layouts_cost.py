"""The default run's wall time against a baseline commit's, side by side: what the issue-12 coverage (higher
ranks, memory layouts, second-order and forward-mode cases) costs.

Run: python benchmarks/layouts_cost.py [--baseline REF] [--repeat N] [-- RUN OPTIONS]. The baseline is the
source tree of REF (git archive, default main) run with this interpreter; runs alternate baseline, current,
baseline, ... so that load on the machine falls on both alike. Target: the current default run within 1.3x
of the baseline's (median over the repeats).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from trees import ROOT, extracted, timed

TARGET_RATIO = 1.3


def timed_run(tree: Path, options: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (the run and the worker processes it waited for) of `python -m conformance run` on
    numpy and torch-cpu with the package and cases of `tree`."""
    command = [sys.executable, "-m", "conformance", "run", "--backend", "numpy", "--backend", "torch-cpu",
               "--no-progress", *options]
    return timed(command, tree, tree)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", default="main", help="git ref of the baseline (default: main)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("options", nargs="*", help="options for both runs (after --)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        baseline = extracted(args.baseline, Path(folder))
        runs: dict[str, list[tuple[float, float]]] = {"baseline": [], "current": []}
        for _ in range(args.repeat):
            runs["baseline"].append(timed_run(baseline, args.options))
            runs["current"].append(timed_run(ROOT, args.options))
    for index, measure in enumerate(("wall", "CPU")):
        medians = {name: statistics.median(run[index] for run in done) for name, done in runs.items()}
        for name, done in runs.items():
            print(f"{measure:4} {name:8} ({args.baseline if name == 'baseline' else 'working tree'}): median "
                  f"{medians[name]:.2f} s of " + ", ".join(f"{run[index]:.2f}" for run in done))
        ratio = medians["current"] / medians["baseline"]
        print(f"{measure} ratio {ratio:.2f} (target at most {TARGET_RATIO}) -> "
              f"{'met' if ratio <= TARGET_RATIO else 'NOT met'}")


if __name__ == "__main__":
    main()
