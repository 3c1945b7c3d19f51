"""Turn a region into inputs of one dtype, in chunks of bounded size: every value, a grid, or seeded random draws.

Inputs are values of the dtype under test (rounded once, as the reference and the backend see
them), ascending within each chunk. 'ordinal' spacing walks the representable values in order
(so each binade gets its share); 'linear' spacing is even in value. Grid chunk j draws its soft
targets and pos_weights from numpy's generator seeded with (seed, 0, j), random chunk j its inputs
too with (seed, 1, j), so a sweep is reproducible.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from bce_reference import FORMATS

from ..dtypes import NUMPY_DTYPES
from ..errors import ConfigError
from ..inputs import InputError, tensor
from .regions import Region, Span

CHUNK = 1 << 18
"""Points per chunk: large enough that Python's overhead vanishes; memory stays a few 2 MiB arrays."""

_SIGNED = {2: np.int16, 4: np.int32, 8: np.int64}


def ordinal(values: np.ndarray) -> np.ndarray:
    """Integer keys in the order of the values (consecutive representable values differ by 1; -0 and +0 are 0)."""
    bits = values.view(_SIGNED[values.dtype.itemsize]).astype(np.int64)
    magnitude = bits & np.int64((1 << (8 * values.dtype.itemsize - 1)) - 1)
    return np.where(bits >= 0, bits, -magnitude)


def from_ordinal(keys: np.ndarray, dtype: str) -> np.ndarray:
    numpy_dtype = NUMPY_DTYPES[dtype]
    sign = np.int64(-1) << np.int64(8 * numpy_dtype.itemsize - 1)
    bits = np.where(keys >= 0, keys, (-keys) | sign)
    return bits.astype(_SIGNED[numpy_dtype.itemsize]).view(numpy_dtype)


def _consecutive(start: int, stop: int, dtype: str) -> np.ndarray:
    """The values with ordinal keys start, ..., stop - 1, built from their bit patterns directly."""
    numpy_dtype = NUMPY_DTYPES[dtype]
    signed = _SIGNED[numpy_dtype.itemsize]
    sign = np.array(-1, dtype=signed) << np.array(8 * numpy_dtype.itemsize - 1, dtype=signed)
    negative = np.arange(-start, -min(stop, 0), -1, dtype=signed) | sign  # keys below 0: -key with the sign bit
    positive = np.arange(max(start, 0), max(stop, 0), dtype=signed)
    return np.concatenate([negative, positive]).view(numpy_dtype)


def _rounded(values: np.ndarray, dtype: str) -> np.ndarray:
    return FORMATS[dtype].round_array(values).astype(NUMPY_DTYPES[dtype])


@dataclass(frozen=True)
class Sample:
    """One chunk of points: the tensors a backend receives, and the one target they share, if they do."""

    input: np.ndarray
    target: np.ndarray
    pos_weight: np.ndarray | None
    hard_target: float | None  # every element's target, when the region has a single one


