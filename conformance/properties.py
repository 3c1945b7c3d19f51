"""Properties checked on generated samples: agreement with the reference, and the metamorphic relations.

A sample's `grad` names the tensors whose gradients are checked; without it, the loss is.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Mapping, Protocol

import numpy as np
from hypothesis import strategies as st

import bce_reference
from bce_reference import FORMATS, GRADIENT_OPS, OPS, Expected, Rejected

from . import compare, judging, tolerance
from .adapter import Backend, adapter_bug, supports_grad
from .compare import Outcome, Verdict
from .execution import Call, Invoke
from .relations import Relation, load_relations, sigmoid_band_free
from .results import Status
from .strategies import Sample, gradient_samples, samples

LOSS = "loss"  # the quantity a loss (not gradient) property compares


class Property(Protocol):
    id: str
    description: str
    ops: tuple[str, ...]
    wrt: tuple[str, ...]  # the tensors whose gradients it checks; empty: it checks the loss

    @property
    def gradient(self) -> bool:
        """Whether it needs the backend's gradient capability."""

    def strategy(self, op: str, dtype: str) -> st.SearchStrategy[Sample]: ...

    def check(self, invoke: Invoke, sample: Sample) -> Verdict | None:
        """The verdict on one sample, or None when the sample lies outside the property's region."""

    def witnesses(self, sample: Sample) -> list[Sample]:
        """The calls that show a failure, as samples to save as cases."""


def _grad_output(sample: Sample) -> np.ndarray:
    if sample.grad_output is not None:
        return sample.grad_output
    return np.ones(sample.loss_shape(), dtype=sample.tensors["target"].dtype)


def perform(invoke: Invoke, sample: Sample, check: judging.Check, reject: str | None = None) -> Verdict:
    """Call the backend on the sample (the loss, or the gradients by `sample.grad`: {name: array}) and judge the
    call as every call is judged (judging.judge): `check` compares the outcome; `reject` is the rule the
    specification rejects the sample for."""
    tensors = {**sample.tensors, "grad_output": _grad_output(sample)} if sample.grad else dict(sample.tensors)
    execution = invoke(Call(sample.op, tensors, sample.reduction, sample.grad, sample.layout))
    return judging.judge(execution, invoke.backend, check, reject)


def specified(sample: Sample, method: str = "auto") -> dict[str, Expected]:
    """The reference's value of each compared quantity: the loss, or each gradient. Raises Rejected."""
    if sample.grad:
        return bce_reference.gradients(sample.op, sample.tensors, sample.reduction, sample.grad, sample.grad_output, method)
    return {LOSS: bce_reference.compute(sample.op, sample.tensors, sample.reduction, method)}


def admissible(sample: Sample, expected: Mapping[str, Expected]) -> dict[str, tolerance.Allowed]:
    return {q: tolerance.allowed(sample.op, e, wrt=None if q == LOSS else q) for q, e in expected.items()}


def _quantities(outcome: Outcome, sample: Sample) -> dict[str, Outcome]:
    """Split a backend's outcome into one per compared quantity (a missing gradient is an error outcome)."""
    if not sample.grad or outcome.error is not None:
        return {q: outcome for q in (sample.grad or (LOSS,))}
    if not isinstance(outcome.value, Mapping):
        error = TypeError(f"returned {type(outcome.value).__name__}, expected a mapping of gradients")
        return {q: Outcome(error=error) for q in sample.grad}
    return {q: (Outcome(value=outcome.value[q]) if q in outcome.value
                else Outcome(error=KeyError(f"no gradient by {q!r} returned"))) for q in sample.grad}


def _labelled(verdict: Verdict, label: str) -> Verdict:
    return Verdict(verdict.status, f"{label}: {verdict.message}", verdict.expected, verdict.got,
                   verdict.max_abs_error, verdict.allowed, verdict.max_ulp_error, verdict.headroom, verdict.index)


@dataclass(frozen=True)
class MatchesReference:
    """Differential: the backend agrees with the reference on any generated arguments, rejections included."""

    gradient: bool = False

    @property
    def id(self) -> str:
        return "gradient-matches-reference" if self.gradient else "matches-reference"

    @property
    def description(self) -> str:
        what = "the gradients by input and target" if self.gradient else "the loss"
        return (f"Any arguments: {what} agree with the reference within the tolerance policy, "
                "or the backend rejects what the specification rejects.")

    @property
    def ops(self) -> tuple[str, ...]:
        return GRADIENT_OPS if self.gradient else OPS

    @property
    def wrt(self) -> tuple[str, ...]:
        return ("input", "target") if self.gradient else ()

    def strategy(self, op: str, dtype: str) -> st.SearchStrategy[Sample]:
        generated = gradient_samples(op, dtype) if self.gradient else samples(op, dtype)
        return generated.map(sigmoid_band_free) if op == "sigmoid_bce" else generated

    def check(self, invoke: Invoke, sample: Sample) -> Verdict | None:
        try:
            expected = specified(sample)
        except Rejected as rejection:
            rule = rejection.kind
            verdict = perform(invoke, sample, lambda outcome: compare.check_rejection(outcome, rule, invoke.backend),
                              rule)
            return None if verdict.status == Status.UNVERIFIED else verdict  # the rule is the cases' to judge
        if any(e.peak >= FORMATS[e.working_dtype].max for e in expected.values()):
            return None  # a term of the formula overflows the dtype: the order of evaluation decides the result
        allowed = admissible(sample, expected)

        def check(performed: Outcome) -> Verdict:
            for quantity, outcome in _quantities(performed, sample).items():
                verdict = compare.check_value(outcome, expected[quantity], allowed[quantity])
                if verdict.status != Status.PASSED:
                    return _labelled(verdict, f"d/d {quantity}") if sample.grad else verdict
            return Verdict(Status.PASSED, "")

        return perform(invoke, sample, check)

    def witnesses(self, sample: Sample) -> list[Sample]:
        return [sample]


