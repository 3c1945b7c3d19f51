"""The atlas's records: one row per backend x op x dtype x region, the agreement matrix, the figures' data."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..results import BackendInfo

REFERENCE = "reference"
"""The name the agreement matrix gives the exact loss."""


@dataclass(frozen=True)
class Point:
    """One swept element: its inputs, what the backend returned, the exact loss and the error."""

    input: float
    target: float
    pos_weight: float | None
    got: float
    exact: float  # the exact loss, rounded to float64 for display
    ulp_error: float  # |got - exact| in ulps of the output dtype at the exact loss
    rel_error: float  # |got - exact| / |exact|


@dataclass(frozen=True)
class Row:
    """How far one backend is from the exact loss over one region in one dtype."""

    backend: str
    op: str
    dtype: str
    region: str
    points: int
    bound: str  # "upper": every input was swept (one target, one pos_weight); "lower": sampled
    median_ulp: float | None  # from a histogram of 64 bins per octave: the upper edge of the bin
    p99_ulp: float | None
    max_ulp: float | None  # exact
    worst: Point | None
    tiny_points: int  # points whose exact loss is zero or subnormal in the output dtype
    tiny_max_rel: float | None  # their greatest relative error
    tiny_worst: Point | None
    nonfinite: int  # points where a NaN or infinity differs from the specification's result
    seconds: float  # time spent inside the backend
    error: str = ""  # why the backend could not be measured (it raised, or returned the wrong dtype or shape)


@dataclass(frozen=True)
class Agreement:
    """How far two results are apart over every swept point of one op and dtype (`a` or `b` may be the reference)."""

    op: str
    dtype: str
    a: str
    b: str
    points: int
    max_ulp: float
    beyond_one_ulp: int  # points farther apart than one ulp


@dataclass(frozen=True)
class Envelope:
    """The greatest error per input bin of one row: what the error figures draw."""

    backend: str
    op: str
    dtype: str
    region: str
    panel: str  # the region's target kind ('y = 0', 'soft y, pos_weight', ...)
    edges: np.ndarray  # bin edges, in input values
    max_ulp: np.ndarray  # per bin; NaN where no point fell


@dataclass(frozen=True)
class Swept:
    """A region as swept in one dtype: what was sampled and how long the reference took."""

    region: str
    op: str
    dtype: str
    low: float
    high: float
    spacing: str
    target: float | tuple[float, float]
    pos_weight: float | tuple[float, float] | None
    points: int
    grid: int
    random: int
    seed: int
    exhaustive: bool
    reference_seconds: float


@dataclass
class Atlas:
    backends: list[BackendInfo]
    swept: list[Swept] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    agreement: list[Agreement] = field(default_factory=list)
    envelopes: list[Envelope] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (backend, dtype) it does not compute in
    interrupted: bool = False  # Ctrl-C stopped the sweep; the rows hold what was measured
    wall_seconds: float = 0.0
