"""`diff`: a baseline against a new run; an injected regression exits 1, drift shows before a failure."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance.cli import main

CASES = ["--cases", "cases/document.yaml", "--cases", "cases/bce_special_points.yaml", "--dtype", "float32",
         "--no-progress", "--format", "json"]


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, Path]:
    """A numpy run (the baseline), and a mutant's run relabelled as numpy: the same backend, broken."""
    folder = tmp_path_factory.mktemp("diff")
    assert main(["run", "--backend", "numpy", *CASES, "--output", str(folder / "numpy.json")]) == 0
    assert main(["run", "--backend", "tests.mutants:ClampAt50", *CASES, "--output", str(folder / "mutant.json")]) == 1
    document = json.loads((folder / "mutant.json").read_text())
    for result in document["results"]:
        result["backend"] = "numpy"
    (folder / "broken.json").write_text(json.dumps(document))
    return {"numpy": folder / "numpy.json", "broken": folder / "broken.json",
            "numpy.jsonl": folder / "numpy.results.jsonl"}


def diff(capsys, *argv) -> tuple[int, str, str]:
    code = main(["diff", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def rows(out: str, change: str) -> list[list[str]]:
    """The table's rows of one kind of change, split into words."""
    return [line.split() for line in out.splitlines() if line.startswith(change + " ")]


def edited(reports, tmp_path, edit, name="edited.json") -> Path:
    document = json.loads(reports["numpy"].read_text())
    edit(document)
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return path


def _result(document, case_id):
    return next(r for r in document["results"] if r["case_id"] == case_id)


def test_an_injected_regression_exits_1(reports, capsys):
    code, out, _ = diff(capsys, reports["numpy"], reports["broken"])
    assert code == 1
    regressions = rows(out, "regression")
    assert ["regression", "numpy", "bce-clamp-p0-y1", "float32", "passed", "failed"] == regressions[0][:6]
    assert len(regressions) == 10
    assert out.rstrip().endswith("regression: 10, fix: 0, drift: 0, changed: 0, new: 0, removed: 0, unchanged: 13")


def test_the_reverse_is_a_list_of_fixes_and_exits_0(reports, capsys):
    code, out, _ = diff(capsys, reports["broken"], reports["numpy"])
    assert code == 0 and "regression: 0, fix: 10," in out and out.startswith("change")


def test_the_same_run_has_no_change(reports, capsys):
    code, out, _ = diff(capsys, reports["numpy"], reports["numpy.jsonl"])  # a results file reads as its report
    assert code == 0 and out == "regression: 0, fix: 0, drift: 0, changed: 0, new: 0, removed: 0, unchanged: 23\n"


@pytest.mark.parametrize("before, after", [("failed", "crashed"), ("crashed", "timeout"), ("error", "failed")])
def test_a_new_failure_class_is_a_regression(reports, tmp_path, capsys, before, after):
    old = edited(reports, tmp_path, lambda d: _result(d, "document-bce-mean").update(status=before), "old.json")
    new = edited(reports, tmp_path, lambda d: _result(d, "document-bce-mean").update(status=after), "new.json")
    code, out, _ = diff(capsys, old, new)
    assert code == 1 and [r[:6] for r in rows(out, "regression")] == [
        ["regression", "numpy", "document-bce-mean", "float32", before, after]]


def test_passed_to_skipped_is_a_change_not_a_regression(reports, tmp_path, capsys):
    new = edited(reports, tmp_path, lambda d: _result(d, "document-bce-mean").update(status="skipped"))
    code, out, _ = diff(capsys, reports["numpy"], new)
    assert code == 0 and "changed: 1" in out


def _headroom(value):
    return lambda d: _result(d, "bce-clamp-p0-y1").update(headroom=value)


@pytest.mark.parametrize("old, new, options, drifted", [
    (0.1, 0.6, [], True),  # grew six-fold, past one half
    (0.1, 0.4, [], False),  # grew four-fold, still far from the limit
    (0.4, 0.7, [], False),  # near the limit, but not doubled
    (0.0, 0.9, [], True),
    (0.1, 0.4, ["--drift-above", "0.3"], True),
    (0.1, 0.6, ["--drift-factor", "10"], False),
])
def test_headroom_drift(reports, tmp_path, capsys, old, new, options, drifted):
    before = edited(reports, tmp_path, _headroom(old), "before.json")
    after = edited(reports, tmp_path, _headroom(new), "after.json")
    code, out, _ = diff(capsys, before, after, *options)
    assert code == 0
    assert f"drift: {int(drifted)}," in out
    assert [r[:8] for r in rows(out, "drift")] == ([["drift", "numpy", "bce-clamp-p0-y1", "float32", "passed", "passed",
                                                     f"{old:g}", f"{new:g}"]] if drifted else [])


def test_new_and_removed_results(reports, tmp_path, capsys):
    fewer = edited(reports, tmp_path, lambda d: d["results"].remove(_result(d, "document-bce-mean")))
    code, out, _ = diff(capsys, fewer, reports["numpy"])
    assert code == 0 and "new: 1, removed: 0" in out
    assert rows(out, "new")[0][:3] == ["new", "numpy", "document-bce-mean"]
    code, out, _ = diff(capsys, reports["numpy"], fewer)
    assert code == 0 and "new: 0, removed: 1" in out


def test_declared_fields_are_read(reports, tmp_path, capsys):
    """A report with the expectations manifest's `expectation` field is a valid report."""
    marked = edited(reports, tmp_path, lambda d: _result(d, "document-bce-mean").update(expectation="expected"))
    assert diff(capsys, reports["numpy"], marked)[0] == 0


@pytest.mark.parametrize("content, fragment", [
    (None, "cannot read report"),
    ("not json", "not JSON"),
    ('{"format": "bce-conformance-report"}', "not a bce-conformance report of version 1"),
    ('{"record": "run"}\n', "not a results record"),
])
def test_bad_input_is_one_line_naming_the_file_and_exits_2(reports, tmp_path, capsys, content, fragment):
    path = tmp_path / ("bad.jsonl" if content and content.startswith('{"record"') else "bad.json")
    if content is not None:
        path.write_text(content)
    code, out, err = diff(capsys, reports["numpy"], path)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and str(path) in err and fragment in err


def test_the_json_changes_hold_both_results_and_the_counts(reports, tmp_path, capsys):
    output = tmp_path / "changes.json"
    code, out, _ = diff(capsys, reports["numpy"], reports["broken"], "--format", "json", "--output", output)
    document = json.loads(output.read_text())
    assert code == 1 and document["regressed"] is True
    assert document["counts"] == {"regression": 10, "fix": 0, "drift": 0, "changed": 0, "new": 0, "removed": 0,
                                  "unchanged": 13}
    first = document["changes"][0]
    assert (first["change"], first["case_id"], first["old"]["status"], first["new"]["status"]) == (
        "regression", "bce-clamp-p0-y1", "passed", "failed")
    assert rows(out, "regression")  # the table still prints


def test_the_markdown_changes_are_a_github_table(reports, capsys):
    code, out, _ = diff(capsys, reports["numpy"], reports["broken"], "--format", "markdown")
    lines = out.splitlines()
    assert code == 1 and lines[0].startswith("| change") and set(lines[1]) <= set("|-: ")
    assert sum(line.startswith("| regression") for line in lines) == 10
    assert lines[-1].startswith("regression: 10, fix: 0")
