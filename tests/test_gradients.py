"""The reference gradients: PyTorch's measured values, numerical differentiation of the exact loss, exact vs fast path."""
from __future__ import annotations

import numpy as np
import pytest

from bce_reference import FORMATS, Rejected, exact, gradients
from bce_reference.spec import BCE_GRAD_EPS

from .test_reference import DTYPES, SEED_P, SEED_X, SEED_Y, tensors

CTX = exact.CTX


def grads(op, dtype, reduction="none", wrt=("input", "target"), grad_output=None, method="auto", **arrays):
    result = gradients(op, tensors(dtype, **arrays), reduction, wrt, grad_output, method)
    return {name: expected.value for name, expected in result.items()}


@pytest.mark.parametrize(
    "op, dtype, arrays, expected",
    [
        # PyTorch's autograd formulas (tools/autograd/derivatives.yaml), values measured on torch 2.13.0 CPU
        ("bce", "float32", dict(input=[0, 1, 0, 1e-30, 1e-30, 1 - 2**-24], target=[1, 0, 0, 1, 0, 0]),
         {"input": [-999999995904.0, 999999995904.0, 0.0, -999999995904.0, 1.000000045813705e-18, 16777216.0]}),
        ("bce", "float64", dict(input=[0, 1, 1e-30, 1e-30, 0.9], target=[1, 0, 1, 0, 1]),
         {"input": [-1000000003995.8029, 1000000003995.8029, -1000000003995.8029, 1.0000000039958028e-18,
                    -1.1111111111111112],
          "target": [np.inf, -np.inf, 69.07755278982137, 69.07755278982137, -2.1972245773362196]}),
        ("bce", "bfloat16", dict(input=[0, 1e-30], target=[1, 0]),
         {"input": [-996432412672.0, 9.961107459710572e-19]}),
        # float16: eps = float32(1e-12) rounds to 0, so the floor is gone: +-inf, and 0/0 = NaN
        ("bce", "float16", dict(input=[0, 1, 0, 1, 1e-30], target=[1, 0, 0, 1, 0]),
         {"input": [-np.inf, np.inf, np.nan, np.nan, np.nan], "target": [np.inf, -np.inf, np.inf, -np.inf, np.inf]}),
        ("bce_with_logits", "float64", dict(input=[np.inf, -np.inf, np.inf, -np.inf, -100, 100, np.nan],
                                            target=[0, 0, 1, 1, 0, 1, 0]),
         {"input": [1.0, 0.0, 0.0, -1.0, 3.720075976020836e-44, -3.720075976020836e-44, np.nan],
          "target": [-np.inf, np.inf, -np.inf, np.inf, 100.0, -100.0, np.nan]}),
        ("bce_with_logits", "float64", dict(input=[np.inf, -np.inf, -100, 0.5], target=[0, 1, 0, 0.3],
                                            pos_weight=[3.0]),
         {"input": [1.0, -3.0, 3.720075976020836e-44, 0.09593492992296737],
          "target": [-np.inf, np.inf, 300.0, 0.4481539683602134]}),
    ],
)
def test_measured_pytorch_gradients(op, dtype, arrays, expected):
    got = grads(op, dtype, **arrays)
    for name, values in expected.items():
        assert np.allclose(got[name], values, rtol=2**-50, atol=0, equal_nan=True), (name, got[name])  # 4 ulp


def test_reductions_weight_and_grad_output_scale_the_gradient():
    # measured: F.binary_cross_entropy(p, y, weight=w, reduction='mean') backward, float64
    row = grads("bce", "float64", "mean", ("input",), input=SEED_P[0], target=SEED_Y[0], weight=[1.0, 2.0, 3.0])
    assert np.allclose(row["input"], [-0.37037037037037041, 0.74074074074074059, 1.42857142857142860], rtol=2**-51)
    arrays = dict(input=SEED_P, target=SEED_Y, weight=[1.0, 2.0, 3.0])
    total = grads("bce", "float64", "sum", **arrays)
    mean = grads("bce", "float64", "mean", **arrays)
    scaled = grads("bce", "float64", "mean", grad_output=np.array(3.0), **arrays)
    for name in ("input", "target"):
        assert np.allclose(mean[name], total[name] / 6, rtol=2**-52, atol=0)
        assert np.allclose(scaled[name], 3 * mean[name], rtol=2**-52, atol=0)


