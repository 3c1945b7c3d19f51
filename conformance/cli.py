"""Command line: `python -m conformance run | report | diff | merge | fuzz | accuracy | backends | cases | cache`.

Exit 0 all passed, 1 a failure, 2 usage error, 128 + N when signal N (Ctrl-C, SIGTERM) interrupted a run.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import re
import shlex
import signal
import sys
from pathlib import Path
from typing import Callable, Iterator

from tabulate import tabulate

from bce_reference import FLOAT_DTYPES, OPS

from . import diff, distributed, expectations, journal, matrix, named, registry, report, runner, saved, shards
from .cache import ENV as CACHE_ENV
from .cache import Cache
from .case import Case
from .dtypes import NUMPY_DTYPES
from .errors import ConfigError
from .fuzz import FuzzConfig, fuzz
from .inputs import LAYOUTS
from .isolation import DEFAULT_TIMEOUT, Settings
from .loader import load_cases
from .profiles import PROFILES
from .properties import all_properties
from .results import Run, Status

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


def _require_grad(run: Run) -> None:
    """--require-grad: a gradient case a backend cannot differentiate fails instead of being unsupported."""
    run.results[:] = [
        dataclasses.replace(r, status=Status.FAILED, message=f"{r.message}; --require-grad makes this a failure")
        if r.status == Status.UNSUPPORTED else r
        for r in run.results
    ]


def _require_backends(run: Run, names: list[str]) -> None:
    """--require: mark the named backends (by name or module:attr), so that being unavailable fails the run."""
    known = {b.name for b in run.backends} | {b.selector for b in run.backends}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ConfigError(f"--require {unknown[0]}: no such backend in this run "
                          f"(backends: {', '.join(b.name for b in run.backends)})")
    run.backends[:] = [dataclasses.replace(b, required=bool({b.name, b.selector} & set(names))) for b in run.backends]


def _min_cases(run: Run, minimum: int | None, dtypes: list[str] | None) -> int:
    """--min-cases N: the exit status EXIT_FAILED, with one line, where a backend x dtype ran fewer results."""
    short = [] if minimum is None else report.shortfalls(run, minimum, dtypes or FLOAT_DTYPES)
    if not short:
        return EXIT_OK
    listed = ", ".join(f"{backend} {dtype} ran {count}" for backend, dtype, count in short)
    print(report.printable(f"conformance: --min-cases {minimum} not met: {listed}"), file=sys.stderr)
    return EXIT_FAILED


def _min_coverage(run: Run, minimum: float | None) -> int:
    """--min-coverage P: the exit status EXIT_FAILED, with one line, where a backend judged less than P% of its
    results (the rest unsupported, skipped, unverified or not judged for a fault)."""
    covered = report.coverage(run)
    short = [] if minimum is None else [f"{name} {report.coverage_text(*counts)}" for name, counts in covered.items()
                                        if counts[0] < minimum / 100 * counts[1]]
    if not short:
        return EXIT_OK
    print(f"conformance: --min-coverage {minimum:g}% not met: {', '.join(short)}", file=sys.stderr)
    return EXIT_FAILED


def _manifests(args: argparse.Namespace) -> list[expectations.Manifest]:
    """--expectations FILE...: loaded before anything runs, so a malformed manifest costs no run."""
    return [expectations.load(path) for path in args.expectations or []]


def _expect(run: Run, args: argparse.Namespace, manifests: list[expectations.Manifest]) -> Run:
    """Mark the results the manifests list (and --update-expectations records); warn of entries matching nothing."""
    update = getattr(args, "update_expectations", None)
    if update is not None:
        if not run.complete:
            raise ConfigError(f"{update}: not written: the run did not finish, so its failures are not all known")
        manifests = [*manifests, expectations.write(update, run)]
        print(f"conformance: wrote {len(manifests[-1].entries)} expectations to {update}", file=sys.stderr)
    if not manifests:
        return run
    run, warnings = expectations.apply(run, manifests, args.strict_expectations, getattr(args, "unselected", ()))
    for warning in warnings:
        print(report.printable(f"conformance: warning: {warning}"), file=sys.stderr)
    return run


def _publish(run: Run, args: argparse.Namespace, manifests: list[expectations.Manifest]) -> int:
    """Write the report, print the table, and say how the run went in the exit status."""
    if args.require_grad:
        _require_grad(run)
    _require_backends(run, args.require or [])
    status = _finish(_expect(run, args, manifests), args)
    if status == EXIT_USAGE:
        return status
    return max(status, _min_cases(run, args.min_cases, args.dtype), _min_coverage(run, args.min_coverage))


def _command_line(args: argparse.Namespace) -> str:
    return shlex.join(["python", "-m", "conformance", *args.argv])


def _finish(run: Run, args: argparse.Namespace) -> int:
    """Write the report; the exit status of a run."""
    run.command = run.command or _command_line(args)
    _emit(report.RENDERERS[args.format](run), lambda: report.render_table(run), args)
    return _status(run)


def _emit(rendered: str, table: Callable[[], str], args: argparse.Namespace) -> None:
    """Write `rendered` to --output (else standard output); the table still prints when the file is another format.
    Control characters are escaped (JSON escapes its own): what a file says cannot drive a terminal."""
    _write(rendered if args.format == "json" else report.printable(rendered), args.output)
    if args.output is not None and args.format != "table":
        sys.stdout.write(report.printable(table()))


def _status(run: Run) -> int:
    """The exit status of a run whose report is out: a line for each required backend missing, and for nothing run."""
    missing = report.missing_required(run)
    for backend in missing:
        print(report.printable(f"conformance: required backend {backend.name} is unavailable: {backend.reason}"),
              file=sys.stderr)
    empty_shard = run.shard is not None and not run.results  # a shard may hold no case of a small selection
    if report.ran(run) == 0 and not missing and not empty_shard:
        reasons = "; ".join(f"{b.name}: {b.reason}" for b in run.backends if not b.available)
        print(report.printable(f"conformance: error: nothing ran{' (' + reasons + ')' if reasons else ''}"),
              file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK if report.gate_passed(run) else EXIT_FAILED


def _isolation(args: argparse.Namespace) -> Settings | None:
    if not args.isolation:
        if args.timeout is not None or args.memory_limit is not None:
            raise ConfigError("--timeout and --memory-limit apply to worker processes; drop them or --no-isolation")
        return None
    if args.memory_limit is not None and sys.platform == "win32":
        raise ConfigError("--memory-limit needs POSIX resource limits, which this platform lacks")
    return Settings(DEFAULT_TIMEOUT if args.timeout is None else args.timeout, args.memory_limit)


def _results_path(args: argparse.Namespace) -> Path | None:
    """Where results stream: --resume's file, --results, or beside --output (REPORT.results.jsonl)."""
    if args.resume is not None and args.results is not None and args.results != args.resume:
        raise ConfigError("--resume FILE appends to FILE; --results names another file")
    path = args.resume or args.results
    if path is not None and path == args.output:
        raise ConfigError(f"{path}: the results file and the --output report cannot be the same file")
    if path is None and args.output is not None:
        path = args.output.with_name(f"{args.output.stem}.results.jsonl")
    return path


