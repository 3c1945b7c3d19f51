"""The float formats and the correct rounding every other step relies on."""
from __future__ import annotations

import math
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bce_reference import FORMATS

NUMPY = {"float16": np.float16, "bfloat16": ml_dtypes.bfloat16, "float32": np.float32, "float64": np.float64}


@pytest.mark.parametrize("name", list(FORMATS))
def test_format_constants_match_finfo(name):
    fmt = FORMATS[name]
    info = ml_dtypes.finfo(NUMPY[name]) if name == "bfloat16" else np.finfo(NUMPY[name])
    assert fmt.max == float(info.max)
    assert fmt.min_normal == float(info.smallest_normal)
    assert fmt.min_subnormal == float(info.smallest_subnormal)
    assert fmt.eps == float(info.eps)


finite_doubles = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=2000, deadline=None)
@given(finite_doubles)
def test_round_matches_ieee_casts_from_float64(x):
    # NumPy's float64 -> float16/float32 casts are correctly rounded (ties to even).
    for name in ("float16", "float32"):
        with np.errstate(over="ignore"):
            expected = float(np.float64(x).astype(NUMPY[name]))
        assert FORMATS[name].round(Fraction(x)) == expected
        assert FORMATS[name].round_array(np.array([x]))[0] == expected


@settings(max_examples=2000, deadline=None)
@given(st.fractions(), st.sampled_from(list(FORMATS)))
def test_round_array_agrees_with_exact_round(value, name):
    # round_array sees the float64 nearest to value: compare against the exact rounding of that float64.
    x = float(value)
    assert FORMATS[name].round_array(np.array([x]))[0] == FORMATS[name].round(Fraction(x))


@settings(max_examples=1000, deadline=None)
@given(st.integers(-10**40, 10**40), st.integers(1, 10**40))
def test_round_float64_matches_python_division(n, d):
    # CPython's int / int is correctly rounded.
    assert FORMATS["float64"].round(Fraction(n, d)) == n / d


def test_ties_go_to_even_and_midpoints_are_exact():
    f32 = FORMATS["float32"]
    assert f32.round(1 + Fraction(1, 2**24)) == 1.0  # tie between 1 and 1 + 2**-23: even wins
    assert f32.round(1 + Fraction(3, 2**24)) == 1 + 2**-22  # tie between odd 1 + 2**-23 and even 1 + 2**-22
    assert f32.round(1 + Fraction(1, 2**24) + Fraction(1, 2**80)) == 1 + 2**-23


def test_no_double_rounding_through_float32_for_bfloat16():
    # 1 + 2**-8 + 2**-30 lies above the bfloat16 midpoint 1 + 2**-8; through float32 it would land on it.
    value = 1 + 2**-8 + 2**-30
    assert FORMATS["bfloat16"].round(Fraction(value)) == 1 + 2**-7
    assert FORMATS["bfloat16"].round_array(np.array([value]))[0] == 1 + 2**-7


def test_longdouble_is_rounded_once():
    if np.finfo(np.longdouble).nmant < 63:
        pytest.skip("longdouble is no wider than float64 here")
    value = np.longdouble(1) + np.longdouble(2.0**-53) + np.longdouble(2.0**-62)
    assert FORMATS["float64"].round_array(np.array([value]))[0] == 1 + 2**-52


@pytest.mark.parametrize("name", list(FORMATS))
def test_overflow_and_underflow(name):
    fmt = FORMATS[name]
    assert fmt.round(Fraction(fmt.max) * 2) == math.inf
    assert fmt.round(-Fraction(fmt.max) * 2) == -math.inf
    half_ulp_above_max = Fraction(fmt.max) + Fraction(2) ** (fmt.emax - fmt.precision)
    assert fmt.round(half_ulp_above_max) == math.inf  # the tie rounds to even, which is 2**(emax+1)
    assert fmt.round(half_ulp_above_max - Fraction(1, 2**2000)) == fmt.max
    assert fmt.round(Fraction(fmt.min_subnormal) / 2) == 0.0  # tie to even zero
    assert fmt.round(Fraction(fmt.min_subnormal) * Fraction(3, 4)) == fmt.min_subnormal


@pytest.mark.parametrize("name", ["float16", "float32", "float64"])
def test_spacing_matches_numpy(name):
    values = np.array([0.0, 1e-45, 1e-8, 0.5, 1.0, 3.0, 1000.0], dtype=NUMPY[name])
    assert np.array_equal(FORMATS[name].spacing(values.astype(np.float64)), np.spacing(values).astype(np.float64))
