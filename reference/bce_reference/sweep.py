"""Vectorised element-wise losses for accuracy sweeps: millions of points a second, far below half an ulp.

The exact path (`exact`, 256-bit mpmath) settles one element in tens of microseconds; an accuracy
sweep needs millions. Here the working type is float64 for float16, bfloat16 and float32 outputs
(29 or more bits beyond the output's precision) and `numpy.longdouble` for float64 outputs, which
must carry at least 64 significand bits (x86-64: 11 beyond float64; `working_type` refuses a
narrower one). Each loss is a sum of non-negative terms for targets in [0, 1] and pos_weight >= 0,
so nothing cancels and the result carries a few units of the working precision:

    bce              -(y * max(log p, -100) + (1 - y) * max(log1p(-p), -100))
    bce_with_logits  (1 - y) * softplus(x) + pw * y * softplus(-x),
                     softplus(+-x) = max(+-x, 0) + log1p(exp(-|x|))

(the same arrangement as `fast`; the second equals the specified (1 - y) x - ((pw - 1) y + 1)
log sigmoid(x) exactly). Values are returned unrounded, in the working type, so an error can be
measured in fractions of an ulp. Measured against `exact` in tests/test_accuracy_reference.py;
figures in docs/accuracy.md.
"""
from __future__ import annotations

import numpy as np

from .formats import FORMATS

WORKING = {"float16": np.float64, "bfloat16": np.float64, "float32": np.float64, "float64": np.longdouble}
EXTRA_BITS = 10
"""The working type must carry at least this many significand bits beyond the output dtype's."""

OPS = ("bce", "bce_with_logits")

Values = np.ndarray | float


class PrecisionError(RuntimeError):
    """This platform has no working type precise enough for the dtype (a 64-bit longdouble is missing)."""


def working_type(dtype: str) -> type:
    wide = WORKING[dtype]
    bits = np.finfo(wide).nmant + 1  # type: ignore[type-var]
    if bits < FORMATS[dtype].precision + EXTRA_BITS:
        raise PrecisionError(f"{dtype} sweeps need a working type of at least {FORMATS[dtype].precision + EXTRA_BITS} "
                             f"significand bits; numpy.{wide.__name__} has {bits} on this platform")
    return wide


def _wide(values: Values, wide: type) -> np.ndarray | float:
    """Exact conversion (bfloat16 goes through float64, which holds every value of every dtype)."""
    if np.ndim(values) == 0:
        return wide(float(values))
    return np.asarray(values).astype(np.float64).astype(wide, copy=False)


def _check_domain(y: Values, pos_weight: Values | None) -> None:
    if np.any(np.asarray(y) < 0) or np.any(np.asarray(y) > 1) or np.any(np.isnan(y)):
        raise ValueError("targets must lie in [0, 1]: outside it the terms may cancel and this path is not accurate")
    if pos_weight is not None and (np.any(np.asarray(pos_weight) < 0) or np.any(np.isnan(pos_weight))):
        raise ValueError("pos_weight must be >= 0: a negative one may cancel and this path is not accurate")


def _times(term: np.ndarray, factor: Values) -> np.ndarray:
    """term * factor, skipping the pass where factor is the number 1."""
    return term if np.ndim(factor) == 0 and factor == 1 else term * factor


def _sum(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray:
    return b if a is None else a if b is None else a + b  # type: ignore[return-value]


def bce(p: np.ndarray, y: Values, dtype: str) -> np.ndarray:
    """BCE of p in [0, 1] and targets y (an array, or one number for every element)."""
    _check_domain(y, None)
    wide = working_type(dtype)
    p, y = _wide(p, wide), _wide(y, wide)  # type: ignore[assignment]
    positive = negative = None  # a hard target needs one of the two logs only
    with np.errstate(divide="ignore"):
        if np.ndim(y) or y != 0:
            positive = _times(-np.maximum(np.log(p), -100), y)
        if np.ndim(y) or y != 1:
            negative = _times(-np.maximum(np.log1p(-p), -100), 1 - y)
    return _sum(positive, negative)


def bce_with_logits(x: np.ndarray, y: Values, pos_weight: Values | None, dtype: str) -> np.ndarray:
    """BCE with logits of finite x; y and pos_weight are arrays, or one number for every element."""
    _check_domain(y, pos_weight)
    wide = working_type(dtype)
    x, y = _wide(x, wide), _wide(y, wide)  # type: ignore[assignment]
    with np.errstate(under="ignore"):
        tail = np.log1p(np.exp(-np.abs(x)))  # softplus(-|x|)
    negative = positive = None
    if np.ndim(y) or y != 1:
        negative = _times(np.maximum(x, 0) + tail, 1 - y)
    if np.ndim(y) or y != 0:
        positive = _times(np.maximum(-x, 0) + tail, y if pos_weight is None else _wide(pos_weight, wide) * y)
    return _sum(negative, positive)


def loss(op: str, dtype: str, input: np.ndarray, target: Values, pos_weight: Values | None = None) -> np.ndarray:
    """The loss of each element of `input` (in `dtype`), unrounded, in `working_type(dtype)`."""
    if op == "bce":
        if pos_weight is not None:
            raise ValueError("bce takes no pos_weight")
        return bce(input, target, dtype)
    if op == "bce_with_logits":
        return bce_with_logits(input, target, pos_weight, dtype)
    raise ValueError(f"unknown op {op!r}; expected one of {OPS}")
