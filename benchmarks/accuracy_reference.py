"""Speed of the sweep reference (reference/bce_reference/sweep.py) against the exact path, per op and output dtype.

Run: python benchmarks/accuracy_reference.py [--points N]. The issue asks for a reference fast
enough to sweep a million points per region in a reasonable time; this prints points per second
of both paths, measured side by side in one run, their ratio, and the time a million points take.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import ml_dtypes
import numpy as np
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "reference"))  # the checkout's bce_reference
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # and its conformance, installed or not
from bce_reference import FORMATS, exact, sweep

DTYPES = {"float16": np.float16, "bfloat16": ml_dtypes.bfloat16, "float32": np.float32, "float64": np.float64}
EXACT_POINTS = 2000


def inputs(op: str, dtype: str, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Soft targets (both terms evaluated) and, for BCE with logits, a pos_weight: the slowest case."""
    fmt = FORMATS[dtype]
    x = rng.uniform(0, 1, count) if op == "bce" else rng.uniform(-100, 100, count)
    cast = lambda v: fmt.round_array(v).astype(DTYPES[dtype])  # noqa: E731
    pos_weight = cast(rng.uniform(0.1, 10, count)) if op == "bce_with_logits" else None
    return cast(x), cast(rng.uniform(0, 1, count)), pos_weight


def rate_sweep(op: str, dtype: str, count: int) -> float:
    x, y, pw = inputs(op, dtype, count, np.random.default_rng(1))
    best = min(_timed(lambda: sweep.loss(op, dtype, x, y, pw)) for _ in range(3))
    return count / best


def rate_exact(op: str, dtype: str) -> float:
    x, y, pw = inputs(op, dtype, EXACT_POINTS, np.random.default_rng(1))
    kernel = getattr(exact, op)
    args = zip(x.astype(np.float64), y.astype(np.float64)) if op == "bce" else zip(
        x.astype(np.float64), y.astype(np.float64), pw.astype(np.float64))
    return EXACT_POINTS / _timed(lambda: [kernel(*map(float, a)) for a in args])


def _timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=1_000_000)
    args = parser.parse_args()
    rows = []
    for op in ("bce", "bce_with_logits"):
        for dtype in DTYPES:
            fast, slow = rate_sweep(op, dtype, args.points), rate_exact(op, dtype)
            working = "longdouble" if sweep.working_type(dtype) is np.longdouble else "float64"
            rows.append([op, dtype, working, f"{fast:,.0f}", f"{slow:,.0f}", f"{fast / slow:,.0f}",
                         f"{1e6 / fast:.2f}", f"{1e6 / slow / 60:.1f}"])
    print(f"{args.points:,} points per sweep measurement, {EXACT_POINTS:,} per exact one; soft targets, pos_weight")
    print(tabulate(rows, headers=["op", "output dtype", "working type", "sweep pt/s", "exact pt/s", "ratio",
                                  "1e6 pt, sweep (s)", "1e6 pt, exact (min)"]))


if __name__ == "__main__":
    main()
