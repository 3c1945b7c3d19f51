"""Each check of the comparison fails when it should and passes when it should."""
from __future__ import annotations

import numpy as np
import pytest

from conformance.compare import Outcome, agrees_with_printed, check_rejection, check_value
from conformance.results import Status
from reference import Expected


def expected(values, dtype="float32", scale=1.0):
    value = np.asarray(values, dtype=np.float64)
    return Expected(value=value, dtype=dtype, scale=np.full(value.shape, scale), terms=1, method="exact",
                    working_dtype=dtype)


def verdict(got, exp, allowed=1e-6):
    return check_value(Outcome(value=got), exp, np.full(exp.value.shape, allowed))


def test_within_tolerance_passes_and_reports_ulps_and_headroom():
    v = verdict(np.float32([1.0, 2.0 + 2**-22]), expected([1.0, 2.0]))
    assert v.status == Status.PASSED
    assert v.max_ulp_error == 1.0 and v.index == [1]
    assert v.headroom == pytest.approx(2**-22 / 1e-6)


def test_outside_tolerance_fails_naming_the_element():
    v = verdict(np.float32([[1.0, 1.5]]), expected([[1.0, 1.25]]))
    assert v.status == Status.FAILED
    assert v.index == [0, 1] and "1 / 2 elements differ" in v.message and "index (0, 1)" in v.message
    assert v.expected == "1.25" and v.got == "1.5"


def test_nan_matches_only_nan():
    assert verdict(np.float32([np.nan, 1]), expected([np.nan, 1])).status == Status.PASSED
    assert verdict(np.float32([0.5]), expected([np.nan])).status == Status.FAILED
    assert verdict(np.float32([np.nan]), expected([0.5])).status == Status.FAILED


def test_infinities_match_by_sign():
    assert verdict(np.float32([np.inf]), expected([np.inf])).status == Status.PASSED
    assert verdict(np.float32([-np.inf]), expected([np.inf])).status == Status.FAILED
    assert verdict(np.float32([3e38]), expected([np.inf])).status == Status.FAILED
    assert verdict(np.float32([np.inf]), expected([100.0])).status == Status.FAILED


def test_signed_zero_is_not_compared():
    assert verdict(np.float32(-0.0), expected(0.0)).status == Status.PASSED


def test_dtype_shape_and_type_are_checked():
    assert "dtype float64" in verdict(np.float64(1.0), expected(1.0)).message
    assert "shape (1,)" in verdict(np.float32([1.0]), expected(1.0)).message
    assert "returned float" in verdict(1.0, expected(1.0)).message
    assert "returned list" in verdict([1.0], expected([1.0])).message
    assert "returned NoneType" in verdict(None, expected(1.0)).message


def test_empty_result_passes_when_empty_is_expected():
    assert verdict(np.zeros((2, 0), np.float32), expected(np.zeros((2, 0)))).status == Status.PASSED


def test_raising_on_valid_input_fails_and_adapter_bugs_are_errors():
    exp = expected(1.0)
    failed = check_value(Outcome(error=RuntimeError("nope")), exp, np.zeros(()))
    assert failed.status == Status.FAILED and "RuntimeError: nope" in failed.message
    bug = check_value(Outcome(error=AttributeError("x")), exp, np.zeros(()))
    assert bug.status == Status.ERROR


def test_rejection_checks():
    assert check_rejection(Outcome(error=ValueError("bad input")), "out_of_range").status == Status.UNVERIFIED
    accepted = check_rejection(Outcome(value=np.float32(0.5)), "out_of_range")
    assert accepted.status == Status.FAILED and "accepted input" in accepted.message
    assert check_rejection(Outcome(error=NameError("typo")), "dtype").status == Status.ERROR


@pytest.mark.parametrize("value, text, agrees", [
    (0.2540847957134247, "tensor(0.2541)", True),
    (0.25405, "tensor(0.2541)", True),
    (0.25404, "tensor(0.2541)", False),
    (0.2540847836081325, "0.2540847836081325", True),
    (0.2540847836081326, "0.2540847836081325", False),
    (2.2727246284484863, "tensor(2.2727)", True),
])
def test_printed_values(value, text, agrees):
    assert agrees_with_printed(value, text) is agrees
