"""Keras 3 on TensorFlow: `keras.ops.binary_crossentropy` for the loss of each element (reduction none), the
`keras.losses.BinaryCrossentropy` loss for the mean, `from_logits` for BCE with logits, `keras.ops.sigmoid`;
gradients by `tf.GradientTape`.

What Keras lacks is declared unsupported: a weight of each element (Keras's `sample_weight` weighs the
means over the last axis), pos_weight, and PyTorch's sum (Keras's "sum" reduction sums the means over the
last axis). Keras's losses mean over the last axis, which a 0-d loss lacks: that mean is unsupported too
(Keras raises "Invalid reduction dimension").
Keras clips probabilities into [1e-7, 1 - 1e-7] where PyTorch clamps the logs at -100, and validates no
range: the shipped manifest (data/expectations/keras.yaml) lists those deviations. The loss object takes the
dtype under test (`dtype=`; its default, float32, would cast every input). Keras loads lazily, on its
TensorFlow backend (KERAS_BACKEND is set before the import).
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from conformance.adapter import Availability, Unsupported
from conformance.backends.tensorflow_backend import (
    array,
    device,
    gradients,
    missing,
    reduction_of,
    rule_of,
    tensor,
    tensorflow,
)

SIGNATURES = {
    # keras.ops.binary_crossentropy's own check (keras/src/backend/tensorflow/nn.py)
    "shape_mismatch": re.compile(r"Arguments `target` and `output` must have the same (rank|shape)"),
    # the clip of an integer or bool prediction at epsilon: "Cannot convert 0.9999999 to EagerTensor of dtype int64"
    "dtype": re.compile(r"Cannot convert \S+ to EagerTensor of dtype \w+"),
}
"""The first lines of Keras's exceptions for each rejection rule, measured with Keras 3.15 (TensorFlow's follow)."""

NO_ELEMENT_WEIGHT = "Keras's losses have no weight of each element: sample_weight weighs the means over the last axis"


def _keras() -> Any:
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import keras

    return keras


class KerasBackend:
    name = "keras"
    device = property(lambda self: device())
    dtypes = frozenset({"float16", "bfloat16", "float32", "float64"})
    unsupported: ClassVar[dict[str, str]] = {
        "bce.weight": NO_ELEMENT_WEIGHT,
        "bce_with_logits.weight": NO_ELEMENT_WEIGHT,
        "bce_with_logits.pos_weight": "Keras's binary_crossentropy has no pos_weight",
        "reduction.sum": "Keras's 'sum' reduction sums the means over the last axis, not the elements",
    }

    def availability(self) -> Availability:
        absent = missing("keras", "tensorflow")
        return Availability(absent is None, f"{absent} is not installed" if absent else "")

    def version(self) -> str:
        keras = _keras()
        return f"keras {keras.__version__} on {keras.backend.backend()} {tensorflow().__version__}"

    def rejection_rule(self, error: BaseException) -> str | None:
        return rule_of(error, SIGNATURES) or rule_of(error)

    def sigmoid(self, input: np.ndarray) -> np.ndarray:
        return array(_keras().ops.sigmoid(tensor(input)))

    def _loss(self, input: Any, target: Any, from_logits: bool, reduction: str) -> Any:
        keras = _keras()
        if reduction == "none":
            return keras.ops.binary_crossentropy(target, input, from_logits=from_logits)
        loss = keras.losses.BinaryCrossentropy(from_logits=from_logits, reduction="sum_over_batch_size",
                                               dtype=input.dtype.name)
        try:
            return loss(target, input)
        except tensorflow().errors.InvalidArgumentError as exc:
            if "Invalid reduction dimension" not in str(exc):
                raise
            # the loss is 0-d (Keras squeezes a target or input one rank larger than the other to match it)
            raise Unsupported("Keras's losses mean over the last axis, which a 0-d loss does not have") from exc

    def _call(self, input: np.ndarray, target: np.ndarray, from_logits: bool, reduction: Any) -> np.ndarray:
        return array(self._loss(tensor(input), tensor(target), from_logits, reduction_of(reduction, "Keras")))

    def _grad(self, input: np.ndarray, target: np.ndarray, from_logits: bool, reduction: Any,
              grad_output: np.ndarray, wrt: Sequence[str]) -> dict[str, np.ndarray]:
        chosen = reduction_of(reduction, "Keras")
        tensors = {"input": tensor(input), "target": tensor(target)}
        return gradients(lambda **t: self._loss(**t, from_logits=from_logits, reduction=chosen), tensors,
                         grad_output, wrt)

    def bce(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None, reduction: Any) -> np.ndarray:
        return self._call(input, target, False, reduction)

    def bce_with_logits(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None,
                        pos_weight: np.ndarray | None, reduction: Any) -> np.ndarray:
        return self._call(input, target, True, reduction)

    def bce_grad(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None, reduction: Any,
                 grad_output: np.ndarray, wrt: Sequence[str]) -> Mapping[str, np.ndarray]:
        return self._grad(input, target, False, reduction, grad_output, wrt)

    def bce_with_logits_grad(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None,
                             pos_weight: np.ndarray | None, reduction: Any, grad_output: np.ndarray,
                             wrt: Sequence[str]) -> Mapping[str, np.ndarray]:
        return self._grad(input, target, True, reduction, grad_output, wrt)


BACKENDS = [KerasBackend()]
