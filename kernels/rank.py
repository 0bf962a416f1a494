"""Per-row ranking kernels (parallel over rows, identical on any thread count)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True)
def _row_average_ranks_desc(v, out):
    n = v.shape[0]
    order = np.argsort(-v, kind="mergesort")
    i = 0
    while i < n:
        j = i
        while j + 1 < n and v[order[j + 1]] == v[order[i]]:
            j += 1
        r = 0.5 * (i + j) + 1.0
        for t in range(i, j + 1):
            out[order[t]] = r
        i = j + 1


@njit(cache=True, parallel=True)
def average_ranks_desc(values):
    """Rank of each entry within its row, 1 = largest, ties averaged (float64 ``values``)."""
    n, g = values.shape
    out = np.empty((n, g), dtype=np.float64)
    for i in prange(n):
        _row_average_ranks_desc(values[i], out[i])
    return out
