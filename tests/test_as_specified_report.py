"""A pass that only PyTorch's algorithm in the dtype admits is labelled, with its distance from exact, in every format."""
from __future__ import annotations

import json
from xml.etree import ElementTree as ET

import pytest

from conformance import report
from conformance.compare import as_specified_label
from conformance.loader import schema_validator
from conformance.results import AS_SPECIFIED, EXACT, BackendInfo, Result, Run, Status

LABEL = as_specified_label(1.7e7)


@pytest.fixture
def run() -> Run:
    common = {"backend": "torch-cpu", "op": "bce_with_logits", "dtype": "float32", "source": "cases/x.yaml:1",
              "max_abs_error": 1e-7, "allowed": 1e-6, "headroom": 0.1, "index": [0]}
    return Run(backends=[BackendInfo("torch-cpu", "built-in", True, version="2.13.0")], results=[
        Result(case_id="logits-tail", status=Status.PASSED, message=LABEL, max_ulp_error=1.7e7,
               matched=AS_SPECIFIED, **common),
        Result(case_id="logits-ok", status=Status.PASSED, message="", max_ulp_error=0.5, matched=EXACT, **common),
    ])


def test_the_label_names_the_distance_from_exact():
    assert LABEL == "as specified; 1.7e+07 ulp from exact"


def test_table_and_markdown_count_and_list_it(run):
    for text in (report.render_table(run), report.render_markdown(run)):
        assert f"passed ({LABEL})" in text and "logits-tail" in text
        header = next(line for line in text.splitlines() if "worst ulp" in line)
        assert "as specified" in header  # the count per summary row
        assert "1.7e+07 (as specified)" in text  # the worst-ulp column says which reference matched


def test_json_counts_and_labels_it_and_validates(run):
    document = json.loads(report.render_json(run))
    (row,) = document["summary"]
    assert row["as_specified"] == 1 and row["worst_ulp_matched"] == AS_SPECIFIED
    assert [r["matched"] for r in document["results"]] == [AS_SPECIFIED, EXACT]
    assert document["results"][0]["message"] == LABEL
    assert [e.message for e in schema_validator("report").iter_errors(document)] == []


def test_junit_labels_the_test_case(run):
    root = ET.fromstring(report.render_junit(run).split("?>", 1)[1])
    (case,) = [c for c in root.iter("testcase") if c.get("name").startswith("logits-tail")]
    assert case.find("system-out").text == f"passed ({LABEL})"
    assert case.find("properties/property").get("value") == AS_SPECIFIED
    (plain,) = [c for c in root.iter("testcase") if c.get("name").startswith("logits-ok")]
    assert plain.find("system-out") is None
