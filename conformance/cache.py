"""The persistent reference cache: what the specification says of a case x dtype, computed once and kept on disk.

An entry holds the reference values and the tolerances of one case under one dtype (whatever the runner's
`_specify` returned: values, a rejection, or the error of a broken case). Its key is a hash of

- the case's content (every field but its id, description, tags and source line) and its inputs as
  materialized in that dtype (so a change to an input generator changes the key too),
- the dtype,
- the harness's version, and a hash of the source code of the reference package and of the modules
  that turn a reference into tolerances and verdicts (`SOURCES`), with the tolerance data.

So an edit of one case recomputes that case only, and any edit of the reference's code recomputes all.
Entries are files named by their key under `directory()` (`BCE_CONFORMANCE_CACHE_DIR`, else the user cache
directory of platformdirs), written atomically (a temporary file, then `os.replace`), so the command line,
the pytest plugin and its xdist workers share them. Each file carries a SHA-256 checksum of its body; a file
that fails it, or cannot be decoded, is recomputed and rewritten, never trusted. No pickle: the body is a
JSON tree and raw array bytes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
import shutil
import struct
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata, resources
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np

from .case import Case
from .inputs import Inputs

ENV = "BCE_CONFORMANCE_CACHE_DIR"
"""Environment variable naming the cache directory (tests point it at a temporary one)."""

LAYOUT = "reference-v1"
"""The folder of entries inside the cache directory; `clear` removes this folder only."""

MAGIC = b"BCECACH1"

SOURCES = ("conformance/tolerance.py", "conformance/compare.py", "conformance/runner.py", "conformance/cache.py",
           "conformance/data/tolerances.yaml")
"""Files besides the reference package whose content is part of every key."""

_TRUSTED_MODULES = ("bce_reference.", "conformance.")
"""Dataclasses an entry may name: only the harness's own."""

T = TypeVar("T")


class Uncacheable(TypeError):
    """A value the entry format cannot hold: it is computed each time instead."""


def directory() -> Path:
    """Where entries live: $BCE_CONFORMANCE_CACHE_DIR, else the user cache directory."""
    configured = os.environ.get(ENV)
    if configured:
        return Path(configured)
    import platformdirs

    return Path(platformdirs.user_cache_dir("bce-conformance", appauthor=False))


@lru_cache(maxsize=1)
def sources_digest() -> str:
    """SHA-256 over the reference package's source files and `SOURCES`, each with its name."""
    digest = hashlib.sha256()
    reference = resources.files("bce_reference")
    files = sorted((f"reference/bce_reference/{item.name}", item) for item in reference.iterdir() if item.name.endswith(".py"))
    conformance = resources.files("conformance")
    files += [(name, conformance.joinpath(name.removeprefix("conformance/"))) for name in SOURCES]
    for name, item in files:
        digest.update(name.encode() + b"\0" + item.read_bytes() + b"\0")
    return digest.hexdigest()


@lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    """The versions an entry depends on beyond the sources: the harness, numpy and mpmath."""
    found = {}
    for name in ("bce-conformance", "numpy", "mpmath"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def _array_digest(array: np.ndarray) -> list[Any]:
    contiguous = np.ascontiguousarray(array)
    return [str(array.dtype), list(array.shape), hashlib.sha256(contiguous.view(np.uint8).tobytes()).hexdigest()]


def key(case: Case, inputs: Inputs, dtype: str, sources: str) -> str:
    """The hex key of one case x dtype."""
    content = {field.name: getattr(case, field.name) for field in dataclasses.fields(case)
               if field.name not in ("id", "description", "tags", "source")}
    tensors = {name: _array_digest(array) for name, array in inputs.tensors.items()}
    grad_output = None if inputs.grad_output is None else _array_digest(inputs.grad_output)
    document = {"case": content, "dtype": dtype, "tensors": tensors, "grad_output": grad_output,
                "reduction": inputs.reduction, "sources": sources, "versions": versions()}
    text = json.dumps(document, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def _encode(value: Any, arrays: list[np.ndarray]) -> Any:
    """A JSON tree for `value`; its arrays are appended to `arrays` and named by index."""
    if value is None or isinstance(value, (bool, str)) or type(value) in (int, float):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf" or value.dtype.byteorder == ">":
            raise Uncacheable(f"array of dtype {value.dtype}")
        arrays.append(value)
        return {"$array": len(arrays) - 1}
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return {"$scalar": value.dtype.str, "value": value.item()}
    if isinstance(value, dict):
        return {"$dict": [[_encode(k, arrays), _encode(v, arrays)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return {"$list" if isinstance(value, list) else "$tuple": [_encode(v, arrays) for v in value]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        if not cls.__module__.startswith(_TRUSTED_MODULES) or any(not f.init for f in dataclasses.fields(value)):
            raise Uncacheable(f"dataclass {cls.__qualname__}")
        return {"$dataclass": f"{cls.__module__}:{cls.__qualname__}",
                "fields": {f.name: _encode(getattr(value, f.name), arrays) for f in dataclasses.fields(value)}}
    raise Uncacheable(type(value).__name__)


def _decode(tree: Any, arrays: list[np.ndarray]) -> Any:
    if not isinstance(tree, dict):
        return tree
    if "$array" in tree:
        return arrays[tree["$array"]]
    if "$scalar" in tree:
        return np.dtype(tree["$scalar"]).type(tree["value"])
    if "$dict" in tree:
        return {_decode(k, arrays): _decode(v, arrays) for k, v in tree["$dict"]}
    if "$list" in tree:
        return [_decode(v, arrays) for v in tree["$list"]]
    if "$tuple" in tree:
        return tuple(_decode(v, arrays) for v in tree["$tuple"])
    module, _, qualname = tree["$dataclass"].partition(":")
    if not module.startswith(_TRUSTED_MODULES):
        raise ValueError(f"entry names a foreign class {module}:{qualname}")
    cls: Any = importlib.import_module(module)
    for part in qualname.split("."):
        cls = getattr(cls, part)
    return cls(**{name: _decode(v, arrays) for name, v in tree["fields"].items()})


def encode(value: Any) -> bytes:
    """The bytes of an entry file: magic, SHA-256 of the body, body (header length, JSON header, array bytes)."""
    arrays: list[np.ndarray] = []
    tree = _encode(value, arrays)
    blobs = [np.ascontiguousarray(a).tobytes() for a in arrays]
    shapes = [[a.dtype.str, list(a.shape), len(b)] for a, b in zip(arrays, blobs, strict=True)]
    header = json.dumps({"tree": tree, "arrays": shapes})
    body = struct.pack("<Q", len(header)) + header.encode() + b"".join(blobs)
    return MAGIC + hashlib.sha256(body).digest() + body


def decode(data: bytes) -> Any:
    """The value an entry file holds; ValueError when its checksum or its structure is wrong."""
    if data[:len(MAGIC)] != MAGIC:
        raise ValueError("not a cache entry")
    checksum, body = data[len(MAGIC):len(MAGIC) + 32], data[len(MAGIC) + 32:]
    if hashlib.sha256(body).digest() != checksum:
        raise ValueError("checksum mismatch")
    (length,) = struct.unpack_from("<Q", body)
    header = json.loads(body[8:8 + length])
    arrays, offset = [], 8 + length
    for dtype, shape, size in header["arrays"]:
        arrays.append(np.frombuffer(body, dtype=np.dtype(dtype), count=size // np.dtype(dtype).itemsize,
                                    offset=offset).reshape(shape).copy())
        offset += size
    return _decode(header["tree"], arrays)


@dataclass
class Stats:
    hits: int = 0
    misses: int = 0
    corrupt: int = 0  # entries that failed their checksum or could not be decoded (recomputed)
    unwritable: str = ""  # why entries could not be written, if they could not


class Cache:
    """Entries under `root`; `sources` defaults to the digest of the code they depend on (`sources_digest`)."""

    def __init__(self, root: Path | None = None, sources: str | None = None) -> None:
        self.root = (root or directory()) / LAYOUT
        self.sources = sources or sources_digest()
        self.stats = Stats()

    def path(self, name: str) -> Path:
        return self.root / name[:2] / name

    def specified(self, case: Case, inputs: Inputs, dtype: str, compute: Callable[[], T],
                  keep: Callable[[T], bool] = lambda value: True) -> T:
        """The cached value for the case x dtype, or `compute()`, stored for next time where `keep` accepts it."""
        return self.recall(key(case, inputs, dtype, self.sources), compute, keep)

    def recall(self, name: str, compute: Callable[[], T], keep: Callable[[T], bool] = lambda value: True) -> T:
        found = self.read(name)
        if found is not None:
            return found[0]
        value = compute()
        if keep(value):
            self.store(name, value)
        return value

    def read(self, name: str) -> tuple[Any] | None:
        """The value of entry `name` (in a 1-tuple), or None where there is none or it fails its checksum."""
        try:
            data = self.path(name).read_bytes()
        except OSError:
            data = None
        if data is not None:
            try:
                value = decode(data)
            except Exception:  # a torn, truncated or tampered entry: recomputed by the caller and rewritten
                self.stats.corrupt += 1
            else:
                self.stats.hits += 1
                return (value,)
        self.stats.misses += 1
        return None

    def store(self, name: str, value: Any) -> None:
        """Keep `value` as entry `name` (atomically); a value the format cannot hold is not kept."""
        path = self.path(name)
        try:
            data = encode(value)
        except Uncacheable:
            return
        if self.stats.unwritable:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".tmp-", delete=False) as temporary:
                temporary.write(data)
            os.replace(temporary.name, path)
        except OSError as exc:
            self.stats.unwritable = f"{type(exc).__name__}: {exc}"
            print(f"conformance: warning: reference cache {self.root} cannot be written ({self.stats.unwritable}); "
                  f"continuing without storing entries", file=sys.stderr)

    def entries(self) -> list[Path]:
        return [p for p in self.root.glob("??/*") if not p.name.startswith(".tmp-")] if self.root.is_dir() else []

    def clear(self) -> int:
        """Remove every entry (the `LAYOUT` folder only, nothing else in the directory); the number removed."""
        count = len(self.entries())
        if self.root.is_dir():
            shutil.rmtree(self.root)
        return count
