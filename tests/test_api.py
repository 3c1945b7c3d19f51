"""The public API: docs/api.md's examples run as written; backends are accepted in each documented form."""
from __future__ import annotations

import doctest
from pathlib import Path

import pytest

import conformance
from conformance.errors import ConfigError
from conformance.isolation import Settings

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_the_api_page_runs_as_written():
    failed, attempted = doctest.testfile(str(DOCS / "api.md"), module_relative=False,
                                         optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert attempted > 10 and failed == 0


def test_backends_by_object_name_and_spec():
    from tests.mutants import MeanOverRows

    mutant = MeanOverRows()
    found = conformance.entries(mutant, "numpy", "tests.mutants:MeanOverRows")
    assert [e.name for e in found] == [mutant.name, "numpy", mutant.name]
    assert found[0].backend is mutant and found[0].origin == "python object"
    assert conformance.entries(*found) == found  # entries pass through


def test_a_non_adapter_is_refused_in_one_line():
    with pytest.raises(ConfigError, match=r"^42 is neither a backend adapter"):
        conformance.entries(42)


def test_isolation_forms(monkeypatch):
    seen = []
    monkeypatch.setattr(conformance.api.runner, "run", lambda *args, isolation, **kw: seen.append(isolation))
    limits = Settings(timeout=5.0)
    for given in (True, False, limits):
        conformance.run("numpy", cases=[], isolation=given)
    assert seen == [Settings(), None, limits]
