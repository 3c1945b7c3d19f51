"""Search the input space with hypothesis: every property x op x dtype x backend; counterexamples become YAML cases."""
from __future__ import annotations

import hashlib
import random
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from hypothesis import given, seed, settings
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.errors import HypothesisException
from tqdm import tqdm

from bce_reference import FLOAT_DTYPES, Rejected

from .compare import Verdict
from .errors import ConfigError
from .execution import Invoke, in_process
from .isolation import Settings, calls_for
from .probing import probe
from .profiles import SETTINGS
from .properties import Property, all_properties, not_checkable, specified
from .registry import Entry
from .results import BackendInfo, Result, Run, Status
from .strategies import Sample

DEFAULT_SEEDS = {"ci": 0, "nightly": None}  # nightly: a fresh seed, printed in the report


@dataclass(frozen=True)
class FuzzConfig:
    profile: str = "ci"
    examples: int | None = None
    seed: int | None = None
    database: Path | None = None  # hypothesis's example database; None keeps runs independent of history
    save_failures: Path | None = None

    def resolved_seed(self) -> int:
        if self.seed is not None:
            return self.seed
        default = DEFAULT_SEEDS[self.profile]
        return default if default is not None else random.SystemRandom().randrange(2**32)

    def max_examples(self) -> int:
        return self.examples if self.examples is not None else SETTINGS[self.profile].max_examples


class _Counterexample(Exception):
    """Raised inside the hypothesis test so that it shrinks the sample."""


HALTING = (Status.CRASHED, Status.TIMEOUT, Status.UNSUPPORTED)
"""Verdicts not worth shrinking: each try would cost a worker process, or the time limit; or the backend lacks
what the sample asks for, which no smaller sample changes (and which is no counterexample to save)."""


@dataclass
class _Exploration:
    calls: int = 0
    failure: tuple[Sample, Verdict] | None = None
    halted: bool = False  # the backend crashed or hung: no more calls; the sample that did it is the witness


def _explore(invoke: Invoke, prop: Property, op: str, dtype: str, config: FuzzConfig, run_seed: int) -> _Exploration:
    state = _Exploration()
    database = DirectoryBasedExampleDatabase(str(config.database)) if config.database else None

    @seed(run_seed)
    @settings(SETTINGS[config.profile], max_examples=config.max_examples(), derandomize=False,
              database=database, print_blob=False, report_multiple_bugs=False)
    @given(prop.strategy(op, dtype))
    def explore(sample: Sample) -> None:
        if not state.halted:  # once halted, every sample fails without a call (one raise: hypothesis sees one bug)
            state.calls += 1
            verdict = prop.check(invoke, sample)
            if verdict is None or verdict.status == Status.PASSED:
                return
            state.failure = (sample, verdict)  # hypothesis replays the shrunk example last
            state.halted = verdict.status in HALTING
        raise _Counterexample()

    try:
        explore()
    except _Counterexample:
        pass
    return state


def _literal(array: np.ndarray) -> Any:
    """Nested lists of floats whose decimal form reads back, rounded to the dtype, as the same value."""
    return array.astype(np.float64).tolist()


def sample_to_case(sample: Sample, case_id: str, description: str, found_by: dict[str, Any]) -> dict[str, Any]:
    """A case (schemas/case-file.schema.json) that replays `sample` against the reference."""
    case: dict[str, Any] = {
        "id": case_id,
        "description": description[:300],
        "op": sample.op,
        "inputs": {name: _literal(array) for name, array in sample.tensors.items()},
        "reduction": sample.reduction,
        "dtypes": [sample.dtype],
        "tags": ["fuzz"],
        "found_by": found_by,
    }
    if sample.grad:
        case["grad"] = list(sample.grad)
        if sample.grad_output is not None:
            case["grad_output"] = _literal(sample.grad_output)
    try:
        specified(sample, method="fast")
    except Rejected as rejection:
        case["expect"] = {"reject": rejection.kind}
    return case


def save_counterexample(folder: Path, prop: Property, backend: str, sample: Sample, verdict: Verdict,
                        run_seed: int) -> Path:
    """Write the witnesses of a failure as one YAML case file; returns its path."""
    witnesses = prop.witnesses(sample)
    digest = hashlib.sha1(b"".join(a.tobytes() for w in witnesses for a in w.tensors.values())).hexdigest()[:8]
    stem = f"fuzz-{prop.id}-{sample.op}-{sample.dtype}-{digest}"
    found_by = {"property": prop.id, "backend": backend, "seed": run_seed}
    cases = [sample_to_case(w, f"{stem}-{side}" if len(witnesses) > 1 else stem,
                            f"{prop.id} failed on {backend} ({sample.dtype}, seed {run_seed}): {verdict.message}",
                            found_by)
             for w, side in zip(witnesses, ("left", "right"))]
    document = {"topic": f"Counterexample to {prop.id}: {prop.description}", "cases": cases}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{stem}.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False, width=100), encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{folder}: cannot save counterexample: {exc}") from None
    return path


def _rerun(backend: str, prop: Property, op: str, dtype: str, run_seed: int, examples: int, saved: Path | None) -> str:
    if saved is not None:
        return f"python -m conformance run --cases {shlex.quote(str(saved))} --backend {shlex.quote(backend)}"
    return (f"python -m conformance fuzz --backend {shlex.quote(backend)} --property {prop.id} --op {op} --dtype {dtype} "
            f"--seed {run_seed} --examples {examples}")


