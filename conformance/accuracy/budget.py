"""Per-region error budgets (YAML, data/accuracy-budget.yaml): turn the atlas into a pass/fail gate.

A budget file lists rules (the last rule matching a row sets its limits) and known deviations:
rows that breach their limits for a recorded reason. A known deviation excuses inaccuracy only; a
NaN or infinity where the specification has a finite result (or the reverse) is always a breach,
and a backend that could not be measured is an error.
"""
from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from ..documents import read, shipped, where
from .records import Row

SELECTORS = ("backend", "op", "dtype", "region")
LIMITS = ("max_ulp", "p99_ulp", "median_ulp", "tiny_max_rel")


def default_budget_file() -> Path:
    return shipped("accuracy-budget.yaml")


@dataclass(frozen=True)
class Selector:
    """Shell-style patterns per field of a row; a missing field matches anything."""

    patterns: dict[str, tuple[str, ...]]

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Selector:
        patterns = {}
        for name in SELECTORS:
            value = raw.get(name)
            if value is not None:
                patterns[name] = (value,) if isinstance(value, str) else tuple(value)
        return cls(patterns)

    def matches(self, row: Row) -> bool:
        return all(any(fnmatchcase(getattr(row, name), p) for p in patterns) for name, patterns in self.patterns.items())


@dataclass(frozen=True)
class Rule:
    selector: Selector
    limits: dict[str, float]
    reason: str
    source: str


@dataclass(frozen=True)
class KnownDeviation:
    selector: Selector
    reason: str
    issue: str
    source: str


@dataclass(frozen=True)
class Budget:
    description: str
    rules: tuple[Rule, ...]
    deviations: tuple[KnownDeviation, ...]
    path: str


def load_budget(path: Path) -> Budget:
    data, root = read(path, "accuracy-budget", "budget file")
    rules = tuple(
        Rule(Selector.parse(raw), {name: float(raw[name]) for name in LIMITS if name in raw}, raw["reason"],
             where(path, root, "budgets", index))
        for index, raw in enumerate(data["budgets"])
    )
    deviations = tuple(
        KnownDeviation(Selector.parse(raw), raw["reason"], raw.get("issue", ""), where(path, root, "known_deviations", index))
        for index, raw in enumerate(data.get("known_deviations", []))
    )
    return Budget(data["description"], rules, deviations, str(path))


@dataclass(frozen=True)
class Verdict:
    """A row judged against its budget."""

    row: Row
    status: str  # "within", "breach", "known" (a known deviation), "ungated" (no rule), "error" (not measured)
    limits: dict[str, float]
    breaches: tuple[str, ...]  # what exceeded its limit, e.g. "max 1.68e+07 ulp > 13"
    rule: Rule | None = None
    deviation: KnownDeviation | None = None

    @property
    def failed(self) -> bool:
        return self.status in ("breach", "error")


@dataclass(frozen=True)
class Judgement:
    source: str  # the budget file
    verdicts: list[Verdict]
    stale: list[KnownDeviation]  # matched rows, none of which breached: no longer needed

    @property
    def passed(self) -> bool:
        return not any(v.failed for v in self.verdicts)


def _breaches(row: Row, limits: dict[str, float]) -> list[str]:
    found = []
    if row.nonfinite:
        found.append(f"{row.nonfinite} NaN or infinite results where the specification has none (or the reverse)")
    for name, limit in limits.items():
        value = getattr(row, name)
        if value is not None and value > limit:
            unit = "" if name == "tiny_max_rel" else " ulp"
            found.append(f"{name.replace('_ulp', '').replace('_', ' ')} {value:.3g}{unit} > {limit:g}{unit}")
    return found


def judge_row(budget: Budget, row: Row) -> Verdict:
    rule = next((r for r in reversed(budget.rules) if r.selector.matches(row)), None)
    if row.error:
        return Verdict(row, "error", rule.limits if rule else {}, (row.error,), rule)
    if rule is None:
        return Verdict(row, "ungated", {}, ())
    breaches = tuple(_breaches(row, rule.limits))
    if not breaches:
        return Verdict(row, "within", rule.limits, (), rule)
    deviation = next((d for d in budget.deviations if d.selector.matches(row)), None)
    if deviation is not None and not row.nonfinite:
        return Verdict(row, "known", rule.limits, breaches, rule, deviation)
    return Verdict(row, "breach", rule.limits, breaches, rule, deviation)


def judge(budget: Budget, rows: list[Row]) -> Judgement:
    verdicts = [judge_row(budget, row) for row in rows]
    stale = []
    for deviation in budget.deviations:
        matched = [v for v in verdicts if v.status in ("within", "known", "breach") and deviation.selector.matches(v.row)]
        if matched and not any(v.status in ("known", "breach") for v in matched):
            stale.append(deviation)
    return Judgement(budget.path, verdicts, stale)
