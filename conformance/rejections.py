"""Which rule a backend's exception rejected the input for: `Rejected(rule)`, the adapter's hook, or its convention.

The rules and each convention's exception signatures are data: data/rejection-rules.yaml.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from .adapter import Rejected
from .documents import read_validated, schema_validator

RULES_FILE = Path(str(resources.files("conformance"))) / "data" / "rejection-rules.yaml"


@dataclass(frozen=True)
class Signature:
    """How a convention signals a rule: the exception's type name and a pattern of its first line."""

    type_name: str
    message: re.Pattern[str]

    def matches(self, error: BaseException) -> bool:
        names = {cls.__name__ for cls in type(error).__mro__}
        return self.type_name in names and self.message.search(first_line(error)) is not None


@dataclass(frozen=True)
class Rules:
    descriptions: Mapping[str, str]
    conventions: Mapping[str, Mapping[str, tuple[Signature, ...]]]  # convention -> rule -> signatures


@dataclass(frozen=True)
class Identified:
    """The rule an exception names (None: no rule could be established), and how it was established."""

    rule: str | None
    how: str
    bug: bool = False  # the adapter named a rule that does not exist


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else ""


@cache
def rules(path: Path = RULES_FILE) -> Rules:
    """The rules file, valid under schemas/rejection-rules.schema.json (ConfigError names file and line)."""
    data, _ = read_validated(path, schema_validator("rejection-rules"))
    conventions: dict[str, dict[str, tuple[Signature, ...]]] = {}
    for rule, entry in data["rules"].items():
        for convention, signatures in entry["conventions"].items():
            conventions.setdefault(convention, {})[rule] = tuple(
                Signature(s["type"], re.compile(s["message"])) for s in signatures)
    return Rules({rule: entry["description"] for rule, entry in data["rules"].items()}, conventions)


def identify(backend: Any, error: BaseException) -> Identified:
    """The rule `error` rejected the input for: `Rejected(rule)`, else the adapter's `rejection_rule(error)` hook,
    else the signatures of its `rejection_convention`; where none of those is declared, no rule is known.

    The error may be a stand-in with the original's type name and text (isolation.py), where the original
    could not travel from a worker process.
    """
    table = rules()
    if isinstance(error, Rejected):
        if error.rule not in table.descriptions:
            return Identified(None, f"Rejected names unknown rule {error.rule!r}", bug=True)
        return Identified(error.rule, "Rejected")
    hook = getattr(backend, "rejection_rule", None)
    if callable(hook):
        rule = hook(error)
        if rule is None:
            return Identified(None, "rejection_rule named no rule")
        if rule not in table.descriptions:
            return Identified(None, f"rejection_rule gave unknown rule {rule!r}", bug=True)
        return Identified(rule, "rejection_rule")
    convention = getattr(backend, "rejection_convention", None)
    if convention is None:
        return Identified(None, "no rule: the adapter declares no rejection_rule hook or convention")
    signatures = table.conventions.get(str(convention))
    if signatures is None:
        return Identified(None, f"unknown rejection_convention {convention!r}", bug=True)
    for rule, candidates in signatures.items():
        if any(signature.matches(error) for signature in candidates):
            return Identified(rule, f"{convention} convention")
    return Identified(None, f"matches no {convention} signature")


def expected_signature(backend: Any, rule: str) -> str:
    """What the backend's convention raises for `rule`, for a message; "" without a convention."""
    signatures = rules().conventions.get(str(getattr(backend, "rejection_convention", None)), {}).get(rule, ())
    return " or ".join(f"{s.type_name} /{s.message.pattern}/" for s in signatures)
