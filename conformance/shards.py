"""Split a run across machines (`run --shard K/N`) and merge the shards' reports into the report of the whole run.

A case belongs to shard 1 + (a stable hash of its id) mod N, so every result of a case (each dtype, backend and
gradient) lands in one shard, on any machine and in any order of selection. Each shard's report records the
whole selection in run order, which is how `merge` checks that the shards belong together and restores the
unsharded order.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .case import Case
from .errors import ConfigError
from .report import REPORT_VERSION, STATUSES, coverage_rows, expectation_counts, rerun_command, summary
from .results import BackendInfo, Result, Run, Shard, json_safe
from .saved import load

_SPEC = re.compile(r"([1-9]\d*)/([1-9]\d*)")
_RESULT_FIELDS = {f.name for f in fields(Result)}
_BACKEND_FIELDS = {f.name for f in fields(BackendInfo)}


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


def _identity(backend: dict[str, Any]) -> tuple[Any, ...]:
    return backend["name"], backend["available"], backend["version"], backend["device"]


def _check(documents: list[tuple[Path, dict[str, Any]]]) -> None:
    """Refuse shards that do not make one run, with one line naming the file."""
    first_path, first = documents[0]
    seen: dict[int, Path] = {}
    for path, document in documents:
        shard = document.get("shard")
        if shard is None:
            raise ConfigError(f"{path}: not the report of a shard (run --shard K/N)")
        if document["environment"]["harness"] != first["environment"]["harness"]:
            raise ConfigError(f"{path}: harness {document['environment']['harness']}, but {first_path} is from "
                              f"{first['environment']['harness']}: reports of different suite versions do not merge")
        if shard["count"] != first["shard"]["count"]:
            raise ConfigError(f"{path}: shard {shard['index']}/{shard['count']}, but {first_path} is one of "
                              f"{first['shard']['count']} shards")
        if (shard["cases"], shard["dtypes"]) != (first["shard"]["cases"], first["shard"]["dtypes"]):
            raise ConfigError(f"{path}: a shard of another selection of cases or dtypes than {first_path}")
        if [_identity(b) for b in document["backends"]] != [_identity(b) for b in first["backends"]]:
            raise ConfigError(f"{path}: its backends (name, availability, version, device) differ from {first_path}'s")
        if shard["index"] in seen:
            raise ConfigError(f"{path}: shard {shard['index']}/{shard['count']} again (also {seen[shard['index']]})")
        seen[shard["index"]] = path
    count = first["shard"]["count"]
    missing = [f"{k}/{count}" for k in range(1, count + 1) if k not in seen]
    if missing:
        raise ConfigError(f"shard {', '.join(missing)} missing: merge needs every shard of the run")


@dataclass(frozen=True)
class Merged:
    document: dict[str, Any]  # the report of the whole run; results as the shards wrote them, every declared key kept
    run: Run  # the same run as records, for the tables and the exit status
    dtypes: tuple[str, ...]  # the shards' --dtype selection (empty: every dtype of each case)


def merge(paths: list[Path], command: str) -> Merged:
    """The shards' reports as the report of the whole run, made by `command`."""
    documents = [(path, load(path)) for path in paths]
    _check(documents)
    first = documents[0][1]
    position = {case_id: i for i, case_id in enumerate(first["shard"]["cases"])}
    ordered: list[tuple[int, int, dict[str, Any]]] = []
    for path, document in documents:
        for local, result in enumerate(document["results"]):
            if result["case_id"] not in position:
                raise ConfigError(f"{path}: result of case {result['case_id']!r}, which the shard's selection lacks")
            ordered.append((position[result["case_id"]], local, result))
    results = [result for *_, result in sorted(ordered, key=lambda item: item[:2])]
    backends = [BackendInfo(**{**{k: v for k, v in b.items() if k in _BACKEND_FIELDS},
                               "dtypes": tuple(b["dtypes"]), "gradients": tuple(b["gradients"]),
                               "required": any(d["backends"][i]["required"] for _, d in documents)})
                for i, b in enumerate(first["backends"])]
    run = Run(backends=backends, complete=all(d["complete"] for _, d in documents), command=command,
              results=[Result.from_dict({k: v for k, v in r.items() if k in _RESULT_FIELDS}) for r in results])
    counts = {str(s): sum(r["status"] == str(s) for r in results) for s in STATUSES}
    selectors = {b.name: b.selector for b in backends}  # the reruns, as the report of the whole run gives them
    document = {
        "format": first["format"], "version": REPORT_VERSION, "complete": run.complete,
        "environment": {**first["environment"], "command": command},
        "backends": [{**b, "required": backend.required} for b, backend in zip(first["backends"], backends)],
        "totals": counts, "expectations": expectation_counts(run), "summary": json_safe(summary(run)),
        "results": json_safe([{**r.to_dict(), "rerun": rerun_command(r, selectors.get(r.backend, r.backend),
                                                                     first["environment"].get("command", ""))}
                              for r in run.results]),
        "coverage": coverage_rows(run),
        "merged": [{"file": str(path), "shard": d["shard"]["index"], "environment": d["environment"]}
                   for path, d in documents],
    }
    return Merged(document, run, tuple(first["shard"]["dtypes"]))


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, allow_nan=False) + "\n"
