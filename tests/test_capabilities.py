"""The capability model and rejections for the right reason, with adapters written the way a new user would."""
from __future__ import annotations

import json
from typing import ClassVar

import pytest

from conformance import Rejected, Unsupported, runner
from conformance.adapter import missing_features, needed_features
from conformance.backends.numpy_backend import NumpyBackend
from conformance.backends.torch_backend import TorchBackend
from conformance.cli import main
from conformance.compare import Outcome, check_rejection
from conformance.errors import ConfigError
from conformance.loader import schema_validator
from conformance.registry import Entry, _as_backends
from conformance.rejections import identify, rules
from conformance.results import Status


class _Library:
    """A library's BCE, as a new user wraps it: it validates nothing and knows nothing of the harness."""

    name = "library"
    dtypes = frozenset({"float32", "float64"})

    def availability(self):
        from conformance import Availability

        return Availability(True)

    def version(self) -> str:
        return "1.0"

    def sigmoid(self, input):
        return NumpyBackend().sigmoid(input)

    def _numpy(self, op, *args, **kwargs):
        try:
            return getattr(NumpyBackend(), op)(*args, **kwargs)
        except Rejected as exc:  # the library's own errors carry no rule
            raise ValueError(f"invalid argument: {exc}") from None

    def bce(self, input, target, *, weight, reduction):
        return self._numpy("bce", input, target, weight=weight, reduction=reduction)

    def bce_with_logits(self, input, target, *, weight, pos_weight, reduction):
        return self._numpy("bce_with_logits", input, target, weight=weight, pos_weight=pos_weight,
                           reduction=reduction)


class NoPosWeight(_Library):
    """Keras's situation: no pos_weight, said with NotImplementedError."""

    name = "no-pos-weight"

    def bce_with_logits(self, input, target, *, weight, pos_weight, reduction):
        if pos_weight is not None:
            raise NotImplementedError("this library has no pos_weight")
        return super().bce_with_logits(input, target, weight=weight, pos_weight=None, reduction=reduction)


class NoBce(_Library):
    """optax's situation: no BCE on probabilities."""

    name = "no-bce"
    bce = None


class DeclaredNoWeight(_Library):
    """tinygrad's situation: no weight, declared."""

    name = "declared-no-weight"
    unsupported: ClassVar[dict[str, str]] = {"bce.weight": "the library has no weight argument",
                   "bce_with_logits.weight": "the library has no weight argument"}


class RaisesUnsupported(_Library):
    name = "raises-unsupported"

    def bce(self, input, target, *, weight, reduction):
        if reduction == "sum":
            raise Unsupported("no sum reduction")
        return super().bce(input, target, weight=weight, reduction=reduction)


class Hooked(_Library):
    """Maps the library's exceptions to rules with the hook."""

    name = "hooked"

    def rejection_rule(self, error):
        text = str(error)
        for rule, words in (("out_of_range", "between 0 and 1"), ("invalid_reduction", "reduction"), ("dtype", "dtype"),
                            ("shape_mismatch", "differs from input"), ("weight_shape", "does not broadcast"),
                            ("not_differentiable", "differentiable")):
            if words in text:
                return rule
        return None


class WrongRule(NumpyBackend):
    """Rejects every weight-shape breach as a shape mismatch."""

    name = "wrong-rule"

    def bce(self, input, target, *, weight, reduction):
        if weight is not None and weight.shape != target.shape:
            raise Rejected("shape_mismatch", "weight does not fit")
        return super().bce(input, target, weight=weight, reduction=reduction)


def _run(cases, backend):
    return runner.run(cases, [Entry(backend.name, "test", backend)], ["float32"], progress=False, isolation=None).results


@pytest.fixture(scope="module")
def float32_cases(shipped_cases):
    return [case for case in shipped_cases if "float32" in case.dtypes]


def _uses(case, name):
    return name in case.inputs


@pytest.mark.parametrize("adapter, uses", [
    (NoPosWeight, lambda case: _uses(case, "pos_weight")),
    (NoBce, lambda case: case.op in ("bce", "sigmoid_bce")),
    (DeclaredNoWeight, lambda case: _uses(case, "weight")),
])
def test_a_missing_feature_is_unsupported_never_a_rejection_pass(float32_cases, adapter, uses):
    chosen = [case for case in float32_cases if uses(case)]
    results = _run(chosen, adapter())
    rejections = [r for r in results if any(c.id == r.case_id and c.reject for c in chosen)]
    assert rejections and results
    assert {r.status for r in results} == {Status.UNSUPPORTED}, {(r.case_id, r.status, r.message) for r in results}
    assert not [r for r in rejections if r.status == Status.PASSED]


def test_the_reasons_name_the_feature(float32_cases):
    (case,) = [c for c in float32_cases if c.id == "bce-weight-last-dim"]
    (result,) = _run([case], NoBce())[:1]
    assert result.message.startswith("no-bce lacks bce: the adapter has no bce")
    (declared,) = _run([case], DeclaredNoWeight())[:1]
    assert "bce.weight: the library has no weight argument" in declared.message


def test_unsupported_raised_in_a_call(float32_cases):
    results = _run([c for c in float32_cases if c.op == "bce"], RaisesUnsupported())
    summed = [r for r in results if r.message == "Unsupported: no sum reduction"]
    assert summed and all(r.status == Status.UNSUPPORTED for r in summed)


