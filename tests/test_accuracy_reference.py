"""The sweep reference (reference/bce_reference/sweep.py) against 256-bit mpmath: its own error, in ulps of each output dtype."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from bce_reference import FORMATS, exact, sweep

DTYPES = {"float16": np.float16, "bfloat16": ml_dtypes.bfloat16, "float32": np.float32, "float64": np.float64}
WIDE_ULPS = 2.0**-8
"""Bound on the unrounded sweep value's error; measured: below 2e-3 ulp for float64, 1e-8 for the others."""


def _mpf(value: np.floating) -> exact.CTX.mpf:
    """A float64 or 64-bit longdouble, exactly (the longdouble as the sum of two float64)."""
    high = np.float64(value)
    low = np.float64(np.longdouble(value) - np.longdouble(high))
    return exact.CTX.mpf(float(high)) + exact.CTX.mpf(float(low))


def _points(op: str, dtype: str, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs where a wide-type evaluation is hardest: both tails, near 0, near 1, subnormals; hard and soft targets."""
    fmt = FORMATS[dtype]
    if op == "bce":
        x = np.concatenate([
            np.exp(rng.uniform(np.log(fmt.min_subnormal), 0, count // 3)),  # every binade down to the subnormals
            1 - np.exp(rng.uniform(np.log(fmt.eps / 2), -1, count // 3)),  # next to 1
            rng.uniform(0, 1, count - 2 * (count // 3)),
            [0.0, 1.0, fmt.min_subnormal, 1 - fmt.eps / 2],
        ])
    else:
        x = np.concatenate([
            rng.uniform(-120, 120, count // 2),
            np.sign(rng.uniform(-1, 1, count // 2)) * np.exp(rng.uniform(-30, np.log(min(fmt.max / 20, 1e30)), count // 2)),  # pw x stays finite
            [0.0, -fmt.min_subnormal, 1e-8, -750.0 if dtype == "float64" else -100.0],
        ])
    x = fmt.round_array(x).astype(DTYPES[dtype])
    y = np.where(rng.uniform(0, 1, x.size) < 0.5, rng.choice([0.0, 1.0], x.size), rng.uniform(0, 1, x.size))
    y = fmt.round_array(y).astype(DTYPES[dtype])
    pos_weight = fmt.round_array(rng.uniform(0.1, 10, x.size)).astype(DTYPES[dtype])
    return x, y, pos_weight


def _ulps(op: str, dtype: str, x: np.ndarray, y: np.ndarray, pos_weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Error of the sweep value and of its correctly rounded value, in ulps of dtype at the 256-bit loss."""
    fmt = FORMATS[dtype]
    wide = sweep.loss(op, dtype, x, y, pos_weight if op == "bce_with_logits" else None)
    rounded = fmt.round_array(wide)
    wide_errors, rounded_errors = [], []
    for i in range(x.size):
        args = (float(x[i]), float(y[i])) if op == "bce" else (float(x[i]), float(y[i]), float(pos_weight[i]))
        truth = getattr(exact, op)(*args)[0]
        ulp = float(fmt.spacing(np.array([float(truth)]))[0])
        wide_errors.append(float(abs(_mpf(wide[i]) - truth)) / ulp)
        rounded_errors.append(float(abs(exact.CTX.mpf(float(rounded[i])) - truth)) / ulp)
    return np.array(wide_errors), np.array(rounded_errors)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("op", ["bce", "bce_with_logits"])
def test_sweep_reference_is_within_half_an_ulp(op, dtype):
    x, y, pos_weight = _points(op, dtype, 500, np.random.default_rng(2024))
    wide, rounded = _ulps(op, dtype, x, y, pos_weight)
    assert wide.max() <= WIDE_ULPS, (op, dtype, wide.max(), x[np.argmax(wide)])
    assert rounded.max() <= 0.5 + WIDE_ULPS, (op, dtype, rounded.max())


def test_hard_targets_take_the_short_path_to_the_same_value():
    x = np.linspace(-50, 50, 101).astype(np.float32)
    for target in (0.0, 1.0):
        full = sweep.loss("bce_with_logits", "float32", x, np.full(x.shape, target, np.float32), np.ones(x.shape, np.float32))
        assert np.array_equal(sweep.loss("bce_with_logits", "float32", x, target), full)
    p = np.linspace(0, 1, 101).astype(np.float64)
    for target in (0.0, 1.0):
        assert np.array_equal(sweep.loss("bce", "float64", p, target), sweep.loss("bce", "float64", p, np.full(p.shape, target)))


def test_working_types():
    assert sweep.loss("bce", "float32", np.array([0.5], np.float32), 1.0).dtype == np.float64
    assert sweep.loss("bce", "float64", np.array([0.5]), 1.0).dtype == np.longdouble


def test_a_platform_without_a_wide_longdouble_is_refused(monkeypatch):
    monkeypatch.setitem(sweep.WORKING, "float64", np.float64)
    with pytest.raises(sweep.PrecisionError, match="at least 63 significand bits"):
        sweep.working_type("float64")


@pytest.mark.parametrize("target, pos_weight", [(1.5, None), (-0.5, None), (np.nan, None), (0.5, -1.0)])
def test_outside_the_domain_without_cancellation_is_refused(target, pos_weight):
    with pytest.raises(ValueError):
        sweep.loss("bce_with_logits", "float32", np.array([1.0], np.float32), target, pos_weight)
