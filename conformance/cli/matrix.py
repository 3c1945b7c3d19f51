"""`matrix`: per backend x area, the pass rate and the classes of deviation, as Markdown and one HTML page."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import expectations, matrix, named, options, report, runner
from ..gates import EXIT_OK
from ..loader import load_cases
from . import output


def cmd_matrix(args: argparse.Namespace) -> int:
    """Run every available backend (or read --from reports) and write the matrix as Markdown and HTML."""
    areas = matrix.load_areas()
    if args.sources:
        documents = [matrix.load(path) for path in args.sources]
    else:
        values = options.Values.of_namespace(args)
        run = runner.run(load_cases(args.cases), values.entries(), progress=args.progress, isolation=values.isolation())
        available = {b.name for b in run.backends if b.available}
        manifests = [expectations.load(path) for name, path in named.shipped_manifests().items() if name in available]
        run, warnings = expectations.apply(run, manifests)
        for warning in warnings:
            print(f"conformance: warning: {warning}", file=sys.stderr)
        run.command = output.command_line(args)
        atlas = matrix.accuracy_document(values.entries(), args.progress)  # the accuracy area
        documents = [json.loads(report.render_json(run)), atlas]
        if args.report is not None:
            output.write(report.render_json(run), args.report)
            output.write(json.dumps(atlas, indent=2) + "\n", args.report.with_suffix(".accuracy.json"))
    built = matrix.build(documents, areas)
    output.write(matrix.render_markdown(built), args.output_dir / "matrix.md")
    output.write(matrix.render_html(built), args.output_dir / "matrix.html")
    print(f"conformance: wrote {args.output_dir / 'matrix.md'} and {args.output_dir / 'matrix.html'} "
          f"({len(built.backends)} backends x {len(areas)} areas)", file=sys.stderr)
    return EXIT_OK


def register(commands: argparse._SubParsersAction) -> None:
    sub = commands.add_parser("matrix", help="per backend x area: pass rate and classes of deviation, as Markdown "
                                             "and one self-contained HTML page")
    sub.add_argument("--from", dest="sources", nargs="+", type=Path, metavar="REPORT",
                     help="render these JSON reports (or results files) and accuracy atlases (accuracy --format "
                          "json), e.g. one each per framework environment, instead of running")
    options.BACKEND.add_argument(sub)
    options.CASES.add_argument(sub)
    sub.add_argument("--report", type=Path, metavar="FILE",
                     help="also write the run's JSON report here, and its accuracy atlas beside it (.accuracy.json)")
    sub.add_argument("--output-dir", type=Path, default=Path("matrix"), metavar="DIR",
                     help="where matrix.md and matrix.html go (default: ./matrix)")
    output.add_progress(sub)
    options.ISOLATION.add_argument(sub)
    sub.set_defaults(handler=cmd_matrix)
