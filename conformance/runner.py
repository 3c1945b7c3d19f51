"""Run every selected case x dtype x backend: inputs -> reference and backend -> comparison -> result records.

The reference is computed here, in the runner's process; only the backend calls go to `isolation.Workers`
(or, with `isolation=None`, run in this process). Results are judged as they come back, streamed to the
journal, and returned in a fixed order, so that two runs on the same inputs give the same report.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass, replace
from itertools import accumulate
from typing import Iterable, Mapping, Sequence

from tqdm import tqdm

import bce_reference
from bce_reference import Expected, Rejected

from . import compare, derivatives, judging, tolerance
from .adapter import DERIVATIVES, Backend, lacking, missing_features, needed_features, supports
from .cache import Cache
from .case import Case
from .compare import Verdict
from .dtypes import is_float
from .execution import Call, Execution
from .inputs import Inputs, layout_applies, materialize
from .isolation import Settings, calls_for, start_forkserver
from .journal import Journal
from .probing import probe
from .registry import Entry
from .results import GATE_FAILURES, NOT_REPRODUCED, BackendInfo, Result, ResultKey, Run, Status

__all__ = ["BackendInfo", "Run", "Settings", "run"]

IN_FLIGHT = 2048
"""The most calls waiting for their answer: when the workers fall behind (a warm reference cache makes the runner
fast), the runner waits, so that memory does not grow with the number of cases. Above the shipped cases' 1,500
calls: a runner that waits reacts late to a worker that wants its next batch."""

ALONE = 10
"""An isolated run with at most this many failing backend calls reruns each alone, in a fresh worker, after the run:
a failure that does not reproduce there depended on the calls before it (`Result.alone`)."""


@dataclass(frozen=True)
class _Specified:
    """What the specification says of one case under one dtype: a value, a rejection, or a broken case."""

    expected: Expected | None = None
    allowed: tolerance.Allowed | None = None
    reject: str | None = None
    error: str | None = None


def _specify(case: Case, inputs: Inputs, dtype: str) -> dict[str | None, _Specified]:
    """What the specification says of each result of the case (`Case.checks`)."""
    if case.grad:
        return _specify_gradients(case, inputs)
    return {None: _specify_loss(case, inputs, dtype)}


def _specify_gradients(case: Case, inputs: Inputs) -> dict[str | None, _Specified]:
    try:
        expected = derivatives.expected(case, inputs)
    except Exception as exc:
        return dict.fromkeys(case.grad, _unspecified(case, exc))
    if case.reject:
        return dict.fromkeys(case.grad, _unspecified(case, None))
    return {name: _Specified(expected=value, allowed=derivatives.allowed(case, name, value))
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
        expected = bce_reference.compute(case.op, inputs.tensors, inputs.reduction)
    except Exception as exc:
        return _unspecified(case, exc)
    if case.reject:
        return _unspecified(case, None)
    printed = case.printed.get(dtype)
    if printed is not None and not compare.agrees_with_printed(float(expected.value.reshape(-1)[0]), printed):
        return _Specified(error=f"reference value {float(expected.value.reshape(-1)[0])!r} disagrees with the "
                                f"document's printed {printed}")
    return _Specified(expected=expected, allowed=tolerance.allowed(case.op, expected, case.tolerance))


def _build(case: Case, dtype: str, cache: Cache | None = None) -> tuple[Inputs | None, dict[str | None, _Specified]]:
    """The case's inputs in `dtype` and what the specification says of each of its results (`Case.checks`), from
    `cache` where it holds them; a case that cannot be built is an error."""
    try:
        inputs = materialize(case, dtype)
    except Exception as exc:  # InputError, or a generator refusing its arguments
        return None, dict.fromkeys(case.checks, _Specified(error=f"case cannot be built: {exc}"))
    if cache is None:
        return inputs, _specify(case, inputs, dtype)
    # an error (a reference that failed, a contradicted case) is not kept: it may be passing, and it costs little
    return inputs, cache.specified(case, inputs, dtype, lambda: _specify(case, inputs, dtype),
                                   keep=lambda specs: all(spec.error is None for spec in specs.values()))


def _verdict(spec: _Specified, execution: Execution, wrt: str | None, backend: Backend) -> Verdict:
    """The judgement (judging.judge) of a call against what the specification says of one of its results."""

    def check(outcome: compare.Outcome) -> Verdict:
        if spec.reject is not None:
            return compare.check_rejection(outcome, spec.reject, backend)
        assert spec.expected is not None and spec.allowed is not None
        if wrt is None:
            return compare.check_value(outcome, spec.expected, spec.allowed)
        return compare.check_gradient(outcome, wrt, spec.expected, spec.allowed)

    return judging.judge(execution, backend, check, spec.reject)


def _record(backend: str, case: Case, dtype: str, verdict: Verdict, seconds: float = 0.0,
            wrt: str | None = None, layout: str = "c") -> Result:
    return Result(
        backend=backend, case_id=case.id, op=case.op, dtype=dtype, status=verdict.status, message=verdict.message,
        source=case.source, wrt=wrt, expected=verdict.expected, got=verdict.got, max_abs_error=verdict.max_abs_error,
        allowed=verdict.allowed, max_ulp_error=verdict.max_ulp_error, headroom=verdict.headroom,
        index=verdict.index, seconds=seconds, tags=list(case.tags), layout=layout, matched=verdict.matched,
    )


def layouts_of(case: Case, dtype: str, wanted: Sequence[str]) -> list[str]:
    """The layouts of `wanted` that change how at least one of the case's arrays is laid out under `dtype`
    (the inputs are built once more to see; a case that cannot be built keeps one layout, to report it)."""
    if list(wanted) == ["c"]:
        return ["c"]
    try:
        arrays = materialize(case, dtype).arrays()
    except Exception:
        return list(wanted[:1])
    return [layout for layout in wanted if layout_applies(arrays, layout)]


def preload_hint(entries: Sequence[Entry]) -> str:
    """The cache entry that remembers which modules probing these backends imported, in this environment: the next
    run starts the forkserver with them before probing (a hint for speed only: a wrong one costs an import, not a
    verdict)."""
    text = json.dumps(["preload-v1", sys.prefix, sys.version, [(entry.name, entry.origin) for entry in entries]])
    return hashlib.sha256(text.encode()).hexdigest()


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
    previous: Mapping[ResultKey, Result] | None = None,
    journal: Journal | None = None,
    cache: Cache | None = None,
    layouts: Sequence[str] | None = None,
    alone: int = ALONE,
    infos: Sequence[BackendInfo] | None = None,
) -> Run:
    """Every case x dtype x available backend, backend calls in worker processes unless `isolation` is None.

    A gradient case makes one backend call and gets one result per differentiated tensor (`Case.checks`).
    Each case runs in each of its layouts (`Case.layouts`), or in each of `layouts` where given.
    Results in `previous` (keyed by `Result.key`) are taken as they are where a call's results are all there;
    new results go to the journal as they are judged. Ctrl-C (KeyboardInterrupt) ends the run early: it
    returns what finished, with `complete` False. `progress=None` shows a bar only on a terminal. With a `cache`,
    references and tolerances computed before are read from it (`conformance.cache`). When an isolated run has
    between 1 and `alone` failing calls, each is rerun alone in a fresh worker and its results say whether the
    failure reproduced: one that did not is marked (`Result.alone`, and its message). A failure that reproduces is
    left as it was, so that a deterministic backend's report does not depend on how many failures a run (or a shard)
    had. `infos`: what probing `entries` found, where the caller probed them already (the pytest plugin, once per
    session, then one run per case x dtype); they are not probed again.
    """
    previous = previous or {}
    probed: list[str] = []  # the top-level modules probing imported: worth preloading in the worker processes
    if infos is None:
        hint = preload_hint(entries) if isolation is not None else None
        remembered = cache.read(hint) if cache is not None and hint is not None else None
        if remembered is not None:
            start_forkserver(remembered[0])  # the backends' imports overlap the probe's
        try:
            infos, probed = probe(entries, isolation)
        except KeyboardInterrupt:  # before anything ran: nothing to keep, and a results file that --resume starts afresh
            return Run(backends=[], complete=False)
        if cache is not None and hint is not None and (remembered is None or remembered[0] != probed):
            cache.store(hint, probed)
    infos = list(infos)
    active = [entry for entry, info in zip(entries, infos) if info.available]
    wanted = set(dtypes) if dtypes else None
    work = [(case, dtype, layout) for case in cases for dtype in case.dtypes if wanted is None or dtype in wanted
            for layout in layouts_of(case, dtype, layouts or case.layouts)]
    # the results of one case x dtype x backend take consecutive places in the run's order, from `first`
    firsts = list(accumulate((len(case.checks) * len(active) for case, _, _ in work), initial=0))
    slots: list[Result | None] = [None] * firsts[-1]
    waiting: dict[int, tuple[Entry, Case, str, str, dict[str | None, _Specified], int, Call]] = {}
    failed: dict[int, tuple[Entry, Case, str, str, dict[str | None, _Specified], int, Call]] = {}  # up to `alone` + 1
    outcome = Run(backends=infos)
    if journal is not None:
        journal.begin(infos)
    bar = tqdm(total=len(slots), desc="cases", unit="result", disable=None if progress is None else not progress,
               leave=False)
    calls = calls_for(active, isolation, probed)
    lacks = [missing_features(entry.backend) for entry in active]  # type: ignore[arg-type]

    def settle(seq: int, result: Result, new: bool = True) -> None:
        slots[seq] = result
        if new and journal is not None:
            journal.add(seq, result)
        bar.update()

    def settle_call(first: int, entry: Entry, case: Case, dtype: str, layout: str,
                    verdicts: dict[str | None, Verdict], seconds: float = 0.0) -> None:
        share = seconds / len(verdicts)  # one backend call serves all the results of a gradient case
        for offset, wrt in enumerate(case.checks):
            settle(first + offset, _record(entry.name, case, dtype, verdicts[wrt], share, wrt, layout))

    def judge(done: Iterable[tuple[int, Execution]]) -> None:
        for first, execution in done:
            entry, case, dtype, layout, specs, _, _ = sent = waiting.pop(first)
            assert entry.backend is not None  # only available backends are called
            verdicts = {wrt: _verdict(spec, execution, wrt, entry.backend) for wrt, spec in specs.items()}
            settle_call(first, entry, case, dtype, layout, verdicts, execution.seconds)
            if len(failed) <= alone and any(v.status in GATE_FAILURES for v in verdicts.values()):
                failed[first] = sent

    def rerun_alone() -> None:
        """Each failing call again, alone in a fresh worker: mark its failing results with what came of it."""
        for first, (_, _, _, _, _, index, request) in failed.items():
            calls.submit(first, index, request, fresh=True)
        for first, execution in calls.drain():
            entry, case, _, _, specs, _, _ = failed[first]
            assert entry.backend is not None
            for offset, wrt in enumerate(case.checks):
                result = slots[first + offset]
                if result is None or result.status not in GATE_FAILURES:
                    continue
                verdict = _verdict(specs[wrt], execution, wrt, entry.backend)
                if verdict.status == result.status:
                    continue
                result = replace(result, alone=NOT_REPRODUCED, message=f"{result.message}; did not reproduce "
                                 f"alone (rerun in a fresh worker: {verdict.status})")
                slots[first + offset] = result
                if journal is not None:
                    journal.add(first + offset, result)

    try:
        built: tuple[Case, str, tuple[Inputs | None, dict[str | None, _Specified]]] | None = None
        for number, (case, dtype, layout) in enumerate(work):
            todo = []
            for index, entry in enumerate(active):
                first = firsts[number] + index * len(case.checks)
                kept = [previous.get((entry.name, case.id, dtype, wrt, layout)) for wrt in case.checks]
                if all(result is not None for result in kept):
                    for offset, result in enumerate(kept):
                        settle(first + offset, result, new=False)  # type: ignore[arg-type]
                else:
                    todo.append((first, index, entry))
            if not todo:
                continue
            if built is None or built[0] is not case or built[1] != dtype:  # a case x dtype builds once for its layouts
                built = case, dtype, _build(case, dtype, cache)
            inputs, specs = built[2]
            float_dtypes = {case.tensor_dtype(name, dtype) for name in case.inputs} | {dtype}
            for first, index, entry in todo:
                assert entry.backend is not None
                missing = sorted(d for d in float_dtypes if is_float(d) and d not in entry.backend.dtypes)
                if missing:
                    verdict = Verdict(Status.SKIPPED, f"{entry.name} does not compute in {', '.join(missing)}")
                    settle_call(first, entry, case, dtype, layout, dict.fromkeys(specs, verdict))
                elif (reason := lacking(lacks[index], needed_features(
                        case.op, case.inputs, case.reduction, bool(case.grad) and case.derivative == "grad"))) is not None:
                    verdict = Verdict(Status.UNSUPPORTED, f"{entry.name} lacks {reason}",
                                      expected=compare.expected_rejection(case.reject))
                    settle_call(first, entry, case, dtype, layout, dict.fromkeys(specs, verdict))
                elif case.grad and not supports(entry.backend, case.op, case.derivative):
                    method = DERIVATIVES[case.derivative][case.op]
                    kind = {"grad": "gradient", "grad2": "second-order", "jvp": "forward-mode"}[case.derivative]
                    verdict = Verdict(Status.UNSUPPORTED, f"{entry.name} has no {kind} capability for {case.op} "
                                                          f"({method})")
                    settle_call(first, entry, case, dtype, layout, dict.fromkeys(specs, verdict))
                elif inputs is None or any(spec.error is not None for spec in specs.values()):
                    settle_call(first, entry, case, dtype, layout,
                                {wrt: Verdict(Status.ERROR, spec.error or "") for wrt, spec in specs.items()})
                else:
                    request = Call(case.op, inputs.arrays(), inputs.reduction, case.grad, layout, case.derivative)
                    waiting[first] = (entry, case, dtype, layout, specs, index, request)
                    calls.submit(first, index, request, fresh=_poisons(entry, case))
            judge(calls.ready())
            while len(waiting) > IN_FLIGHT:
                time.sleep(0.002)
                judge(calls.ready())
        judge(calls.drain())
        if isolation is not None and 0 < len(failed) <= alone:
            rerun_alone()
    except KeyboardInterrupt:
        outcome.complete = False
    finally:
        calls.close()
        bar.close()
    outcome.results = [result for result in slots if result is not None]
    if journal is not None and outcome.complete:
        journal.end()
    return outcome
