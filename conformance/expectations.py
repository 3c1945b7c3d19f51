"""Expectations manifests: the deviations a backend accepts, marked on results after comparison.

A manifest (YAML, `schemas/expectations.schema.json`) names one backend and lists entries: a case id or
pattern, dtypes, an optional condition on the backend's version and device, the outcome expected
(failed, error, crashed, timeout), an optional error budget, a reason and a link. A result an active
entry lists is "expected" when its status is that outcome within the budget; "unexpected-pass" when it
passed (a failure under --strict-expectations: the gate policy, gates.py, decides); any other failure stays a
failure, its message naming the entry.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Iterable

import yaml
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from .documents import VALIDATION_ERRORS, line_of, read_validated, schema_validator
from .errors import ConfigError
from .results import EXPECTED, GATE_FAILURES, NOT_RUN, UNEXPECTED_PASS, BackendInfo, Result, Run, Status

_VERSION = re.compile(r"\d+(?:\.\d+)+(?:[-+._]?[A-Za-z0-9]+)*")
"""The first version number in a backend's version string ('torch 2.13.0+cpu' gives 2.13.0+cpu)."""


@dataclass(frozen=True)
class Budget:
    """The most a listed failure may deviate: ulps of the output dtype, and error / allowed."""

    max_ulp: float | None = None
    max_headroom: float | None = None

    def excess(self, result: Result) -> str:
        """Why the result lies outside the budget; empty when within it."""
        for limit, measured, what in ((self.max_ulp, result.max_ulp_error, "ulp"),
                                      (self.max_headroom, result.headroom, "headroom")):
            if limit is None:
                continue
            if measured is None:
                return f"no {what} was measured (budget max {what} {limit:g})"
            if not measured <= limit:  # NaN exceeds every budget
                return f"{what} {measured:.3g} exceeds the budget's {limit:g}"
        return ""


@dataclass(frozen=True)
class Expectation:
    """One entry of a manifest; `source` is file:line."""

    source: str
    backend: str
    outcome: Status
    reason: str
    case: str | None = None
    pattern: re.Pattern[str] | None = None
    dtypes: tuple[str, ...] = ()
    wrt: tuple[str, ...] = ()  # only the gradients by these tensors; empty: every result of the case
    version: SpecifierSet | None = None
    device: re.Pattern[str] | None = None
    budget: Budget | None = None
    link: str = ""

    @property
    def label(self) -> str:
        return self.case if self.case is not None else f"pattern {self.pattern.pattern!r}"  # type: ignore[union-attr]

    def selects(self, backend: str, case_id: str, dtype: str, wrt: str | None) -> bool:
        if backend != self.backend or (self.dtypes and dtype not in self.dtypes) or (self.wrt and wrt not in self.wrt):
            return False
        return self.names(case_id)

    def names(self, case_id: str) -> bool:
        """Whether the entry is about this case (by id or pattern), whatever the dtype and gradient."""
        return case_id == self.case if self.pattern is None else self.pattern.search(case_id) is not None

    def condition(self, info: BackendInfo) -> bool | str:
        """Whether the entry applies to this backend's version and device; a string says why it cannot tell."""
        if self.device is not None and not self.device.search(info.device):
            return False
        if self.version is None:
            return True
        match = _VERSION.search(info.version)
        try:
            version = Version(match.group(0)) if match else None
        except InvalidVersion:
            version = None
        if version is None:
            return f"{self.source}: {self.label}: backend {info.name}'s version {info.version!r} has no version number"
        return self.version.contains(version, prereleases=True)

    def describe(self) -> str:
        return f"{self.source}: {self.reason}" + (f" ({self.link})" if self.link else "")


@dataclass(frozen=True)
class Manifest:
    path: Path
    backend: str
    entries: tuple[Expectation, ...]


def _compiled(text: str, where: str, key: str) -> re.Pattern[str]:
    try:
        return re.compile(text)
    except re.error as exc:
        raise ConfigError(f"{where}: {key} {text!r}: invalid regular expression: {exc}") from None


def _entry(raw: dict[str, Any], backend: str, where: str) -> Expectation:
    when = raw.get("when", {})
    try:
        version = SpecifierSet(when["version"]) if "version" in when else None
    except InvalidSpecifier:
        raise ConfigError(f"{where}: when.version {when['version']!r} is not a version specifier such as "
                          f"'>=0.4,<0.5'") from None
    budget = raw.get("budget")
    return Expectation(
        source=where, backend=backend, outcome=Status(raw["outcome"]), reason=raw["reason"], case=raw.get("case"),
        pattern=_compiled(raw["pattern"], where, "pattern") if "pattern" in raw else None,
        dtypes=tuple(raw.get("dtypes", ())), wrt=tuple(raw.get("wrt", ())), version=version,
        device=_compiled(when["device"], where, "when.device") if "device" in when else None,
        budget=Budget(**{k: float(v) for k, v in budget.items()}) if budget else None, link=raw.get("link", ""),
    )


def load(path: Path) -> Manifest:
    """A manifest; raises ConfigError naming the file and line of the first problem."""
    data, root = read_validated(path, schema_validator("expectations"))
    entries = []
    for index, raw in enumerate(data["expectations"]):
        where = f"{path}:{line_of(root, ['expectations', index])}"
        try:
            entries.append(_entry(raw, data["backend"], where))
        except VALIDATION_ERRORS as exc:  # a budget beyond any float, a pattern the regex engine refuses
            raise ConfigError(f"{where}: {type(exc).__name__}: {exc}") from None
    return Manifest(path, data["backend"], tuple(entries))