@contextlib.contextmanager
def _interruptible() -> Iterator[list[int]]:
    """SIGTERM stops a run as Ctrl-C does (finished results kept, workers ended); yields the signals received."""
    received: list[int] = []

    def stop(signum: int, frame: object) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    try:
        saved = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: leave signals alone
        saved = {}
    try:
        yield received
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _layouts(text: str) -> tuple[str, ...]:
    """--layouts: 'all' or a comma-separated list of layout names."""
    if text == "all":
        return LAYOUTS
    names = tuple(name.strip() for name in text.split(","))
    unknown = [name for name in names if name not in LAYOUTS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown layout {', '.join(unknown)} (known: all, {', '.join(LAYOUTS)})")
    return names


def cmd_run(args: argparse.Namespace) -> int:
    isolation = _isolation(args)
    path = _results_path(args)
    if args.output is not None:  # fixed before any backend runs (--no-isolation: an adapter may change directory)
        args.output = args.output.absolute()
    previous = journal.previous(args.resume) if args.resume is not None else {}
    manifests = _manifests(args)
    cases = _select_cases(args.cases, args.k)
    # the cases -k or the shard leave out: manifest entries about them only are not worth a warning each
    everything = {case.id for case in (load_cases(args.cases) if manifests and args.k else cases)}
    shard = None
    if args.shard is not None:
        selected = len(cases)
        cases, shard = shards.split(cases, *args.shard, args.dtype)  # type: ignore[call-arg]
        if not cases:
            print(f"conformance: shard {args.shard[0]}/{args.shard[1]} holds none of the {selected} cases selected",
                  file=sys.stderr)
    args.unselected = everything - {case.id for case in cases}
    entries = registry.select(args.backend)
    if args.update_expectations is not None and len(entries) != 1:
        raise ConfigError(f"{args.update_expectations}: --update-expectations records one backend's manifest; "
                          f"select it with --backend")
    selected = {e.name for e in entries} | {e.origin for e in entries}  # type: ignore[assignment]
    required = [name for name in args.require or [] if name not in selected]  # type: ignore[operator]  # --require selects its backend
    entries += registry.select(required) if required else []
    sink = (journal.Journal(path, resume=args.resume is not None, command=_command_line(args), shard=shard)
            if path is not None else None)
    with _interruptible() as received, sink or contextlib.nullcontext():
        run = runner.run(cases, entries, args.dtype, progress=args.progress, isolation=isolation, previous=previous,
                         journal=sink, cache=Cache() if args.cache else None,
                         layouts=args.layouts)
    run.shard = shard
    status = _publish(run, args, manifests)
    if run.complete:
        return status
    kept = f"; finished results are in {path} (--resume {path} continues)" if path is not None else ""
    return _interrupted(run, received, kept)


def _interrupted(run: Run, received: list[int], kept: str = "") -> int:
    """Say what stopped the run and how much of it is kept; the exit status 128 + the signal's number."""
    signum = received[-1] if received else signal.SIGINT
    print(f"conformance: interrupted by {signal.Signals(signum).name} after {len(run.results)} results{kept}",
          file=sys.stderr)
    return 128 + signum


def cmd_report(args: argparse.Namespace) -> int:
    """The report of a results file. An unfinished run cannot pass: exit 1 with the reason, unless --partial asks
    for the report of what it holds."""
    manifests = _manifests(args)
    run = journal.read(args.file)
    if not run.complete and not args.partial:
        print(f"conformance: error: {args.file}: the run did not finish ({len(run.results)} results), so it cannot "
              f"pass; --partial renders what it holds, --resume {args.file} finishes it", file=sys.stderr)
        return EXIT_FAILED
    status = _publish(run, args, manifests)
    if not run.complete and report.ran(run):
        print(f"conformance: {args.file}: the run did not finish; this report holds its {len(run.results)} results",
              file=sys.stderr)
    return status


def cmd_backends(args: argparse.Namespace) -> int:
    entries = registry.select(args.backend) if args.backend else registry.known()
    rows = [[b.name, "available" if b.available else "unavailable", b.version or b.reason, ", ".join(b.dtypes),
             ", ".join(b.gradients) if b.available else "", b.origin]
            for b in runner.probe(entries, Settings())[0]]
    print(report.printable(tabulate(rows, headers=["backend", "status", "version / reason", "dtypes", "gradients",
                                                   "from"])))
    return EXIT_OK


def cmd_cases(args: argparse.Namespace) -> int:
    cases = _select_cases(args.cases, args.k)
    def expects(case: Case) -> str:
        outcome = f"reject {case.reject}" if case.reject else "value"
        return outcome + (f" of d/d {','.join(case.grad)}" if case.grad else "")

    rows = [[c.id, c.op, expects(c), ",".join(c.dtypes), c.source, c.description] for c in cases]
    print(report.printable(tabulate(rows, headers=["id", "op", "expects", "dtypes", "source", "description"],
                                    maxcolwidths=[None, None, None, None, None, 60])))
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
    isolation = _isolation(args)
    manifests = _manifests(args)
    with _interruptible() as received, distributed.client(args.workers, args.scheduler) as cluster:
        run = fuzz(registry.select(args.backend), properties, config, args.op, args.dtype, progress=args.progress,
                   isolation=isolation, client=cluster)
    status = _finish(_expect(run, args, manifests), args)
    return status if run.complete else _interrupted(run, received)


def cmd_diff(args: argparse.Namespace) -> int:
    """Exit 1 on a regression between the baseline OLD and NEW."""
    changes = diff.compare(saved.load(args.old), saved.load(args.new), diff.Drift(args.drift_factor, args.drift_above))
    _emit(diff.RENDERERS[args.format](changes), lambda: diff.render(changes), args)
    return EXIT_FAILED if changes.regressed else EXIT_OK


def cmd_merge(args: argparse.Namespace) -> int:
    """The shards' reports as the report of the whole run; the run's exit status."""
    merged = shards.merge(args.files, _command_line(args))
    _emit(shards.render(merged.document) if args.format == "json" else report.RENDERERS[args.format](merged.run),
          lambda: report.render_table(merged.run), args)
    status = _status(merged.run)
    return status if status == EXIT_USAGE else max(status, _min_cases(merged.run, args.min_cases, list(merged.dtypes)))


def cmd_cache(args: argparse.Namespace) -> int:
    """`cache info` says where the reference cache is and what it holds; `cache clear` empties it."""
    cache = Cache()
    if args.action == "clear":
        print(f"removed {cache.clear()} entries from {cache.root}")
    else:
        entries = cache.entries()
        size = sum(p.stat().st_size for p in entries)
        print(f"{cache.root}: {len(entries)} entries, {size / 2**20:.1f} MiB (set {CACHE_ENV} to move it)")
    return EXIT_OK


def _register_cache(commands: argparse._SubParsersAction) -> None:
    sub = commands.add_parser("cache", help="the persistent reference cache: where it is and its size (info), "
                                            "or empty it (clear)")
    sub.add_argument("action", choices=["info", "clear"])
    sub.set_defaults(handler=cmd_cache)
def cmd_matrix(args: argparse.Namespace) -> int:
    """Run every available backend (or read --from reports) and write the matrix as Markdown and HTML."""
    areas = matrix.load_areas()
    if args.sources:
        documents = [matrix.load(path) for path in args.sources]
    else:
        run = runner.run(load_cases(args.cases), registry.select(args.backend), progress=args.progress,
                         isolation=_isolation(args))
        available = {b.name for b in run.backends if b.available}
        manifests = [expectations.load(path) for name, path in named.shipped_manifests().items() if name in available]
        run, warnings = expectations.apply(run, manifests)
        for warning in warnings:
            print(f"conformance: warning: {warning}", file=sys.stderr)
        run.command = _command_line(args)
        atlas = matrix.accuracy_document(registry.select(args.backend), args.progress)  # the accuracy area
        documents = [json.loads(report.render_json(run)), atlas]
        if args.report is not None:
            _write(report.render_json(run), args.report)
            _write(json.dumps(atlas, indent=2) + "\n", args.report.with_suffix(".accuracy.json"))
    built = matrix.build(documents, areas)
    _write(matrix.render_markdown(built), args.output_dir / "matrix.md")
    _write(matrix.render_html(built), args.output_dir / "matrix.html")
    print(f"conformance: wrote {args.output_dir / 'matrix.md'} and {args.output_dir / 'matrix.html'} "
          f"({len(built.backends)} backends x {len(areas)} areas)", file=sys.stderr)
    return EXIT_OK


def _register_matrix(commands: argparse._SubParsersAction) -> None:
    sub = commands.add_parser("matrix", help="per backend x area: pass rate and classes of deviation, as Markdown "
                                             "and one self-contained HTML page")
    sub.add_argument("--from", dest="sources", nargs="+", type=Path, metavar="REPORT",
                     help="render these JSON reports (or results files) and accuracy atlases (accuracy --format "
                          "json), e.g. one each per framework environment, instead of running")
    sub.add_argument("--backend", action="append", metavar="NAME",
                     help="backend name or package.module:attr (repeatable; default: every built-in backend)")
    sub.add_argument("--cases", action="append", type=Path, metavar="PATH", help="case file or folder (repeatable)")
    sub.add_argument("--report", type=Path, metavar="FILE",
                     help="also write the run's JSON report here, and its accuracy atlas beside it (.accuracy.json)")
    sub.add_argument("--output-dir", type=Path, default=Path("matrix"), metavar="DIR",
                     help="where matrix.md and matrix.html go (default: ./matrix)")
    sub.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="progress bar (default: only on a terminal)")
    sub.add_argument("--isolation", action=argparse.BooleanOptionalAction, default=True,
                     help="run backend calls in worker processes (default)")
    sub.set_defaults(handler=cmd_matrix, timeout=None, memory_limit=None)


