"""The reference: the document's values, measured PyTorch values, exact vs fast path, independence."""
from __future__ import annotations

import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest

from bce_reference import FORMATS, Rejected, compute, exact
from conformance.compare import agrees_with_printed
from conformance.inputs import materialize

DTYPES = {"float16": np.float16, "bfloat16": ml_dtypes.bfloat16, "float32": np.float32, "float64": np.float64}
SEED_P = [[0.9, 0.1, 0.3], [0.4, 0.8, 0.2]]
SEED_Y = [[1, 0, 0], [0, 1, 0]]
SEED_X = [[1, 2, 3], [2, 4, 6]]


def tensors(dtype, **arrays):
    return {name: np.array(value, dtype=np.float64).astype(DTYPES[dtype]) for name, value in arrays.items()}


def value(op, dtype, reduction="mean", method="auto", **arrays):
    return compute(op, tensors(dtype, **arrays), reduction, method).value


def test_document_example_1():
    assert float(value("bce", "float32", input=SEED_P, target=SEED_Y)) == 0.2540847957134247  # prints tensor(0.2541)
    assert float(value("bce", "float64", input=SEED_P, target=SEED_Y)) == 0.2540847836081325  # the hand check


def test_document_example_2():
    # mpmath on the decimal logits: 2.2727217790389083459
    assert float(value("bce_with_logits", "float64", input=SEED_X, target=SEED_Y)) == 2.2727217790389083
    assert float(value("bce_with_logits", "float32", input=SEED_X, target=SEED_Y)) == 2.272721767425537
    assert agrees_with_printed(float(value("sigmoid_bce", "float32", input=SEED_X, target=SEED_Y)), "tensor(2.2727)")


def test_every_printed_value_of_the_cases_is_reproduced(shipped_cases):
    checked = 0
    for case in shipped_cases:
        for dtype, text in case.printed.items():
            inputs = materialize(case, dtype)
            result = compute(case.op, inputs.tensors, inputs.reduction)
            assert agrees_with_printed(float(result.value), text), (case.id, dtype)
            checked += 1
    assert checked >= 4


@pytest.mark.parametrize(
    "op, dtype, arrays, expected",
    [
        # PyTorch's clamp at -100 and logits special points (aten/src/ATen/native/Loss.cpp); values exact or exactly rounded
        ("bce", "float64", dict(input=[0, 0, 1, 1e-30, 1e-30], target=[0, 1, 0, 0, 1]),
         [0.0, 100.0, 100.0, 1e-30, 69.07755278982137]),
        ("bce", "float32", dict(input=[1e-30, 1 - 2**-53], target=[0, 0]), [1.0000000031710769e-30, 100.0]),
        ("bce", "float64", dict(input=[1 - 2**-53], target=[0]), [36.7368005696771]),
        ("bce_with_logits", "float64", dict(input=[-30, 30, 100, -100, 1e4], target=[0, 1, 0, 1, 1]),
         [9.357622968839737e-14, 9.357622968839737e-14, 100.0, 100.0, 0.0]),
        ("bce_with_logits", "float64", dict(input=[1, -2], target=[2, -1]), [-0.6867383124817772, -1.8730719889570273]),
        ("sigmoid_bce", "float32", dict(input=[20, 40, -110], target=[0, 0, 1]), [100.0, 100.0, 100.0]),
        ("sigmoid_bce", "float64", dict(input=[40, -110], target=[0, 1]), [100.0, 100.0]),
    ],
)
def test_measured_values(op, dtype, arrays, expected):
    got = value(op, dtype, "none", **arrays)
    assert np.allclose(got, expected, rtol=2**-52, atol=0), got


def test_infinite_logits_follow_the_formula():
    got = value("bce_with_logits", "float64", "none", input=[np.inf, np.inf, np.inf, -np.inf, -np.inf, -np.inf],
                target=[0, 1, 0.3, 0, 1, 0.3])
    assert got[0] == np.inf and got[2] == np.inf
    assert np.isnan(got[[1, 3, 4, 5]]).all()


