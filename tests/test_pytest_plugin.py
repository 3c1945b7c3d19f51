"""The pytest plugin, in pytest sessions of their own (pytester): one test per case x dtype, the harness's messages,
expectations as xfail / XPASS, properties, and -k, -x, --junitxml and pytest-xdist's -n as usual."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from conformance import entries, options, probing, runner
from conformance.backends.numpy_backend import NumpyBackend
from conformance.loader import load_cases
from conformance.options import layouts
from conformance.results import Status

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "cases"
PLUGIN = ["-p", "conformance.pytest_plugin", "-p", "no:cacheprovider"]
MUTANT = ["--conformance-backend", "tests.mutants:ClampAt50"]
CLAMP = ["--conformance-cases", str(CASES / "bce_special_points.yaml"), "-k", "bce-clamp-p0 or bce-clamp-p1"]


@pytest.fixture
def session(pytester, monkeypatch):
    """Runs pytest in-process with the plugin loaded explicitly (installed, it also loads from its entry point)."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")

    def run(*args: str) -> pytest.RunResult:
        return pytester.runpytest(*PLUGIN, *args)

    return run


def test_loading_the_plugin_imports_no_optional_dependency():
    """Installed, it loads in every pytest session of the environment, where hypothesis may be absent."""
    code = ("import sys; import conformance.pytest_plugin; "
            "assert 'hypothesis' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_the_entry_point_names_the_plugin():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["pytest11"] == {"bce_conformance": "conformance.pytest_plugin"}


def test_without_the_option_it_collects_nothing_of_its_own(pytester, session):
    pytester.makepyfile("def test_mine(): pass")
    result = session("-q")
    result.assert_outcomes(passed=1)
    assert "conformance" not in result.stdout.str()


def test_one_test_per_case_and_dtype_with_readable_ids(pytester, session):
    pytester.makepyfile("def test_mine(): pass")  # the project's own tests still run beside
    result = session("--conformance-backend", "numpy", "--conformance-cases", str(CASES / "document.yaml"),
                     "--collect-only", "-q")
    ids = [line for line in result.stdout.lines if "::" in line]
    assert "conformance-numpy::document-bce-mean[float32]" in ids and len(ids) == 23 + 1
    result = session("--conformance-backend", "numpy", "--conformance-cases", str(CASES / "document.yaml"))
    result.assert_outcomes(passed=24)


def test_gradient_cases_give_one_test_per_differentiated_tensor(session):
    result = session("--conformance-backend", "numpy", "--conformance-cases", str(CASES / "gradients_document.yaml"),
                     "--conformance-dtype", "float32", "-k", "grad-document-bce-mean", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*grad-document-bce-mean[[]float32-input[]] PASSED*",
                                 "*grad-document-bce-mean[[]float32-target[]] PASSED*"])


def test_a_failure_reports_the_harness_message_and_x_stops(session):
    result = session(*MUTANT, *CLAMP, "--conformance-dtype", "float32")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["failed: 1 / 1 elements differ; error 50 * got 50.0, expected 100.0*"])
    assert "Traceback" not in result.stdout.str() and "def runtest" not in result.stdout.str()
    session(*MUTANT, *CLAMP, "--conformance-dtype", "float32", "-x").assert_outcomes(passed=1, failed=1)


def _manifest(pytester, backend="mutant-ClampAt50", extra=""):
    return pytester.makefile(".yaml", manifest=f"backend: {backend}\nexpectations:\n"
                                               f"  - {{case: bce-clamp-p0-y1, outcome: failed, reason: clamps at -50}}\n"
                                               f"  - {{case: bce-clamp-p1-y0, outcome: failed, reason: clamps at -50}}\n"
                                               + extra)


def test_listed_failures_are_xfail_and_an_unlisted_one_fails(pytester, session):
    manifest = _manifest(pytester)
    session(*MUTANT, *CLAMP, "--conformance-expectations", str(manifest)).assert_outcomes(passed=8, xfailed=8)
    manifest = _manifest(pytester, extra="  - {case: nothing-like-it, outcome: failed, reason: stale}\n")
    manifest.write_text(manifest.read_text().replace("  - {case: bce-clamp-p1-y0, outcome: failed, reason: clamps "
                                                     "at -50}\n", ""))
    result = session(*MUTANT, *CLAMP, "--conformance-expectations", str(manifest))
    result.assert_outcomes(passed=8, xfailed=4, failed=4, warnings=1)
    result.stdout.fnmatch_lines([f"*{manifest}:4: expectation nothing-like-it matches no case*"])


def test_listed_cases_that_pass_are_xpass_strict_when_asked(pytester, session):
    manifest = _manifest(pytester, backend="numpy")
    args = ["--conformance-backend", "numpy", *CLAMP, "--conformance-expectations", str(manifest)]
    session(*args).assert_outcomes(passed=8, xpassed=8)
    for strict in ("--conformance-strict-expectations", "-oxfail_strict=true"):  # the option, or pytest's ini
        result = session(*args, strict)
        result.assert_outcomes(passed=8, failed=8)
        result.stdout.fnmatch_lines(["*[[]XPASS(strict)[]] listed as failed in *, but passed*"])


