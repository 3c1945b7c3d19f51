"""The reference is correctly rounded: compared with an independent evaluation (MPFR through gmpy2, 3000 bits).

Random and adversarial points per dtype: near-ties ((1 - y) x a midpoint of the format, plus e^-|x|),
tiny pos_weight, sums that cancel, subnormal results, p next to 0 and 1. The default test checks a
few thousand points per dtype; the slow one 100,000 or more (both ops), the figure docs/tolerances.md cites.
"""
from __future__ import annotations

from fractions import Fraction

import gmpy2
import ml_dtypes
import numpy as np
import pytest

import bce_reference
from bce_reference import FORMATS

DTYPES = {"float16": np.float16, "bfloat16": ml_dtypes.bfloat16, "float32": np.float32, "float64": np.float64}
BITS = 3000
BATCH = 1000  # elements per reference call: the 256-bit path (at most bce_reference.EXACT_LIMIT)


def _ieee(dtype: str) -> gmpy2.context:
    """MPFR emulating the format: its precision, exponent range and gradual underflow."""
    fmt = FORMATS[dtype]
    return gmpy2.context(precision=fmt.precision, emin=fmt.emin - fmt.precision + 2, emax=fmt.emax + 1,
                         subnormalize=True)


def _log_sigmoid(x: gmpy2.mpfr) -> gmpy2.mpfr:
    return -gmpy2.log1p(gmpy2.exp(-x)) if x >= 0 else x - gmpy2.log1p(gmpy2.exp(x))


def independent(op: str, dtype: str, x: float, y: float, pw: float | None) -> float:
    """The specified loss of one element, evaluated in 3000-bit MPFR and rounded once to `dtype` by MPFR."""
    with gmpy2.context(precision=BITS):
        x, y = gmpy2.mpfr(x), gmpy2.mpfr(y)
        if op == "bce":
            value = (y - 1) * max(gmpy2.log1p(-x), gmpy2.mpfr(-100)) - y * max(gmpy2.log(x), gmpy2.mpfr(-100))
        else:
            factor = 1 if pw is None else (gmpy2.mpfr(pw) - 1) * y + 1
            value = (1 - y) * x - factor * _log_sigmoid(x)
    with _ieee(dtype):
        return float(+value)


