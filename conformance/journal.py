"""The results file: one JSON line per result, written the moment it is judged, so a run that is interrupted or
killed loses nothing it finished; read back to render a report (`report FILE`) or to continue a run (`--resume`).

Lines (docs/report-format.md): a `run` record with the backends when a run (or a resumed run) starts, a
`result` record per result, and an `end` record when a run finished everything it was asked to do.
"""
from __future__ import annotations

import json
import math
from dataclasses import replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import IO, Any

import jsonschema

from .dtypes import NUMPY_DTYPES
from .errors import ConfigError
from .execution import shown
from .results import BackendInfo, Result, ResultKey, Run, Shard, json_safe

FORMAT = "bce-conformance-results"
VERSION = 1


class Journal:
    """Appends records to a results file, each flushed to the operating system as soon as it is written."""

    def __init__(self, path: Path, resume: bool = False, command: str = "", shard: Shard | None = None) -> None:
        self.path = path
        self.command = command
        self.shard = shard
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if resume:
                _drop_partial_line(path)
            self._file: IO[str] = path.open("a" if resume else "w", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot write results: {exc}") from None

    def _write(self, record: dict[str, Any]) -> None:
        try:
            self._file.write(json.dumps(json_safe(record), allow_nan=False) + "\n")
            self._file.flush()
        except OSError as exc:  # a full disk, say: stop the run rather than lose results unnoticed
            raise ConfigError(f"{self.path}: cannot write results: {exc}") from None

    def begin(self, backends: list[BackendInfo]) -> None:
        self._write({"record": "run", "format": FORMAT, "version": VERSION, "command": self.command,
                     "shard": None if self.shard is None else self.shard.to_dict(),
                     "backends": [b.to_dict() for b in backends]})

    def add(self, seq: int, result: Result) -> None:
        self._write({"record": "result", "seq": seq, **result.to_dict()})

    def end(self) -> None:
        self._write({"record": "end"})

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _drop_partial_line(path: Path) -> None:
    """A runner killed in the middle of a write can leave half a line; cut it before appending."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as file:
            file.truncate(data.rfind(b"\n") + 1)


@cache
def _validators() -> dict[str, jsonschema.protocols.Validator]:
    """The fields of each record, typed as in a JSON report (schemas/report.schema.json)."""
    schema = json.loads(resources.files("conformance").joinpath("schemas/report.schema.json").read_text("utf-8"))
    defs = {**schema["$defs"], "shard": schema["properties"]["shard"]}
    run = {"type": "object", "required": ["backends"],
           "properties": {"command": {"type": "string"}, "backends": {"type": "array", "items": {"$ref": "#/$defs/backend"}},
                          "shard": {"oneOf": [{"type": "null"}, {"$ref": "#/$defs/shard"}]}}}
    result = {"type": "object", "required": ["seq"],
              "properties": {"seq": {"type": "integer", "minimum": 0}}}
    return {name: jsonschema.Draft202012Validator({"$defs": defs, **part}) for name, part in
            (("run", run), ("result", result), ("result fields", {"$ref": "#/$defs/result"}))}


def _checked(record: Any, kind: str) -> None:
    """Raise ValueError naming the first field of the wrong type (or an unknown dtype) in the record."""
    error = jsonschema.exceptions.best_match(_validators()[kind].iter_errors(record))
    if error is not None:
        where = "/".join(str(step) for step in error.absolute_path) or "the record"
        raise ValueError(f"{where}: {shown(str, error.message)[:200]}")
    dtypes = ([record["dtype"]] if kind == "result fields"
              else [d for b in record.get("backends", []) for d in b["dtypes"]] if kind == "run" else [])
    unknown = [d for d in dtypes if d not in NUMPY_DTYPES]
    if unknown:
        raise ValueError(f"unknown dtype {unknown[0]!r}")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (the results file writes non-finite numbers as strings)")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is beyond the largest float")
    return value


def parse_json(text: str) -> Any:
    """Strict JSON: finite numbers (no NaN or Infinity literals, nor 1e400), no lone surrogates (they cannot be
    printed), nesting the parser can take; raises ValueError."""
    try:
        data = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except UnicodeEncodeError as exc:
        raise ValueError(f"a string holds {exc.object[exc.start:exc.end]!r}, which is no character") from None
    return data


def _parse_record(line: str, number: int) -> tuple[str, dict[str, Any]]:
    record = parse_json(line)
    if not isinstance(record, dict):
        raise ValueError(f"a JSON {type(record).__name__}, not an object")
    kind = record.pop("record", None)
    if number == 1 and (kind != "run" or record.get("format") != FORMAT):
        raise ValueError(f"the first line is not a {FORMAT} run record")
    if kind == "run" and record.get("version") != VERSION:
        raise ValueError(f"format version {shown(repr, record.get('version'))[:40]}; this harness reads {VERSION}")
    if kind not in ("run", "result", "end"):
        raise ValueError(f"unknown record {shown(repr, kind)[:80]}")
    if kind != "end":
        _checked(record, kind)
    if kind == "result":
        _checked({k: v for k, v in record.items() if k != "seq"}, "result fields")
    return kind, record


def read(path: Path) -> Run:
    """The run a results file records: its backends, its results in run order, and whether it finished. Every
    field is checked when read: a malformed file is one ConfigError naming its line, never a renderer's crash.
    The `rerun` of a result is dropped: the harness prints only the commands it builds."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read results: {exc}") from None
    text = text[: text.rfind("\n") + 1]  # without the half-written line a killed runner may leave
    backends: dict[str, BackendInfo] = {}
    results: dict[ResultKey, tuple[int, Result]] = {}
    complete, command, shard = False, "", None
    for number, line in enumerate(text.split("\n")[:-1], 1):
        try:
            kind, record = _parse_record(line, number)
            if kind == "run":
                backends.update((b["name"], BackendInfo.from_dict(b)) for b in record["backends"])
                complete, command = False, record.get("command", "")
                shard = None if record.get("shard") is None else Shard.from_dict(record["shard"])
            elif kind == "result":
                seq = record.pop("seq")
                result = replace(Result.from_dict(record), rerun="")
                results[result.key] = (seq, result)
            else:
                complete = True
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError, OverflowError) as exc:
            raise ConfigError(f"{path}:{number}: not a results record: {type(exc).__name__}: {exc}") from None
    if not backends:
        raise ConfigError(f"{path}: not a results file (no run record)")
    ordered = [result for _, result in sorted(results.values(), key=lambda item: item[0])]
    return Run(backends=list(backends.values()), results=ordered, complete=complete, command=command,
               shard=shard)


def previous(path: Path) -> dict[ResultKey, Result]:
    """The results `--resume` keeps, by key; none from a file without a whole line (a run stopped before it wrote
    its first record)."""
    try:
        data = path.read_bytes() if path.is_file() else None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read results: {exc}") from None
    if data is not None and not data[: data.rfind(b"\n") + 1].strip():
        return {}
    return {result.key: result for result in read(path).results}
