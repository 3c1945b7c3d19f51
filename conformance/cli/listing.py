"""`backends` and `cases`: what there is to run."""
from __future__ import annotations

import argparse

from tabulate import tabulate

from .. import options, probing, registry
from ..case import Case
from ..gates import EXIT_OK
from ..isolation import Settings
from ..report import printable
from .run import select_cases


def cmd_backends(args: argparse.Namespace) -> int:
    entries = registry.select(args.backend) if args.backend else registry.known()
    rows = [[b.name, "available" if b.available else "unavailable", b.version or b.reason, ", ".join(b.dtypes),
             ", ".join(b.gradients) if b.available else "", b.origin]
            for b in probing.probe(entries, Settings())[0]]
    print(printable(tabulate(rows, headers=["backend", "status", "version / reason", "dtypes", "gradients", "from"])))
    return EXIT_OK


def _expects(case: Case) -> str:
    outcome = f"reject {case.reject}" if case.reject else "value"
    return outcome + (f" of d/d {','.join(case.grad)}" if case.grad else "")


def cmd_cases(args: argparse.Namespace) -> int:
    cases = select_cases(args.cases, args.k)
    rows = [[c.id, c.op, _expects(c), ",".join(c.dtypes), c.source, c.description] for c in cases]
    print(printable(tabulate(rows, headers=["id", "op", "expects", "dtypes", "source", "description"],
                             maxcolwidths=[None, None, None, None, None, 60])))
    print(f"\n{len(cases)} cases")
    return EXIT_OK


def register(commands: argparse._SubParsersAction) -> None:
    backends = commands.add_parser("backends", help="list backends with availability and reason")
    backends.add_argument("--backend", action="append", metavar="NAME", help="only these (names or module:attr)")
    backends.set_defaults(handler=cmd_backends)

    cases = commands.add_parser("cases", help="list the cases")
    for option in options.SELECTION:
        option.add_argument(cases)
    cases.set_defaults(handler=cmd_cases)
