"""Read back a saved report (`--format json`, checked against its schema) or a results file (.jsonl) as a report
document, for `diff` and `merge`. Results stay dictionaries, so keys the schema declares travel as they are."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jsonschema.exceptions import best_match

from . import journal, report
from .dtypes import NUMPY_DTYPES
from .errors import ConfigError
from .loader import VALIDATION_ERRORS, schema_validator

ResultKey = tuple[str, str, str, "str | None", str]


def load(path: Path) -> dict[str, Any]:
    """The report document in `path`: a JSON report, or a results file rendered as one. Every field is checked
    (schema, and dtypes this harness knows); results lose their `rerun`, since the harness prints only the
    commands it builds."""
    if path.suffix == ".jsonl":
        return json.loads(report.render_json(journal.read(path)))
    try:
        document = journal.parse_json(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read report: {exc}") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not JSON: {exc}") from None
    try:
        error = best_match(schema_validator("report").iter_errors(document))
    except VALIDATION_ERRORS as exc:
        raise ConfigError(f"{path}: cannot be validated: {type(exc).__name__}") from None
    if error is None:
        dtypes = [r["dtype"] for r in document["results"]] + [d for b in document["backends"] for d in b["dtypes"]]
        unknown = next((d for d in dtypes if d not in NUMPY_DTYPES), None)
        message, where = (f"unknown dtype {unknown!r}", "") if unknown is not None else ("", "")
    else:
        message = error.message[:200]
        where = " at " + ("".join(f"[{p!r}]" for p in error.absolute_path)[:200] or "the top level")
    if message:
        raise ConfigError(f"{path}: not a bce-conformance report of version {report.REPORT_VERSION} "
                          f"({message}{where})")
    for result in document["results"]:
        result["rerun"] = ""
    return document


def key(result: dict[str, Any]) -> ResultKey:
    """What identifies a result within a run (as `Result.key`)."""
    return result["backend"], result["case_id"], result["dtype"], result["wrt"], result.get("layout", "c")


def number(value: Any) -> float | None:
    """A number of a report, where non-finite ones are the strings 'nan', 'inf', '-inf'."""
    return None if value is None else float(value)
