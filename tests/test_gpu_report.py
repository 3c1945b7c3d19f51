"""benchmarks/gpu_report.sh, the prepared script for a machine with a CUDA GPU (issue 16, item 6): its commands are
the command line's, and where torch-cuda is unavailable it stops at once, saying why, with nothing run."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from conformance.cli.main import parser

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_report.sh"


def test_its_commands_parse():
    text = SCRIPT.read_text().replace("\\\n", " ")
    commands = [shlex.split(line) for line in re.findall(r'"\$PYTHON" -m conformance (.*)', text)]
    assert [words[0] for words in commands] == ["run", "run", "report", "matrix", "accuracy"]
    for words in commands:
        words = words[:words.index("||")] if "||" in words else words
        words = [w.replace("$OUT", "out").replace("${spread[@]}", "") for w in words]
        parser().parse_args([w for w in words if w])  # SystemExit on an unknown option or a bad value


def test_without_cuda_it_stops_at_the_smoke_case_saying_why(tmp_path):
    environment = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable,
                   "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=environment, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1
    assert "conformance: required backend torch-cuda is unavailable: " in done.stdout
    assert (tmp_path / "steps.txt").read_text().startswith("smoke: exit 1, ")
    assert "cores: " in (tmp_path / "machine.txt").read_text() and not (tmp_path / "run.json").exists()
