"""Scaling: ten times the cases against once, in wall time and in peak memory (RSS).

Run: python benchmarks/scaling.py [--copies 10] [--rounds 1]. The shipped case files are copied `--copies`
times into a temporary folder (each id suffixed, so every copy is a case of its own) and
`python -m conformance run --backend numpy --backend torch-cpu` runs on one copy and on all of them,
with the reference computed (--no-cache) and with a warm reference cache. It prints the time ratio (goal:
at most the number of copies, so linear or better) and the peak RSS ratio of the largest process (goal:
flat, about 1). Rounds alternate the two sizes; the median counts.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from tabulate import tabulate

CASES = Path(__file__).resolve().parent.parent / "cases"
RUN = [sys.executable, "-m", "conformance", "run", "--backend", "numpy", "--backend", "torch-cpu", "--no-progress"]
PEAK = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def copy_cases(folder: Path, copies: int) -> None:
    for number in range(copies):
        for path in sorted(CASES.glob("*.yaml")):
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
            for case in document["cases"]:
                case["id"] = f"{case['id']}-copy{number}"
            (folder / f"{path.stem}-copy{number}.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")


def measure(folder: Path, extra: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of the largest process of one run."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PEAK, *RUN, "--cases", str(folder), *extra], check=True,
                          capture_output=True, text=True, env=env)
    return time.perf_counter() - start, int(done.stdout) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        one, many = Path(tmp) / "one", Path(tmp) / "many"
        one.mkdir()
        many.mkdir()
        copy_cases(one, 1)
        copy_cases(many, args.copies)
        env = {**os.environ, "BCE_CONFORMANCE_CACHE_DIR": str(Path(tmp) / "cache")}
        subprocess.run([*RUN, "--cases", str(many)], check=True, stdout=subprocess.DEVNULL, env=env)  # fills it
        for label, extra in (("reference computed (--no-cache)", ["--no-cache"]), ("warm reference cache", [])):
            small, large = [], []
            for _ in range(args.rounds):
                small.append(measure(one, extra, env))
                large.append(measure(many, extra, env))
            t1, t10 = statistics.median(s for s, _ in small), statistics.median(s for s, _ in large)
            m1, m10 = statistics.median(m for _, m in small), statistics.median(m for _, m in large)
            rows.append([label, t1, t10, t10 / t1, m1, m10, m10 / m1])
    print(f"{args.copies} copies of the shipped cases against one; {args.rounds} round(s)")
    print(tabulate(rows, headers=["run", "1x s", f"{args.copies}x s", "time ratio", "1x MiB", f"{args.copies}x MiB",
                                  "memory ratio"], floatfmt=".2f"))
    worst = max(row[3] for row in rows), max(row[6] for row in rows)
    print(f"goal: time ratio <= {args.copies}, memory flat -> {worst[0]:.2f}, {worst[1]:.2f}")


if __name__ == "__main__":
    main()
