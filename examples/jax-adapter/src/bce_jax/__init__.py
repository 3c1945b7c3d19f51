"""BCELoss and BCEWithLogitsLoss written with JAX, as a bce-conformance backend (the adapter protocol of
`conformance.adapter`): arrays arrive and leave as NumPy arrays in the dtype under test."""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from conformance.adapter import Availability

jax.config.update("jax_enable_x64", True)  # float64 stays float64 instead of becoming float32

FLOATING = ("float16", "bfloat16", "float32", "float64")
REDUCTIONS = ("none", "mean", "sum")


def _check_reduction(reduction: Any) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{reduction!r} is not a valid value for reduction")


def _check_broadcast(name: str, array: np.ndarray | None, shape: tuple[int, ...]) -> None:
    """PyTorch's rule: weight and pos_weight broadcast to the target's shape without enlarging it."""
    if array is None:
        return
    try:
        joint = np.broadcast_shapes(array.shape, shape)
    except ValueError:
        joint = None
    if joint != shape:
        raise ValueError(f"{name} of shape {array.shape} does not broadcast to {shape}")
    if array.dtype.kind not in "iuf" and str(array.dtype) != "bfloat16":
        raise TypeError(f"{name} has dtype {array.dtype}, expected a real number type")


def _check_floating(**arrays: np.ndarray) -> None:
    for name, array in arrays.items():
        if str(array.dtype) not in FLOATING:
            raise TypeError(f"{name} has dtype {array.dtype}; a floating dtype is required")


def _reduce(loss: jax.Array, reduction: str) -> jax.Array:
    if reduction == "mean":
        return jnp.mean(loss)
    if reduction == "sum":
        return jnp.sum(loss)
    return loss


def _bce(p: jax.Array, y: jax.Array, w: jax.Array | None, reduction: str) -> jax.Array:
    # PyTorch clamps each log at -100, so p = 0 or 1 gives 100, not inf
    log_p = jnp.maximum(jnp.log(p), -100)
    log_1mp = jnp.maximum(jnp.log1p(-p), -100)
    loss = -(y * log_p + (1 - y) * log_1mp)
    if w is not None:
        loss = loss * w.astype(loss.dtype)
    return _reduce(loss, reduction)


def _bce_with_logits(x: jax.Array, y: jax.Array, w: jax.Array | None, pw: jax.Array | None,
                     reduction: str) -> jax.Array:
    log_sigmoid = jax.nn.log_sigmoid(x)
    if pw is None:
        loss = (1 - y) * x - log_sigmoid
    else:
        loss = (1 - y) * x - ((pw - 1) * y + 1) * log_sigmoid
    if w is not None:
        loss = loss * w
    return _reduce(loss, reduction)


def _out(value: jax.Array, dtype: Any) -> np.ndarray:
    return np.asarray(value.astype(dtype))


def _optional(array: np.ndarray | None) -> jax.Array | None:
    return None if array is None else jnp.asarray(array)


class JaxBackend:
    name = "jax-example"  # the harness's built-in `jax` backend is another adapter
    dtypes = frozenset(FLOATING)

    @property
    def device(self) -> str:
        return jax.default_backend()

    def availability(self) -> Availability:
        return Availability(True)

    def version(self) -> str:
        return f"jax {jax.__version__}, jaxlib {jax.lib.__version__}, {jax.devices()[0].device_kind}"

    def sigmoid(self, input: np.ndarray) -> np.ndarray:
        return np.asarray(jax.nn.sigmoid(jnp.asarray(input)))

    def _checked_bce(self, input: np.ndarray, target: np.ndarray, weight: np.ndarray | None, reduction: Any) -> None:
        _check_reduction(reduction)
        if input.shape != target.shape:
            raise ValueError(f"target shape {target.shape} differs from input shape {input.shape}")
        _check_floating(input=input)
        if target.dtype != input.dtype:
            raise TypeError(f"target dtype {target.dtype} differs from input dtype {input.dtype}")
        _check_broadcast("weight", weight, target.shape)
        for name, array in (("input", input), ("target", target)):
            values = jnp.asarray(array)
            if not bool(jnp.all((values >= 0) & (values <= 1))):
                raise ValueError(f"all elements of {name} should be between 0 and 1")

    def _checked_logits(self, input: np.ndarray, target: np.ndarray, weight: np.ndarray | None,
                        pos_weight: np.ndarray | None, reduction: Any) -> None:
        _check_reduction(reduction)
        if input.shape != target.shape:
            raise ValueError(f"target shape {target.shape} differs from input shape {input.shape}")
        _check_floating(input=input, target=target)
        _check_broadcast("weight", weight, target.shape)
        _check_broadcast("pos_weight", pos_weight, target.shape)

    def bce(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None, reduction: Any) -> np.ndarray:
        self._checked_bce(input, target, weight, reduction)
        loss = _bce(jnp.asarray(input), jnp.asarray(target), _optional(weight), reduction)
        return _out(loss, input.dtype)

    def bce_with_logits(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None,
                        pos_weight: np.ndarray | None, reduction: Any) -> np.ndarray:
        self._checked_logits(input, target, weight, pos_weight, reduction)
        loss = _bce_with_logits(jnp.asarray(input), jnp.asarray(target), _optional(weight), _optional(pos_weight),
                                reduction)
        return _out(loss, target.dtype)  # PyTorch returns the target's dtype

    @staticmethod
    def _vjp(loss: Callable[[jax.Array, jax.Array], jax.Array], input: np.ndarray, target: np.ndarray,
             grad_output: np.ndarray, wrt: Sequence[str], dtype: Any) -> dict[str, np.ndarray]:
        refused = [name for name in wrt if name not in ("input", "target")]
        if refused:
            raise ValueError(f"the loss is not differentiable with respect to {', '.join(refused)}")
        value, pullback = jax.vjp(lambda x, y: loss(x, y).astype(dtype), jnp.asarray(input), jnp.asarray(target))
        grads = dict(zip(("input", "target"), pullback(jnp.asarray(grad_output).astype(value.dtype))))
        return {name: np.asarray(grads[name]) for name in wrt}

    def bce_grad(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None, reduction: Any,
                 grad_output: np.ndarray, wrt: Sequence[str]) -> Mapping[str, np.ndarray]:
        self._checked_bce(input, target, weight, reduction)
        w = _optional(weight)
        return self._vjp(lambda x, y: _bce(x, y, w, reduction), input, target, grad_output, wrt, input.dtype)

    def bce_with_logits_grad(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None,
                             pos_weight: np.ndarray | None, reduction: Any, grad_output: np.ndarray,
                             wrt: Sequence[str]) -> Mapping[str, np.ndarray]:
        self._checked_logits(input, target, weight, pos_weight, reduction)
        w, pw = _optional(weight), _optional(pos_weight)
        return self._vjp(lambda x, y: _bce_with_logits(x, y, w, pw, reduction), input, target, grad_output, wrt,
                         target.dtype)


BACKEND = JaxBackend()
