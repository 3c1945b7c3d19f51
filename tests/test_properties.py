"""Property-based and metamorphic conformance: the properties hold for the shipped backends, catch the
mutants that show on random inputs (naming which), and their counterexamples replay as YAML cases."""
from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given

import conformance
from bce_reference import FLOAT_DTYPES
from conformance import registry
from conformance.cli import main
from conformance.errors import ConfigError
from conformance.execution import in_process
from conformance.fuzz import FuzzConfig, fuzz
from conformance.loader import load_cases
from conformance.properties import all_properties
from conformance.relations import load_relations
from conformance.results import Status

from . import mutants

PROPERTIES = {p.id: p for p in all_properties()}


def _backend(name):
    if name.startswith("torch"):
        pytest.importorskip("torch")
    return registry.select([name])[0].backend


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("prop, op", [(p, op) for p in PROPERTIES.values() for op in p.ops],
                         ids=lambda v: v if isinstance(v, str) else v.id)
@pytest.mark.parametrize("name", ["numpy", "torch-cpu"])
def test_property_holds(name, prop, op, dtype):
    """Each property through pytest and hypothesis directly; examples come from the hypothesis profile
    (tests/conftest.py loads bce-ci unless --hypothesis-profile says otherwise)."""
    invoke = in_process(_backend(name))

    @given(prop.strategy(op, dtype))
    def holds(sample):
        verdict = prop.check(invoke, sample)
        assert verdict is None or verdict.status == Status.PASSED, verdict.message

    holds()


# Which mutant each property catches: the core issue's mutants that show on random inputs, and two
# that no fixed case catches (fixed cases have at most two dimensions).
CAUGHT = [
    (mutants.KerasEpsilonClip, "matches-reference", "bce", "float32"),  # first: the default run's hunt, quick
    (mutants.Float16Inside, "matches-reference", "bce", "float32"),
    (mutants.ClampAt50, "matches-reference", "bce", "float64"),
    (mutants.AcceptsOutOfRange, "matches-reference", "bce", "float32"),
    (mutants.BroadcastsShapes, "matches-reference", "bce", "float64"),
    (mutants.UnknownReductionMeansMean, "matches-reference", "bce", "float32"),
    (mutants.EmptyMeanIsZero, "matches-reference", "bce", "float32"),
    (mutants.AlwaysFloat64, "matches-reference", "bce", "float16"),
    (mutants.KeepsDimsOnMean, "matches-reference", "bce", "float32"),
    (mutants.MeanOverRows, "sum-is-mean-times-n", "bce", "float32"),
    (mutants.SumForMean, "sum-is-mean-times-n", "bce", "float64"),
    (mutants.WeightNormalisedMean, "constant-weight-scales", "bce", "float32"),
    (mutants.NaiveSoftplus, "matches-reference", "bce_with_logits", "float32"),
    (mutants.LogitsAsBceOfSigmoid, "logits-sign-symmetry", "bce_with_logits", "float64"),
    (mutants.PosWeightOnNegativeTerm, "matches-reference", "bce_with_logits", "float32"),
    (mutants.GradMeanNotDivided, "gradient-of-sum-is-n-times-gradient-of-mean", "bce", "float32"),
    (mutants.GradientSignFlipped, "gradient-matches-reference", "bce_with_logits", "float64"),
    (mutants.GradWeightDropped, "gradient-matches-reference", "bce", "float32"),
    (mutants.GradTargetClampedLikeTheLoss, "gradient-matches-reference", "bce", "bfloat16"),  # only at p = 0, 1
    (mutants.GradOutputIgnored, "gradient-matches-reference", "bce_with_logits", "float32"),
    (mutants.MeanAssumes2D, "sum-is-mean-times-n", "bce", "float32"),
    (mutants.MeanAssumes2D, "matches-reference", "bce", "float64"),
    (mutants.PosWeightChannelAxis, "matches-reference", "bce_with_logits", "float32"),
]


