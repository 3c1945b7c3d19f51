"""`run`, `report`, `diff` and `merge`: run the cases and report, render a results file, compare two reports, merge
the reports of shards. Each judges its run with the one gate policy (conformance/gates.py)."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import re
import sys
from pathlib import Path
from typing import Callable

from .. import diff, expectations, gates, journal, options, report, runner, saved, shards
from ..cache import Cache
from ..case import Case
from ..errors import ConfigError
from ..gates import EXIT_FAILED, EXIT_OK, Policy, Verdict
from ..loader import load_cases
from ..results import Run
from . import output


def select_cases(paths: list[Path] | None, patterns: list[str] | None, cache: Cache | None = None) -> list[Case]:
    """The cases of --cases whose id matches a -k pattern (all without -k); none is a usage error. `cache`: files
    validated before are not validated again (`loader.load_cases`)."""
    cases = load_cases(paths, cache)
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


def publish(verdict: Verdict, args: argparse.Namespace, render: Callable[[Run], str] | None = None) -> int:
    """Write the report of the judged run (`render`, else the renderer of --format), say why it fails; its exit
    status."""
    output.warn(verdict)
    judged = verdict.run
    judged.command = judged.command or output.command_line(args)
    output.emit((render or report.RENDERERS[args.format])(judged), lambda: report.render_table(judged), args)
    output.explain(verdict)
    return verdict.status


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


def cmd_run(args: argparse.Namespace) -> int:
    values = options.Values.of_namespace(args)
    isolation = values.isolation()
    path = _results_path(args)
    if args.output is not None:  # fixed before any backend runs (--no-isolation: an adapter may change directory)
        args.output = args.output.absolute()
    previous = journal.previous(args.resume) if args.resume is not None else {}
    manifests = values.manifests()
    cache = Cache() if args.cache else None
    cases = select_cases(args.cases, args.k, cache)
    # the cases -k or the shard leave out: manifest entries about them only are not worth a warning each
    everything = {case.id for case in (load_cases(args.cases, cache) if manifests and args.k else cases)}
    shard = None
    if args.shard is not None:
        selected = len(cases)
        cases, shard = shards.split(cases, *args.shard, args.dtype)  # type: ignore[call-arg]
        if not cases:
            print(f"conformance: shard {args.shard[0]}/{args.shard[1]} holds none of the {selected} cases selected",
                  file=sys.stderr)
    entries = values.entries()
    if args.update_expectations is not None and len(entries) != 1:
        raise ConfigError(f"{args.update_expectations}: --update-expectations records one backend's manifest; "
                          f"select it with --backend")
    sink = (journal.Journal(path, resume=args.resume is not None, command=output.command_line(args), shard=shard)
            if path is not None else None)
    with output.interruptible() as received, sink or contextlib.nullcontext():
        run = runner.run(cases, entries, args.dtype, progress=args.progress, isolation=isolation, previous=previous,
                         journal=sink, cache=cache, layouts=args.layouts)
    run.shard = shard
    policy = values.policy(manifests, unselected=everything - {case.id for case in cases})
    if args.update_expectations is not None:
        manifests.append(_record(run, policy, args.update_expectations))
        policy = dataclasses.replace(policy, manifests=tuple(manifests))
    signum = output.interruption(run, received)
    status = publish(gates.judge(run, policy, signum), args)
    if signum is not None:
        kept = f"; finished results are in {path} (--resume {path} continues)" if path is not None else ""
        output.interrupted(run, signum, kept)
    return status


def _record(run: Run, policy: Policy, path: Path) -> expectations.Manifest:
    """--update-expectations: the run's failures (--require-grad's included) written to `path` as a manifest."""
    if not run.complete:
        raise ConfigError(f"{path}: not written: the run did not finish, so its failures are not all known")
    manifest = expectations.write(path, dataclasses.replace(run, results=[policy.on_unsupported(r) for r in run.results]))
    print(f"conformance: wrote {len(manifest.entries)} expectations to {path}", file=sys.stderr)
    return manifest


def cmd_report(args: argparse.Namespace) -> int:
    """The report of a results file. An unfinished run cannot pass: exit 1 with the reason, unless --partial asks
    for the report of what it holds."""
    values = options.Values.of_namespace(args)
    policy = values.policy(values.manifests(), partial=args.partial)
    run = journal.read(args.file)
    verdict = gates.judge(run, policy)
    if verdict.unfinished:  # nothing to render that could pass
        output.say(f"error: {args.file}: {gates.unfinished(run)}; --partial renders what it holds, --resume "
                   f"{args.file} finishes it")
        return verdict.status
    status = publish(verdict, args)
    if not run.complete and gates.ran(run):
        output.say(f"{args.file}: the run did not finish; this report holds its {len(run.results)} results")
    return status


def cmd_diff(args: argparse.Namespace) -> int:
    """Exit 1 on a regression between the baseline OLD and NEW."""
    changes = diff.compare(saved.load(args.old), saved.load(args.new), diff.Drift(args.drift_factor, args.drift_above))
    output.emit(diff.RENDERERS[args.format](changes), lambda: diff.render(changes), args)
    return EXIT_FAILED if changes.regressed else EXIT_OK


def cmd_merge(args: argparse.Namespace) -> int:
    """The shards' reports as the report of the whole run; the run's exit status."""
    merged = shards.merge(args.files, output.command_line(args))
    policy = Policy(min_cases=args.min_cases, dtypes=merged.dtypes)
    render = (lambda _: shards.render(merged.document)) if args.format == "json" else None
    return publish(gates.judge(merged.run, policy), args, render)


def _shard(text: str) -> tuple[int, int]:
    try:
        return shards.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_gates(sub: argparse.ArgumentParser) -> None:
    output.add_output(sub)
    for option in options.GATES:
        option.add_argument(sub)


def _add_expectations(sub: argparse.ArgumentParser, update: bool) -> None:
    group = sub.add_mutually_exclusive_group()
    options.EXPECTATIONS.add_argument(group)
    if update:
        group.add_argument("--update-expectations", type=Path, metavar="FILE",
                           help="write this run's failures (one backend) to FILE as a starting manifest, "
                                "and judge the run with it")
    options.STRICT_EXPECTATIONS.add_argument(sub)


def register(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser("run", help="run the cases on backends and report")
    for option in options.SELECTION:
        option.add_argument(run)
    options.BACKEND.add_argument(run)
    options.DTYPE.add_argument(run)
    _add_gates(run)
    _add_expectations(run, update=True)
    output.add_progress(run)
    for option in options.ISOLATING:
        option.add_argument(run)
    run.add_argument("--results", type=Path, metavar="FILE",
                     help="stream results to this JSON Lines file as they finish (default: REPORT.results.jsonl "
                          "beside --output, else none)")
    run.add_argument("--resume", type=Path, metavar="FILE",
                     help="continue the run recorded in FILE: skip what it holds, append the rest to it")
    options.CACHE.add_argument(run)
    options.LAYOUTS_OPTION.add_argument(run)
    run.add_argument("--shard", type=_shard, metavar="K/N",
                     help="run only shard K of N (cases split by a stable hash of their id; merge recombines them)")
    run.set_defaults(handler=cmd_run)

    rerender = commands.add_parser("report", help="render a results file (of an interrupted run: with --partial)")
    rerender.add_argument("file", type=Path, metavar="FILE", help="a results file (.jsonl) written by run")
    rerender.add_argument("--partial", action="store_true",
                          help="render the results of a run that did not finish (default: exit 1, since an "
                               "incomplete run cannot pass)")
    _add_gates(rerender)
    _add_expectations(rerender, update=False)
    rerender.set_defaults(handler=cmd_report)

    compare = commands.add_parser("diff", help="compare a report with a baseline: regressions (exit 1), fixes, drift")
    compare.add_argument("old", type=Path, metavar="OLD", help="the baseline: a JSON report or a results file (.jsonl)")
    compare.add_argument("new", type=Path, metavar="NEW", help="the report to judge against it")
    compare.add_argument("--drift-factor", type=options.positive_number, default=2.0, metavar="F",
                         help="headroom (error / allowed) that grew by this factor is drift (default 2)")
    compare.add_argument("--drift-above", type=options.positive_number, default=0.5, metavar="H",
                         help="... and reached at least this headroom (default 0.5)")
    compare.add_argument("--format", choices=list(diff.RENDERERS), default="table")
    compare.add_argument("--output", type=Path, metavar="FILE", help="write the changes here (the table still prints)")
    compare.set_defaults(handler=cmd_diff)

    merge = commands.add_parser("merge", help="merge the reports of the shards of a run (run --shard K/N)")
    merge.add_argument("files", type=Path, nargs="+", metavar="FILE",
                       help="the JSON report (or results file, .jsonl) of each shard")
    merge.add_argument("-o", "--output", type=Path, required=True, metavar="FILE",
                       help="write the merged report here (the table prints)")
    merge.add_argument("--format", choices=report.FORMATS, default="json",
                       help="json (default: the report of the whole run, with what was merged), or another report "
                            "format")
    options.MIN_CASES.narrowed(help="fail where an available backend ran fewer than N results in a dtype, over all "
                                    "shards").add_argument(merge)
    merge.set_defaults(handler=cmd_merge)