def _exact_sum(values: np.ndarray) -> np.ndarray:
    """The sum of a side's elements, correctly rounded to their dtype (NaN and infinities as IEEE adds them)."""
    flat = values.astype(np.float64).reshape(-1)
    if not np.isfinite(flat).all():
        with np.errstate(invalid="ignore"):
            return np.asarray(flat.sum()).astype(values.dtype)
    exact = sum(map(Fraction, flat.tolist()), Fraction(0))  # not math.fsum: its partial sums may overflow
    return np.asarray(FORMATS[str(values.dtype)].round(exact)).astype(values.dtype)


@dataclass(frozen=True)
class Metamorphic:
    """A relation between two calls of the same backend; the reference only sizes the tolerance."""

    relation: Relation

    @property
    def id(self) -> str:
        return self.relation.id

    @property
    def description(self) -> str:
        return self.relation.description

    @property
    def ops(self) -> tuple[str, ...]:
        return self.relation.ops

    @property
    def wrt(self) -> tuple[str, ...]:
        return self.relation.gradient

    @property
    def gradient(self) -> bool:
        return bool(self.relation.gradient)

    def strategy(self, op: str, dtype: str) -> st.SearchStrategy[Sample]:
        relation = self.relation
        generated = samples(op, dtype, valid=True, reductions=relation.reductions, **relation.generation())
        return generated.map(lambda s: relation.project(s).with_grad(relation.gradient))

    def witnesses(self, sample: Sample) -> list[Sample]:
        return [self.relation.left.apply(sample), self.relation.right.apply(sample)]

    def _side(self, invoke: Invoke, side: Sample, name: str) -> tuple[dict, dict] | Verdict | None:
        """(values, allowed errors) by quantity for one side; None outside the region; a Verdict if it misbehaves."""
        try:
            allowed = admissible(side, specified(side, method="fast"))
        except Rejected:
            return None  # outside the region: the specification rejects this side
        values: dict[str, np.ndarray] = {}

        def check(performed: Outcome) -> Verdict:
            for quantity, outcome in _quantities(performed, side).items():
                if outcome.error is not None:
                    status = Status.ERROR if adapter_bug(outcome.error) else Status.FAILED
                    return Verdict(status, f"the {name} side raised {type(outcome.error).__name__}: {outcome.error}")
                value = outcome.value
                if not isinstance(value, (np.ndarray, np.generic)) or str(np.asarray(value).dtype) not in FORMATS:
                    return Verdict(Status.FAILED, f"the {name} side returned {compare.describe(value)}")
                values[quantity] = np.asarray(value)
            return Verdict(Status.PASSED, "")

        verdict = perform(invoke, side, check)
        if verdict.status != Status.PASSED:
            return verdict
        return values, allowed

    def check(self, invoke: Invoke, sample: Sample) -> Verdict | None:
        relation = self.relation
        left, right = self.witnesses(sample)
        label = f"left ({relation.left.describe()}) vs right ({relation.right.describe()})"
        sides = [self._side(invoke, left, "left"), self._side(invoke, right, "right")]
        if any(side is None for side in sides):
            return None
        for side in sides:
            if isinstance(side, Verdict):
                return _labelled(side, label)
        (values_left, allowed_left), (values_right, allowed_right) = sides  # type: ignore[misc]
        factor = relation.right.factor(sample)
        for quantity in values_left:
            got, bound = values_left[quantity], allowed_left[quantity].widest()
            if relation.left.then_sum:
                with np.errstate(invalid="ignore", over="ignore"):  # inf + -inf: the spacing's magnitude is moot
                    bound = np.asarray(bound.sum() + FORMATS[str(got.dtype)].spacing(
                        np.nan_to_num(got.astype(np.float64).sum(), posinf=0, neginf=0)))
                got = _exact_sum(got)
            other = values_right[quantity]
            dtype = str(other.dtype)
            with np.errstate(invalid="ignore", over="ignore"):
                # the exact product, rounded once into the dtype (where it overflows, inf is the right answer)
                scaled = FORMATS[dtype].round_array(other.astype(np.longdouble) * factor)
                allowed = np.broadcast_to(bound + abs(factor) * allowed_right[quantity].widest(), scaled.shape)
            expected = Expected(value=scaled, dtype=dtype, scale=np.zeros(scaled.shape), terms=1, method="relation",
                                working_dtype=dtype)
            verdict = compare.check_value(Outcome(value=got), expected, tolerance.Allowed(allowed))
            if verdict.status != Status.PASSED:
                return _labelled(verdict, label if quantity == LOSS else f"d/d {quantity}, {label}")
        return Verdict(Status.PASSED, "")


def all_properties() -> list[Property]:
    relations = load_relations()
    return [MatchesReference(), MatchesReference(gradient=True), *(Metamorphic(r) for r in relations)]  # type: ignore[list-item]


def not_checkable(backend: Backend, name: str, prop: Property, op: str, dtype: str) -> tuple[Status, str] | None:
    """Why the property cannot be checked on `backend` (called `name`) in `dtype`: skipped or unsupported; else None."""
    if dtype not in backend.dtypes:
        return Status.SKIPPED, f"{name} does not compute in {dtype}"
    if prop.gradient and not supports_grad(backend, op):
        return Status.UNSUPPORTED, f"{name} has no gradient capability for {op}"
    return None
