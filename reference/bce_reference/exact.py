"""Element-wise losses in 256-bit arithmetic (mpmath), on exact input values.

Each function returns the loss of one element and its `scale`: the sum of the magnitudes of the
terms of the specification's formula, i.e. the size of the error that evaluating that formula in
a working precision with unit roundoff u may make, per unit of u (see docs/tolerances.md).
"""
from __future__ import annotations

import math

import mpmath

from .formats import Format

CTX = mpmath.MPContext()
CTX.prec = 256
CLAMP = CTX.mpf(-100)


def round_to(fmt: Format, value: mpmath.mpf) -> float:
    """Correctly round a 256-bit value to `fmt` (NaN and infinities pass through)."""
    if CTX.isnan(value) or CTX.isinf(value):
        return float(value)
    # Far outside the format's range the answer is known without building a huge rational
    # (e^-|x| for |x| near float32's max has an exponent of about -5e38).
    magnitude = CTX.mag(value)  # 2**(magnitude - 1) <= |value| < 2**magnitude, roughly
    if value != 0 and magnitude < fmt.emin - fmt.precision - 4:
        return -0.0 if value < 0 else 0.0
    if magnitude > fmt.emax + 4:
        return -math.inf if value < 0 else math.inf
    return _round_binary(fmt, value)


def _round_binary(fmt: Format, value: mpmath.mpf) -> float:
    """Round man * 2**exp to `fmt` with integer arithmetic (ties to even); `Format.round` does it for a Fraction."""
    if value == 0:
        return 0.0
    man, exp = value.man_exp
    magnitude, exp = abs(int(man)), int(exp)
    top = exp + magnitude.bit_length() - 1  # 2**top <= |value| < 2**(top + 1)
    quantum = max(top, fmt.emin) - (fmt.precision - 1)
    shift = quantum - exp
    if shift <= 0:
        rounded = magnitude << -shift
    else:
        rounded, rest = magnitude >> shift, magnitude & ((1 << shift) - 1)
        half = 1 << (shift - 1)
        if rest > half or (rest == half and rounded & 1):
            rounded += 1
    if rounded and rounded.bit_length() - 1 + quantum > fmt.emax:
        return -math.inf if value < 0 else math.inf
    result = math.ldexp(rounded, quantum)
    return -result if value < 0 else result


PRECISIONS = (256, 512, 1024, 2048, 4096, 8192)
"""Ziv's strategy: the working precisions tried in turn, until the rounding of every value is decided."""
GUARD_BITS = 12
"""An evaluation at p bits errs by less than 2**(GUARD_BITS - p) times its terms' magnitudes (a few roundings each)."""


def decided(fmt: Format, value: mpmath.mpf, scale: float) -> bool:
    """Ziv's test: whether every number within the evaluation's error bound of `value` rounds to the same float.

    The bound is 2**(GUARD_BITS - prec) (scale + |value|), `scale` being the magnitudes of the terms
    the value was computed from: a cancellation or a term lost below the precision (a tiny pos_weight
    against 1, e^-174 against 522) widens it relative to the value, and the caller raises the precision.
    """
    if CTX.isnan(value) or CTX.isinf(value):
        return True
    bound = CTX.ldexp(CTX.mpf(scale) + abs(value), GUARD_BITS - CTX.prec)
    # exact where the bound is within 2p bits of the value; where it dwarfs the value, the value is moot
    with CTX.workprec(2 * CTX.prec + 64):
        low, high = value - bound, value + bound
    return round_to(fmt, low) == round_to(fmt, high)


def undecided(fmt: Format, values, scales) -> bool:
    """Whether some value's rounding is not yet decided at this precision, and a higher one remains to try."""
    return CTX.prec < PRECISIONS[-1] and not all(decided(fmt, v, float(s)) for v, s in zip(values, scales))


def correctly_rounded(fmt: Format, fn, *args) -> float:
    """fn(*args) (a value with no cancellation) correctly rounded to `fmt`, by Ziv's strategy."""
    for prec in PRECISIONS:
        with CTX.workprec(prec):
            value = fn(*args)
            if decided(fmt, value, 0.0) or prec == PRECISIONS[-1]:
                return round_to(fmt, value)
    raise AssertionError("unreachable")


def _abs(value: mpmath.mpf) -> float:
    return 0.0 if CTX.isnan(value) else float(abs(value))


def bce(p: float, y: float) -> tuple[mpmath.mpf, float]:
    """l = (y-1) * max(log(1-p), -100) - y * max(log(p), -100)."""
    p, y = CTX.mpf(p), CTX.mpf(y)
    log_p = max(CTX.log(p), CLAMP)
    log_q = max(CTX.log1p(-p), CLAMP)
    loss = (y - 1) * log_q - y * log_p
    # The last term admits log(1-p) computed through a rounded 1-p: an absolute error of u.
    scale = _abs(y * log_p) + _abs((1 - y) * log_q) + _abs(1 - y)
    return loss, scale


