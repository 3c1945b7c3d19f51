"""The persistent reference cache: same results warm as cold, one case edited recomputes one case, corrupt entries
are recomputed, any change to the reference's code changes every key, and the cache never leaves its folder."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from bce_reference import Expected
from conformance import cache as cache_module
from conformance import registry, runner
from conformance.cache import Cache, decode, encode
from conformance.cli import main
from conformance.loader import load_cases

CASES = Path("cases/document.yaml")

TWO_CASES = """\
topic: two cases for the cache tests
cases:
  - id: cache-a
    description: first
    op: bce
    reduction: mean
    inputs:
      input: [0.25, 0.5]
      target: [1, 0]
  - id: cache-b
    description: second
    op: bce_with_logits
    reduction: none
    grad: [input]
    inputs:
      input: [1.5, -2]
      target: [0, 1]
"""


def _run(cases, cache):
    return runner.run(cases, registry.select(["numpy"]), progress=False, isolation=None, cache=cache)


def _without_seconds(run):
    return [{**r.__dict__, "seconds": 0} for r in run.results]


def test_a_warm_run_reads_every_reference_and_judges_alike(tmp_path):
    cases = load_cases([CASES])
    cold = _run(cases, Cache(tmp_path))
    warm_cache = Cache(tmp_path)
    warm = _run(cases, warm_cache)
    assert warm_cache.stats.misses == 0 and warm_cache.stats.hits == sum(len(c.dtypes) for c in cases)
    assert _without_seconds(warm) == _without_seconds(cold) == _without_seconds(_run(cases, None))


def test_an_edit_of_one_case_recomputes_that_case_only(tmp_path):
    path = tmp_path / "cases.yaml"
    path.write_text(TWO_CASES)
    _run(load_cases([path]), Cache(tmp_path / "cache"))
    path.write_text(TWO_CASES.replace("input: [1.5, -2]", "input: [1.5, -3]").replace("description: first",
                                                                                       "description: edited"))
    edited = Cache(tmp_path / "cache")
    _run(load_cases([path]), edited)
    assert edited.stats.misses == 4 and edited.stats.hits == 4  # cache-b's four dtypes; a description is no content


@pytest.mark.parametrize("damage", [
    lambda data: data[:-3] + bytes([data[-3] ^ 1]) + data[-2:],  # a flipped bit in an array
    lambda data: data[:len(data) // 2],  # a torn write
    lambda data: b"",
])
def test_a_corrupt_entry_is_recomputed_not_trusted(tmp_path, damage):
    cases = load_cases([CASES])[:1]
    _run(cases, Cache(tmp_path))
    entries = Cache(tmp_path).entries()
    for entry in entries:
        entry.write_bytes(damage(entry.read_bytes()))
    again = Cache(tmp_path)
    assert _without_seconds(_run(cases, again)) == _without_seconds(_run(cases, None))
    assert again.stats.corrupt == len(entries) and again.stats.hits == 0
    assert all(decode(entry.read_bytes()) is not None for entry in entries)  # rewritten whole


def test_entries_round_trip_the_reference_exactly():
    expected = Expected(value=np.array([0.5, np.inf, -0.0]), dtype="float32", scale=np.array([1.0, 2.0, 0.0]), terms=3,
                        method="exact", working_dtype="float16", peak=1e300, gain=None)
    value = {None: [expected, ("text", 1, True)], "input": np.float32(2.5)}
    back = decode(encode(value))
    assert back.keys() == value.keys() and back["input"] == np.float32(2.5) and back["input"].dtype == np.float32
    got, text = back[None]
    assert text == ("text", 1, True) and got.peak == 1e300 and got.gain is None and got.dtype == "float32"
    assert np.array_equal(np.signbit(got.value), np.signbit(expected.value))
    assert np.array_equal(got.value, expected.value)


def test_any_change_of_the_reference_code_changes_every_key(tmp_path):
    cases = load_cases([CASES])[:1]
    _run(cases, Cache(tmp_path, sources="one version of the code"))
    other = Cache(tmp_path, sources="another")
    _run(cases, other)
    assert other.stats.hits == 0 and other.stats.misses == len(cases[0].dtypes)


def test_entries_never_name_a_foreign_class():
    forged = encode({"x": 1}).replace(b'"$dict"', b'"$dataclass": "os:system", "fields": {}, "$dict"')
    with pytest.raises(ValueError):
        decode(forged)


def test_the_command_line_uses_clears_and_skips_the_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(cache_module.ENV, str(tmp_path))
    argv = ["run", "--backend", "numpy", "--cases", str(CASES), "--no-progress"]
    assert main(argv) == 0
    stored = len(Cache().entries())
    assert stored > 0 and all(p.is_relative_to(tmp_path / cache_module.LAYOUT) for p in Cache().entries())
    (tmp_path / "mine.txt").write_text("not the cache's")
    capsys.readouterr()
    assert main(["cache", "info"]) == 0 and f"{stored} entries" in capsys.readouterr().out
    assert main(["cache", "clear"]) == 0 and f"removed {stored} entries" in capsys.readouterr().out
    assert not Cache().entries() and (tmp_path / "mine.txt").exists()  # clear removes its own folder only
    assert main([*argv, "--no-cache"]) == 0 and not Cache().entries()


def test_an_unwritable_cache_warns_once_and_the_run_goes_on(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    unwritable = Cache(blocker)  # its folder would be inside a file
    run = _run(load_cases([CASES]), unwritable)
    assert all(r.status == "passed" for r in run.results)
    assert capsys.readouterr().err.count("cannot be written") == 1


def test_tests_never_touch_the_users_cache():
    assert Path(os.environ[cache_module.ENV]).name.startswith("bce-cache-")


def test_an_edit_of_the_reference_changes_the_sources_digest(tmp_path, monkeypatch):
    """The digest covers every file of the reference package, by content."""
    copy = tmp_path / "bce_reference"
    copy.mkdir()
    for source in Path("reference/bce_reference").glob("*.py"):
        (copy / source.name).write_bytes(source.read_bytes())
    monkeypatch.setattr(cache_module.resources, "files",
                        lambda package: copy if package == "bce_reference" else Path("conformance"))
    cache_module.sources_digest.cache_clear()
    try:
        before = cache_module.sources_digest()
        cache_module.sources_digest.cache_clear()
        (copy / "exact.py").write_text((copy / "exact.py").read_text() + "\n# an edit\n")
        assert cache_module.sources_digest() != before
    finally:
        cache_module.sources_digest.cache_clear()
        monkeypatch.undo()


def test_an_error_of_the_reference_is_not_kept(tmp_path):
    """A case the specification contradicts is an error each time, computed each time: nothing is stored."""
    path = tmp_path / "cases.yaml"
    contradicted = "    reduction: mean\n    expect: {reject: out_of_range}\n"
    path.write_text(TWO_CASES.replace("    reduction: mean\n", contradicted))
    cache = Cache(tmp_path / "cache")
    run = _run(load_cases([path]), cache)
    assert {r.status for r in run.results if r.case_id == "cache-a"} == {"error"}
    assert len(cache.entries()) == 4  # cache-b's four dtypes only


def test_a_case_file_validated_once_is_not_validated_again_and_an_invalid_one_never_passes(tmp_path: Path,
                                                                                         monkeypatch) -> None:
    from conformance import documents
    from conformance.errors import ConfigError

    store = Cache(tmp_path / "cache")
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(TWO_CASES)
    bad.write_text(TWO_CASES.replace("op: bce\n", "op: bce\n    colour: red\n"))
    validations = []
    validate = documents._validate
    monkeypatch.setattr(documents, "_validate", lambda *args: validations.append(args[0]) or validate(*args))
    assert load_cases([good], store) == load_cases([good], store) == load_cases([good])
    assert validations == [good, good]  # the first load with the cache, and the one without it
    for _ in range(2):  # an invalid file is validated, and refused, each time
        with pytest.raises(ConfigError, match=r"bad\.yaml:.*colour"):
            load_cases([bad], store)
    assert validations[2:] == [bad, bad]
    good.write_text(TWO_CASES.replace("first", "the first"))  # edited: validated again
    load_cases([good], store)
    assert validations[4:] == [good]


def test_an_isolated_run_remembers_what_probing_imported_and_a_wrong_hint_changes_no_verdict(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    from conformance.runner import preload_hint

    env = {**os.environ, cache_module.ENV: str(tmp_path)}
    command = [sys.executable, "-m", "conformance", "run", "--backend", "numpy", "-k", "^bce-", "--dtype", "float32",
               "--format", "json", "--no-progress"]
    store, hint = Cache(tmp_path), preload_hint(registry.select(["numpy"]))

    def results() -> list[tuple[str, str]]:
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
        return [(r["case_id"], r["status"]) for r in json.loads(done.stdout)["results"]]

    first = results()
    remembered = store.read(hint)
    assert remembered is not None and isinstance(remembered[0], list)
    store.store(hint, ["no_such_module_of_bce"])  # the forkserver's preload ignores what it cannot import
    assert results() == first
    assert store.read(hint) == remembered  # put right by the probe