def _explore(backend, prop_id, op, dtype, examples, save=None):
    config = FuzzConfig(examples=examples, seed=0, save_failures=save)
    run = fuzz(conformance.entries(backend), [PROPERTIES[prop_id]], config, [op], [dtype], progress=False,
               isolation=None)
    (result,) = run.results
    return result


EXAMPLES = {mutants.PosWeightChannelAxis: 3000}
"""Budgets above the default: its wrong axis shows only on inputs of 3 or more dims with a 1-d pos_weight."""


def _first_hunt_of_each_property():
    """CAUGHT with the marker slow on all but the first hunt of each property: the default run searches once per
    property (a few seconds each), `-m slow` does every hunt (minutes: PosWeightChannelAxis's 3,000 examples)."""
    first = {prop_id: (mutant, op, dtype) for mutant, prop_id, op, dtype in reversed(CAUGHT)}
    return [pytest.param(*entry, marks=() if first[entry[1]] == (entry[0], *entry[2:]) else pytest.mark.slow)
            for entry in CAUGHT]


@pytest.mark.parametrize("mutant, prop_id, op, dtype", _first_hunt_of_each_property(),
                         ids=lambda v: getattr(v, "__name__", v))
def test_property_catches_mutant(mutant, prop_id, op, dtype):
    result = _explore(mutant(), prop_id, op, dtype, examples=EXAMPLES.get(mutant, 1000))
    assert result.status in (Status.FAILED, Status.ERROR), result.message


def test_no_mutant_escapes_the_fixed_cases():
    """The properties still catch MeanAssumes2D and PosWeightChannelAxis (above), and now the cases do too."""
    assert not mutants.FUZZ_ONLY_MUTANTS
    assert {mutants.MeanAssumes2D, mutants.PosWeightChannelAxis} <= set(mutants.MUTANTS)
def _witness(op, shape, **extra):
    """A sample of `shape` (3-d: what no fixed case has) on which a fuzz-only mutant shows."""
    from conformance.strategies import Sample

    x = np.linspace(0.1, 0.9, int(np.prod(shape)), dtype=np.float32).reshape(shape)
    return Sample(op=op, dtype="float32", tensors={"input": x, "target": np.ones_like(x), **extra}, reduction="mean")


WITNESSES = [
    (mutants.MeanAssumes2D, "sum-is-mean-times-n", _witness("bce", (2, 2, 2))),
    (mutants.MeanAssumes2D, "matches-reference", _witness("bce", (2, 2, 2))),
    (mutants.PosWeightChannelAxis, "matches-reference",
     _witness("bce_with_logits", (2, 3, 3), pos_weight=np.array([1, 2, 3], dtype=np.float32))),
]


@pytest.mark.parametrize("mutant, prop_id, sample", WITNESSES, ids=lambda v: getattr(v, "__name__", None))
def test_property_flags_a_fuzz_only_mutant_on_its_witness(mutant, prop_id, sample):
    """The default run's cheap form of the slow hunts for the mutants no fixed case catches: the property flags
    the mutant on a sample of the kind the search finds, and passes the numpy backend on it."""
    prop = PROPERTIES[prop_id]
    assert prop.check(in_process(mutant()), sample).status == Status.FAILED
    assert prop.check(in_process(_backend("numpy")), sample).status == Status.PASSED


def test_counterexample_is_saved_as_a_case_that_replays(tmp_path, capsys):
    mutant = mutants.MeanAssumes2D()
    result = _explore(mutant, "sum-is-mean-times-n", "bce", "float32", examples=1000, save=tmp_path)
    assert result.status == Status.FAILED and "saved to" in result.message
    (saved,) = tmp_path.glob("*.yaml")
    cases = load_cases([saved])  # valid under the case schema
    assert len(cases) == 2 and {c.id.rsplit("-", 1)[1] for c in cases} == {"left", "right"}
    assert all("fuzz" in c.tags and c.dtypes == ("float32",) for c in cases)
    assert result.rerun == f"python -m conformance run --cases {saved} --backend {mutant.name}"
    assert main(["run", "--cases", str(saved), "--backend", "tests.mutants:MeanAssumes2D", "--no-isolation"]) == 1
    assert main(["run", "--cases", str(saved), "--backend", "numpy", "--no-isolation"]) == 0
    capsys.readouterr()


