"""The built-in torch-compile backend: unavailable without a C++ compiler, run only when named, PyTorch's own errors
from under Dynamo's wrapper, and (marker slow: each worker compiles) its verdicts in a real run."""
from __future__ import annotations

from pathlib import Path

import pytest

from conformance import expectations, named, probing, registry, runner
from conformance.backends import torch_compile_backend
from conformance.backends.torch_compile_backend import TorchCompileBackend, _underneath
from conformance.isolation import Settings
from conformance.loader import load_cases
from conformance.results import Status

CASES = Path(__file__).resolve().parent.parent / "cases"


def test_without_a_cpp_compiler_it_is_unavailable_for_that_reason(monkeypatch):
    monkeypatch.setattr(torch_compile_backend.shutil, "which", lambda name: None)
    availability = TorchCompileBackend().availability()
    assert not availability.available and "C++" in availability.reason and "g++" in availability.reason


def test_it_runs_only_when_named():
    assert "torch-compile" not in {entry.name for entry in registry.select(None)}
    assert [entry.name for entry in registry.select(["torch-compile"])] == ["torch-compile"]


def test_it_declares_itself_stateful_and_without_second_order_or_forward_mode():
    (info,) = probing.inspect(registry.select(["torch-compile"]))
    assert info.stateful and set(info.gradients) == {"bce", "bce_with_logits", "sigmoid_bce"}
    backend = TorchCompileBackend()
    assert backend.bce_grad2 is None and backend.bce_jvp is None


def test_pytorch_s_error_comes_out_from_under_dynamo_s():
    dynamo = type("TorchRuntimeError", (RuntimeError,), {"__module__": "torch._dynamo.exc"})
    unsupported = type("Unsupported", (Exception,), {"__module__": "torch._dynamo.exc"})
    try:
        try:
            try:
                raise ValueError("Using a target size (torch.Size([2])) that is different to the input size")
            except ValueError as original:
                raise unsupported("fake tensor call") from original
        except Exception:
            raise dynamo("RuntimeError when making fake tensor call")  # noqa: B904 (Dynamo chains it implicitly)
    except Exception as wrapped:
        found = _underneath(wrapped)
    assert type(found) is ValueError and "target size" in str(found)
    alone = dynamo("nothing underneath")
    assert _underneath(alone) is alone


def test_its_manifest_gives_reasons():
    manifest = expectations.load(named.manifest("torch-compile"))
    assert manifest.backend == "torch-compile" and manifest.entries
    assert all(len(entry.reason) > 40 for entry in manifest.entries)


@pytest.mark.slow
def test_a_compiled_run_passes_and_rejects_for_pytorch_s_rules():
    """The document's examples and the shape rejections, compiled in a worker that warms up first (the first compile
    would overrun a 30 s --timeout on a busy machine)."""
    if not TorchCompileBackend().availability().available:
        pytest.skip(TorchCompileBackend().availability().reason)
    cases = [case for case in load_cases([CASES / "document.yaml", CASES / "rejections.yaml"])
             if case.id.startswith("document-bce-mean") or case.id.startswith("bce-reject-shape")]
    assert len(cases) >= 2
    results = runner.run(cases, registry.select(["torch-compile"]), ["float32"], progress=False,
                         isolation=Settings()).results
    assert results and all(r.status == Status.PASSED for r in results), [(r.case_id, r.message) for r in results]
