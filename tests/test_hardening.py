"""Faults that once escaped the isolation (issue 14): each ends as a one-line verdict, a clean exit status and no
surviving process, every other result as in a clean run. tests/faults.py holds the misbehaving adapters."""
from __future__ import annotations

import json
import os
import re
import resource
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pytest

import conformance
from conformance import runner
from conformance.backends.numpy_backend import NumpyBackend
from conformance.cli import main
from conformance.isolation import Settings
from conformance.loader import load_cases
from conformance.report import printable, render_markdown, render_table, rerun_command
from conformance.results import BackendInfo, Result, Run, Status

from . import faults
from .test_isolation import FAULT_CASES, assert_no_workers_left, assert_only_trigger_differs
from .test_journal import _descendants, _gone, _results

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process tree from /proc")


@pytest.fixture(scope="module")
def cases():
    return load_cases([FAULT_CASES])


@pytest.mark.parametrize("fault, words", faults.ESCAPES.items(), ids=lambda f: getattr(f, "__name__", ""))
def test_a_base_exception_in_an_adapter_is_one_crashed_line(cases, fault, words):
    outcome = runner.run(cases, conformance.entries(fault(), NumpyBackend()), progress=False)
    assert_only_trigger_differs(outcome, fault().name, Status.CRASHED, words)
    assert_no_workers_left()


def test_a_base_exception_in_process_is_one_crashed_line_too(cases):
    fault = faults.RaisesBaseException()
    outcome = runner.run(cases, conformance.entries(fault, NumpyBackend()), progress=False, isolation=None)
    assert_only_trigger_differs(outcome, fault.name, Status.CRASHED, faults.ESCAPES[faults.RaisesBaseException])


@pytest.mark.parametrize("isolation", [Settings(), None], ids=["isolated", "in-process"])
def test_an_exception_that_cannot_be_shown_is_still_one_line(cases, isolation):
    outcome = runner.run(cases, conformance.entries(faults.RaisesUnshowable(), NumpyBackend()), progress=False,
                         isolation=isolation)
    assert_only_trigger_differs(outcome, "fault-RaisesUnshowable", Status.FAILED, "Unshowable: <Unshowable that cannot")


