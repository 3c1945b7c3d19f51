"""Each file format reads back what it wrote: the objects the runner produces (`Run`, `Result`, `BackendInfo`,
`Shard`) survive a JSON report (`report.document` / `saved.load`) and a results file (`journal.Journal` /
`journal.read`) unchanged, non-finite numbers and failures included."""
from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

import conformance
from conformance import journal, report, saved, shards
from conformance.results import BackendInfo, Result, Run, Shard, Status, json_safe
from tests import misbehaving

CASES = Path(__file__).resolve().parent.parent / "cases" / "document.yaml"


@pytest.fixture(scope="module")
def run() -> Run:
    """A run with passes and failures on two backends, and a result whose numbers are not finite."""
    made = conformance.run(["numpy", misbehaving.WrongValue()], conformance.load_cases([CASES]), dtypes=["float32"],
                           isolation=False)
    assert {r.status for r in made.results} >= {Status.PASSED, Status.FAILED}
    odd = replace(made.results[0], max_ulp_error=math.inf, headroom=math.nan, allowed=-math.inf, index=[0, 1],
                  wrt="input", expectation="expected", matched="as specified", tags=["a", "b"])
    made.results.append(odd)
    made.command, made.seed = "python -m conformance run --backend numpy", 7
    made.shard = Shard(2, 3, tuple(dict.fromkeys(r.case_id for r in made.results)), ("float32",))
    return made


def _same(got: Run, want: Run) -> None:
    """Equal records; NaN compared as the files write it."""
    assert got.backends == want.backends and isinstance(got.backends[0], BackendInfo)
    assert [json_safe(r.to_dict()) for r in got.results] == [json_safe(r.to_dict()) for r in want.results]
    assert all(isinstance(r, Result) and isinstance(r.status, Status) for r in got.results)
    assert (got.complete, got.command, got.shard) == (want.complete, want.command, want.shard)


def test_a_json_report_reads_back_as_the_run_it_records(run, tmp_path):
    path = tmp_path / "report.json"
    path.write_text(report.render_json(run))
    loaded = saved.load(path)
    _same(loaded, run)
    assert loaded.seed == 7 and loaded.environment == report.environment()
    assert report.document(loaded) == json.loads(path.read_text())


def test_a_report_written_from_a_report_is_the_same_report(run, tmp_path):
    """Read back and written again (as merge and report FILE do), the document is the one first written."""
    first = report.document(run)
    assert report.document(saved.decode(json.loads(report.dumps(first)))) == first


def test_a_results_file_reads_back_as_the_run_it_records(run, tmp_path):
    path = tmp_path / "run.results.jsonl"
    with journal.Journal(path, command=run.command, shard=run.shard) as sink:
        sink.begin(run.backends)
        for seq, result in enumerate(run.results):
            sink.add(seq, result)
        sink.end()
    _same(journal.read(path), run)
    assert journal.previous(path) == {r.key: r for r in journal.read(path).results}


def test_shard_and_backend_records_survive_json():
    shard = Shard(1, 2, ("a", "b"), ("float32",))
    backend = BackendInfo("x", "m:attr", True, "", "1.0", ("float32",), ("bce",), "cpu", True, True)
    assert Shard.from_dict(json.loads(json.dumps(shard.to_dict()))) == shard
    assert BackendInfo.from_dict(json.loads(json.dumps(backend.to_dict()))) == backend


def test_merged_shards_are_the_records_of_the_whole_run(run, tmp_path):
    """Two shard reports merge into the run their results make, in the selection's order."""
    cases = run.shard.cases
    parts = [replace(run, shard=Shard(k, 2, cases, ("float32",)),
                     results=[r for r in run.results if shards.owner(r.case_id, 2) == k]) for k in (1, 2)]
    paths = [tmp_path / f"{k}.json" for k in (1, 2)]
    for path, part in zip(paths, parts):
        path.write_text(report.render_json(part))
    merged = shards.merge(paths, "python -m conformance merge 1.json 2.json")
    order = {case_id: i for i, case_id in enumerate(cases)}
    assert [r.key for r in merged.run.results] == [r.key for r in sorted(run.results, key=lambda r: order[r.case_id])]
    assert merged.document == report.document(merged.run, merged.document["merged"])
    assert saved.decode(merged.document).results == [replace(r, rerun="") for r in merged.run.results]