def test_empty_reductions():
    empty = dict(input=np.zeros((2, 0)), target=np.zeros((2, 0)))
    assert np.isnan(value("bce", "float32", "mean", **empty))
    assert value("bce", "float32", "sum", **empty) == 0
    assert value("bce", "float32", "none", **empty).shape == (2, 0)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("op", ["bce", "bce_with_logits", "sigmoid_bce"])
def test_fast_path_agrees_with_exact_path(op, dtype):
    rng = np.random.default_rng(7)
    n = 400
    low, high = (0, 1) if op == "bce" else (-60, 60)
    x = np.concatenate([rng.uniform(low, high, n), [low, high, (low + high) / 2]])
    y = np.concatenate([rng.uniform(0, 1, n // 2), rng.integers(0, 2, n - n // 2), [0, 1, 0.5]])
    arrays = dict(input=x, target=y)
    if op == "bce_with_logits":
        arrays["pos_weight"] = rng.uniform(0.1, 10, x.shape)
    spacing = FORMATS[dtype].spacing
    for reduction in ("none", "mean", "sum"):
        slow = compute(op, tensors(dtype, **arrays), reduction, "exact")
        fast = compute(op, tensors(dtype, **arrays), reduction, "fast")
        assert fast.dtype == slow.dtype and fast.value.shape == slow.value.shape
        diff = np.abs(fast.value - slow.value)
        assert (diff <= spacing(slow.value)).all(), reduction  # at most one ulp (a near-tie rounded the other way)
        assert np.mean(diff == 0) >= 0.99, reduction
        assert np.allclose(fast.scale, slow.scale, rtol=1e-12)


def test_exact_path_is_converged():
    """256 bits give the same correctly rounded float64 results as 512 bits."""
    rng = np.random.default_rng(3)
    points = [(float(x), float(y)) for x, y in zip(rng.uniform(-50, 50, 200), rng.uniform(0, 1, 200))]
    fmt = FORMATS["float64"]
    at_256 = [exact.round_to(fmt, exact.bce_with_logits(x, y, 1.0)[0]) for x, y in points]
    exact.CTX.prec = 512
    try:
        at_512 = [exact.round_to(fmt, exact.bce_with_logits(x, y, 1.0)[0]) for x, y in points]
    finally:
        exact.CTX.prec = 256
    assert at_256 == at_512


@pytest.mark.parametrize(
    "op, arrays, reduction, kind",
    [
        ("bce", dict(input=[1.5], target=[1]), "mean", "out_of_range"),
        ("bce", dict(input=[0.5], target=[np.nan]), "mean", "out_of_range"),
        ("bce", dict(input=[[0.5, 0.5]], target=[0.5, 0.5]), "mean", "shape_mismatch"),
        ("bce", dict(input=[0.5, 0.5], target=[1, 1], weight=[1, 2, 3]), "mean", "weight_shape"),
        ("bce", dict(input=[0.5], target=[1]), "avg", "invalid_reduction"),
        ("bce_with_logits", dict(input=[0.5], target=[1], pos_weight=[[1], [2]]), "mean", "weight_shape"),
        ("bce_with_logits", dict(input=[0.5], target=[[1]]), "mean", "shape_mismatch"),
    ],
)
def test_rejections(op, arrays, reduction, kind):
    with pytest.raises(Rejected) as info:
        compute(op, tensors("float32", **arrays), reduction)
    assert info.value.kind == kind


def test_bce_with_logits_result_follows_the_target_dtype():
    arrays = {"input": np.array([0.5], dtype=np.float64), "target": np.array([1.0], dtype=np.float32)}
    assert compute("bce_with_logits", arrays).dtype == "float32"
    assert compute("bce_with_logits", arrays).working_dtype == "float32"


def test_reference_imports_no_backend():
    code = "import sys, reference; print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'conformance')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
