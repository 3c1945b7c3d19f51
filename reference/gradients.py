"""The specified gradients, as PyTorch 2.13's autograd computes them: validate, compute each element, chain, round once.

A gradient is the vector-Jacobian product of the loss with `grad_output`: the element's own
derivative (`exact` or `fast` kernels), times grad_output (broadcast from a reduction's 0-d
value), times the weight, divided by N for reduction='mean'; one correct rounding into the dtype
of the tensor it belongs to.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Collection, Mapping

import numpy as np

from . import exact, fast
from .formats import FORMATS
from .losses import EXACT_LIMIT, Expected, broadcast_column, exact_map
from .spec import BCE_GRAD_EPS, DIFFERENTIABLE, check_bce, check_bce_with_logits, check_differentiable

GRADIENT_OPS = ("bce", "bce_with_logits")


def _flushable_sigmoid(x: np.ndarray, y: np.ndarray, pos_weight: np.ndarray, working: str) -> np.ndarray:
    """Scale that admits a sigmoid flushed to 0 below the smallest normal number, per unit roundoff.

    1 / (1 + exp(-x)) in the working dtype overflows exp(-x) for x < -log(max) and returns 0
    where sigmoid(x) is subnormal (PyTorch's float32 sigmoid does, from x = -88.72); a
    flush-to-zero device does the same. The error is at most (|pw y| + 1 + |y|) sigmoid(x).
    """
    fmt = FORMATS[working]
    sig = fast.sigmoid(x)
    factor = np.abs(pos_weight * y) + 1 + np.abs(y)
    with np.errstate(invalid="ignore", over="ignore"):
        flush = np.where(sig < fmt.min_normal, factor * sig / fast.WIDE(fmt.unit_roundoff), 0)
    return np.nan_to_num(flush.astype(np.float64), nan=0.0, posinf=np.finfo(np.float64).max)


def gradients(
    op: str,
    tensors: Mapping[str, np.ndarray],
    reduction: object = "mean",
    wrt: Collection[str] = DIFFERENTIABLE,
    grad_output: np.ndarray | None = None,
    method: str = "auto",
) -> dict[str, Expected]:
    """The gradient of `op`'s loss with respect to each tensor named in `wrt`, on exact input values.

    `grad_output` has the loss's shape (0-d for a reduction; default ones). Raises
    `reference.Rejected` when the specification rejects the call, including a gradient with
    respect to weight or pos_weight ('not_differentiable').
    """
    x, y = tensors["input"], tensors["target"]
    weight, pos_weight = tensors.get("weight"), tensors.get("pos_weight")
    if op == "bce":
        signature = check_bce(x, y, weight, reduction)
    elif op == "bce_with_logits":
        signature = check_bce_with_logits(x, y, weight, pos_weight, reduction)
    else:
        raise ValueError(f"no gradient is specified for {op!r}; expected one of {GRADIENT_OPS}")
    check_differentiable(op, tuple(wrt))
    g = np.ones(signature.shape) if grad_output is None else np.asarray(grad_output).astype(np.float64)
    if g.shape != signature.shape:
        raise ValueError(f"grad_output has shape {g.shape}, but the loss has shape {signature.shape}")
    if method == "auto":
        method = "exact" if x.size <= EXACT_LIMIT else "fast"
    kernels = exact if method == "exact" else fast
    run = (lambda fn, *cols: exact_map(fn, *cols)) if method == "exact" else (lambda fn, *cols: fn(*cols))

    n = int(y.size)
    xf, yf = x.astype(np.float64).ravel(), y.astype(np.float64).ravel()
    pw = broadcast_column(pos_weight, y.shape, 1.0)
    chain = [broadcast_column(g, y.shape, 1.0), broadcast_column(weight, y.shape, 1.0)]
    working = max((signature.dtype, str(x.dtype), str(y.dtype)), key=lambda d: FORMATS[d].unit_roundoff)

    results = {}
    for name in wrt:
        if op == "bce" and name == "input":
            eps = FORMATS[str(x.dtype)].round(Fraction(BCE_GRAD_EPS))
            grads, scale = run(kernels.bce_grad_input, xf, yf, np.full(n, eps))
        elif op == "bce":
            grads, scale = run(kernels.bce_grad_target, xf)
        elif name == "input":
            grads, scale = run(kernels.bce_with_logits_grad_input, xf, yf, pw)
            scale = scale + _flushable_sigmoid(xf, yf, pw, working)
        else:
            grads, scale = run(kernels.bce_with_logits_grad_target, xf, pw)
        with np.errstate(over="ignore", invalid="ignore"):
            for factor in chain:
                grads = grads * (factor if method == "exact" else factor.astype(fast.WIDE))
                scale = scale * np.abs(factor)
            if reduction == "mean" and n:
                grads, scale = grads / n, scale / n
        fmt = FORMATS[str(tensors[name].dtype)]
        if method == "exact":
            value = np.array([exact.round_to(fmt, v) for v in grads], dtype=np.float64)
        else:
            value = fmt.round_array(grads)
        results[name] = Expected(
            value=value.reshape(tensors[name].shape),
            dtype=str(tensors[name].dtype),
            scale=np.nan_to_num(scale, nan=0.0, posinf=np.finfo(np.float64).max).reshape(tensors[name].shape),
            terms=1,
            method=method,
            working_dtype=working,
        )
    return results