def sigmoid(x: float) -> mpmath.mpf:
    x = CTX.mpf(x)
    return 1 / (1 + CTX.exp(-x))


def bce_with_logits(x: float, y: float, pos_weight: float | None) -> tuple[mpmath.mpf, float]:
    """l = (1-y) * x - ((pw-1) * y + 1) * logsigmoid(x), evaluated without cancellation.

    Without pos_weight the factor is exactly 1 (not (1-1) * y + 1, which is NaN for an infinite y).
    """
    x, y = CTX.mpf(x), CTX.mpf(y)
    pw = CTX.one if pos_weight is None else CTX.mpf(pos_weight)
    lw = CTX.one if pos_weight is None else (pw - 1) * y + 1
    if CTX.isinf(x) or CTX.isnan(x):
        logsig = -CTX.log1p(CTX.exp(-x))
        loss = (1 - y) * x - lw * logsig
    else:
        # logsigmoid(x) = min(x, 0) - softplus(-|x|): the x < 0 branch folds the cancelling x terms.
        softplus = CTX.log1p(CTX.exp(-abs(x)))
        logsig = min(x, 0) - softplus
        linear = (1 - y) * x if x >= 0 else -pw * y * x
        loss = linear + lw * softplus
    scale = _abs((1 - y) * x) + (1 + _abs(y) + _abs(pw * y)) * _abs(logsig)
    return loss, scale


# --- gradients (PyTorch 2.13 autograd), before grad_output, weight and 1/N -----------------------

def bce_grad_input(p: float, y: float, eps: float) -> tuple[mpmath.mpf, float]:
    """dl/dp = (p - y) / max(p (1 - p), eps); eps is already in the input's dtype (0 in float16)."""
    p, y = CTX.mpf(p), CTX.mpf(y)
    numerator, denominator = p - y, max(p * (1 - p), CTX.mpf(eps))
    if denominator == 0:  # eps rounded to 0 and p is 0 or 1: 0/0 or +-x/0
        grad = CTX.nan if numerator == 0 else CTX.inf * CTX.sign(numerator)
    else:
        grad = numerator / denominator
    return grad, _abs(grad)  # a chain of products and quotients: every rounding is relative to the result


def bce_grad_target(p: float) -> tuple[mpmath.mpf, float]:
    """dl/dy = -logit(p) = log1p(-p) - log(p), not clamped: +inf at p = 0, -inf at p = 1."""
    p = CTX.mpf(p)
    log_q, log_p = CTX.log1p(-p), CTX.log(p)
    return log_q - log_p, _abs(log_q) + _abs(log_p)


def bce_with_logits_grad_input(x: float, y: float, pos_weight: float | None) -> tuple[mpmath.mpf, float]:
    """dl/dx = (pw y + 1 - y) sigmoid(x) - pw y, evaluated as (1 - y) sigmoid(x) - pw y sigmoid(-x).

    Without pos_weight it is sigmoid(x) - y (which differs from pw = 1 only where y is infinite).
    """
    x, y = CTX.mpf(x), CTX.mpf(y)
    pw = CTX.one if pos_weight is None else CTX.mpf(pos_weight)
    positive = pw * y
    if not (CTX.isfinite(y) and CTX.isfinite(pw)):  # the specification's own NaN and infinities
        grad = sigmoid(x) - y if pos_weight is None else (positive + 1 - y) * sigmoid(x) - positive
    else:  # sigmoid(+-inf) is exactly 1 or 0 here, and nothing cancels at finite x
        grad = (1 - y) * sigmoid(x) - positive * sigmoid(-x)
    scale = (_abs(positive) + 1 + _abs(y)) * _abs(sigmoid(x)) + _abs(positive)
    return grad, scale


def bce_with_logits_grad_target(x: float, pos_weight: float) -> tuple[mpmath.mpf, float]:
    """dl/dy = logsigmoid(-x) - pw logsigmoid(x) (exactly -x when pw = 1)."""
    x, pw = CTX.mpf(x), CTX.mpf(pos_weight)
    if CTX.isnan(x):
        return CTX.nan, 0.0
    softplus = CTX.log1p(CTX.exp(-abs(x)))
    log_sig, log_sig_neg = min(x, 0) - softplus, min(-x, 0) - softplus
    if not CTX.isfinite(pw):
        grad = log_sig_neg - pw * log_sig
    else:  # the softplus terms folded, so that pw = 1 gives -x without cancellation
        grad = (pw - 1) * softplus + min(-x, 0) - pw * min(x, 0)
    return grad, _abs(log_sig_neg) + _abs(pw * log_sig)
