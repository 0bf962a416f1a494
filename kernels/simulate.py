"""Kernels of the LDA expression simulator: exact binomial and gamma samplers, and the sampler.

Random numbers
--------------
Every sample ``i`` has a 64-bit key (derived from the user's seed and the
sample's *global* index, see :func:`gexplain.simulate.sample_keys`). Its random
stream is SplitMix64 seeded with that key: uniform number ``c`` of the sample
is ``mix(key + (c + 1) * 0x9E3779B97F4A7C15)`` (Steele, Lea & Flood 2014; the
generator of Java's ``SplittableRandom``), turned into a double in the open
interval (0, 1) from its top 53 bits. The stream is counter-based: each random
variate of a sample owns a *slot* ``d`` of ``2**16`` consecutive counters
(``d << 16`` …), so draws do not depend on the order in which they are made.
Results are therefore bit-identical for any thread count and any chunk size,
and the vectorised and scalar code paths below return the same numbers.

Samplers (all exact rejection or inversion methods)
---------------------------------------------------
* Binomial(n, p): with ``p' = min(p, 1 - p)``, inversion by sequential search
  when ``n p' < 10``; otherwise Hörmann's BTRD ("The generation of binomial
  random variates", J. Stat. Comput. Simul. 46, 1993), a transformed rejection
  method whose acceptance test compares with the exact pmf ratio
  ``f(k) / f(m)``, evaluated with a table of ``log k!`` (``k < 16384``, from
  ``math.lgamma``) or the Stirling series (error < 1e-10 for ``k ≥ 16384``).
  The first BTRD iteration's quick acceptance (about 65–80 % of draws) is
  computed for a whole block of independent draws in a branch-free,
  SIMD-vectorised loop; the remaining draws continue the same iteration in
  scalar code. The result is distributed exactly as BTRD.
* Gamma(α): Marsaglia & Tsang (2000) with a Box–Muller normal; for α < 1,
  ``Gamma(α + 1) · U**(1/α)``.
* Multinomial(n, π) by conditional binomials: category ``j`` gets
  ``Binomial(n - Σ_{i<j} x_i, π_j / Σ_{i≥j} π_i)``, the last one the remainder,
  so the counts always sum to ``n`` (the library size is preserved).

The simulator (``simulate_samples``) draws, for each sample of class ``c``,
``θ ~ Dirichlet(α_c)`` (as normalised gammas), pathway read counts
``~ Multinomial(R, θ)`` and, inside each pathway ``p``, gene counts
``~ Multinomial(n_p, β_p)``, summed over pathways. The gene-level draws are
processed *position-major*: for member position ``j`` all pathways with more
than ``j + 1`` members draw together, which makes them independent lanes for
the block sampler.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

_U64 = np.uint64
_GOLDEN = _U64(0x9E3779B97F4A7C15)
_M1 = _U64(0xBF58476D1CE4E5B9)
_M2 = _U64(0x94D049BB133111EB)
_INV53 = 1.0 / 9007199254740992.0
#: counters per random variate (``slot << SLOT_BITS``)
SLOT_BITS = 16
_SLOT = _U64(SLOT_BITS)
#: ``log k!`` table size
LFACT_TABLE = 1 << 14
_LF = np.array([math.lgamma(k + 1.0) for k in range(LFACT_TABLE)], dtype=np.float64)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_TWO_PI = 2.0 * math.pi
#: samples are processed in this many blocks (scratch memory is allocated per block)
_BLOCKS = 64

# ----------------------------------------------------------------------------- random stream


@njit(cache=True, inline="always")
def _mix(z):
    z = (z ^ (z >> _U64(30))) * _M1
    z = (z ^ (z >> _U64(27))) * _M2
    return z ^ (z >> _U64(31))


@njit(cache=True, inline="always")
def _u01(key, ctr):
    """Uniform number ``ctr`` of the stream ``key``, in the open interval (0, 1)."""
    return (float(_mix(key + (ctr + _U64(1)) * _GOLDEN) >> _U64(11)) + 0.5) * _INV53


# ----------------------------------------------------------------------------- binomial


@njit(cache=True, inline="always")
def _lfact(k):
    """``log k!``: table below ``LFACT_TABLE``, Stirling series above."""
    if k < LFACT_TABLE:
        return _LF[k]
    kp1 = k + 1.0
    r2 = 1.0 / (kp1 * kp1)
    return (
        (k + 0.5) * math.log(kp1)
        - kp1
        + _HALF_LOG_2PI
        + (1.0 / 12.0 - (1.0 / 360.0 - r2 / 1260.0) * r2) / kp1
    )


@njit(cache=True, inline="always")
def _btrd_setup(n, p):
    """BTRD constants ``(a, b, c)`` for ``n p ≥ 10``, ``p ≤ 1/2``."""
    fn = float(n)
    b = 1.15 + 2.53 * math.sqrt(fn * p * (1.0 - p))
    a = -0.0873 + 0.0248 * b + 0.01 * p
    c = fn * p + 0.5
    return a, b, c


@njit(cache=True, inline="always")
def _btrd_quick(a, b, c, v, w):
    """Quick acceptance of one BTRD iteration: ``(accepted, k)``.

    Hörmann's step 1 accepts when ``v ≤ 0.86 v_r`` with ``v_r = 0.92 - 4.2/b``
    (written without the division) and then uses ``U = v/v_r - 0.43``, which
    given acceptance is uniform on (-0.43, 0.43): it is drawn from ``w``.
    """
    u = 0.86 * w - 0.43
    k = math.floor((2.0 * a / (0.5 - abs(u)) + b) * u + c)
    return b * (0.7912 - v) >= 3.612, k


@njit(cache=True, inline="always")
def _btrd_continue(n, p, v, w, key, ctr):
    """BTRD (``n p ≥ 10``, ``p ≤ 1/2``) from an iteration with uniforms ``(v, w)``.

    Further iterations take their uniforms from counters ``ctr, ctr + 1, ...``.
    """
    a, b, c = _btrd_setup(n, p)
    q = 1.0 - p
    inv_b = 1.0 / b
    vr = 0.92 - 4.2 * inv_b
    alpha = (2.83 + 5.1 * inv_b) * math.sqrt(n * p * q)
    m = math.floor((n + 1) * p)
    lr = math.log(p / q)
    hm = _lfact(m) + _lfact(n - m)
    while True:
        ok, kq = _btrd_quick(a, b, c, v, w)
        if ok:
            return int(kq)
        if v >= vr:
            u = w - 0.5
        else:
            u = v / vr - 0.93
            u = math.copysign(0.5, u) - u
            v = w * vr
        us = 0.5 - abs(u)
        ius = 1.0 / us
        kf = np.floor((2.0 * a * ius + b) * u + c)  # float: may be huge
        if kf >= 0.0 and kf <= n:
            k = int(kf)
            vv = v * alpha / (a * ius * ius + b)
            # exact test: log v <= log f(k) - log f(m)
            if math.log(vv) <= hm - _lfact(k) - _lfact(n - k) + (k - m) * lr:
                return k
        v = _u01(key, ctr)
        w = _u01(key, ctr + _U64(1))
        ctr += _U64(2)


@njit(cache=True, inline="always")
def _binomial_inversion(n, p, key, ctr):
    """Binomial by inversion (sequential search from 0), for small ``n p``."""
    q = 1.0 - p
    qn = math.exp(n * math.log1p(-p))
    r = p / q
    g = r * (n + 1)
    while True:
        u = _u01(key, ctr)
        ctr += _U64(1)
        x = 0
        px = qn
        while u > px:
            u -= px
            x += 1
            if x > n:
                break
            px *= g / x - r
        if x <= n:
            return x


@njit(cache=True, inline="always")
def _binomial_rest(n, p, key, base):
    """Draw ``Binomial(n, p)`` for ``p ≤ 1/2`` after the quick test failed (or was not tried)."""
    if n <= 0 or p <= 0.0:
        return 0
    if n * p < 10.0:
        return _binomial_inversion(n, p, key, base + _U64(2))
    v = _u01(key, base)
    w = _u01(key, base + _U64(1))
    return _btrd_continue(n, p, v, w, key, base + _U64(2))


@njit(cache=True, inline="always")
def _binomial(n, p, key, slot):
    """One exact ``Binomial(n, p)`` draw using the counters of ``slot``."""
    if p >= 1.0:
        return n
    flip = p > 0.5
    pp = 1.0 - p if flip else p
    x = _binomial_rest(n, pp, key, _U64(slot) << _SLOT)
    return n - x if flip else x


@njit(cache=True, error_model="numpy")
def binomial_block(n, p, key, slot0, out, quick):
    """Exact binomial draws ``out[i] ~ Binomial(n[i], p[i])`` for independent lanes.

    Lane ``i`` uses the counters of slot ``slot0 + i``; the result equals
    :func:`binomial_draws` lane by lane. ``quick`` is scratch (``bool``, same
    length) that records which lanes the vectorised first pass accepted.
    """
    L = n.shape[0]
    for i in range(L):  # vectorised: the first iteration's quick acceptance
        ni = n[i]
        pi = p[i]
        flip = pi > 0.5
        pp = min(pi, 1.0 - pi)
        base = (slot0 + _U64(i)) << _SLOT
        v = _u01(key, base)
        w = _u01(key, base + _U64(1))
        a, b, c = _btrd_setup(ni, pp)
        ok, k = _btrd_quick(a, b, c, v, w)
        ok = ok & (ni * pp >= 10.0) & (pi < 1.0)
        x = int(k)
        out[i] = ni - x if flip else x
        quick[i] = ok
    for i in range(L):  # the rest, scalar
        if quick[i]:
            continue
        out[i] = _binomial(n[i], p[i], key, slot0 + _U64(i))


@njit(cache=True, error_model="numpy")
def binomial_draws(n, p, keys, slots):
    """Scalar reference path: ``Binomial(n[i], p[i])`` with stream ``keys[i]``, slot ``slots[i]``."""
    out = np.empty(n.shape[0], dtype=np.int64)
    for i in range(n.shape[0]):
        out[i] = _binomial(n[i], p[i], keys[i], slots[i])
    return out


# ----------------------------------------------------------------------------- gamma


@njit(cache=True, inline="always")
def _gamma(shape, key, slot):
    """One ``Gamma(shape, 1)`` draw (Marsaglia–Tsang) using the counters of ``slot``."""
    base = _U64(slot) << _SLOT
    a = shape + 1.0 if shape < 1.0 else shape
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    t = _U64(0)
    while True:
        u1 = _u01(key, base + t)
        u2 = _u01(key, base + t + _U64(1))
        u3 = _u01(key, base + t + _U64(2))
        t += _U64(3)
        z = math.sqrt(-2.0 * math.log(u1)) * math.cos(_TWO_PI * u2)
        v = 1.0 + c * z
        if v <= 0.0:
            continue
        v = v * v * v
        z2 = z * z
        if u3 < 1.0 - 0.0331 * z2 * z2 or math.log(u3) < 0.5 * z2 + d * (1.0 - v + math.log(v)):
            g = d * v
            break
    if shape < 1.0:
        last = base + ((_U64(1) << _SLOT) - _U64(1))
        g *= _u01(key, last) ** (1.0 / shape)
    return g


@njit(cache=True, error_model="numpy")
def gamma_draws(shape, keys, slots):
    """``Gamma(shape[i], 1)`` with stream ``keys[i]``, slot ``slots[i]``."""
    out = np.empty(shape.shape[0], dtype=np.float64)
    for i in range(shape.shape[0]):
        out[i] = _gamma(shape[i], keys[i], slots[i])
    return out


# ----------------------------------------------------------------------------- simulator


@njit(cache=True, error_model="numpy")
def _simulate_one(
    key,
    reads,
    divisor,
    alpha_c,
    rank_of,
    pos_ptr,
    lane_cond,
    lane_gene,
    last_gene,
    g,
    suffix,
    npath,
    rem,
    x,
    quick,
    counts,
    out_row,
):
    P = alpha_c.shape[0]
    # theta ~ Dirichlet(alpha_c), as gammas (slots 0..P-1)
    for p in range(P):
        g[p] = _gamma(alpha_c[p], key, p)
    # pathway reads ~ Multinomial(R, theta): conditional binomials (slots P..2P-1)
    tail = 0.0
    for p in range(P - 1, -1, -1):
        tail += g[p]
        suffix[p] = tail
    left = reads
    for p in range(P - 1):
        k = 0
        if left > 0 and suffix[p] > 0.0:
            k = _binomial(left, g[p] / suffix[p], key, P + p)
        npath[p] = k
        left -= k
    npath[P - 1] = left
    # gene reads ~ Multinomial(n_p, beta_p), position-major (slots 2P + lane)
    for p in range(P):
        rem[rank_of[p]] = npath[p]
    counts[:] = 0.0
    for j in range(pos_ptr.shape[0] - 1):
        lo = pos_ptr[j]
        width = pos_ptr[j + 1] - lo
        binomial_block(
            rem[:width], lane_cond[lo : lo + width], key, _U64(2 * P + lo), x[:width], quick[:width]
        )
        for r in range(width):
            xr = x[r]
            rem[r] -= xr
            counts[lane_gene[lo + r]] += xr
    for r in range(P):
        counts[last_gene[r]] += rem[r]
    for gi in range(out_row.shape[0]):
        out_row[gi] = counts[gi] / divisor


@njit(cache=True, parallel=True, error_model="numpy")
def simulate_samples(
    keys, classes, reads, divisors, alpha, rank_of, pos_ptr, lane_cond, lane_gene, last_gene, out
):
    """Simulate expression rows ``out[i]`` (float32) for samples with keys ``keys[i]``.

    Parameters
    ----------
    keys : uint64 (n,)
        Per-sample stream keys.
    classes : int64 (n,)
        Class index of each sample (row of ``alpha``).
    reads : int64 (n,)
        Library size ``R`` of each sample.
    divisors : float64 (n,)
        Output is ``counts / divisor`` (``R / 1e6`` for per-million, 1 for counts).
    alpha : float64 (C, P)
        Dirichlet prior of each class over pathways.
    rank_of : int64 (P,)
        Lane rank of each pathway (pathways sorted by decreasing size).
    pos_ptr : int64 (J + 1,)
        Lanes of member position ``j`` are ``pos_ptr[j] .. pos_ptr[j+1]-1``; position
        ``j`` holds the pathways of rank ``< pos_ptr[j+1] - pos_ptr[j]``.
    lane_cond, lane_gene : (pos_ptr[-1],)
        Conditional probability ``β_j / Σ_{i≥j} β_i`` and gene index of each lane.
    last_gene : int64 (P,)
        Gene index of the last member of the pathway of each rank (gets the remainder).
    out : float32 (n, G)
        Output rows.
    """
    n = keys.shape[0]
    P = alpha.shape[1]
    G = out.shape[1]
    width = 1
    if pos_ptr.shape[0] > 1:
        width = max(1, pos_ptr[1] - pos_ptr[0])
    nblocks = min(n, _BLOCKS)
    for blk in prange(nblocks):
        lo = blk * n // nblocks
        hi = (blk + 1) * n // nblocks
        g = np.empty(P, dtype=np.float64)
        suffix = np.empty(P, dtype=np.float64)
        npath = np.empty(P, dtype=np.int64)
        rem = np.empty(P, dtype=np.int64)
        x = np.empty(width, dtype=np.int64)
        quick = np.empty(width, dtype=np.bool_)
        counts = np.empty(G, dtype=np.float64)
        for i in range(lo, hi):
            _simulate_one(
                keys[i],
                reads[i],
                divisors[i],
                alpha[classes[i]],
                rank_of,
                pos_ptr,
                lane_cond,
                lane_gene,
                last_gene,
                g,
                suffix,
                npath,
                rem,
                x,
                quick,
                counts,
                out[i],
            )
