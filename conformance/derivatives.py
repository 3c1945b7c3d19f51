"""What the specification says of second-order and forward-mode gradient cases: reference values and tolerances."""
from __future__ import annotations

from functools import lru_cache
from importlib import resources

import yaml

from bce_reference import Expected, gradients
from bce_reference.derivatives import forward_mode, second_order

from . import tolerance
from .case import Case
from .inputs import Inputs


@lru_cache(maxsize=1)
def _roundings() -> dict[tuple[str, str, str], float]:
    text = resources.files("conformance").joinpath("data/derivatives.yaml").read_text(encoding="utf-8")
    return {(kind, op, name): float(count) for kind, ops in yaml.safe_load(text).items()
            for op, names in ops.items() for name, count in names.items()}


def expected(case: Case, inputs: Inputs) -> dict[str, Expected]:
    """The reference value of each result of a gradient case (raises reference.Rejected as the reference does)."""
    if case.derivative == "grad2":
        return second_order(case.op, inputs.tensors, inputs.reduction, case.grad, inputs.grad_output, inputs.tangent)
    if case.derivative == "jvp":
        return forward_mode(case.op, inputs.tensors, inputs.reduction, case.grad, inputs.tangent)
    return gradients(case.op, inputs.tensors, inputs.reduction, case.grad, inputs.grad_output)


def allowed(case: Case, wrt: str, value: Expected) -> tolerance.Allowed:
    """The admissible error of each element of one result: the case's override, else the derivative's count."""
    if case.derivative == "grad":
        return tolerance.allowed(case.op, value, case.tolerance, wrt=wrt)
    count = case.tolerance.roundings if case.tolerance is not None else _roundings()[(case.derivative, case.op, wrt)]
    return tolerance.allowed_on_terms(value, count)
