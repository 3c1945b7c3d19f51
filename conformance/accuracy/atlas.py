"""Sweep regions on backends: inputs per chunk -> exact loss (reference.sweep) and every backend -> statistics."""
from __future__ import annotations

import ctypes
import functools
import time
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
from tqdm import tqdm

from bce_reference import sweep as exact_sweep

from .. import judging
from ..adapter import Backend
from ..compare import Verdict, check_form
from ..errors import ConfigError
from ..execution import Call, execute
from ..probing import inspect
from ..registry import Entry
from ..results import Status
from .metrics import AgreementAccumulator, RowAccumulator, Truth, truth, ulp_errors
from .records import REFERENCE, Atlas, Swept
from .regions import Region
from .sampling import Plan, Sample, plan

TASK_CHUNKS = 16
"""Chunks per task of a distributed sweep (4 Mi points): seconds of work, so scheduling costs little, and a worker
that dies loses little."""


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


@functools.cache
def keep_freed_memory() -> bool:
    """Ask the C library to keep freed chunk-sized arrays for reuse; False where it has no glibc `mallopt`.

    A chunk's arrays are a few MiB each, above glibc's threshold for allocating by mmap (or they are freed back
    to the system past its trim threshold, which Dask's workers set low): each new array then costs a page fault
    per 4 KiB on first touch, which measured as much as the arithmetic itself. Up to 32 MiB is taken from the heap
    and up to 256 MiB kept there, once per process; memory stays bounded by one chunk's working set.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # not glibc (musl, macOS, Windows)
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(M_TRIM_THRESHOLD, 256 << 20))


def evaluate(backend: Backend, op: str, tensors: dict[str, np.ndarray], dtype: str) -> tuple[np.ndarray | None, float, str]:
    """Call one op element-wise (reduction 'none') on copies of `tensors`, judged as every backend call is
    (judging.judge): (result, seconds, why it is unusable: the verdict's line where it is no array of the dtype
    and shape)."""
    shape = tensors["input"].shape
    execution = execute(backend, Call(op, tensors, "none"))
    verdict = judging.judge(execution, backend,
                            lambda outcome: check_form(outcome, dtype, shape) or Verdict(Status.PASSED, ""))
    if verdict.status != Status.PASSED or execution.outcome is None:
        return None, execution.seconds, judging.line(verdict.status, verdict.message)
    return np.asarray(execution.outcome.value), execution.seconds, ""


def _tensors(sample: Sample) -> dict[str, np.ndarray]:
    tensors = {"input": sample.input, "target": sample.target}
    if sample.pos_weight is not None:
        tensors["pos_weight"] = sample.pos_weight
    return tensors


def _plans(regions: Iterable[Region], dtypes: Iterable[str] | None, points: int | None) -> list[Plan]:
    wanted = set(dtypes) if dtypes else None
    plans = [plan(region, dtype, points) for region in regions for dtype in region.dtypes
             if wanted is None or dtype in wanted]
    if not plans:
        raise ConfigError("no region is defined for the selected dtypes")
    for dtype in sorted({p.dtype for p in plans}):
        try:
            exact_sweep.working_type(dtype)
        except exact_sweep.PrecisionError as exc:
            raise ConfigError(f"{exc}; leave {dtype} out with --dtype") from None
    return plans


@dataclass
class _Progress:
    reference_seconds: float = 0.0
    points: int = 0


def _truth(op: str, dtype: str, x: np.ndarray, target: np.ndarray | float, pos_weight: np.ndarray | None) -> Truth:
    """The exact losses of a chunk. In float64 (every output dtype but float64) their error is proven: their binades
    are settled (so is each ulp) and their rounding is decided by the exact path where the bound leaves it open."""
    exact = exact_sweep.loss(op, dtype, x, target, pos_weight)
    if exact.dtype != np.float64:
        return truth(exact, dtype)
    exact_sweep.settle(op, dtype, exact, x, target, pos_weight)
    return truth(exact, dtype, lambda: exact_sweep.rounded(op, dtype, exact, x, target, pos_weight))


def _sweep(p: Plan, chunks: Iterable[Sample], backends: list[tuple[Backend, str]], rows: dict[str, RowAccumulator],
           agreement: AgreementAccumulator, progress: _Progress, bar: tqdm | None) -> None:
    """Chunks of one plan: the exact loss once, then each backend that has not failed yet."""
    op, dtype = p.region.op, p.dtype
    for sample in chunks:
        start = time.perf_counter()
        target = sample.target if sample.hard_target is None else sample.hard_target
        chunk_truth = _truth(op, dtype, sample.input, target, sample.pos_weight)
        progress.reference_seconds += time.perf_counter() - start
        results = {}
        for backend, name in backends:
            row = rows[name]
            if row.error:
                continue
            got, seconds, row.error = evaluate(backend, op, _tensors(sample), dtype)
            row.seconds += seconds
            if got is not None:
                got = got.astype(np.float64, copy=False)
                errors, mismatched = ulp_errors(got, chunk_truth)
                row.add(sample, got, chunk_truth, errors, mismatched)
                results[name] = (got, errors)
        agreement.add(results, chunk_truth)
        progress.points += sample.input.size
        if bar is not None:
            bar.update(sample.input.size)


@dataclass
class Part:
    """The statistics of consecutive chunks of one plan: what a task of a distributed sweep sends back."""

    rows: dict[str, RowAccumulator]
    agreement: AgreementAccumulator
    progress: _Progress


def sweep_part(p: Plan, entries: list[Entry], start: int, stop: int) -> Part:
    """Chunks `start` to `stop` of one plan on the entries' backends: one task, run on a Dask worker."""
    keep_freed_memory()
    backends = [(entry.backend, entry.name) for entry in entries if entry.backend is not None]
    names = [REFERENCE] + [name for _, name in backends]
    part = Part({name: RowAccumulator(name, p) for _, name in backends},
                AgreementAccumulator(p.region.op, p.dtype, names), _Progress())
    _sweep(p, p.chunks(start, stop), backends, part.rows, part.agreement, part.progress, None)
    return part


