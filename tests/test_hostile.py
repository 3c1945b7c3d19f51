"""Hostile files of every kind (case files, results files, reports, manifests, shards) load or end in one line.

The seeded generator of tests/hostile.py makes them; a few hundred run by default, 5,000 under `-m slow`. The
files issue 14 reported are here by name too."""
from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from conformance.cli import main

from . import hostile

DEFAULT_FILES, SLOW_FILES = 250, 5000


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> hostile.Bases:
    return hostile.bases(tmp_path_factory.mktemp("bases"))


def test_the_generator_is_deterministic_and_makes_every_kind(bases):
    first, second = hostile.generate(7, 40, bases), hostile.generate(7, 40, bases)
    assert first == second and first != hostile.generate(8, 40, bases)
    assert Counter(h.kind for h in first) == dict.fromkeys(hostile.KINDS, 8)


def _check_all(count: int, seed: int, bases: hostile.Bases, folder: Path) -> Counter:
    totals: Counter = Counter()
    for file in hostile.generate(seed, count, bases):
        outcome = hostile.check(file, folder, bases)
        totals.update(loaded=outcome.loaded, refused=outcome.refused)
    return totals


def test_hostile_files_load_or_end_in_one_line(bases, tmp_path):
    totals = _check_all(DEFAULT_FILES, 0, bases, tmp_path)
    assert totals["loaded"] > 0 and totals["refused"] > 0  # both ways out are taken


@pytest.mark.slow
def test_five_thousand_hostile_files_load_or_end_in_one_line(bases, tmp_path):
    start = time.perf_counter()
    totals = _check_all(SLOW_FILES, 14, bases, tmp_path)
    print(f"\n{SLOW_FILES} hostile files: {dict(totals)} commands, {time.perf_counter() - start:.0f} s")
    assert totals["loaded"] > 0 and totals["refused"] > 0


# --- the files issue 14 reported -------------------------------------------------------------------

def _error(capsys, argv: list[str], code: int = 2) -> str:
    start = time.process_time()
    assert main(argv) == code
    assert time.process_time() - start < hostile.DEADLINE
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("text, words", [
    ("seed: 0x" + "f" * 6000, "a value of 6002 characters"),
    ("seed: .nan", "a YAML .nan"),
    ("input: ['" + "1" * 30_000 + "x']", "a value of 30001 characters"),
    ("input: ['" + "1" * 4000 + "x']", "input"),  # within the size cap: the decimal pattern answers at once
])
def test_case_files_issue_14_reported(capsys, tmp_path, text, words):
    base = hostile.FAULT_CASES.read_text()
    key = text.split(":")[0]
    path = tmp_path / "case.yaml"
    path.write_text(base.replace("    inputs: {input: [0.5], target: [1]}\n",
                                 f"    inputs: {{input: [0.5], target: [1]}}\n    {text}\n" if key == "seed" else
                                 f"    inputs: {{{text}, target: [1]}}\n"))
    err = _error(capsys, ["cases", "--cases", str(path)])
    assert str(path) in err and words in err


def _results_with(bases: hostile.Bases, tmp_path: Path, line: int, change) -> Path:
    lines = bases.results.read_text().splitlines()
    lines[line] = change(lines[line])
    path = tmp_path / "results.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
    return path


def _field(name: str, raw: str):
    return lambda line: json.dumps({**json.loads(line), name: "RAW"}).replace('"RAW"', raw)


@pytest.mark.parametrize("line, change, words", [
    (1, lambda line: "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    (1, _field("seq", "1e400"), "beyond the largest float"),
    (1, _field("dtype", '"float7"'), "unknown dtype 'float7'"),
    (1, _field("dtype", '"float32;touch${IFS}FILE"'), "unknown dtype"),
    (1, _field("seconds", "{}"), "seconds"),
    (1, _field("source", "5"), "source"),
    (1, _field("max_ulp_error", '"many"'), "max_ulp_error"),
    (1, _field("message", '"\\ud800"'), "which is no character"),
    (0, _field("backends", '[{"name": 5}]'), "backends/0"),
])
def test_results_files_issue_14_reported(bases, capsys, tmp_path, line, change, words):
    path = _results_with(bases, tmp_path, line, change)
    for argv in (["report", str(path)], ["diff", str(bases.report), str(path)]):
        err = _error(capsys, argv)
        assert f"{path}:{line + 1}: not a results record" in err and words in err


def test_a_manifest_budget_beyond_any_float_is_one_line(bases, capsys, tmp_path):
    path = tmp_path / "manifest.yaml"
    path.write_text(bases.manifest.read_text().replace("max_ulp: 4.0", "max_ulp: 1" + "0" * 399))
    err = _error(capsys, ["report", str(bases.results), "--expectations", str(path)])
    assert str(path) in err and "OverflowError" in err


def test_a_report_holding_infinity_is_one_line_for_merge(bases, capsys, tmp_path):
    path = tmp_path / "shard.json"
    document = json.loads(bases.shards[0].read_text())
    document["results"][0]["seconds"] = "INF"
    path.write_text(json.dumps(document).replace('"INF"', "Infinity"))
    err = _error(capsys, ["merge", str(path), str(bases.shards[1]), "-o", str(tmp_path / "merged.json")])
    assert str(path) in err and "Infinity is not JSON" in err


def test_a_results_file_of_only_a_run_record_is_one_line(bases, capsys, tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(bases.results.read_text().splitlines()[0] + "\n")
    err = _error(capsys, ["report", str(path)], code=1)
    assert "did not finish (0 results)" in err
    _error(capsys, ["report", str(path), "--partial"])  # nothing ran: a usage error, still one line


def test_a_finished_results_file_reports_and_passes(bases, capsys):
    assert main(["report", str(bases.results)]) == 0
    assert "did not finish" not in capsys.readouterr().err
