"""Run every selected case x dtype x backend: inputs -> reference and backend -> comparison -> result records."""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
from tqdm import tqdm

import reference
from reference import Expected, Rejected

from . import compare, tolerance
from .adapter import GRADIENT_METHODS, Backend, call, call_grad, supports_grad
from .case import Case
from .compare import Outcome, Verdict
from .dtypes import is_float
from .inputs import InputError, Inputs, materialize
from .registry import Entry
from .results import Result, Status


@dataclass(frozen=True)
class BackendInfo:
    name: str
    origin: str
    available: bool
    reason: str = ""
    version: str = ""
    dtypes: tuple[str, ...] = ()
    gradients: tuple[str, ...] = ()  # the ops it differentiates


@dataclass
class Run:
    backends: list[BackendInfo]
    results: list[Result] = field(default_factory=list)


@dataclass(frozen=True)
class _Specified:
    """What the specification says of one case under one dtype: a value, a rejection, or a broken case."""

    expected: Expected | None = None
    allowed: np.ndarray | None = None
    reject: str | None = None
    error: str | None = None


def _inspect(entry: Entry) -> BackendInfo:
    if entry.backend is None:
        return BackendInfo(entry.name, entry.origin, False, entry.load_error)
    backend = entry.backend
    try:
        availability = backend.availability()
        version = backend.version() if availability.available else ""
    except Exception as exc:  # an adapter whose probe breaks is unavailable, with the reason
        return BackendInfo(entry.name, entry.origin, False, f"availability check raised {type(exc).__name__}: {exc}")
    gradients = tuple(op for op in GRADIENT_METHODS if supports_grad(backend, op))
    return BackendInfo(entry.name, entry.origin, availability.available, availability.reason, version,
                       tuple(sorted(backend.dtypes)), gradients)


def inspect(entries: Iterable[Entry]) -> list[BackendInfo]:
    return [_inspect(entry) for entry in entries]


def _specify(case: Case, inputs: Inputs, dtype: str) -> dict[str | None, _Specified]:
    """What the specification says of each result of the case (`Case.checks`)."""
    if case.grad:
        return _specify_gradients(case, inputs)
    return {None: _specify_loss(case, inputs, dtype)}


def _specify_gradients(case: Case, inputs: Inputs) -> dict[str | None, _Specified]:
    try:
        expected = reference.gradients(case.op, inputs.tensors, inputs.reduction, case.grad, inputs.grad_output)
    except Exception as exc:
        return dict.fromkeys(case.grad, _unspecified(case, exc))
    if case.reject:
        return dict.fromkeys(case.grad, _unspecified(case, None))
    return {name: _Specified(expected=value, allowed=tolerance.allowed(case.op, value, case.tolerance, wrt=name))
            for name, value in expected.items()}


def _unspecified(case: Case, exc: Exception | None) -> _Specified:
    """A rejection the case expects, or the error of a case the specification contradicts (or the reference fails)."""
    if isinstance(exc, Rejected):
        if case.reject == exc.kind:
            return _Specified(reject=exc.kind)
        wanted = f"rejection ({case.reject})" if case.reject else "a value"
        return _Specified(error=f"case expects {wanted}, but the specification rejects it ({exc.kind}): {exc}")
    if exc is not None:
        return _Specified(error=f"reference failed: {type(exc).__name__}: {exc}")
    return _Specified(error=f"case expects rejection ({case.reject}), but the specification accepts it")


def _specify_loss(case: Case, inputs: Inputs, dtype: str) -> _Specified:
    try:
        expected = reference.compute(case.op, inputs.tensors, inputs.reduction)
    except Exception as exc:
        return _unspecified(case, exc)
    if case.reject:
        return _unspecified(case, None)
    printed = case.printed.get(dtype)
    if printed is not None and not compare.agrees_with_printed(float(expected.value.reshape(-1)[0]), printed):
        return _Specified(error=f"reference value {float(expected.value.reshape(-1)[0])!r} disagrees with the "
                                f"document's printed {printed}")
    return _Specified(expected=expected, allowed=tolerance.allowed(case.op, expected, case.tolerance))


