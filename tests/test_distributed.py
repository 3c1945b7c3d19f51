"""Sweeps on a Dask LocalCluster of 2 workers report what a sweep in one process reports; a dying worker loses
only its task, which runs again."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest

from conformance.accuracy import atlas as atlas_module
from conformance.accuracy.atlas import build
from conformance.accuracy.regions import load_regions, select
from conformance.backends.numpy_backend import NumpyBackend
from conformance.registry import Entry

distributed = pytest.importorskip("dask.distributed", reason="the distributed extra is not installed")

DIES_ONCE_MARK = "BCE_TEST_DIES_ONCE_MARK"


class FailsPastTheMiddle(NumpyBackend):
    """Raises on chunks whose inputs all exceed 1e-30 (probs-near-0-soft's after its first, in float32): its row
    stops partway, as an adapter bug would stop it."""

    name = "fails-past-the-middle"

    def bce(self, input, target, *, weight, reduction):
        if input.size and float(input.min()) > 1e-30:
            raise RuntimeError("past the middle")
        return super().bce(input, target, weight=weight, reduction=reduction)


class DiesOnce(NumpyBackend):
    """Kills its process on its first call anywhere (a marker file remembers), then computes as numpy does."""

    name = "dies-once"

    def bce(self, input, target, *, weight, reduction):
        mark = Path(os.environ[DIES_ONCE_MARK])
        if not mark.exists():
            mark.write_text("died")
            os._exit(1)
        return super().bce(input, target, weight=weight, reduction=reduction)


FAILS = FailsPastTheMiddle()
DIES = DiesOnce()


def _entries(*names):
    """Entries that worker processes re-create by module:attr."""
    return [Entry(NumpyBackend().name, "built-in", NumpyBackend())] + [
        Entry(globals()[name].name, f"{__name__}:{name}", globals()[name]) for name in names]


def _comparable(atlas, rename=None):
    """Everything an atlas reports but the times (and with one backend's name replaced, when asked)."""
    def name(text):
        return rename.get(text, text) if rename else text

    return {
        "rows": [dataclasses.replace(r, seconds=0.0, backend=name(r.backend)) for r in atlas.rows],
        "swept": [dataclasses.replace(s, reference_seconds=0.0) for s in atlas.swept],
        "agreement": [dataclasses.replace(a, a=name(a.a), b=name(a.b)) for a in atlas.agreement],
        "envelopes": [(name(e.backend), e.region, e.dtype, e.edges.tolist(), np.nan_to_num(e.max_ulp, nan=-1).tolist())
                      for e in atlas.envelopes],
    }


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    os.environ[DIES_ONCE_MARK] = str(tmp_path_factory.mktemp("dies") / "mark")  # inherited by the workers
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with cluster, distributed.Client(cluster) as connected:
        yield connected
    del os.environ[DIES_ONCE_MARK]


def _regions(pattern):
    return select(load_regions(), [pattern], None, exhaustive=True)


@pytest.mark.parametrize("pattern, dtype, chunks", [
    ("^probs-near-0-soft$", "float32", 4),  # a grid and random draws, 2 chunks each
    ("^logits-all-negative-y1$", "float16", 1),  # every negative float16: an exhaustive sweep
])
def test_a_cluster_of_two_reports_what_one_process_reports(client, monkeypatch, pattern, dtype, chunks):
    monkeypatch.setattr(atlas_module, "TASK_CHUNKS", 1)  # a task per chunk, folded back in order
    regions, entries = _regions(pattern), _entries("FAILS")
    assert atlas_module.plan(regions[0], dtype, 700_000).chunk_count == chunks
    here = build(regions, entries, [dtype], 700_000, progress=False)
    there = build(regions, entries, [dtype], 700_000, progress=False, client=client)
    assert _comparable(there) == _comparable(here)
    assert [s.exhaustive for s in here.swept] == [chunks == 1]


def test_the_fold_leaves_out_a_row_that_stopped(client, monkeypatch):
    monkeypatch.setattr(atlas_module, "TASK_CHUNKS", 1)
    here = build(_regions("^probs-near-0-soft$"), _entries("FAILS"), ["float32"], 700_000, progress=False)
    stopped = next(r for r in here.rows if r.backend == FAILS.name)
    assert "past the middle" in stopped.error and 0 < stopped.points < 700_000  # what the test above folded


def test_a_dying_worker_loses_only_its_task(client, monkeypatch):
    monkeypatch.setattr(atlas_module, "TASK_CHUNKS", 1)
    regions = _regions("^probs-near-0-soft$")
    there = build(regions, _entries("DIES"), ["float32"], 700_000, progress=False, client=client)
    assert Path(os.environ[DIES_ONCE_MARK]).exists()  # a worker died in its first call
    numpy, retried = _comparable(there, {DIES.name: "numpy"})["rows"]
    alone = _comparable(build(regions, _entries(), ["float32"], 700_000, progress=False))["rows"]
    assert numpy == retried == alone[0]


def test_fuzz_on_a_cluster_of_two_finds_what_it_finds_here(client):
    from conformance import registry
    from conformance.fuzz import FuzzConfig, fuzz
    from conformance.properties import all_properties

    entries = registry.select(["numpy", "tests.mutants:ClampAt50"])
    properties = all_properties()[:2]
    config = FuzzConfig(examples=15, seed=3)
    here = fuzz(entries, properties, config, ["bce"], ["float32"], progress=False, isolation=None)
    there = fuzz(entries, properties, config, ["bce"], ["float32"], progress=False, client=client)
    assert [dataclasses.replace(r, seconds=0.0) for r in there.results] == \
           [dataclasses.replace(r, seconds=0.0) for r in here.results]
    assert {r.status for r in here.results} >= {"passed", "failed"} and there.seed == here.seed
