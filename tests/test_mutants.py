"""Every mutant is flagged on the cases it must fail; every correct variant passes everything."""
from __future__ import annotations

import functools

import pytest

import conformance
from conformance.loader import load_cases
from conformance.results import Status

from .mutants import MUTANTS, VARIANTS

NAMED = {"bce-reject-input-above-one", "bce-clamp-p0-y1", "grad-bce-eps-floor-ends", "grad-document-bce-mean",
         "grad-logits-mixed-narrow-input", "grad-bce-reject-weight", "grad-bce-grad-output"}
"""The cases the tests below name besides the mutants' own `catches`."""


@functools.cache
def _mutant_run():
    """Every mutant on the cases the tests judge it by (its `catches`, and NAMED): a mutant's verdict elsewhere is
    never asserted. In this process (the mutants are NumPy code that neither crashes nor hangs), references from the
    session's cache; once per process, however pytest-xdist orders the tests."""
    checked = NAMED | {case_id for mutant in MUTANTS for case_id in mutant.catches}
    cases = [case for case in load_cases() if case.id in checked]
    return conformance.run([cls() for cls in MUTANTS], cases=cases, isolation=False, cache=True)


@pytest.fixture
def outcome():
    return _mutant_run()


def _results(outcome, backend, case_id, dtype):
    """The results of one case x dtype: one for a loss case, one per differentiated tensor for a gradient case."""
    found = [r for r in outcome.results if (r.backend, r.case_id, r.dtype) == (backend, case_id, dtype)]
    assert found, (backend, case_id, dtype)
    return found


def _status(outcome, backend, case_id, dtype):
    (result,) = _results(outcome, backend, case_id, dtype)
    return result


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.__name__)
def test_mutant_is_flagged(outcome, mutant, shipped_cases):
    ids = {case.id for case in shipped_cases}
    assert mutant.catches, "a mutant must name the cases that catch it"
    for case_id, dtype in mutant.catches.items():
        assert case_id in ids, f"{case_id} is not a shipped case"
        results = _results(outcome, mutant().name, case_id, dtype)
        flagged = [r for r in results if r.status in (Status.FAILED, Status.ERROR)]
        assert flagged, (case_id, dtype, [(r.wrt, r.status, r.message) for r in results])
        assert all(r.message for r in flagged)


def test_adapter_bugs_are_errors_not_passes(outcome):
    result = _status(outcome, "mutant-RaisesAttributeError", "bce-reject-input-above-one", "float32")
    assert result.status == Status.ERROR and "adapter bug" in result.message


def test_input_modification_is_named(outcome):
    result = _status(outcome, "mutant-ClipsInputInPlace", "bce-clamp-p0-y1", "float64")
    assert result.message == "modified its input 'input'"


@pytest.mark.parametrize("mutant, case_id, dtype, flagged", [
    ("GradTargetClampedLikeTheLoss", "grad-bce-eps-floor-ends", "float32", {"target"}),
    ("GradEpsTooLarge", "grad-bce-eps-floor-ends", "float32", {"input"}),
    ("GradMissingTarget", "grad-document-bce-mean", "float32", {"target"}),
    ("GradInLossDtype", "grad-logits-mixed-narrow-input", "float32", {"input"}),
    ("GradByWeightAccepted", "grad-bce-reject-weight", "float32", {"weight"}),
])
def test_gradient_mutants_are_flagged_on_the_wrong_gradient_only(outcome, mutant, case_id, dtype, flagged):
    results = _results(outcome, f"mutant-{mutant}", case_id, dtype)
    assert {r.wrt for r in results if r.status == Status.FAILED} == flagged
    assert all(r.status == Status.PASSED for r in results if r.wrt not in flagged)


def test_grad_output_modification_is_named(outcome):
    results = _results(outcome, "mutant-GradOutputNegatedInPlace", "grad-bce-grad-output", "float32")
    assert {r.message for r in results} == {"modified its input 'grad_output'"}


def test_correct_variants_pass_everything():
    """One test for all the variants, so that one xdist worker runs them all on every shipped case."""
    outcome = conformance.run([cls() for cls in VARIANTS], isolation=False, cache=True)
    for variant in VARIANTS:
        name = variant().name
        results = [r for r in outcome.results if r.backend == name]
        assert len(results) > 500, name
        differs_on = getattr(variant, "differs_on", frozenset())
        bad = [(r.case_id, r.dtype, r.message) for r in results
               if r.status != Status.PASSED and not differs_on & set(r.tags)]
        assert not bad, (name, bad)
        if differs_on:  # the documented difference is real, so the exemption is not hiding a pass
            assert any(r.status == Status.FAILED for r in results if differs_on & set(r.tags)), name
