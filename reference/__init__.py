"""High-precision reference for binary cross-entropy losses, independent of every backend under test.

It imports neither torch nor any adapter. `compute` takes the inputs exactly as cast to the dtype
under test and returns the specified result correctly rounded to the output dtype.
"""
from .formats import FORMATS, Format
from .losses import EXACT_LIMIT, OPS, Expected, compute
from .spec import FLOAT_DTYPES, REDUCTIONS, Rejected

__all__ = ["EXACT_LIMIT", "FLOAT_DTYPES", "FORMATS", "OPS", "REDUCTIONS", "Expected", "Format", "Rejected", "compute"]
