"""``exp`` without a library call, so that loops around it vectorise.

Cody–Waite reduction ``x = n ln 2 + r`` (``|r| ≤ ln 2 / 2``) and a degree-13
Taylor polynomial for ``exp(r)`` (truncation < 1e-17, a few ulp in all); the
caller scales by ``2**n``, built from exponent bits or read from a table.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, inline="always")
def exp_parts(x):
    """``exp(x) = poly · 2**n`` for ``-708 ≤ x ≤ 709`` (callers clamp): returns ``(poly, n)``,
    ``n`` as a float."""
    nf = np.floor(x * 1.4426950408889634 + 0.5)
    r = (x - nf * 0.6931471803691238) - nf * 1.9082149292705877e-10
    e = 1.0 / 6227020800.0
    e = e * r + 1.0 / 479001600.0
    e = e * r + 1.0 / 39916800.0
    e = e * r + 1.0 / 3628800.0
    e = e * r + 1.0 / 362880.0
    e = e * r + 1.0 / 40320.0
    e = e * r + 1.0 / 5040.0
    e = e * r + 1.0 / 720.0
    e = e * r + 1.0 / 120.0
    e = e * r + 1.0 / 24.0
    e = e * r + 1.0 / 6.0
    e = e * r + 0.5
    e = e * r + 1.0
    e = e * r + 1.0
    return e, nf


@njit(cache=True, inline="always")
def exp_nonpositive(X, bits, m):
    """``X[:m] = exp(X[:m])`` for arguments ≤ 0 (below −708 clamped), vectorised.

    ``2**n`` is built from its exponent bits in ``bits`` (int64 scratch of
    length ≥ ``m``).
    """
    for i in range(m):
        x = X[i]
        if x < -708.0:
            x = -708.0
        e, nf = exp_parts(x)
        X[i] = e
        bits[i] = (np.int64(nf) + 1023) << 52
    pw = bits[:m].view(np.float64)
    for i in range(m):
        X[i] *= pw[i]
