"""Second-order (double backward) and forward-mode (JVP) derivatives of the losses, as PyTorch 2.13 specifies them.

Second order: the gradient by input (or target) of <g_x, v>, where g_x = dL/dinput chained with grad_output
(the first-order result) and v, the tangent, has the input's shape. Per element, times grad_output, the
tangent, the weight, and 1/N for 'mean':

- bce by input: PyTorch's own formula, `binary_cross_entropy_double_backward` in
  https://github.com/pytorch/pytorch/blob/main/torch/csrc/autograd/FunctionsManual.cpp:
  (p^2 - 2 p y + y) / ((p + eps)^2 (1 - p + eps)^2) with eps = 1e-12 (a double, so in the input's dtype);
  not the derivative of the first-order clamp max(p (1 - p), eps).
- bce by target: -1 / max(p (1 - p), eps), the same eps = 1e-12 (double, then the input's dtype), not the
  first-order EPSILON = float32(1e-12): PyTorch 2.13 gives -1e12 at p = 1e-13 in float64.
- bce_with_logits by input: (pw y + 1 - y) sigmoid(x) (1 - sigmoid(x)) (autograd through `sigmoid`'s backward);
  by target: (pw - 1) sigmoid(x) - pw, or -1 without pos_weight.

Forward mode: the loss's directional derivative when one tensor moves along the tangent. For both losses
PyTorch's forward formula (tools/autograd/derivatives.yaml, `result:`) applies the first-order element
derivative to the tangent, then the reduction: sum (w l'(x) v) [/ N] for 'sum' and 'mean'.

Everything is computed in 256 bits on the exact input values and rounded once.
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from fractions import Fraction

import mpmath
import numpy as np

from . import exact
from .formats import FORMATS
from .losses import EXACT_LIMIT, Expected, broadcast_column, underflow_gain
from .spec import BCE_GRAD_EPS, Signature, check_bce, check_bce_with_logits, check_differentiable

HIGHER_ORDER_OPS = ("bce", "bce_with_logits")
"""The ops whose second-order and forward-mode derivatives are specified (sigmoid_bce's are not)."""

DOUBLE_BACKWARD_EPS = 1e-12
"""`auto eps = 1e-12;` in PyTorch's binary_cross_entropy_double_backward."""

CTX = exact.CTX
Kernel = Callable[[float, float, float], tuple[mpmath.mpf, float]]


def _abs(value: mpmath.mpf) -> float:
    return 0.0 if CTX.isnan(value) else float(abs(value))


def bce_input2(p: float, y: float, eps: float) -> tuple[mpmath.mpf, float]:
    """d2l/dp2 as PyTorch's double backward: (p^2 - 2 p y + y) / ((p + eps)^2 (1 - p + eps)^2)."""
    p, y, e = CTX.mpf(p), CTX.mpf(y), CTX.mpf(eps)
    denominator = (p + e) ** 2 * (1 - p + e) ** 2
    numerator = p * p - 2 * p * y + y
    if denominator == 0:  # eps rounded to 0 in the input's dtype, p is 0 or 1
        return (CTX.nan if numerator == 0 else CTX.inf * CTX.sign(numerator)), 0.0
    # the terms of the numerator may cancel (a rounding of each counts), the rest are products and quotients
    return numerator / denominator, float((p * p + 2 * abs(p * y) + abs(y)) / denominator)


def bce_target2(p: float, y: float, eps: float) -> tuple[mpmath.mpf, float]:
    """d2l/dp dy = -1 / max(p (1 - p), eps)."""
    p = CTX.mpf(p)
    denominator = max(p * (1 - p), CTX.mpf(eps))
    value = -CTX.inf if denominator == 0 else -1 / denominator
    return value, _abs(value)


def logits_input2(x: float, y: float, pw: float) -> tuple[mpmath.mpf, float]:
    """d2l/dx2 = (pw y + 1 - y) sigmoid(x) (1 - sigmoid(x)).

    PyTorch forms 1 - sigmoid(x) from the rounded sigmoid: for large x an absolute error of u, so the
    scale is (|pw y| + 1 + |y|) sigmoid(x), not the (tiny) value.
    """
    x, y, pw = CTX.mpf(x), CTX.mpf(y), CTX.mpf(pw)
    s = exact.sigmoid(x)
    factor = pw * y + 1 - y
    return factor * s * (1 - s), float((abs(pw * y) + 1 + abs(y)) * s)


def logits_target2(x: float, y: float, pw: float) -> tuple[mpmath.mpf, float]:
    """d2l/dx dy = (pw - 1) sigmoid(x) - pw."""
    x, pw = CTX.mpf(x), CTX.mpf(pw)
    s = exact.sigmoid(x)
    return (pw - 1) * s - pw, float(abs(pw - 1) * s + abs(pw))


def _first_order(op: str, name: str, eps: float, pos_weight: np.ndarray | None) -> Kernel:
    """The first-order element derivative of reference.exact, as a kernel of (x, y, pw)."""
    if op == "bce":
        if name == "input":
            return lambda p, y, pw: exact.bce_grad_input(p, y, eps)
        return lambda p, y, pw: exact.bce_grad_target(p)
    if name == "input":
        return lambda x, y, pw: exact.bce_with_logits_grad_input(x, y, None if pos_weight is None else pw)
    return lambda x, y, pw: exact.bce_with_logits_grad_target(x, pw)


_SECOND_ORDER: dict[tuple[str, str], Kernel] = {
    ("bce", "input"): bce_input2, ("bce", "target"): bce_target2,
    ("bce_with_logits", "input"): logits_input2, ("bce_with_logits", "target"): logits_target2,
}


def _check(op: str, tensors: Mapping[str, np.ndarray], reduction: object, wrt: Collection[str]) -> Signature:
    x, y = tensors["input"], tensors["target"]
    if op == "bce":
        signature = check_bce(x, y, tensors.get("weight"), reduction)
    elif op == "bce_with_logits":
        signature = check_bce_with_logits(x, y, tensors.get("weight"), tensors.get("pos_weight"), reduction)
    else:
        raise ValueError(f"no derivative is specified for {op!r}")
    check_differentiable(op, tuple(wrt))
    if x.size > EXACT_LIMIT:
        raise ValueError(f"higher-order references are exact only: at most {EXACT_LIMIT} elements, not {x.size}")
    return signature


def _working(signature_dtype: str, *arrays: np.ndarray) -> str:
    return max((signature_dtype, *(str(a.dtype) for a in arrays)), key=lambda d: FORMATS[d].unit_roundoff)


def _apply(kernel: Kernel, x: np.ndarray, y: np.ndarray, pw: np.ndarray, chain: list[np.ndarray]
           ) -> tuple[list[mpmath.mpf], np.ndarray, np.ndarray]:
    """Each element's kernel value times the chained factors: (values, scales, underflow gains)."""
    values, scales = [], []
    for i, (a, b, c) in enumerate(zip(x, y, pw)):
        value, scale = kernel(float(a), float(b), float(c))
        for factor in chain:
            value, scale = value * CTX.mpf(float(factor[i])), scale * abs(float(factor[i]))
        values.append(value)
        scales.append(scale)
    with np.errstate(over="ignore", invalid="ignore"):
        scale_array = np.nan_to_num(np.array(scales, dtype=np.float64), nan=0.0, posinf=np.finfo(np.float64).max)
    return values, scale_array, underflow_gain(*chain)


def second_order(op: str, tensors: Mapping[str, np.ndarray], reduction: object, wrt: Collection[str],
                 grad_output: np.ndarray | None = None, tangent: np.ndarray | None = None) -> dict[str, Expected]:
    """The gradient by each tensor of `wrt` of <dL/dinput (chained with grad_output), tangent>."""
    signature = _check(op, tensors, reduction, wrt)
    x, y = tensors["input"], tensors["target"]
    n = int(y.size)
    g = np.ones(signature.shape) if grad_output is None else np.asarray(grad_output, dtype=np.float64)
    v = np.ones(x.shape) if tangent is None else np.asarray(tangent, dtype=np.float64)
    if g.shape != signature.shape or v.shape != x.shape:
        raise ValueError(f"grad_output {g.shape} or tangent {v.shape} does not match the loss {signature.shape} "
                         f"and input {x.shape}")
    input_fmt = FORMATS[str(x.dtype)]
    eps = input_fmt.round(Fraction(DOUBLE_BACKWARD_EPS))
    xf, yf = x.astype(np.float64).ravel(), y.astype(np.float64).ravel()
    pw = broadcast_column(tensors.get("pos_weight"), y.shape, 1.0)
    chain = [broadcast_column(g, y.shape, 1.0), v.ravel(), broadcast_column(tensors.get("weight"), y.shape, 1.0)]
    working = _working(signature.dtype, x, y)
    results = {}
    for name in wrt:
        kernel = _SECOND_ORDER[(op, name)]
        columns = np.full(n, eps) if op == "bce" else pw
        values, scale, gain = _apply(kernel, xf, yf, columns, chain)
        if reduction == "mean" and n:
            values, scale = [value / n for value in values], scale / n
        fmt = FORMATS[str(tensors[name].dtype)]
        results[name] = Expected(
            value=np.array([exact.round_to(fmt, value) for value in values], dtype=np.float64).reshape(x.shape),
            dtype=str(tensors[name].dtype), scale=scale.reshape(x.shape), terms=1, method="exact",
            working_dtype=working, gain=gain.reshape(x.shape))
    return results


def forward_mode(op: str, tensors: Mapping[str, np.ndarray], reduction: object, wrt: Collection[str],
                 tangent: np.ndarray | None = None) -> dict[str, Expected]:
    """The loss's derivative along `tangent` (the input's shape) when each tensor of `wrt` alone moves."""
    signature = _check(op, tensors, reduction, wrt)
    x, y = tensors["input"], tensors["target"]
    n = int(y.size)
    v = np.ones(x.shape) if tangent is None else np.asarray(tangent, dtype=np.float64)
    if v.shape != x.shape:
        raise ValueError(f"tangent has shape {v.shape}, but the input has shape {x.shape}")
    floor = FORMATS[str(x.dtype)].round(Fraction(BCE_GRAD_EPS))
    xf, yf = x.astype(np.float64).ravel(), y.astype(np.float64).ravel()
    pw = broadcast_column(tensors.get("pos_weight"), y.shape, 1.0)
    chain = [v.ravel(), broadcast_column(tensors.get("weight"), y.shape, 1.0)]
    fmt = FORMATS[signature.dtype]
    results = {}
    for name in wrt:
        values, scale, gain = _apply(_first_order(op, name, floor, tensors.get("pos_weight")), xf, yf, pw, chain)
        if reduction == "none":
            value = np.array([exact.round_to(fmt, item) for item in values], dtype=np.float64).reshape(x.shape)
            results[name] = Expected(value=value, dtype=signature.dtype, scale=scale.reshape(x.shape), terms=1,
                                     method="exact", working_dtype=_working(signature.dtype, x, y),
                                     gain=gain.reshape(x.shape))
            continue
        total, total_scale = CTX.fsum(values), float(np.sum(scale))
        if reduction == "mean":
            total, total_scale = (total / n, total_scale / n) if n else (CTX.nan, 0.0)
        results[name] = Expected(value=np.array(exact.round_to(fmt, total)), dtype=signature.dtype,
                                 scale=np.array(total_scale), terms=n, method="exact",
                                 working_dtype=_working(signature.dtype, x, y),
                                 gain=np.array(float(np.max(gain, initial=1.0))))
    return results