def test_the_eps_floor_is_not_the_derivative():
    """At p = 1e-30, y = 0 the loss is -log1p(-p), whose derivative is 1.0; the specified gradient is p / eps."""
    p = 1e-30
    true_derivative = CTX.diff(lambda t: exact.bce(t, 0.0)[0], p)
    assert abs(true_derivative - 1) < 1e-20
    specified = grads("bce", "float64", input=[p], target=[0], wrt=("input",))["input"][0]
    assert specified == float(CTX.mpf(p) / CTX.mpf(BCE_GRAD_EPS)) == 1.0000000039958028e-18


def _smooth_points(op: str, count: int, seed: int) -> list[tuple[float, float, float]]:
    """Points where the loss is smooth: BCE away from the clamp at -100 and from the eps floor."""
    rng = np.random.default_rng(seed)
    if op == "bce":
        p = np.concatenate([rng.uniform(1e-5, 1 - 1e-5, count - 2), [1e-5, 0.5]])
        return [(float(a), float(b), 1.0) for a, b in zip(p, rng.uniform(0, 1, count))]
    x = np.concatenate([rng.uniform(-40, 40, count - 3), [0.0, -300.0, 300.0]])
    return [(float(a), float(b), float(c)) for a, b, c in zip(x, rng.uniform(-0.5, 1.5, count), rng.uniform(0.1, 10, count))]


