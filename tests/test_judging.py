"""The same-verdict test: misbehaving backends (tests/misbehaving.py) through every entry point that calls a
backend, `run`, `fuzz`, the pytest plugin and the accuracy atlas, get the same verdict from each (judging.py).

An entry point's verdict is the status of the first of its results that did not pass ("passed" where all did).
The atlas asks only for values of valid inputs: a rejection rule is not its to judge, and a wrong value is
measured, then judged by the accuracy budget (a breach: failed). A hang goes through run and fuzz only: the
plugin and the atlas call in this process, where nothing ends it.
"""
from __future__ import annotations

from pathlib import Path

import pytest

import conformance
from conformance.accuracy.atlas import build
from conformance.accuracy.budget import default_budget_file, judge, load_budget
from conformance.accuracy.regions import load_regions, select
from conformance.fuzz import FuzzConfig, fuzz
from conformance.isolation import Settings
from conformance.properties import MatchesReference
from conformance.results import Status
from tests import misbehaving

CASES = Path(__file__).parent / "data" / "same_verdict_cases.yaml"
PASSED, FAILED, ERROR, UNSUPPORTED = (str(s) for s in (Status.PASSED, Status.FAILED, Status.ERROR, Status.UNSUPPORTED))

VERDICTS = {  # backend: (its verdict, the atlas's where the atlas does not judge what is wrong)
    misbehaving.Correct: (PASSED, PASSED),
    misbehaving.WarningStorm: (FAILED, FAILED),
    misbehaving.AdapterBug: (ERROR, ERROR),
    misbehaving.WrongValue: (FAILED, FAILED),
    misbehaving.AllNaN: (FAILED, FAILED),
    misbehaving.WrongRule: (FAILED, PASSED),  # the atlas sends no invalid input
    misbehaving.Lacking: (UNSUPPORTED, UNSUPPORTED),
    misbehaving.WrongConventionRule: (FAILED, PASSED),
}


def _first(statuses: list[str]) -> str:
    return next((s for s in statuses if s != PASSED), PASSED)


def _run(backend: conformance.Backend, isolation: Settings | None = None, cases: int | None = None) -> str:
    """The first non-passing status of a run of the first `cases` cases (default: all)."""
    run = conformance.run(backend, conformance.load_cases([CASES])[:cases], isolation=isolation or False)
    return _first([str(r.status) for r in run.results])


def _fuzz(backend: conformance.Backend, isolation: Settings | None = None) -> str:
    run = fuzz(conformance.entries(backend), [MatchesReference()], FuzzConfig(examples=60, seed=0),
               ["bce_with_logits"], ["float32"], progress=False, isolation=isolation)
    return _first([str(r.status) for r in run.results])


def _plugin(pytester: pytest.Pytester, backend: conformance.Backend) -> str:
    """The statuses the plugin's tests report (a failure's or a skip's message opens with it), in order."""
    recorder = pytester.inline_run(
        "-p", "conformance.pytest_plugin", "-p", "no:cacheprovider", "--conformance-properties",
        "--conformance-backend", f"tests.misbehaving:{type(backend).__name__}", "--conformance-cases", str(CASES),
        "--conformance-dtype", "float32", "-k", "same-verdict or (matches-reference-bce_with_logits and not gradient)")
    statuses = []
    for report in recorder.getreports("pytest_runtest_logreport"):
        if report.failed:
            statuses.append(report.longreprtext.split(":")[0])
        elif report.skipped:
            statuses.append(str(report.longrepr[2]).removeprefix("Skipped: ").split(":")[0])  # type: ignore[index]
        elif report.when == "call":
            statuses.append(PASSED)
    assert len(statuses) == 3  # two cases, one property
    return _first(statuses)


def _atlas(backend: conformance.Backend) -> str:
    regions = select(load_regions(), ["^logits-positive-y0$"], None, False)
    atlas = build(regions, conformance.entries(backend), ["float32"], 256, progress=False)
    (row,) = atlas.rows
    if row.error:
        return row.error.split(":")[0]
    (verdict,) = judge(load_budget(default_budget_file()), atlas.rows).verdicts
    return FAILED if verdict.status == "breach" else PASSED


@pytest.mark.parametrize("kind", list(VERDICTS), ids=lambda kind: kind.__name__)
def test_every_entry_point_gives_a_misbehaving_backend_the_same_verdict(pytester, monkeypatch, kind):
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    verdict, in_atlas = VERDICTS[kind]
    got = {"run": _run(kind()), "fuzz": _fuzz(kind()), "plugin": _plugin(pytester, kind()), "atlas": _atlas(kind())}
    assert got == {"run": verdict, "fuzz": verdict, "plugin": verdict, "atlas": in_atlas}


def test_a_hang_is_a_timeout_in_run_and_in_fuzz():
    limit = Settings(timeout=1.0)
    # one case: each hung call costs the limit, and once more when it is rerun alone
    assert _run(misbehaving.Hangs(), limit, cases=1) == _fuzz(misbehaving.Hangs(), limit) == str(Status.TIMEOUT)
