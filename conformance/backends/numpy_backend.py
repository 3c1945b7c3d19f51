"""The NumPy backend: both losses written as a careful NumPy user would, in the dtype under test."""
from __future__ import annotations

import warnings
from typing import Any

import ml_dtypes
import numpy as np

from conformance.adapter import Availability, Rejected

FLOATS = {np.dtype(t) for t in (np.float16, ml_dtypes.bfloat16, np.float32, np.float64)}


def _check_reduction(reduction: Any) -> str:
    """The reduction's name; 'elementwise_mean' is 'mean' with a deprecation warning, as in PyTorch."""
    if reduction == "elementwise_mean":
        warnings.warn("reduction='elementwise_mean' is deprecated. Please use reduction='mean' instead.", stacklevel=3)
        return "mean"
    if reduction not in ("none", "mean", "sum"):
        raise Rejected("invalid_reduction", f"{reduction!r} is not a valid value for reduction")
    return reduction


def _check_shapes(input: np.ndarray, target: np.ndarray, **extra: np.ndarray | None) -> None:
    if input.shape != target.shape:
        raise Rejected("shape_mismatch", f"target shape {target.shape} differs from input shape {input.shape}")
    for name, array in extra.items():
        if array is None:
            continue
        try:
            joint = np.broadcast_shapes(array.shape, target.shape)
        except ValueError:
            joint = None
        if joint != target.shape:
            raise Rejected("weight_shape", f"{name} of shape {array.shape} does not broadcast to {target.shape}")


def _check_float(**arrays: np.ndarray) -> None:
    for name, array in arrays.items():
        if array.dtype not in FLOATS:
            raise Rejected("dtype", f"{name} has dtype {array.dtype}; a floating dtype is required")


def _check_bce(input: np.ndarray, target: np.ndarray, weight: np.ndarray | None, reduction: Any) -> str:
    """Raises what BCE rejects; returns the reduction's name."""
    reduction = _check_reduction(reduction)
    _check_shapes(input, target, weight=weight)
    _check_float(input=input)
    if target.dtype != input.dtype:
        raise Rejected("dtype", f"target dtype {target.dtype} differs from input dtype {input.dtype}")
    for name, array in (("input", input), ("target", target)):
        if not np.all((array >= 0) & (array <= 1)):
            raise Rejected("out_of_range", f"all elements of {name} should be between 0 and 1")
    return reduction


def _check_logits(input: np.ndarray, target: np.ndarray, weight: np.ndarray | None, pos_weight: np.ndarray | None,
                  reduction: Any) -> str:
    """Raises what BCE with logits rejects; returns the reduction's name."""
    reduction = _check_reduction(reduction)
    _check_shapes(input, target, weight=weight, pos_weight=pos_weight)
    _check_float(input=input, target=target)
    return reduction


def _check_wrt(wrt: tuple[str, ...]) -> None:
    refused = [name for name in wrt if name not in ("input", "target")]
    if refused:
        raise Rejected("not_differentiable", f"the loss is not differentiable with respect to {', '.join(refused)}")


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))


def _backward(local: np.ndarray, grad_output: np.ndarray, weight: np.ndarray | None, reduction: str,
              dtype: np.dtype) -> np.ndarray:
    """Chain an element's derivative: times grad_output (0-d after a reduction), times weight, over N for 'mean'."""
    grad = local * grad_output.astype(local.dtype)
    if weight is not None:
        grad = grad * weight.astype(local.dtype)
    if reduction == "mean":  # N itself may exceed float16's range (65504): divide in float32 at least
        grad = grad / np.asarray(max(local.size, 1), dtype=np.promote_types(local.dtype, np.float32))
    return grad.astype(dtype)


