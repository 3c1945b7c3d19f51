"""Compare a backend's outcome with the reference: dtype, shape, NaN, infinities, then values within tolerance."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from bce_reference import FLOAT_DTYPES, FORMATS, Expected

from .adapter import adapter_bug
from .rejections import expected_signature, identify
from .results import AS_SPECIFIED, EXACT, Status
from .tolerance import Allowed


@dataclass(frozen=True)
class Outcome:
    """What the backend did: returned `value`, or raised `error`."""

    value: Any = None
    error: BaseException | None = None


@dataclass(frozen=True)
class Verdict:
    status: Status
    message: str
    expected: str = ""
    got: str = ""
    max_abs_error: float | None = None
    allowed: float | None = None
    max_ulp_error: float | None = None
    headroom: float | None = None
    index: list[int] | None = None
    matched: str = ""  # which reference a passing value lies near: EXACT, or AS_SPECIFIED (PyTorch's algorithm only)


def _number(value: float) -> str:
    return repr(float(value))


def _raised(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def describe(value: Any) -> str:
    if isinstance(value, (np.ndarray, np.generic)):
        array = np.asarray(value)
        if array.ndim == 0 and str(array.dtype) in FLOAT_DTYPES:
            return f"{_number(array.astype(np.float64))} ({array.dtype})"  # type: ignore[arg-type]
        return f"{array.dtype} array of shape {array.shape}"
    try:
        shown = repr(value)
    except Exception as exc:  # an adapter's object whose repr breaks is still described
        shown = f"(repr raised {type(exc).__name__})"
    return f"{type(value).__name__} {shown:.60}"


def _printed_number(text: str) -> tuple[float, int]:
    """The number a document printed (e.g. 'tensor(0.2541)') and its count of decimals."""
    match = re.search(r"[-+]?\d+(?:\.(\d+))?(?:[eE][-+]?\d+)?", text)
    assert match is not None, text  # the schema requires a digit
    return float(match.group(0)), len(match.group(1) or "")


def agrees_with_printed(value: float, text: str) -> bool:
    """True when `value` shows as `text` at the printed precision (half a unit of its last decimal)."""
    printed, decimals = _printed_number(text)
    return abs(value - printed) <= 0.5 * 10.0**-decimals * (1 + 1e-9)


def expected_rejection(rule: str | None) -> str:
    """What a result of a rejection case expects (its `expected`); "" for a value case."""
    return f"rejection ({rule})" if rule else ""


def check_rejection(outcome: Outcome, rule: str, backend: Any = None) -> Verdict:
    """A rejection case passes when the backend raised for `rule` (rejections.identify); an exception whose rule
    cannot be established is `unverified`, one for another rule, or unlike its convention's, a failure."""
    expected = expected_rejection(rule)
    if outcome.error is None:
        return Verdict(Status.FAILED, f"accepted input the specification rejects ({rule}); returned {describe(outcome.value)}",
                       expected=expected, got=describe(outcome.value))
    error, got = outcome.error, _raised(outcome.error)
    if adapter_bug(error):
        return Verdict(Status.ERROR, f"adapter bug, not a rejection: {got}", expected=expected, got=got)
    found = identify(backend, error)
    if found.bug:
        return Verdict(Status.ERROR, f"adapter bug: {found.how}: {got}", expected=expected, got=got)
    if found.rule == rule:
        return Verdict(Status.PASSED, f"rejected ({rule}, by {found.how}): {got}", expected=expected, got=got)
    if found.rule is not None:
        return Verdict(Status.FAILED, f"rejected for another rule ({found.rule}, by {found.how}), where the case "
                                      f"breaks {rule}: {got}", expected=expected, got=got)
    signature = expected_signature(backend, rule)
    if signature:
        return Verdict(Status.FAILED, f"rejected with an exception the specification does not raise for {rule} "
                                      f"({found.how}; expected {signature}): {got}", expected=expected, got=got)
    return Verdict(Status.UNVERIFIED, f"rejected, reason unverified ({found.how}): {got}", expected=expected, got=got)


def check_gradient(outcome: Outcome, wrt: str, expected: Expected, allowed: Allowed) -> Verdict:
    """A gradient passes when the backend returned a mapping whose `wrt` entry passes `check_value`."""
    if outcome.error is None:
        got = outcome.value
        if not isinstance(got, Mapping):
            return Verdict(Status.FAILED, f"returned {type(got).__name__}, expected a mapping of gradients by name",
                           expected=f"gradient by {wrt}", got=describe(got))
        if wrt not in got:
            names = ", ".join(map(repr, got)) or "none"
            return Verdict(Status.FAILED, f"returned no gradient for {wrt!r} (got {names})",
                           expected=f"gradient by {wrt}", got=", ".join(map(str, got)))
        outcome = Outcome(value=got[wrt])
    return check_value(outcome, expected, allowed)


