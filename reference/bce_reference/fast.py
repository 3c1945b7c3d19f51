"""Vectorised element-wise losses in extended precision (numpy.longdouble), for large tensors.

The same formulas as `exact`, arranged so that no step cancels; on x86-64 a longdouble carries
64 significand bits, 11 more than float64, so results stay far below half an ulp of float64.
Agreement with `exact` is tested (tests/test_reference.py). Returns (loss, scale) arrays.
"""
from __future__ import annotations

import numpy as np

WIDE = np.longdouble


def bce(p: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, y = p.astype(WIDE), y.astype(WIDE)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_p = np.maximum(np.log(p), -100)
        log_q = np.maximum(np.log1p(-p), -100)
    loss = (y - 1) * log_q - y * log_p
    scale = np.abs(y * log_p) + np.abs((1 - y) * log_q) + np.abs(1 - y)
    return loss, scale.astype(np.float64)


def sigmoid(x: np.ndarray) -> np.ndarray:
    x = x.astype(WIDE)
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x))


def log_sigmoid(x: np.ndarray) -> np.ndarray:
    x = x.astype(WIDE)
    with np.errstate(over="ignore"):
        return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))


def bce_with_logits(x: np.ndarray, y: np.ndarray, pos_weight: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    x, y = x.astype(WIDE), y.astype(WIDE)
    pw = np.ones_like(x) if pos_weight is None else pos_weight.astype(WIDE)
    with np.errstate(over="ignore", invalid="ignore"):
        lw = np.ones_like(x) if pos_weight is None else (pw - 1) * y + 1
        softplus = np.log1p(np.exp(-np.abs(x)))
        logsig = np.minimum(x, 0) - softplus
        linear = np.where(x >= 0, (1 - y) * x, -pw * y * x)
        loss = linear + lw * softplus
        literal = (1 - y) * x - lw * logsig  # the specification's own NaN and inf at infinite x
        loss = np.where(np.isfinite(x), loss, literal)
        scale = np.abs((1 - y) * x) + (1 + np.abs(y) + np.abs(pw * y)) * np.abs(logsig)
        return loss, scale.astype(np.float64)  # beyond float64's range: inf, saturated by the caller


def bce_grad_input(p: np.ndarray, y: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    p, y = p.astype(WIDE), y.astype(WIDE)
    with np.errstate(divide="ignore", invalid="ignore"):
        grad = (p - y) / np.maximum(p * (1 - p), WIDE(eps))
    return grad, np.abs(grad).astype(np.float64)


def bce_grad_target(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = p.astype(WIDE)
    with np.errstate(divide="ignore"):
        log_q, log_p = np.log1p(-p), np.log(p)
    return log_q - log_p, (np.abs(log_q) + np.abs(log_p)).astype(np.float64)


def bce_with_logits_grad_input(x: np.ndarray, y: np.ndarray, pos_weight: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    x, y = x.astype(WIDE), y.astype(WIDE)
    pw = np.ones_like(x) if pos_weight is None else pos_weight.astype(WIDE)
    with np.errstate(over="ignore", invalid="ignore"):
        positive = pw * y
        sig, sig_neg = sigmoid(x), sigmoid(-x)
        grad = (1 - y) * sig - positive * sig_neg
        literal = sig - y if pos_weight is None else (positive + 1 - y) * sig - positive
        grad = np.where(np.isfinite(y) & np.isfinite(pw), grad, literal)
        scale = (np.abs(positive) + 1 + np.abs(y)) * sig + np.abs(positive)
        return grad, scale.astype(np.float64)  # beyond float64's range: inf, as the gradient itself


def bce_with_logits_grad_target(x: np.ndarray, pos_weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, pw = x.astype(WIDE), pos_weight.astype(WIDE)
    with np.errstate(over="ignore", invalid="ignore"):
        softplus = np.log1p(np.exp(-np.abs(x)))
        log_sig, log_sig_neg = np.minimum(x, 0) - softplus, np.minimum(-x, 0) - softplus
        grad = (pw - 1) * softplus + np.minimum(-x, 0) - pw * np.minimum(x, 0)
        grad = np.where(np.isfinite(pw), grad, log_sig_neg - pw * log_sig)
        scale = np.abs(log_sig_neg) + np.abs(pw * log_sig)
        return grad, scale.astype(np.float64)  # beyond float64's range: inf, as the gradient itself
