"""How much of the generated input each property judges: the share of samples inside its region (the rest it
skips: a side the specification rejects, a term past the dtype's maximum), per property x op x dtype.

Run: python benchmarks/property_coverage.py [--backend numpy] [--examples 500] [--seed 1] [--dtype D]...
A property that judges few of its samples searches little of the input space, however many examples it draws.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, seed, settings
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "reference"))  # the checkout's bce_reference
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # and its conformance, installed or not
from bce_reference import FLOAT_DTYPES
from conformance import registry
from conformance.execution import in_process
from conformance.properties import all_properties


def judged_share(invoke, prop, op: str, dtype: str, examples: int, run_seed: int) -> float:
    counts = {"judged": 0, "skipped": 0}

    @seed(run_seed)
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(prop.strategy(op, dtype))
    def probe(sample):
        counts["skipped" if prop.check(invoke, sample) is None else "judged"] += 1

    probe()
    return counts["judged"] / max(1, sum(counts.values()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", default="numpy")
    parser.add_argument("--examples", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dtype", action="append", choices=list(FLOAT_DTYPES))
    args = parser.parse_args()
    invoke = in_process(registry.select([args.backend])[0].backend)
    dtypes = args.dtype or list(FLOAT_DTYPES)
    rows = [[prop.id, op, *(f"{judged_share(invoke, prop, op, d, args.examples, args.seed):.1%}" for d in dtypes)]
            for prop in all_properties() for op in prop.ops]
    print(tabulate(rows, headers=["property", "op", *dtypes]))
    print(f"\nshare of samples judged, {args.examples} examples each, seed {args.seed}, backend {args.backend}")


if __name__ == "__main__":
    main()
