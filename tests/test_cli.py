"""The command line: exit status as a CI gate, one-line errors, report formats, third-party backends."""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from xml.etree import ElementTree as ET

import pytest

from conformance import registry
from conformance.backends.numpy_backend import NumpyBackend
from conformance.cli import main

DOC = ["--cases", "cases/document.yaml"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_passing_run_exits_0_and_prints_the_tables(capsys):
    code, out, _ = run(capsys, "run", "--backend", "numpy", *DOC, "--no-progress")
    assert code == 0, out
    assert "document-bce-mean" not in out  # only failures are listed by id
    assert "numpy" in out and "worst ulp" in out
    assert out.rstrip().endswith("0 failed, 0 error, 0 crashed, 0 timeout, 0 skipped, 0 unsupported, 0 unverified")


def test_failing_backend_exits_1_and_prints_a_rerun_command(capsys):
    code, out, _ = run(capsys, "run", "--backend", "tests.mutants:ClampAt50", "--cases", "cases/bce_special_points.yaml")
    assert code == 1
    assert "bce-clamp-p0-y1" in out
    assert "python -m conformance run --cases cases/bce_special_points.yaml --backend tests.mutants:ClampAt50" in out


def test_rerun_command_reruns_just_that_case(capsys):
    """Copied as printed: it selects the backend by the module:attr it was loaded from, and the case by id."""
    _, out, _ = run(capsys, "run", "--backend", "tests.mutants:ClampAt50", "--cases", "cases/bce_special_points.yaml")
    command = next(line.strip() for line in out.splitlines() if line.strip().startswith("python -m conformance run"))
    code, out, _ = run(capsys, *shlex.split(command)[3:])
    assert code == 1 and "0 passed, 1 failed, 0 error, 0 crashed, 0 timeout" in out


@pytest.mark.parametrize("argv, fragment", [
    (["run", "--backend", "no-such-backend"], "unknown backend 'no-such-backend'"),
    (["run", "--backend", "no_such_module:thing"], "backend 'no_such_module:thing': cannot load"),
    (["run", "--backend", "json:dumps"], "calling <function dumps"),
    (["run", "--backend", "json:JSONDecodeError"], "calling <class"),
    (["run", "--backend", "json:decoder"], "is not a backend adapter"),
    (["run", "-k", "("], "invalid regular expression"),
    (["run", "-k", "^nothing-matches$"], "no case id matches"),
    (["run", "--cases", "nowhere.yaml"], "nowhere.yaml: no such case file"),
])
def test_usage_errors_exit_2_with_one_line(capsys, argv, fragment):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert err.count("\n") == 1 and fragment in err and err.startswith("conformance: error: ")


def test_malformed_case_file_names_file_and_line(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("topic: t\ncases:\n  - id: x\n    description: d\n    op: nope\n")
    code, _, err = run(capsys, "run", "--cases", str(bad))
    assert code == 2 and f"{bad}:5" in err


def test_a_run_of_nothing_is_not_green(capsys):
    pytest.importorskip("torch")
    code, _, err = run(capsys, "run", "--backend", "torch-cuda", *DOC)
    assert code == 2 and "nothing ran" in err and "torch-cuda" in err


def test_json_report(capsys, tmp_path):
    target = tmp_path / "out" / "report.json"
    code, out, _ = run(capsys, "run", "--backend", "numpy", *DOC, "--format", "json", "--output", str(target))
    assert code == 0 and "worst ulp" in out  # the table still prints
    report = json.loads(target.read_text())
    assert report["format"] == "bce-conformance-report" and report["version"] == 1
    assert report["totals"]["passed"] == len(report["results"]) > 0
    first = report["results"][0]
    assert {"backend", "case_id", "op", "dtype", "status", "max_ulp_error", "headroom", "source"} <= set(first)
    assert report["environment"]["packages"]["numpy"]


def test_junit_report_parses(capsys):
    code, out, _ = run(capsys, "run", "--backend", "tests.mutants:ClampAt50", "--cases",
                       "cases/bce_special_points.yaml", "--format", "junit")
    root = ET.fromstring(out)
    suite = root.find("testsuite")
    assert code == 1 and suite.get("name") == "mutant-ClampAt50"
    failures = [case for case in suite.iter("testcase") if case.find("failure") is not None]
    assert int(suite.get("failures")) == len(failures) > 0


def test_markdown_report(capsys):
    code, out, _ = run(capsys, "run", "--backend", "numpy", *DOC, "--format", "markdown")
    assert code == 0 and out.startswith("# BCE conformance report") and "| backend" in out


def test_backends_command_lists_availability(capsys):
    code, out, _ = run(capsys, "backends")
    assert code == 0 and "numpy" in out and "torch-cuda" in out
    assert "gradients" in out and "bce, bce_with_logits" in out


def test_cases_command(capsys):
    code, out, _ = run(capsys, "cases", "-k", "^document-")
    assert code == 0 and "6 cases" in out


class _Broken:
    """An adapter whose every call breaks: its results are errors, and others still run."""

    name = "broken"
    dtypes = frozenset({"float32"})

    def availability(self):
        from conformance import Availability
        return Availability(True)

    def version(self):
        return "0"

    def sigmoid(self, input):
        raise AttributeError("sigmoid")

    def bce(self, input, target, *, weight, reduction):
        raise KeyError("boom")

    def bce_with_logits(self, input, target, *, weight, pos_weight, reduction):
        raise AssertionError("internal")


def test_entry_point_backends_are_found_and_broken_ones_reported(monkeypatch, capsys, tmp_path):
    """A real installed distribution (a .dist-info on sys.path), so that worker processes find it too."""
    dist = tmp_path / "plugin_example-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: plugin-example\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\n"
                                           "broken = tests.test_cli:_Broken\nmissing = no_such_package:adapter\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    code, out, _ = run(capsys, "backends")
    assert code == 0 and "failed to load: ModuleNotFoundError" in out
    code, out, _ = run(capsys, "run", "--backend", "broken", "--backend", "numpy", *DOC, "--dtype", "float32")
    assert code == 1
    assert "adapter bug" in out or "raised on input" in out
    assert "numpy      bce              float32" in out  # the other backend's results are all there


def test_python_dash_m_entry(tmp_path):
    result = subprocess.run([sys.executable, "-m", "conformance", "run", "--backend", "numpy", *DOC],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


class LossOnly(NumpyBackend):
    """The NumPy backend without its gradient capability."""

    name = "loss-only"
    bce_grad = None
    bce_with_logits_grad = None


GRAD_DOC = ["--cases", "cases/gradients_document.yaml", "--no-progress"]


def test_a_backend_without_gradients_is_unsupported_not_failed(capsys):
    code, out, _ = run(capsys, "run", "--backend", "tests.test_cli:LossOnly", "--backend", "numpy", *GRAD_DOC)
    assert code == 0, out
    header = next(line for line in out.splitlines() if line.startswith("backend    op"))
    assert "unsupported" in header  # the summary gains the column when a backend lacks gradients
    assert out.rstrip().endswith(", 0 skipped, 32 unsupported, 0 unverified")  # 4 cases x 4 dtypes x 2 gradients


def test_require_grad_turns_unsupported_into_failures(capsys):
    code, out, _ = run(capsys, "run", "--backend", "tests.test_cli:LossOnly", *GRAD_DOC, "--require-grad",
                       "--dtype", "float32", "--format", "json")
    assert code == 1
    report = json.loads(out)
    assert report["totals"] == {"passed": 0, "failed": 8, "error": 0, "crashed": 0, "timeout": 0, "skipped": 0,
                                "unsupported": 0, "unverified": 0}
    assert report["results"][0]["message"] == ("loss-only lacks grad.bce: no gradient capability for bce (bce_grad); "
                                               "--require-grad makes this a failure")
    code, _, _ = run(capsys, "run", "--backend", "numpy", *GRAD_DOC, "--require-grad")
    assert code == 0


def test_gradient_results_are_told_apart_in_every_format(capsys, tmp_path):
    code, out, _ = run(capsys, "run", "--backend", "numpy", *GRAD_DOC, "--dtype", "float64", "-k", "with-logits-mean",
                       "--format", "json", "--output", str(tmp_path / "r.json"))
    assert code == 0
    assert re.search(r"numpy +bce_with_logits +float64 +d/d input +1 +1 ", out)
    assert re.search(r"numpy +bce_with_logits +float64 +d/d target +1 +1 ", out)
    report = json.loads((tmp_path / "r.json").read_text())
    assert {r["wrt"] for r in report["results"]} == {"input", "target"}
    assert {(row["wrt"], row["passed"]) for row in report["summary"]} == {("input", 1), ("target", 1)}
    assert report["totals"]["unsupported"] == 0
    assert report["backends"][0]["gradients"] == ["bce", "bce_with_logits", "sigmoid_bce"]
    code, out, _ = run(capsys, "run", "--backend", "tests.test_cli:LossOnly", *GRAD_DOC, "--format", "junit")
    suite = ET.fromstring(out).find("testsuite")
    names = [case.get("name") for case in suite.iter("testcase")]
    assert "grad-document-bce-mean[float32][d/d target]" in names
    assert int(suite.get("skipped")) == len(names) == 32


def test_a_wrong_gradient_names_the_tensor(capsys):
    code, out, _ = run(capsys, "run", "--backend", "tests.mutants:GradientSignFlipped", *GRAD_DOC, "--dtype", "float32",
                       "-k", "grad-document-bce-mean")
    assert code == 1
    assert "grad-document-bce-mean (d/d input)" in out and "grad-document-bce-mean (d/d target)" in out
