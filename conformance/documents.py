"""The document layer: every YAML file the suite reads (cases, expectation manifests, relations, rejection rules,
matrix areas, accuracy regions and budgets) goes through safe YAML -> JSON Schema here, with errors that name
the file and line.

The YAML is parsed safely (no tags that build objects), keeps decimal literals exact (Decimal), refuses
duplicate keys, and refuses deep or huge documents while composing them, before any Python object is built.
"""
from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from functools import lru_cache
from importlib import metadata, resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import jsonschema
import yaml

from .errors import ConfigError

if TYPE_CHECKING:
    from .cache import Cache

MAX_FILE_BYTES = 2**20
"""A document's size (the shipped case files hold 7 KB at most): YAML parses at about 1 s per MiB, and a file must
load, or be refused, within 2 s."""
MAX_DEPTH = 16
"""YAML nesting levels in a document (the shipped case files use 8); a tensor literal adds one per dimension."""
MAX_NODES = 20_000
"""YAML values in a document, an alias counted as everything it stands for (the shipped case files hold 600 at
most)."""
MAX_SCALAR_CHARS = 4096
"""Characters in one YAML value (the shipped files use 250 at most): a longer one is refused while composing."""
MAX_NUMBER_CHARS = 400
"""Characters in one YAML number: a 5000-digit integer would not even print (Python's int-to-str limit)."""
VALIDATION_ERRORS = (RecursionError, OverflowError, ValueError, ArithmeticError)
"""What validating or converting a hostile document may raise (decimal.InvalidOperation is an ArithmeticError)."""


def schema_validator(name: str = "case-file") -> jsonschema.protocols.Validator:
    """The validator of a schema shipped in conformance/schemas/."""
    text = resources.files("conformance").joinpath(f"schemas/{name}.schema.json").read_text(encoding="utf-8")
    return jsonschema.Draft202012Validator(json.loads(text))


class _SafeLoader(yaml.SafeLoader):
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


def _number_text(loader: _SafeLoader, node: yaml.ScalarNode) -> str:
    text = loader.construct_scalar(node)
    if len(text) > MAX_NUMBER_CHARS:
        raise yaml.constructor.ConstructorError(None, None, f"a number of {len(text)} characters, more than "
                                                            f"{MAX_NUMBER_CHARS}", node.start_mark)
    return text


def _construct_decimal(loader: _SafeLoader, node: yaml.ScalarNode) -> Decimal:
    text = _number_text(loader, node).replace("_", "").lower()
    if text.endswith(".nan"):  # NaN compares with nothing: no limit, seed or count can be one
        raise yaml.constructor.ConstructorError(None, None, "a YAML .nan, which is no number a case file may hold "
                                                            "(a tensor element is the string 'nan')", node.start_mark)
    specials = {".inf": "Infinity", "+.inf": "Infinity", "-.inf": "-Infinity"}
    return Decimal(specials.get(text, text))


def _construct_int(loader: _SafeLoader, node: yaml.ScalarNode) -> int:
    _number_text(loader, node)
    return yaml.SafeLoader.construct_yaml_int(loader, node)


def _construct_mapping(loader: _SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_SafeLoader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)
_SafeLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_SafeLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse(path: Path, text: str) -> tuple[Any, yaml.Node | None]:
    """The data and node tree of the YAML document `text`, read from `path` (`_read`)."""
    loader = None
    try:
        loader = _SafeLoader(text)
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


def _read(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ConfigError(f"{path}: file larger than {MAX_FILE_BYTES // 2**20} MiB")
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None


def line_of(node: yaml.Node | None, path: Iterable[Any]) -> int:
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


def read_validated(path: Path, validator: jsonschema.protocols.Validator,
                   cache: Cache | None = None) -> tuple[Any, yaml.Node | None]:
    """A YAML file's data, valid under `validator`, and its node tree (for line numbers).

    With a `cache`, a document validated before (the same bytes under the same schema, jsonschema and parser) is
    not validated again (`validated_key`). Raises ConfigError naming the file and line of the first problem.
    """
    text = _read(path)
    data, root = parse(path, text)
    if cache is None:
        _validate(path, data, root, validator)
    else:
        cache.recall(validated_key(text, validator), lambda: _validate(path, data, root, validator))
    return data, root


def validated_key(text: str, validator: jsonschema.protocols.Validator) -> str:
    """The hex key under which `Cache` remembers that a document's `text` passed this schema: a hash of the text, the
    schema, jsonschema's version and this module's source (which turns the text into the data validated)."""
    digest = hashlib.sha256(b"validated-document-v1\0")
    for part in (json.dumps(validator.schema, sort_keys=True).encode(), _parser_digest(), text.encode()):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


@lru_cache(maxsize=1)
def _parser_digest() -> bytes:
    """jsonschema's version and this module's source."""
    return hashlib.sha256(metadata.version("jsonschema").encode() + b"\0" + Path(__file__).read_bytes()).digest()


def _validate(path: Path, data: Any, root: yaml.Node | None, validator: jsonschema.protocols.Validator) -> bool:
    """True where `data` is valid under `validator`; else ConfigError naming the file and line of the first problem."""
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
        raise ConfigError(f"{path}:{line_of(root, error.absolute_path)}: {location}: {message}")
    return True


def read(path: Path, schema: str, what: str) -> tuple[Any, yaml.Node | None]:
    """`read_validated` against the shipped schema `schema` (a name of schemas/, without .schema.json), naming
    the file as a missing `what` where there is none."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such {what}")
    return read_validated(path, schema_validator(schema))


def where(path: Path, root: yaml.Node | None, *steps: Any) -> str:
    """'path:line' of the node at `steps` (keys and indices) of the document `root`."""
    return f"{path}:{line_of(root, list(steps))}"


def shipped(name: str) -> Path:
    """A data file that ships with the package (conformance/data/)."""
    return Path(str(resources.files("conformance"))) / "data" / name
