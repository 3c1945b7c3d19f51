"""The reference results: validate the arguments, compute each element, weight, reduce, round once."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from . import exact, fast, specified
from .formats import FORMATS, Format
from .spec import check_bce, check_bce_with_logits

EXACT_LIMIT = 1024
"""Tensors of up to this many elements take the 256-bit path; larger ones the longdouble path."""

OPS = ("bce", "bce_with_logits", "sigmoid_bce")


@dataclass(frozen=True)
class Expected:
    """The specified result, correctly rounded to its dtype, with the scale that sizes its tolerance."""

    value: np.ndarray  # float64; every entry is exactly representable in `dtype`
    dtype: str
    scale: np.ndarray  # float64 >= 0, same shape as value
    terms: int  # number of elements summed into each value (1 for reduction='none')
    method: str  # 'exact' (256-bit) or 'fast' (longdouble)
    working_dtype: str  # the least precise of input, target and output: the precision the formula may run in
    peak: float = 0.0  # the largest term of any element's formula, weighted or not: past the dtype's max an
    # intermediate overflows, and the order of evaluation, not the specification, decides the result
    gain: np.ndarray | None = None  # per value: how much the factors that follow an intermediate may amplify
    # an underflow there (an absolute error of half the smallest subnormal); None: 1
    specified: specified.Specified | None = None  # PyTorch's algorithm evaluated in the dtype (reference/bce_reference/specified.py)
    sign: np.ndarray | None = None  # per value: +1 or -1 where an invariant fixes the sign of the result
    # (a conforming value is 0 or of that sign), 0 where none does; None: no invariant
    invariant: str = ""  # the invariant's name, with its region, for a failure message


NONNEGATIVE = "loss >= 0 where targets lie in [0, 1] and weight, pos_weight >= 0"


def nonnegative_region(y: np.ndarray, weight: np.ndarray | None, pos_weight: np.ndarray | None,
                       shape: tuple[int, ...], reduced: bool) -> np.ndarray:
    """+1 per value where the loss is >= 0 for every element it covers (NONNEGATIVE), else 0."""
    with np.errstate(invalid="ignore"):
        inside = (y.astype(np.float64) >= 0) & (y.astype(np.float64) <= 1)
        for factor in (weight, pos_weight):
            if factor is not None:
                inside = inside & (np.broadcast_to(factor.astype(np.float64), y.shape) >= 0)
    if reduced:
        return np.full(shape, 1.0 if bool(inside.all()) else 0.0)
    return inside.astype(np.float64).reshape(shape)


def finite_as_specified(value: np.ndarray, spec: specified.Specified) -> np.ndarray:
    """The value, except where PyTorch's algorithm overflows or meets 0 * inf in the dtype: its inf or NaN there.

    An intermediate past the dtype's range (a float16 product, a float32 accumulator) gives an
    infinity, and an element that the dtype evaluates to 0 times an infinite weight gives NaN, where
    the exact value is finite or infinite: that is what the specification computes.
    """
    replaced = (np.isfinite(value) & ~np.isfinite(spec.value)) | (np.isinf(value) & np.isnan(spec.value))
    return np.where(replaced, spec.value, value)


def underflow_gain(*factors: np.ndarray) -> np.ndarray:
    """Product of max(1, |factor|): the most an underflow early in a product chain can be magnified by the rest."""
    with np.errstate(invalid="ignore", over="ignore"):
        gain = np.prod([np.maximum(1.0, np.abs(np.asarray(f, dtype=np.float64))) for f in factors], axis=0)
    return np.nan_to_num(gain, nan=0.0, posinf=0.0)  # where a factor is infinite the value is too: moot


FAST_ERROR = 2.0**-59
"""The longdouble kernels (64 significand bits, elementary functions within 2 ulp) err by less than this times
their terms' magnitudes: about 8 roundings of 2^-64, with a margin of 4."""


def fast_decided(fmt: Format, values: np.ndarray, scale: np.ndarray, terms: int) -> bool:
    """Ziv's test for the longdouble path: whether every value rounds alike across its error bound.

    The bound is FAST_ERROR (scale + |value|) per element, plus u_longdouble per level of the pairwise
    sum of `terms` elements; where it is not decided the caller evaluates exactly instead.
    """
    return bool(np.all(fast_decided_elements(fmt, values, scale, terms)))


def fast_decided_elements(fmt: Format, values: np.ndarray, scale: np.ndarray, terms: int = 1) -> np.ndarray:
    """`fast_decided`'s test per element (True where a value is not finite): which to evaluate exactly."""
    values = np.asarray(values)
    decided = ~np.isfinite(values)
    finite = ~decided
    v = values[finite].astype(fast.WIDE)
    depth = math.ceil(math.log2(terms)) + 1 if terms > 1 else 0
    with np.errstate(over="ignore", invalid="ignore"):
        bound = (FAST_ERROR + depth * 2.0**-63) * (np.broadcast_to(np.asarray(scale, dtype=fast.WIDE), values.shape)[finite]
                                                   + np.abs(v))
        decided[finite] = fmt.round_array(v - bound) == fmt.round_array(v + bound)
    return decided


