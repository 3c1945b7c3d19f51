"""Deliberately wrong backends (mutants), each with the cases it must fail, and correct variants that must pass.

Each mutant is the NumPy backend with one defect; `catches` maps a case id to a dtype under which
the harness must flag it (the defect may show elsewhere too). Variants change the code, not the
specification, and must pass every case.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from conformance.backends.numpy_backend import FLOATS, NumpyBackend, _reduce


def _named(reduction: Any) -> Any:
    """PyTorch's deprecated 'elementwise_mean' is 'mean' (the checks have already warned)."""
    return "mean" if reduction == "elementwise_mean" else reduction


class Altered(NumpyBackend):
    kind = "mutant"
    catches: dict[str, str] = {}

    def __init__(self) -> None:
        self.name = f"{self.kind}-{type(self).__name__}"


def _bce_terms(p: np.ndarray, y: np.ndarray, clamp: float | None = -100.0, log_q=np.log1p) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        log_p, log_1mp = np.log(p), (np.log1p(-p) if log_q is np.log1p else log_q(p))
        if clamp is not None:
            log_p, log_1mp = np.maximum(log_p, clamp), np.maximum(log_1mp, clamp)
        return (y - 1) * log_1mp - y * log_p


class _Bce(Altered):
    """BCE with the NumPy backend's checks, and a replaceable element formula and reduction."""

    def terms(self, p: np.ndarray, y: np.ndarray) -> np.ndarray:
        return _bce_terms(p, y)

    def reduce(self, loss: np.ndarray, reduction: Any, dtype: np.dtype) -> Any:
        return _reduce(loss, reduction, dtype)

    def check(self, input, target, weight, reduction) -> None:
        NumpyBackend.bce(self, input, target, weight=weight, reduction=reduction)  # raises what it rejects

    def bce(self, input, target, *, weight, reduction):
        self.check(input, target, weight, reduction)
        loss = self.terms(input, target)
        reduction = _named(reduction)
        if weight is not None:
            loss = loss * weight.astype(loss.dtype)
        return self.reduce(loss, reduction, input.dtype)


def _lw(pw, y):
    """The positive-term factor (pw - 1) y + 1; exactly 1 without pos_weight (even for an infinite y)."""
    return 1 if pw is None else (pw - 1) * y + 1


class _Logits(Altered):
    """BCE with logits with the NumPy backend's checks and a replaceable element formula (pw None: no pos_weight)."""

    def logits_terms(self, x, y, pw):
        log_sigmoid = np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))
        return (1 - y) * x - _lw(pw, y) * log_sigmoid

    def bce_with_logits(self, input, target, *, weight, pos_weight, reduction):
        NumpyBackend.bce_with_logits(self, input, target, weight=weight, pos_weight=pos_weight, reduction=reduction)
        pw = None if pos_weight is None else pos_weight.astype(target.dtype)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            loss = self.logits_terms(input.astype(target.dtype), target, pw)
        if weight is not None:
            loss = loss * weight.astype(loss.dtype)
        return _reduce(loss, _named(reduction), target.dtype)


# --- the loss formula -------------------------------------------------------------------------

class ClampAt50(_Bce):
    catches = {"bce-clamp-p0-y1": "float32", "bce-clamp-p1-y0": "float64"}

    def terms(self, p, y):
        return _bce_terms(p, y, clamp=-50.0)


class NoClamp(_Bce):
    catches = {"bce-clamp-p0-y1": "float32", "bce-clamp-p0-y0": "float64", "bce-clamp-p1-y1": "float32"}

    def terms(self, p, y):
        return _bce_terms(p, y, clamp=None)


class KerasEpsilonClip(_Bce):
    """Clips p to [1e-7, 1 - 1e-7] as Keras does: the loss tops out near 16.1 instead of 100."""

    catches = {"bce-clamp-p0-y1": "float32", "bce-min-subnormal-y1": "float64"}

    def terms(self, p, y):
        return _bce_terms(np.clip(p, 1e-7, 1 - 1e-7).astype(p.dtype), y)


class Float16Inside(_Bce):
    """Computes a float32 loss in float16 arithmetic."""

    catches = {"document-bce-mean": "float32", "bce-soft-target-grid": "float32"}

    def terms(self, p, y):
        return _bce_terms(p.astype(np.float16), y.astype(np.float16)).astype(p.dtype)


# --- reductions -------------------------------------------------------------------------------

class MeanOverRows(_Bce):
    catches = {"document-bce-mean": "float32"}

    def reduce(self, loss, reduction, dtype):
        if reduction == "mean" and loss.ndim > 0 and loss.size:
            return np.asarray(loss.sum() / loss.shape[0]).astype(dtype)
        return _reduce(loss, reduction, dtype)