def _execute(backend: Backend, case: Case, inputs: Inputs) -> tuple[Outcome, float, str | None]:
    """Call the backend on copies of the inputs; report what it did, how long it took, and any input it modified."""
    tensors = inputs.copies()
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if case.grad:
                value = call_grad(backend, case.op, tensors, inputs.reduction, tensors["grad_output"], case.grad)
            else:
                value = call(backend, case.op, tensors, inputs.reduction)
            outcome = Outcome(value=value)
    except Exception as exc:
        outcome = Outcome(error=exc)
    seconds = time.perf_counter() - start
    originals = inputs.arrays()
    for name, array in tensors.items():
        original = originals[name]
        if array.shape != original.shape or array.tobytes() != original.tobytes():
            return outcome, seconds, name
    return outcome, seconds, None


def _judge(spec: _Specified, outcome: Outcome, modified: str | None, wrt: str | None) -> Verdict:
    if modified is not None:
        return Verdict(Status.FAILED, f"modified its input {modified!r}")
    if spec.reject is not None:
        return compare.check_rejection(outcome, spec.reject)
    assert spec.expected is not None and spec.allowed is not None
    if wrt is not None:
        return compare.check_gradient(outcome, wrt, spec.expected, spec.allowed)
    return compare.check_value(outcome, spec.expected, spec.allowed)


def _record(backend: str, case: Case, dtype: str, verdict: Verdict, seconds: float = 0.0,
            wrt: str | None = None) -> Result:
    return Result(
        backend=backend, case_id=case.id, op=case.op, dtype=dtype, status=verdict.status, message=verdict.message,
        source=case.source, wrt=wrt, expected=verdict.expected, got=verdict.got, max_abs_error=verdict.max_abs_error,
        allowed=verdict.allowed, max_ulp_error=verdict.max_ulp_error, headroom=verdict.headroom,
        index=verdict.index, seconds=seconds, tags=list(case.tags),
    )


def run(cases: list[Case], entries: list[Entry], dtypes: Iterable[str] | None = None, progress: bool | None = None) -> Run:
    """Every case x dtype x available backend. `progress=None` shows a bar only on a terminal."""
    infos = inspect(entries)
    active = [(entry.backend, info) for entry, info in zip(entries, infos) if info.available]
    wanted = set(dtypes) if dtypes else None
    work = [(case, dtype) for case in cases for dtype in case.dtypes if wanted is None or dtype in wanted]
    outcome = Run(backends=infos)
    bar = tqdm(work, desc="cases", unit="case", disable=None if progress is None else not progress, leave=False)
    for case, dtype in bar:
        try:
            inputs = materialize(case, dtype)
            specs = _specify(case, inputs, dtype)
        except InputError as exc:
            inputs, specs = None, dict.fromkeys(case.checks, _Specified(error=f"case cannot be built: {exc}"))
        float_dtypes = {case.tensor_dtype(name, dtype) for name in case.inputs} | {dtype}
        for backend, info in active:
            unsupported = sorted(d for d in float_dtypes if is_float(d) and d not in backend.dtypes)
            seconds = 0.0
            if unsupported:
                message = f"{info.name} does not compute in {', '.join(unsupported)}"
                verdicts = dict.fromkeys(specs, Verdict(Status.SKIPPED, message))
            elif case.grad and not supports_grad(backend, case.op):
                message = f"{info.name} has no gradient capability for {case.op} ({GRADIENT_METHODS[case.op]})"
                verdicts = dict.fromkeys(specs, Verdict(Status.UNSUPPORTED, message))
            elif inputs is None or any(spec.error is not None for spec in specs.values()):
                verdicts = {wrt: Verdict(Status.ERROR, spec.error or "") for wrt, spec in specs.items()}
            else:
                result, seconds, modified = _execute(backend, case, inputs)
                verdicts = {wrt: _judge(spec, result, modified, wrt) for wrt, spec in specs.items()}
            share = seconds / len(verdicts)  # one backend call serves all the results of a gradient case
            outcome.results.extend(_record(info.name, case, dtype, v, share, wrt) for wrt, v in verdicts.items())
    return outcome
