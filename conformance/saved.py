"""Read back a saved report (`--format json`, checked against its schema) or a results file (.jsonl) as a report
document, for `diff` and `merge`. Results stay dictionaries, so keys the schema declares travel as they are."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jsonschema.exceptions import best_match

from . import journal, report
from .errors import ConfigError
from .loader import schema_validator

ResultKey = tuple[str, str, str, "str | None", str]


def load(path: Path) -> dict[str, Any]:
    """The report document in `path`: a JSON report, or a results file rendered as one."""
    if path.suffix == ".jsonl":
        return json.loads(report.render_json(journal.read(path)))
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read report: {exc}") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not JSON: {exc}") from None
    error = best_match(schema_validator("report").iter_errors(document))
    if error is not None:
        where = "".join(f"[{p!r}]" for p in error.absolute_path) or "the top level"
        raise ConfigError(f"{path}: not a bce-conformance report of version {report.REPORT_VERSION} "
                          f"({error.message} at {where})")
    return document


def key(result: dict[str, Any]) -> ResultKey:
    """What identifies a result within a run (as `Result.key`)."""
    return result["backend"], result["case_id"], result["dtype"], result["wrt"], result.get("layout", "c")


def number(value: Any) -> float | None:
    """A number of a report, where non-finite ones are the strings 'nan', 'inf', '-inf'."""
    return None if value is None else float(value)