class SumForMean(_Bce):
    catches = {"document-bce-mean": "float64"}

    def reduce(self, loss, reduction, dtype):
        return _reduce(loss, "sum" if reduction == "mean" else reduction, dtype)


class WeightNormalisedMean(_Bce):
    """sum(w * l) / sum(w), a common misreading of the weighted mean."""

    catches = {"bce-weight-last-dim": "float32"}

    def bce(self, input, target, *, weight, reduction):
        loss = super().bce(input, target, weight=weight, reduction=reduction)
        if weight is not None and reduction == "mean":
            return np.asarray(loss * target.size / np.broadcast_to(weight, target.shape).sum()).astype(input.dtype)
        return loss


class EmptyMeanIsZero(_Bce):
    catches = {"bce-empty-mean": "float32", "bce-empty-weighted-mean": "float64"}

    def reduce(self, loss, reduction, dtype):
        if reduction == "mean" and loss.size == 0:
            return np.zeros((), dtype)
        return _reduce(loss, reduction, dtype)


class SequentialHalfSum(_Bce):
    """Accumulates float16 losses in float16, one after another: the sum stalls at 2048."""

    catches = {"bce-long-mean": "float16"}

    def reduce(self, loss, reduction, dtype):
        if reduction == "none" or loss.dtype != np.float16 or loss.size == 0:
            return _reduce(loss, reduction, dtype)
        total = np.cumsum(loss.ravel(), dtype=np.float16)[-1]
        return np.asarray(total / np.float16(loss.size) if reduction == "mean" else total).astype(dtype)


# --- output dtype and shape -------------------------------------------------------------------

class AlwaysFloat64(_Bce):
    catches = {"document-bce-mean": "float32"}

    def reduce(self, loss, reduction, dtype):
        return _reduce(loss, reduction, dtype).astype(np.float64)


class KeepsDimsOnMean(_Bce):
    catches = {"document-bce-mean": "float64"}

    def reduce(self, loss, reduction, dtype):
        result = _reduce(loss, reduction, dtype)
        return result if reduction == "none" else result.reshape(1)


class ReturnsPythonFloat(_Bce):
    catches = {"document-bce-mean": "float64"}

    def reduce(self, loss, reduction, dtype):
        result = _reduce(loss, reduction, dtype)
        return float(result) if result.ndim == 0 else result


# --- accepting what must be rejected, and misbehaving adapters -------------------------------

class AcceptsOutOfRange(_Bce):
    catches = {"bce-reject-input-above-one": "float32", "bce-reject-target-nan": "float64"}

    def check(self, input, target, weight, reduction):
        inside = lambda a: np.clip(np.nan_to_num(a), 0, 1).astype(a.dtype)  # noqa: E731
        super().check(inside(input), inside(target), weight, reduction)


class BroadcastsShapes(_Bce):
    catches = {"bce-reject-shape-broadcastable-rows": "float32"}

    def bce(self, input, target, *, weight, reduction):
        return super().bce(*np.broadcast_arrays(input, target), weight=weight, reduction=reduction)


class UnknownReductionMeansMean(_Bce):
    catches = {"bce-reject-reduction-avg": "float32", "bce-reject-reduction-null": "float64"}

    def bce(self, input, target, *, weight, reduction):
        return super().bce(input, target, weight=weight, reduction=reduction if reduction in ("none", "sum") else "mean")


class CastsIntegerTargets(_Bce):
    catches = {"bce-reject-int64-target": "float32"}

    def bce(self, input, target, *, weight, reduction):
        return super().bce(input, target.astype(input.dtype), weight=weight, reduction=reduction)


class ClipsInputInPlace(_Bce):
    """Clamps p into [1e-12, 1] in place, changing the caller's array."""

    catches = {"bce-clamp-p0-y1": "float64"}

    def bce(self, input, target, *, weight, reduction):
        np.clip(input, 1e-12, 1, out=input)
        return super().bce(input, target, weight=weight, reduction=reduction)


class RaisesAttributeError(_Bce):
    """An adapter bug: reported as an error, never counted as a rejection."""

    catches = {"bce-reject-input-above-one": "float32", "document-bce-mean": "float32"}

    def bce(self, input, target, *, weight, reduction):
        return input.no_such_attribute


# --- BCE with logits --------------------------------------------------------------------------

class NaiveSoftplus(_Logits):
    """log(1 + exp(-x)): overflows for x << 0 and loses e^-x for x >> 0."""

    catches = {"logits-1e4": "float32", "logits-30": "float32", "logits-positive-tail-hard-target": "float64"}

    def logits_terms(self, x, y, pw):
        return (1 - y) * x + _lw(pw, y) * np.log(1 + np.exp(-x))


