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
from .adapter import Backend, call
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
    return BackendInfo(entry.name, entry.origin, availability.available, availability.reason, version,
                       tuple(sorted(backend.dtypes)))


def inspect(entries: Iterable[Entry]) -> list[BackendInfo]:
    return [_inspect(entry) for entry in entries]


def _specify(case: Case, inputs: Inputs, dtype: str) -> _Specified:
    try:
        expected = reference.compute(case.op, inputs.tensors, inputs.reduction)
    except Rejected as rejection:
        if case.reject == rejection.kind:
            return _Specified(reject=rejection.kind)
        wanted = f"rejection ({case.reject})" if case.reject else "a value"
        return _Specified(error=f"case expects {wanted}, but the specification rejects it ({rejection.kind}): {rejection}")
    except Exception as exc:
        return _Specified(error=f"reference failed: {type(exc).__name__}: {exc}")
    if case.reject:
        return _Specified(error=f"case expects rejection ({case.reject}), but the specification accepts it")
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
            outcome = Outcome(value=call(backend, case.op, tensors, inputs.reduction))
    except Exception as exc:
        outcome = Outcome(error=exc)
    seconds = time.perf_counter() - start
    for name, array in tensors.items():
        original = inputs.tensors[name]
        if array.shape != original.shape or array.tobytes() != original.tobytes():
            return outcome, seconds, name
    return outcome, seconds, None


def _judge(spec: _Specified, outcome: Outcome, modified: str | None) -> Verdict:
    if modified is not None:
        return Verdict(Status.FAILED, f"modified its input {modified!r}")
    if spec.reject is not None:
        return compare.check_rejection(outcome, spec.reject)
    assert spec.expected is not None and spec.allowed is not None
    return compare.check_value(outcome, spec.expected, spec.allowed)


def _record(backend: str, case: Case, dtype: str, verdict: Verdict, seconds: float = 0.0) -> Result:
    return Result(
        backend=backend, case_id=case.id, op=case.op, dtype=dtype, status=verdict.status, message=verdict.message,
        source=case.source, expected=verdict.expected, got=verdict.got, max_abs_error=verdict.max_abs_error,
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
            spec = _specify(case, inputs, dtype)
        except InputError as exc:
            inputs, spec = None, _Specified(error=f"case cannot be built: {exc}")
        float_dtypes = {case.tensor_dtype(name, dtype) for name in case.inputs} | {dtype}
        for backend, info in active:
            unsupported = sorted(d for d in float_dtypes if is_float(d) and d not in backend.dtypes)
            if unsupported:
                verdict = Verdict(Status.SKIPPED, f"{info.name} does not compute in {', '.join(unsupported)}")
                outcome.results.append(_record(info.name, case, dtype, verdict))
            elif spec.error is not None or inputs is None:
                outcome.results.append(_record(info.name, case, dtype, Verdict(Status.ERROR, spec.error or "")))
            else:
                result, seconds, modified = _execute(backend, case, inputs)
                verdict = _judge(spec, result, modified)
                outcome.results.append(_record(info.name, case, dtype, verdict, seconds))
    return outcome
