"""The backend adapter protocol: what an implementation under test provides to the harness.

Arrays travel as NumPy arrays in the dtype under test (bfloat16 as `ml_dtypes.bfloat16`), and
results come back the same way: a NumPy array (0-d for a reduction) of the output dtype.
An adapter rejects invalid arguments by raising (ValueError, RuntimeError, TypeError, ...).
Gradients are an optional capability (`GradientBackend`): an adapter without them is reported
as unsupported on gradient cases.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Collection, Mapping, Protocol, Sequence, runtime_checkable

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


class GradientBackend(Protocol):
    """The optional gradient capability: either method alone is fine; a missing one makes its op's cases unsupported.

    Each returns {name: gradient} for every name in `wrt` ('input', 'target'), each gradient an
    array of that tensor's dtype and shape: the vector-Jacobian product of the loss with
    `grad_output` (the loss's dtype and shape; 0-d for a reduction), as autograd's backward gives.
    `wrt` naming weight or pos_weight must raise, as it must for invalid arguments.
    """

    def bce_grad(
        self,
        input: np.ndarray,
        target: np.ndarray,
        *,
        weight: np.ndarray | None,
        reduction: Any,
        grad_output: np.ndarray,
        wrt: Sequence[str],
    ) -> Mapping[str, np.ndarray]: ...

    def bce_with_logits_grad(
        self,
        input: np.ndarray,
        target: np.ndarray,
        *,
        weight: np.ndarray | None,
        pos_weight: np.ndarray | None,
        reduction: Any,
        grad_output: np.ndarray,
        wrt: Sequence[str],
    ) -> Mapping[str, np.ndarray]: ...


GRADIENT_METHODS = {"bce": "bce_grad", "bce_with_logits": "bce_with_logits_grad"}
"""The method of `GradientBackend` that differentiates each op."""


def supports_grad(backend: Backend, op: str) -> bool:
    return callable(getattr(backend, GRADIENT_METHODS.get(op, ""), None))


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


def call_grad(backend: Backend, op: str, tensors: Mapping[str, np.ndarray], reduction: Any, grad_output: np.ndarray,
              wrt: Sequence[str]) -> Any:
    """Ask a backend for the gradients of one op (`supports_grad` must hold)."""
    x, y, w = tensors["input"], tensors["target"], tensors.get("weight")
    backward = {"grad_output": grad_output, "wrt": tuple(wrt)}
    if op == "bce":
        return backend.bce_grad(x, y, weight=w, reduction=reduction, **backward)  # type: ignore[attr-defined]
    if op == "bce_with_logits":
        return backend.bce_with_logits_grad(  # type: ignore[attr-defined]
            x, y, weight=w, pos_weight=tensors.get("pos_weight"), reduction=reduction, **backward)
    raise ValueError(f"no gradient is specified for op {op!r}")
