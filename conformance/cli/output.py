"""Output and exit handling of the command line: writing reports, the lines of a verdict, interruption."""
from __future__ import annotations

import argparse
import contextlib
import shlex
import signal
import sys
from pathlib import Path
from typing import Callable, Iterator

from ..errors import ConfigError
from ..gates import EXIT_USAGE, Verdict
from ..report import FORMATS, printable
from ..results import Run


def write(text: str, output: Path | None) -> None:
    """`text` to the file `output`, or to standard output where it is None."""
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{output}: cannot write report: {exc}") from None


def emit(rendered: str, table: Callable[[], str], args: argparse.Namespace) -> None:
    """Write `rendered` to --output (else standard output); the table still prints when the file is another format.
    Control characters are escaped (JSON escapes its own): what a file says cannot drive a terminal."""
    write(rendered if args.format == "json" else printable(rendered), args.output)
    if args.output is not None and args.format != "table":
        sys.stdout.write(printable(table()))


def add_output(sub: argparse.ArgumentParser, formats: tuple[str, ...] | list[str] = FORMATS,
               default: str = "table") -> None:
    """--format and --output."""
    sub.add_argument("--format", choices=formats, default=default)
    sub.add_argument("--output", type=Path, metavar="FILE", help="write the report here (the table still prints)")


def add_progress(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="progress bar (default: only on a terminal)")


def say(line: str) -> None:
    """One line on standard error, its control characters escaped."""
    print(printable(f"conformance: {line}"), file=sys.stderr)


def warn(verdict: Verdict) -> None:
    for warning in verdict.warnings:
        say(f"warning: {warning}")


def explain(verdict: Verdict) -> None:
    """The reasons of a verdict, one line each (a run that ran nothing is an error)."""
    for reason in verdict.reasons:
        say(f"error: {reason}" if verdict.status == EXIT_USAGE else reason)


def command_line(args: argparse.Namespace) -> str:
    return shlex.join(["python", "-m", "conformance", *args.argv])


@contextlib.contextmanager
def interruptible() -> Iterator[list[int]]:
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


def interruption(run: Run, received: list[int]) -> int | None:
    """The signal that stopped an unfinished run (Ctrl-C where none was caught); None for a finished one."""
    if run.complete:
        return None
    return received[-1] if received else signal.SIGINT


def interrupted(run: Run, signum: int, kept: str = "") -> None:
    """Say what stopped the run and how much of it is kept."""
    print(f"conformance: interrupted by {signal.Signals(signum).name} after {len(run.results)} results{kept}",
          file=sys.stderr)
