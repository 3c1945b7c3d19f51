"""The specified gradients, as PyTorch 2.13's autograd computes them: validate, compute each element, chain, round once.

A gradient is the vector-Jacobian product of the loss with `grad_output`: the element's own
derivative (`exact` or `fast` kernels), times grad_output (broadcast from a reduction's 0-d
value), times the weight, divided by N for reduction='mean'; one correct rounding into the dtype
of the tensor it belongs to.

`sigmoid_bce` is BCELoss of the sigmoid, as autograd differentiates `binary_cross_entropy(sigmoid(x), y)`:
p = sigmoid(x) correctly rounded to x's dtype (as for the loss), BCELoss's gradient by p (its eps floor
included), then sigmoid's backward, which multiplies by p (1 - p) computed from its output p
(`sigmoid_backward` in https://github.com/pytorch/pytorch/blob/main/tools/autograd/derivatives.yaml).
So d/dx is p - y where p (1 - p) exceeds the floor, (p - y) p (1 - p) / eps below it, and 0 where p
rounds to 1 (or NaN where eps rounds to 0 too, as in float16); d/dy is BCELoss's, -logit(p). The
backend's own sigmoid may err by a few ulps (SIGMOID_ULPS): S's term magnitudes carry its first-order
effect, and the sign invariants leave out the band where it could flip the sign.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Collection, Mapping

import numpy as np

from . import exact, fast, specified
from .formats import FORMATS, Format
from .losses import (
    EXACT_LIMIT,
    Expected,
    _sigmoid,
    as_specified,
    broadcast_column,
    exact_map,
    fast_decided_elements,
    finite_as_specified,
    underflow_gain,
)
from .spec import (
    BCE_GRAD_EPS,
    DIFFERENTIABLE,
    check_bce,
    check_bce_with_logits,
    check_differentiable,
)

GRADIENT_OPS = ("bce", "bce_with_logits", "sigmoid_bce")

SIGMOID_ULPS = 4
"""The error, in ulps of its output, that a backend's own sigmoid may have (docs/tolerances.md)."""

SIGN_RULES = {
    ("bce", "input"): "d/dp has the sign of (p - y) g w",
    ("bce", "target"): "d/dy has the sign of (1/2 - p) g w",
    ("bce_with_logits", "input"): "d/dx has the sign of (sigmoid(x) - y) g w where y = 0, or y = 1 without pos_weight",
    ("bce_with_logits", "target"): "d/dy has the sign of -x g w without pos_weight",
    ("sigmoid_bce", "input"): f"d/dx has the sign of (sigmoid(x) - y) g w where y is 0 or 1, or sigmoid(x) is more "
                              f"than {SIGMOID_ULPS} ulps from y",
    ("sigmoid_bce", "target"): f"d/dy has the sign of (1/2 - sigmoid(x)) g w where sigmoid(x) is more than "
                               f"{SIGMOID_ULPS} ulps from 1/2",
}
"""The gradient-sign invariants, each with its region: there every step of PyTorch's algorithm keeps the sign."""


def _sign_region(op: str, name: str, y: np.ndarray, pw: np.ndarray | None, p: np.ndarray, fmt: Format
                 ) -> np.ndarray:
    """Where SIGN_RULES[(op, name)] applies, per element (`p`: sigmoid_bce's rounded sigmoid, in `fmt`)."""
    if op == "sigmoid_bce":
        band = SIGMOID_ULPS * fmt.spacing(p)
        if name == "target":
            return np.abs(p - 0.5) > band
        return (y == 0) | (y == 1) | (np.abs(p - y) > band)
    if op == "bce" or (name == "target" and pw is None):
        return np.ones(y.shape, dtype=bool)
    if name == "target":
        return np.zeros(y.shape, dtype=bool)
    one = np.ones(y.shape, dtype=bool) if pw is None else pw == 1
    return (y == 0) | ((y == 1) & one)


