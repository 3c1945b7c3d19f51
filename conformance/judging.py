"""Judge one backend call: the one path from what a call did (`execution.Execution`) to a `Verdict`.

`run` (runner.py), `fuzz` (properties.py), the pytest plugin and the accuracy atlas all judge their calls here,
so one backend gets one verdict whichever of them calls it. In order:

1. a fault (the call crashed, hung, or never started) is the verdict;
2. `Unsupported`, or a NotImplementedError that names no rejection rule, is `unsupported`;
3. an input modified in place fails;
4. otherwise the caller's check judges the outcome (a value, a gradient, a rejection, a relation's side);
5. more than `WARNING_STORM` warnings in the call fail it (a passing check) or are added to the message;

and a check that itself raises is an `error` ("the harness could not judge"), never a traceback.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

from . import compare, rejections
from .adapter import Backend, Unsupported
from .compare import Outcome, Verdict
from .execution import Execution, describe
from .results import Status

WARNING_STORM = 100
"""More warnings than this from one call fail the case: a backend that warns per element is misbehaving."""

Check = Callable[[Outcome], Verdict]
"""What a caller asks of an outcome that came back: the comparison with what the specification says."""


def unsupported(backend: Backend, error: BaseException | None, reject: str | None = None) -> Verdict | None:
    """`Unsupported` raised by the adapter, or a NotImplementedError it does not map to a rejection rule."""
    if isinstance(error, Unsupported) or (isinstance(error, NotImplementedError)
                                          and rejections.identify(backend, error).rule is None):
        return Verdict(Status.UNSUPPORTED, f"{type(error).__name__}: {error}".rstrip(": "),
                       expected=compare.expected_rejection(reject))
    return None


def storm(execution: Execution) -> str | None:
    """What is wrong with the call's warnings: more than WARNING_STORM of them; None when they are few."""
    if execution.warnings > WARNING_STORM:
        return f"emitted {execution.warnings} warnings in one call (first: {execution.first_warning})"
    return None


def _judge(execution: Execution, backend: Backend, check: Check, reject: str | None) -> Verdict:
    if execution.fault is not None:
        return execution.fault
    assert execution.outcome is not None
    verdict = unsupported(backend, execution.outcome.error, reject)
    if verdict is not None:
        return verdict
    if execution.modified is not None:
        verdict = Verdict(Status.FAILED, f"modified its input {execution.modified!r}")
    else:
        verdict = check(execution.outcome)
    too_many = storm(execution)
    if too_many is None:
        return verdict
    if verdict.status == Status.PASSED:
        return replace(verdict, status=Status.FAILED, message=too_many)
    return replace(verdict, message=f"{verdict.message}; {too_many}")


def judge(execution: Execution, backend: Backend, check: Check, reject: str | None = None) -> Verdict:
    """The verdict on one call of `backend` (the steps above); `reject` is the rule a rejection case names."""
    try:
        return _judge(execution, backend, check, reject)
    except Exception as exc:  # a value no check foresaw is an error, never a traceback
        return Verdict(Status.ERROR, f"the harness could not judge what the backend returned: {describe(exc)}")


def line(status: Status, message: str) -> str:
    """A verdict in one line, 'status: message', as the plugin and the atlas report one that is not a pass."""
    return f"{status}: {message}"