def _register_merge(commands: argparse._SubParsersAction) -> None:
    sub = commands.add_parser("merge", help="merge the reports of the shards of a run (run --shard K/N)")
    sub.add_argument("files", type=Path, nargs="+", metavar="FILE",
                     help="the JSON report (or results file, .jsonl) of each shard")
    sub.add_argument("-o", "--output", type=Path, required=True, metavar="FILE",
                     help="write the merged report here (the table prints)")
    sub.add_argument("--format", choices=report.FORMATS, default="json",
                     help="json (default: the report of the whole run, with what was merged), or another report format")
    sub.add_argument("--min-cases", type=_count, metavar="N",
                     help="fail where an available backend ran fewer than N results in a dtype, over all shards")
    sub.set_defaults(handler=cmd_merge)


def _register_diff(commands: argparse._SubParsersAction) -> None:
    sub = commands.add_parser("diff", help="compare a report with a baseline: regressions (exit 1), fixes, drift")
    sub.add_argument("old", type=Path, metavar="OLD", help="the baseline: a JSON report or a results file (.jsonl)")
    sub.add_argument("new", type=Path, metavar="NEW", help="the report to judge against it")
    sub.add_argument("--drift-factor", type=_positive_number, default=2.0, metavar="F",
                     help="headroom (error / allowed) that grew by this factor is drift (default 2)")
    sub.add_argument("--drift-above", type=_positive_number, default=0.5, metavar="H",
                     help="... and reached at least this headroom (default 0.5)")
    sub.add_argument("--format", choices=list(diff.RENDERERS), default="table")
    sub.add_argument("--output", type=Path, metavar="FILE", help="write the changes here (the table still prints)")
    sub.set_defaults(handler=cmd_diff)


