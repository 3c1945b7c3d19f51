"""High-precision reference for binary cross-entropy losses, independent of every backend under test.

It imports neither torch nor any adapter. `compute` takes the inputs exactly as cast to the dtype
under test and returns the specified result correctly rounded to the output dtype; `gradients`
does the same for the gradients with respect to input and target.
"""
from .formats import FORMATS, Format
from .gradients import GRADIENT_OPS, gradients
from .losses import EXACT_LIMIT, OPS, Expected, compute
from .spec import DIFFERENTIABLE, FLOAT_DTYPES, REDUCTIONS, Rejected

__all__ = ["DIFFERENTIABLE", "EXACT_LIMIT", "FLOAT_DTYPES", "FORMATS", "GRADIENT_OPS", "OPS", "REDUCTIONS", "Expected",
           "Format", "Rejected", "compute", "gradients"]
