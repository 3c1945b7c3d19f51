"""Metamorphic relations as data (data/relations.yaml): the vocabulary of argument transforms and input regions."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import numpy as np

from bce_reference import FORMATS, REDUCTIONS, Format

from .documents import read_validated, schema_validator
from .dtypes import NUMPY_DTYPES
from .strategies import LN2, Sample

RELATIONS_FILE = Path(str(resources.files("conformance"))) / "data" / "relations.yaml"


# --- regions: where a relation holds ------------------------------------------------------------
# Some constrain what is generated (arguments to strategies.samples); the others project each
# generated sample into the region, deterministically, so no example is thrown away.

GENERATION_CONSTRAINTS: dict[str, dict[str, bool]] = {
    "nonempty": {"nonempty": True},
    "no_weight": {"weight": False},
    "no_pos_weight": {"pos_weight": False},
}


def _round(fmt: Format, values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return fmt.round_array(np.asarray(values, dtype=np.float64)).astype(dtype)


def _map(sample: Sample, name: str, fn: Callable[[np.ndarray, Format], np.ndarray]) -> Sample:
    array = sample.tensors[name]
    fmt = FORMATS[str(array.dtype)]
    return sample.with_tensors(**{name: _round(fmt, fn(array.astype(np.float64), fmt), array.dtype)})


def unsaturated_bounds(fmt: Format) -> tuple[float, float]:
    """Logits for which sigmoid(x) is a normal number below 1 - 4u and its log is not clamped."""
    return -min(99.0, -math.log(fmt.min_normal) - 1), (fmt.precision - 2) * LN2


def saturated_bounds(fmt: Format) -> tuple[float, float]:
    """Beyond these, sigmoid(x) rounds to 1 (within a quarter ulp), or -log sigmoid(x) exceeds the clamp and
    sigmoid(x), which -log1p(-sigmoid(x)) carries at y < 1, is below a quarter of the smallest subnormal (so it
    rounds to 0 however its tie at half is broken: d/dy of sigmoid_bce is then +inf, or NaN times a zero g)."""
    return min(-102.0, math.log(fmt.min_subnormal) - 2 * LN2), (fmt.precision + 2) * LN2


def _unit(values: np.ndarray, fmt: Format) -> np.ndarray:
    return np.clip(np.nan_to_num(values, nan=0.5), 0, 1)


def _grid(values: np.ndarray, fmt: Format) -> np.ndarray:
    """Multiples of 2**-precision in [0, 1]: exactly the numbers v for which v and 1 - v are both representable."""
    scale = 2.0**fmt.precision
    return np.round(_unit(values, fmt) * scale) / scale


def _unsaturated(values: np.ndarray, fmt: Format) -> np.ndarray:
    low, high = unsaturated_bounds(fmt)
    return np.clip(np.nan_to_num(values, nan=0.0), low, high)


def _saturated(values: np.ndarray, fmt: Format) -> np.ndarray:
    low, high = saturated_bounds(fmt)
    values = np.nan_to_num(values, nan=high)
    return np.where(values >= 0, np.maximum(values, high), np.minimum(values, low))


def _no_overflow(sample: Sample) -> Sample:
    """Logits within max/1024, targets within [-1, 2], pos_weight within [0, 8]: every loss stays below max/16."""
    if sample.op != "bce":
        sample = _map(sample, "input", lambda a, f: np.clip(np.nan_to_num(a), -f.max / 1024, f.max / 1024))
    sample = _map(sample, "target", lambda a, f: np.clip(np.nan_to_num(a), -1, 2))
    if "pos_weight" in sample.tensors:
        sample = _map(sample, "pos_weight", lambda a, f: np.clip(np.nan_to_num(a), 0, 8))
    return sample


def _complements_exact(sample: Sample) -> Sample:
    names = ["input", "target"] if sample.op == "bce" else ["target"]
    for name in names:
        sample = _map(sample, name, _grid)
    return sample


PROJECTIONS: dict[str, Callable[[Sample], Sample]] = {
    "targets_in_unit_interval": lambda s: _map(s, "target", _unit),
    "finite_targets": lambda s: _map(s, "target", lambda a, f: np.clip(a, -f.max, f.max)),
    "finite_inputs": lambda s: _map(s, "input", lambda a, f: np.clip(a, -f.max, f.max)),
    "no_overflow": _no_overflow,
    "complements_exact": _complements_exact,
    "sigmoid_unsaturated": lambda s: _map(s, "input", _unsaturated),
    "sigmoid_saturated": lambda s: _map(s, "input", _saturated),
}


def sigmoid_band_free(sample: Sample) -> Sample:
    """Moves logits out of the bands where BCE(sigmoid(x)) depends on the last bit of the sigmoid.

    Between (precision - 2) ln 2 and (precision + 2) ln 2 the sigmoid may or may not have rounded to 1
    (PyTorch's float32 sigmoid does from 24 ln 2, a correctly rounded one from 25 ln 2), and between
    the smallest normal and the smallest subnormal it may or may not have flushed to 0.
    """

    def away(values: np.ndarray, fmt: Format) -> np.ndarray:
        low_sat, high_sat = saturated_bounds(fmt)
        low_ok, high_ok = unsaturated_bounds(fmt)
        values = np.where((values > high_ok) & (values < high_sat), high_sat, values)
        return np.where((values < low_ok) & (values > low_sat), low_sat, values)

    return _map(sample, "input", away)


# --- transforms: how one side changes the arguments ---------------------------------------------

def _permute(sample: Sample, value: Any, rng: np.random.Generator) -> Sample:
    shape = sample.tensors["target"].shape
    order = rng.permutation(int(np.prod(shape)))
    full = {name: np.broadcast_to(array, shape).reshape(-1)[order].reshape(shape)
            for name, array in sample.tensors.items()}
    return sample.with_tensors(**full)


def _set(name: str) -> Callable[[Sample, Any, np.random.Generator], Sample]:
    def transform(sample: Sample, value: Any, rng: np.random.Generator) -> Sample:
        return sample.with_tensors(**{name: np.array(float(value), dtype=NUMPY_DTYPES[sample.dtype])})

    return transform


TRANSFORMS: dict[str, Callable[[Sample, Any, np.random.Generator], Sample]] = {
    "complement_input": lambda s, v, rng: _map(s, "input", lambda a, f: 1 - a),
    "complement_target": lambda s, v, rng: _map(s, "target", lambda a, f: 1 - a),
    "negate_input": lambda s, v, rng: _map(s, "input", lambda a, f: -a),
    "saturate_input": lambda s, v, rng: _map(s, "input", lambda a, f: np.copysign(np.inf, np.nan_to_num(a, nan=1))),
    "permute": _permute,
    "set_weight": _set("weight"),
    "set_pos_weight": _set("pos_weight"),
}


# --- the relations ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Side:
    """How one side of a relation calls the backend."""

    op: str | None = None
    transforms: tuple[tuple[str, Any], ...] = ()
    reduction: str | None = None
    then_sum: bool = False
    times: float | str | None = None

    def apply(self, sample: Sample) -> Sample:
        """The arguments this side passes to the backend (the transforms need the sample's seed)."""
        rng = np.random.default_rng(sample.seed)
        changed = replace(sample, op=self.op or sample.op, tensors=dict(sample.tensors),
                          reduction="none" if self.then_sum else (self.reduction or sample.reduction))
        for name, value in self.transforms:
            changed = TRANSFORMS[name](changed, value, rng)
        return changed

    def factor(self, sample: Sample) -> float:
        if self.times == "numel":
            return float(sample.tensors["target"].size)
        return 1.0 if self.times is None else float(self.times)  # YAML decimals arrive as Decimal

    def describe(self) -> str:
        parts = [self.op or "", *(name if value is None else f"{name}={value}" for name, value in self.transforms),
                 f"reduction={self.reduction}" if self.reduction else "", "summed" if self.then_sum else "",
                 f"x {self.times}" if self.times is not None else ""]
        return " ".join(p for p in parts if p) or "as generated"


@dataclass(frozen=True)
class Relation:
    id: str
    description: str
    ops: tuple[str, ...]
    where: tuple[str, ...]
    reductions: tuple[str, ...]
    left: Side
    right: Side
    gradient: tuple[str, ...] = ()  # compare the gradients by these tensors instead of the loss

    def generation(self) -> dict[str, bool]:
        flags: dict[str, bool] = {}
        for name in self.where:
            flags.update(GENERATION_CONSTRAINTS.get(name, {}))
        return flags

    def project(self, sample: Sample) -> Sample:
        for name in self.where:
            if name in PROJECTIONS:
                sample = PROJECTIONS[name](sample)
        return sample


def _side(raw: dict[str, Any]) -> Side:
    transforms = []
    for item in raw.get("transform", []):
        transforms.append(next(iter(item.items())) if isinstance(item, dict) else (item, None))
    return Side(op=raw.get("op"), transforms=tuple(transforms), reduction=raw.get("reduction"),
                then_sum=raw.get("then") == "sum", times=raw.get("times"))


@cache
def load_relations(path: Path = RELATIONS_FILE) -> tuple[Relation, ...]:
    """The relations of a file valid under schemas/relations.schema.json; ConfigError names file and line."""
    data, _ = read_validated(path, schema_validator("relations"))
    return tuple(
        Relation(
            id=raw["id"], description=" ".join(raw["description"].split()), ops=tuple(raw["ops"]),
            where=tuple(raw.get("where", ())), reductions=tuple(raw.get("reductions", REDUCTIONS)),
            left=_side(raw["left"]), right=_side(raw["right"]), gradient=tuple(raw.get("gradient", ())),
        )
        for raw in data["relations"]
    )