def _ratio(err: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(allowed > 0, err / allowed, np.where(err > 0, np.inf, 0.0))


def as_specified_label(ulps: float) -> str:
    """How a result admitted only through PyTorch's algorithm in the dtype is labelled, in every report format."""
    return f"as specified; {ulps:.2g} ulp from exact"


def check_form(outcome: Outcome, dtype: str, shape: tuple[int, ...]) -> Verdict | None:
    """Why an outcome is no value of the specified form (it raised, or returned another type, dtype or shape);
    None when it is a NumPy array of `dtype` and `shape`."""
    want = f"{dtype} of shape {shape}"
    if outcome.error is not None:
        status = Status.ERROR if adapter_bug(outcome.error) else Status.FAILED
        return Verdict(status, f"raised on input the specification accepts: {_raised(outcome.error)}",
                       expected=want, got=_raised(outcome.error))
    got = outcome.value
    if not isinstance(got, (np.ndarray, np.generic)):
        return Verdict(Status.FAILED, f"returned {type(got).__name__}, expected a numpy array ({want})",
                       expected=want, got=describe(got))
    got = np.asarray(got)
    if str(got.dtype) != dtype:
        return Verdict(Status.FAILED, f"dtype {got.dtype}, expected {dtype}", expected=want, got=describe(got))
    if got.shape != shape:
        return Verdict(Status.FAILED, f"shape {got.shape}, expected {shape}", expected=want, got=describe(got))
    return None


def check_value(outcome: Outcome, expected: Expected, allowed: Allowed) -> Verdict:
    """A value case passes when dtype, shape, NaN and infinities match, every invariant holds and every finite
    element lies near the exact value or near PyTorch's value in the dtype (conformance/tolerance.py)."""
    unfit = check_form(outcome, expected.dtype, expected.value.shape)
    if unfit is not None:
        return unfit
    want, got = f"{expected.dtype} of shape {expected.value.shape}", np.asarray(outcome.value)
    if got.size == 0:
        return Verdict(Status.PASSED, "empty result, as expected", expected=want, got=describe(got))

    g, e = got.astype(np.float64), expected.value
    fmt = FORMATS[expected.dtype]
    nan_mismatch = np.isnan(g) != np.isnan(e)
    both_finite = np.isfinite(g) & np.isfinite(e)
    inf_mismatch = ~both_finite & ~np.isnan(g) & ~np.isnan(e) & (g != e)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        err = np.where(both_finite, np.abs(g - e), 0.0)
        ratio = _ratio(err, allowed.exact)
        ulps = err / fmt.spacing(np.where(both_finite, e, 0.0))
        bound = np.broadcast_to(allowed.exact, ratio.shape)
        if allowed.specified is not None and expected.specified is not None:
            s = expected.specified.value
            s_err = np.where(both_finite & np.isfinite(s), np.abs(g - s), np.inf)
            s_ratio = _ratio(s_err, allowed.specified)
            via_specified = (ratio > 1) & (s_ratio <= 1)
            bound = np.where(via_specified, allowed.specified, bound)
            ratio = np.minimum(ratio, s_ratio)
        else:
            via_specified = np.zeros(ratio.shape, dtype=bool)
    ratio = np.where(nan_mismatch | inf_mismatch, np.inf, ratio)
    ulps = np.where(nan_mismatch | inf_mismatch, np.inf, ulps)
    err = np.where(nan_mismatch | inf_mismatch, np.inf, err)  # a wrong infinity or NaN is no error of 0

    worst = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
    stats: dict[str, Any] = dict(
        expected=_number(e[worst]), got=_number(g[worst]), max_abs_error=float(err.max()),
        allowed=float(bound[worst]), max_ulp_error=float(ulps.max()), headroom=float(ratio.max()),
        index=[int(i) for i in worst],
    )
    where = f" at index {tuple(stats['index'])}" if g.ndim else ""
    broken = _broken_invariant(g, expected)
    if broken is not None:
        index, name = broken
        at = f" at index {index}" if g.ndim else ""
        return Verdict(Status.FAILED, f"invariant violated: {name}{at}: got {_number(g[index])}, "
                                      f"expected {_number(e[index])}", **stats)
    bad = ratio > 1
    if bad.any():
        count = int(bad.sum())
        if np.isnan(g).all() and not np.isnan(e).all():
            detail = f"NaN everywhere, expected {stats['expected']}{where}"
        elif nan_mismatch[worst] or inf_mismatch[worst]:
            detail = f"got {stats['got']}, expected {stats['expected']}{where}"
        else:
            detail = (f"error {float(err[worst]):.3g} ({float(ulps[worst]):.3g} ulp), the most beyond its allowance"
                      f"{where}: got {stats['got']}, expected {stats['expected']}, allowed {stats['allowed']:.3g}")
            if expected.specified is not None:
                detail += f" (PyTorch's algorithm in {expected.dtype} gives {_number(expected.specified.value[worst])})"
            largest = np.unravel_index(int(np.argmax(err)), err.shape)
            if err[largest] > err[worst]:  # the error column shows the largest error: say where it is
                detail += f"; the largest error, {float(err[largest]):.3g}, is" + (
                    f" at index {tuple(int(i) for i in largest)}" if g.ndim else "")
        return Verdict(Status.FAILED, f"{count} / {g.size} elements differ; {detail}", **stats)
    if via_specified.any():
        far = float(np.where(via_specified, ulps, 0.0).max())
        return Verdict(Status.PASSED, as_specified_label(far), matched=AS_SPECIFIED, **stats)
    return Verdict(Status.PASSED, "", matched=EXACT, **stats)


def _broken_invariant(got: np.ndarray, expected: Expected) -> tuple[tuple[int, ...], str] | None:
    """The first element where the result has the sign opposite to the one an invariant requires, and its name."""
    if expected.sign is None:
        return None
    with np.errstate(invalid="ignore"):
        wrong = (expected.sign * got) < 0
    if not wrong.any():
        return None
    return tuple(int(i) for i in np.argwhere(wrong)[0]), expected.invariant