class LogitsAsBceOfSigmoid(_Logits):
    """BCEWithLogits computed as BCE(sigmoid(x)): right only while the sigmoid is not saturated."""

    catches = {"equivalence-breaks-logits-x40": "float64", "equivalence-breaks-logits-x20": "float32",
               "logits-30": "float32"}

    def logits_terms(self, x, y, pw):
        p = 1 / (1 + np.exp(-x))
        log_p, log_1mp = np.maximum(np.log(p), -100), np.maximum(np.log1p(-p), -100)
        return -((1 if pw is None else pw) * y * log_p + (1 - y) * log_1mp)


class PosWeightOnNegativeTerm(_Logits):
    catches = {"pos-weight-positive-term-only": "float32", "pos-weight-large-negative-logit": "float64"}

    def logits_terms(self, x, y, pw):
        log_sigmoid = np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))
        return (1 if pw is None else pw) * (1 - y) * (x - log_sigmoid) - y * log_sigmoid


class PosWeightOnFirstDim(_Logits):
    """Reads a 1-D pos_weight as indexing the first dimension (the batch) instead of the last."""

    catches = {"pos-weight-last-dim": "float32", "pos-weight-positive-term-only": "float64"}

    def logits_terms(self, x, y, pw):
        if pw is not None and pw.ndim == 1 and pw.shape[0] > 1:
            pw = pw.reshape(-1, 1)
        return super().logits_terms(x, y, pw)


class LogitsKeepInputDtype(_Logits):
    catches = {"logits-mixed-narrow-input-float64-target": "float32"}

    def bce_with_logits(self, input, target, *, weight, pos_weight, reduction):
        result = super().bce_with_logits(input, target, weight=weight, pos_weight=pos_weight, reduction=reduction)
        return result.astype(input.dtype)


# --- gradients --------------------------------------------------------------------------------

