"""Run every selected case x dtype x backend: inputs -> reference and backend -> comparison -> result records.

The reference is computed here, in the runner's process; only the backend calls go to `isolation.Workers`
(or, with `isolation=None`, run in this process). Results are judged as they come back, streamed to the
journal, and returned in a fixed order, so that two runs on the same inputs give the same report.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from itertools import accumulate
from typing import Iterable, Mapping

from tqdm import tqdm

import reference
from reference import Expected, Rejected

from . import compare, tolerance
from .adapter import GRADIENT_METHODS, supports_grad
from .case import Case
from .compare import Verdict
from .dtypes import is_float
from .execution import Call, Execution
from .inputs import Inputs, materialize
from .isolation import Settings, calls_for
from .journal import Journal
from .registry import Entry
from .results import BackendInfo, Result, Run, Status

__all__ = ["BackendInfo", "Run", "Settings", "WARNING_STORM", "inspect", "run"]

WARNING_STORM = 100
"""More warnings than this from one call fail the case: a backend that warns per element is misbehaving."""


@dataclass(frozen=True)
class _Specified:
    """What the specification says of one case under one dtype: a value, a rejection, or a broken case."""

    expected: Expected | None = None
    allowed: tolerance.Allowed | None = None
    reject: str | None = None
    error: str | None = None


def _inspect(entry: Entry) -> BackendInfo:
    if entry.backend is None:
        return BackendInfo(entry.name, entry.origin, False, entry.load_error)
    backend = entry.backend
    try:
        device = str(getattr(backend, "device", ""))  # optional: where it computes
        availability = backend.availability()
        version = backend.version() if availability.available else ""
    except Exception as exc:  # an adapter whose probe breaks is unavailable, with the reason
        return BackendInfo(entry.name, entry.origin, False, f"availability check raised {type(exc).__name__}: {exc}")
    gradients = tuple(op for op in GRADIENT_METHODS if supports_grad(backend, op))
    return BackendInfo(entry.name, entry.origin, availability.available, availability.reason, version,
                       tuple(sorted(backend.dtypes)), gradients, device)


def inspect(entries: Iterable[Entry]) -> list[BackendInfo]:
    return [_inspect(entry) for entry in entries]


def probe(entries: Iterable[Entry]) -> tuple[list[BackendInfo], list[str]]:
    """`inspect`, and the top-level modules that probing imported (torch, say): worth importing once for all
    worker processes (`isolation.Workers`'s `preload`)."""
    modules = set(sys.modules)
    infos = inspect(entries)
    return infos, [name for name in set(sys.modules) - modules
                   if "." not in name and getattr(sys.modules[name], "__file__", None)]


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


def _build(case: Case, dtype: str) -> tuple[Inputs | None, dict[str | None, _Specified]]:
    """The case's inputs in `dtype` and what the specification says of each of its results (`Case.checks`);
    a case that cannot be built is an error."""
    try:
        inputs = materialize(case, dtype)
    except Exception as exc:  # InputError, or a generator refusing its arguments
        return None, dict.fromkeys(case.checks, _Specified(error=f"case cannot be built: {exc}"))
    return inputs, _specify(case, inputs, dtype)


def _judge(spec: _Specified, execution: Execution, wrt: str | None) -> Verdict:
    if execution.fault is not None:
        return execution.fault
    assert execution.outcome is not None
    if execution.modified is not None:
        verdict = Verdict(Status.FAILED, f"modified its input {execution.modified!r}")
    elif spec.reject is not None:
        verdict = compare.check_rejection(execution.outcome, spec.reject)
    else:
        assert spec.expected is not None and spec.allowed is not None
        if wrt is None:
            verdict = compare.check_value(execution.outcome, spec.expected, spec.allowed)
        else:
            verdict = compare.check_gradient(execution.outcome, wrt, spec.expected, spec.allowed)
    if execution.warnings > WARNING_STORM:
        storm = f"emitted {execution.warnings} warnings in one call (first: {execution.first_warning})"
        if verdict.status == Status.PASSED:
            return replace(verdict, status=Status.FAILED, message=storm)
        return replace(verdict, message=f"{verdict.message}; {storm}")
    return verdict


def _verdict(spec: _Specified, execution: Execution, wrt: str | None) -> Verdict:
    """The judgement, whatever the backend sent back: a value no check foresaw is an error, never a traceback."""
    try:
        return _judge(spec, execution, wrt)
    except Exception as exc:
        return Verdict(Status.ERROR, f"the harness could not judge what the backend returned: {type(exc).__name__}: {exc}")


def _record(backend: str, case: Case, dtype: str, verdict: Verdict, seconds: float = 0.0,
            wrt: str | None = None) -> Result:
    return Result(
        backend=backend, case_id=case.id, op=case.op, dtype=dtype, status=verdict.status, message=verdict.message,
        source=case.source, wrt=wrt, expected=verdict.expected, got=verdict.got, max_abs_error=verdict.max_abs_error,
        allowed=verdict.allowed, max_ulp_error=verdict.max_ulp_error, headroom=verdict.headroom,
        index=verdict.index, seconds=seconds, tags=list(case.tags), matched=verdict.matched,
    )


def _poisons(entry: Entry, case: Case) -> bool:
    """Whether the case may leave the backend's process unusable (an adapter's optional `poisoning_rejections`)."""
    return case.reject is not None and case.reject in getattr(entry.backend, "poisoning_rejections", ())


def run(
    cases: list[Case],
    entries: list[Entry],
    dtypes: Iterable[str] | None = None,
    progress: bool | None = None,
    *,
    isolation: Settings | None = Settings(),
    previous: Mapping[tuple[str, str, str, str | None], Result] | None = None,
    journal: Journal | None = None,
) -> Run:
    """Every case x dtype x available backend, backend calls in worker processes unless `isolation` is None.

    A gradient case makes one backend call and gets one result per differentiated tensor (`Case.checks`).
    Results in `previous` (keyed by `Result.key`) are taken as they are where a call's results are all there;
    new results go to the journal as they are judged. Ctrl-C (KeyboardInterrupt) ends the run early: it
    returns what finished, with `complete` False. `progress=None` shows a bar only on a terminal.
    """
    previous = previous or {}
    infos, probed = probe(entries)
    active = [entry for entry, info in zip(entries, infos) if info.available]
    wanted = set(dtypes) if dtypes else None
    work = [(case, dtype) for case in cases for dtype in case.dtypes if wanted is None or dtype in wanted]
    # the results of one case x dtype x backend take consecutive places in the run's order, from `first`
    firsts = list(accumulate((len(case.checks) * len(active) for case, _ in work), initial=0))
    slots: list[Result | None] = [None] * firsts[-1]
    waiting: dict[int, tuple[Entry, Case, str, dict[str | None, _Specified]]] = {}
    outcome = Run(backends=infos)
    if journal is not None:
        journal.begin(infos)
    bar = tqdm(total=len(slots), desc="cases", unit="result", disable=None if progress is None else not progress,
               leave=False)
    calls = calls_for(active, isolation, probed)

    def settle(seq: int, result: Result, new: bool = True) -> None:
        slots[seq] = result
        if new and journal is not None:
            journal.add(seq, result)
        bar.update()

    def settle_call(first: int, entry: Entry, case: Case, dtype: str, verdicts: dict[str | None, Verdict],
                    seconds: float = 0.0) -> None:
        share = seconds / len(verdicts)  # one backend call serves all the results of a gradient case
        for offset, wrt in enumerate(case.checks):
            settle(first + offset, _record(entry.name, case, dtype, verdicts[wrt], share, wrt))

    def judge(done: Iterable[tuple[int, Execution]]) -> None:
        for first, execution in done:
            entry, case, dtype, specs = waiting.pop(first)
            verdicts = {wrt: _verdict(spec, execution, wrt) for wrt, spec in specs.items()}
            settle_call(first, entry, case, dtype, verdicts, execution.seconds)

    try:
        for number, (case, dtype) in enumerate(work):
            todo = []
            for index, entry in enumerate(active):
                first = firsts[number] + index * len(case.checks)
                kept = [previous.get((entry.name, case.id, dtype, wrt)) for wrt in case.checks]
                if all(result is not None for result in kept):
                    for offset, result in enumerate(kept):
                        settle(first + offset, result, new=False)  # type: ignore[arg-type]
                else:
                    todo.append((first, index, entry))
            if not todo:
                continue
            inputs, specs = _build(case, dtype)
            float_dtypes = {case.tensor_dtype(name, dtype) for name in case.inputs} | {dtype}
            for first, index, entry in todo:
                assert entry.backend is not None
                missing = sorted(d for d in float_dtypes if is_float(d) and d not in entry.backend.dtypes)
                if missing:
                    verdict = Verdict(Status.SKIPPED, f"{entry.name} does not compute in {', '.join(missing)}")
                    settle_call(first, entry, case, dtype, dict.fromkeys(specs, verdict))
                elif case.grad and not supports_grad(entry.backend, case.op):
                    verdict = Verdict(Status.UNSUPPORTED, f"{entry.name} has no gradient capability for {case.op} "
                                                          f"({GRADIENT_METHODS[case.op]})")
                    settle_call(first, entry, case, dtype, dict.fromkeys(specs, verdict))
                elif inputs is None or any(spec.error is not None for spec in specs.values()):
                    settle_call(first, entry, case, dtype,
                                {wrt: Verdict(Status.ERROR, spec.error or "") for wrt, spec in specs.items()})
                else:
                    waiting[first] = (entry, case, dtype, specs)
                    request = Call(case.op, inputs.arrays(), inputs.reduction, case.grad)
                    calls.submit(first, index, request, fresh=_poisons(entry, case))
            judge(calls.ready())
        judge(calls.drain())
    except KeyboardInterrupt:
        outcome.complete = False
    finally:
        calls.close()
        bar.close()
    outcome.results = [result for result in slots if result is not None]
    if journal is not None and outcome.complete:
        journal.end()
    return outcome
