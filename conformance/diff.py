"""Compare two reports of the same suite (a baseline and a new run): regressions, fixes, new and removed results,
and headroom drift, the numeric change that comes before a failure."""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any

from tabulate import tabulate

from .report import checked
from .results import GATE_FAILURES, Status
from .saved import ResultKey, key, number

FAILING = {str(s) for s in GATE_FAILURES}


class Change(str, Enum):
    REGRESSION = "regression"  # it passed (or was not run) and now fails, or it fails in a new way
    FIX = "fix"  # it failed and now passes
    DRIFT = "drift"  # it still passes, with headroom grown markedly toward the limit
    CHANGED = "changed"  # another change of status (passed -> skipped, failed -> skipped)
    NEW = "new"
    REMOVED = "removed"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Drift:
    """Headroom that grew by at least `factor` to at least `above` counts as drift."""

    factor: float = 2.0
    above: float = 0.5

    def drifted(self, old: float | None, new: float | None) -> bool:
        if old is None or new is None or math.isnan(old) or math.isnan(new):
            return False
        return new >= self.above and new >= self.factor * old


@dataclass(frozen=True)
class Difference:
    change: Change
    key: ResultKey
    old: dict[str, Any] | None
    new: dict[str, Any] | None


@dataclass(frozen=True)
class Diff:
    differences: list[Difference]
    unchanged: int

    @property
    def regressed(self) -> bool:
        return any(d.change == Change.REGRESSION for d in self.differences)


def _classify(old: dict[str, Any], new: dict[str, Any], drift: Drift) -> Change | None:
    before, after = old["status"], new["status"]
    if after in FAILING and before != after:
        return Change.REGRESSION
    if before in FAILING and after == str(Status.PASSED):
        return Change.FIX
    if before != after:
        return Change.CHANGED
    if after == str(Status.PASSED) and drift.drifted(number(old["headroom"]), number(new["headroom"])):
        return Change.DRIFT
    return None


def compare(old: dict[str, Any], new: dict[str, Any], drift: Drift = Drift()) -> Diff:
    """Every result whose standing changed between two report documents, in the new report's order."""
    before = {key(r): r for r in old["results"]}
    after = {key(r): r for r in new["results"]}
    differences, unchanged = [], 0
    for k, result in after.items():
        if k not in before:
            differences.append(Difference(Change.NEW, k, None, result))
        elif (change := _classify(before[k], result, drift)) is not None:
            differences.append(Difference(change, k, before[k], result))
        else:
            unchanged += 1
    differences += [Difference(Change.REMOVED, k, result, None) for k, result in before.items() if k not in after]
    return Diff(differences, unchanged)


def _headroom(result: dict[str, Any] | None) -> str:
    value = None if result is None else number(result["headroom"])
    return "" if value is None else f"{value:.3g}"


def render(diff: Diff) -> str:
    """The changes as a table, regressions first, and a closing line of counts."""
    order, entries = list(Change), diff.differences
    rows = [[str(e.change), backend, case if wrt is None else f"{case} ({checked(wrt)})", dtype,
             "" if e.old is None else e.old["status"], "" if e.new is None else e.new["status"],
             _headroom(e.old), _headroom(e.new), "" if e.new is None else e.new["message"]]
            for e in sorted(entries, key=lambda e: order.index(e.change))
            for backend, case, dtype, wrt in [e.key]]
    counts = ", ".join(f"{c}: {sum(e.change == c for e in entries)}" for c in order)
    table = tabulate(rows, headers=["change", "backend", "case", "dtype", "was", "now", "headroom was", "now",
                                    "message"], maxcolwidths=[None] * 8 + [60]) + "\n\n" if rows else ""
    return f"{table}{counts}, unchanged: {diff.unchanged}\n"