def _sigmoid(x: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


class _Grads(Altered):
    """Gradients with the NumPy backend's checks, and replaceable element derivatives and chain rule."""

    eps = np.float32(1e-12)

    def bce_local(self, p, y):
        return {"input": (p - y) / np.maximum(p * (1 - p), np.asarray(self.eps).astype(p.dtype)),
                "target": np.log1p(-p) - np.log(p)}

    def logits_local(self, x, y, pw):
        """pw is None without pos_weight: no factor at all, as in PyTorch (with y = inf, y + 1 - y is NaN)."""
        if pw is None:
            return {"input": _sigmoid(x) - y, "target": -_softplus(x) + _softplus(-x)}
        return {"input": (pw * y + 1 - y) * _sigmoid(x) - pw * y,
                "target": -_softplus(x) + pw * _softplus(-x)}

    def chain(self, local, grad_output, weight, reduction):
        grad = local * grad_output.astype(local.dtype)
        if weight is not None:
            grad = grad * weight.astype(local.dtype)
        return grad / np.float32(local.size) if reduction == "mean" and local.size else grad

    def bce_grad(self, input, target, *, weight, reduction, grad_output, wrt):
        NumpyBackend.bce_grad(self, input, target, weight=weight, reduction=reduction, grad_output=grad_output, wrt=wrt)
        with np.errstate(all="ignore"):
            local = self.bce_local(input, target)
            return {n: self.chain(local[n], grad_output, weight, _named(reduction)).astype(input.dtype) for n in wrt}

    def bce_with_logits_grad(self, input, target, *, weight, pos_weight, reduction, grad_output, wrt):
        NumpyBackend.bce_with_logits_grad(self, input, target, weight=weight, pos_weight=pos_weight,
                                          reduction=reduction, grad_output=grad_output, wrt=wrt)
        work = np.promote_types(input.dtype, target.dtype)
        pw = None if pos_weight is None else pos_weight.astype(work)
        with np.errstate(all="ignore"):
            local = self.logits_local(input.astype(work), target.astype(work), pw)
            dtypes = {"input": input.dtype, "target": target.dtype}
            return {n: self.chain(local[n], grad_output, weight, _named(reduction)).astype(dtypes[n]) for n in wrt}


class GradEpsTooLarge(_Grads):
    """eps = 1e-7 (Keras's epsilon) in the BCE derivative: about 1e7 instead of 1e12 at p = 0 or 1."""

    catches = {"grad-bce-eps-floor-ends": "float32", "grad-bce-eps-threshold": "float64"}
    eps = np.float32(1e-7)


class GradNoEps(_Grads):
    catches = {"grad-bce-eps-floor-ends": "float64", "grad-bce-eps-floor-matching-ends": "float32",
               "grad-bce-eps-floor-tiny-p": "float64"}

    def bce_local(self, p, y):
        return {**super().bce_local(p, y), "input": (p - y) / (p * (1 - p))}


class GradEpsOfFloat32InHalf(_Grads):
    """Keeps eps = float32(1e-12) in float16 arithmetic (PyTorch converts it to float16: 0), so 0/0 gives 0 not NaN."""

    catches = {"grad-bce-eps-floor-matching-ends": "float16"}

    def bce_local(self, p, y):
        wide = super().bce_local(p.astype(np.float32), y.astype(np.float32))
        return {name: grad.astype(p.dtype) for name, grad in wide.items()}


class GradEpsFloorLosesSignedZero(_Grads):
    """max((1 - p) p, eps) as a comparison that returns eps for -0.0: -inf, not +inf, at p = -0.0 in float16."""

    catches = {"grad-bce-negative-zero-p": "float16"}

    def bce_local(self, p, y):
        slope, eps = p * (1 - p), np.asarray(self.eps).astype(p.dtype)
        return {**super().bce_local(p, y), "input": (p - y) / np.where(slope > eps, slope, eps)}


class GradientSignFlipped(_Grads):
    catches = {"grad-document-bce-mean": "float32", "grad-document-bce-with-logits-mean": "float64"}

    def chain(self, local, grad_output, weight, reduction):
        return -super().chain(local, grad_output, weight, reduction)


class GradMeanNotDivided(_Grads):
    catches = {"grad-document-bce-mean": "float64", "grad-document-bce-with-logits-mean": "float32"}

    def chain(self, local, grad_output, weight, reduction):
        return super().chain(local, grad_output, weight, "sum" if reduction == "mean" else reduction)


class GradWeightDropped(_Grads):
    catches = {"grad-bce-weight-last-dim": "float32", "grad-logits-weight-and-pos-weight": "float64"}

    def chain(self, local, grad_output, weight, reduction):
        return super().chain(local, grad_output, None, reduction)


class GradOutputIgnored(_Grads):
    catches = {"grad-bce-grad-output": "float32", "grad-bce-grad-output-mean": "float64",
               "grad-logits-grad-output-sum": "bfloat16"}

    def chain(self, local, grad_output, weight, reduction):
        return super().chain(local, np.ones_like(grad_output), weight, reduction)


class GradPosWeightOnNegativeTerm(_Grads):
    """Differentiates pw (1 - y) softplus(x) + y softplus(-x): pos_weight on the negative term."""

    catches = {"grad-logits-pos-weight-terms": "float32", "grad-logits-infinite-pos-weight": "float64"}

    def logits_local(self, x, y, pw):
        pw = 1 if pw is None else pw
        return {"input": (pw * (1 - y) + y) * _sigmoid(x) - y, "target": -pw * _softplus(x) + _softplus(-x)}


class GradTargetClampedLikeTheLoss(_Grads):
    """-logit(p) from the clamped logs: 100 instead of inf at p = 0, -100 instead of -inf at p = 1."""

    catches = {"grad-bce-target-unclamped": "float64", "grad-bce-eps-floor-ends": "float32"}

    def bce_local(self, p, y):
        return {**super().bce_local(p, y), "target": np.maximum(np.log1p(-p), -100) - np.maximum(np.log(p), -100)}


class LogitsGradThroughBce(_Grads):
    """d/dx as BCE's derivative (eps floor included) times sigmoid'(x): vanishes in the tails (pytorch#103316)."""

    catches = {"grad-logits-tails": "float64", "grad-logits-large": "float32"}

    def logits_local(self, x, y, pw):
        p = _sigmoid(x)
        slope = p * (1 - p)
        bce = (p - y) / np.maximum(slope, np.asarray(self.eps).astype(p.dtype))
        return {**super().logits_local(x, y, pw), "input": bce * slope}


class GradInLossDtype(_Grads):
    """Returns every gradient in the loss's dtype (the target's), not in its own tensor's."""

    catches = {"grad-logits-mixed-narrow-input": "float32", "grad-logits-mixed-narrow-target": "float32"}

    def bce_with_logits_grad(self, input, target, **kwargs):
        grads = super().bce_with_logits_grad(input, target, **kwargs)
        return {name: grad.astype(target.dtype) for name, grad in grads.items()}


class GradMissingTarget(_Grads):
    """Returns the gradient by input only."""

    catches = {"grad-document-bce-mean": "float32", "grad-logits-target-is-minus-x": "float64"}

    def bce_grad(self, input, target, **kwargs):
        return {k: v for k, v in super().bce_grad(input, target, **kwargs).items() if k == "input"}

    def bce_with_logits_grad(self, input, target, **kwargs):
        return {k: v for k, v in super().bce_with_logits_grad(input, target, **kwargs).items() if k == "input"}


class GradByWeightAccepted(_Grads):
    """Answers a gradient by weight (w's true derivative, the loss) instead of refusing it."""

    catches = {"grad-bce-reject-weight": "float32", "grad-logits-reject-weight": "float64"}

    def bce_grad(self, input, target, *, weight, reduction, grad_output, wrt):
        loss = NumpyBackend.bce(self, input, target, weight=None, reduction="none")
        return {name: loss for name in wrt}

    def bce_with_logits_grad(self, input, target, *, weight, pos_weight, reduction, grad_output, wrt):
        loss = NumpyBackend.bce_with_logits(self, input, target, weight=None, pos_weight=pos_weight, reduction="none")
        return {name: loss for name in wrt}


class GradOutputNegatedInPlace(_Grads):
    """Right gradients, but it negates the caller's grad_output in place (an in-place op on the wrong tensor)."""

    catches = {"grad-bce-grad-output": "float32"}

    def bce_grad(self, input, target, *, grad_output, **kwargs):
        np.negative(grad_output, out=grad_output)
        return super().bce_grad(input, target, grad_output=-grad_output, **kwargs)


MUTANTS = [ClampAt50, NoClamp, KerasEpsilonClip, Float16Inside, MeanOverRows, SumForMean, WeightNormalisedMean,
           EmptyMeanIsZero, SequentialHalfSum, AlwaysFloat64, KeepsDimsOnMean, ReturnsPythonFloat,
           AcceptsOutOfRange, BroadcastsShapes, UnknownReductionMeansMean, CastsIntegerTargets, ClipsInputInPlace,
           RaisesAttributeError, NaiveSoftplus, LogitsAsBceOfSigmoid, PosWeightOnNegativeTerm, PosWeightOnFirstDim,
           LogitsKeepInputDtype,
           GradEpsTooLarge, GradNoEps, GradEpsOfFloat32InHalf, GradientSignFlipped, GradMeanNotDivided,
           GradWeightDropped, GradOutputIgnored, GradPosWeightOnNegativeTerm, GradTargetClampedLikeTheLoss,
           LogitsGradThroughBce, GradInLossDtype, GradMissingTarget, GradByWeightAccepted, GradOutputNegatedInPlace]


# --- mutants no fixed case catches, which the properties (tests/test_properties.py) must -----------

class MeanAssumes2D(_Bce):
    """Divides a mean by the first two dimensions, as code written for (N, C) inputs does: right up to 2-D."""

    def reduce(self, loss, reduction, dtype):
        if reduction == "mean" and loss.ndim > 2 and loss.size:
            return np.asarray(loss.sum(dtype=np.float64) / (loss.shape[0] * loss.shape[1])).astype(dtype)
        return _reduce(loss, reduction, dtype)


class PosWeightChannelAxis(_Logits):
    """Applies a 1-D pos_weight along dimension 1 (the channels of N, C, H, W) once inputs have 3 or more dims."""

    def logits_terms(self, x, y, pw):
        if pw is not None and pw.ndim == 1 and pw.size > 1 and x.ndim >= 3:
            pw = pw.reshape(-1, *([1] * (x.ndim - 2)))
        return super().logits_terms(x, y, pw)


FUZZ_ONLY_MUTANTS = [MeanAssumes2D, PosWeightChannelAxis]


# --- correct variants: different code, same specification --------------------------------------

class Float64Upcast(_Grads):
    """Computes every narrower dtype in float64 and rounds once at the end (gradients too, with the dtype's eps).

    Correct everywhere but where an infinite factor meets a log sigmoid that underflows in the narrow
    dtype and not in float64: there PyTorch's NaN (inf * 0) is its -inf.
    """

    kind = "variant"
    differs_on = frozenset({"evaluation-precision"})  # the tags of the cases where it may differ, and does

    def bce(self, input, target, *, weight, reduction):
        if input.dtype != target.dtype or input.dtype not in FLOATS:  # let the checks reject these
            return super().bce(input, target, weight=weight, reduction=reduction)
        wide = super().bce(input.astype(np.float64), target.astype(np.float64), weight=weight, reduction=reduction)
        return wide.astype(input.dtype)

    def bce_with_logits(self, input, target, *, weight, pos_weight, reduction):
        if input.dtype not in FLOATS or target.dtype not in FLOATS:
            return super().bce_with_logits(input, target, weight=weight, pos_weight=pos_weight, reduction=reduction)
        wide = super().bce_with_logits(input.astype(np.float64), target.astype(np.float64), weight=weight,
                                       pos_weight=pos_weight, reduction=reduction)
        return wide.astype(target.dtype)

    def bce_local(self, p, y):
        eps = np.asarray(self.eps).astype(p.dtype).astype(np.float64)  # PyTorch's eps stays that of the dtype
        p, y = p.astype(np.float64), y.astype(np.float64)
        return {"input": (p - y) / np.maximum(p * (1 - p), eps), "target": np.log1p(-p) - np.log(p)}

    def logits_local(self, x, y, pw):
        return super().logits_local(x.astype(np.float64), y.astype(np.float64),
                                    None if pw is None else pw.astype(np.float64))

    def chain(self, local, grad_output, weight, reduction):
        return super().chain(local.astype(np.float64), grad_output, weight, reduction)


class ReversedFloat64Sum(_Bce):
    """Another summation order: pairwise over the reversed elements, in float64."""

    kind = "variant"

    def reduce(self, loss, reduction, dtype):
        if reduction == "none":
            return loss.astype(dtype)
        total = np.sum(loss.ravel()[::-1].astype(np.float64))
        if reduction == "mean":
            total = total / loss.size if loss.size else np.nan
        with np.errstate(over="ignore"):
            return np.asarray(total).astype(dtype)


class SymmetricSoftplusLogits(_Logits):
    """(1 - y) softplus(x) + pw y softplus(-x): more accurate than the specified formula, same infinities.

    Differs where PyTorch's formula gives 0 and an infinite weight multiplies it: NaN there, its inf.
    """

    kind = "variant"
    differs_on = frozenset({"evaluation-precision"})

    def logits_terms(self, x, y, pw):
        softplus = lambda v: np.maximum(v, 0) + np.log1p(np.exp(-np.abs(v)))  # noqa: E731
        accurate = (1 - y) * softplus(x) + (1 if pw is None else pw) * y * softplus(-x)
        return np.where(np.isfinite(x) & np.isfinite(y), accurate, super().logits_terms(x, y, pw))


class RearrangedGradients(_Grads):
    """Algebraically rearranged gradients: (1 - y) sigmoid(x) - pw y sigmoid(-x), -logit(p) as -log(p / (1 - p))
    (PyTorch's form), and the chain factors multiplied together before the derivative."""

    kind = "variant"

    def bce_local(self, p, y):
        with np.errstate(divide="ignore"):
            return {**super().bce_local(p, y), "target": -np.log(p / (1 - p))}

    def logits_local(self, x, y, pw):
        literal = super().logits_local(x, y, pw)
        positive, finite = (y, np.isfinite(y)) if pw is None else (pw * y, np.isfinite(y) & np.isfinite(pw))
        accurate = (1 - y) * _sigmoid(x) - positive * _sigmoid(-x)
        return {**literal, "input": np.where(finite, accurate, literal["input"])}

    def chain(self, local, grad_output, weight, reduction):
        factor = np.broadcast_to(grad_output.astype(local.dtype), local.shape)
        if weight is not None:
            factor = factor * weight.astype(local.dtype)
        if reduction == "mean" and local.size:
            factor = factor / np.float32(local.size)
        return factor * local


VARIANTS = [Float64Upcast, ReversedFloat64Sum, SymmetricSoftplusLogits, RearrangedGradients]


# --- issue 12: higher ranks, memory layouts, shape corners, long tensors, own sigmoid, higher-order gradients ---

class HigherRankOnly(_Bce):
    """Right up to 2-D; from 3-D on, pairs each input with the target of the reversed last axis."""

    catches = {"rank3-bce-none": "float64", "rank4-bce-mean": "float32"}

    def terms(self, p, y):
        return _bce_terms(p, y[..., ::-1] if y.ndim >= 3 else y)


class LayoutDependentPairing(_Bce):
    """Reads the input in memory order (ravel order 'K') and the target in C order: right for C-contiguous
    arrays only."""

    catches = {"rank3-bce-none": "float32"}

    def terms(self, p, y):
        return _bce_terms(p.ravel(order="K"), y.ravel()).reshape(p.shape)


class SqueezesSize1(_Logits):
    """Drops size-1 dimensions of an unreduced loss (np.squeeze), as code that squeezes model outputs does."""

    catches = {"size1-leading": "float32", "size1-last": "float64"}

    def bce_with_logits(self, input, target, *, weight, pos_weight, reduction):
        loss = super().bce_with_logits(input, target, weight=weight, pos_weight=pos_weight, reduction=reduction)
        return np.squeeze(loss)


class SquareWeightPerSample(_Bce):
    """Reads an (N, N) weight on an (N, N) input as one weight per sample (its diagonal), not per element."""

    catches = {"weight-square-bce-none": "float32", "weight-square-bce-mean": "float64"}

    def bce(self, input, target, *, weight, reduction):
        if weight is not None and weight.ndim == 2 and weight.shape == input.shape and input.shape[0] == input.shape[1]:
            weight = np.diagonal(weight)[:, None].copy()
        return super().bce(input, target, weight=weight, reduction=reduction)


class Float32FastPathLargeNone(_Bce):
    """Computes unreduced losses of more than 1024 elements in float32, whatever the dtype."""

    catches = {"long-none-bce": "float64"}

    def terms(self, p, y):
        if p.size > 1024 and p.dtype == np.float64:
            return _bce_terms(p.astype(np.float32), y.astype(np.float32)).astype(p.dtype)
        return _bce_terms(p, y)


class Bfloat16ByTruncation(_Logits):
    """Rounds bfloat16 results by dropping the low 16 bits of the float32 value (toward zero), not to nearest even."""

    catches = {"bfloat16-product-rounds-to-inf": "bfloat16"}

    def bce_with_logits(self, input, target, *, weight, pos_weight, reduction):
        wide = {name: None if a is None else a.astype(np.float32) for name, a in
                (("input", input), ("target", target), ("weight", weight), ("pos_weight", pos_weight))}
        loss = super().bce_with_logits(wide["input"], wide["target"], weight=wide["weight"],
                                       pos_weight=wide["pos_weight"], reduction=reduction)
        if target.dtype not in FLOATS or target.dtype.itemsize != 2 or target.dtype == np.float16:
            return loss.astype(target.dtype)
        bits = (np.ascontiguousarray(loss, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)
        return bits.view(target.dtype)


class TanhSigmoid(Altered):
    """sigmoid(x) = (1 + tanh(x / 2)) / 2: 1 + tanh cancels for negative x, so sigmoid_bce loses accuracy."""

    catches = {"long-none-sigmoid-bce": "float32"}

    def sigmoid(self, input):
        x = input.astype(np.float32) if input.dtype.itemsize < 4 else input
        return ((1 + np.tanh(x / 2)) / 2).astype(input.dtype)


class WrongSecondOrderTerm(Altered):
    """Double backward of BCE with logits without the pos_weight factor: sigmoid'(x) instead of (pw y + 1 - y)
    sigmoid'(x)."""

    catches = {"grad2-logits-pos-weight": "float64", "grad2-logits-bchw-weight": "float32"}

    def bce_with_logits_grad2(self, input, target, *, pos_weight, **kwargs):
        return super().bce_with_logits_grad2(input, target, pos_weight=None, **kwargs)


class WrongForwardModeTerm(Altered):
    """Forward mode of BCE with logits by target as -x (the derivative without pos_weight) whatever pos_weight."""

    catches = {"jvp-logits-pos-weight-sum": "float64"}

    def bce_with_logits_jvp(self, input, target, *, weight, pos_weight, reduction, tangent, wrt):
        results = dict(super().bce_with_logits_jvp(input, target, weight=weight, pos_weight=pos_weight,
                                                   reduction=reduction, tangent=tangent, wrt=wrt))
        if "target" in wrt:
            results.update(super().bce_with_logits_jvp(input, target, weight=weight, pos_weight=None,
                                                       reduction=reduction, tangent=tangent, wrt=("target",)))
        return results


MUTANTS += [HigherRankOnly, LayoutDependentPairing, SqueezesSize1, SquareWeightPerSample, Float32FastPathLargeNone,
            Bfloat16ByTruncation, TanhSigmoid, WrongSecondOrderTerm, WrongForwardModeTerm]

# The rank-3 and rank-4 cases now catch the two mutants that only the properties caught before (a mutant that only
# fuzz catches shows a missing case): they join the mutants that `run` must flag.
MeanAssumes2D.catches = {"rank4-bce-mean": "float32", "rank3-bce-mean-weight": "float64"}
PosWeightChannelAxis.catches = {"size1-with-pos-weight-mean": "float32", "long-none-logits-pos-weight": "float64"}
MUTANTS += [MeanAssumes2D, PosWeightChannelAxis]
FUZZ_ONLY_MUTANTS.clear()



# --- wrong answers an absolute tolerance hid (issue 11): each flagged by a fixed case -----------------

def _roundoff(dtype: np.dtype) -> float:
    """The dtype's unit roundoff u = eps / 2."""
    return float(np.finfo(dtype).eps) / 2


class BiasAtZeroTarget(_Bce):
    """Adds 4 units of roundoff to every y = 0 element: p = 1e-4 comes out 2.4e-3 too high in float32."""

    catches = {"bce-small-loss-zero-target": "float32", "bce-tiny-p-y0-log1p": "float64"}

    def terms(self, p, y):
        loss = _bce_terms(p, y)
        return np.where(y == 0, loss + 4 * _roundoff(p.dtype), loss).astype(p.dtype)


class NegativeLogitsTail(_Logits):
    """Subtracts 12 u |x| where y = 0 and x < 0: a negative loss (-1.07e-5 at float32 x = -15)."""

    catches = {"logits-negative-tail-nonnegative": "float32", "logits-negative-tail-hard-target": "float64"}

    def logits_terms(self, x, y, pw):
        loss = super().logits_terms(x, y, pw)
        return np.where((y == 0) & (x < 0), loss - 12 * _roundoff(loss.dtype) * np.abs(x), loss).astype(loss.dtype)


class GradTargetSignSlipNearHalf(_Grads):
    """d/dy = -logit(p) with its sign lost near p = 1/2 (float32 p = 0.5 + 2^-24: +2.38e-7 for -2.38e-7)."""

    catches = {"grad-bce-target-near-half": "float32"}

    def bce_local(self, p, y):
        local = super().bce_local(p, y)
        target = local["target"]
        return {**local, "target": np.where(np.abs(p - 0.5) < 8 * _roundoff(p.dtype), np.abs(target), target)}


class GradSaturatedSigmoidSignSlip(_Grads):
    """d/dx at y = 1, x > 15 as +sigmoid(-x), the magnitude right and the sign wrong."""

    catches = {"grad-logits-saturated-sigmoid": "float32", "grad-logits-tails": "float64"}

    def logits_local(self, x, y, pw):
        local = super().logits_local(x, y, pw)
        return {**local, "input": np.where((y == 1) & (x > 15), _sigmoid(-x), local["input"])}


class RelativeBias(_Bce):
    """Every BCE loss times (1 + 1e-6) in float32, (1 + 1e-12) in float64 (float16, bfloat16: exact)."""

    catches = {"bce-relative-accuracy": "float32", "document-bce-mean": "float64"}

    def reduce(self, loss, reduction, dtype):
        result = _reduce(loss, reduction, dtype)
        bias = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-12}.get(np.dtype(dtype), 0.0)
        return (result.astype(np.float64) * (1 + bias)).astype(dtype)


class LogitsRelativeBias(_Logits):
    """Every BCE-with-logits loss times (1 + 1e-6) in float32, (1 + 1e-12) in float64."""

    catches = {"logits-relative-accuracy": "float32", "document-bce-with-logits-mean": "float64"}

    def logits_terms(self, x, y, pw):
        loss = super().logits_terms(x, y, pw)
        bias = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-12}.get(loss.dtype, 0.0)
        return (loss.astype(np.float64) * (1 + bias)).astype(loss.dtype)


