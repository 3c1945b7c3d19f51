"""Properties checked on generated samples: agreement with the reference, and the metamorphic relations."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

import numpy as np
from hypothesis import strategies as st

import reference
from reference import FORMATS, OPS, Expected, Rejected

from . import compare, tolerance
from .adapter import Backend, call
from .compare import Outcome, Verdict
from .relations import Relation, load_relations, sigmoid_band_free
from .results import Status
from .strategies import Sample, samples


class Property(Protocol):
    id: str
    description: str
    ops: tuple[str, ...]

    def strategy(self, op: str, dtype: str) -> st.SearchStrategy[Sample]: ...

    def check(self, backend: Backend, sample: Sample) -> Verdict | None:
        """The verdict on one sample, or None when the sample lies outside the property's region."""

    def witnesses(self, sample: Sample) -> list[Sample]:
        """The calls that show a failure, as samples to save as cases."""


def execute(backend: Backend, sample: Sample) -> Outcome:
    """Call the backend on copies of the sample's tensors; a modified input is reported as an error outcome."""
    tensors = {name: array.copy() for name, array in sample.tensors.items()}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            outcome = Outcome(value=call(backend, sample.op, tensors, sample.reduction))
    except Exception as exc:
        return Outcome(error=exc)
    for name, array in tensors.items():
        if array.tobytes() != sample.tensors[name].tobytes():
            return Outcome(error=RuntimeError(f"modified its input {name!r}"))
    return outcome


@dataclass(frozen=True)
class MatchesReference:
    """Differential: the backend agrees with the reference on any generated arguments, rejections included."""

    id: str = "matches-reference"
    description: str = "Any arguments: the backend agrees with the reference within the tolerance policy, or rejects what it rejects."
    ops: tuple[str, ...] = OPS

    def strategy(self, op: str, dtype: str) -> st.SearchStrategy[Sample]:
        generated = samples(op, dtype)
        return generated.map(sigmoid_band_free) if op == "sigmoid_bce" else generated

    def check(self, backend: Backend, sample: Sample) -> Verdict | None:
        try:
            expected = reference.compute(sample.op, sample.tensors, sample.reduction)
        except Rejected as rejection:
            return compare.check_rejection(execute(backend, sample), rejection.kind)
        if expected.scale.max(initial=0.0) * max(expected.terms, 1) >= FORMATS[expected.working_dtype].max:
            return None  # a term of the formula overflows the dtype: the intermediate, not the value, decides
        return compare.check_value(execute(backend, sample), expected, tolerance.allowed(sample.op, expected))

    def witnesses(self, sample: Sample) -> list[Sample]:
        return [sample]


def _exact_sum(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The sum of a side's elements, correctly rounded to its dtype (NaN and infinities as IEEE adds them)."""
    flat = values.astype(np.float64).reshape(-1)
    if not np.isfinite(flat).all():
        with np.errstate(invalid="ignore"):
            return np.asarray(flat.sum()).astype(dtype)
    return np.asarray(FORMATS[str(dtype)].round(Fraction(math.fsum(flat)))).astype(dtype)


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

    def strategy(self, op: str, dtype: str) -> st.SearchStrategy[Sample]:
        relation = self.relation
        return samples(op, dtype, valid=True, reductions=relation.reductions, **relation.generation()).map(
            relation.project)

    def witnesses(self, sample: Sample) -> list[Sample]:
        return [self.relation.left.apply(sample), self.relation.right.apply(sample)]

    def _allowed(self, side: Sample) -> np.ndarray | None:
        try:
            expected = reference.compute(side.op, side.tensors, side.reduction, method="fast")
        except Rejected:
            return None
        return tolerance.allowed(side.op, expected)

    def check(self, backend: Backend, sample: Sample) -> Verdict | None:
        relation = self.relation
        left, right = self.witnesses(sample)
        allowed_left, allowed_right = self._allowed(left), self._allowed(right)
        if allowed_left is None or allowed_right is None:
            return None  # outside the region: the specification rejects one side
        got_left, got_right = execute(backend, left), execute(backend, right)
        label = f"left ({relation.left.describe()}) vs right ({relation.right.describe()})"
        for name, got in (("left", got_left), ("right", got_right)):
            if got.error is not None:
                status = Status.ERROR if isinstance(got.error, compare.PROGRAMMING_ERRORS) else Status.FAILED
                return Verdict(status, f"{label}: the {name} side raised {type(got.error).__name__}: {got.error}")
            if not isinstance(got.value, (np.ndarray, np.generic)):
                return Verdict(Status.FAILED, f"{label}: the {name} side returned {type(got.value).__name__}")
        value_left, value_right = np.asarray(got_left.value), np.asarray(got_right.value)
        if relation.left.then_sum:
            allowed_left = np.asarray(allowed_left.sum() + FORMATS[str(value_left.dtype)].spacing(
                np.nan_to_num(value_left.astype(np.float64).sum(), posinf=0, neginf=0)))
            value_left = _exact_sum(value_left, value_left.dtype)
        factor = relation.right.factor(sample)
        dtype = str(value_right.dtype)
        if dtype not in FORMATS:
            return Verdict(Status.FAILED, f"{label}: the right side returned dtype {dtype}")
        with np.errstate(invalid="ignore", over="ignore"):
            # the exact product, rounded once into the dtype (where it overflows, inf is the right answer)
            scaled = FORMATS[dtype].round_array(value_right.astype(np.longdouble) * factor)
            allowed = np.broadcast_to(allowed_left + abs(factor) * allowed_right, scaled.shape)
        expected = Expected(value=scaled, dtype=dtype, scale=np.zeros(scaled.shape), terms=1, method="relation",
                            working_dtype=dtype)
        verdict = compare.check_value(Outcome(value=value_left), expected, allowed)
        if verdict.status == Status.PASSED:
            return verdict
        return Verdict(verdict.status, f"{label}: {verdict.message}", verdict.expected, verdict.got,
                       verdict.max_abs_error, verdict.allowed, verdict.max_ulp_error, verdict.headroom, verdict.index)


def all_properties() -> list[Property]:
    return [MatchesReference(), *(Metamorphic(relation) for relation in load_relations())]
