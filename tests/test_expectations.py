"""Expectations manifests: listed deviations are expected failures, and every other outcome is told apart."""
from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
import yaml

from conformance import expectations, journal
from conformance.cli import main
from conformance.documents import schema_validator
from conformance.dtypes import NUMPY_DTYPES
from conformance.results import BackendInfo, Result, Run, Status

MUTANT = ["--backend", "tests.mutants:ClampAt50"]
CLAMP = ["--cases", "cases/bce_special_points.yaml", "-k", "^bce-clamp-p[01]-y[01]$", "--no-isolation",
         "--no-progress"]


def run(capsys, *argv):
    """Exit status, stdout with whitespace runs made one space (a table wraps long messages), stderr."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, " ".join(out.split()), err


@pytest.fixture
def recorded(tmp_path, capsys):
    """The mutant's failures on the four clamp cases, recorded by --update-expectations."""
    path = tmp_path / "clamp50.yaml"
    code, out, err = run(capsys, "run", *MUTANT, *CLAMP, "--update-expectations", str(path))
    assert code == 0, out  # the recording run is judged with what it recorded
    assert f"wrote 8 expectations to {path}" in err
    return path


def _edit(path, change):
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_recorded_failures_are_expected_and_the_run_is_green(recorded, capsys):
    code, out, err = run(capsys, "run", *MUTANT, *CLAMP, "--expectations", str(recorded))
    assert code == 0, out
    assert "8 failed" in out and "(8 of them expected failures, 0 unexpected passes)" in out
    assert "expected failed" in out and err == ""
    assert "Rerun one:" not in out  # expected failures are not failures to rerun


def test_a_failure_missing_from_the_manifest_fails_the_run(recorded, capsys):
    path = _edit(recorded, lambda data: data["expectations"].pop(0))
    code, out, _ = run(capsys, "run", *MUTANT, *CLAMP, "--expectations", str(path))
    assert code == 1
    assert "(7 of them expected failures" in out and "Rerun one:" in out


def test_listed_cases_that_pass_are_unexpected_passes_and_fail_only_when_strict(recorded, capsys):
    path = _edit(recorded, lambda data: data.update(backend="numpy"))
    code, out, _ = run(capsys, "run", "--backend", "numpy", *CLAMP, "--expectations", str(path))
    assert code == 0, out
    assert "0 failed" in out and "(0 of them expected failures, 8 unexpected passes)" in out
    assert "listed as failed in" in out and "but passed" in out
    code, out, _ = run(capsys, "run", "--backend", "numpy", *CLAMP, "--expectations", str(path),
                       "--strict-expectations")
    assert code == 1 and "8 failed" in out and "--strict-expectations makes this a failure" in out


def test_a_listed_case_that_fails_differently_is_a_new_failure(recorded, capsys):
    path = _edit(recorded, lambda data: data["expectations"][0].update(outcome="crashed"))
    code, out, _ = run(capsys, "run", *MUTANT, *CLAMP, "--expectations", str(path))
    assert code == 1
    assert "listed as crashed in" in out and "but failed" in out


def test_a_failure_beyond_its_budget_is_a_new_failure(recorded, capsys):
    path = _edit(recorded, lambda data: data["expectations"][0].update(budget={"max_ulp": 799}))
    code, out, _ = run(capsys, "run", *MUTANT, *CLAMP, "--expectations", str(path))
    assert code == 1 and "ulp 800 exceeds the budget's 799" in out
    path = _edit(recorded, lambda data: data["expectations"][0].update(budget={"max_ulp": 800, "max_headroom": 141}))
    assert run(capsys, "run", *MUTANT, *CLAMP, "--expectations", str(path))[0] == 0


def test_a_pattern_entry_lists_many_cases(tmp_path, capsys):
    path = tmp_path / "m.yaml"
    path.write_text("backend: mutant-ClampAt50\nexpectations:\n"
                    "  - {pattern: '^bce-clamp-p', outcome: failed, reason: clamps at -50, link: https://example.org/1}\n")
    code, out, err = run(capsys, "run", *MUTANT, *CLAMP, "--expectations", str(path))
    assert code == 0 and "(8 of them expected failures" in out and err == ""
    assert "clamps at -50 (https://example.org/1)" in out


def test_an_entry_that_matches_nothing_is_warned_about_once(recorded, capsys):
    path = _edit(recorded, lambda data: data["expectations"].append(
        {"case": "no-such-case", "outcome": "failed", "reason": "stale"}))
    code, _, err = run(capsys, "run", *MUTANT, *CLAMP, "--expectations", str(path))
    assert code == 0
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if "no-such-case" in text)
    assert err.splitlines() == [f"conformance: warning: {path}:{line}: expectation no-such-case matches no result"]