def test_the_fuzz_command_saves_a_failure_that_the_run_command_replays(tmp_path, capsys):
    """The issue's end-to-end: fuzz a broken backend into a folder, then run that folder's cases."""
    folder = tmp_path / "found"
    argv = ["--backend", "tests.mutants:MeanOverRows", "--property", "sum-is-mean-times-n", "--op", "bce",
            "--dtype", "float32"]
    assert main(["fuzz", *argv, "--examples", "200", "--save-failures", str(folder)]) == 1
    assert "saved to" in capsys.readouterr().out
    assert main(["run", "--cases", str(folder), "--backend", "tests.mutants:MeanOverRows"]) == 1
    assert main(["run", "--cases", str(folder), "--backend", "numpy"]) == 0


def test_runs_are_reproducible():
    first = _explore(mutants.NoClamp(), "matches-reference", "bce", "float32", examples=50)
    second = _explore(mutants.NoClamp(), "matches-reference", "bce", "float32", examples=50)
    assert first.status == Status.FAILED  # a search that finds, and shrinks, something
    assert (first.status, first.message, first.got) == (second.status, second.message, second.got)


def test_unsupported_gradient_property(capsys):
    class NoGradients:  # the README's kind of adapter, without the gradient capability
        name, dtypes = "no-gradients", frozenset({"float32"})
        availability, version = mutants.NumpyBackend.availability, mutants.NumpyBackend.version
        bce, bce_with_logits, sigmoid = (mutants.NumpyBackend.bce, mutants.NumpyBackend.bce_with_logits,
                                         mutants.NumpyBackend.sigmoid)

    result = _explore(NoGradients(), "gradient-matches-reference", "bce", "float32", examples=5)
    assert result.status == Status.UNSUPPORTED


def test_relations_file_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "relations.yaml"
    bad.write_text("relations:\n  - id: x\n    description: d\n    ops: [bce]\n    left: {transform: [flip]}\n"
                   "    right: {}\n")
    with pytest.raises(ConfigError, match=rf"{bad}:5"):
        load_relations(bad)


def test_the_relations_the_issue_names_are_shipped():
    assert {r.id for r in load_relations()} >= {"logits-equal-bce-of-sigmoid", "bce-complement-symmetry",
                                               "logits-sign-symmetry", "sum-is-mean-times-n", "none-summed-is-sum",
                                               "permutation-invariance", "constant-weight-scales",
                                               "unit-pos-weight-is-no-pos-weight",
                                               "gradient-of-sum-is-n-times-gradient-of-mean"}


def test_fuzz_command_exit_status(capsys):
    argv = ["fuzz", "--property", "sum-is-mean-times-n", "--op", "bce", "--dtype", "float32", "--examples", "20"]
    assert main([*argv, "--backend", "numpy"]) == 0
    assert main([*argv, "--backend", "tests.mutants:MeanOverRows"]) == 1
    assert main(["fuzz", "--property", "no-such-property"]) == 2
    _, err = capsys.readouterr()
    assert "unknown property 'no-such-property'" in err


def test_a_harness_error_is_one_result_and_the_run_goes_on():
    class Broken:
        id, description, ops, wrt, gradient = "broken", "raises inside the harness", ("bce",), (), False

        def strategy(self, op, dtype):
            return PROPERTIES["matches-reference"].strategy(op, dtype)

        def check(self, invoke, sample):
            raise OverflowError("intermediate overflow in fsum")

    config = FuzzConfig(examples=5, seed=0)
    entries = registry.select(["numpy"])
    run = fuzz(entries, [Broken(), PROPERTIES["sum-is-mean-times-n"]], config, ["bce"], ["float32"], progress=False)
    broken, fine = run.results
    assert broken.status == Status.ERROR and "the harness failed" in broken.message and "OverflowError" in broken.message
    assert broken.rerun.startswith("python -m conformance fuzz --backend numpy --property broken")
    assert fine.status == Status.PASSED


