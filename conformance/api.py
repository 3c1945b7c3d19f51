"""The public Python API: run the suite from Python, as `python -m conformance run` does from a shell.

Backends are given as adapter objects (see `conformance.Backend`), as names of known backends
("numpy", "torch-cpu", or one an installed package registers), or as "package.module:attr" specs.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from . import registry, runner
from .adapter import Backend
from .cache import Cache
from .case import Case
from .errors import ConfigError
from .isolation import Settings
from .loader import load_cases
from .registry import Entry
from .results import Run

BackendLike = Backend | Entry | str
"""An adapter object, a registry entry, a backend's name, or a 'package.module:attr' spec."""

PYTHON_ORIGIN = "python object"
"""The origin of an adapter given as an object: a worker process gets the object itself (pickled)."""


def entries(*backends: BackendLike) -> list[Entry]:
    """The registry entries of `backends`, in order (a spec naming a list of adapters gives one entry each)."""
    found: list[Entry] = []
    for item in backends:
        if isinstance(item, Entry):
            found.append(item)
        elif isinstance(item, str):
            found += registry.select([item])
        elif isinstance(item, Backend):
            found.append(Entry(item.name, PYTHON_ORIGIN, item))
        else:
            raise ConfigError(f"{item!r} is neither a backend adapter (see conformance.Backend), a backend name, "
                              f"nor a 'package.module:attr' spec")
    return found


def run(backends: BackendLike | Iterable[BackendLike], cases: Sequence[Case] | None = None, *,
        dtypes: Iterable[str] | None = None, isolation: bool | Settings = True, progress: bool = False,
        cache: bool = False) -> Run:
    """Every case (default: the shipped ones) x dtype (default: each case's own) on every available backend.

    `isolation` True calls the backends in worker processes with the default time limit, as the command line
    does; a `Settings` sets the limits; False calls them in this process (faster, but a crash ends the run).
    `cache` True reads and keeps the references in the reference cache, as the command line does
    (`conformance.cache`: $BCE_CONFORMANCE_CACHE_DIR, else the user's cache directory).
    """
    selected = entries(backends) if isinstance(backends, (str, Entry, Backend)) else entries(*backends)
    settings = Settings() if isolation is True else (isolation or None)
    return runner.run(load_cases() if cases is None else list(cases), selected, dtypes, progress, isolation=settings,
                      cache=Cache() if cache else None)