class LogInsteadOfLog1p(_Bce):
    """log(1 - p) in place of log1p(-p): p = 1e-30, y = 0 gives 0 where PyTorch's log1p gives 1e-30."""

    catches = {"bce-tiny-p-y0-log1p": "float64", "bce-small-loss-zero-target": "float32"}

    def terms(self, p, y):
        return _bce_terms(p, y, log_q=lambda q: np.log(1 - q))


MUTANTS += [BiasAtZeroTarget, NegativeLogitsTail, GradTargetSignSlipNearHalf, GradSaturatedSigmoidSignSlip,
            RelativeBias, LogitsRelativeBias, LogInsteadOfLog1p]


# --- gradients of sigmoid_bce, through the backend's own sigmoid backward (issue 12) ---------------------

class SigmoidGradByP(Altered):
    """sigmoid_bce's d/dx as BCELoss's d/dp, without sigmoid's backward: (p - y) / (p (1 - p)) for p - y."""

    catches = {"grad-document-sigmoid-bce-mean": "float32", "grad-sigmoid-bce-saturated": "float64"}

    def sigmoid_bce_grad(self, input, target, *, weight, reduction, grad_output, wrt):
        return self.bce_grad(self.sigmoid(input), target, weight=weight, reduction=reduction,
                             grad_output=grad_output, wrt=wrt)