def test_a_failure_other_than_the_listed_outcome_fails(pytester, session):
    manifest = _manifest(pytester)
    manifest.write_text(manifest.read_text().replace("outcome: failed", "outcome: crashed"))
    result = session(*MUTANT, *CLAMP, "--conformance-expectations", str(manifest))
    result.assert_outcomes(passed=8, failed=8)
    result.stdout.fnmatch_lines(["*listed as crashed in *, but failed*"])


def test_junitxml_names_each_case(pytester, session):
    report = pytester.path / "junit.xml"
    session(*MUTANT, *CLAMP, "--conformance-dtype", "float32", f"--junitxml={report}")
    cases = {c.get("name"): c for c in ET.parse(report).getroot().iter("testcase")}
    assert set(cases) == {f"bce-clamp-p{p}-y{y}[float32]" for p in (0, 1) for y in (0, 1)}
    assert "differ; error 50 " in cases["bce-clamp-p0-y1[float32]"].find("failure").get("message")
    assert cases["bce-clamp-p0-y1[float32]"].get("classname") == "conformance-mutant-ClampAt50"


EVERYWHERE = ["--conformance-backend", "tests.mutants:Float16Inside"]
"""A mutant wrong on almost every sample, so that a property search finds and shrinks it in a few steps."""


def test_properties_are_tests_too(session):
    args = ["--conformance-cases", str(CASES / "document.yaml"), "--conformance-properties", "-k",
            "matches-reference-bce[ and not gradient", "--conformance-dtype", "float64"]
    session("--conformance-backend", "numpy", *args).assert_outcomes(passed=1)
    result = session(*EVERYWHERE, *args)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["failed: 1 / 1 elements differ*", "*sample=Sample(op='bce',*"])


@pytest.mark.parametrize("args, fragment", [
    (["--conformance-backend", "no-such-backend"], "unknown backend 'no-such-backend'"),
    (["--conformance-backend", "numpy", "--conformance-cases", "nowhere.yaml"], "nowhere.yaml: no such case file"),
    (["--conformance-backend", "numpy", "--conformance-expectations", "m.yaml"],
     "m.yaml:3: expectations/0: 'reason' is a required property"),
])
def test_configuration_errors_are_usage_errors_naming_the_file(pytester, session, args, fragment):
    pytester.makefile(".yaml", m="backend: numpy\nexpectations:\n  - {case: c, outcome: failed}\n")
    result = session(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: conformance: *{fragment}*"])


def test_pytest_xdist_spreads_the_cases(pytester, monkeypatch):
    """In worker processes (-n 2): the same tests, the same outcomes, expectations included; each worker computes on
    one thread (as run's worker processes do), not on every core."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    pytester.makepyfile("import os\n\ndef test_threads():\n    assert os.environ['OMP_NUM_THREADS'] == '1'\n")
    manifest = _manifest(pytester)
    result = pytester.runpytest_subprocess("-p", "xdist.plugin", *PLUGIN, "-n", "2", *MUTANT, *CLAMP[:-1], f"{CLAMP[-1]} or threads",
                                           "--conformance-expectations", str(manifest), "--conformance-min-cases", "5")
    result.assert_outcomes(passed=8 + 1, xfailed=8)
    result.stdout.fnmatch_lines(["*2 workers*"])
    # the gates judge the workers' results in the controlling process: 4 per dtype
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["conformance: --min-cases 5 not met: mutant-ClampAt50 float16 ran 4, *"])


def test_a_worker_that_goes_down_leaves_the_gates_an_unfinished_run(pytester, monkeypatch):
    """Each xdist worker hands its results over as it finishes: a segfault in one (calls in its own process) loses
    them, and the gates say so, even though the restarted worker's tests pass."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    result = pytester.runpytest_subprocess("-p", "xdist.plugin", *PLUGIN, "-n", "2", "--conformance-backend",
                                           "tests.faults:Segfaults", "--conformance-cases",
                                           str(ROOT / "tests" / "data" / "fault_cases.yaml"),
                                           "--conformance-dtype", "float64")
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(["conformance: pytest-xdist worker gw* went down (*",
                                 "conformance: the run did not finish (*"])


def test_the_session_probes_each_backend_once():
    """The plugin probes a backend once, then runs one case x dtype at a time with that probe: runner.run does not
    probe again (it cost torch-cpu 2 of its 13 CPU s, importlib.metadata reading torch's version at every call)."""

    class Counted(NumpyBackend):
        probes = 0

        def availability(self):
            Counted.probes += 1
            return super().availability()

    (entry,) = entries(Counted())
    (info,) = probing.inspect([entry])
    cases = load_cases([CASES / "document.yaml"])[:3]
    for case in cases:
        run = runner.run([case], [entry], ["float64"], isolation=None, infos=[info])
        assert run.backends == [info] and {r.status for r in run.results} == {Status.PASSED}
    assert Counted.probes == 1


