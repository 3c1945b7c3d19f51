"""The reference results: validate the arguments, compute each element, weight, reduce, round once."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from . import exact, fast
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


def _sigmoid(x: np.ndarray, fmt: Format, method: str) -> np.ndarray:
    """sigmoid(x) correctly rounded to `fmt`, as float64."""
    if method == "exact":
        return np.array([exact.round_to(fmt, exact.sigmoid(v)) for v in x.astype(np.float64).ravel()]).reshape(x.shape)
    return fmt.round_array(fast.sigmoid(x))


def _sigmoid_sensitivity(p: np.ndarray, y: np.ndarray, fmt: Format) -> np.ndarray:
    """Error of BCE(p) caused by half an ulp of error in p = sigmoid(x), per unit roundoff (first order)."""
    u = fmt.unit_roundoff
    slope = np.abs(p - y) / (np.maximum(p, fmt.min_subnormal) * np.maximum(1 - p, u))
    return slope * fmt.spacing(p) / (2 * u)


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

    if op == "bce_with_logits":
        signature = check_bce_with_logits(x, y, weight, pos_weight, reduction)
        columns = (x.astype(np.float64).ravel(), y.astype(np.float64).ravel(), broadcast_column(pos_weight, y.shape, 1.0))
        losses, scale = run(kernels.bce_with_logits, *columns)
    elif op in ("bce", "sigmoid_bce"):
        p = x
        if op == "sigmoid_bce":
            check_bce_with_logits(x, y, weight, None, reduction)  # shapes, dtypes, weight, reduction
            p = _sigmoid(x, FORMATS[str(x.dtype)], method).astype(x.dtype)
        signature = check_bce(p, y, weight, reduction)
        pf, yf = p.astype(np.float64).ravel(), y.astype(np.float64).ravel()
        losses, scale = run(kernels.bce, pf, yf)
        if op == "sigmoid_bce":
            scale = scale + _sigmoid_sensitivity(pf, yf, FORMATS[str(x.dtype)])
    else:
        raise ValueError(f"unknown op {op!r}; expected one of {OPS}")

    w = broadcast_column(weight, y.shape, 1.0)
    losses = losses * (w if method == "exact" else w.astype(fast.WIDE))
    # A scale beyond float64 (terms near the dtype's max) saturates; where the value is NaN it is moot.
    scale = np.nan_to_num(scale * np.abs(w), nan=0.0, posinf=np.finfo(np.float64).max)

    fmt, n = FORMATS[signature.dtype], int(y.size)
    working = max((signature.dtype, str(x.dtype), str(y.dtype)), key=lambda d: FORMATS[d].unit_roundoff)
    if reduction != "none":
        if method == "exact":
            total = exact.CTX.fsum(losses.tolist())
            losses = np.array([total if reduction == "sum" else (total / n if n else exact.CTX.nan)], dtype=object)
        else:
            total = np.sum(losses, dtype=fast.WIDE)
            losses = np.array([total if reduction == "sum" else (total / n if n else np.nan)], dtype=fast.WIDE)
        with np.errstate(over="ignore"):
            scale = np.array([scale.sum() / max(n, 1) if reduction == "mean" else scale.sum()])
        scale = np.nan_to_num(scale, posinf=np.finfo(np.float64).max)
    if method == "exact":
        value = np.array([exact.round_to(fmt, v) for v in losses], dtype=np.float64)
    else:
        value = fmt.round_array(losses)
    return Expected(
        value=value.reshape(signature.shape),
        dtype=signature.dtype,
        scale=scale.reshape(signature.shape),
        terms=signature.terms,
        method=method,
        working_dtype=working,
    )
