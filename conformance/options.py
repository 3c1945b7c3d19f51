"""The options that change a verdict, each defined once and rendered twice: as `--NAME` arguments of the command
line (conformance/cli/) and as `--conformance-NAME` options of the pytest plugin, the way pytest-benchmark shares
its option functions between its plugin and its command line.

A value read back with `Options.get` is the same object on both sides, so that turning values into settings
(`isolation`, `policy`) is written once too.
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

from . import named, registry
from .dtypes import NUMPY_DTYPES
from .errors import ConfigError
from .expectations import Manifest
from .expectations import load as load_manifest
from .gates import Policy
from .inputs import LAYOUTS
from .isolation import DEFAULT_TIMEOUT, Settings
from .registry import Entry


def positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def seconds(text: str) -> float:
    try:
        return positive_number(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds") from None


def percent(text: str) -> float:
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage from 0 to 100")
    return value


def count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def size(text: str) -> int:
    """Bytes from '512M', '4G', '1.5G' or a plain number."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 512M or 4G")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def layouts(text: str) -> tuple[str, ...]:
    """'all' or a comma-separated list of layout names."""
    if text == "all":
        return LAYOUTS
    names = tuple(name.strip() for name in text.split(","))
    unknown = [name for name in names if name not in LAYOUTS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown layout {', '.join(unknown)} (known: all, {', '.join(LAYOUTS)})")
    return names


class _Group(Protocol):
    """What both argparse's parsers and groups and pytest's option groups offer."""

    def addoption(self, *opts: str, **attrs: Any) -> None: ...


@dataclass(frozen=True)
class Option:
    """One option: `--NAME` on the command line (or `flags`), `--conformance-NAME` in pytest unless `plugin` is
    False; `settings` are argparse's `add_argument` keywords. A flag with `--no-NAME` (argparse's
    BooleanOptionalAction) is one flag in pytest: `--conformance-no-NAME` where it is on by default there
    (`plugin_default`, else its default), `--conformance-NAME` where it is off."""

    name: str
    help: str
    settings: Mapping[str, Any]
    flags: tuple[str, ...] = ()
    plugin: bool = True
    plugin_default: bool | None = None

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    def add_argument(self, parser: argparse.ArgumentParser | argparse._ActionsContainer) -> None:
        parser.add_argument(*(self.flags or (f"--{self.name}",)), help=self.help, **self.settings)

    @property
    def _plugin_on(self) -> bool | None:
        """Whether a flag with `--no-NAME` is on by default in pytest; None for any other option."""
        if self.settings.get("action") is not argparse.BooleanOptionalAction:
            return None
        return self.settings["default"] if self.plugin_default is None else self.plugin_default

    @property
    def pytest_flag(self) -> str:
        return f"--conformance-{'no-' if self._plugin_on else ''}{self.name}"

    def add_pytest_option(self, group: _Group) -> None:
        settings = dict(self.settings)
        if self._plugin_on is not None:
            settings.update(action="store_false" if self._plugin_on else "store_true", default=self._plugin_on)
        group.addoption(self.pytest_flag, dest=f"conformance_{self.dest}", help=self.help, **settings)

    def narrowed(self, **settings: Any) -> Option:
        """The same option with some settings replaced (fewer choices, another help)."""
        text = settings.pop("help", self.help)
        return dataclasses.replace(self, help=text, settings={**self.settings, **settings})


BACKEND = Option("backend", "backend name or package.module:attr (repeatable; the command line runs every built-in "
                            "backend but the opt-in torch-compile without it, the pytest plugin nothing)",
                 {"action": "append", "metavar": "NAME"})
CASES = Option("cases", "case file or folder (repeatable; default: the shipped cases)",
               {"action": "append", "type": Path, "metavar": "PATH"})
SELECT = Option("k", "select case ids matching REGEX (repeatable)", {"action": "append", "metavar": "REGEX"},
                flags=("-k",), plugin=False)  # pytest has its own -k
DTYPE = Option("dtype", "only this dtype (repeatable)", {"action": "append", "choices": list(NUMPY_DTYPES)})
LAYOUTS_OPTION = Option(
    "layouts", f"hand every case's arrays to the backends in these memory layouts (all: {', '.join(LAYOUTS)}); "
               "default: each case's own (`layouts:` in its file, else c)",
    {"type": layouts, "metavar": "all|NAME[,NAME...]"})
ISOLATION = Option("isolation", "run backend calls in worker processes, so that a crash or hang costs one call's "
                                "result, not the run (the command line's default; --no-isolation runs them in "
                                "this process, for debugging); the pytest plugin runs a case test's call in the "
                                "test's process unless --conformance-isolation",
                   {"action": argparse.BooleanOptionalAction, "default": True}, plugin_default=False)
TIMEOUT = Option("timeout", f"time limit of one backend call in a worker process (default {DEFAULT_TIMEOUT:g})",
                 {"type": seconds, "metavar": "SECONDS"})
MEMORY_LIMIT = Option("memory-limit", "data-segment limit of each worker process, e.g. 4G (default: none)",
                      {"type": size, "metavar": "SIZE"})
EXPECTATIONS = Option("expectations", "an expectations manifest: the deviations a backend accepts (repeatable); a "
                                      "file, or a built-in backend's name for its shipped manifest",
                      {"action": "append", "type": named.manifest, "metavar": "FILE|NAME"})
STRICT_EXPECTATIONS = Option("strict-expectations", "fail a listed deviation that now passes (default: reported as "
                                                    "an unexpected pass); in pytest also the xfail_strict ini option",
                             {"action": "store_true"})
REQUIRE_GRAD = Option("require-grad", "fail gradient cases a backend cannot differentiate (default: reported as "
                                      "unsupported)", {"action": "store_true"})
MIN_COVERAGE = Option("min-coverage", "fail the run where a backend's results judged (passed or failed) are fewer "
                                      "than PERCENT of its results; 100 fails any unsupported, skipped or "
                                      "unverified result", {"type": percent, "metavar": "PERCENT"})
REQUIRE = Option("require", "fail the run where this backend is unavailable, instead of skipping it (repeatable; "
                            "it is selected too)", {"action": "append", "metavar": "NAME"})
MIN_CASES = Option("min-cases", "fail the run where an available backend ran fewer than N results in a dtype (each "
                                "--dtype, default all four)", {"type": count, "metavar": "N"})
CACHE = Option("cache", "read references and tolerances computed by earlier runs from the reference cache, and store "
                        "new ones (default); --no-cache computes every one and stores nothing",
               {"action": argparse.BooleanOptionalAction, "default": True})

SELECTION = (CASES, SELECT)
ISOLATING = (ISOLATION, TIMEOUT, MEMORY_LIMIT)
GATES = (REQUIRE_GRAD, MIN_COVERAGE, REQUIRE, MIN_CASES)
EXPECTING = (EXPECTATIONS, STRICT_EXPECTATIONS)
ALL = (BACKEND, *SELECTION, DTYPE, LAYOUTS_OPTION, *ISOLATING, *EXPECTING, *GATES, CACHE)
PLUGIN = tuple(option for option in ALL if option.plugin)
"""The options of the pytest plugin, in the order its --help lists them."""


@dataclass(frozen=True)
class Values:
    """Option values by `Option.dest`, from argparse's namespace or pytest's config (`get`)."""

    get: Callable[[str], Any]

    @classmethod
    def of_namespace(cls, args: argparse.Namespace) -> Values:
        return cls(lambda dest: getattr(args, dest, None))

    @classmethod
    def of_pytest(cls, getoption: Callable[[str], Any]) -> Values:
        return cls(lambda dest: getoption(f"conformance_{dest}"))

    def __getitem__(self, option: Option) -> Any:
        return self.get(option.dest)

    def entries(self) -> list[Entry]:
        """The backends --backend selects (every built-in one without it), and those --require names besides."""
        entries = registry.select(self[BACKEND])
        selected = {e.name for e in entries} | {e.origin for e in entries}
        required = [name for name in self[REQUIRE] or [] if name not in selected]
        return entries + (registry.select(required) if required else [])

    def isolation(self) -> Settings | None:
        """The worker settings of --isolation, --timeout and --memory-limit; None runs calls in this process."""
        timeout, memory_limit = self[TIMEOUT], self[MEMORY_LIMIT]
        if not self[ISOLATION]:
            if timeout is not None or memory_limit is not None:
                raise ConfigError("--timeout and --memory-limit apply to worker processes, which --no-isolation (or "
                                  "the pytest plugin without --conformance-isolation) does not use")
            return None
        if memory_limit is not None and sys.platform == "win32":
            raise ConfigError("--memory-limit needs POSIX resource limits, which this platform lacks")
        return Settings(DEFAULT_TIMEOUT if timeout is None else timeout, memory_limit)

    def manifests(self) -> list[Manifest]:
        """--expectations FILE...: loaded before anything runs, so a malformed manifest costs no run."""
        return [load_manifest(path) for path in self[EXPECTATIONS] or []]

    def policy(self, manifests: list[Manifest], **facts: Any) -> Policy:
        """The gate policy of these options; `facts` are those of the run rather than options (the cases left out,
        --partial)."""
        return Policy(require_grad=bool(self[REQUIRE_GRAD]), required=tuple(self[REQUIRE] or ()),
                      min_cases=self[MIN_CASES], dtypes=tuple(self[DTYPE] or ()), min_coverage=self[MIN_COVERAGE],
                      manifests=tuple(manifests), strict_expectations=bool(self[STRICT_EXPECTATIONS]), **facts)
