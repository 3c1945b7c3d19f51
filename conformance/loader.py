"""Read case files: safe YAML -> JSON Schema validation -> `Case` objects, with errors that name file and line."""
from __future__ import annotations

import json
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import yaml

from bce_reference import GRADIENT_OPS
from bce_reference.derivatives import HIGHER_ORDER_OPS

from .case import Case, ToleranceOverride
from .errors import ConfigError
from .inputs import DEFAULT_LAYOUTS, LAYOUTS

MAX_ELEMENTS = 10**7
"""The largest tensor a case may ask for; larger requests are refused before anything is allocated."""

MAX_FILE_BYTES = 2**20
"""A case file's size (the shipped ones hold 7 KB at most): YAML parses at about 1 s per MiB, and a file must
load, or be refused, within 2 s."""
MAX_DEPTH = 16
"""YAML nesting levels in a case file (the shipped files use 8); a tensor literal adds one per dimension."""
MAX_NODES = 20_000
"""YAML values in a case file, an alias counted as everything it stands for (the shipped files hold 600 at most)."""
MAX_DIMENSIONS = 8
MAX_SCALAR_CHARS = 4096
"""Characters in one YAML value (the shipped files use 250 at most): a longer one is refused while composing."""
MAX_NUMBER_CHARS = 400
"""Characters in one YAML number: a 5000-digit integer would not even print (Python's int-to-str limit)."""
VALIDATION_ERRORS = (RecursionError, OverflowError, ValueError, ArithmeticError)
"""What validating or converting a hostile document may raise (decimal.InvalidOperation is an ArithmeticError)."""


def default_cases_dir() -> Path:
    """The shipped cases: inside the installed package, or beside it in a source checkout."""
    packaged = Path(str(resources.files("conformance"))) / "_cases"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "cases"


def schema_validator(name: str = "case-file") -> jsonschema.protocols.Validator:
    """The validator of a schema shipped in conformance/schemas/."""
    text = resources.files("conformance").joinpath(f"schemas/{name}.schema.json").read_text(encoding="utf-8")
    return jsonschema.Draft202012Validator(json.loads(text))


