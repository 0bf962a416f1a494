"""Per-row ranking kernels (parallel over rows, identical on any thread count)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .sort import stable_order
from .topk import _average_ranks_from_order


@njit(cache=True)
def _row_average_ranks_desc(v, out):
    # descending ranks of v are the ascending ranks of -v (radix sort: ~4x a merge sort)
    _average_ranks_from_order(-v, stable_order(v, True), out)


@njit(cache=True, parallel=True)
def average_ranks_desc(values):
    """Rank of each entry within its row, 1 = largest, ties averaged (float64 ``values``)."""
    n, g = values.shape
    out = np.empty((n, g), dtype=np.float64)
    for i in prange(n):
        _row_average_ranks_desc(values[i], out[i])
    return out
