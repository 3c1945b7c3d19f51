"""Compare two reports of the same suite (a baseline and a new run): regressions, fixes, new and removed results,
and headroom drift, the numeric change that comes before a failure."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from enum import Enum
from typing import Any

from tabulate import tabulate

from .report import checked
from .results import GATE_FAILURES, Result, ResultKey, Run, Status, json_safe


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
    old: Result | None
    new: Result | None


@dataclass(frozen=True)
class Diff:
    differences: list[Difference]
    unchanged: int

    @property
    def regressed(self) -> bool:
        return any(d.change == Change.REGRESSION for d in self.differences)


def _classify(old: Result, new: Result, drift: Drift) -> Change | None:
    before, after = old.status, new.status
    if after in GATE_FAILURES and before != after:
        return Change.REGRESSION
    if before in GATE_FAILURES and after == Status.PASSED:
        return Change.FIX
    if before != after:
        return Change.CHANGED
    if after == Status.PASSED and drift.drifted(old.headroom, new.headroom):
        return Change.DRIFT
    return None


def compare(old: Run, new: Run, drift: Drift = Drift()) -> Diff:
    """Every result whose standing changed between two runs (`saved.load`), in the new run's order."""
    before = {r.key: r for r in old.results}
    after = {r.key: r for r in new.results}
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


def _headroom(result: Result | None) -> str:
    value = None if result is None else result.headroom
    return "" if value is None else f"{value:.3g}"


HEADERS = ["change", "backend", "case", "dtype", "was", "now", "headroom was", "now", "message"]


def _rows(diff: Diff) -> list[list[str]]:
    """One row per difference, regressions first."""
    order = list(Change)
    return [[str(e.change), backend, case if wrt is None else f"{case} ({checked(wrt)})",
             dtype if layout == "c" else f"{dtype} {layout}",
             "" if e.old is None else str(e.old.status), "" if e.new is None else str(e.new.status),
             _headroom(e.old), _headroom(e.new), "" if e.new is None else e.new.message]
            for e in sorted(diff.differences, key=lambda e: order.index(e.change))
            for backend, case, dtype, wrt, layout in [e.key]]


def counts(diff: Diff) -> dict[str, int]:
    return {str(c): sum(e.change == c for e in diff.differences) for c in Change} | {"unchanged": diff.unchanged}


def _closing(diff: Diff) -> str:
    return ", ".join(f"{change}: {count}" for change, count in counts(diff).items()) + "\n"


def render(diff: Diff) -> str:
    """The changes as a table, regressions first, and a closing line of counts."""
    rows = _rows(diff)
    table = tabulate(rows, headers=HEADERS, maxcolwidths=[None] * 8 + [60]) + "\n\n" if rows else ""
    return f"{table}{_closing(diff)}"


def render_markdown(diff: Diff) -> str:
    """The changes as a GitHub table (a pull request comment, a job summary), and the counts."""
    rows = [[cell.replace("|", "\\|").replace("\n", " ") for cell in row] for row in _rows(diff)]
    table = tabulate(rows, headers=HEADERS, tablefmt="github") + "\n\n" if rows else ""
    return f"{table}{_closing(diff)}"


def _record(result: Result | None) -> dict[str, Any] | None:
    """A result as the reports hold it."""
    return None if result is None else json_safe(result.to_dict())


def render_json(diff: Diff) -> str:
    """The changes for a machine: each with both results as the reports hold them, the counts, the verdict."""
    document = {
        "regressed": diff.regressed,
        "counts": counts(diff),
        "changes": [{"change": str(e.change), "backend": backend, "case_id": case, "dtype": dtype, "wrt": wrt,
                     "layout": layout, "old": _record(e.old), "new": _record(e.new)}
                    for e in diff.differences for backend, case, dtype, wrt, layout in [e.key]],
    }
    return json.dumps(document, indent=2, allow_nan=False) + "\n"


RENDERERS = {"table": render, "markdown": render_markdown, "json": render_json}
