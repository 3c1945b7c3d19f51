"""No lost results: results stream to a JSON Lines file; a killed, terminated or interrupted run keeps every
finished result, `report FILE` renders it, and `--resume FILE` finishes the run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conformance import journal
from conformance.cli import main
from conformance.errors import ConfigError

from .test_isolation import FAULT_CASES, _processes_below

SLOW_RUN = ["run", "--backend", "tests.faults:Slow", "--cases", "cases/document.yaml", "--no-progress"]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _results(path: Path) -> list[dict]:
    return [record for record in _lines(path) if record["record"] == "result"]


def test_results_stream_beside_the_report_and_render_the_same_report(capsys, tmp_path):
    output = tmp_path / "report.json"
    code = main(["run", "--backend", "numpy", "--cases", "cases/document.yaml", "--format", "json",
                 "--output", str(output), "--no-progress"])
    stream = tmp_path / "report.results.jsonl"
    records = _lines(stream)
    assert code == 0
    assert records[0]["record"] == "run" and records[0]["format"] == journal.FORMAT
    assert records[-1] == {"record": "end"}
    assert len(_results(stream)) == len(json.loads(output.read_text())["results"])
    again = tmp_path / "again.json"
    capsys.readouterr()
    assert main(["report", str(stream), "--format", "json", "--output", str(again)]) == 0
    assert again.read_text() == output.read_text()


def _descendants(pid: int) -> set[int]:
    children = _processes_below(0)
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _gone(pids: set[int], within: float = 10.0) -> set[int]:
    """The pids still alive (zombies count as gone) after waiting up to `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        alive = set()
        for pid in pids:
            try:
                if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    alive.add(pid)
            except OSError:
                pass
        if not alive or time.monotonic() > deadline:
            return alive


def _start_and_wait_for_results(results: Path, count: int, argv=SLOW_RUN) -> tuple[subprocess.Popen, set[int]]:
    """A run in a subprocess, once it has written `count` results; and the processes under it."""
    process = subprocess.Popen([sys.executable, "-m", "conformance", *argv, "--results", str(results)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while len(_results(results)) < count:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run wrote no results"
        time.sleep(0.05)
    return process, _descendants(process.pid)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process tree from /proc")
def test_a_killed_run_keeps_its_results_leaves_no_process_and_resumes(capsys, tmp_path):
    results = tmp_path / "run.jsonl"
    process, helpers = _start_and_wait_for_results(results, 5)
    assert helpers, "the run has worker processes"
    process.kill()
    process.wait()
    assert _gone(helpers) == set()
    kept = _results(results)
    assert len(kept) >= 5

    assert main(["report", str(results)]) == 1  # an unfinished run cannot pass
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "the run did not finish" in err and "--partial" in err
    code = main(["report", str(results), "--partial"])
    out, err = capsys.readouterr()
    assert code == 0 and "the run did not finish" in err
    assert "(incomplete: the run was interrupted)" in out and f"{len(kept)} passed" in out

    assert main([*SLOW_RUN, "--resume", str(results)]) == 0
    capsys.readouterr()
    finished = journal.read(results)
    assert finished.complete
    keys = [r.key for r in finished.results]
    assert len(keys) == len(set(keys)) == 23
    assert {(r["backend"], r["case_id"], r["dtype"], r["wrt"], r["layout"]) for r in kept} <= set(keys)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process tree from /proc")
def test_a_killed_run_takes_its_hung_worker_along(tmp_path):
    argv = ["run", "--backend", "tests.faults:Hangs", "--cases", str(FAULT_CASES), "--timeout", "300", "--no-progress"]
    process, helpers = _start_and_wait_for_results(tmp_path / "run.jsonl", 2, argv)  # the third call hangs
    process.kill()
    process.wait()
    assert _gone(helpers) == set()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process tree from /proc")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_an_interrupted_run_reports_what_finished_and_ends_its_workers(tmp_path, signum):
    results = tmp_path / "run.jsonl"
    process, helpers = _start_and_wait_for_results(results, 3)
    os.killpg(process.pid, signum)  # Ctrl-C reaches the whole process group, workers included
    out, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, err
    assert f"interrupted by {signal.Signals(signum).name}" in err and f"--resume {results}" in err
    assert "(incomplete: the run was interrupted)" in out
    assert _gone(helpers) == set()
    records = _lines(results)
    assert records[-1]["record"] == "result"  # no end record: the file says the run did not finish
    assert not journal.read(results).complete


def test_half_a_line_from_a_killed_writer_is_ignored_and_cut_on_resume(capsys, tmp_path):
    results = tmp_path / "run.jsonl"
    main(["run", "--backend", "numpy", "--cases", "cases/document.yaml", "-k", "^document-bce-mean$",
          "--results", str(results), "--no-progress"])
    text = results.read_text().splitlines(keepends=True)
    results.write_text("".join(text[:-2]) + text[-2][:40])  # the last result half written, no end record
    assert len(journal.read(results).results) == len(text) - 3
    assert main(["run", "--backend", "numpy", "--cases", "cases/document.yaml", "-k", "^document-bce-mean$",
                 "--resume", str(results), "--no-progress"]) == 0
    capsys.readouterr()
    assert journal.read(results).complete and len(journal.read(results).results) == len(text) - 2


GRADIENT_RUN = ["run", "--backend", "numpy", "--backend", "tests.test_cli:LossOnly", "--cases",
                "cases/gradients_document.yaml", "--dtype", "float32", "--no-progress"]


def test_gradient_results_stream_with_their_tensor_and_render_the_same_report(capsys, tmp_path):
    output = tmp_path / "report.json"
    assert main([*GRADIENT_RUN, "--format", "json", "--output", str(output)]) == 0
    stream = tmp_path / "report.results.jsonl"
    assert {(r["backend"], r["wrt"], r["status"]) for r in _results(stream)} == {
        (backend, wrt, status) for backend, status in (("numpy", "passed"), ("loss-only", "unsupported"))
        for wrt in ("input", "target")}
    assert len(_results(stream)) == 16  # 4 cases x 2 backends x 2 tensors
    again = tmp_path / "again.json"
    capsys.readouterr()
    assert main(["report", str(stream), "--format", "json", "--output", str(again)]) == 0
    assert again.read_text() == output.read_text()
    assert json.loads(again.read_text())["backends"][0]["gradients"] == ["bce", "bce_with_logits", "sigmoid_bce"]
    # the file keeps `unsupported` as judged; --require-grad gates when the report is rendered
    assert main(["report", str(stream), "--require-grad"]) == 1
    assert "--require-grad makes this a failure" in capsys.readouterr().out


def test_a_gradient_call_with_a_result_missing_runs_again_on_resume(capsys, tmp_path):
    results = tmp_path / "run.jsonl"
    assert main([*GRADIENT_RUN, "--results", str(results)]) == 0
    lines = results.read_text().splitlines(keepends=True)
    first = json.loads(lines[1])
    partner = next(json.loads(line) for line in lines[2:] if json.loads(line).get("seq") == first["seq"] + 1)
    assert (first["case_id"], first["wrt"], partner["wrt"]) == (partner["case_id"], "input", "target")
    results.write_text(lines[0] + lines[1])  # killed between the two results of one gradient call
    assert main([*GRADIENT_RUN, "--resume", str(results)]) == 0
    capsys.readouterr()
    finished = journal.read(results)
    keys = [r.key for r in finished.results]
    assert finished.complete and len(keys) == len(set(keys)) == 16
    again = [json.loads(line) for line in results.read_text().splitlines()[2:]]
    assert {"input", "target"} == {r["wrt"] for r in again if r.get("case_id") == first["case_id"]
                                   and r.get("backend") == first["backend"]}  # its call ran again, both results


@pytest.mark.parametrize("content, fragment", [
    ("", "no run record"),
    ('{"record": "result"}\n', ":1: not a results record"),
    ('{"record": "run", "format": "bce-conformance-results", "version": 1, "backends": []}\n{"record": "result", '
     '"seq": 0, "status": "glorious"}\n', ":2: not a results record"),
    ('{"record": "run", "format": "bce-conformance-results", "version": 99, "backends": []}\n', "version 99"),
])
def test_a_malformed_results_file_is_one_line_naming_file_and_line(capsys, tmp_path, content, fragment):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(ConfigError, match=fragment):
        journal.read(path)
    assert main(["report", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err


@pytest.mark.parametrize("argv, fragment", [
    (["--no-isolation", "--timeout", "3"], "--no-isolation"),
    (["--resume", "a.jsonl", "--results", "b.jsonl"], "--resume FILE appends to FILE"),
    (["--results", "same.json", "--output", "same.json"], "cannot be the same file"),
    (["--resume", "missing.jsonl"], "missing.jsonl: cannot read results"),
])
def test_result_options_misused_are_usage_errors(capsys, argv, fragment):
    assert main(["run", "--backend", "numpy", *argv]) == 2
    assert fragment in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_timeout_must_be_positive(capsys, value):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--timeout", value])
    assert exit_.value.code == 2 and "positive number of seconds" in capsys.readouterr().err
