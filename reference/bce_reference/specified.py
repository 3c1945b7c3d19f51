"""The "as specified" reference: PyTorch 2.13's CPU algorithm evaluated step by step in the dtype under test.

Where PyTorch's algorithm loses accuracy (BCE with logits at y = 0, x << 0; a saturated sigmoid in
d/dx; -logit(p) near p = 1/2), a conforming result may be far, in ulps, from the correctly rounded
value while being exactly what the specified algorithm computes. This module evaluates that
algorithm with every tensor operation rounded once to the dtype (elementary functions evaluated
in extended precision and rounded once, i.e. a correctly rounding libm), so that the comparison
can admit it and label it (docs/tolerances.md). It also returns, per value, the magnitudes of the
terms of the algorithm's last sum (`scale`): the size of the error a faithful libm may add there.

The steps follow aten/src/ATen/native/Loss.cpp (binary_cross_entropy_out_cpu,
binary_cross_entropy_with_logits, binary_cross_entropy_backward) and
torch/csrc/autograd/FunctionsManual.cpp (binary_cross_entropy_target_backward,
binary_cross_entropy_with_logits_backward / _target_backward) of PyTorch 2.13:
https://github.com/pytorch/pytorch/blob/main/aten/src/ATen/native/Loss.cpp
It shares no code with any backend under test.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Mapping

import numpy as np

from .formats import FORMATS, Format
from .spec import BCE_GRAD_EPS

WIDE = np.longdouble
ACCUMULATOR = {"float16": "float32", "bfloat16": "float32", "float32": "float32", "float64": "float64"}
"""The dtype PyTorch's CPU sum and mean accumulate in (opmath: float for the reduced-precision dtypes)."""


@dataclass(frozen=True)
class Specified:
    """What PyTorch's algorithm computes, per value (float64 holding dtype values), and its terms' magnitudes."""

    value: np.ndarray
    scale: np.ndarray  # the magnitudes of the terms of the last sum (PyTorch's own error is a few u times this)
    magnitude: np.ndarray  # the sum of the magnitudes of the elements a reduction adds (|value| without one)