def _positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def _positive(text: str) -> float:
    """Seconds."""
    try:
        return _positive_number(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds") from None


def _shard(text: str) -> tuple[int, int]:
    try:
        return shards.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _percent(text: str) -> float:
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage from 0 to 100")
    return value


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def _size(text: str) -> int:
    """Bytes from '512M', '4G', '1.5G' or a plain number."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 512M or 4G")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m conformance", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def selection(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--cases", action="append", type=Path, metavar="PATH",
                         help="case file or folder (repeatable; default: the shipped cases)")
        sub.add_argument("-k", action="append", metavar="REGEX", help="select case ids matching REGEX (repeatable)")

    def isolating(sub: argparse.ArgumentParser, cost: str) -> None:
        sub.add_argument("--isolation", action=argparse.BooleanOptionalAction, default=True,
                         help=f"run backend calls in worker processes, so {cost} (default); "
                              "--no-isolation runs them in this process, for debugging")
        sub.add_argument("--timeout", type=_positive, metavar="SECONDS",
                         help=f"time limit of one backend call (default {DEFAULT_TIMEOUT:g})")
        sub.add_argument("--memory-limit", type=_size, metavar="SIZE",
                         help="data-segment limit of each worker process, e.g. 4G (default: none)")

    def expecting(sub: argparse.ArgumentParser, update: bool) -> None:
        group = sub.add_mutually_exclusive_group()
        group.add_argument("--expectations", action="append", type=named.manifest, metavar="FILE|NAME",
                           help="an expectations manifest: the deviations a backend accepts (repeatable); a file, "
                                "or a built-in backend's name for its shipped manifest")
        if update:
            group.add_argument("--update-expectations", type=Path, metavar="FILE",
                               help="write this run's failures (one backend) to FILE as a starting manifest, "
                                    "and judge the run with it")
        sub.add_argument("--strict-expectations", action="store_true",
                         help="fail a listed deviation that now passes (default: reported as an unexpected pass)")

    def reporting(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--format", choices=report.FORMATS, default="table")
        sub.add_argument("--output", type=Path, metavar="FILE", help="write the report here (the table still prints)")
        sub.add_argument("--require-grad", action="store_true",
                         help="fail gradient cases a backend cannot differentiate (default: reported as unsupported)")
        sub.add_argument("--min-coverage", type=_percent, metavar="PERCENT",
                         help="fail the run where a backend's results judged (passed or failed) are fewer than "
                              "PERCENT of its results; 100 fails any unsupported, skipped or unverified result")
        sub.add_argument("--require", action="append", metavar="NAME",
                         help="fail the run where this backend is unavailable, instead of skipping it (repeatable; "
                              "run selects it too)")
        sub.add_argument("--min-cases", type=_count, metavar="N",
                         help="fail the run where an available backend ran fewer than N results in a dtype "
                              "(each --dtype, default all four)")

    run = commands.add_parser("run", help="run the cases on backends and report")
    selection(run)
    run.add_argument("--backend", action="append", metavar="NAME",
                     help="backend name or package.module:attr (repeatable; default: every built-in backend)")
    run.add_argument("--dtype", action="append", choices=list(NUMPY_DTYPES), help="only this dtype (repeatable)")
    reporting(run)
    expecting(run, update=True)
    run.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="progress bar (default: only on a terminal)")
    isolating(run, "a crash or hang costs one case")
    run.add_argument("--results", type=Path, metavar="FILE",
                     help="stream results to this JSON Lines file as they finish (default: REPORT.results.jsonl "
                          "beside --output, else none)")
    run.add_argument("--resume", type=Path, metavar="FILE",
                     help="continue the run recorded in FILE: skip what it holds, append the rest to it")
    run.add_argument("--cache", action=argparse.BooleanOptionalAction, default=True,
                     help="read references and tolerances computed by earlier runs from the reference cache, and "
                          "store new ones (default); --no-cache computes every one and stores nothing")
    run.add_argument("--layouts", type=_layouts, metavar="all|NAME[,NAME...]",
                     help="hand every case's arrays to the backends in these memory layouts (all: "
                          f"{', '.join(LAYOUTS)}); default: each case's own (`layouts:` in its file, else c)")
    run.add_argument("--shard", type=_shard, metavar="K/N",
                     help="run only shard K of N (cases split by a stable hash of their id; merge recombines them)")
    run.set_defaults(handler=cmd_run)

    rerender = commands.add_parser("report", help="render a results file (of an interrupted run: with --partial)")
    rerender.add_argument("file", type=Path, metavar="FILE", help="a results file (.jsonl) written by run")
    rerender.add_argument("--partial", action="store_true",
                          help="render the results of a run that did not finish (default: exit 1, since an "
                               "incomplete run cannot pass)")
    reporting(rerender)
    expecting(rerender, update=False)
    rerender.set_defaults(handler=cmd_report, dtype=None)

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
                          help="ci: 50 examples, seed 0; nightly: 10000 examples, a fresh seed (default: ci); "
                               "the hypothesis profiles bce-ci and bce-nightly")
    fuzz_cmd.add_argument("--examples", type=int, metavar="N", help="examples per property x op x dtype x backend")
    fuzz_cmd.add_argument("--seed", type=int, metavar="N", help="hypothesis seed (the report prints the one used)")
    fuzz_cmd.add_argument("--database", type=Path, metavar="DIR", help="hypothesis example database (default: none)")
    fuzz_cmd.add_argument("--save-failures", type=Path, metavar="DIR",
                          help="write each shrunk counterexample as a YAML case file here")
    fuzz_cmd.add_argument("--format", choices=report.FORMATS, default="table")
    fuzz_cmd.add_argument("--output", type=Path, metavar="FILE", help="write the report here (the table still prints)")
    fuzz_cmd.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                          help="progress bar (default: only on a terminal)")
    isolating(fuzz_cmd, "a crash or hang ends one property's search with a counterexample, not the run")
    expecting(fuzz_cmd, update=False)
    distributed.add_options(fuzz_cmd)
    fuzz_cmd.set_defaults(handler=cmd_fuzz)

    cases = commands.add_parser("cases", help="list the cases")
    selection(cases)
    cases.set_defaults(handler=cmd_cases)

    _register_diff(commands)
    _register_merge(commands)
    _register_cache(commands)
    _register_matrix(commands)

    from .accuracy.command import register as register_accuracy  # the accuracy atlas: conformance/accuracy/
    register_accuracy(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    args.argv = argv
    try:
        return args.handler(args)
    except ConfigError as exc:
        print(report.printable(f"conformance: error: {exc}"), file=sys.stderr)
        return EXIT_USAGE
