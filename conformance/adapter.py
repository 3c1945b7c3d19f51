"""The backend adapter protocol: what an implementation under test provides to the harness.

Arrays travel as NumPy arrays in the dtype under test (bfloat16 as `ml_dtypes.bfloat16`), and
results come back the same way: a NumPy array (0-d for a reduction) of the output dtype.
An adapter rejects invalid arguments by raising (ValueError, RuntimeError, TypeError, ...).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Collection, Mapping, Protocol, runtime_checkable

import numpy as np

PROGRAMMING_ERRORS = (AttributeError, NameError, ImportError, SyntaxError, AssertionError, RecursionError)
"""Exceptions that reveal a bug in an adapter rather than a rejection of the arguments."""


@dataclass(frozen=True)
class Availability:
    available: bool
    reason: str = ""


@runtime_checkable
class Backend(Protocol):
    """An implementation of the two losses, and of the sigmoid that `sigmoid_bce` cases compose with BCE."""

    name: str
    dtypes: Collection[str]  # floating dtypes it computes in; others are skipped for value cases

    def availability(self) -> Availability: ...

    def version(self) -> str: ...

    def sigmoid(self, input: np.ndarray) -> np.ndarray: ...

    def bce(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None, reduction: Any) -> np.ndarray: ...

    def bce_with_logits(
        self,
        input: np.ndarray,
        target: np.ndarray,
        *,
        weight: np.ndarray | None,
        pos_weight: np.ndarray | None,
        reduction: Any,
    ) -> np.ndarray: ...


def call(backend: Backend, op: str, tensors: Mapping[str, np.ndarray], reduction: Any) -> Any:
    """Run one op of a case on a backend."""
    x, y, w = tensors["input"], tensors["target"], tensors.get("weight")
    if op == "bce":
        return backend.bce(x, y, weight=w, reduction=reduction)
    if op == "bce_with_logits":
        return backend.bce_with_logits(x, y, weight=w, pos_weight=tensors.get("pos_weight"), reduction=reduction)
    if op == "sigmoid_bce":
        return backend.bce(backend.sigmoid(x), y, weight=w, reduction=reduction)
    raise ValueError(f"unknown op {op!r}")