def _dtype_literal_input(x: np.ndarray, y: np.ndarray, pw: np.ndarray, fmt: Format) -> np.ndarray:
    """d/dx = (pw y + 1 - y) sigmoid(x) - pw y where y or pw is not finite: the sigmoid in the input's dtype.

    The result is +-inf or NaN, and which depends on whether sigmoid(x) is 0, as it is in the
    dtype long before it is exactly (see `losses.infinite_factor_literal`).
    """
    with np.errstate(invalid="ignore", over="ignore"):
        positive = pw * y
        return (positive + 1 - y) * fmt.round_array(fast.sigmoid(x)) - positive


def _dtype_literal_target(x: np.ndarray, pw: np.ndarray, fmt: Format) -> np.ndarray:
    """d/dy = log sigmoid(-x) - pw log sigmoid(x) where pw is not finite: the log sigmoids in the input's dtype."""
    with np.errstate(invalid="ignore", over="ignore"):
        return fmt.round_array(fast.log_sigmoid(-x)) - pw * fmt.round_array(fast.log_sigmoid(x))


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
    if method == "auto":
        method = "exact" if x.size <= EXACT_LIMIT else "fast"
    given = tensors
    if op == "bce":
        signature = check_bce(x, y, weight, reduction)
    elif op == "bce_with_logits":
        signature = check_bce_with_logits(x, y, weight, pos_weight, reduction)
    elif op == "sigmoid_bce":
        check_bce_with_logits(x, y, weight, None, reduction)  # shapes, dtypes, weight, reduction: as the loss
        x = _sigmoid(x, FORMATS[str(x.dtype)], method).astype(x.dtype)
        tensors = {**tensors, "input": x}
        signature = check_bce(x, y, weight, reduction)
    else:
        raise ValueError(f"no gradient is specified for {op!r}; expected one of {GRADIENT_OPS}")
    check_differentiable(op, tuple(wrt))
    reduction = signature.reduction
    g = np.ones(signature.shape) if grad_output is None else np.asarray(grad_output).astype(np.float64)
    if g.shape != signature.shape:
        raise ValueError(f"grad_output has shape {g.shape}, but the loss has shape {signature.shape}")
    kind = "bce" if op == "sigmoid_bce" else op
    n = int(y.size)
    xf, yf = x.astype(np.float64).ravel(), y.astype(np.float64).ravel()
    pw = None if pos_weight is None else broadcast_column(pos_weight, y.shape, 1.0)
    chain = [broadcast_column(g, y.shape, 1.0), broadcast_column(weight, y.shape, 1.0)]
    working = max((signature.dtype, str(x.dtype), str(y.dtype)), key=lambda d: FORMATS[d].unit_roundoff)
    input_fmt = FORMATS[str(x.dtype)]
    columns = _Columns(xf, yf, pw, broadcast_column(pos_weight, y.shape, 1.0), chain)

    results = {}
    for name in wrt:
        task = _Task(op, name, str(reduction), n, working, input_fmt)
        grads, scale, factors, peak = task.chained(columns, method)
        fmt = FORMATS[str(tensors[name].dtype)]
        if method == "exact" and exact.undecided(fmt, grads, scale):
            with exact.CTX.workprec(2 * exact.CTX.prec):
                return gradients(op, given, reduction, wrt, grad_output, method)
        if method == "exact":
            value = np.array([exact.round_to(fmt, v) for v in grads], dtype=np.float64)
        else:  # the elements the longdouble path leaves undecided are evaluated exactly, alone
            value = fmt.round_array(grads)
            undecided = np.flatnonzero(~fast_decided_elements(fmt, grads, scale))
            if undecided.size:
                value[undecided] = task.exact_values(fmt, columns.take(undecided))
        spec = specified.gradient(kind, tensors, str(reduction), name, g)
        if op == "sigmoid_bce":
            spec = _through_sigmoid(spec, name, xf, yf, input_fmt, chain, n if reduction == "mean" else 1)
        value = finite_as_specified(value.reshape(tensors[name].shape), spec)
        region = _sign_region(op, name, yf, pw, xf, input_fmt).reshape(tensors[name].shape)
        results[name] = Expected(
            value=value,
            dtype=str(tensors[name].dtype),
            scale=np.nan_to_num(scale, nan=0.0, posinf=np.finfo(np.float64).max).reshape(tensors[name].shape),
            terms=1,
            method=method,
            working_dtype=working,
            peak=float(peak),
            gain=underflow_gain(*factors, *chain).reshape(tensors[name].shape),
            specified=spec,
            sign=np.where(region, np.sign(np.nan_to_num(value, nan=0.0)), 0.0),
            invariant=SIGN_RULES[(op, name)],
        )
    return results


