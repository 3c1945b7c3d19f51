"""Read the atlas's input regions: safe YAML -> JSON Schema -> `Region` objects (data/accuracy-regions.yaml)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from bce_reference import FLOAT_DTYPES

from ..documents import read, shipped, where
from ..errors import ConfigError

Span = tuple[float, float]
DEFAULT_POINTS = 1 << 20


@dataclass(frozen=True)
class Region:
    """A named input region of one op: where inputs come from, the target and pos_weight, how many points."""

    id: str
    op: str
    input: tuple[Any, Any]  # bounds as written (numbers or dtype symbols), resolved per dtype
    target: float | Span  # one hard target, or the span soft targets are drawn from
    pos_weight: float | Span | None
    spacing: str  # "linear" or "ordinal"
    points: int | None  # None: every representable input (exhaustive)
    sampling: str  # "grid", "random" or "both"
    seed: int
    dtypes: tuple[str, ...]
    description: str
    source: str  # path:line

    @property
    def exhaustive(self) -> bool:
        return self.points is None

    @property
    def target_kind(self) -> str:
        """'y = 0', 'y = 1', 'soft y', with ', pos_weight' when one is given: the panels of the figures."""
        kind = f"y = {self.target:g}" if isinstance(self.target, float) else "soft y"
        return kind if self.pos_weight is None else f"{kind}, pos_weight"


def _span_or_number(value: Any) -> float | Span | None:
    if value is None:
        return None
    if isinstance(value, list):
        low, high = (float(v) for v in value)
        return (low, high)
    return float(value)


def _to_region(raw: dict[str, Any], where: str) -> Region:
    missing = [key for key in ("op", "input", "target") if key not in raw]
    if missing:
        raise ConfigError(f"{where}: region {raw['id']!r} has no {', '.join(missing)} (set it in the region or in defaults)")
    if raw["op"] == "bce" and "pos_weight" in raw:
        raise ConfigError(f"{where}: region {raw['id']!r}: bce takes no pos_weight")
    for name in ("target", "pos_weight"):
        span = raw.get(name)
        if isinstance(span, list) and span[0] > span[1]:
            raise ConfigError(f"{where}: region {raw['id']!r}: {name} [{span[0]}, {span[1]}] is empty")
    return Region(
        id=raw["id"],
        op=raw["op"],
        input=(raw["input"][0], raw["input"][1]),
        target=_span_or_number(raw["target"]),  # type: ignore[arg-type]
        pos_weight=_span_or_number(raw.get("pos_weight")),
        spacing=raw.get("spacing", "linear"),
        points=None if raw["points"] == "all" else int(raw["points"]),
        sampling=raw.get("sampling", "both"),
        seed=int(raw["seed"]),
        dtypes=tuple(raw.get("dtypes", FLOAT_DTYPES)),
        description=raw.get("description", ""),
        source=where,
    )


def load_regions(path: Path | None = None) -> list[Region]:
    """Every region of a regions file (default: the shipped one); ids must be unique."""
    path = path or shipped("accuracy-regions.yaml")
    data, root = read(path, "accuracy-regions", "regions file")
    defaults = data.get("defaults", {})
    regions: list[Region] = []
    seen: dict[str, str] = {}
    for index, raw in enumerate(data["regions"]):
        source = where(path, root, "regions", index)
        region = _to_region({"points": DEFAULT_POINTS, **defaults, **raw}, source)
        if region.id in seen:
            raise ConfigError(f"{source}: duplicate region id {region.id!r} (first defined at {seen[region.id]})")
        seen[region.id] = source
        regions.append(region)
    return regions


def select(regions: Iterable[Region], patterns: list[str] | None, ops: list[str] | None, exhaustive: bool) -> list[Region]:
    """Regions whose id matches one of `patterns` (regular expressions) and whose op is wanted.

    Exhaustive regions (points: all) take part only when `exhaustive` is set.
    """
    try:
        compiled = [re.compile(p) for p in patterns or []]
    except re.error as exc:
        raise ConfigError(f"-k {exc.pattern!r}: invalid regular expression: {exc}") from None
    chosen = [r for r in regions
              if (not compiled or any(p.search(r.id) for p in compiled))
              and (not ops or r.op in ops)
              and (exhaustive or not r.exhaustive)]
    if not chosen:
        hint = "" if exhaustive else " (exhaustive regions need --exhaustive)"
        raise ConfigError(f"no region matches the selection{hint}")
    return chosen
