"""The backend adapter protocol: what an implementation under test provides to the harness.

Arrays travel as NumPy arrays in the dtype under test (bfloat16 as `ml_dtypes.bfloat16`), and
results come back the same way: a NumPy array (0-d for a reduction) of the output dtype.
An array may be in any memory layout (`inputs.LAYOUTS`): Fortran order, a transposed or strided view,
negative strides, or a broadcast view with stride 0, which NumPy makes read-only. An adapter must read
the values through the array's strides (as NumPy and `torch.from_numpy` do) and must not write to its
arguments.
An adapter rejects invalid arguments by raising (ValueError, RuntimeError, TypeError, ...).
Gradients are optional capabilities (`GradientBackend`, `SecondOrderBackend`, `ForwardModeBackend`): an
adapter without one is reported as unsupported on the cases that need it.
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


class SecondOrderBackend(Protocol):
    """The optional second-order capability (PyTorch's double backward): Hessian-vector products.

    Each returns {name: array} for every name in `wrt` ('input', 'target'): the gradient by that tensor of
    <grad_input, tangent>, where grad_input is the first-order gradient by input (the vector-Jacobian
    product with `grad_output`, as `GradientBackend` gives it) and `tangent` has the input's dtype and
    shape; each array has the dtype and shape of the tensor it belongs to.
    """

    def bce_grad2(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None, reduction: Any,
                  grad_output: np.ndarray, tangent: np.ndarray, wrt: Sequence[str]) -> Mapping[str, np.ndarray]: ...

    def bce_with_logits_grad2(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None,
                              pos_weight: np.ndarray | None, reduction: Any, grad_output: np.ndarray,
                              tangent: np.ndarray, wrt: Sequence[str]) -> Mapping[str, np.ndarray]: ...


class ForwardModeBackend(Protocol):
    """The optional forward-mode capability: Jacobian-vector products, as `torch.func.jvp` gives them.

    Each returns {name: array} for every name in `wrt` ('input', 'target'): the directional derivative of
    the loss when that tensor alone moves along `tangent` (its dtype and shape), in the loss's dtype and
    shape (0-d for a reduction).
    """

    def bce_jvp(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None, reduction: Any,
                tangent: np.ndarray, wrt: Sequence[str]) -> Mapping[str, np.ndarray]: ...

    def bce_with_logits_jvp(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None,
                            pos_weight: np.ndarray | None, reduction: Any, tangent: np.ndarray,
                            wrt: Sequence[str]) -> Mapping[str, np.ndarray]: ...


DERIVATIVES = {
    "grad": {"bce": "bce_grad", "bce_with_logits": "bce_with_logits_grad"},
    "grad2": {"bce": "bce_grad2", "bce_with_logits": "bce_with_logits_grad2"},
    "jvp": {"bce": "bce_jvp", "bce_with_logits": "bce_with_logits_jvp"},
}
"""The method that computes each kind of derivative (first order, second order, forward mode) of each op."""

GRADIENT_METHODS = DERIVATIVES["grad"]
"""The method of `GradientBackend` that differentiates each op."""

_DERIVATIVE_ARRAYS = {"grad": ("grad_output",), "grad2": ("grad_output", "tangent"), "jvp": ("tangent",)}


def supports(backend: Backend, op: str, derivative: str) -> bool:
    """Whether the backend has the method for this kind of derivative of `op`."""
    return callable(getattr(backend, DERIVATIVES[derivative].get(op, ""), None))


def supports_grad(backend: Backend, op: str) -> bool:
    return supports(backend, op, "grad")


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


def call_derivative(backend: Backend, derivative: str, op: str, tensors: Mapping[str, np.ndarray], reduction: Any,
                    wrt: Sequence[str]) -> Any:
    """Ask a backend for one kind of derivative of one op (`supports` must hold); `tensors` holds grad_output
    and tangent as that kind needs them."""
    if op not in DERIVATIVES[derivative]:
        raise ValueError(f"no gradient is specified for op {op!r}")
    method = getattr(backend, DERIVATIVES[derivative][op])
    extra = {name: tensors[name] for name in _DERIVATIVE_ARRAYS[derivative]}
    if op == "bce_with_logits":
        extra["pos_weight"] = tensors.get("pos_weight")  # type: ignore[assignment]
    return method(tensors["input"], tensors["target"], weight=tensors.get("weight"), reduction=reduction,
                  wrt=tuple(wrt), **extra)