def fuzz(entries: list[Entry], properties: list[Property], config: FuzzConfig, ops: list[str] | None = None,
         dtypes: list[str] | None = None, progress: bool | None = None, *,
         isolation: Settings | None = Settings(), client: Any = None) -> Run:
    """Explore every property x op x dtype on every available backend; one Result each.

    Backend calls run in worker processes unless `isolation` is None: a crash or a hang ends that property's
    exploration with a counterexample, and the run goes on. Ctrl-C returns what finished, with `complete` False.
    With a Dask `client` (`conformance.distributed`), each property x op x dtype x backend is a task on its
    cluster, calling the backend in the Dask worker's process; the results are those of a run here.
    """
    infos, probed = probe(entries, isolation)
    run_seed = config.resolved_seed()
    run = Run(backends=infos, seed=run_seed)
    active = [(entry, info) for entry, info in zip(entries, infos) if info.available]
    work = [(index, entry, info, prop, op, dtype)
            for index, (entry, info) in enumerate(active)
            for prop in properties for op in prop.ops if not ops or op in ops
            for dtype in FLOAT_DTYPES if not dtypes or dtype in dtypes]
    if client is not None:
        return _distribute(client, run, work, config, progress)
    calls = calls_for([entry for entry, _ in active], isolation, probed)
    try:
        for index, entry, info, prop, op, dtype in tqdm(work, desc="fuzz", unit="property", leave=False,
                                                        disable=None if progress is None else not progress):
            assert entry.backend is not None  # only available backends are fuzzed
            _fuzz_one(run, Invoke(calls, index, entry.backend), entry, info, prop, op, dtype, config, run_seed)
    except KeyboardInterrupt:
        run.complete = False
    finally:
        calls.close()
    return run


def fuzz_task(entry: Entry, info: BackendInfo, prop_id: str, op: str, dtype: str, config: FuzzConfig,
              run_seed: int) -> list[Result]:
    """One property x op x dtype on one backend, called in this process: a task on a Dask worker."""
    prop = next(p for p in all_properties() if p.id == prop_id)
    run = Run(backends=[info])
    assert entry.backend is not None  # only available backends are fuzzed
    _fuzz_one(run, in_process(entry.backend), entry, info, prop, op, dtype, config, run_seed)
    return run.results


def _distribute(client: Any, run: Run, work: list[tuple[int, Entry, BackendInfo, Property, str, str]],
                config: FuzzConfig, progress: bool | None) -> Run:
    """Every piece of `work` as a task on the cluster, the results in the order of `work`; a task whose worker
    died again and again (Dask's allowed-failures) is a crashed result, and the run goes on."""
    from dask.distributed import as_completed

    assert run.seed is not None
    futures = [client.submit(fuzz_task, entry, info, prop.id, op, dtype, config, run.seed, pure=False)
               for _, entry, info, prop, op, dtype in work]
    place = {future.key: number for number, future in enumerate(futures)}
    done: dict[int, list[Result]] = {}
    bar = tqdm(total=len(futures), desc="fuzz", unit="property", leave=False,
               disable=None if progress is None else not progress)
    try:
        for future in as_completed(futures):
            number = place[future.key]
            try:
                done[number] = future.result()
            except Exception as exc:  # KilledWorker: the backend took the Dask worker down each time
                _, _, info, prop, op, dtype = work[number]
                done[number] = [Result(info.name, prop.id, op, dtype, Status.CRASHED,
                                       f"the search ended its Dask worker each time it ran: {type(exc).__name__}: "
                                       f"{exc}", f"property {prop.id}", ", ".join(prop.wrt) or None)]
            bar.update()
    except KeyboardInterrupt:
        run.complete = False
    finally:
        client.cancel([future for future in futures if not future.done()])
        bar.close()
    run.results = [result for number in sorted(done) for result in done[number]]
    return run


def _fuzz_one(run: Run, invoke: Invoke, entry: Entry, info: BackendInfo, prop: Property, op: str, dtype: str,
              config: FuzzConfig, run_seed: int) -> None:
    """Explore one property x op x dtype on one backend; append its Result to `run`."""
    source, wrt = f"property {prop.id}", ", ".join(prop.wrt) or None

    def record(status: Status, message: str, **fields: Any) -> None:
        run.results.append(Result(info.name, prop.id, op, dtype, status, message, fields.pop("source", source),
                                  wrt, **fields))

    reason = not_checkable(entry.backend, info.name, prop, op, dtype)  # type: ignore[arg-type]
    if reason is not None:
        record(*reason)
        return
    start = time.perf_counter()
    try:
        state = _explore(invoke, prop, op, dtype, config, run_seed)
    except HypothesisException as exc:  # e.g. a flaky backend: not judged, reported
        record(Status.ERROR, f"hypothesis could not judge: {type(exc).__name__}: {exc}")
        return
    except Exception as exc:  # the harness's own bug: this result is an error, the others stand
        first_line = (str(exc).splitlines() or [""])[0]
        record(Status.ERROR, f"the harness failed while checking a sample (a bug here, not in {info.name}): "
                             f"{type(exc).__name__}: {first_line}",
               rerun=_rerun(info.selector, prop, op, dtype, run_seed, config.max_examples(), None))
        return
    seconds = time.perf_counter() - start
    if state.failure is None:
        record(Status.PASSED, f"{state.calls} examples, seed {run_seed}", seconds=seconds)
        return
    sample, verdict = state.failure
    saved = (save_counterexample(config.save_failures, prop, info.name, sample, verdict, run_seed)
             if config.save_failures and verdict.status != Status.UNSUPPORTED else None)
    note = f" (saved to {saved})" if saved else ""
    record(verdict.status, f"{verdict.message}{note}", source=str(saved or source),
           expected=verdict.expected, got=verdict.got, max_abs_error=verdict.max_abs_error,
           allowed=verdict.allowed, max_ulp_error=verdict.max_ulp_error, headroom=verdict.headroom,
           index=verdict.index, seconds=seconds,
           rerun=_rerun(info.selector, prop, op, dtype, run_seed, config.max_examples(), saved))