class _CaseLoader(yaml.SafeLoader):
    """Safe YAML that keeps decimal literals exact, refuses duplicate keys, and refuses deep or huge documents
    while composing them, before any Python object is built."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0
        self._sizes: dict[int, int] = {}  # id(node) -> values in it, aliases expanded

    def _count(self, nodes: int, mark: yaml.Mark) -> None:
        self._nodes += nodes
        if self._nodes > MAX_NODES:
            raise yaml.composer.ComposerError(None, None, f"more than {MAX_NODES} values (aliases counted as what "
                                                          f"they stand for); generate large tensors instead", mark)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            node = self.anchors.get(event.anchor)
            if node is not None and id(node) not in self._sizes:
                raise yaml.composer.ComposerError(None, None, f"alias *{event.anchor} refers to a value that "
                                                              f"contains it", event.start_mark)  # type: ignore[arg-type]
            self._count(self._sizes.get(id(node), 0), event.start_mark)  # type: ignore[arg-type]
            return super().compose_node(parent, index)  # type: ignore[return-value]
        if self._depth >= MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
        if isinstance(event, yaml.ScalarEvent) and len(event.value) > MAX_SCALAR_CHARS:
            raise yaml.composer.ComposerError(None, None, f"a value of {len(event.value)} characters, more than "
                                                          f"{MAX_SCALAR_CHARS}", event.start_mark)  # type: ignore[arg-type]
        self._depth += 1
        before = self._nodes
        self._count(1, event.start_mark)
        node = super().compose_node(parent, index)
        self._depth -= 1
        self._sizes[id(node)] = self._nodes - before
        return node  # type: ignore[return-value]

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """Any failure to build a value (a 5000-digit integer, the date 2021-13-45) names its line."""
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except Exception as exc:
            raise yaml.constructor.ConstructorError(None, None, f"cannot read this value: {type(exc).__name__}: {exc}",
                                                    node.start_mark) from None


def _number_text(loader: _CaseLoader, node: yaml.ScalarNode) -> str:
    text = loader.construct_scalar(node)
    if len(text) > MAX_NUMBER_CHARS:
        raise yaml.constructor.ConstructorError(None, None, f"a number of {len(text)} characters, more than "
                                                            f"{MAX_NUMBER_CHARS}", node.start_mark)
    return text


def _construct_decimal(loader: _CaseLoader, node: yaml.ScalarNode) -> Decimal:
    text = _number_text(loader, node).replace("_", "").lower()
    if text.endswith(".nan"):  # NaN compares with nothing: no limit, seed or count can be one
        raise yaml.constructor.ConstructorError(None, None, "a YAML .nan, which is no number a case file may hold "
                                                            "(a tensor element is the string 'nan')", node.start_mark)
    specials = {".inf": "Infinity", "+.inf": "Infinity", "-.inf": "-Infinity"}
    return Decimal(specials.get(text, text))


def _construct_int(loader: _CaseLoader, node: yaml.ScalarNode) -> int:
    _number_text(loader, node)
    return yaml.SafeLoader.construct_yaml_int(loader, node)


def _construct_mapping(loader: _CaseLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_CaseLoader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)
_CaseLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_CaseLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _parse(path: Path) -> tuple[Any, yaml.Node | None]:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ConfigError(f"{path}: file larger than {MAX_FILE_BYTES // 2**20} MiB")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    loader = None
    try:
        loader = _CaseLoader(text)
        node = loader.get_single_node()
        return (loader.construct_document(node) if node is not None else None), node
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError(f"{path}:{line}: invalid YAML: character #x{exc.character:04x}: {exc.reason}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    finally:
        if loader is not None:
            loader.dispose()


def _line_of(node: yaml.Node | None, path: Iterable[Any]) -> int:
    """1-based line of the node at `path` (keys and indices), or of its deepest existing ancestor."""
    line = node.start_mark.line + 1 if node is not None else 1
    for step in path:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if getattr(k, "value", None) == step), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
            node = node.value[step]
        else:
            node = None
        if node is None:
            break
        line = node.start_mark.line + 1
    return line


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


def read_validated(path: Path, validator: jsonschema.protocols.Validator) -> tuple[Any, yaml.Node | None]:
    """A YAML file's data, valid under `validator`, and its node tree (for line numbers).

    Raises ConfigError naming the file and line of the first problem.
    """
    data, root = _parse(path)
    try:
        errors = list(validator.iter_errors(data))
        # An unknown key shows as an unevaluated property; a bad known key makes its siblings look unevaluated too.
        primary = [e for e in errors if e.validator != "unevaluatedProperties"] or errors
        error = jsonschema.exceptions.best_match(primary)
    except VALIDATION_ERRORS as exc:
        raise ConfigError(f"{path}: cannot be validated: {type(exc).__name__}: {exc}") from None
    if error is not None:
        location = "/".join(str(step) for step in error.absolute_path) or "(top level)"
        message = error.message if len(error.message) <= 200 else error.message[:200] + "..."
        raise ConfigError(f"{path}:{_line_of(root, error.absolute_path)}: {location}: {message}")
    return data, root


def load_file(path: Path, validator: jsonschema.protocols.Validator | None = None) -> list[Case]:
    """The cases of one file; raises ConfigError naming the file and line of the first problem."""
    data, root = read_validated(path, validator or schema_validator())
    defaults = data.get("defaults", {})
    cases = []
    for index, raw in enumerate(data["cases"]):
        where = f"{path}:{_line_of(root, ['cases', index])}"
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


def load_cases(paths: Iterable[Path] | None = None) -> list[Case]:
    """Every case under `paths` (default: the shipped cases); case ids must be unique across files."""
    files = case_files(list(paths) if paths else [default_cases_dir()])
    if not files:
        raise ConfigError(f"no case files (*.yaml) under {', '.join(map(str, paths or [default_cases_dir()]))}")
    validator = schema_validator()
    seen: dict[str, str] = {}
    cases: list[Case] = []
    for file in files:
        for case in load_file(file, validator):
            if case.id in seen:
                raise ConfigError(f"{case.source}: duplicate case id {case.id!r} (first defined at {seen[case.id]})")
            seen[case.id] = case.source
            cases.append(case)
    return cases
