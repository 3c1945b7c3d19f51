"""Backends that crash, hang, blow up memory, poison their process or answer nonsense cost one case each:
the right status for that case, every other case run and reported, and no worker process left behind.
While fuzzing, a crash or a hang costs one property's search."""
from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

import conformance
from conformance import runner
from conformance.backends.numpy_backend import NumpyBackend
from conformance.cli import main
from conformance.compare import Verdict
from conformance.execution import Execution
from conformance.fuzz import FuzzConfig, _explore, fuzz
from conformance.isolation import Settings
from conformance.loader import load_cases
from conformance.options import size
from conformance.properties import all_properties
from conformance.results import Status

from . import faults

FAULT_CASES = Path(__file__).parent / "data" / "fault_cases.yaml"
PROPERTY = next(p for p in all_properties() if p.id == "matches-reference")
TRIGGER = "fault-trigger"
CASE_IDS = ("fault-before", TRIGGER, "fault-reject-out-of-range", "fault-after", "fault-after-logits")
GRADIENT_CASES = Path(__file__).parent / "data" / "fault_gradient_cases.yaml"


@pytest.fixture(scope="module")
def cases():
    return load_cases([FAULT_CASES])


@pytest.fixture(scope="module")
def gradient_cases():
    return load_cases([GRADIENT_CASES])


def _by_case(outcome, backend):
    return {(r.case_id, r.dtype): r for r in outcome.results if r.backend == backend}


def _processes_below(pid: int) -> dict[int, list[int]]:
    """pid -> child pids, for the processes under `pid` (Linux /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    return children


def assert_no_workers_left() -> None:
    """Only multiprocessing's own helpers (the forkserver, the resource tracker) may outlive a run; no worker does."""
    assert multiprocessing.active_children() == []
    if not sys.platform.startswith("linux"):
        return
    children = _processes_below(0)
    helpers = children.get(multiprocessing.current_process().pid or 0, [])
    for helper in helpers:
        command = Path(f"/proc/{helper}/cmdline").read_bytes().decode(errors="replace")
        assert "multiprocessing" in command, command
        assert children.get(helper, []) == [], f"worker processes left under {command!r}"


def assert_only_trigger_differs(outcome, backend, status, words, dtypes=("float32", "float64")):
    """Every case ran on both backends; only the trigger case of the faulty one has `status`, saying `words`."""
    results = _by_case(outcome, backend)
    assert set(results) == {(case, dtype) for case in CASE_IDS for dtype in dtypes}
    for (case_id, dtype), result in results.items():
        if case_id == TRIGGER:
            assert result.status == status, (dtype, result.message)
            assert words in result.message
        else:
            assert result.status == Status.PASSED, (case_id, dtype, result.message)
    assert all(r.status == Status.PASSED for r in _by_case(outcome, "numpy").values())


@pytest.mark.parametrize("fault, words", faults.CRASHES.items(), ids=lambda f: getattr(f, "__name__", ""))
def test_a_crash_costs_one_case(cases, fault, words):
    outcome = runner.run(cases, conformance.entries(fault(), NumpyBackend()), progress=False)
    assert_only_trigger_differs(outcome, fault().name, Status.CRASHED, words)
    assert_no_workers_left()


def test_a_hang_is_a_timeout(cases):
    outcome = runner.run(cases, conformance.entries(faults.Hangs(), NumpyBackend()), ["float32"], progress=False,
                         isolation=Settings(timeout=1.0))
    assert_only_trigger_differs(outcome, "fault-Hangs", Status.TIMEOUT, "no result within 1 s", ["float32"])
    assert_no_workers_left()


def test_a_memory_blow_up_is_bounded_and_crashes_one_case(cases):
    outcome = runner.run(cases, conformance.entries(faults.EatsMemory(), NumpyBackend()), progress=False,
                         isolation=Settings(memory_limit=512 * 2**20))
    assert_only_trigger_differs(outcome, "fault-EatsMemory", Status.CRASHED, "ran out of memory: MemoryError")
    assert_no_workers_left()


@pytest.mark.parametrize("fault, status, words, settings", [
    (faults.Segfaults, Status.CRASHED, "SIGSEGV", Settings()),
    (faults.CallsSysExit, Status.CRASHED, "sys.exit(3)", Settings()),
    (faults.Hangs, Status.TIMEOUT, "no result within 1 s", Settings(timeout=1.0)),
], ids=["Segfaults", "CallsSysExit", "Hangs"])
def test_a_gradient_call_that_crashes_or_hangs_costs_its_results_only(gradient_cases, fault, status, words, settings):
    outcome = runner.run(gradient_cases, conformance.entries(fault(), NumpyBackend()), ["float32"], progress=False,
                         isolation=settings)
    results = {(r.case_id, r.wrt): r for r in outcome.results if r.backend == fault().name}
    assert set(results) == {(case.id, wrt) for case in gradient_cases for wrt in ("input", "target")}
    for (case_id, wrt), result in results.items():
        if case_id == "grad-fault-trigger":  # one call, both its results
            assert result.status == status and words in result.message, (wrt, result.message)
        else:
            assert result.status == Status.PASSED, (case_id, wrt, result.message)
    assert {r.status for r in outcome.results if r.backend == "numpy"} == {Status.PASSED}
    assert_no_workers_left()


