"""Read a YAML file of the accuracy atlas (regions, budgets): safe YAML, then JSON Schema, with file:line errors."""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from ..errors import ConfigError
from ..loader import _line_of, _parse


def shipped(name: str) -> Path:
    """A data file that ships with the package (conformance/data/)."""
    return Path(str(resources.files("conformance"))) / "data" / name


def read(path: Path, schema: str, what: str) -> tuple[Any, Any]:
    """The validated document of `path` and its YAML node tree (for `line`); `schema` names a file of schemas/."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such {what}")
    data, root = _parse(path)
    text = resources.files("conformance").joinpath(f"schemas/{schema}").read_text(encoding="utf-8")
    errors = list(jsonschema.Draft202012Validator(json.loads(text)).iter_errors(data))
    # An unknown key shows as an unevaluated property; a bad known key makes its siblings look unevaluated too.
    primary = [e for e in errors if e.validator != "unevaluatedProperties"] or errors
    error = jsonschema.exceptions.best_match(primary)
    if error is not None:
        location = "/".join(str(step) for step in error.absolute_path) or "(top level)"
        raise ConfigError(f"{path}:{_line_of(root, error.absolute_path)}: {location}: {error.message}")
    return data, root


def where(path: Path, root: Any, *steps: Any) -> str:
    """'path:line' of the node at `steps` (keys and indices)."""
    return f"{path}:{_line_of(root, list(steps))}"
