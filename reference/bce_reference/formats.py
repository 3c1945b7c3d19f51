"""Binary floating-point formats and correct rounding into them (round to nearest, ties to even)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np


@dataclass(frozen=True)
class Format:
    """An IEEE 754 style binary format: `precision` significand bits, normal exponents emin..emax."""

    name: str
    precision: int
    emin: int
    emax: int

    @property
    def unit_roundoff(self) -> float:
        """u = 2**-precision: the largest relative error of one correctly rounded operation."""
        return 2.0 ** -self.precision

    @property
    def eps(self) -> float:
        """Distance from 1 to the next larger representable number."""
        return 2.0 ** (1 - self.precision)

    @property
    def max(self) -> float:
        return math.ldexp(2 ** self.precision - 1, self.emax - self.precision + 1)

    @property
    def min_normal(self) -> float:
        return math.ldexp(1.0, self.emin)

    @property
    def min_subnormal(self) -> float:
        return math.ldexp(1.0, self.emin - self.precision + 1)

    def _quantum_exponent(self, exponent: int) -> int:
        return max(exponent, self.emin) - (self.precision - 1)

    def round(self, value: Fraction | int) -> float:
        """Round an exact rational to this format, once; returns a float holding that value exactly."""
        x = Fraction(value)
        if x == 0:
            return 0.0
        sign = -1.0 if x < 0 else 1.0
        x = abs(x)
        exponent = x.numerator.bit_length() - x.denominator.bit_length()
        if Fraction(2) ** exponent > x:
            exponent -= 1
        q = self._quantum_exponent(exponent)
        scaled = x / Fraction(2) ** q
        r = scaled.numerator // scaled.denominator
        rest = scaled - r
        if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and r % 2 == 1):
            r += 1
        if r.bit_length() - 1 + q > self.emax:  # r * 2**q reached 2**(emax+1)
            return sign * math.inf
        return sign * math.ldexp(r, q)

    def round_array(self, values: np.ndarray) -> np.ndarray:
        """Round float64 or longdouble values to this format, once; returns float64 holding them exactly."""
        x = np.asarray(values)
        out = np.empty(x.shape, dtype=np.float64)
        finite = np.isfinite(x) & (x != 0)
        out[~finite] = x[~finite].astype(np.float64)
        xf = x[finite]
        _, e = np.frexp(xf)  # xf = m * 2**e, 0.5 <= |m| < 1
        q = np.maximum(e - 1, self.emin) - (self.precision - 1)
        with np.errstate(over="ignore"):  # rounding up past float64's max gives inf, as it should
            rounded = np.ldexp(np.rint(np.ldexp(xf, -q)), q)  # scaling by 2**-q is exact; rint ties to even
        rounded = np.where(np.abs(rounded) > self.max, np.copysign(np.inf, xf), rounded)
        out[finite] = rounded.astype(np.float64)
        return out

    def spacing(self, values: np.ndarray) -> np.ndarray:
        """Gap between |x| and the next representable number away from zero (one ulp), as float64."""
        x = np.abs(np.asarray(values, dtype=np.float64))
        with np.errstate(divide="ignore"):
            _, e = np.frexp(np.where(np.isfinite(x) & (x > 0), x, 1.0))
        q = np.maximum(e - 1, self.emin) - (self.precision - 1)
        q = np.where(x == 0, self.emin - (self.precision - 1), q)
        return np.where(np.isfinite(x), np.ldexp(1.0, q), np.inf)


# IEEE 754 binary16/binary32/binary64 and Google's bfloat16 (8 exponent bits, 8 significand bits).
FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("float16", precision=11, emin=-14, emax=15),
        Format("bfloat16", precision=8, emin=-126, emax=127),
        Format("float32", precision=24, emin=-126, emax=127),
        Format("float64", precision=53, emin=-1022, emax=1023),
    )
}
