"""The README's install and plug-in steps, verbatim, in a fresh virtual environment (marker slow: pip installs torch
and jax; skipped where pip cannot reach an index)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
EXAMPLE_README = ROOT / "examples" / "jax-adapter" / "README.md"
SELECTION = ["-k", "document"]
"""Appended to each run: the document's examples, so that the steps take minutes rather than an hour."""


def _step(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200, check=False)
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _readme_install_line() -> list[str]:
    """The README's install command from a checkout (`python3 -m pip install ".[torch]"`), as words."""
    line = re.search(r"Without tox, from a checkout: `([^`]+)`", README.read_text(encoding="utf-8")).group(1)
    return [word.strip('"') for word in line.split()]


def _example_install_lines() -> list[list[str]]:
    """examples/jax-adapter's install block (the harness, then the adapter), as words, comments dropped."""
    block = re.search(r"## 1\. Install\n\n```sh\n(.*?)```", EXAMPLE_README.read_text(encoding="utf-8"), re.S).group(1)
    return [line.split("#")[0].split() for line in block.splitlines()]


@pytest.mark.slow
def test_the_install_and_plug_in_steps_work_verbatim(tmp_path):
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_CONSTRAINT": str(ROOT / "constraints.txt")}
    env.pop("VIRTUAL_ENV", None)
    probe = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--dest", str(tmp_path / "probe"),
                            "hatchling"], env=env, capture_output=True, text=True, timeout=300, check=False)
    if probe.returncode != 0:
        pytest.skip(f"pip cannot reach an index: {probe.stderr.strip().splitlines()[-1:]}")
    venv = tmp_path / "venv"
    _step([sys.executable, "-m", "venv", str(venv)], tmp_path, env)
    bin_dir = venv / "bin"
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    checkout = tmp_path / "checkout"  # a copy: pip may write build files into the tree it installs
    shutil.copytree(ROOT, checkout, ignore=shutil.ignore_patterns(".venv*", ".tox", ".git", "build", "*.egg-info",
                                                                   "__pycache__", ".hypothesis"))
    words = _readme_install_line()
    assert words == ["python3", "-m", "pip", "install", ".[torch]"]
    _step(words, checkout, env)
    out = _step(["python3", "-m", "conformance", "run", "--backend", "numpy", *SELECTION], tmp_path, env)
    assert " passed, 0 failed, 0 error" in out

    lines = _example_install_lines()
    assert lines == [["pip", "install", "."], ["pip", "install", "-e", "examples/jax-adapter"]]
    for words in lines:
        _step(words, checkout, env)
    listed = _step(["python3", "-m", "conformance", "backends"], tmp_path, env)
    assert re.search(r"^jax-example\s", listed, re.M) and re.search(r"^jax\s", listed, re.M)  # two backends
    example = checkout / "examples" / "jax-adapter"
    _step(["python3", "-m", "pip", "install", "pytest", "pytest-xdist"], tmp_path, env)  # the author's test runner
    out = _step(["pytest", "-p", "no:cacheprovider", "--conformance-backend", "jax-example",
                 "--conformance-expectations", "expectations/jax.yaml", "-n", "2", *SELECTION], example, env)
    assert re.search(r"\d+ passed", out)
