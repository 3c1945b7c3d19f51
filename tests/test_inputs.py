"""Materialising case tensors: symbols per dtype, exact decimal rounding, generators, integer dtypes."""
from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest

from conformance.inputs import InputError, tensor


@pytest.mark.parametrize("dtype, below_one, above_one, tiny", [
    ("float16", 1 - 2**-11, 1 + 2**-10, 2**-24),
    ("bfloat16", 1 - 2**-8, 1 + 2**-7, 2**-133),
    ("float32", 1 - 2**-24, 1 + 2**-23, 2**-149),
    ("float64", 1 - 2**-53, 1 + 2**-52, 2**-1074),
])
def test_symbols_resolve_per_dtype(dtype, below_one, above_one, tiny):
    values = tensor(["below_one", "above_one", "min_subnormal", "-min_subnormal"], dtype).astype(np.float64)
    assert values.tolist() == [below_one, above_one, tiny, -tiny]
    assert str(tensor(["max"], dtype).dtype) == dtype


def test_special_values_keep_their_sign():
    values = tensor(["nan", "inf", "-inf", "-0.0", Decimal("-0.0")], "float32")
    assert math.isnan(values[0]) and values[1] == np.inf and values[2] == -np.inf
    assert math.copysign(1, values[3]) == -1 and math.copysign(1, values[4]) == -1


def test_decimals_are_rounded_once_from_their_exact_value():
    # 1 + 2**-24 is a float32 tie (to even: 1); one more unit in the last decimal place rounds up.
    assert tensor(Decimal("1.000000059604644775390625"), "float32") == 1.0
    assert tensor(Decimal("1.0000000596046447753906250001"), "float32") == 1 + 2**-23
    assert tensor(["1e400"], "float32")[0] == np.inf and tensor(["1e-400"], "float64")[0] == 0.0


def test_generators_are_deterministic_and_exact_in_dtype():
    spec = {"generate": "uniform", "low": 0, "high": 1, "shape": [4, 5], "seed": 3}
    a, b = tensor(spec, "bfloat16"), tensor(spec, "bfloat16")
    assert a.shape == (4, 5) and str(a.dtype) == "bfloat16" and np.array_equal(a, b)
    choice = tensor({"generate": "choice", "values": [0, 1], "shape": [100], "seed": 1}, "float32")
    assert set(choice.tolist()) == {0.0, 1.0}
    assert tensor({"generate": "full", "value": 0.5, "shape": [0, 3]}, "float64").shape == (0, 3)


def test_integer_dtypes():
    assert tensor([0, 1], "int64").dtype == np.int64
    assert tensor([False, True], "bool").dtype == np.bool_
    with pytest.raises(InputError, match="not an integer"):
        tensor([0.5], "int64")
    with pytest.raises(InputError, match="needs a floating dtype"):
        tensor(["max"], "int64")


def test_ragged_lists_are_refused():
    with pytest.raises(InputError, match="rectangular"):
        tensor([[1, 2], [3]], "float32")