def mark(result: Result, entry: Expectation) -> Result:
    """The result as the entry that lists it judges it."""
    if result.status in NOT_RUN:
        return result
    if result.status == Status.PASSED:
        return dataclasses.replace(result, expectation=UNEXPECTED_PASS,
                                   message=f"listed as {entry.outcome} in {entry.describe()}, but passed")
    if result.status != entry.outcome:
        return dataclasses.replace(result, message=f"{result.message}; listed as {entry.outcome} in {entry.source}, "
                                                   f"but {result.status}")
    excess = entry.budget.excess(result) if entry.budget is not None else ""
    if excess:
        return dataclasses.replace(result, message=f"{result.message}; listed in {entry.source}, but {excess}")
    return dataclasses.replace(result, expectation=EXPECTED,
                               message=f"expected {entry.outcome} ({entry.describe()}): {result.message}")


def active(manifests: Iterable[Manifest], backends: Iterable[BackendInfo]) -> tuple[list[Expectation], list[str]]:
    """The entries whose backend is available here and whose condition holds; warnings for those that cannot tell."""
    infos = {info.name: info for info in backends if info.available}
    entries, warnings = [], []
    for manifest in manifests:
        for entry in manifest.entries:
            if entry.backend not in infos:
                continue
            holds = entry.condition(infos[entry.backend])
            if isinstance(holds, str):
                warnings.append(holds)
            elif holds:
                entries.append(entry)
    return entries, warnings


def listing(entries: list[Expectation], key: tuple[Any, ...]) -> int | None:
    """The index of the first entry that lists the result with this key (`Result.key`), if any: an entry lists
    a case in every memory layout."""
    return next((i for i, e in enumerate(entries) if e.selects(*key[:4])), None)


def apply(run: Run, manifests: list[Manifest], unselected: Collection[str] = ()) -> tuple[Run, list[str]]:
    """The run with its results marked (the first active entry that lists a result judges it), and one
    warning line per active entry that matches no result; the entries that list only `unselected` cases (left
    out by -k or a shard) get one line together."""
    known = {info.name for info in run.backends}
    for manifest in manifests:
        if manifest.backend not in known:
            raise ConfigError(f"{manifest.path}: expectations of backend {manifest.backend!r}, which this run does "
                              f"not have (backends: {', '.join(sorted(known))})")
    entries, warnings = active(manifests, run.backends)
    used: set[int] = set()
    results = []
    for result in run.results:
        number = listing(entries, result.key)
        if number is None:
            results.append(result)
            continue
        used.add(number)
        results.append(mark(result, entries[number]))
    unused = [e for i, e in enumerate(entries) if i not in used]
    ran = {r.case_id for r in run.results}
    outside = [e for e in unused if any(e.names(case_id) for case_id in unselected)
               and not any(e.names(case_id) for case_id in ran)]
    warnings += [f"{e.source}: expectation {e.label} matches no result" for e in unused if e not in outside]
    if outside:
        warnings.append(f"{len(outside)} expectations list only cases outside this selection (-k or a shard); "
                        f"not checked")
    return dataclasses.replace(run, results=results), warnings


def _budget(results: list[Result]) -> dict[str, float]:
    """The worst measured deviation of these results, where every one of them was measured and finite."""
    budget = {}
    for key, values in (("max_ulp", [r.max_ulp_error for r in results]), ("max_headroom", [r.headroom for r in results])):
        if all(v is not None and math.isfinite(v) for v in values):
            budget[key] = float(max(values))  # type: ignore[type-var, arg-type]
    return budget


def starting_manifest(run: Run) -> dict[str, Any]:
    """Every failure of a one-backend run as a manifest entry (one per case, dtype and outcome), with the
    measured deviation (in that dtype) as its budget and the harness's message as its reason; a gradient case's
    entry names the gradients that failed."""
    backends = {r.backend for r in run.results}
    if len(backends) != 1:
        raise ConfigError(f"--update-expectations writes one backend's manifest; this run has {len(backends)} "
                          f"backends with results")
    groups: dict[tuple[str, str, Status], list[Result]] = {}  # a gradient case's results go together
    for result in run.results:
        if result.status in GATE_FAILURES:
            groups.setdefault((result.case_id, result.dtype, result.status), []).append(result)
    expectations = []
    for (case_id, dtype, status), results in groups.items():
        entry: dict[str, Any] = {"case": case_id, "dtypes": [dtype]}
        wrt = [r.wrt for r in results if r.wrt is not None]
        if wrt:
            entry["wrt"] = wrt
        entry["outcome"] = str(status)
        budget = _budget(results)
        if budget:
            entry["budget"] = budget
        entry["reason"] = results[0].message
        expectations.append(entry)
    return {"backend": backends.pop(), "expectations": expectations}


def write(path: Path, run: Run) -> Manifest:
    """Write the starting manifest of `run` to `path`; the manifest as loaded back."""
    document = starting_manifest(run)
    header = ("# Deviations recorded by --update-expectations: replace each reason with why the deviation is\n"
              "# accepted, and add a link.\n")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=120),
                        encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write expectations: {exc}") from None
    return load(path)
