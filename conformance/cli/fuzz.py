"""`fuzz`: search generated inputs for property violations (hypothesis), judged with the one gate policy."""
from __future__ import annotations

import argparse
from pathlib import Path

from bce_reference import FLOAT_DTYPES, OPS

from .. import distributed, gates, options
from ..errors import ConfigError
from ..fuzz import FuzzConfig, fuzz
from ..profiles import PROFILES
from ..properties import all_properties
from . import output
from .run import publish


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
    values = options.Values.of_namespace(args)
    isolation = values.isolation()
    policy = values.policy(values.manifests())
    with output.interruptible() as received, distributed.client(args.workers, args.scheduler) as cluster:
        run = fuzz(values.entries(), properties, config, args.op, args.dtype, progress=args.progress,
                   isolation=isolation, client=cluster)
    signum = output.interruption(run, received)
    status = publish(gates.judge(run, policy, signum), args)
    if signum is not None:
        output.interrupted(run, signum)
    return status


def register(commands: argparse._SubParsersAction) -> None:
    sub = commands.add_parser("fuzz", help="search generated inputs for property violations (hypothesis)")
    options.BACKEND.add_argument(sub)
    sub.add_argument("--property", action="append", metavar="ID", help="only this property (repeatable)")
    sub.add_argument("--op", action="append", choices=list(OPS), help="only this op (repeatable)")
    options.DTYPE.narrowed(choices=list(FLOAT_DTYPES)).add_argument(sub)
    sub.add_argument("--profile", choices=list(PROFILES), default="ci",
                     help="ci: 50 examples, seed 0; nightly: 10000 examples, a fresh seed (default: ci); "
                          "the hypothesis profiles bce-ci and bce-nightly")
    sub.add_argument("--examples", type=int, metavar="N", help="examples per property x op x dtype x backend")
    sub.add_argument("--seed", type=int, metavar="N", help="hypothesis seed (the report prints the one used)")
    sub.add_argument("--database", type=Path, metavar="DIR", help="hypothesis example database (default: none)")
    sub.add_argument("--save-failures", type=Path, metavar="DIR",
                     help="write each shrunk counterexample as a YAML case file here")
    output.add_output(sub)
    output.add_progress(sub)
    for option in options.ISOLATING:
        option.add_argument(sub)
    group = sub.add_mutually_exclusive_group()  # as run's, whose --update-expectations fuzz lacks
    options.EXPECTATIONS.add_argument(group)
    options.STRICT_EXPECTATIONS.add_argument(sub)
    distributed.add_options(sub)
    sub.set_defaults(handler=cmd_fuzz)
