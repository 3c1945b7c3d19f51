"""tinygrad: `Tensor.binary_crossentropy` and `Tensor.binary_crossentropy_logits`; gradients by `Tensor.gradient`.

tinygrad has no `weight` argument (declared unsupported) and validates nothing: what it accepts is
returned, and the shipped manifest (data/expectations/tinygrad.yaml) lists those deviations. Its CPU
device compiles kernels with clang. tinygrad loads lazily.
"""
from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import ml_dtypes
import numpy as np

from conformance.adapter import Availability, Rejected

REDUCTIONS = ("none", "mean", "sum")


def _reduction(reduction: Any) -> str:
    if reduction not in REDUCTIONS:
        raise Rejected("invalid_reduction", f"{reduction!r} is not a reduction tinygrad knows")
    return str(reduction)


def _tensor(array: np.ndarray) -> Any:
    """A tinygrad tensor of the array's dtype and shape: bfloat16 travels as float32 (exact) and is cast on the
    device, as clang cannot build a tensor from bfloat16 memory."""
    from tinygrad import Tensor, dtypes

    if array.dtype == ml_dtypes.bfloat16:
        return Tensor(array.astype(np.float32).reshape(-1)).reshape(array.shape).cast(dtypes.bfloat16)
    return Tensor(np.array(array).reshape(-1)).reshape(array.shape)


def _array(tensor: Any) -> np.ndarray:
    from tinygrad import dtypes

    if tensor.dtype == dtypes.bfloat16:
        return tensor.cast(dtypes.float32).numpy().astype(ml_dtypes.bfloat16).reshape(tensor.shape)
    return tensor.numpy().reshape(tensor.shape)


class TinygradBackend:
    name = "tinygrad"
    device = "cpu"
    dtypes = frozenset({"float16", "bfloat16", "float32", "float64"})
    unsupported: ClassVar[dict[str, str]] = {
        "bce.weight": "tinygrad's binary_crossentropy has no weight argument",
        "bce_with_logits.weight": "tinygrad's binary_crossentropy_logits has no weight argument",
    }

    def availability(self) -> Availability:
        if importlib.util.find_spec("tinygrad") is None:
            return Availability(False, "tinygrad is not installed")
        if shutil.which("clang") is None:
            return Availability(False, "tinygrad's CPU device compiles with clang, which is not installed "
                                       "(apt-get install clang)")
        return Availability(True)

    def version(self) -> str:
        from importlib.metadata import version

        return f"tinygrad {version('tinygrad')}"

    def sigmoid(self, input: np.ndarray) -> np.ndarray:
        return _array(_tensor(input).sigmoid())

    def _loss(self, op: str, tensors: Mapping[str, Any], reduction: str) -> Any:
        x, y = tensors["input"], tensors["target"]
        try:
            if op == "bce":
                return x.binary_crossentropy(y, reduction=reduction)
            return x.binary_crossentropy_logits(y, reduction=reduction, pos_weight=tensors.get("pos_weight"))
        except IndexError as exc:  # tinygrad's broadcasting refusal: of the target, or else of pos_weight
            if "broadcast" not in str(exc):
                raise
            rule = "shape_mismatch" if x.shape != y.shape else "weight_shape"
            raise Rejected(rule, f"tinygrad: {exc}") from exc

    def _call(self, op: str, arrays: Mapping[str, np.ndarray | None], reduction: Any) -> np.ndarray:
        tensors = {name: _tensor(array) for name, array in arrays.items() if array is not None}
        return _array(self._loss(op, tensors, _reduction(reduction)))

    def _grad(self, op: str, arrays: Mapping[str, np.ndarray | None], reduction: Any, grad_output: np.ndarray,
              wrt: Sequence[str]) -> dict[str, np.ndarray]:
        chosen = _reduction(reduction)
        tensors = {name: _tensor(array) for name, array in arrays.items() if array is not None}
        loss = self._loss(op, tensors, chosen)
        grads = loss.gradient(*(tensors[name] for name in wrt), gradient=_tensor(grad_output).cast(loss.dtype))
        return {name: _array(grad) for name, grad in zip(wrt, grads)}

    def bce(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None, reduction: Any) -> np.ndarray:
        return self._call("bce", {"input": input, "target": target}, reduction)

    def bce_with_logits(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None,
                        pos_weight: np.ndarray | None, reduction: Any) -> np.ndarray:
        return self._call("bce_with_logits", {"input": input, "target": target, "pos_weight": pos_weight}, reduction)

    def bce_grad(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None, reduction: Any,
                 grad_output: np.ndarray, wrt: Sequence[str]) -> Mapping[str, np.ndarray]:
        return self._grad("bce", {"input": input, "target": target}, reduction, grad_output, wrt)

    def bce_with_logits_grad(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None,
                             pos_weight: np.ndarray | None, reduction: Any, grad_output: np.ndarray,
                             wrt: Sequence[str]) -> Mapping[str, np.ndarray]:
        arrays = {"input": input, "target": target, "pos_weight": pos_weight}
        return self._grad("bce_with_logits", arrays, reduction, grad_output, wrt)


BACKENDS = [TinygradBackend()]
