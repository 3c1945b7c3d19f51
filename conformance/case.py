"""The validated case object: what one YAML case asks for, with its defaults applied."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from bce_reference import FLOAT_DTYPES


@dataclass(frozen=True)
class ToleranceOverride:
    """A case's own rounding count, which must carry its reason."""

    roundings: float
    reason: str


@dataclass(frozen=True)
class Case:
    id: str
    description: str
    op: str
    inputs: Mapping[str, Any]  # tensor name -> literal (nested lists) or generator mapping
    source: str  # "path:line" of the case in its file
    reduction: Any = "mean"
    dtypes: tuple[str, ...] = FLOAT_DTYPES
    tensor_dtypes: Mapping[str, str] = field(default_factory=dict)
    reject: str | None = None  # the rule whose breach must be rejected; None when a value is expected
    printed: Mapping[str, str] = field(default_factory=dict)
    tolerance: ToleranceOverride | None = None
    tags: tuple[str, ...] = ()
    grad: tuple[str, ...] = ()  # tensors to differentiate the loss by; empty for a loss-value case
    grad_output: Any = None  # literal or generator of the incoming gradient; None: ones
    order: int = 1  # 2: the second-order gradient (double backward) by each tensor of `grad`
    mode: str = "reverse"  # "forward": the Jacobian-vector product along `tangent` (forward-mode AD)
    tangent: Any = None  # literal or generator of the direction (the input's shape) of order 2 and forward mode
    layouts: tuple[str, ...] = ("c",)  # the memory layouts the adapter receives the arrays in (inputs.LAYOUTS)

    @property
    def derivative(self) -> str:
        """Which derivative a gradient case checks: 'grad' (first order), 'grad2' (second order) or 'jvp'."""
        return "jvp" if self.mode == "forward" else ("grad2" if self.order == 2 else "grad")

    @property
    def checks(self) -> tuple[str | None, ...]:
        """What each result of the case is about: the loss (None) or the gradient by each tensor of `grad`."""
        return self.grad or (None,)

    @property
    def path(self) -> str:
        return self.source.rsplit(":", 1)[0]

    def tensor_dtype(self, name: str, dtype: str) -> str:
        """The dtype tensor `name` takes when the case runs under `dtype`."""
        return self.tensor_dtypes.get(name, dtype)
