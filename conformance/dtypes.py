"""Names of the dtypes a case can ask for, and the NumPy dtypes that carry them between harness and backends."""
from __future__ import annotations

import ml_dtypes
import numpy as np

from bce_reference import FLOAT_DTYPES

NUMPY_DTYPES: dict[str, np.dtype] = {
    "float16": np.dtype(np.float16),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
    "float32": np.dtype(np.float32),
    "float64": np.dtype(np.float64),
    "int64": np.dtype(np.int64),
    "int32": np.dtype(np.int32),
    "bool": np.dtype(np.bool_),
}


def is_float(name: str) -> bool:
    return name in FLOAT_DTYPES
