"""The document's claim, measured: BCEWithLogits(x, y) against BCE(Sigmoid(x), y) on each backend, over x.

The two are equal in exact arithmetic. In a dtype, the backend's sigmoid rounds to exactly 1 for
large x (then BCE(1, 0) is clamped to 100 while the loss is about x) and to 0, or below e^-100,
for very negative x (then BCE(p, 1) is clamped to 100 while the loss is about |x|). `saturation`
finds those points on each backend by bisection over the dtype's values.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bce_reference import sweep as exact_sweep

from ..adapter import Backend
from ..dtypes import NUMPY_DTYPES
from ..probing import inspect
from ..registry import Entry
from .atlas import evaluate
from .sampling import from_ordinal, ordinal

DTYPES = ("float32", "float64")
TARGETS = (0.0, 1.0)
SPAN = (-120.0, 120.0)
POINTS = 4801
CLAMP = 100.0  # BCELoss clamps each log at -100


@dataclass(frozen=True)
class Curves:
    """Both sides of the claim for one backend, dtype and hard target, over a grid of logits."""

    backend: str
    dtype: str
    target: float
    x: np.ndarray  # the logits, in the dtype, as float64
    exact: np.ndarray  # the exact loss (float64)
    logits: np.ndarray | None  # BCEWithLogits(x, y) from the backend
    composed: np.ndarray | None  # BCE(Sigmoid(x), y) from the backend
    saturation: float | None  # where BCE(Sigmoid(x), y) reaches the clamp: from here on (y = 0) or below (y = 1)
    error: str = ""


def _composed(backend: Backend, x: np.ndarray, target: float, dtype: str) -> tuple[np.ndarray | None, str]:
    tensors = {"input": x, "target": np.full(x.shape, target, dtype=NUMPY_DTYPES[dtype])}
    got, _, error = evaluate(backend, "sigmoid_bce", tensors, dtype)
    return got, error


def saturation(backend: Backend, dtype: str, target: float) -> float | None:
    """y = 0: the least x >= 0 with BCE(Sigmoid(x), 0) = 100; y = 1: the greatest x <= 0 with BCE(Sigmoid(x), 1) = 100."""
    numpy_dtype = NUMPY_DTYPES[dtype]
    top = ordinal(np.array([np.finfo(numpy_dtype).max], dtype=numpy_dtype)).item()  # float32 and float64 only
    sign = 1 if target == 0 else -1

    def clamped(key: int) -> bool:
        got, _ = _composed(backend, from_ordinal(np.array([sign * key]), dtype), target, dtype)
        return got is not None and float(got[0]) == CLAMP

    if not clamped(top):
        return None
    low, high = 0, top  # invariant: clamped(high), and not clamped(low) unless low == 0
    if clamped(low):
        return 0.0
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if clamped(middle) else (middle, high)
    return float(from_ordinal(np.array([sign * high]), dtype).astype(np.float64)[0])


def measure(entries: list[Entry]) -> list[Curves]:
    """The claim on every available backend that computes in float32 and float64."""
    curves = []
    for entry, info in zip(entries, inspect(entries)):
        backend = entry.backend
        if not info.available or backend is None:
            continue
        for dtype in (d for d in DTYPES if d in backend.dtypes):
            x = np.linspace(*SPAN, POINTS).astype(NUMPY_DTYPES[dtype])
            for target in TARGETS:
                y = np.full(x.shape, target, dtype=NUMPY_DTYPES[dtype])
                logits, _, error = evaluate(backend, "bce_with_logits", {"input": x, "target": y}, dtype)
                composed, composed_error = _composed(backend, x, target, dtype)
                exact = exact_sweep.loss("bce_with_logits", dtype, x, target).astype(np.float64)
                curves.append(Curves(info.name, dtype, target, x.astype(np.float64), exact, logits, composed,
                                     saturation(backend, dtype, target), error or composed_error))
    return curves