def independent_sum(dtype: str, p: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """sum(w * BCE(p, y)), exactly weighted and summed in 3000 bits, rounded once."""
    with gmpy2.context(precision=BITS):
        total = gmpy2.mpfr(0)
        for pi, yi, wi in zip(p.tolist(), y.tolist(), w.tolist()):
            pi, yi = gmpy2.mpfr(pi), gmpy2.mpfr(yi)
            loss = (yi - 1) * max(gmpy2.log1p(-pi), gmpy2.mpfr(-100)) - yi * max(gmpy2.log(pi), gmpy2.mpfr(-100))
            total += gmpy2.mpfr(wi) * loss
    with _ieee(dtype):
        return float(+total)


def _midpoint_logits(rng: np.random.Generator, dtype: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) with integer y <= 0 whose (1 - y) x is exactly halfway between two numbers of the format."""
    fmt, xs, ys = FORMATS[dtype], [], []
    top = min(1000.0, fmt.max / 64)
    while len(xs) < n:
        x = float(np.asarray(rng.uniform(-top, top), dtype=DTYPES[dtype]))
        y = float(-rng.integers(1, 9))
        product = Fraction(1 - y) * Fraction(x)
        near = Fraction(fmt.round(product))
        if x == 0 or near == product:
            continue
        gap = Fraction(float(fmt.spacing(np.asarray([float(min(abs(near), abs(product)))]))[0]))
        if abs(abs(product) - abs(near)) * 2 == gap:
            xs.append(x)
            ys.append(y)
    return np.asarray(xs), np.asarray(ys)


def points(dtype: str, n: int, seed: int) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]]:
    """(op, x, y, pw) batches: random values and the adversarial families, about `n` elements in all."""
    rng = np.random.default_rng(seed)
    fmt, cast = FORMATS[dtype], DTYPES[dtype]
    k = max(n // 8, 1)

    def as_dtype(values) -> np.ndarray:
        return np.asarray(values, dtype=np.float64).astype(cast).astype(np.float64)

    tiny = np.log2(fmt.min_subnormal)
    p_random = as_dtype(np.concatenate([rng.uniform(0, 1, k // 2), 2.0 ** rng.uniform(tiny, 0, k - k // 2)]))
    p_ends = as_dtype(np.concatenate([1 - rng.integers(1, 64, k // 2) * fmt.eps / 2,
                                      rng.integers(1, 64, k - k // 2) * fmt.min_subnormal]))
    soft = as_dtype(rng.uniform(0, 1, k))
    hard = as_dtype(rng.integers(0, 2, k))
    reach = min(1000.0, fmt.max / 64)
    x_random = as_dtype(rng.uniform(-1, 1, k) * 2.0 ** rng.uniform(-20, np.log2(reach), k))
    x_mid, y_mid = _midpoint_logits(rng, dtype, k)
    x_tail = as_dtype(np.where(rng.integers(0, 2, k) == 1, 1, -1) * rng.uniform(0, reach, k))
    pw_tiny = as_dtype(2.0 ** rng.uniform(np.log2(fmt.min_normal), -10, k))
    # results that underflow: y = 1, x beyond the point where softplus(-x) goes subnormal
    x_sub = as_dtype(rng.uniform(-np.log(fmt.min_normal), -np.log(fmt.min_subnormal) + 1, k))
    return [
        ("bce", p_random, soft, None),
        ("bce", p_ends, hard, None),
        ("bce_with_logits", x_random, as_dtype(rng.uniform(-2, 3, k)), None),
        ("bce_with_logits", x_mid, y_mid, None),
        ("bce_with_logits", x_tail, hard, as_dtype(2.0 ** rng.uniform(-8, 8, k))),
        ("bce_with_logits", x_random, as_dtype(np.ones(k)), pw_tiny),
        ("bce_with_logits", as_dtype(rng.uniform(-2, 2, k)), soft, pw_tiny),
        ("bce_with_logits", x_sub, as_dtype(np.ones(k)), None),
    ]


def misroundings(dtype: str, n: int, seed: int = 0) -> tuple[int, int, list]:
    """(points checked, misroundings, the first few) of the reference's element values against `independent`."""
    cast, checked, wrong = DTYPES[dtype], 0, []
    for op, x, y, pw in points(dtype, n, seed):
        finite = np.isfinite(x) & np.isfinite(y) & (True if pw is None else np.isfinite(pw))
        x, y = x[finite], y[finite]
        pw = None if pw is None else pw[finite]
        for start in range(0, x.size, BATCH):
            part = slice(start, start + BATCH)
            tensors = {"input": x[part].astype(cast), "target": y[part].astype(cast)}
            if pw is not None:
                tensors["pos_weight"] = pw[part].astype(cast)
            got = bce_reference.compute(op, tensors, "none").value
            for i, value in enumerate(got.tolist()):
                j = start + i
                want = independent(op, dtype, float(x[j]), float(y[j]), None if pw is None else float(pw[j]))
                checked += 1
                if not (value == want or (np.isnan(value) and np.isnan(want)) or (np.isinf(want) and value == want)):
                    wrong.append((op, float(x[j]), float(y[j]), None if pw is None else float(pw[j]), value, want))
    return checked, len(wrong), wrong[:5]


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_no_misrounding_at_random_and_adversarial_points(dtype):
    checked, count, first = misroundings(dtype, 2000)
    assert checked >= 1900
    assert count == 0, first


@pytest.mark.slow
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_no_misrounding_at_100000_points(dtype):
    checked, count, first = misroundings(dtype, 100_000, seed=1)
    assert checked >= 100_000
    assert count == 0, first


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cancelling_weighted_sums_are_correctly_rounded(dtype):
    rng = np.random.default_rng(2)
    cast = DTYPES[dtype]
    for _ in range(20):
        p = rng.uniform(0.01, 0.99, 4).astype(cast)
        p[1] = np.nextafter(p[0], cast(1))  # nearly equal losses, weighted +1 and -1: the sum cancels
        y = np.asarray([1, 1, 0, 0], dtype=cast)
        w = np.asarray([1, -1, 1e-3, -1e-3], dtype=cast)
        p[3] = np.nextafter(p[2], cast(0))
        got = bce_reference.compute("bce", {"input": p, "target": y, "weight": w}, "sum").value
        assert float(got) == independent_sum(dtype, p.astype(np.float64), y.astype(np.float64),
                                             w.astype(np.float64)), (p, w)


def test_the_longdouble_path_proves_its_rounding_or_falls_back():
    """Over 1024 elements the reference takes the longdouble path; where that cannot decide a rounding
    (p = 1 - 2^-52 at y = 1, a tiny pos_weight) the value still comes out correctly rounded."""
    n = bce_reference.EXACT_LIMIT + 1
    p = np.full(n, 1 - 2.0**-52)
    p[1:] = np.linspace(0.25, 0.75, n - 1)
    y = np.ones(n)
    value = bce_reference.compute("bce", {"input": p, "target": y}, "none").value
    assert value[0] == independent("bce", "float64", 1 - 2.0**-52, 1.0, None) == 2.2204460492503136e-16
    x = np.full(n, 9.146825790405273, dtype=np.float32)
    tensors = {"input": x, "target": np.ones(n, dtype=np.float32),
               "pos_weight": np.asarray([3.5814430543263336e-25], dtype=np.float32)}
    assert bce_reference.compute("bce_with_logits", tensors, "none").value[0] == 3.81609296229477e-29
