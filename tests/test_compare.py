"""Each check of the comparison fails when it should and passes when it should."""
from __future__ import annotations

import numpy as np
import pytest

from bce_reference import Expected
from bce_reference.specified import Specified
from conformance.compare import (
    Outcome,
    agrees_with_printed,
    check_rejection,
    check_value,
)
from conformance.results import AS_SPECIFIED, EXACT, Status
from conformance.tolerance import Allowed


def expected(values, dtype="float32", scale=1.0):
    value = np.asarray(values, dtype=np.float64)
    return Expected(value=value, dtype=dtype, scale=np.full(value.shape, scale), terms=1, method="exact",
                    working_dtype=dtype)


def verdict(got, exp, allowed=1e-6):
    return check_value(Outcome(value=got), exp, Allowed(np.full(exp.value.shape, allowed)))


def cancelling(exact=3.06e-7, specified=0.0, sign=1.0):
    """float32 BCE with logits at x = -15, y = 0: PyTorch's algorithm gives about 0 there (terms of 15)."""
    value = np.asarray([exact])
    spec = Specified(value=np.asarray([specified]), scale=np.asarray([30.0]), magnitude=np.asarray([exact]))
    return Expected(value=value, dtype="float32", scale=np.asarray([30.0]), terms=1, method="exact",
                    working_dtype="float32", specified=spec, sign=np.asarray([sign]), invariant="loss >= 0")


def two_sided(exp, near_exact=1e-13, near_specified=8 * 2.0**-24 * 30):
    return Allowed(np.asarray([near_exact]), np.asarray([near_specified]))


def test_a_value_near_the_exact_one_matches_exact():
    v = check_value(Outcome(value=np.float32([3.06e-7])), cancelling(), two_sided(None))
    assert v.status == Status.PASSED and v.matched == EXACT and v.message == ""


def test_a_value_near_only_pytorchs_algorithm_passes_labelled_as_specified():
    v = check_value(Outcome(value=np.float32([0.0])), cancelling(), two_sided(None))
    assert v.status == Status.PASSED and v.matched == AS_SPECIFIED
    assert v.message.startswith("as specified; ") and v.message.endswith(" ulp from exact")


def test_a_value_near_neither_fails_naming_pytorchs_value():
    v = check_value(Outcome(value=np.float32([1e-3])), cancelling(), two_sided(None))
    assert v.status == Status.FAILED and "PyTorch's algorithm in float32 gives 0.0" in v.message


def test_an_invariant_fails_even_inside_the_neighbourhood_and_is_named():
    v = check_value(Outcome(value=np.float32([-1e-6])), cancelling(), two_sided(None))
    assert v.status == Status.FAILED and v.message.startswith("invariant violated: loss >= 0")


def test_zero_satisfies_a_sign_invariant():
    v = check_value(Outcome(value=np.float32([0.0])), cancelling(sign=-1.0), two_sided(None))
    assert v.status == Status.PASSED


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
