"""CI gates on a run: --require (an unavailable backend fails) and --min-cases (a run of too little fails), and the
one gate policy that decides them all (conformance/gates.py)."""
from __future__ import annotations

import json
import signal

import pytest
import torch
from junitparser import Failure, JUnitXml

from conformance import gates
from conformance.backends.numpy_backend import NumpyBackend
from conformance.backends.torch_backend import TorchBackend
from conformance.cli import main
from conformance.errors import ConfigError
from conformance.gates import Policy
from conformance.results import UNEXPECTED_PASS, BackendInfo, Result, Run, Shard, Status

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


def _result(backend: str, status: Status, dtype: str = "float32", **fields) -> Result:
    return Result(backend, f"case-{status}-{dtype}", "bce", dtype, status, "message", "cases/x.yaml:1", **fields)


def _info(name: str, available: bool = True, **fields) -> BackendInfo:
    return BackendInfo(name, "built-in", available, **fields)


def test_the_gate_policy_in_one_call():
    """gates.judge: each gate turns a passing run red with its own line; the verdict carries the judged run."""
    run = Run([_info("a"), _info("b", False, reason="not installed")],
              [_result("a", Status.PASSED), _result("a", Status.UNSUPPORTED, wrt="input"),
               _result("a", Status.PASSED, "float64", expectation=UNEXPECTED_PASS)])
    plain = gates.judge(run, Policy())
    assert plain.passed and plain.status == gates.EXIT_OK and plain.reasons == () and plain.failures == ()
    graded = gates.judge(run, Policy(require_grad=True))
    assert graded.status == gates.EXIT_FAILED and [r.status for r in graded.failures] == [Status.FAILED]
    assert graded.failures[0].message.endswith("--require-grad makes this a failure")
    strict = gates.judge(run, Policy(strict_expectations=True))
    assert strict.failures[0].message.endswith("--strict-expectations makes this a failure")
    assert gates.judge(run, Policy(required=("b",))).reasons == ("required backend b is unavailable: not installed",)
    assert gates.judge(run, Policy(min_cases=2, dtypes=("float32", "float64"))).reasons == (
        "--min-cases 2 not met: a float32 ran 1, a float64 ran 1",)
    assert gates.judge(run, Policy(min_coverage=100)).reasons == ("--min-coverage 100% not met: a 2/3 (66.7%)",)
    assert gates.judge(run, Policy(min_coverage=66)).passed
    with pytest.raises(ConfigError, match="--require c: no such backend in this run"):
        gates.judge(run, Policy(required=("c",)))


def test_judging_twice_changes_nothing():
    """The plugin judges each test's result, then the session's results again."""
    policy = Policy(require_grad=True, strict_expectations=True)
    results = [_result("a", Status.UNSUPPORTED), _result("a", Status.PASSED, expectation=UNEXPECTED_PASS)]
    once = [policy.on_unexpected_pass(policy.on_unsupported(r)) for r in results]
    assert [policy.on_unexpected_pass(policy.on_unsupported(r)) for r in once] == once
    assert [r.status for r in once] == [Status.FAILED, Status.FAILED]


def test_an_unfinished_run_an_empty_run_and_an_interrupted_run():
    unfinished = Run([_info("a")], [_result("a", Status.PASSED)], complete=False)
    verdict = gates.judge(unfinished, Policy())
    assert verdict.status == gates.EXIT_FAILED and verdict.unfinished  # merge of a shard that did not finish
    assert gates.judge(unfinished, Policy(partial=True)).passed  # report --partial
    assert gates.judge(unfinished, Policy(), interrupted=signal.SIGTERM).status == 128 + signal.SIGTERM
    skipped = Run([_info("a"), _info("b", False, reason="no GPU")], [_result("a", Status.SKIPPED)])
    assert gates.judge(skipped, Policy()).status == gates.EXIT_USAGE
    assert gates.judge(skipped, Policy()).reasons == ("nothing ran (b: no GPU)",)
    empty_shard = Run([_info("a")], [], shard=Shard(2, 3, ("x",)))
    assert gates.judge(empty_shard, Policy()).passed


def test_a_manifest_lists_what_require_grad_fails(capsys, tmp_path):
    """--require-grad judges before the manifests: --update-expectations records its failures, and they are expected."""
    manifest = tmp_path / "loss-only.yaml"
    argv = ["run", "--backend", "tests.test_cli:LossOnly", "--cases", "cases/gradients_document.yaml", "--no-progress",
            "--no-isolation", "--dtype", "float32", "-k", "grad-document-bce-mean", "--require-grad"]
    code, out, err = run(capsys, *argv, "--update-expectations", str(manifest))
    assert code == 0 and "wrote 1 expectations" in err and "matches no result" not in err
    assert "2 failed" in out and "(2 of them expected failures" in out
    assert run(capsys, *argv, "--expectations", str(manifest))[0] == 0
    assert run(capsys, *argv)[0] == 1  # without the manifest, the failures fail the run
