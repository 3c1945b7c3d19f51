"""Find backends: built-in modules, the `bce_conformance.backends` entry-point group, and `module:attr` specs."""
from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from . import backends as builtin_package
from . import rejections
from .adapter import OPS, Backend, declared_unsupported
from .errors import ConfigError

ENTRY_POINT_GROUP = "bce_conformance.backends"


@dataclass(frozen=True)
class Entry:
    """A backend that can be selected by name, and where it came from."""

    name: str
    origin: str  # "built-in", "entry point <dist>", or the module:attr spec
    backend: Backend | None
    load_error: str = ""

    def __reduce__(self) -> tuple:
        """Pickles as its description where the backend can be loaded again from it: a worker process re-creates it."""
        if self.backend is not None and (self.origin == "built-in" or ":" in self.origin):
            return recreate, (self.name, self.origin)
        return Entry, (self.name, self.origin, self.backend, self.load_error)


REQUIRED = ("name", "dtypes", "availability", "version")
"""What every adapter has; its ops (adapter.OPS) may be None or absent: the cases that use them are unsupported."""


def _check_adapter(item: Any, origin: str) -> None:
    """One line naming the backend where `item` is not an adapter, lacks every op, or declares nonsense."""
    missing = [a for a in REQUIRED if getattr(item, a, None) is None]
    if missing:
        raise ConfigError(f"{origin}: {item!r} is not a backend adapter (missing {', '.join(missing)})")
    if not any(callable(getattr(item, op, None)) for op in OPS if op != "sigmoid"):
        raise ConfigError(f"{origin}: {item!r} is not a backend adapter (it has neither bce nor bce_with_logits)")
    try:
        declared_unsupported(item)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{origin}: backend {getattr(item, 'name', item)!r}: {exc}") from None
    convention = getattr(item, "rejection_convention", None)
    if convention is not None and convention not in rejections.rules().conventions:
        raise ConfigError(f"{origin}: backend {item.name!r}: unknown rejection_convention {convention!r}; known: "
                          f"{', '.join(sorted(rejections.rules().conventions))}")


def _as_backends(obj: Any, origin: str) -> list[Backend]:
    """Accept an adapter, a list of adapters, an adapter class, or a zero-argument callable returning either."""
    if inspect.isclass(obj) or (callable(obj) and not hasattr(obj, "availability")):
        try:
            obj = obj()
        except Exception as exc:
            raise ConfigError(f"{origin}: calling {obj!r} raised {type(exc).__name__}: {exc}") from None
    items = obj if isinstance(obj, (list, tuple)) else [obj]
    for item in items:
        _check_adapter(item, origin)
    return list(items)


def builtin() -> list[Entry]:
    entries = []
    for module_info in pkgutil.iter_modules(builtin_package.__path__):
        module = importlib.import_module(f"{builtin_package.__name__}.{module_info.name}")
        entries += [Entry(b.name, "built-in", b) for b in getattr(module, "BACKENDS", [])]
    return entries


def plugins() -> list[Entry]:
    """Backends that installed packages register; one that fails to load is listed with the reason."""
    entries = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        origin = f"entry point {ep.name} = {ep.value}"
        try:
            entries += [Entry(b.name, origin, b) for b in _as_backends(ep.load(), origin)]
        except Exception as exc:  # a broken plugin must not hide the others
            entries.append(Entry(ep.name, origin, None, f"failed to load: {type(exc).__name__}: {exc}"))
    return entries


def from_spec(spec: str) -> list[Entry]:
    """Load 'package.module:attr', the working directory on the import path as `python -m` puts it."""
    module_name, _, attr = spec.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except Exception as exc:
        raise ConfigError(f"backend {spec!r}: cannot load: {type(exc).__name__}: {exc}") from None
    return [Entry(b.name, spec, b) for b in _as_backends(obj, f"backend {spec!r}")]


def recreate(name: str, origin: str) -> Entry:
    """Load backend `name` again from its origin: built-in, an entry point, or a module:attr spec."""
    if origin == "built-in":
        candidates = builtin()
    elif origin.startswith("entry point "):
        candidates = [entry for entry in plugins() if entry.origin == origin]
    else:
        candidates = from_spec(origin)
    for entry in candidates:
        if entry.name == name and entry.backend is not None:
            return entry
    raise ConfigError(f"backend {name!r} is no longer found at {origin}")


def known() -> list[Entry]:
    return builtin() + plugins()


def select(names: list[str] | None) -> list[Entry]:
    """The backends to run: the named ones (names or module:attr specs), else every built-in one but those that run
    only when named (an adapter's optional `opt_in`, true for one whose full run takes too long for a default)."""
    if not names:
        return [entry for entry in builtin() if not getattr(entry.backend, "opt_in", False)]
    table = {entry.name: entry for entry in known()}
    selected: list[Entry] = []
    for name in names:
        if ":" in name:
            selected += from_spec(name)
        elif name in table:
            selected.append(table[name])
        else:
            raise ConfigError(f"unknown backend {name!r}; known: {', '.join(sorted(table))} "
                              f"(or give package.module:attr)")
    return selected