def test_it_collects_what_run_runs(session, shipped_cases):
    """Every result of `python -m conformance run` is one test, integer and boolean dtypes and layouts included."""
    expected = sum(len(case.checks) * len(runner.layouts_of(case, dtype, case.layouts))
                   for case in shipped_cases for dtype in case.dtypes)
    result = session("--conformance-backend", "numpy", "--collect-only", "-q")
    assert sum("::" in line for line in result.stdout.lines) == expected
    assert "conformance-numpy::rank3-bce-none[float32-fortran]" in result.stdout.lines


def test_a_manifest_lists_properties_by_id(pytester, session):
    args = [*EVERYWHERE, "--conformance-cases", str(CASES / "document.yaml"), "--conformance-properties", "-k",
            "matches-reference-bce[ and not gradient", "--conformance-dtype", "float64"]
    listed = pytester.makefile(".yaml", listed="backend: mutant-Float16Inside\nexpectations:\n"
                                               "  - {case: matches-reference, outcome: failed, reason: float16 inside}\n")
    result = session(*args, "--conformance-expectations", str(listed))
    result.assert_outcomes(xfailed=1)
    assert "matches no case" not in result.stdout.str()
    other = pytester.makefile(".yaml", other="backend: mutant-Float16Inside\nexpectations:\n"
                                             "  - {pattern: '^matches-', outcome: crashed, reason: wrong}\n")
    result = session(*args, "--conformance-expectations", str(other))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*listed as crashed in *other.yaml:3, but failed*"])


def test_the_layout_option_is_the_command_lines(session):
    """--conformance-layouts, defined once with run's --layouts (conformance/options.py): the same tests as results."""
    cases = load_cases([CASES / "document.yaml"])
    expected = sum(len(case.checks) * len(runner.layouts_of(case, dtype, layouts("fortran,c")))
                   for case in cases for dtype in case.dtypes)
    args = ["--conformance-backend", "numpy", "--conformance-cases", str(CASES / "document.yaml")]
    result = session(*args, "--conformance-layouts", "fortran,c", "--collect-only", "-q")
    ids = [line for line in result.stdout.lines if "::" in line]
    assert len(ids) == expected > 23 and "conformance-numpy::document-bce-mean[float32-fortran]" in ids
    session(*args, "--conformance-layouts", "fortran", "-k", "document-bce-mean and float32").assert_outcomes(passed=1)
    result = session(*args, "--conformance-layouts", "sideways")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--conformance-layouts: unknown layout sideways*"])


def test_the_gates_of_the_command_line_fail_a_session_whose_tests_passed(session):
    """The one gate policy (conformance/gates.py) judges the session's results, as it judges a run's."""
    args = ["--conformance-backend", "numpy", "--conformance-cases", str(CASES / "document.yaml")]
    result = session(*args, "--conformance-min-cases", "6")
    result.assert_outcomes(passed=23)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*conformance gates not met*", "conformance: --min-cases 6 not met: numpy bfloat16 ran 5"])
    assert session(*args, "--conformance-min-cases", "5").ret == pytest.ExitCode.OK


def test_require_grad_fails_each_gradient_test_a_backend_cannot_run(session):
    args = ["--conformance-backend", "tests.test_cli:LossOnly", "--conformance-cases",
            str(CASES / "gradients_document.yaml"), "--conformance-dtype", "float32", "-k", "grad-document-bce-mean"]
    session(*args).assert_outcomes(skipped=2)
    result = session(*args, "--conformance-require-grad")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["failed: loss-only lacks grad.bce*; --require-grad makes this a failure"])


def test_the_documented_options_are_the_plugins():
    """docs/ci.md's table names every option the plugin takes from conformance/options.py."""
    table = (ROOT / "docs" / "ci.md").read_text()
    flags = [option.pytest_flag for option in options.PLUGIN]
    assert "--conformance-no-cache" in flags and "--conformance-isolation" in flags
    for flag in flags:
        assert f"`{flag}" in table


def test_isolation_makes_a_crash_one_failed_test(session):
    """--conformance-isolation (run's --isolation): the backend's calls run in worker processes, so a segfault
    costs its test, not the session."""
    args = ["--conformance-backend", "tests.faults:Segfaults", "--conformance-cases",
            str(ROOT / "tests" / "data" / "fault_cases.yaml"), "--conformance-dtype", "float64"]
    result = session(*args, "--conformance-isolation", "--conformance-timeout", "60")
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(["crashed: *SIGSEGV*"])
    result = session(*args, "--conformance-timeout", "60")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--timeout and --memory-limit apply to worker processes*"])
