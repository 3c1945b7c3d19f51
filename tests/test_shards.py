"""`run --shard K/N` and `merge`: a sharded run, merged, is the unsharded run; shards that do not belong together
are refused with one line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from junitparser import JUnitXml

from conformance.cli import main
from conformance.loader import schema_validator
from conformance.shards import owner, parse

SELECTION = ["--cases", "cases/document.yaml", "--cases", "cases/bce_special_points.yaml",
             "--cases", "cases/gradients_document.yaml", "--dtype", "float32", "--dtype", "float64", "--no-progress"]


def comparable(document: dict) -> dict:
    """A report without what differs between two runs of the same results: timings, machines, command lines."""
    kept = {k: v for k, v in document.items() if k not in ("environment", "merged", "shard")}
    kept["results"] = [{k: v for k, v in r.items() if k != "seconds"} for r in document["results"]]
    return kept


def sharded(capsys, folder: Path, backends: list[str], count: int,
            suffix: str = "json") -> tuple[list[int], list[Path]]:
    codes, paths = [], []
    for index in range(1, count + 1):
        path = folder / f"shard{index}.{suffix}"
        output = ["--results", str(path)] if suffix == "jsonl" else ["--format", "json", "--output", str(path)]
        codes.append(main(["run", *SELECTION, *backends, "--shard", f"{index}/{count}", *output]))
        paths.append(path)
    capsys.readouterr()
    return codes, paths


def test_every_case_is_in_exactly_one_shard(shipped_cases):
    ids = [case.id for case in shipped_cases]
    for count in (1, 2, 3, 7):
        shares = [[i for i in ids if owner(i, count) == k] for k in range(1, count + 1)]
        assert sorted(i for share in shares for i in share) == sorted(ids)
        assert all(shares) or count > len(ids)
    # the split depends on the case id alone (not on Python's salted hash(), the selection or the machine)
    assert (owner("document-bce-mean", 3), owner("document-bce-mean", 7), owner("bce-clamp-p0-y1", 2)) == (1, 6, 1)


@pytest.mark.parametrize("text", ["0/2", "3/2", "1/0", "a/b", "1", "-1/2"])
def test_a_malformed_shard_is_a_usage_error(capsys, text):
    with pytest.raises(SystemExit) as exit_:
        main(["run", f"--shard={text}"])
    assert exit_.value.code == 2 and "is not a shard K/N with 1 <= K <= N" in capsys.readouterr().err
    with pytest.raises(ValueError):
        parse(text)


@pytest.mark.parametrize("backends, count, status", [
    (["--backend", "numpy", "--backend", "torch-cuda"], 3, 0),
    (["--backend", "numpy", "--backend", "tests.mutants:ClampAt50", "--backend", "tests.mutants:GradientSignFlipped"],
     2, 1),
])
def test_sharded_and_merged_equals_unsharded(capsys, tmp_path, backends, count, status):
    whole = tmp_path / "whole.json"
    assert main(["run", *SELECTION, *backends, "--format", "json", "--output", str(whole)]) == status
    codes, paths = sharded(capsys, tmp_path, backends, count)
    assert all(code in (0, status) for code in codes) and status in codes
    merged = tmp_path / "merged.json"
    assert main(["merge", *map(str, reversed(paths)), "-o", str(merged)]) == status  # any order of shards
    out = capsys.readouterr().out
    expected, got = json.loads(whole.read_text()), json.loads(merged.read_text())
    assert comparable(got) == comparable(expected)
    for document in [got, *(json.loads(p.read_text()) for p in paths)]:
        assert list(schema_validator("report").iter_errors(document)) == []
    assert got["totals"] == expected["totals"] and len(got["results"]) == len(expected["results"]) > 50
    assert sorted(m["shard"] for m in got["merged"]) == list(range(1, count + 1))
    assert got["environment"]["command"].startswith("python -m conformance merge")
    assert out.rstrip().endswith(", ".join(f"{expected['totals'][s]} {s}" for s in expected["totals"]))
    assert sum(len(json.loads(p.read_text())["results"]) for p in paths) == len(expected["results"])


def test_results_files_merge_too(capsys, tmp_path):
    backends = ["--backend", "numpy"]
    whole = tmp_path / "whole.json"
    assert main(["run", *SELECTION, *backends, "--format", "json", "--output", str(whole)]) == 0
    _, paths = sharded(capsys, tmp_path, backends, 2, "jsonl")
    merged = tmp_path / "merged.json"
    assert main(["merge", *map(str, paths), "-o", str(merged)]) == 0
    assert comparable(json.loads(merged.read_text())) == comparable(json.loads(whole.read_text()))


def test_an_empty_shard_is_a_valid_shard(capsys, tmp_path):
    """A shard that holds no case of a small selection reports nothing and passes; the merge is the whole run."""
    selection = ["--backend", "numpy", "--cases", "cases/document.yaml", "-k", "^document-bce-mean$", "--no-progress",
                 "--format", "json"]
    assert main(["run", *selection, "--output", str(tmp_path / "whole.json")]) == 0
    for index in (1, 2):
        assert main(["run", *selection, "--shard", f"{index}/2", "--output", str(tmp_path / f"{index}.json")]) == 0
    empty = 3 - owner("document-bce-mean", 2)
    assert capsys.readouterr().err == f"conformance: shard {empty}/2 holds none of the 1 cases selected\n"
    assert main(["merge", str(tmp_path / "1.json"), str(tmp_path / "2.json"), "-o", str(tmp_path / "m.json")]) == 0
    assert comparable(json.loads((tmp_path / "m.json").read_text())) == comparable(
        json.loads((tmp_path / "whole.json").read_text()))


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("shards")
    paths = [folder / f"{k}.json" for k in (1, 2)]
    for index, path in enumerate(paths, 1):
        assert main(["run", *SELECTION, "--backend", "numpy", "--shard", f"{index}/2", "--format", "json",
                     "--output", str(path)]) == 0
    return paths


def _edited(path: Path, folder: Path, edit) -> Path:
    document = json.loads(path.read_text())
    edit(document)
    target = folder / f"edited-{path.name}"
    target.write_text(json.dumps(document))
    return target


def test_declared_fields_travel_through_merge(capsys, tmp_path, shards):
    def mark(document):
        document["results"][0]["expectation"] = "expected"

    marked = _edited(shards[0], tmp_path, mark)
    assert main(["merge", str(marked), str(shards[1]), "-o", str(tmp_path / "m.json")]) == 0
    merged = json.loads((tmp_path / "m.json").read_text())
    assert [r["expectation"] for r in merged["results"] if r["expectation"]] == ["expected"]
    assert merged["expectations"] == {"expected": 1, "unexpected-pass": 0}


def _other_harness(document):
    document["environment"]["harness"] = "9.9"


def _other_selection(document):
    document["shard"]["cases"] = document["shard"]["cases"][1:]


def _other_count(document):
    document["shard"].update(index=1, count=3)


def _other_backend(document):
    document["backends"][0]["version"] = "numpy 0.1"


def _not_a_shard(document):
    del document["shard"]


def _other_version(document):
    document["version"] = 2


@pytest.mark.parametrize("edit, fragment", [
    (_other_harness,
     "harness 9.9, but {first} is from {harness}: reports of different suite versions do not merge"),
    (_other_version, "not a bce-conformance report of version 1 (1 was expected at ['version'])"),
    (_other_selection, "a shard of another selection of cases or dtypes than {first}"),
    (_other_count, "shard 1/3, but {first} is one of 2 shards"),
    (_other_backend, "its backends (name, availability, version, device) differ from {first}'s"),
    (_not_a_shard, "not the report of a shard (run --shard K/N)"),
])
def test_shards_that_do_not_belong_together_are_refused(capsys, tmp_path, shards, edit, fragment):
    second = _edited(shards[1], tmp_path, edit)
    code = main(["merge", str(shards[0]), str(second), "-o", str(tmp_path / "m.json")])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and not (tmp_path / "m.json").exists()
    harness = json.loads(shards[0].read_text())["environment"]["harness"]  # "not installed" in a source checkout
    assert err == f"conformance: error: {second}: {fragment.format(first=shards[0], harness=harness)}\n"


def test_a_missing_or_repeated_shard_is_refused(capsys, tmp_path, shards):
    assert main(["merge", str(shards[0]), "-o", str(tmp_path / "m.json")]) == 2
    assert capsys.readouterr().err == "conformance: error: shard 2/2 missing: merge needs every shard of the run\n"
    assert main(["merge", str(shards[0]), str(shards[0]), str(shards[1]), "-o", str(tmp_path / "m.json")]) == 2
    assert capsys.readouterr().err == f"conformance: error: {shards[0]}: shard 1/2 again (also {shards[0]})\n"


def test_merge_gates_the_coverage_of_the_whole_run(capsys, tmp_path, shards):
    assert main(["merge", *map(str, shards), "-o", str(tmp_path / "m.json"), "--min-cases", "30"]) == 0
    assert main(["merge", *map(str, shards), "-o", str(tmp_path / "m.json"), "--min-cases", "1000"]) == 1
    assert "--min-cases 1000 not met: numpy float32 ran" in capsys.readouterr().err


def test_merged_shards_render_in_every_report_format(capsys, tmp_path, shards):
    junit = tmp_path / "merged.xml"
    assert main(["merge", *map(str, shards), "-o", str(junit), "--format", "junit"]) == 0
    suites = {suite.name: suite for suite in JUnitXml.fromfile(str(junit))}
    merged = tmp_path / "merged.json"
    assert main(["merge", *map(str, shards), "-o", str(merged)]) == 0
    assert sum(1 for _ in suites["numpy"]) == len(json.loads(merged.read_text())["results"]) > 0
    markdown = tmp_path / "merged.md"
    assert main(["merge", *map(str, shards), "-o", str(markdown), "--format", "markdown"]) == 0
    text = markdown.read_text()
    assert text.startswith("# BCE conformance report") and "| numpy     | bce " in text
