"""Every mutant is flagged on the cases it must fail; every correct variant passes everything."""
from __future__ import annotations

import pytest

from conformance import runner
from conformance.registry import Entry
from conformance.results import Status

from .mutants import MUTANTS, VARIANTS


@pytest.fixture(scope="module")
def outcome(shipped_cases):
    backends = [cls() for cls in MUTANTS + VARIANTS]
    return runner.run(shipped_cases, [Entry(b.name, "test", b) for b in backends], progress=False)


def _status(outcome, backend, case_id, dtype):
    found = [r for r in outcome.results if (r.backend, r.case_id, r.dtype) == (backend, case_id, dtype)]
    assert len(found) == 1, (backend, case_id, dtype)
    return found[0]


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.__name__)
def test_mutant_is_flagged(outcome, mutant, shipped_cases):
    ids = {case.id for case in shipped_cases}
    assert mutant.catches, "a mutant must name the cases that catch it"
    for case_id, dtype in mutant.catches.items():
        assert case_id in ids, f"{case_id} is not a shipped case"
        result = _status(outcome, mutant().name, case_id, dtype)
        assert result.status in (Status.FAILED, Status.ERROR), (case_id, dtype, result.message)
        assert result.message


def test_adapter_bugs_are_errors_not_passes(outcome):
    result = _status(outcome, "mutant-RaisesAttributeError", "bce-reject-input-above-one", "float32")
    assert result.status == Status.ERROR and "adapter bug" in result.message


def test_input_modification_is_named(outcome):
    result = _status(outcome, "mutant-ClipsInputInPlace", "bce-clamp-p0-y1", "float64")
    assert result.message == "modified its input 'input'"


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.__name__)
def test_correct_variant_passes_everything(outcome, variant):
    name = variant().name
    results = [r for r in outcome.results if r.backend == name]
    assert len(results) > 500
    bad = [(r.case_id, r.dtype, r.message) for r in results if r.status != Status.PASSED]
    assert not bad, bad
