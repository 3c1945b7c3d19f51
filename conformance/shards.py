"""Split a run across machines (`run --shard K/N`) and merge the shards' reports into the report of the whole run.

A case belongs to shard 1 + (a stable hash of its id) mod N, so every result of a case (each dtype, backend and
gradient) lands in one shard, on any machine and in any order of selection. Each shard's report records the
whole selection in run order, which is how `merge` checks that the shards belong together and restores the
unsharded order.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import report
from .case import Case
from .errors import ConfigError
from .report import rerun_command
from .results import BackendInfo, Result, Run, Shard
from .saved import load

_SPEC = re.compile(r"([1-9]\d*)/([1-9]\d*)")


def parse(text: str) -> tuple[int, int]:
    """'K/N' with 1 <= K <= N."""
    match = _SPEC.fullmatch(text.strip())
    if not match or int(match.group(1)) > int(match.group(2)):
        raise ValueError(f"{text!r} is not a shard K/N with 1 <= K <= N")
    return int(match.group(1)), int(match.group(2))


def owner(case_id: str, count: int) -> int:
    """The shard (1 to count) that runs the case."""
    return 1 + int.from_bytes(hashlib.sha256(case_id.encode("utf-8")).digest()[:8], "big") % count


def split(cases: list[Case], index: int, count: int, dtypes: list[str] | None) -> tuple[list[Case], Shard]:
    """The cases of shard `index` of `count`, and the record of the shard a report carries."""
    shard = Shard(index, count, tuple(c.id for c in cases), tuple(dtypes or ()))
    return [c for c in cases if owner(c.id, count) == index], shard


def _identity(backend: BackendInfo) -> tuple[Any, ...]:
    return backend.name, backend.available, backend.version, backend.device


def _check(runs: list[tuple[Path, Run]]) -> list[Shard]:
    """Refuse shards that do not make one run, with one line naming the file; each file's shard, in order."""
    first_path, first = runs[0]
    seen: dict[int, Path] = {}
    found: list[Shard] = []
    for path, run in runs:
        shard = run.shard
        if shard is None:
            raise ConfigError(f"{path}: not the report of a shard (run --shard K/N)")
        whole = found[0] if found else shard
        harness, first_harness = run.environment.get("harness"), first.environment.get("harness")
        if harness != first_harness:
            raise ConfigError(f"{path}: harness {harness}, but {first_path} is from {first_harness}: reports of "
                              f"different suite versions do not merge")
        if shard.count != whole.count:
            raise ConfigError(f"{path}: shard {shard.index}/{shard.count}, but {first_path} is one of "
                              f"{whole.count} shards")
        if (shard.cases, shard.dtypes) != (whole.cases, whole.dtypes):
            raise ConfigError(f"{path}: a shard of another selection of cases or dtypes than {first_path}")
        if [_identity(b) for b in run.backends] != [_identity(b) for b in first.backends]:
            raise ConfigError(f"{path}: its backends (name, availability, version, device) differ from {first_path}'s")
        if shard.index in seen:
            raise ConfigError(f"{path}: shard {shard.index}/{shard.count} again (also {seen[shard.index]})")
        seen[shard.index] = path
        found.append(shard)
    count = found[0].count
    missing = [f"{k}/{count}" for k in range(1, count + 1) if k not in seen]
    if missing:
        raise ConfigError(f"shard {', '.join(missing)} missing: merge needs every shard of the run")
    return found


@dataclass(frozen=True)
class Merged:
    document: dict[str, Any]  # the report of the whole run (report.document), listing the shards' reports
    run: Run  # the same run as records, for the tables and the exit status
    dtypes: tuple[str, ...]  # the shards' --dtype selection (empty: every dtype of each case)


def merge(paths: list[Path], command: str) -> Merged:
    """The shards' reports (or results files) as the report of the whole run, made by `command`."""
    runs = [(path, load(path)) for path in paths]
    shards = _check(runs)
    first, selection = runs[0][1], shards[0]
    position = {case_id: i for i, case_id in enumerate(selection.cases)}
    selectors = {b.name: b.selector for b in first.backends}
    ordered: list[tuple[int, int, Result]] = []
    for path, run in runs:
        for local, result in enumerate(run.results):
            if result.case_id not in position:
                raise ConfigError(f"{path}: result of case {result.case_id!r}, which the shard's selection lacks")
            # the command that reruns it is the one that ran it: the shards' options, not merge's
            rerun = rerun_command(result, selectors.get(result.backend, result.backend), first.command)
            ordered.append((position[result.case_id], local, replace(result, rerun=rerun)))
    backends = [replace(b, required=any(run.backends[i].required for _, run in runs))
                for i, b in enumerate(first.backends)]
    whole = Run(backends=backends, results=[result for *_, result in sorted(ordered, key=lambda item: item[:2])],
                complete=all(run.complete for _, run in runs), command=command, seed=first.seed,
                environment=first.environment)
    merged = [{"file": str(path), "shard": shard.index,
               "environment": {**run.environment, "command": run.command, "seed": run.seed}}
              for (path, run), shard in zip(runs, shards)]
    return Merged(report.document(whole, merged), whole, selection.dtypes)


def render(document: dict[str, Any]) -> str:
    return report.dumps(document)