@dataclass(frozen=True)
class Plan:
    """How a region is swept in one dtype."""

    region: Region
    dtype: str
    low: float  # the bounds, in the dtype
    high: float
    values: int  # representable inputs in [low, high]
    grid: int  # grid points (every value when `complete`)
    random: int  # random points

    @property
    def complete(self) -> bool:
        """Every representable input of the region is swept."""
        return self.grid == self.values and self.random == 0

    @property
    def exhaustive(self) -> bool:
        """Every input, with one target and pos_weight: the maximum error found is an upper bound."""
        return self.complete and isinstance(self.region.target, float) and not isinstance(self.region.pos_weight, tuple)

    @property
    def points(self) -> int:
        return self.grid + self.random

    def bin_edges(self, count: int) -> np.ndarray:
        """`count + 1` ascending input values (in the dtype) cutting the region into bins for the figures."""
        if self.region.spacing == "ordinal":
            k_low, k_high = self._keys()
            return from_ordinal(np.rint(np.linspace(k_low, k_high, count + 1)).astype(np.int64), self.dtype)
        return _rounded(np.linspace(self.low, self.high, count + 1), self.dtype)

    def _keys(self) -> tuple[int, int]:
        low, high = (ordinal(np.array([v]).astype(NUMPY_DTYPES[self.dtype])).item() for v in (self.low, self.high))
        return low, high

    def _draw(self, span: float | Span | None, count: int, rng: np.random.Generator) -> np.ndarray | None:
        if span is None:
            return None
        if isinstance(span, tuple):
            return _rounded(rng.uniform(span[0], span[1], count), self.dtype)
        return np.full(count, span, dtype=NUMPY_DTYPES[self.dtype])

    def _sample(self, x: np.ndarray, rng: np.random.Generator) -> Sample:
        target = self._draw(self.region.target, x.size, rng)
        hard = self.region.target if isinstance(self.region.target, float) else None
        return Sample(x, target, self._draw(self.region.pos_weight, x.size, rng), hard)  # type: ignore[arg-type]

    def _grid(self, start: int, stop: int) -> np.ndarray:
        k_low, k_high = self._keys()
        if self.complete:
            return _consecutive(k_low + start, k_low + stop, self.dtype)
        fraction = np.arange(start, stop, dtype=np.float64) / max(self.grid - 1, 1)
        if self.region.spacing == "ordinal":
            keys = np.clip(np.rint(k_low + fraction * (k_high - k_low)), k_low, k_high).astype(np.int64)
            return from_ordinal(keys, self.dtype)
        return _rounded(self.low + fraction * (self.high - self.low), self.dtype)

    def _random(self, count: int, rng: np.random.Generator) -> np.ndarray:
        if self.region.spacing == "ordinal":
            k_low, k_high = self._keys()
            return from_ordinal(np.sort(rng.integers(k_low, k_high, count, endpoint=True)), self.dtype)
        return np.sort(_rounded(rng.uniform(self.low, self.high, count), self.dtype))

    @property
    def chunk_count(self) -> int:
        return -(-self.grid // CHUNK) + -(-self.random // CHUNK)

    def chunk(self, number: int) -> Sample:
        """Chunk `number` of `chunk_count`: the grid's chunks, then the random ones; each depends on its number only."""
        grid_chunks = -(-self.grid // CHUNK)
        if number < grid_chunks:
            start = number * CHUNK
            rng = np.random.default_rng([self.region.seed, 0, number])
            return self._sample(self._grid(start, min(start + CHUNK, self.grid)), rng)
        index = number - grid_chunks
        rng = np.random.default_rng([self.region.seed, 1, index])
        return self._sample(self._random(min(CHUNK, self.random - index * CHUNK), rng), rng)

    def chunks(self, start: int = 0, stop: int | None = None) -> Iterator[Sample]:
        """Chunks `start` to `stop` (default: every chunk), in order."""
        for number in range(start, self.chunk_count if stop is None else stop):
            yield self.chunk(number)


def plan(region: Region, dtype: str, points: int | None = None) -> Plan:
    """How `region` is swept in `dtype`; `points` replaces the region's own count (not for exhaustive regions)."""
    try:
        low, high = (float(v) for v in tensor(list(region.input), dtype).astype(np.float64))
    except InputError as exc:
        raise ConfigError(f"{region.source}: region {region.id!r}: input bounds in {dtype}: {exc}") from None
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ConfigError(f"{region.source}: region {region.id!r}: input [{low!r}, {high!r}] in {dtype} is not a finite range")
    k_low, k_high = (ordinal(np.array([v]).astype(NUMPY_DTYPES[dtype])).item() for v in (low, high))
    values = k_high - k_low + 1
    wanted = region.points if region.exhaustive or points is None else points
    if wanted is None or wanted >= values:
        return Plan(region, dtype, low, high, values, grid=values, random=0)
    grid = {"grid": wanted, "random": 0, "both": wanted // 2}[region.sampling]
    return Plan(region, dtype, low, high, values, grid=grid, random=wanted - grid)