@pytest.mark.parametrize("op", ["bce", "bce_with_logits"])
def test_gradients_are_the_numerical_derivative_of_the_exact_loss(op):
    """mpmath differentiates the 256-bit loss; weight, grad_output and 1/N scale it; the rounded results agree."""
    points = _smooth_points(op, 40, seed=5)
    x, y, pw = (np.array(column) for column in zip(*points))
    rng = np.random.default_rng(6)
    weight, grad_output = rng.uniform(-2, 2, x.size), np.float64(-1.75)
    arrays = dict(input=x, target=y, weight=weight)
    if op == "bce_with_logits":
        arrays["pos_weight"] = pw
    got = grads(op, "float64", "mean", grad_output=np.array(grad_output), **arrays)

    def loss(a, b, c):
        return exact.bce(a, b)[0] if op == "bce" else exact.bce_with_logits(a, b, c)[0]

    fmt, chain = FORMATS["float64"], lambda i: CTX.mpf(weight[i]) * CTX.mpf(grad_output) / x.size
    for i, (a, b, c) in enumerate(points):
        by_input = CTX.diff(lambda t, b=b, c=c: loss(t, b, c), a) * chain(i)
        by_target = CTX.diff(lambda t, a=a, c=c: loss(a, t, c), b) * chain(i)
        for name, derivative in (("input", by_input), ("target", by_target)):
            want = exact.round_to(fmt, derivative)
            assert abs(got[name][i] - want) <= fmt.spacing(np.array(want)), (name, a, b, c)  # 1 ulp: a near-tie


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("op", ["bce", "bce_with_logits"])
def test_fast_path_agrees_with_exact_path(op, dtype):
    rng = np.random.default_rng(9)
    n = 300
    if op == "bce":
        x = np.concatenate([rng.uniform(0, 1, n), [0, 1, 1e-30, 1e-13, 0.5]])
    else:
        x = np.concatenate([rng.uniform(-60, 60, n), [np.inf, -np.inf, -100, 100, 0]])
    y = np.concatenate([rng.uniform(0, 1, n - n // 2), rng.integers(0, 2, n // 2), [0, 1, 0, 1, 0.5]])
    arrays = dict(input=x, target=y, weight=rng.uniform(-3, 3, x.size))
    if op == "bce_with_logits":
        arrays["pos_weight"] = rng.uniform(0.1, 10, x.size)
    spacing = FORMATS[dtype].spacing
    for reduction in ("none", "mean", "sum"):
        slow = gradients(op, tensors(dtype, **arrays), reduction, method="exact")
        fast = gradients(op, tensors(dtype, **arrays), reduction, method="fast")
        for name in ("input", "target"):
            s, f = slow[name], fast[name]
            assert f.dtype == s.dtype and f.value.shape == s.value.shape
            assert np.array_equal(np.isnan(f.value), np.isnan(s.value))
            finite = np.isfinite(s.value)
            assert np.array_equal(f.value[~finite & ~np.isnan(s.value)], s.value[~finite & ~np.isnan(s.value)])
            diff = np.abs(f.value[finite] - s.value[finite])
            assert (diff <= spacing(s.value[finite])).all(), (reduction, name)
            assert np.mean(diff == 0) >= 0.99, (reduction, name)
            assert np.allclose(f.scale, s.scale, rtol=1e-12)


def test_exact_gradients_are_converged():
    """256 bits give the same correctly rounded float64 gradients as 512 bits."""
    rng = np.random.default_rng(4)
    points = [(float(x), float(y), float(w)) for x, y, w in
              zip(rng.uniform(-50, 50, 100), rng.uniform(0, 1, 100), rng.uniform(0.1, 10, 100))]
    kernels = (lambda x, y, w: exact.bce_with_logits_grad_input(x, y, w)[0],
               lambda x, y, w: exact.bce_with_logits_grad_target(x, w)[0],
               lambda x, y, w: exact.bce_grad_input(abs(x) / 50, y, BCE_GRAD_EPS)[0],
               lambda x, y, w: exact.bce_grad_target(abs(x) / 50)[0])
    fmt = FORMATS["float64"]
    at_256 = [exact.round_to(fmt, kernel(*point)) for kernel in kernels for point in points]
    exact.CTX.prec = 512
    try:
        at_512 = [exact.round_to(fmt, kernel(*point)) for kernel in kernels for point in points]
    finally:
        exact.CTX.prec = 256
    assert at_256 == at_512


def test_gradient_dtypes_follow_their_tensors():
    arrays = {"input": np.array([0.5, -2.0], dtype=np.float16), "target": np.array([1.0, 0.25], dtype=np.float32)}
    result = gradients("bce_with_logits", arrays)
    assert result["input"].dtype == "float16" and result["target"].dtype == "float32"
    assert result["input"].working_dtype == "float16"
    # measured: float16 input, float32 target, mean: d/dx = [-0.1887, -0.0654] (float16), d/dy = [-0.25, 1.0]
    assert np.allclose(result["input"].value, [-0.18872070312500000, -0.06542968750000000], rtol=2**-10)
    assert np.array_equal(result["target"].value, [-0.25, 1.0])


@pytest.mark.parametrize("op, name", [("bce", "weight"), ("bce_with_logits", "weight"), ("bce_with_logits", "pos_weight")])
def test_weights_are_not_differentiable(op, name):
    arrays = dict(input=[0.5], target=[1.0], **{name: [2.0]})
    with pytest.raises(Rejected) as info:
        gradients(op, tensors("float32", **arrays), "mean", ("input", name))
    assert info.value.kind == "not_differentiable" and name in str(info.value)


def test_argument_rules_apply_to_gradients_too():
    with pytest.raises(Rejected) as info:
        gradients("bce", tensors("float32", input=[1.5], target=[1]))
    assert info.value.kind == "out_of_range"


def test_unspecified_gradients_and_bad_grad_output_are_refused():
    with pytest.raises(ValueError, match="no gradient is specified for 'softmax'"):
        gradients("softmax", tensors("float32", input=SEED_X, target=SEED_Y))
    with pytest.raises(ValueError, match="grad_output has shape"):
        gradients("bce", tensors("float32", input=SEED_P, target=SEED_Y), "mean", grad_output=np.ones(6))
