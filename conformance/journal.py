"""The results file: one JSON line per result, written the moment it is judged, so a run that is interrupted or
killed loses nothing it finished; read back to render a report (`report FILE`) or to continue a run (`--resume`).

Lines (docs/report-format.md): a `run` record with the backends when a run (or a resumed run) starts, a
`result` record per result, and an `end` record when a run finished everything it was asked to do.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from .errors import ConfigError
from .results import BackendInfo, Result, Run, Shard, json_safe

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
                     "shard": None if self.shard is None else asdict(self.shard),
                     "backends": [asdict(b) for b in backends]})

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


def _backend(data: dict[str, Any]) -> BackendInfo:
    return BackendInfo(**{**data, **{key: tuple(data.get(key, ())) for key in ("dtypes", "gradients")}})


def _shard(data: dict[str, Any] | None) -> Shard | None:
    return None if data is None else Shard(**{**data, "cases": tuple(data["cases"]), "dtypes": tuple(data["dtypes"])})


def read(path: Path) -> Run:
    """The run a results file records: its backends, its results in run order, and whether it finished."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read results: {exc}") from None
    text = text[: text.rfind("\n") + 1]  # without the half-written line a killed runner may leave
    backends: dict[str, BackendInfo] = {}
    results: dict[tuple[str, str, str, str | None], tuple[int, Result]] = {}
    complete, command, shard = False, "", None
    for number, line in enumerate(text.split("\n")[:-1], 1):
        try:
            record = json.loads(line)
            kind = record.pop("record")
            if number == 1 and (kind != "run" or record.get("format") != FORMAT):
                raise ValueError(f"the first line is not a {FORMAT} run record")
            if kind == "run":
                if record.get("version") != VERSION:
                    raise ValueError(f"format version {record.get('version')!r}; this harness reads {VERSION}")
                backends.update((b["name"], _backend(b)) for b in record["backends"])
                complete, command = False, record.get("command", "")
                shard = _shard(record.get("shard"))
            elif kind == "result":
                seq = int(record.pop("seq"))
                result = Result.from_dict(record)
                results[result.key] = (seq, result)
            elif kind == "end":
                complete = True
            else:
                raise ValueError(f"unknown record {kind!r}")
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ConfigError(f"{path}:{number}: not a results record: {type(exc).__name__}: {exc}") from None
    if not backends:
        raise ConfigError(f"{path}: not a results file (no run record)")
    ordered = [result for _, result in sorted(results.values(), key=lambda item: item[0])]
    return Run(backends=list(backends.values()), results=ordered, complete=complete, command=command,
               shard=shard)
