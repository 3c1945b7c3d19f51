"""Probe backends before anything runs: is each available, which version, dtypes, gradients and device it declares.

Used by every command that calls backends (run, fuzz, accuracy, the pytest plugin) to learn what it may call.
"""
from __future__ import annotations

import sys
from typing import Iterable

from .adapter import GRADIENT_METHODS, supports_grad
from .execution import describe
from .isolation import Settings
from .isolation import probe as isolation_probe
from .registry import Entry
from .results import BackendInfo


def inspect_one(entry: Entry) -> BackendInfo:
    """What the entry's backend declares; an adapter whose probe breaks (sys.exit, even) is unavailable, with the reason."""
    if entry.backend is None:
        return BackendInfo(entry.name, entry.origin, False, entry.load_error)
    backend = entry.backend
    try:
        device = str(getattr(backend, "device", ""))  # optional: where it computes
        availability = backend.availability()
        version = str(backend.version()) if availability.available else ""  # a number, say, becomes its text
        dtypes = tuple(sorted(backend.dtypes))
        available, reason = bool(availability.available), str(availability.reason)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        return BackendInfo(entry.name, entry.origin, False, f"availability check raised {describe(exc)}")
    gradients = tuple(op for op in GRADIENT_METHODS if supports_grad(backend, op))
    return BackendInfo(entry.name, entry.origin, available, reason, version, dtypes, gradients, device,
                       stateful=bool(getattr(backend, "stateful", False)))


def inspect(entries: Iterable[Entry]) -> list[BackendInfo]:
    """`inspect_one` each entry, in this process."""
    return [inspect_one(entry) for entry in entries]


def probe(entries: Iterable[Entry], isolation: Settings | None = None) -> tuple[list[BackendInfo], list[str]]:
    """`inspect` (in a child process under `isolation`, so that a probe that exits or crashes costs its backend
    only), and the top-level modules that probing imported (torch, say): worth importing once for all worker
    processes (`isolation.Workers`'s `preload`)."""
    if isolation is not None:
        infos, imported = isolation_probe(list(entries), inspect_one, isolation.timeout)
        return infos, sorted(imported)
    modules = set(sys.modules)
    infos = inspect(entries)
    return infos, [name for name in set(sys.modules) - modules
                   if "." not in name and getattr(sys.modules[name], "__file__", None)]
