"""Materialise a case's tensors in the dtype under test: every value rounded once, exactly as both sides see it."""
from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, Callable, Mapping

import numpy as np

from bce_reference import FORMATS, Format

from .case import Case
from .dtypes import NUMPY_DTYPES, is_float

SYMBOLS: dict[str, Callable[[Format], float]] = {
    "nan": lambda f: math.nan,
    "inf": lambda f: math.inf,
    "max": lambda f: f.max,
    "min_normal": lambda f: f.min_normal,
    "min_subnormal": lambda f: f.min_subnormal,
    "eps": lambda f: f.eps,
    "below_one": lambda f: 1.0 - f.eps / 2,
    "above_one": lambda f: 1.0 + f.eps,
}
"""Dtype-relative values, in the spirit of glibc's libm test inputs; a leading '-' negates them."""


_EXPONENT_LIMIT = 400
"""Decimal exponents beyond which a value is infinite or zero in every dtype (float64 spans 1e-324 to 1e308)."""


class InputError(ValueError):
    """A case's tensor cannot be built in the requested dtype."""


@dataclass(frozen=True)
class Inputs:
    """The tensors of one case under one dtype, the reduction argument, and a gradient case's grad_output."""

    tensors: Mapping[str, np.ndarray]
    reduction: Any
    grad_output: np.ndarray | None = None
    tangent: np.ndarray | None = None  # the direction of a second-order or forward-mode case

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array a backend receives: the tensors, and grad_output and tangent where the case has them."""
        extra = {"grad_output": self.grad_output, "tangent": self.tangent}
        return {**self.tensors, **{name: array for name, array in extra.items() if array is not None}}


def _exact(value: Any) -> Fraction | float:
    """A literal as an exact rational, or a float for NaN, infinities and signed zero."""
    if isinstance(value, bool):
        return Fraction(int(value))
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        return value if not math.isfinite(value) or value == 0 else Fraction(value)
    if isinstance(value, str):
        try:
            value = Decimal(value)
        except InvalidOperation:
            raise InputError(f"{value!r} is neither a number nor a known symbol ({', '.join(SYMBOLS)})") from None
    if isinstance(value, Decimal):
        if not value.is_finite() or value.is_zero():
            return float(value)
        if abs(value.adjusted()) > _EXPONENT_LIMIT:  # rounds to infinity or zero in every dtype: skip the huge integer
            return math.copysign(math.inf if value.adjusted() > 0 else 0.0, value)
        return Fraction(value)
    raise InputError(f"unsupported value {value!r}")


def _resolve(value: Any, fmt: Format | None) -> Fraction | float:
    if isinstance(value, str):
        negate = value.startswith("-")
        name = value[1:] if negate else value
        if name in SYMBOLS:
            if fmt is None:
                raise InputError(f"symbol {value!r} needs a floating dtype")
            resolved = SYMBOLS[name](fmt)
            return -resolved if negate else resolved
    return _exact(value)


def _scalar(value: Any, dtype: str) -> float | int | bool:
    """One literal value in `dtype`: rounded once to nearest (floats), exact (integers)."""
    fmt = FORMATS.get(dtype)
    exact = _resolve(value, fmt)
    if fmt is not None:
        if isinstance(exact, float):
            return exact
        if abs(exact) > Fraction(fmt.max) * 2:  # far beyond overflow: no need to build the huge number
            return math.inf if exact > 0 else -math.inf
        return fmt.round(exact)
    if isinstance(exact, float) or exact.denominator != 1:
        raise InputError(f"value {value!r} is not an integer, as dtype {dtype} requires")
    return bool(exact) if dtype == "bool" else int(exact)


def _literal(literal: Any, dtype: str) -> np.ndarray:
    def convert(item: Any) -> Any:
        return [convert(x) for x in item] if isinstance(item, list) else _scalar(item, dtype)

    converted = convert(literal)
    try:
        array = np.array(converted, dtype=np.float64 if is_float(dtype) else NUMPY_DTYPES[dtype])
    except ValueError as exc:
        raise InputError(f"not a rectangular nested list: {exc}") from None
    except OverflowError as exc:
        raise InputError(f"value out of range for {dtype}: {exc}") from None
    return array.astype(NUMPY_DTYPES[dtype])


def _generated(spec: Mapping[str, Any], dtype: str) -> np.ndarray:
    shape = tuple(spec["shape"])
    kind = spec["generate"]
    if kind == "full":
        values = np.full(shape, _scalar(spec["value"], dtype))
    elif kind == "linspace":
        values = np.linspace(float(spec["start"]), float(spec["stop"]), math.prod(shape)).reshape(shape)
    else:
        rng = np.random.default_rng(spec["seed"])
        if kind == "uniform":
            values = rng.uniform(float(spec["low"]), float(spec["high"]), shape)
        elif kind == "normal":
            values = rng.normal(float(spec["mean"]), float(spec["std"]), shape)
        elif kind == "lognormal":  # exp of a normal(mean, std): positive, over many orders of magnitude
            values = rng.lognormal(float(spec["mean"]), float(spec["std"]), shape)
        else:  # choice
            pool = np.array([_scalar(v, dtype) for v in spec["values"]])
            values = pool[rng.integers(0, len(pool), shape)]
    if is_float(dtype):
        values = FORMATS[dtype].round_array(np.asarray(values, dtype=np.float64))
    elif kind in ("uniform", "linspace", "normal", "lognormal"):
        raise InputError(f"generator {kind!r} makes non-integer values; dtype {dtype} needs 'choice' or 'full'")
    return np.asarray(values).astype(NUMPY_DTYPES[dtype])


def tensor(spec: Any, dtype: str) -> np.ndarray:
    """One tensor of a case, in `dtype`."""
    if isinstance(spec, dict):
        return _generated(spec, dtype)
    return _literal(spec, dtype)


def materialize(case: Case, dtype: str) -> Inputs:
    """All tensors of `case` under `dtype` (per-tensor dtype overrides applied)."""
    tensors = {}
    for name, spec in case.inputs.items():
        tensor_dtype = case.tensor_dtype(name, dtype)
        try:
            tensors[name] = tensor(spec, tensor_dtype)
        except InputError as exc:
            raise InputError(f"{name} ({tensor_dtype}): {exc}") from None
    grad_output = None if case.derivative == "jvp" else _grad_output(case, dtype, tensors)
    return Inputs(tensors=tensors, reduction=case.reduction, grad_output=grad_output,
                  tangent=_tangent(case, dtype, tensors))


def _tangent(case: Case, dtype: str, tensors: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """The direction of a second-order or forward-mode case, in the input's dtype; default ones of its shape."""
    if not case.grad or case.derivative == "grad":
        return None
    tangent_dtype = case.tensor_dtype("input", dtype)
    if case.tangent is None:
        return np.ones(tensors["input"].shape, dtype=NUMPY_DTYPES[tangent_dtype])
    try:
        return tensor(case.tangent, tangent_dtype)
    except InputError as exc:
        raise InputError(f"tangent ({tangent_dtype}): {exc}") from None


