"""Command line: `python -m conformance run | fuzz | backends | cases`. Exit 0 all passed, 1 a failure, 2 usage error."""
from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path

from tabulate import tabulate

from reference import FLOAT_DTYPES, OPS

from . import registry, report, runner
from .case import Case
from .dtypes import NUMPY_DTYPES
from .errors import ConfigError
from .fuzz import PROFILES, FuzzConfig, fuzz
from .loader import load_cases
from .properties import all_properties
from .results import Status

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _select_cases(paths: list[Path] | None, patterns: list[str] | None) -> list[Case]:
    cases = load_cases(paths)
    if not patterns:
        return cases
    try:
        compiled = [re.compile(p) for p in patterns]
    except re.error as exc:
        raise ConfigError(f"-k {exc.pattern!r}: invalid regular expression: {exc}") from None
    chosen = [c for c in cases if any(p.search(c.id) for p in compiled)]
    if not chosen:
        raise ConfigError(f"no case id matches {' or '.join(map(repr, patterns))}")
    return chosen


def _write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{output}: cannot write report: {exc}") from None


def _require_grad(run: runner.Run) -> None:
    """--require-grad: a gradient case a backend cannot differentiate fails instead of being unsupported."""
    run.results[:] = [
        dataclasses.replace(r, status=Status.FAILED, message=f"{r.message}; --require-grad makes this a failure")
        if r.status == Status.UNSUPPORTED else r
        for r in run.results
    ]


def cmd_run(args: argparse.Namespace) -> int:
    cases = _select_cases(args.cases, args.k)
    entries = registry.select(args.backend)
    run = runner.run(cases, entries, args.dtype, progress=args.progress)
    if args.require_grad:
        _require_grad(run)
    return _finish(run, args)


def _finish(run: runner.Run, args: argparse.Namespace) -> int:
    """Write the report; the exit status of a run."""
    _write(report.RENDERERS[args.format](run), args.output)
    if args.output is not None and args.format != "table":
        sys.stdout.write(report.render_table(run))
    if report.ran(run) == 0:
        reasons = "; ".join(f"{b.name}: {b.reason}" for b in run.backends if not b.available)
        print(f"conformance: error: nothing ran{' (' + reasons + ')' if reasons else ''}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK if report.gate_passed(run) else EXIT_FAILED


def cmd_backends(args: argparse.Namespace) -> int:
    entries = registry.select(args.backend) if args.backend else registry.known()
    rows = [[b.name, "available" if b.available else "unavailable", b.version or b.reason, ", ".join(b.dtypes),
             ", ".join(b.gradients) if b.available else "", b.origin]
            for b in runner.inspect(entries)]
    print(tabulate(rows, headers=["backend", "status", "version / reason", "dtypes", "gradients", "from"]))
    return EXIT_OK


def cmd_cases(args: argparse.Namespace) -> int:
    cases = _select_cases(args.cases, args.k)
    def expects(case: Case) -> str:
        outcome = f"reject {case.reject}" if case.reject else "value"
        return outcome + (f" of d/d {','.join(case.grad)}" if case.grad else "")

    rows = [[c.id, c.op, expects(c), ",".join(c.dtypes), c.source, c.description] for c in cases]
    print(tabulate(rows, headers=["id", "op", "expects", "dtypes", "source", "description"],
                   maxcolwidths=[None, None, None, None, None, 60]))
    print(f"\n{len(cases)} cases")
    return EXIT_OK


def cmd_fuzz(args: argparse.Namespace) -> int:
    properties = all_properties()
    if args.property:
        known = {p.id: p for p in properties}
        unknown = [name for name in args.property if name not in known]
        if unknown:
            raise ConfigError(f"unknown property {unknown[0]!r}; known: {', '.join(known)}")
        properties = [known[name] for name in args.property]
    config = FuzzConfig(profile=args.profile, examples=args.examples, seed=args.seed, database=args.database,
                        save_failures=args.save_failures)
    run = fuzz(registry.select(args.backend), properties, config, args.op, args.dtype, progress=args.progress)
    return _finish(run, args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m conformance", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def selection(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--cases", action="append", type=Path, metavar="PATH",
                         help="case file or folder (repeatable; default: the shipped cases)")
        sub.add_argument("-k", action="append", metavar="REGEX", help="select case ids matching REGEX (repeatable)")

    run = commands.add_parser("run", help="run the cases on backends and report")
    selection(run)
    run.add_argument("--backend", action="append", metavar="NAME",
                     help="backend name or package.module:attr (repeatable; default: every built-in backend)")
    run.add_argument("--dtype", action="append", choices=list(NUMPY_DTYPES), help="only this dtype (repeatable)")
    run.add_argument("--format", choices=report.FORMATS, default="table")
    run.add_argument("--output", type=Path, metavar="FILE", help="write the report here (the table still prints)")
    run.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="progress bar (default: only on a terminal)")
    run.add_argument("--require-grad", action="store_true",
                     help="fail gradient cases a backend cannot differentiate (default: reported as unsupported)")
    run.set_defaults(handler=cmd_run)

    backends = commands.add_parser("backends", help="list backends with availability and reason")
    backends.add_argument("--backend", action="append", metavar="NAME", help="only these (names or module:attr)")
    backends.set_defaults(handler=cmd_backends)

    fuzz_cmd = commands.add_parser("fuzz", help="search generated inputs for property violations (hypothesis)")
    fuzz_cmd.add_argument("--backend", action="append", metavar="NAME",
                          help="backend name or package.module:attr (repeatable; default: every built-in backend)")
    fuzz_cmd.add_argument("--property", action="append", metavar="ID", help="only this property (repeatable)")
    fuzz_cmd.add_argument("--op", action="append", choices=list(OPS), help="only this op (repeatable)")
    fuzz_cmd.add_argument("--dtype", action="append", choices=list(FLOAT_DTYPES), help="only this dtype (repeatable)")
    fuzz_cmd.add_argument("--profile", choices=list(PROFILES), default="ci",
                          help="ci: 50 examples, seed 0; nightly: 10000 examples, a fresh seed (default: ci)")
    fuzz_cmd.add_argument("--examples", type=int, metavar="N", help="examples per property x op x dtype x backend")
    fuzz_cmd.add_argument("--seed", type=int, metavar="N", help="hypothesis seed (the report prints the one used)")
    fuzz_cmd.add_argument("--database", type=Path, metavar="DIR", help="hypothesis example database (default: none)")
    fuzz_cmd.add_argument("--save-failures", type=Path, metavar="DIR",
                          help="write each shrunk counterexample as a YAML case file here")
    fuzz_cmd.add_argument("--format", choices=report.FORMATS, default="table")
    fuzz_cmd.add_argument("--output", type=Path, metavar="FILE", help="write the report here (the table still prints)")
    fuzz_cmd.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                          help="progress bar (default: only on a terminal)")
    fuzz_cmd.set_defaults(handler=cmd_fuzz)

    cases = commands.add_parser("cases", help="list the cases")
    selection(cases)
    cases.set_defaults(handler=cmd_cases)

    from .accuracy.command import register as register_accuracy  # the accuracy atlas: conformance/accuracy/
    register_accuracy(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except ConfigError as exc:
        print(f"conformance: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
