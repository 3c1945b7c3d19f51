"""A complete adapter in NumPy: both losses, their rejections, and the gradient capability.

Run it with `python -m conformance run --backend my_adapter:BACKEND` from this folder; docs/adapters.md explains
each part. tests/test_readme.py runs it on every shipped case.
"""
import numpy as np

from conformance import Availability, Rejected  # Rejected(rule, message): a rejection for that rule

FLOATS = ("float32", "float64")


def _broadcasts(shape, onto):
    try:
        return np.broadcast_shapes(shape, onto) == onto
    except ValueError:  # the shapes do not broadcast at all
        return False


def _check(input, target, reduction, *weights):
    """The reduction's name ('elementwise_mean' is PyTorch's deprecated spelling of 'mean'), or a rejection."""
    if reduction == "elementwise_mean":
        reduction = "mean"
    if reduction not in ("none", "mean", "sum"):
        raise Rejected("invalid_reduction", f"{reduction!r} is not a valid value for reduction")
    if input.shape != target.shape:
        raise Rejected("shape_mismatch", f"target shape {target.shape} differs from input shape {input.shape}")
    for w in weights:
        if w is not None and not _broadcasts(w.shape, target.shape):
            raise Rejected("weight_shape", f"weight of shape {w.shape} does not broadcast to {target.shape}")
    return reduction


def _reduce(loss, reduction, dtype):
    """Sums in the output dtype, as PyTorch does: a float32 sum of large elements overflows to inf."""
    loss = np.asarray(loss).astype(dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        if reduction == "mean":
            return np.asarray(loss.sum(dtype=dtype) / loss.size if loss.size else np.nan, dtype=dtype)
        if reduction == "sum":
            return np.asarray(loss.sum(dtype=dtype))
    return loss


def _backward(local, grad_output, weight, reduction, dtype):
    """An element's derivative times the incoming gradient and the weight, over N for 'mean'."""
    grad = local * grad_output.astype(np.float64)
    if weight is not None:
        grad = grad * weight
    if reduction == "mean":
        grad = grad / max(grad.size, 1)
    return grad.astype(dtype)


def _check_wrt(wrt):
    refused = [name for name in wrt if name not in ("input", "target")]
    if refused:
        raise Rejected("not_differentiable", f"not differentiable with respect to {', '.join(refused)}")


class MyLibBackend:
    name = "mylib"
    dtypes = frozenset(FLOATS)  # value cases in other dtypes are reported as skipped

    def availability(self):
        return Availability(True)  # or Availability(False, "the reason it cannot run here")

    def version(self):
        return "mylib 1.0"

    def sigmoid(self, input):
        return np.exp(-np.logaddexp(0, -input.astype(np.float64))).astype(input.dtype)

    def bce(self, input, target, *, weight, reduction):
        reduction = _check(input, target, reduction, weight)
        if str(input.dtype) not in FLOATS or target.dtype != input.dtype:
            raise Rejected("dtype", "input and target must share a floating dtype")
        p, y = input.astype(np.float64), target.astype(np.float64)
        if not (np.all((p >= 0) & (p <= 1)) and np.all((y >= 0) & (y <= 1))):
            raise Rejected("out_of_range", "all elements of input and target should be between 0 and 1")
        with np.errstate(divide="ignore"):
            loss = -(y * np.maximum(np.log(p), -100) + (1 - y) * np.maximum(np.log1p(-p), -100))
        if weight is not None:
            loss = loss * weight
        return _reduce(loss, reduction, input.dtype)

    def bce_with_logits(self, input, target, *, weight, pos_weight, reduction):
        reduction = _check(input, target, reduction, weight, pos_weight)
        if str(input.dtype) not in FLOATS or str(target.dtype) not in FLOATS:
            raise Rejected("dtype", "input and target must be floating")
        x, y = input.astype(np.float64), target.astype(np.float64)
        with np.errstate(invalid="ignore"):
            # without pos_weight the factor is exactly 1, even where y is infinite
            factor = 1.0 if pos_weight is None else (pos_weight.astype(np.float64) - 1) * y + 1
            # log sigmoid(x) as a value of the input's dtype, as PyTorch has it: where it underflows
            # there, an infinite factor times it is NaN (inf * 0)
            log_sigmoid = (-np.logaddexp(0, -x)).astype(input.dtype).astype(np.float64)
            loss = (1 - y) * x - factor * log_sigmoid
        if weight is not None:
            loss = loss * weight
        return _reduce(loss, reduction, target.dtype)  # the result follows the target's dtype

    # Optional: the gradient capability. Without these methods, gradient cases are "unsupported".
    def bce_grad(self, input, target, *, weight, reduction, grad_output, wrt):
        self.bce(input, target, weight=weight, reduction=reduction)  # the same checks
        _check_wrt(wrt)
        p, y = input.astype(np.float64), target.astype(np.float64)
        eps = np.float32(1e-12).astype(input.dtype)  # PyTorch's floor, in the input's dtype
        with np.errstate(divide="ignore", invalid="ignore"):
            local = {"input": (p - y) / np.maximum(p * (1 - p), eps), "target": np.log1p(-p) - np.log(p)}
        return {name: _backward(local[name], grad_output, weight, reduction, input.dtype) for name in wrt}

    def bce_with_logits_grad(self, input, target, *, weight, pos_weight, reduction, grad_output, wrt):
        self.bce_with_logits(input, target, weight=weight, pos_weight=pos_weight, reduction=reduction)
        _check_wrt(wrt)
        x, y = input.astype(np.float64), target.astype(np.float64)
        pw = 1.0 if pos_weight is None else pos_weight.astype(np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            sigmoid, log_sigmoid = np.exp(-np.logaddexp(0, -x)), -np.logaddexp(0, -x)
            # without pos_weight, sigmoid(x) - y: (y + 1 - y) would be NaN at an infinite y
            local = {"input": sigmoid - y if pos_weight is None else (pw * y + 1 - y) * sigmoid - pw * y,
                     "target": -np.logaddexp(0, x) - pw * log_sigmoid}
        dtypes = {"input": input.dtype, "target": target.dtype}  # each gradient in its own tensor's dtype
        return {name: _backward(local[name], grad_output, weight, reduction, dtypes[name]) for name in wrt}

    def sigmoid_bce_grad(self, input, target, *, weight, reduction, grad_output, wrt):
        p = self.sigmoid(input)  # BCE of this library's own sigmoid, differentiated through its backward
        grads = self.bce_grad(p, target, weight=weight, reduction=reduction, grad_output=grad_output, wrt=wrt)
        if "input" in grads:  # sigmoid's backward: times p (1 - p), from its output
            q = p.astype(np.float64)
            with np.errstate(invalid="ignore"):
                grads["input"] = (grads["input"].astype(np.float64) * (1 - q) * q).astype(input.dtype)
        return grads


BACKEND = MyLibBackend()
