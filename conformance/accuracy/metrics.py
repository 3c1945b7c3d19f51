"""Errors in ulps against the exact loss, and the statistics of a row accumulated chunk by chunk.

The error of a result g at a point whose exact loss is e is |g - e| / ulp(e), where ulp(e) is the
spacing of the output dtype at e: 2**(floor(log2 |e|) - p + 1), and the smallest subnormal where e
is zero or subnormal (so there it measures absolute error). A correctly rounded result errs by at
most 0.5. For zero and subnormal exact losses the relative error |g - e| / |e| is kept as well.
A NaN or infinity that differs from the specification's result counts as an infinite error.
"""
from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np

from bce_reference import FORMATS, Format

from .records import Agreement, Envelope, Point, Row
from .sampling import Plan, Sample

HISTOGRAM_SHIFT = 46  # a float64's exponent and first 6 fraction bits: 64 bins per octave
HISTOGRAM_BINS = 1 << (63 - HISTOGRAM_SHIFT)  # every non-negative float64, infinity included
ENVELOPE_BINS = 256


@dataclass(frozen=True)
class Truth:
    """The exact loss of one chunk, shared by every backend."""

    exact: np.ndarray  # unrounded, in the reference's working type
    ulp: np.ndarray  # float64: the spacing of the output dtype at the exact loss (a power of 2)
    tiny: np.ndarray  # bool: the exact loss is zero or subnormal in the output dtype
    all_tiny: bool
    expected: np.ndarray | None  # correctly rounded, only where some exact loss overflows the dtype


def _exponents(exact: np.ndarray) -> np.ndarray:
    """floor(log2 |exact|); 0 (and float64's subnormals) fall below the least exponent of every dtype."""
    if exact.dtype == np.float64:
        return ((exact.view(np.int64) >> 52) & 0x7FF) - 1023
    _, exponent = np.frexp(exact)  # |exact| = m * 2**exponent, 0.5 <= m < 1
    return np.where(exact == 0, -1 << 20, exponent.astype(np.int64) - 1)


def _powers_of_two(exponents: np.ndarray) -> np.ndarray:
    if exponents.min(initial=0) >= -1022:  # normal float64: build the bits
        return ((exponents + 1023) << 52).view(np.float64)
    return np.ldexp(1.0, exponents)


Rounder = Callable[[], np.ndarray]
EXPONENT_BITS = 0x7FF0000000000000
"""A float64's exponent field: its bits alone are the float64 2**floor(log2 |x|) of a normal x (0 for 0)."""


def _truth64(exact: np.ndarray, fmt: Format, high: float, rounded: Rounder) -> Truth:
    """`truth` of non-negative finite float64 values, in a few passes: the ulp is built from the exponent's bits."""
    ulp = np.bitwise_and(exact.view(np.int64), EXPONENT_BITS).view(np.float64)
    ulp *= 2.0 ** (1 - fmt.precision)  # exact: a power of two times a power of two, far from float64's limits
    np.maximum(ulp, fmt.min_subnormal, out=ulp)  # zero and subnormal losses (float64's too)
    tiny = exact < fmt.min_normal
    return Truth(exact, ulp, tiny, high < fmt.min_normal, rounded() if high > fmt.max else None)


def truth(exact: np.ndarray, dtype: str, rounded: Rounder | None = None) -> Truth:
    """The exact losses of a chunk; `rounded` gives them correctly rounded, asked for only where one overflows the
    dtype (default: `exact` rounded, which is that where `exact` holds the exact losses themselves)."""
    fmt = FORMATS[dtype]
    rounded = rounded or (lambda: fmt.round_array(exact))
    if exact.dtype == np.float64 and exact.size:
        high = float(exact.max())
        if np.isfinite(high) and exact.min() >= 0:
            return _truth64(exact, fmt, high, rounded)
    exponent = _exponents(exact)
    tiny = exponent < fmt.emin
    ulp = _powers_of_two(np.maximum(exponent, fmt.emin) - (fmt.precision - 1))
    overflow = exponent.max(initial=fmt.emin) >= fmt.emax and bool((np.abs(exact) > fmt.max).any())
    return Truth(exact, ulp, tiny, bool(tiny.all()), rounded() if overflow else None)