def _times_slope(grads: np.ndarray, scale: np.ndarray, p: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    """The gradient by p times sigmoid's slope p (1 - p), exactly (256 bits) or in longdouble; and its scale."""
    with np.errstate(invalid="ignore"):  # an infinite gradient by p times a slope of 0: NaN, as in PyTorch
        if method == "exact":
            slope = [exact.CTX.mpf(v) * (1 - exact.CTX.mpf(v)) for v in p]
            return np.array([grad * s for grad, s in zip(grads, slope)], dtype=object), scale * p * (1 - p)
        wide = p.astype(fast.WIDE)
        return grads * (wide * (1 - wide)), scale * p * (1 - p)


def _through_sigmoid(spec: specified.Specified, name: str, p: np.ndarray, y: np.ndarray, fmt: Format,
                     chain: list[np.ndarray], divisor: int) -> specified.Specified:
    """S of sigmoid_bce from BCELoss's S at p: by input, through sigmoid's backward (times (1 - p) p, rounded once).

    Its term magnitudes T grow by the first-order effect of half an ulp of error in p per unit roundoff (as the
    loss's do), so that k_S counts admit a sigmoid k_S / 2 ulps off: d/dp of p - y is 1, of the floored
    (p - y) p (1 - p) / eps it is ((1 - 2p)(p - y) + p (1 - p)) / eps, and of -logit(p) it is -1 / (p (1 - p)).
    """
    shape = spec.value.shape
    factor = np.prod([np.abs(f) for f in chain], axis=0) / divisor
    half_ulp = fmt.spacing(p) / (2 * fmt.unit_roundoff)
    slope = p * (1 - p)
    with np.errstate(all="ignore"):
        if name == "input":
            eps = fmt.round(Fraction(BCE_GRAD_EPS))
            floored = slope < eps
            effect = np.where(floored, np.abs((1 - 2 * p) * (p - y) + slope) / max(eps, fmt.min_subnormal), 1.0)
            values = fmt.round_array(spec.value.ravel().astype(fast.WIDE) * (1 - p) * p).reshape(shape)
            scale = spec.scale.ravel() * slope + effect * half_ulp * factor
        else:
            values = spec.value
            scale = spec.scale.ravel() + half_ulp * factor / slope
    scale = np.nan_to_num(scale, nan=0.0, posinf=np.finfo(np.float64).max).reshape(shape)
    return specified.Specified(values, scale, np.abs(values))


@dataclass(frozen=True)
class _Columns:
    """The per-element columns a gradient is computed from (all N elements, or some of them)."""

    x: np.ndarray
    y: np.ndarray
    pw: np.ndarray | None  # None: no pos_weight
    pw_column: np.ndarray  # pos_weight, or ones: for the kernels that read pw = 1 alike
    chain: list[np.ndarray]  # grad_output and weight, broadcast

    def take(self, index: np.ndarray) -> _Columns:
        return _Columns(self.x[index], self.y[index], None if self.pw is None else self.pw[index],
                        self.pw_column[index], [factor[index] for factor in self.chain])


@dataclass(frozen=True)
class _Task:
    """One gradient of one call: which op, by which tensor, reduced how over N elements."""

    op: str
    name: str
    reduction: str
    n: int
    working: str
    input_fmt: Format

    def chained(self, c: _Columns, method: str) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], float]:
        """Each element's derivative times the chain (and 1/N for 'mean'): (values, scales, the factors that may
        magnify an underflow, the largest term)."""
        kernels = exact if method == "exact" else fast
        run = (lambda fn, *cols: exact_map(fn, *cols)) if method == "exact" else (lambda fn, *cols: fn(*cols))
        kind, name, size = "bce" if self.op == "sigmoid_bce" else self.op, self.name, c.x.size
        exactly_infinite = np.zeros(size, dtype=bool)  # terms infinite by the formula itself: no overflow, no peak
        if kind == "bce" and name == "input":
            eps = self.input_fmt.round(Fraction(BCE_GRAD_EPS))
            grads, scale = run(kernels.bce_grad_input, c.x, c.y, np.full(size, eps))
            floor = np.maximum(c.x * (1 - c.x), eps)
            with np.errstate(divide="ignore"):  # an underflow before the division by max(p (1 - p), EPS)
                factors = [1 / floor]
            # p = -0.0 where EPS rounds to 0 (half): PyTorch's std::max((1 - p) p, EPS) returns its first
            # argument, -0.0, so the division flips the infinity's sign (+inf for y > 0); the kernel's exact
            # arithmetic has no -0.0. (Whether (p - y) g w / 0 is inf or NaN depends on what underflows first:
            # these elements stay peaks.)
            negative_zero = (floor == 0) & (c.x == 0) & np.signbit(c.x)
            with np.errstate(divide="ignore", invalid="ignore"):
                grads[negative_zero] = as_specified((c.x[negative_zero] - c.y[negative_zero]) / -0.0, method)
        elif kind == "bce":
            grads, scale = run(kernels.bce_grad_target, c.x)
            with np.errstate(divide="ignore"):
                factors = [np.maximum(np.abs(np.log(c.x)), np.abs(np.log1p(-c.x)))]
            exactly_infinite = (c.x == 0) | (c.x == 1)  # -logit(p) = +-inf, in any order of evaluation as long as
            # no product of the factors that follow can underflow to 0 before it meets the infinity (then NaN)
            exactly_infinite &= np.all([(f == 0) | (np.abs(f) >= 1) for f in c.chain], axis=0)
            exactly_infinite &= self.reduction != "mean" or self.n * FORMATS[self.working].min_normal <= 1
        elif name == "input":
            grads, scale = run(kernels.bce_with_logits_grad_input, c.x, c.y,
                               ([None] * size if method == "exact" else None) if c.pw is None else c.pw)
            factors = [np.maximum(np.abs(c.y), np.abs(c.pw_column))]
            if c.pw is not None:
                odd = ~(np.isfinite(c.y) & np.isfinite(c.pw_column))
                grads[odd] = as_specified(_dtype_literal_input(c.x[odd], c.y[odd], c.pw_column[odd], self.input_fmt),
                                          method)
        else:
            grads, scale = run(kernels.bce_with_logits_grad_target, c.x, c.pw_column)
            factors = [np.maximum(np.abs(c.x), np.abs(c.pw_column))]
            odd = ~np.isfinite(c.pw_column)
            grads[odd] = as_specified(_dtype_literal_target(c.x[odd], c.pw_column[odd], self.input_fmt), method)
        if self.op == "sigmoid_bce" and name == "input":  # sigmoid's backward: times p (1 - p), from its output p
            grads, scale = _times_slope(grads, scale, c.x, method)
            with np.errstate(invalid="ignore"):  # an underflow in p - y is magnified by p (1 - p) / floor
                factors = [factors[0] * c.x * (1 - c.x)]
        counted = ~exactly_infinite
        with np.errstate(over="ignore", invalid="ignore"):
            peak = np.nan_to_num(scale[counted]).max(initial=0.0)
            for factor in c.chain:
                grads = grads * (factor if method == "exact" else factor.astype(fast.WIDE))
                scale = scale * np.abs(factor)
                peak = max(peak, np.nan_to_num(scale[counted]).max(initial=0.0))
            if self.reduction == "mean" and self.n:
                grads, scale = grads / self.n, scale / self.n
        return grads, scale, factors, float(peak)

    def exact_values(self, fmt: Format, c: _Columns) -> np.ndarray:
        """The elements of `c` evaluated in 256 bits and more (Ziv's strategy), each correctly rounded to `fmt`."""
        for prec in exact.PRECISIONS:
            with exact.CTX.workprec(prec):
                grads, scale, _, _ = self.chained(c, "exact")
                if not exact.undecided(fmt, grads, scale):
                    return np.array([exact.round_to(fmt, v) for v in grads], dtype=np.float64)
        raise AssertionError("unreachable: exact.undecided is False at the last precision")
