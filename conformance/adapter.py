"""The backend adapter protocol: what an implementation under test provides to the harness.

Arrays travel as NumPy arrays in the dtype under test (bfloat16 as `ml_dtypes.bfloat16`), and
results come back the same way: a NumPy array (0-d for a reduction) of the output dtype.
An array may be in any memory layout (`inputs.LAYOUTS`): Fortran order, a transposed or strided view,
negative strides, or a broadcast view with stride 0, which NumPy makes read-only. An adapter must read
the values through the array's strides (as NumPy and `torch.from_numpy` do) and must not write to its
arguments.
An adapter rejects invalid arguments by raising: `Rejected(rule)` names the rule broken; any other
exception is matched to a rule by the adapter's `rejection_rule` hook or its `rejection_convention`
(conformance/rejections.py).

Capabilities: what an adapter does not implement is `unsupported`, never a pass or a failure. It says so
by setting an op to None (or leaving it out), by leaving out a derivative method (`GradientBackend`,
`SecondOrderBackend`, `ForwardModeBackend`), by declaring `unsupported = {feature: reason}` (FEATURES),
or by raising `Unsupported(reason)` from a call.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Collection, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

PROGRAMMING_ERRORS = (AttributeError, NameError, ImportError, SyntaxError, AssertionError, RecursionError, KeyError,
                      IndexError)
"""Exceptions that reveal a bug in an adapter rather than a rejection of the arguments."""

ARITHMETIC_TYPE_ERRORS = re.compile(
    r"unsupported operand type|can't multiply|can only concatenate|not subscriptable|is not callable|has no len\(\)|"
    r"required positional argument|unexpected keyword argument|positional arguments? but")
"""The first lines of TypeErrors that Python raises for a bug in the adapter's own code, never for a rejection."""


def adapter_bug(error: BaseException) -> bool:
    """Whether the exception reveals a bug in the adapter (PROGRAMMING_ERRORS, or Python's arithmetic or calling
    TypeErrors) rather than the library's answer to its arguments."""
    return isinstance(error, PROGRAMMING_ERRORS) or (
        isinstance(error, TypeError) and ARITHMETIC_TYPE_ERRORS.search(str(error)) is not None)


OPS = ("bce", "bce_with_logits", "sigmoid")
"""The adapter methods that compute; an adapter may lack some (None, or absent)."""
FEATURES = frozenset({
    *OPS, "bce.weight", "bce_with_logits.weight", "bce_with_logits.pos_weight",
    "reduction.none", "reduction.mean", "reduction.sum", "grad.bce", "grad.bce_with_logits", "grad.sigmoid_bce",
})
"""What an adapter's `unsupported` declaration may name: an op, an op's optional argument, a reduction, a gradient."""


class Unsupported(Exception):
    """Raised by an adapter for a call it does not implement: the result is `unsupported`, with this reason."""


class Rejected(Exception):
    """Raised by an adapter that rejects its arguments for `rule`, one of the rules of data/rejection-rules.yaml."""

    def __init__(self, rule: str, message: str = "") -> None:
        super().__init__(rule, message)
        self.rule, self.message = rule, message

    def __str__(self) -> str:
        return self.message or self.rule


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
    """The optional gradient capability: any method alone is fine; a missing one makes its op's cases unsupported.

    Each returns {name: gradient} for every name in `wrt` ('input', 'target'), each gradient an
    array of that tensor's dtype and shape: the vector-Jacobian product of the loss with
    `grad_output` (the loss's dtype and shape; 0-d for a reduction), as autograd's backward gives.
    `wrt` naming weight or pos_weight must raise, as it must for invalid arguments. `sigmoid_bce_grad`
    differentiates BCE of the backend's own sigmoid, through that sigmoid's own backward.
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

    def sigmoid_bce_grad(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None, reduction: Any,
                         grad_output: np.ndarray, wrt: Sequence[str]) -> Mapping[str, np.ndarray]: ...


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
    "grad": {"bce": "bce_grad", "bce_with_logits": "bce_with_logits_grad", "sigmoid_bce": "sigmoid_bce_grad"},
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


def declared_unsupported(backend: object) -> dict[str, str]:
    """The adapter's `unsupported` declaration, checked: TypeError or ValueError names what is wrong with it."""
    declared = getattr(backend, "unsupported", None) or {}
    if not isinstance(declared, Mapping):
        raise TypeError(f"`unsupported` must map features to reasons, not {type(declared).__name__}")
    unknown = sorted(str(name) for name in declared if name not in FEATURES)
    if unknown:
        raise ValueError(f"`unsupported` names unknown feature {unknown[0]!r}; known: {', '.join(sorted(FEATURES))}")
    blank = sorted(name for name, reason in declared.items() if not isinstance(reason, str) or not reason.strip())
    if blank:
        raise ValueError(f"`unsupported` gives no reason for {blank[0]!r}")
    return dict(declared)


def missing_features(backend: Backend) -> dict[str, str]:
    """Each feature the adapter lacks, with the reason: its declaration, ops it lacks, gradient methods it lacks."""
    missing = declared_unsupported(backend)
    for op in OPS:
        if not callable(getattr(backend, op, None)):
            missing.setdefault(op, f"the adapter has no {op}")
    for op, method in GRADIENT_METHODS.items():
        if not supports_grad(backend, op):
            missing.setdefault(f"grad.{op}", f"no gradient capability for {op} ({method})")
    return missing


def needed_features(op: str, arguments: Collection[str], reduction: Any, grad: bool) -> list[str]:
    """The features a call uses: its ops, the optional arguments it passes, its reduction, its gradient."""
    base = "bce" if op == "sigmoid_bce" else op
    needed = ["sigmoid", "bce"] if op == "sigmoid_bce" else [op]
    needed += [f"{base}.{name}" for name in ("weight", "pos_weight") if name in arguments]
    if isinstance(reduction, str) and f"reduction.{reduction}" in FEATURES:
        needed.append(f"reduction.{reduction}")
    if grad:
        needed.append(f"grad.{op}")
    return needed


def lacking(missing: Mapping[str, str], needed: Sequence[str]) -> str | None:
    """Why a call that uses `needed` is unsupported, given `missing_features`; None when the adapter has them all."""
    reasons = [f"{feature}: {missing[feature]}" for feature in needed if feature in missing]
    return "; ".join(reasons) or None


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