@pytest.mark.parametrize("isolation", [Settings(), None], ids=["isolated", "in-process"])
def test_a_gradient_call_that_changes_grad_output_fails(gradient_cases, isolation):
    outcome = runner.run(gradient_cases, conformance.entries(faults.MutatesGradOutput()), ["float64"], progress=False,
                         isolation=isolation)
    for result in outcome.results:
        if result.op == "bce":
            assert result.status == Status.FAILED and result.message == "modified its input 'grad_output'"
        else:  # its BCE with logits is the NumPy backend's
            assert result.status == Status.PASSED, result.message
    assert_no_workers_left()


def test_gradients_in_a_mapping_that_cannot_be_pickled_arrive_as_they_are_in_process(gradient_cases):
    for isolation in (Settings(), None):
        outcome = runner.run(gradient_cases, conformance.entries(faults.ReturnsMappingProxy()), ["float32"], progress=False,
                             isolation=isolation)
        assert len(outcome.results) == 6 and {r.status for r in outcome.results} == {Status.PASSED}
    assert_no_workers_left()


def _poisoned(cases, backend, isolation):
    """(case, dtype) of the results that did not pass, and their messages."""
    try:
        outcome = runner.run(cases, conformance.entries(backend), progress=False, isolation=isolation)
    finally:
        faults.POISONED = False  # the in-process run poisons this process
    assert_no_workers_left()
    return {(r.case_id, r.dtype): r.message for r in outcome.results if r.status != Status.PASSED}


@pytest.mark.parametrize("backend, culprit", [
    (faults.Poisons(), {}),  # raises at once: a correct rejection
    (faults.PoisonsLater(), {"fault-reject-out-of-range": "accepted input"}),  # the error surfaces a call later
    (faults.PoisonsOnTrigger(), {TRIGGER: "illegal memory access"}),  # a value case breaks the device
], ids=lambda b: getattr(b, "name", ""))
def test_a_poisoned_process_costs_no_other_case(cases, backend, culprit):
    isolated = _poisoned(cases, backend, Settings())
    expected = {(case, dtype): words for case, words in culprit.items() for dtype in ("float32", "float64")}
    assert set(isolated) == set(expected) and all(words in isolated[key] for key, words in expected.items())
    # the imitation is real: in one process, every case after the poisoning one breaks
    shared = _poisoned(cases, backend, None)
    assert {("fault-after", "float64"), ("fault-after-logits", "float32")} <= set(shared)
    assert "device-side assert triggered" in shared[("fault-after", "float64")]


@pytest.mark.parametrize("fault, words", faults.ANSWERS.items(), ids=lambda f: getattr(f, "__name__", ""))
def test_a_misbehaving_answer_is_one_clear_line_in_both_modes(cases, fault, words):
    verdicts = []
    for isolation in (Settings(), None):
        outcome = runner.run(cases, conformance.entries(fault(), NumpyBackend()), ["float32"], progress=False, isolation=isolation)
        assert_only_trigger_differs(outcome, fault().name, Status.FAILED, words, ["float32"])
        result = _by_case(outcome, fault().name)[(TRIGGER, "float32")]
        assert "\n" not in result.message
        verdicts.append((result.status, result.message, result.expected, result.got))
    assert verdicts[0] == verdicts[1]
    assert_no_workers_left()


def test_a_warning_or_two_is_no_storm(cases):
    outcome = runner.run(cases, conformance.entries(faults.WarnsOnce()), progress=False)
    assert {r.status for r in outcome.results} == {Status.PASSED}


class _Unsendable(NumpyBackend):
    name = "unsendable"

    def __init__(self):
        self.hook = lambda: None  # a lambda cannot be pickled


def test_a_backend_that_cannot_reach_a_worker_is_an_error_with_advice(cases):
    outcome = runner.run(cases, conformance.entries(_Unsendable()), ["float64"], progress=False)
    assert {r.status for r in outcome.results} == {Status.ERROR}
    assert "cannot be sent to a worker process" in outcome.results[0].message
    assert "--no-isolation" in outcome.results[0].message


def _json_report(capsys, tmp_path, name, *argv):
    target = tmp_path / f"{name}.json"
    main(["run", "--format", "json", "--output", str(target), "--no-progress", *argv])
    capsys.readouterr()
    report = json.loads(target.read_text())
    del report["environment"]["command"]  # names the output file, and --no-isolation
    for result in report["results"]:
        del result["seconds"]
    return report


def test_runs_are_deterministic_and_isolation_changes_nothing(capsys, tmp_path):
    argv = ["--cases", "cases/document.yaml", "--cases", "cases/gradients_document.yaml", "--cases", str(FAULT_CASES),
            "--backend", "numpy", "--backend", "tests.mutants:ClampAt50", "--backend", "tests.faults:Segfaults",
            "--backend", "tests.faults:NanEverywhere"]
    first = _json_report(capsys, tmp_path, "first", *argv)
    second = _json_report(capsys, tmp_path, "second", *argv)
    assert first == second
    assert {"passed", "crashed", "failed"} <= {r["status"] for r in first["results"]}
    assert {None, "input", "target"} == {r["wrt"] for r in first["results"]}
    in_process = _json_report(capsys, tmp_path, "in-process", *argv[:-4], "--no-isolation")
    isolated = _json_report(capsys, tmp_path, "isolated", *argv[:-4])
    assert in_process == isolated


