"""The tolerance policy: which values each element of a result may take (data in data/tolerances.yaml).

A value is admissible when it lies in the neighbourhood of the correctly rounded exact value (a few
ulps, relative) or in that of PyTorch's algorithm evaluated in the dtype (`Expected.specified`: a few
units of roundoff of the magnitudes of its terms), and satisfies every invariant (`invariants`).
Derivation: docs/tolerances.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
import yaml

from bce_reference import FORMATS, Expected

from .case import ToleranceOverride


@dataclass(frozen=True)
class Counts:
    """Roundings admitted around each reference, in units of roundoff of the working dtype."""

    exact: float  # times |exact value|: relative
    specified: float  # times the magnitudes of the terms of PyTorch's last sum, around its value in the dtype


@dataclass(frozen=True)
class Policy:
    final_ulps: float
    roundings: dict[str, Counts]
    gradient_roundings: dict[tuple[str, str], Counts]  # (op, differentiated tensor) -> counts


@dataclass(frozen=True)
class Allowed:
    """Largest admissible |got - reference| per element, around the exact value and around the as-specified one."""

    exact: np.ndarray
    specified: np.ndarray | None = None  # None: only the exact neighbourhood (a relation between two calls)
    reach: np.ndarray | None = None  # how far from the exact value any admissible value may lie

    def widest(self) -> np.ndarray:
        return self.exact if self.reach is None else self.reach


def _counts(entry: dict) -> Counts:
    return Counts(float(entry["exact"]), float(entry["specified"]))


@lru_cache(maxsize=1)
def policy() -> Policy:
    text = resources.files("conformance").joinpath("data/tolerances.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    return Policy(
        float(data["final_ulps"]),
        {op: _counts(v) for op, v in data["roundings"].items()},
        {(op, name): _counts(v) for op, by_name in data["gradient_roundings"].items() for name, v in by_name.items()},
    )


def reduction_roundings(terms: int) -> int:
    """Pairwise summation of N terms nests ceil(log2 N) additions; the division by N adds one."""
    return math.ceil(math.log2(terms)) + 1 if terms > 1 else 0


def _finite(values: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(values), values, 0.0)


def allowed(op: str, expected: Expected, override: ToleranceOverride | None = None,
            wrt: str | None = None) -> Allowed:
    """The admissible errors of each element of the result (of the gradient by `wrt`, when given).

    Around the exact value E: k_E u |E| + r(N) u M + ulp(E); around PyTorch's value S in the dtype:
    k_S u T + r(N) u M + k s gain / 2 + ulp(S), where u is the working dtype's unit roundoff, T the
    magnitudes of the terms of the algorithm's last sum, M those of the elements a reduction adds and
    s the smallest subnormal (an underflow in the algorithm, magnified by the factors that follow).
    """
    fmt, work = FORMATS[expected.dtype], FORMATS[expected.working_dtype]
    rules = policy()
    counts = rules.roundings[op] if wrt is None else rules.gradient_roundings[(op, wrt)]
    if override:
        counts = Counts(override.roundings, override.roundings)
    r = reduction_roundings(expected.terms)
    u = work.unit_roundoff
    spec = expected.specified
    value = _finite(expected.value)
    magnitude = np.abs(value) if spec is None else _finite(spec.magnitude)
    gain = 1.0 if expected.gain is None else expected.gain
    # k * s / 2, not s / 2 first: half of float64's smallest subnormal rounds to zero
    underflow = (max(counts.exact, counts.specified) + r) * work.min_subnormal * gain / 2
    common = r * u * magnitude
    with np.errstate(over="ignore", invalid="ignore"):
        exact = counts.exact * u * np.abs(value) + common + rules.final_ulps * fmt.spacing(value)
        if spec is None:
            return Allowed(exact + underflow)
        s_value = _finite(spec.value)
        # an intermediate of PyTorch's algorithm that underflows errs by s / 2, magnified by what follows it
        around = counts.specified * u * spec.scale + common + underflow + rules.final_ulps * fmt.spacing(s_value)
        reach = np.maximum(exact, np.abs(s_value - value) + around)
    return Allowed(exact, around, np.nan_to_num(reach, nan=np.inf))


def allowed_on_terms(expected: Expected, roundings: float) -> Allowed:
    """Around the exact value only, `roundings` units of roundoff of the magnitudes of the formula's terms
    (`Expected.scale`): the bound of a result with no second reference of PyTorch's algorithm in the dtype,
    the second-order and forward-mode derivatives (docs/tolerances.md, "Higher derivatives")."""
    fmt, work = FORMATS[expected.dtype], FORMATS[expected.working_dtype]
    value = _finite(expected.value)
    gain = 1.0 if expected.gain is None else expected.gain
    k = roundings + reduction_roundings(expected.terms)
    with np.errstate(over="ignore", invalid="ignore"):
        # k * s / 2, not s / 2 first: half of float64's smallest subnormal rounds to zero
        bound = (k * work.unit_roundoff * _finite(expected.scale) + k * work.min_subnormal * gain / 2
                 + policy().final_ulps * fmt.spacing(value))
    return Allowed(bound)
