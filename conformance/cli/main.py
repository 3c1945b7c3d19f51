"""Command line: `python -m conformance run | report | diff | merge | fuzz | accuracy | matrix | backends | cases |
cache`.

Exit 0 all passed, 1 a failure, 2 usage error, 128 + N when signal N (Ctrl-C, SIGTERM) interrupted a run.
"""
from __future__ import annotations

import argparse
import sys

from ..errors import ConfigError
from ..gates import EXIT_USAGE
from . import accuracy, cache, fuzz, listing, matrix, output, run

COMMANDS = (run, listing, fuzz, cache, matrix, accuracy)
"""The modules of the command families, each with its `register(commands)`, in the order --help lists them."""


def parser() -> argparse.ArgumentParser:
    assembled = argparse.ArgumentParser(prog="python -m conformance", description=__doc__)
    commands = assembled.add_subparsers(dest="command", required=True)
    for family in COMMANDS:
        family.register(commands)
    return assembled


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    args.argv = argv
    try:
        return args.handler(args)
    except ConfigError as exc:
        output.say(f"error: {exc}")
        return EXIT_USAGE