class SigmoidSlopeOfTanh(Altered):
    """sigmoid's backward as 1 - p^2 (tanh's derivative) in place of p (1 - p)."""

    catches = {"grad-document-sigmoid-bce-sum": "float64", "grad-sigmoid-bce-soft-weighted": "float32"}

    def sigmoid_bce_grad(self, input, target, *, weight, reduction, grad_output, wrt):
        p = self.sigmoid(input)
        grads = self.bce_grad(p, target, weight=weight, reduction=reduction, grad_output=grad_output, wrt=wrt)
        with np.errstate(invalid="ignore"):
            return {**grads, **({"input": grads["input"] * (1 - p * p)} if "input" in grads else {})}


class SigmoidGradWithoutFloor(Altered):
    """sigmoid_bce's d/dx as p - y everywhere (a fused backward): PyTorch's eps floor of BCELoss's d/dp is lost."""

    catches = {"grad-sigmoid-bce-eps-floor": "float32"}

    def sigmoid_bce_grad(self, input, target, *, weight, reduction, grad_output, wrt):
        grads = dict(super().sigmoid_bce_grad(input, target, weight=weight, reduction=reduction,
                                              grad_output=grad_output, wrt=wrt))
        if "input" in grads:
            ones = np.ones(target.shape, target.dtype)
            grads["input"] = self.bce_with_logits_grad(input, target, weight=weight, pos_weight=None,
                                                       reduction=reduction, grad_output=grad_output,
                                                       wrt=("input",))["input"] * ones
        return grads


MUTANTS += [SigmoidGradByP, SigmoidSlopeOfTanh, SigmoidGradWithoutFloor]