def test_a_huge_view_is_a_shape_failure_as_in_process_and_never_copied(cases):
    """A broadcast view of 10**9 elements: described in the worker, under a memory limit smaller than its copy."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    isolated = runner.run(cases, conformance.entries(faults.ReturnsHugeView(), NumpyBackend()), progress=False,
                          isolation=Settings(memory_limit=2**30))
    in_process = runner.run(cases, conformance.entries(faults.ReturnsHugeView(), NumpyBackend()), progress=False, isolation=None)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 2**10  # KiB: no copy came back
    words = "shape (1000000000,), expected (2,)"
    assert_only_trigger_differs(isolated, "fault-ReturnsHugeView", Status.FAILED, words)
    assert [(r.status, r.message) for r in isolated.results] == [(r.status, r.message) for r in in_process.results]
    assert_no_workers_left()


def test_an_array_of_a_class_defined_in_the_call_arrives_as_an_array(cases):
    outcome = runner.run(cases, conformance.entries(faults.ReturnsLocalSubclass()), progress=False)
    assert {r.status for r in outcome.results} == {Status.PASSED}


@linux
def test_what_an_adapter_starts_ends_with_its_worker(cases, tmp_path):
    pids, fault = tmp_path / "pids", faults.Spawns()
    fault.pids = str(pids)
    outcome = runner.run(cases, conformance.entries(fault), ["float32"], progress=False)
    assert {r.status for r in outcome.results} == {Status.PASSED}
    started = {int(pid) for pid in pids.read_text().split()}
    assert len(started) == 2 and _gone(started, within=5.0) == set()
    assert_no_workers_left()


def _runner(argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "conformance", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, env={**os.environ, **(env or {})})


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def _wait_for(condition, what: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@linux
@pytest.mark.parametrize("fault", [faults.StopsItself, faults.SpinsHoldingTheGil])
def test_kill_9_of_the_runner_takes_a_stopped_or_gil_holding_worker_and_the_helpers_along(tmp_path, fault):
    results = tmp_path / "run.jsonl"
    process = _runner(["run", "--cases", str(FAULT_CASES), "--backend", f"tests.faults:{fault.__name__}",
                       "--timeout", "120", "--no-progress", "--results", str(results)])
    _wait_for(lambda: len(_results(results)) >= 2, "the run reached no trigger")  # both dtypes of the case before
    if fault is faults.StopsItself:
        _wait_for(lambda: "T" in {_state(pid) for pid in _descendants(process.pid)}, "no worker stopped")
    else:
        time.sleep(0.5)  # the worker is spinning on the trigger
    helpers = _descendants(process.pid)
    assert len(helpers) >= 3, "a worker, the forkserver and the resource tracker"
    process.kill()
    process.communicate()
    assert _gone(helpers) == set()


@linux
def test_a_worker_that_closes_its_connection_is_one_crashed_case_without_a_traceback(cases, capfd):
    outcome = runner.run(cases, conformance.entries(faults.ClosesItsConnection(), NumpyBackend()), progress=False)
    assert_only_trigger_differs(outcome, "fault-ClosesItsConnection", Status.CRASHED, "the worker process")
    assert "Traceback" not in capfd.readouterr().err
    assert_no_workers_left()


@linux
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT] * 2, ids=["SIGTERM", "SIGINT"] * 2)
def test_a_signal_mid_run_ends_it_without_a_traceback(tmp_path, signum):
    """Workers are killed before their pipes close: no BrokenPipeError or ConnectionResetError from either side."""
    results = tmp_path / "run.jsonl"
    process = _runner(["run", "--backend", "tests.faults:Slow", "--backend", "numpy", "--cases", "cases/document.yaml",
                       "--no-progress", "--results", str(results)])
    _wait_for(lambda: len(_results(results)) >= 2, "the run wrote no results")
    helpers = _descendants(process.pid)
    os.killpg(process.pid, signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, err
    assert "Traceback" not in err and "Error" not in err, err
    assert _gone(helpers) == set()


@linux
def test_sigterm_while_probing_exits_143_and_leaves_a_file_that_resumes(tmp_path, capsys):
    results, pids = tmp_path / "run.jsonl", tmp_path / "pids"
    process = _runner(["run", "--cases", str(FAULT_CASES), "--backend", "tests.faults:SlowProbe", "--no-progress",
                       "--results", str(results)], {faults.PIDS: str(pids)})
    _wait_for(lambda: pids.exists() and pids.read_text().strip(), "the probe did not start")
    probing = {int(pid) for pid in pids.read_text().split()}
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143 and "Traceback" not in err, err
    assert _gone(probing) == set()
    assert main(["run", "--cases", str(FAULT_CASES), "--backend", "numpy", "--resume", str(results),
                 "--no-progress"]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("fault, words", [
    (faults.ExitsInProbe, "availability check raised SystemExit: 0"),
    (faults.SegfaultsInProbe, "SIGSEGV"),
])
def test_a_probe_that_exits_or_crashes_makes_its_backend_unavailable_and_the_run_goes_on(capsys, fault, words):
    assert main(["run", "--cases", str(FAULT_CASES), "--backend", f"tests.faults:{fault.__name__}",
                 "--no-progress"]) == 2  # nothing ran: no false green
    assert words in capsys.readouterr().err
    assert main(["run", "--cases", str(FAULT_CASES), "--backend", f"tests.faults:{fault.__name__}", "--backend",
                 "numpy", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "unavailable" in out and words in out and "10 passed" in out


def test_a_version_that_is_a_number_becomes_its_text(capsys):
    assert main(["run", "--cases", str(FAULT_CASES), "--backend", "tests.faults:NumericVersion", "--format", "junit",
                 "--dtype", "float32", "--no-progress"]) == 0
    suite = ET.fromstring(capsys.readouterr().out).find("testsuite")
    assert {p.get("name"): p.get("value") for p in suite.iter("property")}["version"] == "2"


def test_poisoning_calls_run_alone(cases, tmp_path):
    """A device that deadlocks when two calls overlap: its rejection cases (in workers of their own) never run
    beside its other calls."""
    fault = faults.DeadlocksOnOverlap()
    fault.locks = str(tmp_path)
    outcome = runner.run(cases, conformance.entries(fault), progress=False,
                         isolation=Settings(timeout=10.0))
    assert {r.status for r in outcome.results} == {Status.PASSED}
    assert_no_workers_left()


def test_in_process_calls_keep_the_working_directory_and_numpy_error_state(tmp_path, monkeypatch, capsys):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    errors = np.geterr()
    assert main(["run", "--cases", str(FAULT_CASES.resolve()), "--backend", "tests.faults:ChangesDirectory",
                 "--no-isolation", "--format", "json", "--output", "report.json", "--no-progress"]) == 0
    assert Path.cwd() == work and np.geterr() == errors
    assert json.loads((work / "report.json").read_text())["totals"]["passed"] == 10
    capsys.readouterr()


# --- what a file says, printed --------------------------------------------------------------------

HOSTILE = "x;touch${IFS}PWNED $(id) `id` \x1b]0;title\x07\x1b[2J\u202e\r"


def _hostile_run() -> Run:
    result = Result(backend=f"b{HOSTILE}", case_id=f"c{HOSTILE}", op="bce", dtype="float32", status=Status.FAILED,
                    message=f"m{HOSTILE}", source=f"cases/{HOSTILE}.yaml:3", expected="1", got="2")
    return Run(backends=[BackendInfo(f"b{HOSTILE}", f"mod:{HOSTILE}", True, version=HOSTILE)], results=[result])


def test_rerun_commands_quote_every_argument():
    run = _hostile_run()
    command = rerun_command(run.results[0], run.backends[0].selector)
    assert shlex.split(command) == ["python", "-m", "conformance", "run", "--cases", f"cases/{HOSTILE}.yaml",
                                    "--backend", f"mod:{HOSTILE}", "--dtype", "float32", "-k",
                                    "^" + re.escape(f"c{HOSTILE}") + "$"]


@pytest.mark.parametrize("render", [render_table, render_markdown])
def test_control_characters_are_escaped_in_table_and_markdown(render):
    text = printable(render(_hostile_run()))
    assert not any(ch in text for ch in "\x1b\x07\r\u202e") and "\\x1b]0;title\\x07" in text


def test_the_cli_escapes_what_it_prints(tmp_path, capsys):
    results = tmp_path / "run.jsonl"
    assert main(["run", "--cases", str(FAULT_CASES), "--backend", "numpy", "--results", str(results),
                 "--no-progress"]) == 0
    capsys.readouterr()
    lines = results.read_text().splitlines()
    record = json.loads(lines[1])
    record.update(status="failed", message="\x1b]8;;http://evil\x07click\x1b]8;;\x07", rerun="rm -rf ~")
    results.write_text("\n".join([lines[0], json.dumps(record), *lines[2:]]) + "\n")
    assert main(["report", str(results), "--format", "markdown"]) == 1
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b]8;;http://evil" in out
    assert "rm -rf" not in out and "python -m conformance run --cases" in out  # the harness's command, not the file's
