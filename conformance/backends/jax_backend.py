"""JAX: `optax.sigmoid_binary_cross_entropy` for BCE with logits and `jax.nn.sigmoid`; gradients by `jax.vjp`.

optax has no BCE on probabilities and no pos_weight: those are declared unsupported. optax has no
reduction and no weight either; the adapter multiplies by the weight and reduces with jax.numpy, as
optax's documentation tells its users to. optax validates nothing: what it accepts is returned, and
the shipped manifest (data/expectations/jax.yaml) lists those deviations. jax loads lazily.
"""
from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from conformance.adapter import Availability, Rejected

REDUCTIONS = ("none", "mean", "sum")


def _jax() -> Any:
    import jax

    jax.config.update("jax_enable_x64", True)  # float64 stays float64 instead of becoming float32
    return jax


def _missing(*modules: str) -> str | None:
    """The first of `modules` that is not installed."""
    return next((name for name in modules if importlib.util.find_spec(name) is None), None)


def _reduction(reduction: Any) -> str:
    if reduction not in REDUCTIONS:
        raise Rejected("invalid_reduction", f"{reduction!r} is not a reduction this adapter maps onto jax.numpy")
    return str(reduction)


class JaxBackend:
    name = "jax"
    dtypes = frozenset({"float16", "bfloat16", "float32", "float64"})
    unsupported: ClassVar[dict[str, str]] = {
        "bce": "optax has no BCE on probabilities (optax.sigmoid_binary_cross_entropy takes logits)",
        "bce_with_logits.pos_weight": "optax.sigmoid_binary_cross_entropy has no pos_weight",
    }
    bce = None

    @property
    def device(self) -> str:
        return _jax().default_backend() if _missing("jax") is None else ""

    def availability(self) -> Availability:
        missing = _missing("jax", "optax")
        return Availability(missing is None, f"{missing} is not installed" if missing else "")

    def version(self) -> str:
        import optax

        jax = _jax()
        return f"jax {jax.__version__}, optax {optax.__version__}, {jax.devices()[0].device_kind}"

    def sigmoid(self, input: np.ndarray) -> np.ndarray:
        return np.asarray(_jax().nn.sigmoid(input))

    def _loss(self, input: Any, target: Any, weight: Any, reduction: str) -> Any:
        import optax

        jnp = _jax().numpy

        try:
            loss = optax.sigmoid_binary_cross_entropy(input, target)
        except (TypeError, ValueError) as exc:  # optax refused the logits and labels: by shape or by dtype
            raise Rejected("dtype" if "dtype" in str(exc) else "shape_mismatch", str(exc)) from exc
        if weight is not None:
            try:
                loss = loss * weight
            except (TypeError, ValueError) as exc:  # jax.numpy's broadcasting refused the weight
                raise Rejected("weight_shape", str(exc)) from exc
        if reduction == "none":
            return loss
        return jnp.mean(loss) if reduction == "mean" else jnp.sum(loss)

    def bce_with_logits(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None,
                        pos_weight: np.ndarray | None, reduction: Any) -> np.ndarray:
        return np.asarray(self._loss(input, target, weight, _reduction(reduction)))

    def bce_with_logits_grad(self, input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None,
                             pos_weight: np.ndarray | None, reduction: Any, grad_output: np.ndarray,
                             wrt: Sequence[str]) -> Mapping[str, np.ndarray]:
        """jax.vjp of the loss with respect to whatever is asked (JAX differentiates weight too)."""
        jax = _jax()
        chosen = _reduction(reduction)
        tensors = {"input": input, "target": target, "weight": weight}

        def loss(*differentiated: Any) -> Any:
            return self._loss(**{**tensors, **dict(zip(wrt, differentiated))}, reduction=chosen)

        value, pullback = jax.vjp(loss, *(tensors[name] for name in wrt))
        grads = pullback(jax.numpy.asarray(grad_output, dtype=value.dtype))
        return {name: np.asarray(grad) for name, grad in zip(wrt, grads)}


BACKENDS = [JaxBackend()]
