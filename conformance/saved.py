"""Read back a saved report: a JSON report (`report.document` writes it; checked against its schema) or a results
file (.jsonl, `journal.read`), as the `Run` it records, for `diff` and `merge`."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from jsonschema.exceptions import best_match

from . import journal, report
from .documents import VALIDATION_ERRORS, schema_validator
from .dtypes import NUMPY_DTYPES
from .errors import ConfigError
from .results import BackendInfo, Result, Run, Shard


def decode(data: dict[str, Any]) -> Run:
    """The run a valid report document records (the inverse of `report.document`), its environment included.
    Results lose their `rerun`: the harness prints only the commands it builds."""
    environment = data["environment"]
    return Run(backends=[BackendInfo.from_dict(b) for b in data["backends"]],
               results=[replace(Result.from_dict(r), rerun="") for r in data["results"]],
               complete=data["complete"], command=environment.get("command", ""), seed=environment.get("seed"),
               shard=Shard.from_dict(data["shard"]) if "shard" in data else None,
               environment={k: v for k, v in environment.items() if k not in ("command", "seed")})


def document(path: Path) -> dict[str, Any]:
    """The report document in `path`: a JSON report, every field checked (schema, and dtypes this harness knows),
    or a results file rendered as one."""
    if path.suffix == ".jsonl":
        return report.document(journal.read(path))
    try:
        data = journal.parse_json(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read report: {exc}") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not JSON: {exc}") from None
    try:
        error = best_match(schema_validator("report").iter_errors(data))
    except VALIDATION_ERRORS as exc:
        raise ConfigError(f"{path}: cannot be validated: {type(exc).__name__}") from None
    if error is None:
        dtypes = [r["dtype"] for r in data["results"]] + [d for b in data["backends"] for d in b["dtypes"]]
        unknown = next((d for d in dtypes if d not in NUMPY_DTYPES), None)
        message, where = (f"unknown dtype {unknown!r}", "") if unknown is not None else ("", "")
    else:
        message = error.message[:200]
        where = " at " + ("".join(f"[{p!r}]" for p in error.absolute_path)[:200] or "the top level")
    if message:
        raise ConfigError(f"{path}: not a bce-conformance report of version {report.REPORT_VERSION} "
                          f"({message}{where})")
    return data


def load(path: Path) -> Run:
    """The run a saved report or results file records; a results file's environment is this machine's."""
    if path.suffix == ".jsonl":
        return replace(journal.read(path), environment=report.environment())
    return decode(document(path))