def ulp_errors(got: np.ndarray, truth: Truth) -> tuple[np.ndarray, np.ndarray]:
    """|got - exact| / ulp(exact) as float64 (`got` as float64), and where a NaN or infinity differs from the specified result.

    The error is infinite at those points (and may overflow to infinity where a result is wildly
    larger than a subnormal exact loss; only the mask says which).
    """
    g = got.astype(truth.exact.dtype, copy=False)
    with np.errstate(invalid="ignore", over="ignore"):
        errors = np.subtract(g, truth.exact)
        np.abs(errors, out=errors)
        np.divide(errors, truth.ulp, out=errors)
        errors = errors.astype(np.float64, copy=False)
    if truth.expected is None and np.isfinite(np.add.reduce(errors)):  # no NaN, no infinity: one cheap test
        return errors, np.zeros(errors.shape, dtype=bool)
    mismatched = ~np.isfinite(got)
    if truth.expected is not None:  # where the specified result overflows, it is that infinity or wrong
        overflowed = ~np.isfinite(truth.expected)
        mismatched[overflowed] = got[overflowed] != truth.expected[overflowed]
        errors[overflowed] = 0.0
    errors[mismatched] = np.inf
    return errors, mismatched


def relative_errors(got: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """|got - exact| / |exact| (0 where both are 0, inf where only the exact value is, or got is NaN); `got` as float64."""
    relative = np.subtract(got.astype(exact.dtype, copy=False), exact)
    np.abs(relative, out=relative)
    magnitude = np.abs(exact)
    zero = magnitude == 0
    if zero.any():  # 0 / 0 is slow (a chunk of underflowed exact losses is 0 throughout): divide by 1 there
        np.copyto(magnitude, 1, where=zero)
        zero &= relative != 0  # where the difference itself stays: inf
    else:
        zero = None
    with np.errstate(invalid="ignore"):
        np.divide(relative, magnitude, out=relative)
    relative = relative.astype(np.float64, copy=False)
    if zero is not None:
        np.copyto(relative, np.inf, where=zero)
    np.copyto(relative, np.inf, where=np.isnan(relative))  # a NaN result
    return relative


def _histogram(errors: np.ndarray) -> np.ndarray:
    """Counts per bin of the errors' float64 bit patterns: 64 bins per octave, each at most 1.6% wide."""
    return np.bincount(errors.view(np.int64) >> HISTOGRAM_SHIFT, minlength=HISTOGRAM_BINS)


def _quantile(counts: np.ndarray, q: float) -> float:
    """The upper edge of the histogram bin that holds the q-quantile (0 for the bin of exact results)."""
    rank = max(1, int(np.ceil(q * counts.sum())))
    index = int(np.searchsorted(np.cumsum(counts), rank))
    if index == 0:
        return 0.0
    return float(np.array([(index + 1) << HISTOGRAM_SHIFT], dtype=np.int64).view(np.float64)[0])


def _point(sample: Sample, index: int, got: np.ndarray, truth: Truth, ulp: float, rel: float) -> Point:
    return Point(
        input=float(sample.input[index]),
        target=float(sample.target[index]),
        pos_weight=None if sample.pos_weight is None else float(sample.pos_weight[index]),
        got=float(got[index]),
        exact=float(truth.exact[index]),
        ulp_error=ulp,
        rel_error=rel,
    )


class RowAccumulator:
    """The statistics of one backend over one region, fed chunk by chunk in bounded memory."""

    def __init__(self, backend: str, plan: Plan) -> None:
        self.backend, self.plan = backend, plan
        self.counts = np.zeros(HISTOGRAM_BINS, dtype=np.int64)
        self.points = self.tiny_points = self.nonfinite = 0
        self.worst: Point | None = None
        self.tiny_worst: Point | None = None
        self.edges = plan.bin_edges(ENVELOPE_BINS)
        self.envelope = np.full(ENVELOPE_BINS, np.nan)
        self.seconds = 0.0
        self.error = ""

    def add(self, sample: Sample, got: np.ndarray, truth: Truth, errors: np.ndarray, mismatched: np.ndarray) -> None:
        self.points += errors.size
        self.counts += _histogram(errors)
        self.nonfinite += int(np.count_nonzero(mismatched))
        worst = int(np.argmax(errors))
        if self.worst is None or errors[worst] > self.worst.ulp_error:
            rel = float(relative_errors(got[worst:worst + 1], truth.exact[worst:worst + 1])[0])
            self.worst = _point(sample, worst, got, truth, float(errors[worst]), rel)
        tiny = slice(None) if truth.all_tiny else np.flatnonzero(truth.tiny)  # chunks are mostly all or none tiny
        count = errors.size if truth.all_tiny else tiny.size  # type: ignore[union-attr]
        if count:
            self.tiny_points += count
            relative = relative_errors(got[tiny], truth.exact[tiny])
            at = int(np.argmax(relative))
            if self.tiny_worst is None or relative[at] > self.tiny_worst.rel_error:
                index = at if truth.all_tiny else int(tiny[at])  # type: ignore[index]
                self.tiny_worst = _point(sample, index, got, truth, float(errors[index]), float(relative[at]))
        self._envelope(sample.input, errors)

    def _envelope(self, inputs: np.ndarray, errors: np.ndarray) -> None:
        """Greatest error per bin; the inputs of a chunk ascend, so each bin is one run of the chunk."""
        starts = np.searchsorted(inputs, self.edges[:-1])
        filled = starts < np.append(starts[1:], inputs.size)
        if filled.any():
            self.envelope[filled] = np.fmax(self.envelope[filled], np.maximum.reduceat(errors, starts[filled]))

    def merge(self, later: RowAccumulator) -> None:
        """Fold in the statistics of the chunks that follow this row's, as if `add` had been fed them next (a row
        stops at its first error, as a sweep stops calling that backend)."""
        if self.error:
            return
        self.points += later.points
        self.counts += later.counts
        self.nonfinite += later.nonfinite
        self.tiny_points += later.tiny_points
        if later.worst is not None and (self.worst is None or later.worst.ulp_error > self.worst.ulp_error):
            self.worst = later.worst
        if later.tiny_worst is not None and (self.tiny_worst is None
                                             or later.tiny_worst.rel_error > self.tiny_worst.rel_error):
            self.tiny_worst = later.tiny_worst
        self.envelope = np.fmax(self.envelope, later.envelope)
        self.seconds += later.seconds
        self.error = later.error

    def finish(self) -> tuple[Row, Envelope]:
        measured = self.points > 0
        region = self.plan.region
        row = Row(
            backend=self.backend, op=region.op, dtype=self.plan.dtype, region=region.id, points=self.points,
            bound="upper" if self.plan.exhaustive and not self.error else "lower",
            median_ulp=_quantile(self.counts, 0.5) if measured else None,
            p99_ulp=_quantile(self.counts, 0.99) if measured else None,
            max_ulp=self.worst.ulp_error if self.worst else None, worst=self.worst,
            tiny_points=self.tiny_points, tiny_max_rel=self.tiny_worst.rel_error if self.tiny_worst else None,
            tiny_worst=self.tiny_worst, nonfinite=self.nonfinite, seconds=self.seconds, error=self.error,
        )
        envelope = Envelope(self.backend, region.op, self.plan.dtype, region.id, region.target_kind,
                            self.edges.astype(np.float64), self.envelope.copy())
        return row, envelope


def _distance(a: np.ndarray, b: np.ndarray, truth: Truth) -> np.ndarray:
    """|a - b| (float64 results) in ulps at the exact loss: 0 where both are the same NaN or infinity, else infinite."""
    with np.errstate(invalid="ignore"):
        difference = np.abs(a - b)
    if not np.isfinite(difference).all():
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        difference = np.where(same, 0.0, np.where(np.isfinite(difference), difference, np.inf))
    with np.errstate(over="ignore"):
        return difference / truth.ulp


class AgreementAccumulator:
    """Greatest distance in ulps between every pair of results (the reference included) over one op and dtype."""

    def __init__(self, op: str, dtype: str, names: list[str]) -> None:
        self.op, self.dtype, self.names = op, dtype, names
        size = len(names)
        self.max = np.zeros((size, size))
        self.beyond = np.zeros((size, size), dtype=np.int64)
        self.points = np.zeros((size, size), dtype=np.int64)

    def _record(self, i: int, j: int, distance: np.ndarray) -> None:
        self.max[i, j] = self.max[j, i] = max(self.max[i, j], float(distance.max(initial=0.0)))
        self.beyond[i, j] = self.beyond[j, i] = self.beyond[i, j] + int(np.count_nonzero(distance > 1))
        self.points[i, j] = self.points[j, i] = self.points[i, j] + distance.size

    def add(self, results: dict[str, tuple[np.ndarray, np.ndarray]], truth: Truth) -> None:
        """`results`: backend name -> (what it returned, its ulp errors) for the chunk; names[0] is the reference."""
        index = {name: i for i, name in enumerate(self.names)}
        measured = list(results.items())
        for position, (name, (got, errors)) in enumerate(measured):
            self._record(0, index[name], errors)
            for other, (other_got, _) in measured[position + 1:]:
                self._record(index[name], index[other], _distance(got, other_got, truth))

    def merge(self, later: AgreementAccumulator, stopped: Collection[str] = ()) -> None:
        """Fold in the distances of later chunks, leaving out the backends in `stopped` (their rows had failed before
        those chunks, so a sweep would not have called them)."""
        keep = np.ones_like(self.max, dtype=bool)
        for name in stopped:
            keep[self.names.index(name), :] = keep[:, self.names.index(name)] = False
        self.max = np.where(keep, np.maximum(self.max, later.max), self.max)
        self.beyond += np.where(keep, later.beyond, 0)
        self.points += np.where(keep, later.points, 0)

    def finish(self) -> list[Agreement]:
        return [Agreement(self.op, self.dtype, a, b, int(self.points[i, j]), float(self.max[i, j]), int(self.beyond[i, j]))
                for i, a in enumerate(self.names) for j, b in enumerate(self.names) if i < j and self.points[i, j]]