class _Steps:
    """Arithmetic on float64 arrays, each result rounded once to `fmt` (IEEE: no overflow trap, NaN propagates)."""

    def __init__(self, fmt: Format) -> None:
        self.fmt = fmt

    def r(self, values: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return self.fmt.round_array(np.asarray(values, dtype=WIDE))

    def op(self, fn, *args: np.ndarray | float) -> np.ndarray:
        with np.errstate(all="ignore"):
            return self.r(fn(*(np.asarray(a, dtype=WIDE) for a in args)))


def _column(array: np.ndarray | None, shape: tuple[int, ...], default: float) -> np.ndarray:
    if array is None:
        return np.full(shape, default, dtype=np.float64)
    return np.broadcast_to(np.asarray(array).astype(np.float64), shape)


def _log_sigmoid(s: _Steps, x: np.ndarray) -> np.ndarray:
    """at::log_sigmoid: min(x, 0) - log1p(exp(-|x|)), one kernel, rounded once."""
    return s.op(lambda v: np.minimum(v, 0) - np.log1p(np.exp(-np.abs(v))), x)


def _sigmoid(s: _Steps, x: np.ndarray) -> np.ndarray:
    return s.op(lambda v: 1 / (1 + np.exp(-v)), x)


def _reduce(s: _Steps, loss: np.ndarray, scale: np.ndarray, reduction: str) -> Specified:
    """sum / mean: accumulated in the accumulator dtype (an overflow there is inf), then divided and rounded."""
    if reduction == "none":
        return Specified(loss, scale, np.abs(loss))
    acc = FORMATS[ACCUMULATOR[s.fmt.name]]
    flat = loss.ravel()
    with np.errstate(all="ignore"):
        if np.all(np.isfinite(flat)):  # fsum: the exact sum correctly rounded to float64 (then to the accumulator)
            total = float(acc.round_array(np.asarray(math.fsum(flat.tolist()))))
        else:
            total = float(np.sum(flat))
        n = flat.size
        if reduction == "sum":
            value = s.r(np.asarray(total))
        else:
            value = s.r(np.asarray(acc.round_array(np.asarray(WIDE(total) / n)) if n else math.nan))
        divisor = n if reduction == "mean" and n else 1
        terms, magnitude = float(np.sum(scale)) / divisor, float(np.sum(np.abs(flat))) / divisor
    return Specified(np.asarray(value, dtype=np.float64).reshape(()), np.asarray(terms).reshape(()),
                     np.nan_to_num(np.asarray(magnitude), nan=0.0, posinf=np.finfo(np.float64).max).reshape(()))


def loss(op: str, tensors: Mapping[str, np.ndarray], reduction: str, dtype: str,
         extra: np.ndarray | None = None) -> Specified:
    """The loss as PyTorch's CPU kernels compute it, in `dtype` (the output dtype).

    `extra` adds to each element's term magnitudes (the effect of an error in an input computed upstream).
    """
    x, y = tensors["input"], tensors["target"]
    weight, pos_weight = tensors.get("weight"), tensors.get("pos_weight")
    out = _Steps(FORMATS[dtype])
    with np.errstate(all="ignore"):
        if op == "bce":
            p, t = x.astype(np.float64), y.astype(np.float64)
            log_q = np.maximum(out.op(np.log1p, -p), -100)
            log_p = np.maximum(out.op(np.log, p), -100)
            first, second = out.op(np.multiply, out.op(np.subtract, t, 1), log_q), out.op(np.multiply, t, log_p)
            values = out.op(np.subtract, first, second)
        elif op == "bce_with_logits":
            # log_sigmoid runs in the input's dtype; then the ops promote to the target's (the output's)
            xf, t = x.astype(np.float64), y.astype(np.float64)
            log_sig = _log_sigmoid(_Steps(FORMATS[str(x.dtype)]), xf)
            if pos_weight is not None:
                pw = _column(pos_weight, y.shape, 1.0)
                factor = out.op(np.add, out.op(np.multiply, out.op(np.subtract, pw, 1), t), 1)
                log_sig = out.op(np.multiply, log_sig, factor)
            first, second = out.op(np.multiply, out.op(lambda v: 1 - v, t), xf), log_sig
            values = out.op(np.subtract, first, second)
        else:
            raise ValueError(f"no algorithm is specified for {op!r}")
        scale = np.abs(first) + np.abs(second)
        if extra is not None:
            scale = scale + extra.reshape(scale.shape)
        if weight is not None:
            w = _column(weight, y.shape, 1.0)
            values, scale = out.op(np.multiply, values, w), scale * np.abs(w)
    return _reduce(out, values, np.nan_to_num(scale, nan=0.0, posinf=np.finfo(np.float64).max), reduction)


def gradient(op: str, tensors: Mapping[str, np.ndarray], reduction: str, name: str,
             grad_output: np.ndarray) -> Specified:
    """The gradient by `name` ('input' or 'target') as PyTorch's backward computes it, in that tensor's dtype."""
    x, y = tensors["input"], tensors["target"]
    weight, pos_weight = tensors.get("weight"), tensors.get("pos_weight")
    s = _Steps(FORMATS[str(tensors[name].dtype)])
    xf, t = x.astype(np.float64), y.astype(np.float64)
    g = np.broadcast_to(np.asarray(grad_output, dtype=np.float64), y.shape)
    with np.errstate(all="ignore"):
        if op == "bce" and name == "input":  # grad * (p - y) / max((1 - p) p, EPSILON), one kernel in the dtype
            eps = s.fmt.round(Fraction(BCE_GRAD_EPS))
            numerator = s.op(np.multiply, g, s.op(np.subtract, xf, t))
            floor = np.maximum(s.op(np.multiply, s.op(lambda v: 1 - v, xf), xf), eps)
            values = s.op(np.divide, numerator, floor)
            values = np.where((floor == 0) & (numerator == 0), np.nan, values)
            scale, chained = np.abs(values), True
        elif op == "bce":  # -logit(p) = -log(p / (1 - p)), then * grad
            ratio = s.op(np.divide, xf, s.op(lambda v: 1 - v, xf))
            local = s.op(lambda v: -np.log(v), ratio)
            with np.errstate(divide="ignore"):
                scale = np.abs(np.log(xf)) + np.abs(np.log1p(-xf))
            values, chained = local, False
        elif name == "input":  # (pw y + 1 - y) sigmoid(x) - pw y, or sigmoid(x) - y
            sig = _sigmoid(s, xf)
            if pos_weight is None:
                first, second = sig, t
            else:
                positive = s.op(np.multiply, _column(pos_weight, y.shape, 1.0), t)
                first = s.op(np.multiply, s.op(np.subtract, s.op(np.add, positive, 1), t), sig)
                second = positive
            # a sigmoid below the smallest normal may be flushed to 0 (PyTorch's float32 sigmoid is, from x = -88.72)
            flushed = np.where(sig < s.fmt.min_normal, np.abs(first) / s.fmt.unit_roundoff, 0.0)
            values, scale = s.op(np.subtract, first, second), np.abs(first) + np.abs(second) + flushed
            chained = False
        else:  # log_sigmoid(-x) - pw log_sigmoid(x), or -x
            if pos_weight is None:  # exactly -x; the terms of the general form, which equals it, size the error
                values = -xf
                scale = np.abs(_log_sigmoid(s, -xf)) + np.abs(_log_sigmoid(s, xf))
            else:
                first = _log_sigmoid(s, -xf)
                second = s.op(np.multiply, _log_sigmoid(s, xf), _column(pos_weight, y.shape, 1.0))
                values, scale = s.op(np.subtract, first, second), np.abs(first) + np.abs(second)
            chained = False
        if not chained:
            values, scale = s.op(np.multiply, values, g), scale * np.abs(g)
        if weight is not None:
            w = _column(weight, y.shape, 1.0)
            values, scale = s.op(np.multiply, values, w), scale * np.abs(w)
        if reduction == "mean" and y.size:
            values, scale = s.op(np.divide, values, y.size), scale / y.size
    shape = tensors[name].shape
    values = np.asarray(values, dtype=np.float64).reshape(shape)
    scale = np.nan_to_num(np.asarray(scale, dtype=np.float64), nan=0.0, posinf=np.finfo(np.float64).max)
    return Specified(values, scale.reshape(shape), np.abs(values))
