"""`cache info | clear`: the persistent reference cache."""
from __future__ import annotations

import argparse

from ..cache import ENV, Cache
from ..gates import EXIT_OK


def cmd_cache(args: argparse.Namespace) -> int:
    """`cache info` says where the reference cache is and what it holds; `cache clear` empties it."""
    cache = Cache()
    if args.action == "clear":
        print(f"removed {cache.clear()} entries from {cache.root}")
    else:
        entries = cache.entries()
        size = sum(p.stat().st_size for p in entries)
        print(f"{cache.root}: {len(entries)} entries, {size / 2**20:.1f} MiB (set {ENV} to move it)")
    return EXIT_OK


def register(commands: argparse._SubParsersAction) -> None:
    sub = commands.add_parser("cache", help="the persistent reference cache: where it is and its size (info), "
                                            "or empty it (clear)")
    sub.add_argument("action", choices=["info", "clear"])
    sub.set_defaults(handler=cmd_cache)