@pytest.mark.parametrize("when, applies", [
    ({"version": ">=2"}, True),
    ({"version": "<2"}, False),  # numpy 2.x: the entry is inactive, so the failure counts
    ({"device": "cuda"}, False),  # the mutant computes where the NumPy backend does: device cpu
    ({"version": ">=2", "device": "^cpu$"}, True),
])
def test_conditions_on_version_and_device(recorded, capsys, when, applies):
    def condition(data):
        for entry in data["expectations"]:
            entry["when"] = when

    path = _edit(recorded, condition)
    code, _, err = run(capsys, "run", *MUTANT, *CLAMP, "--expectations", str(path))
    assert code == (0 if applies else 1)
    assert err == ""  # an inactive entry is not warned about


def test_a_version_without_a_number_is_warned_about():
    entry = expectations.Expectation("m.yaml:3", "b", Status.FAILED, "r", case="c",
                                     version=expectations.SpecifierSet(">=1"))
    info = BackendInfo("b", "test", True, version="nightly build")
    assert entry.condition(info) == "m.yaml:3: c: backend b's version 'nightly build' has no version number"
    assert entry.condition(BackendInfo("b", "test", True, version="mylib 1.2.3rc1, CUDA 12")) is True


@pytest.mark.parametrize("text, fragment", [
    ("backend: b\nexpectations:\n  - {case: c, outcome: failed}\n", ":3: expectations/0: 'reason' is a required"),
    ("backend: b\nexpectations:\n  - {case: c, outcome: wrong, reason: r}\n", ":3: expectations/0/outcome:"),
    ("backend: b\nexpectations:\n  - {case: c, pattern: d, outcome: failed, reason: r}\n", ":3: expectations/0:"),
    ("backend: b\nexpectations:\n  - {pattern: '(', outcome: failed, reason: r}\n", ":3: pattern '(': invalid"),
    ("backend: b\nexpectations:\n  - {case: c, when: {version: '~~1'}, outcome: failed, reason: r}\n",
     ":3: when.version '~~1' is not a version specifier"),
    ("backend: b\nexpectations:\n  - {case: c, budget: {max_ulp: -1}, outcome: failed, reason: r}\n",
     ":3: expectations/0/budget/max_ulp:"),
    ("backend: b\nexpectations: [\n", ": invalid YAML"),
])
def test_malformed_manifests_are_one_line_errors_naming_file_and_line(tmp_path, capsys, text, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    code, out, err = run(capsys, "run", *MUTANT, *CLAMP, "--expectations", str(path))
    assert code == 2 and out == ""  # nothing ran
    assert err.startswith(f"conformance: error: {path}") and fragment in err and len(err.splitlines()) == 1


def test_a_manifest_of_a_backend_not_in_the_run_is_an_error(recorded, capsys):
    code, _, err = run(capsys, "run", "--backend", "numpy", *CLAMP, "--expectations", str(recorded))
    assert code == 2 and "expectations of backend 'mutant-ClampAt50', which this run does not have" in err


def test_update_expectations_needs_exactly_one_backend(tmp_path, capsys):
    code, _, err = run(capsys, "run", "--backend", "numpy", *MUTANT, *CLAMP, "--update-expectations",
                       str(tmp_path / "m.yaml"))
    assert code == 2 and "records one backend's manifest" in err and not (tmp_path / "m.yaml").exists()


def test_reports_show_expected_failures_and_unexpected_passes(recorded, tmp_path, capsys):
    junit = tmp_path / "r.xml"
    assert run(capsys, "run", *MUTANT, *CLAMP, "--expectations", str(recorded), "--format", "junit",
               "--output", str(junit))[0] == 0
    suite = ET.parse(junit).getroot().find("testsuite")
    assert (suite.get("failures"), suite.get("skipped")) == ("0", "8")
    skipped = suite.findall("testcase/skipped")
    assert len(skipped) == 8 and all(s.get("type") == "pytest.xfail" and "expected failed" in s.get("message")
                                     for s in skipped)
    report = tmp_path / "r.json"
    numpy_manifest = _edit(recorded, lambda data: data.update(backend="numpy"))
    assert run(capsys, "run", "--backend", "numpy", *CLAMP, "--expectations", str(numpy_manifest),
               "--format", "json", "--output", str(report))[0] == 0
    document = json.loads(report.read_text())
    assert document["expectations"] == {"expected": 0, "unexpected-pass": 8}
    assert sum(r["expectation"] == "unexpected-pass" for r in document["results"]) == 8
    assert document["backends"][0]["device"] == "cpu"  # the NumPy backend's, which the mutant inherits
    _, out, _ = run(capsys, "run", "--backend", "numpy", *CLAMP, "--expectations", str(numpy_manifest),
                       "--format", "markdown")
    assert "| unexpected pass |" in out and "| unexpected-pass |" in out  # the summary column, the listed result


def test_report_command_applies_manifests_to_a_results_file(recorded, tmp_path, capsys):
    results = tmp_path / "r.jsonl"
    assert run(capsys, "run", *MUTANT, *CLAMP, "--results", str(results))[0] == 1
    assert {r.expectation for r in journal.read(results).results} == {""}  # the file holds results as judged
    code, out, _ = run(capsys, "report", str(results), "--expectations", str(recorded))
    assert code == 0 and "(8 of them expected failures" in out


def test_first_listing_entry_judges_a_result():
    def entry(outcome, line):
        return expectations.Expectation(f"m.yaml:{line}", "b", Status(outcome), "r", case="c")

    manifest = expectations.Manifest(Path("m.yaml"), "b", (entry("failed", 3), entry("error", 4)))
    result = Result("b", "c", "bce", "float32", Status.FAILED, "differs", "c.yaml:1")
    run_ = Run([BackendInfo("b", "test", True)], [result])
    marked, warnings = expectations.apply(run_, [manifest])
    assert marked.results[0].expectation == "expected"
    assert warnings == ["m.yaml:4: expectation c matches no result"]


def test_an_entry_naming_gradients_lists_only_those():
    entry = expectations.Expectation("m.yaml:3", "b", Status.FAILED, "r", case="c", wrt=("target",))
    assert entry.selects("b", "c", "float32", "target")
    assert not entry.selects("b", "c", "float32", "input") and not entry.selects("b", "c", "float32", None)


def test_update_expectations_names_the_failing_gradients(tmp_path, capsys):
    path = tmp_path / "m.yaml"
    code, _, _ = run(capsys, "run", "--backend", "tests.mutants:GradTargetClampedLikeTheLoss", "--cases",
                     "cases/gradients_bce.yaml", "-k", "^grad-bce-eps-floor-ends$", "--dtype", "float32",
                     "--no-isolation", "--update-expectations", str(path))
    assert code == 0
    (entry,) = yaml.safe_load(path.read_text())["expectations"]
    assert entry["wrt"] == ["target"]  # its d/d input passes, and is no unexpected pass
    code, out, _ = run(capsys, "run", "--backend", "tests.mutants:GradTargetClampedLikeTheLoss", "--cases",
                       "cases/gradients_bce.yaml", "-k", "^grad-bce-eps-floor-ends$", "--dtype", "float32",
                       "--no-isolation", "--expectations", str(path))
    assert code == 0 and "(1 of them expected failures, 0 unexpected passes)" in out


def test_a_backend_from_an_entry_point_is_rerun_by_name():
    info = BackendInfo("jax", "entry point jax = bce_jax:BACKEND", True)
    assert info.selector == "jax"
    assert BackendInfo("m", "tests.mutants:ClampAt50", True).selector == "tests.mutants:ClampAt50"


def test_the_example_adapter_manifest_lists_shipped_cases(shipped_cases):
    """examples/jax-adapter's manifest is valid and every entry lists a case x dtype (x gradient) that exists,
    so it goes stale visibly even where JAX is not installed."""
    manifest = expectations.load(Path(__file__).resolve().parent.parent / "examples/jax-adapter/expectations/jax.yaml")
    assert manifest.backend == "jax-example" and manifest.entries
    checks = [(case.id, dtype, wrt) for case in shipped_cases for dtype in case.dtypes for wrt in case.checks]
    for entry in manifest.entries:
        assert not any(raw in entry.reason for raw in ("elements differ", "accepted input")), entry.source  # explained
        assert any(entry.selects("jax-example", *check) for check in checks), entry.source


def test_a_manifest_written_for_integer_and_bool_cases_loads_back(tmp_path):
    """A rejection case of integer or bool tensors has results in that dtype: the manifest written for their
    failures lists the dtype, and its schema takes every dtype a case may ask for."""
    backend = BackendInfo("b", "built-in", True)
    failures = [Result("b", f"reject-{dtype}", "bce", dtype, Status.FAILED, "accepted it", "x.yaml:1")
                for dtype in NUMPY_DTYPES]
    manifest = expectations.write(tmp_path / "m.yaml", Run([backend], failures))
    assert [e.dtypes for e in manifest.entries] == [(dtype,) for dtype in NUMPY_DTYPES]
    case_dtypes = schema_validator("case-file").schema["$defs"]["dtype"]["enum"]
    assert schema_validator("expectations").schema["$defs"]["dtype"]["enum"] == case_dtypes == list(NUMPY_DTYPES)
