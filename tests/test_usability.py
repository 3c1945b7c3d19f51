"""What a new user trips over: module:attr under bare pytest, rerun commands, stateful backends, the error column,
shipped files by name, manifest noise under -k, and the JSON rerun field."""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bce_reference import Expected
from conformance import named
from conformance.cli import main
from conformance.compare import Outcome, check_value
from conformance.tolerance import Allowed

ROOT = Path(__file__).resolve().parent.parent
SPECIAL = ["--cases", str(ROOT / "cases" / "bce_special_points.yaml")]


class StatefulClamp:
    """A mutant that says its results may depend on earlier calls."""

    def __new__(cls):
        from .mutants import ClampAt50

        backend = ClampAt50()
        backend.name, backend.stateful = "stateful-clamp", True
        return backend


def test_bare_pytest_resolves_module_attr_from_the_working_directory(tmp_path):
    """`pytest --conformance-backend my_adapter:BACKEND` as the README says, without `python -m`."""
    (tmp_path / "my_adapter.py").write_text("from conformance.backends.numpy_backend import NumpyBackend\n"
                                            "BACKEND = NumpyBackend()\nBACKEND.name = 'mine'\n")
    command = [sys.executable, "-c", "import sys, pytest; sys.path.remove(''); sys.exit(pytest.main())",
               "-p", "conformance.pytest_plugin", "-p", "no:cacheprovider", "-q",
               "--conformance-backend", "my_adapter:BACKEND", "--conformance-dtype", "float32",
               "--conformance-cases", str(ROOT / "cases" / "document.yaml")]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
                          env={"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert " passed" in done.stdout


def test_rerun_commands_carry_the_options_that_change_a_verdict(capsys, tmp_path):
    manifest = tmp_path / "clamp.yaml"
    manifest.write_text("backend: mutant-ClampAt50\nexpectations:\n"
                        "  - {case: bce-clamp-p1-y0, outcome: failed, reason: the mutant clamps at -50}\n")
    argv = ["run", "--backend", "tests.mutants:ClampAt50", *SPECIAL, "-k", "bce-clamp-p0", "--dtype", "float32",
            "--timeout", "60", "--expectations", str(manifest), "--format", "json"]
    assert main(argv) == 1
    document = json.loads(capsys.readouterr().out)
    (failed,) = [r for r in document["results"] if r["status"] == "failed"]
    words = shlex.split(failed["rerun"])
    assert words[words.index("--timeout") + 1] == "60"
    assert words[words.index("--expectations") + 1] == str(manifest)
    assert all(r["rerun"].startswith("python -m conformance run") for r in document["results"])  # passes too


def test_a_stateful_backend_is_said_to_be(capsys):
    assert main(["run", "--backend", "tests.test_usability:StatefulClamp", *SPECIAL, "-k", "bce-clamp-p0",
                 "--dtype", "float32"]) == 1
    assert "stateful-clamp declares itself stateful: a failure may depend on the calls" in capsys.readouterr().out


def _expected(values: list[float]) -> Expected:
    value = np.asarray(values)
    return Expected(value, "float64", np.abs(value), 1, "exact", "float64")


def test_a_wrong_infinity_is_no_error_of_zero():
    verdict = check_value(Outcome(value=np.array([np.inf, 1.0])), _expected([2.0, 1.0]), Allowed(np.full(2, 1e-9)))
    assert verdict.max_abs_error == np.inf and verdict.index == [0]


def test_the_message_names_the_element_of_the_error_column():
    """The column shows the largest error; the message leads with the element most beyond its allowance."""
    got = np.array([60.0, 125.2])
    verdict = check_value(Outcome(value=got), _expected([1.2, 100.0]), Allowed(np.array([1e-6, 30.0])))
    assert verdict.max_abs_error == pytest.approx(58.8) and verdict.index == [0]
    assert "error 58.8" in verdict.message and "at index (0,)" in verdict.message
    other = check_value(Outcome(value=np.array([1.2 + 1e-3, 158.8])), _expected([1.2, 100.0]),
                        Allowed(np.array([1e-6, 100.0])))
    assert "the largest error, 58.8, is at index (1,)" in other.message and other.index == [0]


def test_shipped_files_are_addressed_by_name():
    assert named.budget("default").is_file()
    assert named.budget("conformance/data/accuracy-budget.yaml") == Path("conformance/data/accuracy-budget.yaml")
    with pytest.raises(argparse.ArgumentTypeError, match="neither a file nor a shipped budget"):
        named.budget("strictest")
    for name, path in named.shipped_manifests().items():
        assert named.manifest(name) == path


def test_the_budget_by_name_on_the_command_line(capsys):
    with pytest.raises(SystemExit):
        main(["accuracy", "--budget", "nosuch"])
    assert "'nosuch' is neither a file nor a shipped budget (shipped: default)" in capsys.readouterr().err


def test_a_selection_does_not_warn_of_every_manifest_entry(capsys, tmp_path):
    manifest = tmp_path / "many.yaml"
    entries = "".join(f"  - {{case: bce-clamp-{case}, outcome: failed, reason: listed}}\n"
                      for case in ("p0-y0", "p1-y0", "p1-y1"))
    manifest.write_text(f"backend: numpy\nexpectations:\n{entries}")
    main(["run", "--backend", "numpy", *SPECIAL, "-k", "^bce-clamp-p0-y0$", "--dtype", "float32",
          "--expectations", str(manifest)])
    err = capsys.readouterr().err
    assert err.count("warning") == 1, err
    assert "2 expectations list only cases outside this selection (-k or a shard); not checked" in err
