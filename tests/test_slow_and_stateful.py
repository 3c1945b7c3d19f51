"""Slow or stateful backends: a warm-up (a compile) runs outside `--timeout` under its own limit, and a failure that
depends on the calls before it is said not to reproduce alone, in every report format."""
from __future__ import annotations

import json
import time
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from conformance import runner
from conformance.backends.numpy_backend import NumpyBackend
from conformance.cli import main
from conformance.isolation import Settings
from conformance.loader import load_cases
from conformance.registry import Entry, from_spec
from conformance.results import NOT_REPRODUCED, Status

CASES = Path(__file__).resolve().parent.parent / "cases" / "document.yaml"
COMPILE = 2.0
"""Seconds the slow-warming backend's first computation takes: twice the time limit its calls run under."""


class WarmsSlowly(NumpyBackend):
    """Correct, but its first computation in a process compiles for COMPILE seconds, as torch.compile's does;
    `warm_up` does that compile before the first timed call."""

    name = "warms-slowly"

    def __init__(self) -> None:
        self.compiled = False

    def _compile(self) -> None:
        if not self.compiled:
            time.sleep(COMPILE)
            self.compiled = True

    def warm_up(self) -> None:
        self._compile()

    def bce(self, input, target, *, weight, reduction):
        self._compile()
        return super().bce(input, target, weight=weight, reduction=reduction)

    def bce_with_logits(self, input, target, *, weight, pos_weight, reduction):
        self._compile()
        return super().bce_with_logits(input, target, weight=weight, pos_weight=pos_weight, reduction=reduction)


class WarmsSlowlyWithoutHook(WarmsSlowly):
    """The same backend without the hook: its first call compiles, inside the call's time limit."""

    name = "warms-slowly-without-hook"
    warm_up = None


class WarmUpRaises(NumpyBackend):
    name = "warm-up-raises"

    def warm_up(self) -> None:
        raise RuntimeError("no C++ compiler")


class Drifts(NumpyBackend):
    """Right on its first two calls in a process, then every BCE loss doubled: its answers depend on the calls before."""

    name = "drifts"

    def __init__(self) -> None:
        self.calls = 0

    def bce(self, input, target, *, weight, reduction):
        self.calls += 1
        result = super().bce(input, target, weight=weight, reduction=reduction)
        return result if self.calls <= 2 else result * 2


class AlwaysDoubles(Drifts):
    """Every BCE loss doubled, from the first call on."""

    name = "always-doubles"

    def __init__(self) -> None:
        self.calls = 2


def _run(spec: str, settings: Settings | None, count: int = 4, **options) -> list:
    """The results of `count` BCE cases of the document in float32 on the backend."""
    cases = [case for case in load_cases([CASES]) if case.op == "bce"][:count]
    return runner.run(cases, from_spec(spec), ["float32"], progress=False, isolation=settings, **options).results


def test_a_slow_warm_up_runs_outside_the_time_limit():
    results = _run("tests.test_slow_and_stateful:WarmsSlowly", Settings(timeout=COMPILE / 2))
    assert results and all(r.status == Status.PASSED for r in results), [r.message for r in results]


def test_without_the_hook_the_same_backend_times_out():
    results = _run("tests.test_slow_and_stateful:WarmsSlowlyWithoutHook", Settings(timeout=COMPILE / 2), 1, alone=0)
    assert results[0].status == Status.TIMEOUT and "no result within 1 s" in results[0].message


def test_a_warm_up_has_a_limit_of_its_own():
    results = _run("tests.test_slow_and_stateful:WarmsSlowly", Settings(timeout=COMPILE / 2, warm_up=COMPILE / 4),
                   alone=0)
    assert {r.status for r in results} == {Status.TIMEOUT}
    assert "warm-up did not finish within 0.5 s; the worker process was killed" in results[0].message
    assert all("not run: the backend's warm-up did not finish" in r.message for r in results[1:])


@pytest.mark.parametrize("settings", [Settings(), None], ids=["isolated", "in-process"])
def test_a_warm_up_that_raises_is_an_error_of_every_call(settings):
    results = _run("tests.test_slow_and_stateful:WarmUpRaises", settings, 2, alone=0)
    assert {r.status for r in results} == {Status.ERROR}
    assert "the backend's warm-up raised RuntimeError: no C++ compiler" in results[0].message


def test_in_process_a_backend_warms_up_once_however_many_runs_call_it():
    """As the pytest plugin runs each case in a run of its own."""
    backend = WarmsSlowly()
    backend.warm_ups, backend.compiled = 0, True
    backend.warm_up = lambda: setattr(backend, "warm_ups", backend.warm_ups + 1)
    cases = [case for case in load_cases([CASES]) if case.op == "bce"][:2]
    for case in cases:
        results = runner.run([case], [Entry(backend.name, "test", backend)], ["float32"], progress=False,
                             isolation=None).results
        assert results[0].status == Status.PASSED
    assert backend.warm_ups == 1


def test_a_failure_that_depends_on_earlier_calls_does_not_reproduce_alone(tmp_path, capsys):
    results = tmp_path / "drifts.jsonl"
    assert main(["run", "--backend", "tests.test_slow_and_stateful:Drifts", "--cases", str(CASES), "--dtype",
                 "float32", "-k", "^document-bce-", "--results", str(results), "--format", "json"]) == 1
    document = json.loads(capsys.readouterr().out)
    failed = [r for r in document["results"] if r["status"] == "failed"]
    assert failed and all(r["alone"] == NOT_REPRODUCED for r in failed)
    assert all("did not reproduce alone (rerun in a fresh worker: passed)" in r["message"] for r in failed)
    assert all(r["alone"] == "" for r in document["results"] if r["status"] == "passed")
    shown = {}
    for form in ("table", "markdown", "junit"):
        assert main(["report", str(results), "--format", form]) == 1  # the results file holds the marks too
        shown[form] = capsys.readouterr().out
    line = f"{len(failed)} of these failures did not reproduce when rerun alone in a fresh worker"
    assert line in shown["table"] and line in shown["markdown"]
    messages = [f.get("message") for f in ET.fromstring(shown["junit"]).iter("failure")]
    assert len(messages) == len(failed) and all("did not reproduce alone" in m for m in messages)


def test_a_failure_that_reproduces_alone_is_left_as_it_was():
    """Unmarked, so that a deterministic backend's report does not depend on how many failures a run or shard had."""
    results = _run("tests.test_slow_and_stateful:AlwaysDoubles", Settings(), 2)
    failed = [r for r in results if r.status == Status.FAILED]
    assert failed and all(r.alone == "" and "did not reproduce" not in r.message for r in failed)


def test_many_failures_are_not_rerun():
    results = _run("tests.test_slow_and_stateful:Drifts", Settings(), alone=1)
    assert sum(r.status == Status.FAILED for r in results) > 1
    assert all(r.alone == "" for r in results)
