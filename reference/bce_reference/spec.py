"""The argument rules of the specification: which inputs are rejected, and the output's dtype and shape."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
REDUCTIONS = ("none", "mean", "sum")
DEPRECATED_REDUCTIONS = {"elementwise_mean": "mean"}
"""Accepted as their replacement, with a UserWarning (torch/nn/_reduction.py, PyTorch 2.13)."""
DIFFERENTIABLE = ("input", "target")
"""The tensors autograd differentiates the losses by; asking for weight or pos_weight raises."""
BCE_GRAD_EPS = 9.999999960041972e-13
"""PyTorch's `constexpr float EPSILON = 1e-12` (float32(1e-12)); BCE's backward converts it to the input's dtype."""


class Rejected(Exception):
    """The specification rejects these arguments; `kind` names the rule that was broken."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Signature:
    """What a valid call returns: output dtype and shape, and how many elements each output value sums."""

    dtype: str
    shape: tuple[int, ...]
    terms: int
    reduction: str = "none"  # the reduction's name, a deprecated one replaced


def dtype_name(array: np.ndarray) -> str:
    return str(array.dtype)


def _is_real(array: np.ndarray) -> bool:
    """A floating, integer or bool dtype (a bool weight multiplies as 0 and 1)."""
    return dtype_name(array) in FLOAT_DTYPES or array.dtype.kind in "iub"


def _check_reduction(reduction: object) -> str:
    if isinstance(reduction, str) and reduction in DEPRECATED_REDUCTIONS:
        return DEPRECATED_REDUCTIONS[reduction]
    if reduction not in REDUCTIONS:
        raise Rejected("invalid_reduction", f"{reduction!r} is not a valid value for reduction")
    return str(reduction)


def _check_broadcast(name: str, array: np.ndarray, shape: tuple[int, ...]) -> None:
    """`array` must broadcast to `shape` without enlarging it (right-aligned, like NumPy)."""
    try:
        joint = np.broadcast_shapes(shape, array.shape)
    except ValueError:
        joint = None
    if joint != shape:
        raise Rejected("weight_shape", f"{name} of shape {array.shape} does not broadcast to {shape}")
    if not _is_real(array):
        raise Rejected("dtype", f"{name} has dtype {dtype_name(array)}, expected a real number type")


def _check_in_unit_interval(name: str, array: np.ndarray) -> None:
    values = array.astype(np.float64)
    if not np.all((values >= 0) & (values <= 1)):  # NaN fails both comparisons
        raise Rejected("out_of_range", f"all elements of {name} should be between 0 and 1")


def _signature(input: np.ndarray, reduction: str, dtype: str) -> Signature:
    if reduction == "none":
        return Signature(dtype, input.shape, 1)
    return Signature(dtype, (), int(input.size), reduction)


def check_bce(input: np.ndarray, target: np.ndarray, weight: np.ndarray | None, reduction: object) -> Signature:
    """BCE: same shape, same floating dtype, both in [0, 1]; output dtype = input dtype."""
    if input.shape != target.shape:
        raise Rejected("shape_mismatch", f"target size {target.shape} is different to the input size {input.shape}")
    if dtype_name(input) not in FLOAT_DTYPES:
        raise Rejected("dtype", f"binary_cross_entropy is not defined for {dtype_name(input)} input")
    if target.dtype != input.dtype:
        raise Rejected("dtype", f"found target dtype {dtype_name(target)} but expected {dtype_name(input)}")
    if weight is not None:
        _check_broadcast("weight", weight, target.shape)
    reduction = _check_reduction(reduction)
    _check_in_unit_interval("input", input)
    _check_in_unit_interval("target", target)
    return _signature(input, reduction, dtype_name(input))


def check_bce_with_logits(
    input: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray | None,
    pos_weight: np.ndarray | None,
    reduction: object,
) -> Signature:
    """BCE with logits: same shape, floating dtypes (may differ); targets unchecked; output dtype = target dtype."""
    if input.shape != target.shape:
        raise Rejected("shape_mismatch", f"target size {target.shape} must be the same as input size {input.shape}")
    for name, array in (("input", input), ("target", target)):
        if dtype_name(array) not in FLOAT_DTYPES:
            raise Rejected("dtype", f"{name} has dtype {dtype_name(array)}, expected a floating dtype")
    for name, extra in (("weight", weight), ("pos_weight", pos_weight)):
        if extra is not None:
            _check_broadcast(name, extra, target.shape)
    reduction = _check_reduction(reduction)
    return _signature(input, reduction, dtype_name(target))


def check_differentiable(op: str, wrt: tuple[str, ...]) -> None:
    """Autograd refuses a gradient with respect to weight or pos_weight (they cannot require grad)."""
    refused = [name for name in wrt if name not in DIFFERENTIABLE]
    if refused:
        raise Rejected("not_differentiable", f"{op} is not differentiable with respect to {', '.join(refused)}")
