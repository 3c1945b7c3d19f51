"""Read case files: safe YAML -> JSON Schema validation -> `Case` objects, with errors that name file and line."""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import jsonschema

from bce_reference import GRADIENT_OPS
from bce_reference.derivatives import HIGHER_ORDER_OPS

from .case import Case, ToleranceOverride
from .documents import VALIDATION_ERRORS, line_of, read_validated, schema_validator
from .errors import ConfigError
from .inputs import DEFAULT_LAYOUTS, LAYOUTS

if TYPE_CHECKING:
    from .cache import Cache

MAX_ELEMENTS = 10**7
"""The largest tensor a case may ask for; larger requests are refused before anything is allocated."""

MAX_DIMENSIONS = 8


def default_cases_dir() -> Path:
    """The shipped cases: inside the installed package, or beside it in a source checkout."""
    packaged = Path(str(resources.files("conformance"))) / "_cases"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "cases"


def _elements(shape: list[int]) -> int:
    count = 1
    for n in shape:
        count *= n
    return count


def _dimensions(literal: Any) -> int:
    return 1 + max(map(_dimensions, literal), default=0) if isinstance(literal, list) else 0


def _check_sizes(case: dict, where: str) -> None:
    for name, tensor in {**case["inputs"], "grad_output": case.get("grad_output"), "tangent": case.get("tangent")}.items():
        if isinstance(tensor, dict) and _elements(tensor["shape"]) > MAX_ELEMENTS:
            raise ConfigError(f"{where}: case {case['id']!r}: {name} asks for {_elements(tensor['shape'])} elements, "
                              f"more than the limit of {MAX_ELEMENTS}")
        if not isinstance(tensor, dict) and _dimensions(tensor) > MAX_DIMENSIONS:
            raise ConfigError(f"{where}: case {case['id']!r}: {name} nests lists {_dimensions(tensor)} deep; "
                              f"a tensor has at most {MAX_DIMENSIONS} dimensions")


def _check_gradient_fields(case: dict, where: str) -> None:
    """`grad` names tensors the case has, on an op with specified gradients; grad_output and printed fit."""
    prefix = f"{where}: case {case['id']!r}"
    if "grad" not in case:
        for key in ("grad_output", "order", "mode", "tangent"):
            if key in case:
                raise ConfigError(f"{prefix}: {key} without grad (name the tensors to differentiate by)")
        return
    if "tangent" in case and case.get("order", 1) == 1 and case.get("mode", "reverse") == "reverse":
        raise ConfigError(f"{prefix}: a tangent is for order 2 or mode forward; a first-order gradient has none")
    if case["op"] not in GRADIENT_OPS:
        raise ConfigError(f"{prefix}: no gradient is specified for op {case['op']!r} (only {', '.join(GRADIENT_OPS)})")
    absent = [name for name in case["grad"] if name not in case["inputs"]]
    if absent:
        raise ConfigError(f"{prefix}: grad names {', '.join(absent)}, which the case's inputs do not have")
    if "printed" in case:
        raise ConfigError(f"{prefix}: printed values are loss values; a gradient case has none")
    if case["op"] not in HIGHER_ORDER_OPS and (case.get("order", 1) == 2 or case.get("mode") == "forward"):
        raise ConfigError(f"{prefix}: order 2 and forward mode are specified for {', '.join(HIGHER_ORDER_OPS)} "
                          f"only, not {case['op']!r}")
    if case.get("order", 1) == 2 and case.get("mode") == "forward":
        raise ConfigError(f"{prefix}: order 2 is a double backward; forward mode has order 1")
    if case.get("mode") == "forward" and "grad_output" in case:
        raise ConfigError(f"{prefix}: forward mode takes a tangent, not a grad_output")


def _to_case(raw: dict, where: str) -> Case:
    missing = [key for key in ("op",) if key not in raw] + [f"inputs.{k}" for k in ("input", "target") if k not in raw["inputs"]]
    if missing:
        raise ConfigError(f"{where}: case {raw['id']!r} has no {' or '.join(missing)} (set it in the case or in defaults)")
    _check_sizes(raw, where)
    _check_gradient_fields(raw, where)
    expect = raw.get("expect", "value")
    tolerance = raw.get("tolerance")
    return Case(
        id=raw["id"],
        description=raw["description"],
        op=raw["op"],
        inputs=raw["inputs"],
        source=where,
        reduction=raw.get("reduction", "mean"),
        dtypes=tuple(raw["dtypes"]) if "dtypes" in raw else Case.dtypes,
        tensor_dtypes=dict(raw.get("tensor_dtypes", {})),
        reject=None if expect == "value" else expect["reject"],
        printed=dict(raw.get("printed", {})),
        tolerance=ToleranceOverride(float(tolerance["roundings"]), tolerance["reason"]) if tolerance else None,
        tags=tuple(raw.get("tags", ())),
        grad=tuple(raw.get("grad", ())),
        grad_output=raw.get("grad_output"),
        order=raw.get("order", 1),
        mode=raw.get("mode", "reverse"),
        tangent=raw.get("tangent"),
        layouts=_layouts(raw.get("layouts")),
    )


def _layouts(value: str | list[str] | None) -> tuple[str, ...]:
    """A case's `layouts`: a list of names, 'all', or none given (the default)."""
    if value is None:
        return DEFAULT_LAYOUTS
    return LAYOUTS if value == "all" else tuple(value)


def load_file(path: Path, validator: jsonschema.protocols.Validator | None = None,
              cache: Cache | None = None) -> list[Case]:
    """The cases of one file; raises ConfigError naming the file and line of the first problem. With a `cache`, a
    file validated before is not validated again (`documents.read_validated`)."""
    data, root = read_validated(path, validator or schema_validator(), cache)
    defaults = data.get("defaults", {})
    cases = []
    for index, raw in enumerate(data["cases"]):
        where = f"{path}:{line_of(root, ['cases', index])}"
        merged = {**defaults, **raw, "inputs": {**defaults.get("inputs", {}), **raw.get("inputs", {})}}
        try:
            cases.append(_to_case(merged, where))
        except VALIDATION_ERRORS as exc:
            raise ConfigError(f"{where}: case {merged['id']!r}: {type(exc).__name__}: {exc}") from None
    return cases


def case_files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            raise ConfigError(f"{path}: no such case file or directory")
    return files


def load_cases(paths: Iterable[Path] | None = None, cache: Cache | None = None) -> list[Case]:
    """Every case under `paths` (default: the shipped cases); case ids must be unique across files. `cache`: see
    `load_file`."""
    files = case_files(list(paths) if paths else [default_cases_dir()])
    if not files:
        raise ConfigError(f"no case files (*.yaml) under {', '.join(map(str, paths or [default_cases_dir()]))}")
    validator = schema_validator()
    seen: dict[str, str] = {}
    cases: list[Case] = []
    for file in files:
        for case in load_file(file, validator, cache):
            if case.id in seen:
                raise ConfigError(f"{case.source}: duplicate case id {case.id!r} (first defined at {seen[case.id]})")
            seen[case.id] = case.source
            cases.append(case)
    return cases
