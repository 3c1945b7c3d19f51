"""Hypothesis strategies for BCE samples, in one place: shapes, broadcastable weights, values that reach the corners.

Every value is drawn as a float exactly representable in the dtype under test, so the reference
and the backend see the same numbers.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bce_reference import FLOAT_DTYPES, FORMATS, REDUCTIONS, Format

from .dtypes import NUMPY_DTYPES
from .inputs import LAYOUTS

LN2 = math.log(2)
MAX_SIDE = 4  # at most 4**4 = 256 elements: large enough for every broadcasting pattern, small enough to be fast


@dataclass(frozen=True)
class Sample:
    """Generated arguments of one call: the op, its tensors in the dtype under test, the reduction."""

    op: str
    dtype: str
    tensors: Mapping[str, np.ndarray]
    reduction: object
    seed: int = 0  # for the random parts of transforms (a permutation)
    grad: tuple[str, ...] = ()  # tensors to differentiate the loss by; empty: the loss itself
    grad_output: np.ndarray | None = None  # the incoming gradient; None: ones
    layout: str = "c"  # the memory layout the backend receives the arrays in (inputs.LAYOUTS)

    def with_grad(self, wrt: tuple[str, ...]) -> Sample:
        return replace(self, grad=tuple(wrt))

    def loss_shape(self) -> tuple[int, ...]:
        return self.tensors["input"].shape if self.reduction == "none" else ()

    def with_tensors(self, **changes: np.ndarray | None) -> Sample:
        tensors = {**self.tensors, **changes}
        return replace(self, tensors={k: v for k, v in tensors.items() if v is not None})


def saturation_points(fmt: Format) -> list[float]:
    """Logits around which sigmoid(x) rounds to 1: precision * ln 2 (a sigmoid that rounds 1 + e^-x) and one ulp-step on."""
    return [(fmt.precision + k) * LN2 for k in (-1, 0, 1, 2)]


def _corners(fmt: Format, kind: str) -> list[float]:
    below_one = 1 - fmt.eps / 2
    if kind == "probability":
        return [0.0, 1.0, 0.5, below_one, 1 - fmt.eps, fmt.min_subnormal, fmt.min_normal, fmt.eps, -0.0]
    if kind == "target":
        return [0.0, 1.0, 0.5, below_one, fmt.min_subnormal, -0.0]
    if kind == "logit":
        edges = [*saturation_points(fmt), 0.0, 1e-8, 20.0, 100.0, 1e4, fmt.max / 16, fmt.min_subnormal, math.inf]
        return [sign * v for v in edges for sign in (1.0, -1.0)] + [math.nan]
    if kind == "any_target":  # BCEWithLogits checks no target: outside [0, 1] too, but not so far out that
        # (pw - 1) * y overflows float16 before a term does
        return [0.0, 1.0, 0.5, below_one, -1.0, 2.0, -4.0, 4.0, math.inf, -math.inf, math.nan]
    if kind == "weight":
        return [0.0, 1.0, 0.5, 2.0, 3.0, 1e-3, 1e3]
    raise ValueError(kind)


_RANGES = {"probability": (0.0, 1.0), "target": (0.0, 1.0), "any_target": (-4.0, 4.0), "logit": (-120.0, 120.0),
           "weight": (0.0, 10.0)}


@functools.cache  # built once per dtype and kind: hypothesis validates each new strategy on its first draw
def values(dtype: str, kind: str) -> st.SearchStrategy[float]:
    """Floats that round into `dtype` as the kind's corners, or anywhere in its usual range (`arrays` rounds them)."""
    fmt = FORMATS[dtype]
    width = {"float16": 16, "float64": 64}.get(dtype, 32)
    low, high = _RANGES[kind]
    general = st.floats(low, high, width=width)  # type: ignore[arg-type]
    if kind == "logit":  # large logits up to max / 16: (1 - y) x with |y| <= 4 stays finite, as it must for
        # the formula's value to be the specified one (the fixed cases hold the dtype's max itself)
        general = st.one_of(general, st.floats(-fmt.max / 16, fmt.max / 16, width=width))  # type: ignore[arg-type]
    return st.one_of(st.sampled_from(_corners(fmt, kind)), general)


def arrays(dtype: str, shape: tuple[int, ...], kind: str) -> st.SearchStrategy[np.ndarray]:
    """Values of the kind rounded into `dtype`, all at once: every element is exactly representable."""
    size, fmt = math.prod(shape), FORMATS[dtype]
    as_array: Callable[[list[float]], np.ndarray] = lambda v: fmt.round_array(  # noqa: E731
        np.array(v, dtype=np.float64).reshape(shape)).astype(NUMPY_DTYPES[dtype])
    return st.lists(values(dtype, kind), min_size=size, max_size=size).map(as_array)


