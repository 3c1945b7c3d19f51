"""The reports as their consumers read them: JSON against its schema, JUnit XML through junitparser, Markdown."""
from __future__ import annotations

import copy
import json
from collections import Counter
from pathlib import Path

import pytest
from junitparser import Error, Failure, JUnitXml, Skipped

from conformance import journal
from conformance.cli import main
from conformance.loader import schema_validator

FAULT_CASES = str(Path(__file__).parent / "data" / "fault_cases.yaml")


def schema_errors(document: dict) -> list[str]:
    return [error.message for error in schema_validator("report").iter_errors(document)]


@pytest.fixture(scope="module")
def run_report(tmp_path_factory) -> dict:
    """A run with passes, failures, a crash and an unavailable backend, as JSON."""
    output = tmp_path_factory.mktemp("report") / "run.json"
    code = main(["run", "--cases", "cases/document.yaml", "--cases", FAULT_CASES, "--backend", "numpy",
                 "--backend", "tests.mutants:SumForMean", "--backend", "tests.faults:Segfaults",
                 "--backend", "torch-cuda", "--dtype", "float32", "--dtype", "float64",
                 "--format", "json", "--output", str(output), "--no-progress"])
    assert code == 1
    return json.loads(output.read_text())


def test_run_report_validates_against_the_schema(run_report):
    assert schema_errors(run_report) == []
    statuses = {r["status"] for r in run_report["results"]}
    assert {"passed", "failed", "crashed"} <= statuses


def test_run_report_records_the_environment(run_report):
    environment = run_report["environment"]
    assert environment["command"].startswith("python -m conformance run --cases cases/document.yaml")
    assert environment["seed"] is None
    assert {"numpy", "torch"} <= set(environment["packages"])
    assert environment["python"] and environment["platform"]
    devices = {b["name"]: (b["device"], b["available"]) for b in run_report["backends"]}
    assert devices["numpy"] == ("cpu", True) and devices["torch-cuda"] == ("cuda", False)
    assert all(b["version"] for b in run_report["backends"] if b["available"])


def test_fuzz_report_validates_and_records_its_seed(tmp_path, capsys):
    output = tmp_path / "fuzz.json"
    code = main(["fuzz", "--backend", "numpy", "--property", "matches-reference", "--op", "bce", "--dtype", "float32",
                 "--examples", "5", "--seed", "7", "--format", "json", "--output", str(output), "--no-progress"])
    capsys.readouterr()
    document = json.loads(output.read_text())
    assert code == 0 and schema_errors(document) == []
    assert document["environment"]["seed"] == 7 and "--seed 7" in document["environment"]["command"]


@pytest.mark.parametrize("edit, fragment", [
    (lambda d: d.update(version=2), "1 was expected"),
    (lambda d: d["results"][0].update(status="flaky"), "'flaky' is not one of"),
    (lambda d: d["results"][0].update(headroom="huge"), "is not valid under any of the given schemas"),
    (lambda d: d["environment"].pop("command"), "'command' is a required property"),
    (lambda d: d["backends"][0].pop("device"), "'device' is a required property"),
    (lambda d: d["results"][0].update(expectation="maybe"), "'maybe' is not one of"),
    (lambda d: d["totals"].update(lost=1), "Additional properties are not allowed"),
])
def test_the_schema_rejects_a_broken_report(run_report, edit, fragment):
    document = copy.deepcopy(run_report)
    edit(document)
    assert any(fragment in message for message in schema_errors(document)), schema_errors(document)


def test_the_schema_accepts_the_expectation_field(run_report):
    document = copy.deepcopy(run_report)
    document["results"][0]["expectation"] = "expected"
    assert schema_errors(document) == []


def test_junit_counts_read_by_junitparser(tmp_path, capsys):
    """A real JUnit consumer sees one failure per failed result, one error per crash, one skip per skip."""
    output = tmp_path / "run.xml"
    code = main(["run", "--cases", "cases/document.yaml", "--cases", "cases/gradients_document.yaml", "--cases", FAULT_CASES,
                 "--backend", "tests.mutants:SumForMean", "--backend", "tests.faults:Segfaults",
                 "--backend", "tests.test_cli:LossOnly", "--backend", "torch-cuda", "--dtype", "float32",
                 "--format", "junit", "--output", str(output), "--no-progress"])
    capsys.readouterr()
    assert code == 1
    statuses = {name: Counter(r.status.value for r in results)
                for name, results in _by_backend(journal.read(tmp_path / "run.results.jsonl")).items()}
    suites = {suite.name: suite for suite in JUnitXml.fromfile(str(output))}
    assert set(suites) == {"mutant-SumForMean", "fault-Segfaults", "loss-only", "torch-cuda"}
    for name, suite in suites.items():
        counts = statuses.get(name, Counter())
        outcomes = Counter(type(r).__name__ for case in suite for r in case.result)
        assert suite.failures == outcomes["Failure"] == counts["failed"]
        assert suite.errors == outcomes["Error"] == counts["error"] + counts["crashed"] + counts["timeout"]
        assert suite.skipped == outcomes["Skipped"] == (counts["skipped"] + counts["unsupported"] if counts else 1)
        assert suite.tests == len(list(suite))
    assert suites["mutant-SumForMean"].failures > 0 and suites["fault-Segfaults"].errors > 0
    assert suites["loss-only"].skipped == statuses["loss-only"]["unsupported"] > 0  # gradient cases, no gradients
    assert suites["torch-cuda"].skipped == 1  # no GPU: one skipped availability test
    crash = next(r for case in suites["fault-Segfaults"] for r in case.result if isinstance(r, Error))
    assert "SIGSEGV" in crash.message and "python -m conformance run" in crash.text
    failure = next(r for case in suites["mutant-SumForMean"] for r in case.result if isinstance(r, Failure))
    assert failure.message and "--backend tests.mutants:SumForMean" in failure.text
    skip = next(r for case in suites["loss-only"] for r in case.result if isinstance(r, Skipped))
    assert "no gradient capability" in skip.message
    properties = {p.name: p.value for p in suites["mutant-SumForMean"].properties()}
    assert properties["device"] == "cpu" and properties["numpy"] and properties["python"] and properties["platform"]
    assert properties["command"].startswith("python -m conformance run --cases cases/document.yaml")


def _by_backend(run) -> dict:
    grouped: dict = {}
    for result in run.results:
        grouped.setdefault(result.backend, []).append(result)
    return grouped


def test_markdown_report_for_a_pull_request(capsys):
    code = main(["run", "--backend", "tests.mutants:SumForMean", "--cases", "cases/document.yaml", "--dtype", "float64",
                 "--format", "markdown", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 1 and out.startswith("# BCE conformance report\n")
    assert "| backend " in out and "|---" in out.replace(":", "-")
    assert "Rerun one:\n\n```sh\npython -m conformance run --cases cases/document.yaml" in out