def test_crashes_and_timeouts_are_junit_errors(capsys):
    main(["run", "--cases", str(FAULT_CASES), "--backend", "tests.faults:Segfaults", "--dtype", "float32",
          "--format", "junit"])
    suite = ET.fromstring(capsys.readouterr().out).find("testsuite")
    (error,) = [case.find("error") for case in suite.iter("testcase") if case.find("error") is not None]
    assert error.get("type") == "crashed" and "SIGSEGV" in error.get("message")
    assert suite.get("errors") == "1" and suite.get("failures") == "0"


def test_what_a_worker_prints_stays_out_of_a_report_on_standard_output():
    command = [sys.executable, "-m", "conformance", "run", "--cases", str(FAULT_CASES), "--backend",
               "tests.faults:Chatters", "--format", "json"]
    run = subprocess.run(command, capture_output=True, text=True)
    assert json.loads(run.stdout)["totals"]["passed"] == 10 and "debug: debug:" in run.stderr


@pytest.mark.parametrize("text, expected", [
    ("512M", 512 * 2**20), ("4G", 4 * 2**30), ("1.5GiB", 3 * 2**29), ("1000", 1000),
])
def test_memory_limit_sizes(text, expected):
    assert size(text) == expected


@pytest.mark.parametrize("text", ["", "0", "-1G", "4X", "lots"])
def test_memory_limit_nonsense_is_a_usage_error(capsys, text):
    with pytest.raises(SystemExit) as exit_:
        main(["run", f"--memory-limit={text}"])
    assert exit_.value.code == 2 and "is not a size such as 512M or 4G" in capsys.readouterr().err


@pytest.mark.parametrize("fault, status, words, settings", [
    (faults.SegfaultsOnEveryBce, Status.CRASHED, "SIGSEGV", Settings()),
    (faults.HangsOnEveryBce, Status.TIMEOUT, "no result within 1 s", Settings(timeout=1.0)),
], ids=["Segfaults", "Hangs"])
def test_a_crash_or_hang_while_fuzzing_ends_one_search_and_its_sample_replays(tmp_path, fault, status, words,
                                                                              settings):
    entries = conformance.entries(fault())
    config = FuzzConfig(examples=20, seed=0, save_failures=tmp_path)
    run = fuzz(entries, [PROPERTY], config, ["bce", "bce_with_logits"], ["float32"], progress=False,
               isolation=settings)
    bce, logits = run.results
    assert bce.status == status and words in bce.message, bce.message
    assert logits.status == Status.PASSED, logits.message
    assert run.complete
    (saved,) = tmp_path.glob("*.yaml")
    replayed = runner.run(load_cases([saved]), entries, progress=False, isolation=settings)
    assert {r.status for r in replayed.results} == {status}
    assert_no_workers_left()


def test_a_crash_is_not_shrunk():
    """After a crash or a hang no more calls are made: each would cost a worker process or the time limit."""
    made = []

    class Crashing:
        backend = NumpyBackend()

        def __call__(self, request):
            made.append(request)
            return Execution(fault=Verdict(Status.CRASHED, "the worker process died (SIGSEGV)"))

    state = _explore(Crashing(), PROPERTY, "bce", "float32", FuzzConfig(examples=100, seed=0), 0)
    assert len(made) == 1 and state.calls == 1 and state.halted
    assert state.failure is not None and state.failure[1].status == Status.CRASHED


def test_ctrl_c_while_fuzzing_keeps_the_finished_results():
    class Interrupted:
        id, description, ops, wrt, gradient = "interrupted", "Ctrl-C on its first sample", ("bce",), (), False

        def strategy(self, op, dtype):
            return PROPERTY.strategy(op, dtype)

        def check(self, invoke, sample):
            raise KeyboardInterrupt

    run = fuzz(conformance.entries(NumpyBackend()), [PROPERTY, Interrupted(), PROPERTY], FuzzConfig(examples=5, seed=0),
               ["bce"], ["float32"], progress=False)
    assert not run.complete
    assert [(r.case_id, r.status) for r in run.results] == [("matches-reference", Status.PASSED)]
    assert_no_workers_left()


def test_ctrl_c_in_the_fuzz_command_prints_what_finished_and_exits_130(capsys):
    argv = ["fuzz", "--backend", "tests.faults:InterruptedOnEveryBce", "--property", "logits-sign-symmetry",
            "--property", "matches-reference", "--op", "bce_with_logits", "--op", "bce", "--dtype", "float32",
            "--examples", "10", "--no-isolation", "--no-progress"]
    assert main(argv) == 130
    out, err = capsys.readouterr()
    assert "1 passed" in out and "(incomplete: the run was interrupted)" in out
    assert "interrupted by SIGINT after 1 results" in err
