"""The gradients of sigmoid_bce (BCELoss of the backend's own sigmoid): reference values and the tolerance's sign."""
from __future__ import annotations

import numpy as np
import pytest

from bce_reference import FORMATS, exact, gradients
from bce_reference.gradients import SIGMOID_ULPS
from conformance import tolerance
from conformance.compare import Outcome, check_value
from conformance.results import Status

from .test_reference import DTYPES, tensors

CTX = exact.CTX


@pytest.mark.parametrize("dtype, x, y, expected", [
    # torch 2.13.0 CPU, autograd of binary_cross_entropy(torch.sigmoid(x), y): the floor below x = -27.6 (-0.0936 at
    # -30, not -1), 0 where sigmoid(x) rounds to 1 (float32 at 20), NaN where float16's eps (0) meets p = 0 or 1
    ("float32", [-40, -30, -20, 10, 20], [1, 1, 1, 1, 0],
     [-4.248353889124701e-06, -0.09357623755931854, -1.0, -4.5418739318847656e-05, 0.0]),
    ("float64", [-120, -40, 20, 40], [1, 0, 0, 0],
     [-7.66764810436041e-41, 1.8048513950572453e-23, 0.9999999979388463, 0.0]),
    ("bfloat16", [-30, 20], [1, 1], [-0.09326171875, 0.0]),
    ("float16", [-20, -10, 20], [0, 1, 0], [np.nan, -1.0, np.nan]),
])
def test_pytorch_values_by_input(dtype, x, y, expected):
    result = gradients("sigmoid_bce", tensors(dtype, input=x, target=y), "none", ("input",), np.ones(len(x)))
    # PyTorch rounds each step; E is rounded once: a few units of roundoff apart
    np.testing.assert_allclose(result["input"].value, expected, rtol=4 * FORMATS[dtype].unit_roundoff, atol=0)


def test_the_derivative_of_the_exact_composite_where_nothing_saturates():
    """float64, p (1 - p) above the floor: d/dx is sigmoid(x) - y, up to the rounding of p = sigmoid(x)."""
    x = np.linspace(-25, 25, 41)
    y = np.resize([0.0, 0.3, 1.0], x.size)
    got = gradients("sigmoid_bce", tensors("float64", input=x, target=y), "none", ("input",), np.ones(x.size))
    with CTX.workprec(256):
        exact_slope = [float(CTX.diff(lambda v, t=t: -(t * CTX.log(exact.sigmoid(v)) + (1 - t) * CTX.log(
            1 - exact.sigmoid(v))), CTX.mpf(v))) for v, t in zip(x, y)]
    spacing = FORMATS["float64"].spacing(1 / (1 + np.exp(-x)))
    assert np.all(np.abs(got["input"].value - exact_slope) <= spacing)


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_a_wrong_sign_passes_only_where_the_sigmoids_error_could_flip_it(dtype):
    """-E in place of one element passes only where sigmoid(x) lies within SIGMOID_ULPS of y (d/dx) or of 1/2
    (d/dy): there a sigmoid within its documented error gives either sign, and the sign invariant stands aside."""
    fmt = FORMATS[dtype]
    x = np.concatenate([np.linspace(-30, 30, 61), [-1e-3, -1e-6, 1e-6, 1e-3, -0.8473, 1.3863, 0.4055]])
    for target in (0.0, 0.3, 0.5, 0.8, 1.0):
        arrays = tensors(dtype, input=x, target=np.full(x.size, target))
        result = gradients("sigmoid_bce", arrays, "none", ("input", "target"), np.ones(x.size))
        p = fmt.round_array(1 / (1 + np.exp(-arrays["input"].astype(np.float64))))
        for name, centre in (("input", arrays["target"].astype(np.float64)), ("target", 0.5)):
            expected = result[name]
            allowed = tolerance.allowed("sigmoid_bce", expected, wrt=name)
            e = expected.value
            assert check_value(Outcome(e.astype(DTYPES[dtype])), expected, allowed).status == Status.PASSED
            band = np.abs(p - centre) <= SIGMOID_ULPS * fmt.spacing(p)
            for index in np.flatnonzero(np.isfinite(e) & (e != 0)):
                flipped = e.copy()
                flipped[index] = -e[index]
                verdict = check_value(Outcome(flipped.astype(DTYPES[dtype])), expected, allowed)
                assert verdict.status == Status.FAILED or band[index], (name, target, x[index], verdict.message)
                assert band[index] or expected.sign[index] == np.sign(e[index])