def _reduce(loss: np.ndarray, reduction: str, dtype: np.dtype) -> np.ndarray:
    """Sum with a float32 accumulator at least (float16 and bfloat16 sums would overflow or drift)."""
    if reduction == "none":
        return loss.astype(dtype)
    accumulator = np.float64 if loss.dtype == np.float64 else np.float32
    with np.errstate(invalid="ignore", over="ignore"):  # inf + -inf is NaN, an overflowing sum inf: IEEE, as specified
        total = np.sum(loss, dtype=accumulator)
        if reduction == "mean":
            total = total / loss.size if loss.size else accumulator(np.nan)  # type: ignore[operator, assignment]
        return np.asarray(total).astype(dtype)


class NumpyBackend:
    name = "numpy"
    device = "cpu"
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
        reduction = _check_bce(input, target, weight, reduction)
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
        reduction = _check_logits(input, target, weight, pos_weight, reduction)
        work = np.promote_types(input.dtype, target.dtype)
        x, y = input.astype(work), target.astype(work)
        with np.errstate(over="ignore", invalid="ignore"):
            log_sigmoid = _log_sigmoid(x)
            if pos_weight is None:
                loss = (1 - y) * x - log_sigmoid
            else:
                loss = (1 - y) * x - ((pos_weight.astype(work) - 1) * y + 1) * log_sigmoid
            if weight is not None:
                loss = loss * weight.astype(work)
        return _reduce(loss, reduction, target.dtype)


    def bce_grad(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None, reduction: Any,
                 grad_output: np.ndarray, wrt: tuple[str, ...]) -> dict[str, np.ndarray]:
        """dl/dp = (p - y) / max(p (1 - p), eps) with PyTorch's eps in the input's dtype; dl/dy = -logit(p)."""
        reduction = _check_bce(input, target, weight, reduction)
        _check_wrt(wrt)
        p, y = input, target
        local = {}
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if "input" in wrt:
                eps = np.asarray(np.float32(1e-12)).astype(p.dtype)
                local["input"] = (p - y) / np.maximum(p * (1 - p), eps)
            if "target" in wrt:
                local["target"] = np.log1p(-p) - np.log(p)
            return {name: _backward(d, grad_output, weight, reduction, p.dtype) for name, d in local.items()}

    def bce_with_logits_grad(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None,
                             pos_weight: np.ndarray | None, reduction: Any, grad_output: np.ndarray,
                             wrt: tuple[str, ...]) -> dict[str, np.ndarray]:
        """dl/dx = (pw y + 1 - y) sigmoid(x) - pw y, or sigmoid(x) - y without pos_weight;
        dl/dy = logsigmoid(-x) - pw logsigmoid(x)."""
        reduction = _check_logits(input, target, weight, pos_weight, reduction)
        _check_wrt(wrt)
        work = np.promote_types(input.dtype, target.dtype)
        x, y = input.astype(work), target.astype(work)
        pw = np.ones((), work) if pos_weight is None else pos_weight.astype(work)
        local = {}
        with np.errstate(over="ignore", invalid="ignore"):
            if "input" in wrt:
                e = np.exp(-np.abs(x))
                sigmoid = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
                # no factor without pos_weight: with y = +-inf, (y + 1 - y) is NaN where sigmoid(x) - y is not
                local["input"] = sigmoid - y if pos_weight is None else (pw * y + 1 - y) * sigmoid - pw * y
            if "target" in wrt:
                local["target"] = _log_sigmoid(-x) - pw * _log_sigmoid(x)
            grads = {name: _backward(d, grad_output, weight, reduction, work) for name, d in local.items()}
        return {name: grad.astype({"input": input.dtype, "target": target.dtype}[name]) for name, grad in grads.items()}

    def sigmoid_bce_grad(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None, reduction: Any,
                         grad_output: np.ndarray, wrt: tuple[str, ...]) -> dict[str, np.ndarray]:
        """BCE's gradients at p = sigmoid(x); by input, through sigmoid's backward: times (1 - p) p, from p."""
        p = self.sigmoid(input)
        grads = self.bce_grad(p, target, weight=weight, reduction=reduction, grad_output=grad_output, wrt=wrt)
        if "input" in grads:
            with np.errstate(invalid="ignore"):  # an infinite gradient by p (eps 0 in float16) times 0: NaN
                grads["input"] = grads["input"] * ((1 - p) * p)
        return grads


    def bce_grad2(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None, reduction: Any,
                  grad_output: np.ndarray, tangent: np.ndarray, wrt: tuple[str, ...]) -> dict[str, np.ndarray]:
        """By input, PyTorch's double-backward formula (p^2 - 2 p y + y) / ((p + 1e-12)^2 (1 - p + 1e-12)^2);
        by target, -1 / max(p (1 - p), 1e-12)."""
        _check_bce(input, target, weight, reduction)
        _check_wrt(wrt)
        p, y = input, target
        local = {}
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            shift = np.asarray(1e-12).astype(p.dtype)
            if "input" in wrt:
                local["input"] = (p * p - 2 * p * y + y) / ((p + shift) ** 2 * (1 - p + shift) ** 2)
            if "target" in wrt:
                local["target"] = -1 / np.maximum(p * (1 - p), shift)
            return {name: _backward(d * tangent.astype(d.dtype), grad_output, weight, reduction, p.dtype)
                    for name, d in local.items()}

    def bce_with_logits_grad2(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None,
                              pos_weight: np.ndarray | None, reduction: Any, grad_output: np.ndarray,
                              tangent: np.ndarray, wrt: tuple[str, ...]) -> dict[str, np.ndarray]:
        """By input (pw y + 1 - y) sigmoid(x) (1 - sigmoid(x)); by target (pw - 1) sigmoid(x) - pw."""
        _check_logits(input, target, weight, pos_weight, reduction)
        _check_wrt(wrt)
        work = np.promote_types(input.dtype, target.dtype)
        x, y = input.astype(work), target.astype(work)
        pw = np.ones((), work) if pos_weight is None else pos_weight.astype(work)
        with np.errstate(over="ignore", invalid="ignore"):
            e = np.exp(-np.abs(x))
            sigmoid = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
            local = {"input": (pw * y + 1 - y) * sigmoid * (1 - sigmoid), "target": (pw - 1) * sigmoid - pw}
            return {name: _backward(local[name] * tangent.astype(work), grad_output, weight, reduction, work).astype(
                {"input": input.dtype, "target": target.dtype}[name]) for name in wrt}

    def bce_jvp(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None, reduction: Any,
                tangent: np.ndarray, wrt: tuple[str, ...]) -> dict[str, np.ndarray]:
        """The first-order element derivative times the tangent, reduced as the loss is."""
        ones = np.ones((), target.dtype)
        grads = self.bce_grad(input, target, weight=weight, reduction="none", grad_output=ones, wrt=wrt)
        return {name: _reduce(_wide(grad) * _wide(tangent), reduction, target.dtype) for name, grad in grads.items()}

    def bce_with_logits_jvp(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None,
                            pos_weight: np.ndarray | None, reduction: Any, tangent: np.ndarray,
                            wrt: tuple[str, ...]) -> dict[str, np.ndarray]:
        """The first-order element derivative times the tangent, reduced as the loss is."""
        ones = np.ones((), target.dtype)
        grads = self.bce_with_logits_grad(input, target, weight=weight, pos_weight=pos_weight, reduction="none",
                                          grad_output=ones, wrt=wrt)
        return {name: _reduce(_wide(grad) * _wide(tangent), reduction, target.dtype) for name, grad in grads.items()}


def _wide(array: np.ndarray) -> np.ndarray:
    """float32 at least: float16 and bfloat16 products are formed wider, as PyTorch's CPU kernels do."""
    return array.astype(np.float32) if array.dtype.itemsize < 4 else array


BACKENDS = [NumpyBackend()]