def test_an_exception_without_a_rule_is_unverified_never_a_pass(float32_cases):
    results = _run([c for c in float32_cases if c.reject], _Library())
    assert results and not [r for r in results if r.status == Status.PASSED]
    assert {r.status for r in results} <= {Status.UNVERIFIED, Status.UNSUPPORTED}
    assert any(r.message.startswith("rejected, reason unverified") for r in results)


def test_a_hook_establishes_the_rule(float32_cases):
    results = _run([c for c in float32_cases if c.reject and not c.grad], Hooked())  # it has no gradients
    assert results and all(r.status == Status.PASSED for r in results), \
        {(r.case_id, r.status, r.message) for r in results if r.status != Status.PASSED}


def test_a_rejection_for_another_rule_fails(float32_cases):
    results = _run([c for c in float32_cases if c.reject == "weight_shape" and c.op == "bce"], WrongRule())
    assert results and all(r.status == Status.FAILED for r in results)
    assert "another rule (shape_mismatch" in results[0].message


@pytest.mark.parametrize("error, status", [
    (KeyError("weight"), Status.ERROR),
    (IndexError("tuple index out of range"), Status.ERROR),
    (TypeError("unsupported operand type(s) for *: 'NoneType' and 'float'"), Status.ERROR),
    (ValueError("bad input"), Status.UNVERIFIED),
    (Rejected("out_of_range"), Status.PASSED),
    (Rejected("no_such_rule"), Status.ERROR),
    (TypeError("input and target must share a floating dtype"), Status.UNVERIFIED),
])
def test_adapter_bugs_are_not_rejections(error, status):
    assert check_rejection(Outcome(error=error), "out_of_range", _Library()).status == status


@pytest.mark.parametrize("error, rule", [
    (RuntimeError("all elements of target should be between 0 and 1"), "out_of_range"),
    (ValueError("Using a target size (torch.Size([2])) that is different to the input size (torch.Size([3])) is "
                "deprecated. Please ensure they have the same size."), "shape_mismatch"),
    (ValueError("avg is not a valid value for reduction"), "invalid_reduction"),
    (RuntimeError("Found dtype Double but expected Float"), "dtype"),
    (RuntimeError("The size of tensor a (3) must match the size of tensor b (2) at non-singleton dimension 0"),
     "weight_shape"),
    (ValueError("all elements of input should be between 0 and 1"), None),  # PyTorch raises RuntimeError
    (RuntimeError("Invalid reduction dimension 0 for input with 0 dimensions"), None),
])
def test_the_pytorch_convention(error, rule):
    assert identify(TorchBackend("cpu"), error).rule == rule


def test_torch_rejects_every_shipped_rejection_case_for_its_rule(float32_cases):
    """The PyTorch signatures in data/rejection-rules.yaml hold on the installed torch (2.13 when measured)."""
    pytest.importorskip("torch")
    results = _run([c for c in float32_cases if c.reject], TorchBackend("cpu"))
    assert results and all(r.status == Status.PASSED for r in results), \
        {(r.case_id, r.status, r.message) for r in results if r.status != Status.PASSED}


def test_the_rules_are_the_case_format_vocabulary():
    schema = schema_validator().schema
    (vocabulary,) = [node["properties"]["reject"]["enum"] for node in _walk(schema)
                     if isinstance(node, dict) and "reject" in node.get("properties", {})]
    assert sorted(vocabulary) == sorted(rules().descriptions)


def _walk(node):
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        yield from _walk(child)


def test_bce_none_is_an_adapter_without_bce():
    (adapter,) = _as_backends(NoBce(), "test")
    assert missing_features(adapter)["bce"] == "the adapter has no bce"
    assert needed_features("sigmoid_bce", {"input", "target", "weight"}, "sum", False) == [
        "sigmoid", "bce", "bce.weight", "reduction.sum"]


@pytest.mark.parametrize("declared, fragment", [
    ({"bce.wieght": "typo"}, "unknown feature 'bce.wieght'"),
    ({"bce.weight": ""}, "gives no reason for 'bce.weight'"),
    (["bce"], "must map features to reasons"),
])
def test_a_bad_declaration_is_one_line(declared, fragment):
    adapter = _Library()
    adapter.unsupported = declared
    with pytest.raises(ConfigError, match=fragment):
        _as_backends(adapter, "backend 'x:y'")


def test_an_adapter_missing_both_losses_is_named():
    adapter = NoBce()
    adapter.bce_with_logits = None
    with pytest.raises(ConfigError, match="neither bce nor bce_with_logits"):
        _as_backends(adapter, "test")
    with pytest.raises(ConfigError, match=r"missing availability, version\)"):
        _as_backends(type("Half", (), {"name": "h", "dtypes": (), "availability": None})(), "test")


NO_POS_WEIGHT = NoPosWeight()


def test_coverage_shows_and_gates(tmp_path, capsys):
    report = tmp_path / "report.json"
    argv = ["run", "--backend", "tests.test_capabilities:NO_POS_WEIGHT", "-k", "^logits-", "--dtype", "float32",
            "--no-isolation", "--format", "json", "--output", str(report)]
    assert main(argv) == 0
    document = json.loads(report.read_text())
    ((covered),) = document["coverage"]
    assert covered["backend"] == "no-pos-weight" and 0 < covered["judged"] < covered["specified"]
    table = capsys.readouterr().out
    assert f"{covered['judged']}/{covered['specified']} (" in table
    assert main([*argv, "--min-coverage", "100"]) == 1
    assert "--min-coverage 100% not met: no-pos-weight" in capsys.readouterr().err