def _grad_output(case: Case, dtype: str, tensors: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """A gradient case's incoming gradient in the target's dtype (the loss's); default ones of the loss's shape."""
    if not case.grad:
        return None
    output_dtype = case.tensor_dtype("target", dtype)
    if case.grad_output is None:
        shape = tensors["input"].shape if case.reduction == "none" else ()
        return np.ones(shape, dtype=NUMPY_DTYPES[output_dtype])
    try:
        return tensor(case.grad_output, output_dtype)
    except InputError as exc:
        raise InputError(f"grad_output ({output_dtype}): {exc}") from None


LAYOUTS = ("c", "fortran", "transposed", "strided", "negative", "broadcast")
"""How an adapter may receive a case's arrays: C order; Fortran order; the last two axes swapped in memory (a
transposed view); every other element of a buffer twice as large in each dimension; every stride negative; stride 0
along each axis the values do not vary on (a broadcast view, read-only)."""

DEFAULT_LAYOUTS = ("c",)
"""The layouts of a case that names none."""


def _bits(array: np.ndarray) -> np.ndarray:
    """The array's elements as unsigned integers of the same width: equal exactly when the bits are (NaN, -0.0)."""
    return array.view(f"u{array.dtype.itemsize}") if array.dtype.itemsize in (1, 2, 4, 8) else array


def _constant_axes(array: np.ndarray) -> tuple[int, ...]:
    """The axes of length > 1 along which every element has the same bits."""
    bits = _bits(array)
    return tuple(axis for axis in range(array.ndim)
                 if array.shape[axis] > 1 and np.array_equal(bits, bits.take([0], axis=axis).repeat(array.shape[axis], axis)))


def arrange(array: np.ndarray, layout: str) -> np.ndarray | None:
    """A fresh copy of `array` in `layout` (same shape, dtype and values), or None where the layout does not apply:
    Fortran order and the transposed view need 2 dimensions, the strided and negative views 1, the broadcast view
    an axis the values do not vary on."""
    if layout == "c":
        return np.array(array, order="C")
    if layout == "broadcast":
        axes = _constant_axes(array)
        if not axes:
            return None
        index = tuple(slice(0, 1) if axis in axes else slice(None) for axis in range(array.ndim))
        return np.broadcast_to(array[index].copy(), array.shape)
    if array.ndim < (2 if layout in ("fortran", "transposed") else 1) or array.size < 2:
        return None
    if layout == "fortran":
        return np.array(array, order="F")
    if layout == "transposed":
        return np.ascontiguousarray(np.swapaxes(array, -1, -2)).swapaxes(-1, -2)
    if layout == "strided":
        buffer = np.zeros(tuple(2 * n for n in array.shape), dtype=array.dtype)
        every_other = (slice(None, None, 2),) * array.ndim
        buffer[every_other] = array
        return buffer[every_other]
    if layout == "negative":
        reverse = (slice(None, None, -1),) * array.ndim
        return np.ascontiguousarray(array[reverse])[reverse]
    raise ValueError(f"unknown layout {layout!r} (known: {', '.join(LAYOUTS)})")


def arranged(arrays: Mapping[str, np.ndarray], layout: str) -> dict[str, np.ndarray]:
    """Fresh copies of `arrays`, each in `layout` where it applies to the array, in C order elsewhere."""
    return {name: _or_c(arrange(array, layout), array) for name, array in arrays.items()}


def _or_c(arranged: np.ndarray | None, array: np.ndarray) -> np.ndarray:
    return np.array(array, order="C") if arranged is None else arranged


def layout_applies(arrays: Mapping[str, np.ndarray], layout: str) -> bool:
    """Whether `layout` changes how at least one of the arrays is laid out (C order always applies)."""
    return layout == "c" or any(arrange(array, layout) is not None for array in arrays.values())
