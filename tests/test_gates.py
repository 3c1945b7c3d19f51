"""CI gates on a run: --require (an unavailable backend fails) and --min-cases (a run of too little fails)."""
from __future__ import annotations

import json

import pytest
import torch
from junitparser import Failure, JUnitXml

from conformance.backends.numpy_backend import NumpyBackend
from conformance.backends.torch_backend import TorchBackend
from conformance.cli import main

DOC = ["--cases", "cases/document.yaml", "--no-progress"]
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="torch-cuda is available on this machine")


class Float64Only(NumpyBackend):
    """A backend whose capabilities leave out every dtype but float64: a run of it skips three of four dtypes."""

    name = "float64-only"
    dtypes = frozenset({"float64"})


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@NO_GPU
def test_a_plain_run_skips_the_unavailable_cuda_backend(capsys):
    code, out, err = run(capsys, "run", *DOC, "-k", "^document-bce-mean$")
    assert code == 0 and err == ""
    assert any(line.split()[:2] == ["torch-cuda", "unavailable"] for line in out.splitlines())


@NO_GPU
@pytest.mark.parametrize("backends", [[], ["--backend", "numpy"]])  # --require selects the backend it names
def test_require_makes_an_unavailable_backend_a_failure(capsys, tmp_path, backends):
    output = tmp_path / "run.json"
    code, out, err = run(capsys, "run", *DOC, *backends, "--require", "torch-cuda", "--format", "json",
                         "--output", str(output))
    assert code == 1
    reason = TorchBackend("cuda").availability().reason  # names the installed torch's version
    assert err.splitlines() == [f"conformance: required backend torch-cuda is unavailable: {reason}"]
    assert "unavailable (required: failed)" in out and out.rstrip().endswith("required backend torch-cuda unavailable")
    cuda = next(b for b in json.loads(output.read_text())["backends"] if b["name"] == "torch-cuda")
    assert cuda["required"] is True and cuda["available"] is False
    assert json.loads(output.read_text())["totals"]["failed"] == 0  # every result that ran passed


@NO_GPU
def test_require_alone_still_fails_a_run_that_ran_nothing(capsys):
    code, _, err = run(capsys, "run", *DOC, "--backend", "torch-cuda", "--require", "torch-cuda")
    assert code == 1 and "nothing ran" not in err and "required backend torch-cuda is unavailable" in err


@NO_GPU
def test_require_in_junit_is_a_failure_a_consumer_counts(capsys, tmp_path):
    output = tmp_path / "run.xml"
    code, _, _ = run(capsys, "run", *DOC, "--backend", "numpy", "--require", "torch-cuda", "--format", "junit",
                     "--output", str(output))
    suites = {suite.name: suite for suite in JUnitXml.fromfile(str(output))}
    assert code == 1 and suites["torch-cuda"].failures == 1 and suites["torch-cuda"].skipped == 0
    (result,) = next(iter(suites["torch-cuda"])).result
    assert isinstance(result, Failure) and "required backend unavailable" in result.message
    assert suites["numpy"].failures == 0


def test_require_of_an_available_backend_passes(capsys):
    code, out, err = run(capsys, "run", *DOC, "--backend", "numpy", "--require", "numpy")
    assert code == 0 and err == "" and "required" not in out


def test_require_on_a_results_file(capsys, tmp_path):
    """`report FILE --require NAME` gates a recorded run; a name the run does not hold is a usage error."""
    results = tmp_path / "run.jsonl"
    assert run(capsys, "run", *DOC, "--backend", "numpy", "--backend", "torch-cuda", "--results", str(results))[0] == 0
    assert run(capsys, "report", str(results), "--require", "torch-cuda")[0] == 1
    code, out, err = run(capsys, "report", str(results), "--require", "torch-cpu")
    assert code == 2 and out == ""
    assert err == "conformance: error: --require torch-cpu: no such backend in this run (backends: numpy, torch-cuda)\n"


def test_require_of_an_unknown_backend_is_a_usage_error(capsys):
    code, _, err = run(capsys, "run", *DOC, "--require", "no-such-backend")
    assert code == 2 and err.count("\n") == 1 and "unknown backend 'no-such-backend'" in err


def test_min_cases_met(capsys):
    code, _, err = run(capsys, "run", *DOC, "--backend", "numpy", "--min-cases", "5")
    assert code == 0 and err == ""


def test_min_cases_fails_a_run_that_ran_too_few(capsys):
    code, out, err = run(capsys, "run", *DOC, "--backend", "numpy", "--min-cases", "6")
    assert code == 1 and "0 failed" in out  # every result passed; there were too few of them
    assert err == "conformance: --min-cases 6 not met: numpy bfloat16 ran 5\n"


def test_min_cases_catches_a_capability_mistake(capsys):
    """A backend that skips three dtypes passes a plain run; --min-cases fails it, naming each backend x dtype."""
    argv = ["run", *DOC, "--backend", "tests.test_gates:Float64Only"]
    code, out, err = run(capsys, *argv)
    assert code == 0 and "0 failed" in out and " skipped" in out
    code, _, err = run(capsys, *argv, "--min-cases", "1")
    assert code == 1
    assert err == ("conformance: --min-cases 1 not met: float64-only float16 ran 0, float64-only bfloat16 ran 0, "
                   "float64-only float32 ran 0\n")
    code, _, err = run(capsys, *argv, "--min-cases", "1", "--dtype", "float64")  # only the dtypes asked for count
    assert code == 0 and err == ""


def test_min_cases_keeps_a_failing_run_failed(capsys):
    code, _, err = run(capsys, "run", *DOC, "--backend", "tests.mutants:SumForMean", "--min-cases", "1")
    assert code == 1 and err == ""


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_min_cases_must_be_a_positive_count(capsys, value):
    with pytest.raises(SystemExit) as exit_:
        main(["run", *DOC, "--min-cases", value])
    assert exit_.value.code == 2 and "is not a positive whole number" in capsys.readouterr().err
