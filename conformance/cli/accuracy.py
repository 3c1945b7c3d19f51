"""`python -m conformance accuracy`: the atlas, optionally gated by a budget and drawn as figures."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bce_reference import FLOAT_DTYPES
from bce_reference.sweep import OPS

from .. import distributed, named, options
from ..accuracy import report
from ..accuracy.atlas import build
from ..accuracy.budget import judge, load_budget
from ..accuracy.regions import load_regions, select
from ..gates import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from . import output


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of points")
    return value


def run(args: argparse.Namespace) -> int:
    budget = load_budget(args.budget) if args.budget else None  # a broken budget file stops before the sweep
    regions = select(load_regions(args.regions), args.k, args.op, args.exhaustive)
    entries = options.Values.of_namespace(args).entries()
    if args.plot is not None:
        from ..accuracy import plots  # needs matplotlib: fail before the sweep, not after

        plots.require()
    with distributed.client(args.workers, args.scheduler) as cluster:
        atlas = build(regions, entries, args.dtype, args.points, args.progress, cluster)
    if not atlas.rows:
        reasons = "; ".join(f"{b.name}: {b.reason}" for b in atlas.backends if not b.available)
        print(f"conformance: error: no backend was measured{' (' + reasons + ')' if reasons else ''}", file=sys.stderr)
        return EXIT_USAGE
    judgement = judge(budget, atlas.rows) if budget else None
    output.write(report.RENDERERS[args.format](atlas, judgement), args.output)
    if args.output is not None and args.format != "table":
        sys.stdout.write(report.render_table(atlas, judgement))
    if args.plot is not None:
        written = plots.write(atlas, entries, args.plot)
        print(f"figures: {', '.join(str(p) for p in written)}")
    if atlas.interrupted:
        print("conformance: interrupted; the report covers what was swept", file=sys.stderr)
    failed = (judgement is not None and not judgement.passed) or any(row.error for row in atlas.rows)
    return EXIT_FAILED if failed or atlas.interrupted else EXIT_OK


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "accuracy", help="error in ulps of each backend against the exact loss, per input region",
        description="Sweep input regions on backends and report the error in ulps of the output dtype against the "
                    "exact loss: median, p99 and maximum per backend x op x dtype x region, the worst input, and "
                    "whether the maximum is an upper bound (every input swept) or a lower bound (sampled).")
    options.BACKEND.add_argument(parser)
    options.DTYPE.narrowed(choices=FLOAT_DTYPES).add_argument(parser)
    parser.add_argument("--op", action="append", choices=OPS, help="only this op (repeatable)")
    parser.add_argument("-k", action="append", metavar="REGEX", help="select region ids matching REGEX (repeatable)")
    parser.add_argument("--regions", type=Path, metavar="FILE", help="regions file (default: the shipped one)")
    parser.add_argument("--points", type=_positive, metavar="N",
                        help="points per region and dtype, replacing each region's own count")
    parser.add_argument("--exhaustive", action="store_true",
                        help="also sweep the exhaustive regions (every finite input; minutes for float32)")
    parser.add_argument("--budget", type=named.budget, metavar="FILE|NAME",
                        help="per-region ulp budgets: exit 1 when a row exceeds its budget "
                             "(a file, or `default`: the shipped budget)")
    parser.add_argument("--plot", type=Path, metavar="DIR", help="write PNG figures here (needs matplotlib)")
    output.add_output(parser, report.FORMATS)
    output.add_progress(parser)
    distributed.add_options(parser)
    parser.set_defaults(handler=run)