def shapes(nonempty: bool = False) -> st.SearchStrategy[tuple[int, ...]]:
    """0-d, 1-d to 4-d (3-d and 4-d drawn as often as the rest), and (unless `nonempty`) empty shapes."""
    options = [st.just(()), hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=MAX_SIDE),
               hnp.array_shapes(min_dims=3, max_dims=4, min_side=1, max_side=3)]
    if not nonempty:
        options.append(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=2).filter(lambda s: 0 in s))
    return st.one_of(*options)


@st.composite
def broadcast_shapes(draw: st.DrawFn, shape: tuple[int, ...]) -> tuple[int, ...]:
    """A shape that broadcasts to `shape` without enlarging it: trailing dims, each kept or set to 1."""
    if shape and draw(st.integers(0, 2)) == 0:
        return shape[-1:]  # the documented use, one weight per class on the last dimension, drawn often
    kept = draw(st.integers(0, len(shape)))
    tail = shape[len(shape) - kept:]
    return tuple(n if draw(st.booleans()) else 1 for n in tail)


@st.composite
def rejected_shapes(draw: st.DrawFn, shape: tuple[int, ...]) -> tuple[int, ...]:
    """A shape that does not broadcast to `shape`, or would enlarge it."""
    if shape and draw(st.booleans()):  # type: ignore[arg-type]
        return (*shape[:-1], shape[-1] + 1)
    return (2, *shape)


_KINDS = {"bce": ("probability", "target"), "sigmoid_bce": ("logit", "target"),
          "bce_with_logits": ("logit", "any_target")}


@st.composite
def samples(
    draw: st.DrawFn,
    op: str,
    dtype: str,
    *,
    valid: bool = False,
    nonempty: bool = False,
    weight: bool = True,
    pos_weight: bool = True,
    reductions: tuple[str, ...] = REDUCTIONS,
) -> Sample:
    """Arguments for `op` in `dtype`. Unless `valid`, about one sample in eight breaks a rule the spec enforces."""
    input_kind, target_kind = _KINDS[op]
    if op == "bce_with_logits" and draw(st.integers(0, 3)):
        target_kind = "target"  # mostly targets in [0, 1]; sometimes any real, which BCEWithLogits accepts
    shape = draw(shapes(nonempty))
    tensors = {"input": draw(arrays(dtype, shape, input_kind)), "target": draw(arrays(dtype, shape, target_kind))}
    extras = [name for name, wanted in (("weight", weight), ("pos_weight", pos_weight and op == "bce_with_logits"))
              if wanted]
    for name in extras:
        if draw(st.booleans()):
            tensors[name] = draw(arrays(dtype, draw(broadcast_shapes(shape)), "weight"))
    reduction = draw(st.sampled_from(reductions))
    if not valid and draw(st.integers(0, 7)) == 0:
        breach = draw(st.sampled_from(["range", "shape", "weight_shape", "reduction"]))
        if breach == "range" and op != "bce_with_logits":
            name = "input" if op == "bce" else "target"
            bad = draw(st.sampled_from([1.5, -0.25, math.nan, math.inf, -math.inf]))
            flat = tensors[name].copy().reshape(-1)
            if flat.size:
                flat[draw(st.integers(0, flat.size - 1))] = bad
            tensors[name] = flat.reshape(tensors[name].shape)
        elif breach == "shape":
            tensors["target"] = draw(arrays(dtype, draw(rejected_shapes(shape)), target_kind))
        elif breach == "weight_shape":
            tensors["weight"] = draw(arrays(dtype, draw(rejected_shapes(shape)), "weight"))
        else:
            reduction = draw(st.sampled_from(["avg", "Mean", "", None]))  # type: ignore[assignment]
    seed = draw(st.integers(0, 2**32 - 1))
    return Sample(op, dtype, tensors, reduction, seed, layout=draw(st.sampled_from(LAYOUTS)))


@st.composite
def gradient_samples(draw: st.DrawFn, op: str, dtype: str, **options: Any) -> Sample:
    """A sample that asks for the gradients by input and target, with a generated incoming gradient."""
    sample = draw(samples(op, dtype, **options))
    target = sample.tensors["target"]
    if sample.reduction in REDUCTIONS and target.shape == sample.tensors["input"].shape:
        grad_output = draw(arrays(str(target.dtype), sample.loss_shape(), "weight"))
    else:  # the call is invalid anyway: the incoming gradient only has to exist
        grad_output = np.ones((), dtype=target.dtype)
    return replace(sample, grad=("input", "target"), grad_output=grad_output)


def dtypes() -> st.SearchStrategy[str]:
    return st.sampled_from(FLOAT_DTYPES)
