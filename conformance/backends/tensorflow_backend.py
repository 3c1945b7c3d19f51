"""TensorFlow: `tf.nn.sigmoid_cross_entropy_with_logits`, and `tf.nn.weighted_cross_entropy_with_logits` where a
pos_weight is given; `tf.math.sigmoid`; gradients by `tf.GradientTape`.

BCE on probabilities is declared unsupported: tf.nn has no such op. TensorFlow's only one is Keras's
`binary_crossentropy` (the `keras` backend tests it), and a formula written here from tf.math ops would
test this adapter's transcription of PyTorch, not TensorFlow. tf.nn has no weight argument and no
reduction: the adapter multiplies by the weight and reduces with `tf.reduce_mean` / `tf.reduce_sum`, as a
TensorFlow user does. The arrays become tensors of their own dtype first (TensorFlow does no implicit
promotion). TensorFlow loads lazily; the shipped manifest (data/expectations/tensorflow.yaml) lists its
deviations.
"""
from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from conformance.adapter import Availability, Rejected

REDUCTIONS = ("none", "mean", "sum")

SIGNATURES = {
    # tf.nn's own check, nn_impl.py: "`logits` and `labels` must have the same shape, received (...)"
    "shape_mismatch": re.compile(r"`logits` and `labels` must have the same shape"),
    # a kernel's dtype check ("... was expected to be a float tensor but is a int64 tensor"), or no kernel for the dtype
    # ("Value for attr 'T' of int64 is not in the list of allowed values: ...")
    "dtype": re.compile(r"was expected to be a \w+ tensor but is a \w+ tensor|"
                        r"Value for attr '\w+' of \w+ is not in the list of allowed values"),
    # the broadcasting of a weight or pos_weight (the labels' shape is checked before): "Incompatible shapes"
    "weight_shape": re.compile(r"Incompatible shapes"),
}
"""The first lines of TensorFlow's exceptions for each rejection rule, measured with TensorFlow 2.21."""


def tensorflow() -> Any:
    import tensorflow as tf

    return tf


def missing(*modules: str) -> str | None:
    """The first of `modules` that is not installed."""
    return next((name for name in modules if importlib.util.find_spec(name) is None), None)


def reduction_of(reduction: Any, library: str) -> str:
    if reduction not in REDUCTIONS:
        raise Rejected("invalid_reduction", f"{reduction!r} is not a reduction this adapter maps onto {library}")
    return str(reduction)


def rule_of(error: BaseException, signatures: Mapping[str, re.Pattern[str]] = SIGNATURES) -> str | None:
    """The rejection rule of an exception whose first line matches one of `signatures`; None for any other."""
    lines = str(error).strip().splitlines()
    line = lines[0] if lines else ""
    return next((rule for rule, pattern in signatures.items() if pattern.search(line)), None)


def tensor(array: np.ndarray | None) -> Any:
    """A constant of the array's dtype and shape (a C-ordered copy: TensorFlow reads no strides); None stays None."""
    return None if array is None else tensorflow().convert_to_tensor(np.array(array, order="C"))


def device() -> str:
    """Where TensorFlow places the ops: its first GPU where it sees one, else the CPU; "" where it is not installed."""
    if missing("tensorflow"):
        return ""
    return "gpu" if tensorflow().config.list_physical_devices("GPU") else "cpu"


def array(value: Any) -> np.ndarray:
    return np.asarray(value.numpy())


def gradients(loss: Callable[..., Any], tensors: Mapping[str, Any], grad_output: np.ndarray,
              wrt: Sequence[str]) -> dict[str, np.ndarray]:
    """tf.GradientTape's vector-Jacobian product of `loss(**tensors)` with `grad_output`, by each of `wrt`."""
    tf = tensorflow()
    with tf.GradientTape() as tape:
        for name in wrt:
            tape.watch(tensors[name])
        value = loss(**tensors)
    grads = tape.gradient(value, [tensors[name] for name in wrt],
                          output_gradients=tf.cast(tensor(grad_output), value.dtype),
                          unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return {name: array(grad) for name, grad in zip(wrt, grads)}


class TensorflowBackend:
    name = "tensorflow"
    device = property(lambda self: device())
    dtypes = frozenset({"float16", "bfloat16", "float32", "float64"})
    unsupported: ClassVar[dict[str, str]] = {
        "bce": "tf.nn has no BCE on probabilities (its only one is Keras's binary_crossentropy: the keras backend)",
    }
    bce = None

    def availability(self) -> Availability:
        return Availability(False, "tensorflow is not installed") if missing("tensorflow") else Availability(True)

    def version(self) -> str:
        return f"tensorflow {tensorflow().__version__}"

    def rejection_rule(self, error: BaseException) -> str | None:
        return rule_of(error)

    def sigmoid(self, input: np.ndarray) -> np.ndarray:
        return array(tensorflow().math.sigmoid(tensor(input)))

    def _loss(self, input: Any, target: Any, weight: Any, pos_weight: Any, reduction: str) -> Any:
        tf = tensorflow()
        if pos_weight is None:
            loss = tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=input)
        else:
            loss = tf.nn.weighted_cross_entropy_with_logits(labels=target, logits=input, pos_weight=pos_weight)
        if weight is not None:
            loss = loss * weight
        if reduction == "none":
            return loss
        return tf.reduce_mean(loss) if reduction == "mean" else tf.reduce_sum(loss)

    def bce_with_logits(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None,
                        pos_weight: np.ndarray | None, reduction: Any) -> np.ndarray:
        chosen = reduction_of(reduction, "tf.reduce_*")
        return array(self._loss(tensor(input), tensor(target), tensor(weight), tensor(pos_weight), chosen))

    def bce_with_logits_grad(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None,
                             pos_weight: np.ndarray | None, reduction: Any, grad_output: np.ndarray,
                             wrt: Sequence[str]) -> Mapping[str, np.ndarray]:
        """tf.GradientTape differentiates whatever is asked, weight and pos_weight included."""
        chosen = reduction_of(reduction, "tf.reduce_*")
        tensors = {"input": tensor(input), "target": tensor(target), "weight": tensor(weight),
                   "pos_weight": tensor(pos_weight)}
        return gradients(lambda **t: self._loss(**t, reduction=chosen), tensors, grad_output, wrt)


BACKENDS = [TensorflowBackend()]
