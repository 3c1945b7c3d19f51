"""The NumPy backend: both losses written as a careful NumPy user would, in the dtype under test."""
from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np

from conformance.adapter import Availability

FLOATS = {np.dtype(t) for t in (np.float16, ml_dtypes.bfloat16, np.float32, np.float64)}


def _check_reduction(reduction: Any) -> None:
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{reduction!r} is not a valid value for reduction")


def _check_shapes(input: np.ndarray, target: np.ndarray, **extra: np.ndarray | None) -> None:
    if input.shape != target.shape:
        raise ValueError(f"target shape {target.shape} differs from input shape {input.shape}")
    for name, array in extra.items():
        if array is None:
            continue
        try:
            joint = np.broadcast_shapes(array.shape, target.shape)
        except ValueError:
            joint = None
        if joint != target.shape:
            raise ValueError(f"{name} of shape {array.shape} does not broadcast to {target.shape}")


def _check_float(**arrays: np.ndarray) -> None:
    for name, array in arrays.items():
        if array.dtype not in FLOATS:
            raise TypeError(f"{name} has dtype {array.dtype}; a floating dtype is required")


def _reduce(loss: np.ndarray, reduction: str, dtype: np.dtype) -> np.ndarray:
    """Sum with a float32 accumulator at least (float16 and bfloat16 sums would overflow or drift)."""
    if reduction == "none":
        return loss.astype(dtype)
    accumulator = np.float64 if loss.dtype == np.float64 else np.float32
    total = np.sum(loss, dtype=accumulator)
    if reduction == "mean":
        total = total / loss.size if loss.size else accumulator(np.nan)
    with np.errstate(over="ignore"):
        return np.asarray(total).astype(dtype)


class NumpyBackend:
    name = "numpy"
    dtypes = frozenset({"float16", "bfloat16", "float32", "float64"})

    def availability(self) -> Availability:
        return Availability(True)

    def version(self) -> str:
        return f"numpy {np.__version__}, ml_dtypes {ml_dtypes.__version__}"

    def sigmoid(self, input: np.ndarray) -> np.ndarray:
        """Computed in float32 for the narrow dtypes: 1 + e rounded to float16 or bfloat16 saturates early."""
        _check_float(input=input)
        x = input.astype(np.float32) if input.dtype.itemsize < 4 else input
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(input.dtype)

    def bce(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None, reduction: Any) -> np.ndarray:
        _check_reduction(reduction)
        _check_shapes(input, target, weight=weight)
        _check_float(input=input)
        if target.dtype != input.dtype:
            raise TypeError(f"target dtype {target.dtype} differs from input dtype {input.dtype}")
        for name, array in (("input", input), ("target", target)):
            if not np.all((array >= 0) & (array <= 1)):
                raise ValueError(f"all elements of {name} should be between 0 and 1")
        with np.errstate(divide="ignore"):
            log_p = np.maximum(np.log(input), -100)
            log_q = np.maximum(np.log1p(-input), -100)
        loss = (target - 1) * log_q - target * log_p
        if weight is not None:
            loss = loss * weight.astype(loss.dtype)
        return _reduce(loss, reduction, input.dtype)

    def bce_with_logits(
        self,
        input: np.ndarray,
        target: np.ndarray,
        *,
        weight: np.ndarray | None,
        pos_weight: np.ndarray | None,
        reduction: Any,
    ) -> np.ndarray:
        _check_reduction(reduction)
        _check_shapes(input, target, weight=weight, pos_weight=pos_weight)
        _check_float(input=input, target=target)
        work = np.promote_types(input.dtype, target.dtype)
        x, y = input.astype(work), target.astype(work)
        with np.errstate(over="ignore", invalid="ignore"):
            log_sigmoid = np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))
            if pos_weight is None:
                loss = (1 - y) * x - log_sigmoid
            else:
                loss = (1 - y) * x - ((pos_weight.astype(work) - 1) * y + 1) * log_sigmoid
            if weight is not None:
                loss = loss * weight.astype(work)
        return _reduce(loss, reduction, target.dtype)


BACKENDS = [NumpyBackend()]