def broadcast_column(array: np.ndarray | None, shape: tuple[int, ...], default: float) -> np.ndarray:
    if array is None:
        return np.full(int(np.prod(shape)), default, dtype=np.float64)
    return np.broadcast_to(array.astype(np.float64), shape).ravel()


def exact_map(fn, *columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply a scalar 256-bit kernel element by element: (object array of mpf, float64 scales)."""
    pairs = [fn(*args) for args in zip(*columns)]
    losses = np.empty(len(pairs), dtype=object)
    losses[:] = [loss for loss, _ in pairs]
    return losses, np.array([scale for _, scale in pairs], dtype=np.float64)


def as_specified(values: np.ndarray, method: str) -> np.ndarray:
    """float64 values (infinities and NaN) as elements of a kernel's result for `method`."""
    return np.array([exact.CTX.mpf(v) for v in values], dtype=object) if method == "exact" else values.astype(fast.WIDE)


def infinite_factor_literal(x: np.ndarray, y: np.ndarray, pw: np.ndarray, fmt: Format) -> tuple[np.ndarray, np.ndarray]:
    """Where y or pos_weight is not finite: (mask, the loss as PyTorch evaluates it there).

    The factor (pw - 1) y + 1 is then infinite or NaN, and the element is +-inf or NaN; which one
    depends on whether log sigmoid(x) is 0, and PyTorch multiplies its value in the input's dtype
    (`fmt`), where it underflows long before the exact one does (x > 745 in float64, 17 in float16).
    """
    odd = ~(np.isfinite(y) & np.isfinite(pw))
    with np.errstate(invalid="ignore", over="ignore"):
        log_sigmoid = fmt.round_array(fast.log_sigmoid(x[odd]))
        return odd, (1 - y[odd]) * x[odd] - ((pw[odd] - 1) * y[odd] + 1) * log_sigmoid


def _sigmoid(x: np.ndarray, fmt: Format, method: str) -> np.ndarray:
    """sigmoid(x) correctly rounded to `fmt`, as float64."""
    if method == "exact":
        values = [exact.correctly_rounded(fmt, exact.sigmoid, v) for v in x.astype(np.float64).ravel()]
        return np.array(values).reshape(x.shape)
    return fmt.round_array(fast.sigmoid(x))


def _saturate(fmt: Format, losses: np.ndarray, method: str) -> np.ndarray:
    """The elements, except that one which rounds to an infinity in `fmt` becomes that infinity.

    The loss elements exist as a tensor of the output dtype (before the weight multiplies them, and
    again before the reduction): an element that overflows there is +-inf, whatever follows.
    """
    if method == "exact":
        rounded = [exact.round_to(fmt, v) for v in losses]
        return np.array([exact.CTX.mpf(r) if math.isinf(r) else v for v, r in zip(losses, rounded)], dtype=object)
    with np.errstate(invalid="ignore"):
        overflow = np.isinf(fmt.round_array(losses)) & np.isfinite(losses)
        return np.where(overflow, np.copysign(np.inf, losses), losses).astype(fast.WIDE)


def _sigmoid_sensitivity(p: np.ndarray, y: np.ndarray, fmt: Format) -> np.ndarray:
    """Error of BCE(p) caused by half an ulp of error in p = sigmoid(x), per unit roundoff (first order)."""
    u = fmt.unit_roundoff
    relative_step = fmt.spacing(p) / np.maximum(p, fmt.min_subnormal)  # at most 1: no overflow for subnormal p
    return np.abs(p - y) / np.maximum(1 - p, u) * relative_step / (2 * u)


def compute(op: str, tensors: Mapping[str, np.ndarray], reduction: object = "mean", method: str = "auto") -> Expected:
    """The specified result of `op` (one of OPS) on exact input values.

    Raises `reference.Rejected` when the specification rejects the arguments.
    """
    x, y = tensors["input"], tensors["target"]
    weight, pos_weight = tensors.get("weight"), tensors.get("pos_weight")
    if method == "auto":
        method = "exact" if x.size <= EXACT_LIMIT else "fast"
    kernels = exact if method == "exact" else fast
    run = (lambda fn, *cols: exact_map(fn, *cols)) if method == "exact" else (lambda fn, *cols: fn(*cols))

    inputs = dict(tensors)
    if op == "bce_with_logits":
        signature = check_bce_with_logits(x, y, weight, pos_weight, reduction)
        pw = None if pos_weight is None else broadcast_column(pos_weight, y.shape, 1.0)
        if method == "exact":
            pw = [None] * y.size if pw is None else pw  # type: ignore[assignment]
        losses, scale = run(kernels.bce_with_logits, x.astype(np.float64).ravel(), y.astype(np.float64).ravel(), pw)
        if pos_weight is not None:
            odd, literal = infinite_factor_literal(x.astype(np.float64).ravel(), y.astype(np.float64).ravel(),
                                                   broadcast_column(pos_weight, y.shape, 1.0), FORMATS[str(x.dtype)])
            losses[odd] = as_specified(literal, method)
        factors = [np.maximum.reduce([np.abs(x.astype(np.float64).ravel()), np.abs(y.astype(np.float64).ravel()),
                                      np.abs(broadcast_column(pos_weight, y.shape, 1.0))])]
    elif op in ("bce", "sigmoid_bce"):
        p = x
        if op == "sigmoid_bce":
            check_bce_with_logits(x, y, weight, None, reduction)  # shapes, dtypes, weight, reduction
            p = _sigmoid(x, FORMATS[str(x.dtype)], method).astype(x.dtype)
            inputs["input"] = p
        signature = check_bce(p, y, weight, reduction)
        pf, yf = p.astype(np.float64).ravel(), y.astype(np.float64).ravel()
        losses, scale = run(kernels.bce, pf, yf)
        factors = [np.full(y.size, 100.0)]  # each log is at most 100 in magnitude (the clamp)
        if op == "sigmoid_bce":
            sensitivity = _sigmoid_sensitivity(pf, yf, FORMATS[str(x.dtype)])  # sizes the as-specified tolerance
    else:
        raise ValueError(f"unknown op {op!r}; expected one of {OPS}")
    reduction = signature.reduction

    fmt, n = FORMATS[signature.dtype], int(y.size)
    w = broadcast_column(weight, y.shape, 1.0)
    with np.errstate(invalid="ignore"):  # an infinite loss times a zero weight: NaN, as IEEE and the spec say
        losses = _saturate(fmt, _saturate(fmt, losses, method) * (w if method == "exact" else w.astype(fast.WIDE)),
                           method)
    # A scale beyond float64 (terms near the dtype's max) saturates; where the value is NaN it is moot.
    with np.errstate(invalid="ignore", over="ignore"):  # inf * 0 where a weight is 0: the value is NaN, scale moot
        weighted = np.nan_to_num(scale * np.abs(w), nan=0.0, posinf=np.finfo(np.float64).max)
    peak = float(max(np.nan_to_num(scale).max(initial=0.0), weighted.max(initial=0.0)))
    scale = weighted
    gain = underflow_gain(*factors, w)

    working = max((signature.dtype, str(x.dtype), str(y.dtype)), key=lambda d: FORMATS[d].unit_roundoff)
    if reduction != "none":
        if method == "exact":
            total = exact.CTX.fsum(losses.tolist())
            losses = np.array([total if reduction == "sum" else (total / n if n else exact.CTX.nan)], dtype=object)
        else:
            with np.errstate(invalid="ignore"):  # inf + -inf: NaN
                total = np.sum(losses, dtype=fast.WIDE)
            losses = np.array([total if reduction == "sum" else (total / n if n else np.nan)], dtype=fast.WIDE)
        with np.errstate(over="ignore"):
            scale, gain = (np.array([a.sum() / max(n, 1) if reduction == "mean" else a.sum()]) for a in (scale, gain))
        scale = np.nan_to_num(scale, posinf=np.finfo(np.float64).max)
    if method == "exact" and exact.undecided(fmt, losses, scale):
        with exact.CTX.workprec(2 * exact.CTX.prec):
            return compute(op, tensors, reduction, method)
    if method == "fast" and not fast_decided(fmt, losses, scale, n if reduction != "none" else 1):
        return compute(op, tensors, reduction, "exact")
    if method == "exact":
        value = np.array([exact.round_to(fmt, v) for v in losses], dtype=np.float64)
    else:
        value = fmt.round_array(losses)
    spec = specified.loss("bce" if op == "sigmoid_bce" else op, inputs, str(reduction), signature.dtype,
                          sensitivity if op == "sigmoid_bce" else None)
    return Expected(
        value=finite_as_specified(value.reshape(signature.shape), spec),
        dtype=signature.dtype,
        scale=scale.reshape(signature.shape),
        terms=signature.terms,
        method=method,
        working_dtype=working,
        peak=peak,
        gain=gain.reshape(signature.shape),
        specified=spec,
        sign=nonnegative_region(y, weight, pos_weight, signature.shape, reduction != "none"),
        invariant=NONNEGATIVE,
    )
