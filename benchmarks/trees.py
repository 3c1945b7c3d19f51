"""Side-by-side benchmarks of two source trees: a git ref's tree extracted, and one command timed with a tree's
harness (its `conformance` and `bce_reference` first on PYTHONPATH). Shared by layouts_cost.py and plugin_time.py."""
from __future__ import annotations

import os
import resource
import subprocess
import tarfile
import time
from io import BytesIO
from pathlib import Path
from typing import Mapping

ROOT = Path(__file__).resolve().parent.parent


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def extracted(ref: str, folder: Path) -> Path:
    """The source tree of the git ref `ref` (git archive), extracted into `folder`."""
    archive = subprocess.run(["git", "archive", ref], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def timed(command: list[str], tree: Path, cwd: Path, env: Mapping[str, str] = os.environ) -> tuple[float, float]:
    """Wall seconds, and CPU seconds of the command and the processes it waited for, run in `cwd` with the harness
    of `tree` (its output discarded)."""
    environment = {**env, "PYTHONPATH": os.pathsep.join([str(tree), str(tree / "reference")])}
    start, cpu = time.perf_counter(), _children_cpu()
    subprocess.run(command, cwd=cwd, env=environment, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start, _children_cpu() - cpu
