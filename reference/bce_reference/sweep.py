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

**The error bound in float64** (float16, bfloat16 and float32 outputs), `BOUND` and `FLOOR`: |value - loss|
<= 2**-43 loss + 2**-940. Proof, with u = 2**-53 and one assumption: numpy's float64 exp, log and log1p
each return f(1 + d) with |d| <= 2**-45 (256 ulp; numpy's AVX-512 paths use Intel SVML's "LA" class,
documented within 4 ulp, and glibc's within 2):
- softplus(z), z >= 0: t = exp(-z)(1 + d1); log1p(t(1 + d1)) = log1p(t)(1 + k d1) with
  k = t / ((1 + t) log1p(t)) <= 1, then (1 + d2) for log1p's own error; adding z >= 0 costs u. For
  z < 0 the same without the addition. Beyond +-T (`_softplus`): z itself, within e**-38 / 38 < u,
  or exp(z) alone, within d1 + 2**-55. Either way |d| <= 2**-44 + u.
- bce: log(p) and log1p(-p) (-p is exact) err by d each; the clamp at -100 cannot increase a
  difference. Every product by y, 1 - y or pw (each rounded once: u) and the sum of two
  non-negative terms (u) add their u: 4u at most, after 2**-44 + 2**-45 at most from the
  functions. Total below 2**-43.9 relative.
- Where a function's result underflows float64 it errs by up to 2**-1074 absolutely instead, and the
  weights multiply that by at most 1 + pw < 2**129 (pw is a float32 at most): 2**-940 in all.
In ulps of float32 the bound is below 2**-19. `settle` then makes each value's binade that of the
exact loss (Ziv's strategy on the few values within the bound of a power of two), so the ulp the
atlas divides by is exact; `rounded` decides the correct rounding into the output dtype wherever
the bound allows, and asks the exact path elsewhere. tests/test_accuracy_reference.py checks the
bound on points where it is hardest to keep (both tails, the branch thresholds, subnormals, p next
to 1, the clamp), and `rounded` against the exact path's rounding on points next to a rounding
boundary; the deep version of both is marked `slow`.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import exact
from .formats import FORMATS

WORKING = {"float16": np.float64, "bfloat16": np.float64, "float32": np.float64, "float64": np.longdouble}
EXTRA_BITS = 10
"""The working type must carry at least this many significand bits beyond the output dtype's."""

OPS = ("bce", "bce_with_logits")
BOUND, FLOOR = 2.0**-43, 2.0**-940
"""|value - loss| <= BOUND * loss + FLOOR in float64 (the module's docstring proves it); float64 outputs, in a
longdouble, are measured only (tests/test_accuracy_reference.py), so `settle` and `rounded` refuse them."""

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
    negative = positive = None
    if np.ndim(y) or y != 1:
        negative = _times(_softplus(x, wide), 1 - y)
    if np.ndim(y) or y != 0:
        positive = _times(_softplus(-x, wide), y if pos_weight is None else _wide(pos_weight, wide) * y)
    return _sum(negative, positive)


def _tails(wide: type) -> float:
    """T with e**-T below 2**-(p + 1) for the working type's p significand bits (float64: 38; longdouble: 46)."""
    return float(np.ceil((np.finfo(wide).nmant + 2) * np.log(2)))


def _softplus(z: np.ndarray, wide: type) -> np.ndarray:
    """softplus(z) = max(z, 0) + log1p(exp(-|z|)), element-wise, skipping the work a whole chunk does not need.

    Beyond +-T (`_tails`) the tail t = e**-|z| is below 2**-(p + 1): where z >= T the sum rounds to z itself
    (t is below half an ulp of z >= 1), and where z <= -T log1p(t) = t (1 - t/2 + ...) is t within a quarter
    ulp, so exp alone gives it (and 0 where it underflows). These are the values the full formula gives, or
    within that quarter ulp; a sweep's chunk of consecutive values mostly lies wholly on one side, and skips
    log1p (or both functions) there.
    """
    if np.ndim(z) == 0:
        z = np.asarray(z)
    tail = _tails(wide)
    low, high = z.min(initial=np.inf), z.max(initial=-np.inf)
    if low >= tail:
        return z
    if high < np.log(np.finfo(wide).smallest_subnormal) - 1:
        return np.zeros_like(z)  # e**z is below half the least subnormal: exp gives 0, slowly
    with np.errstate(under="ignore"):
        if high <= -tail:
            return np.exp(z)
        out = np.exp(-np.abs(z))
        np.log1p(out, out=out)
    out += np.maximum(z, 0)
    return out


def loss(op: str, dtype: str, input: np.ndarray, target: Values, pos_weight: Values | None = None) -> np.ndarray:
    """The loss of each element of `input` (in `dtype`), unrounded, in `working_type(dtype)`."""
    if op == "bce":
        if pos_weight is not None:
            raise ValueError("bce takes no pos_weight")
        return bce(input, target, dtype)
    if op == "bce_with_logits":
        return bce_with_logits(input, target, pos_weight, dtype)
    raise ValueError(f"unknown op {op!r}; expected one of {OPS}")


MANTISSA = (1 << 52) - 1
SLACK = int(BOUND * 2**53) + 1
"""A float64 whose significand field is within SLACK of 0 (from either side) is within BOUND of a power of two."""


def _exact_loss(op: str, x: float, y: float, pos_weight: float | None) -> tuple[Any, float]:
    return exact.bce(x, y) if op == "bce" else exact.bce_with_logits(x, y, pos_weight)


def _exact_value(op: str, x: float, y: float, pos_weight: float | None) -> Any:
    return _exact_loss(op, x, y, pos_weight)[0]


def _pick(values: Values | None, index: int) -> float | None:
    if values is None:
        return None
    return float(values[index]) if np.ndim(values) else float(values)  # type: ignore[index]


def _floor_log2(value: Any) -> int:
    man, exp = value.man_exp
    return int(exp) + abs(int(man)).bit_length() - 1


def _in_binade(op: str, x: float, y: float, pos_weight: float | None) -> float:
    """The loss rounded to float64 within its own binade, floor(log2 loss) decided by Ziv's strategy (the precision
    rises until both ends of the error bound agree on it)."""
    for prec in exact.PRECISIONS:
        with exact.CTX.workprec(prec):
            value, scale = _exact_loss(op, x, y, pos_weight)
            bound = exact.CTX.ldexp(exact.CTX.mpf(scale) + abs(value), exact.GUARD_BITS - prec)
            with exact.CTX.workprec(2 * prec + 64):
                low, high = value - bound, value + bound
            if (low > 0 and _floor_log2(low) == _floor_log2(high)) or prec == exact.PRECISIONS[-1]:
                binade = _floor_log2(value)
                near = float(value)  # may round up to the next power of two: step back into the binade
                return near if near < math.ldexp(1.0, binade + 1) else math.nextafter(near, 0.0)
    raise AssertionError("unreachable")


def _float64(values: np.ndarray) -> np.ndarray:
    if values.dtype != np.float64:
        raise ValueError(f"the proven bound is float64's: float64 outputs ({values.dtype} values) are measured only")
    return values


def settle(op: str, dtype: str, values: np.ndarray, input: np.ndarray, target: Values,
           pos_weight: Values | None = None) -> int:
    """Give each of `loss`'s values the binade of the exact loss, in place: the few within BOUND of a power of two
    (where the exact loss may lie on the other side) are recomputed by the exact path. Returns how many."""
    fmt = FORMATS[dtype]
    bits = _float64(values).view(np.int64) + SLACK
    bits &= MANTISSA
    near = np.flatnonzero(bits <= 2 * SLACK)
    near = near[values[near] >= fmt.min_normal / 2]  # below, the ulp is the subnormals' whatever the binade
    for i in map(int, near):
        values[i] = _in_binade(op, float(input[i]), _pick(target, i), _pick(pos_weight, i))  # type: ignore[arg-type]
    return near.size


def rounded(op: str, dtype: str, values: np.ndarray, input: np.ndarray, target: Values,
            pos_weight: Values | None = None) -> np.ndarray:
    """The exact losses correctly rounded to `dtype` (as float64), from `loss`'s values: decided by BOUND wherever
    both ends of the error round alike, by the exact path (Ziv's strategy) at the others."""
    fmt = FORMATS[dtype]
    slack = _float64(values) * BOUND + FLOOR
    out = fmt.round_array(values)
    for i in map(int, np.flatnonzero(fmt.round_array(values - slack) != fmt.round_array(values + slack))):
        out[i] = exact.correctly_rounded(fmt, _exact_value, op, float(input[i]), _pick(target, i), _pick(pos_weight, i))
    return out
