"""The shipped backends pass every case they support; torch-cuda is reported unavailable here, with its reason."""
from __future__ import annotations

import pytest

from conformance import registry, runner
from conformance.cache import Cache
from conformance.inputs import LAYOUTS
from conformance.results import Status


def _run(shipped_cases, name):
    entries = registry.select([name])
    return runner.run(shipped_cases, entries, progress=False, cache=Cache())  # the session's: computed once


@pytest.mark.parametrize("name", ["numpy", "torch-cpu"])
def test_backend_passes_every_case(shipped_cases, name):
    if name.startswith("torch"):
        pytest.importorskip("torch")
    outcome = _run(shipped_cases, name)
    assert outcome.backends[0].available
    bad = [(r.case_id, r.dtype, r.message) for r in outcome.results if r.status != Status.PASSED]
    assert not bad, bad
    ran = {r.dtype for r in outcome.results}
    assert {"float16", "bfloat16", "float32", "float64", "int64", "bool"} <= ran
    in_c_order = [r for r in outcome.results if r.layout == "c"]
    assert len(in_c_order) == sum(len(case.dtypes) * len(case.checks) for case in shipped_cases)
    assert {r.layout for r in outcome.results} == set(LAYOUTS)
    assert {r.wrt for r in outcome.results} == {None, "input", "target", "weight", "pos_weight"}


def test_torch_cuda_is_skipped_with_its_reason_without_a_gpu(shipped_cases):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the CUDA run is the real thing")
    outcome = _run(shipped_cases, "torch-cuda")
    info = outcome.backends[0]
    assert not info.available and "CUDA" in info.reason
    assert outcome.results == []


def test_builtin_backends_are_discovered():
    assert {"numpy", "torch-cpu", "torch-cuda"} <= {entry.name for entry in registry.builtin()}
