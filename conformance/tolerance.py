"""The tolerance policy: how much error each element of a result may carry (data in data/tolerances.yaml)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
import yaml

from reference import FORMATS, Expected

from .case import ToleranceOverride


@dataclass(frozen=True)
class Policy:
    final_ulps: float
    roundings: dict[str, float]
    gradient_roundings: dict[tuple[str, str], float]  # (op, differentiated tensor) -> count


@lru_cache(maxsize=1)
def policy() -> Policy:
    text = resources.files("conformance").joinpath("data/tolerances.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    return Policy(
        float(data["final_ulps"]),
        {op: float(v["count"]) for op, v in data["roundings"].items()},
        {(op, name): float(v["count"])
         for op, by_name in data["gradient_roundings"].items() for name, v in by_name.items()},
    )


def reduction_roundings(terms: int) -> int:
    """Pairwise summation of N terms nests ceil(log2 N) additions; the division by N adds one."""
    return math.ceil(math.log2(terms)) + 1 if terms > 1 else 0


def allowed(op: str, expected: Expected, override: ToleranceOverride | None = None,
            wrt: str | None = None) -> np.ndarray:
    """Largest admissible |got - expected| per element of the result (of the gradient by `wrt`, when given).

    The formula's roundings are counted in the working dtype (with mixed dtypes, PyTorch evaluates
    log sigmoid(x) in the input's dtype); the last rounding is in the output dtype.
    """
    fmt, work = FORMATS[expected.dtype], FORMATS[expected.working_dtype]
    rules = policy()
    if override:
        k = override.roundings
    else:
        k = rules.roundings[op] if wrt is None else rules.gradient_roundings[(op, wrt)]
    k += reduction_roundings(expected.terms)
    spacing = fmt.spacing(np.where(np.isfinite(expected.value), expected.value, 0.0))
    gain = 1.0 if expected.gain is None else expected.gain
    # k * s / 2, not s / 2 first: half of float64's smallest subnormal rounds to zero
    underflow = k * work.min_subnormal * gain / 2
    return k * work.unit_roundoff * expected.scale + underflow + rules.final_ulps * spacing