def test_an_exact_sum_past_the_largest_float_is_inf():
    from conformance.properties import _exact_sum

    assert _exact_sum(np.array([1.5e308, 36.0, 1.5e308])) == np.inf
    assert _exact_sum(np.array([1e308, 1e308, -1e308])) == 1e308


def test_a_relation_on_infinite_elements_of_both_signs_warns_nothing():
    """A loss of +inf and -inf elements (targets outside [0, 1] are legal for the logits op) is checked
    silently: a fuzz run's standard error carries no RuntimeWarning from the harness."""
    from conformance.strategies import Sample

    x = np.array([np.inf, np.inf], dtype=np.float32)
    y = np.array([0.0, 2.0], dtype=np.float32)
    sample = Sample(op="bce_with_logits", dtype="float32", tensors={"input": x, "target": y}, reduction="sum")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        verdict = PROPERTIES["none-summed-is-sum"].check(in_process(_backend("numpy")), sample)
    assert verdict is not None and verdict.status == Status.PASSED, verdict


def test_a_manifest_accepts_a_property_a_backend_is_known_to_break(tmp_path, capsys):
    manifest = tmp_path / "no-clamp.yaml"
    manifest.write_text("backend: mutant-NoClamp\nexpectations:\n"
                        "  - {case: matches-reference, outcome: failed, reason: no clamp of the log at -100}\n")
    argv = ["fuzz", "--backend", "tests.mutants:NoClamp", "--property", "matches-reference", "--op", "bce",
            "--dtype", "float32", "--examples", "20", "--no-progress"]
    assert main(argv) == 1
    assert main([*argv, "--expectations", str(manifest)]) == 0
    out, err = capsys.readouterr()
    assert "expected failed" in out and "no clamp of the log at -100" in out and err == ""


def test_an_infinite_target_gradient_at_p_0_or_1_is_judged_not_skipped():
    """-logit(p) is +-inf at p = 0 and 1 in any order of evaluation (no factor that follows can underflow
    here): no overflow, so the sample is judged; it is skipped where a factor below 1 could underflow first."""
    from conformance.strategies import Sample

    p = np.array([0.0, 0.5, 1.0], dtype=np.float32)
    y = np.array([0.25, 0.25, 0.25], dtype=np.float32)
    sample = Sample(op="bce", dtype="float32", tensors={"input": p, "target": y}, reduction="sum",
                    grad=("input", "target"))
    prop = PROPERTIES["gradient-matches-reference"]
    assert prop.check(in_process(_backend("numpy")), sample).status == Status.PASSED
    verdict = prop.check(in_process(mutants.GradTargetClampedLikeTheLoss()), sample)
    assert verdict.status == Status.FAILED and "d/d target" in verdict.message
    tiny = np.full(3, 1e-30, dtype=np.float32)  # g w = 1e-60 underflows: inf or NaN by the order of evaluation
    underflowing = replace(sample.with_tensors(weight=tiny), grad_output=np.float32(1e-30))
    assert prop.check(in_process(_backend("numpy")), underflowing) is None


class _ArithmeticBug(mutants.NoClamp):
    """An adapter whose own code breaks with a TypeError Python raises for a bug, not for a rejection."""

    name = "arithmetic-bug"

    def bce(self, input, target, *, weight, reduction):
        raise TypeError("unsupported operand type(s) for +: 'NoneType' and 'float'")


def test_run_and_fuzz_both_call_an_arithmetic_type_error_an_adapter_bug():
    """One rule (adapter.adapter_bug) for run and the properties: such a TypeError is an error, not a failure."""
    sample = _witness("bce", (2, 2))
    for prop_id in ("matches-reference", "sum-is-mean-times-n"):  # a differential property, and a relation
        assert PROPERTIES[prop_id].check(in_process(_ArithmeticBug()), sample).status == Status.ERROR, prop_id
    outcome = conformance.run([_ArithmeticBug()], cases=[c for c in load_cases() if c.id == "document-bce-mean"],
                              isolation=False)
    assert {r.status for r in outcome.results} == {Status.ERROR}