def _fold(part: Part, rows: dict[str, RowAccumulator], agreement: AgreementAccumulator, progress: _Progress) -> None:
    """Add a part that follows every part folded in so far."""
    stopped = [name for name, row in rows.items() if row.error]
    for name, row in rows.items():
        row.merge(part.rows[name])
    agreement.merge(part.agreement, stopped)
    progress.points += part.progress.points
    progress.reference_seconds += part.progress.reference_seconds


def _distribute(client: Any, p: Plan, entries: list[Entry], rows: dict[str, RowAccumulator],
                agreement: AgreementAccumulator, progress: _Progress, bar: tqdm) -> None:
    """Every chunk of one plan, `TASK_CHUNKS` to a task on the cluster; parts are folded in chunk order as they
    arrive (so the statistics are those of a sweep in one process), and the bar counts every worker's points."""
    from dask.distributed import as_completed

    count = p.chunk_count
    futures = [client.submit(sweep_part, p, entries, start, min(start + TASK_CHUNKS, count), pure=False)
               for start in range(0, count, TASK_CHUNKS)]
    order = {future.key: number for number, future in enumerate(futures)}
    arrived: dict[int, Part] = {}
    following = 0
    try:
        for future in as_completed(futures):
            part = future.result()
            bar.update(part.progress.points)
            arrived[order[future.key]] = part
            future.release()
            while following in arrived:
                _fold(arrived.pop(following), rows, agreement, progress)
                following += 1
    finally:
        client.cancel([future for future in futures if not future.done()])


def build(regions: Iterable[Region], entries: list[Entry], dtypes: Iterable[str] | None = None,
          points: int | None = None, progress: bool | None = None, client: Any = None) -> Atlas:
    """The atlas of every available backend over `regions`; `progress=None` shows a bar only on a terminal.

    With a Dask `client` (`conformance.distributed`), chunks are computed on its cluster; the atlas is the same.
    Ctrl-C stops the sweep and keeps what was measured (`Atlas.interrupted`).
    """
    started = time.perf_counter()
    keep_freed_memory()
    plans = _plans(regions, dtypes, points)
    infos = inspect(entries)
    active = [(entry, info.name) for entry, info in zip(entries, infos) if info.available]
    atlas = Atlas(backends=infos)
    agreements: dict[tuple[str, str], AgreementAccumulator] = {}
    bar = tqdm(total=sum(p.points for p in plans), desc="accuracy", unit="pt", unit_scale=True,
               disable=None if progress is None else not progress, leave=False)
    for p in plans:
        op, dtype = p.region.op, p.dtype
        chosen = [entry for entry, _ in active if entry.backend is not None and dtype in entry.backend.dtypes]
        backends = [(entry.backend, name) for entry, name in active if entry in chosen and entry.backend is not None]
        atlas.skipped += [(name, dtype) for entry, name in active
                          if entry not in chosen and (name, dtype) not in atlas.skipped]
        names = [REFERENCE] + [name for _, name in backends]
        agreement = agreements.setdefault((op, dtype), AgreementAccumulator(op, dtype, names))
        rows = {name: RowAccumulator(name, p) for _, name in backends}
        done = _Progress()
        try:
            if client is None:
                _sweep(p, p.chunks(), backends, rows, agreement, done, bar)
            else:
                _distribute(client, p, chosen, rows, agreement, done, bar)
        except KeyboardInterrupt:
            atlas.interrupted = True
            for row in rows.values():
                row.error = row.error or f"interrupted after {done.points:,} of {p.points:,} points"
        region = p.region
        atlas.swept.append(Swept(region.id, op, dtype, p.low, p.high, region.spacing, region.target, region.pos_weight,
                                 done.points, p.grid, p.random, region.seed, p.exhaustive and not atlas.interrupted,
                                 done.reference_seconds))
        for row in rows.values():
            record, envelope = row.finish()
            atlas.rows.append(record)
            atlas.envelopes.append(envelope)
        if atlas.interrupted:
            break
    bar.close()
    atlas.agreement = [a for accumulator in agreements.values() for a in accumulator.finish()]
    atlas.wall_seconds = time.perf_counter() - started
    return atlas
