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
and the vectorised and scalar code paths below return the same numbers. (A
variate needing more than 2**16 uniforms — probability far below 1e-1000 —
would read into the next slot: still random, not independent.)

Why not ``np.random.binomial`` inside Numba? Numba reimplements NumPy's legacy
sampler (BTPE when ``n p > 30``, otherwise inversion truncated at
``n p + 10 sqrt(n p q + 1)``) on a per-thread Mersenne Twister; it is exact
for large ``n`` but costs ~90 ns a draw here, and its per-thread state needs a
``np.random.seed`` per sample with only 32-bit seeds. The samplers below are
3–6× faster and take 64-bit per-sample keys.

Samplers (exact rejection or inversion methods)
-----------------------------------------------
* Binomial(n, p): with ``p' = min(p, 1 - p)``, inversion by sequential search
  when ``n p' < 10``; otherwise Hörmann's BTRD ("The generation of binomial
  random variates", J. Stat. Comput. Simul. 46, 1993), a transformed rejection
  method. Its final test compares with the exact pmf ratio ``f(k) / f(m)``,
  ``exp(log C(n,k) - log C(n,m) + (k - m) log(p/q))``, with ``log k!`` from a
  table (``k < 16384``, ``math.lgamma``) or the Stirling series (error < 1e-10
  beyond) and a polynomial ``exp`` accurate to a few ulp: exact up to
  double-precision rounding. One change to the paper's algorithm: when the
  quick test (step 1) accepts, its ``U = V/v_r - 0.43`` is uniform on
  (-0.43, 0.43) independent of everything else, so it is drawn from the second
  uniform instead of divided out of the first (same distribution, no division).
* Gamma(α): Marsaglia & Tsang (2000, "A simple method for generating gamma
  variables") with a ziggurat normal (Marsaglia & Tsang 2000, 256 layers);
  for α < 1, ``Gamma(α + 1) · U**(1/α)``.
* Multinomial(n, π) by conditional binomials: ``x_j ~ Binomial(n - Σ_{i<j}
  x_i, π_j / Σ_{i≥j} π_i)``, the last category gets the remainder, so the
  counts always sum to ``n`` (the library size is preserved). Binary splitting
  down a tree (``x_left ~ Binomial(n, π_left / π_node)``) is the same
  distribution.

Speed
-----
A rejection sampler spends more time in mispredicted branches than in
arithmetic. :func:`binomial_block` draws many independent binomials together:
the first iteration's quick acceptance is one SIMD loop over all lanes; the
lanes it leaves (20–35 %) are compacted without branches and finish their
iteration, and further ones, in SIMD loops (table lookups and compactions in
short scalar loops). Per sample (``simulate_samples``, parallel over samples):
``θ ~ Dirichlet(α_c)`` as gammas; pathway reads ``~ Multinomial(R, θ)`` by
splitting down a binary tree of pathways, one block per tree level; gene reads
``~ Multinomial(n_p, β_p)`` member position by member position (all pathways
with more than ``j + 1`` members draw their ``j``-th member together: one block
per position), summed over pathways.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .fastexp import exp_parts

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
_EXP2_OFFSET = 1100
_EXP2 = np.ldexp(1.0, np.arange(-_EXP2_OFFSET, 16)).astype(np.float64)
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
def _log_odds(p):
    """``log(p / (1 - p))``, the ``log r`` of BTRD."""
    return math.log(p / (1.0 - p))


@njit(cache=True, inline="always")
def _exp_parts(x):
    """``exp(x) = poly · 2**n`` for ``x`` clamped to ``[-708, 10]``: returns ``(poly, n)``.

    :func:`kernels.fastexp.exp_parts` (Cody–Waite reduction and a degree-13
    Taylor polynomial; a few ulp in all). Clamping is
    harmless where it is used: the BTRD test compares ``exp(x)`` with numbers
    far above ``exp(-708)``.
    """
    e, nf = exp_parts(min(max(x, -708.0), 10.0))
    return e, int(nf)


@njit(cache=True, inline="always")
def _exp(x):
    """``exp(x)`` (see :func:`_exp_parts`); ``2**n`` from a table, exactly."""
    e, nn = _exp_parts(x)
    return e * _EXP2[nn + _EXP2_OFFSET]


@njit(cache=True, inline="always")
def _btrd_candidate(n, p, a, b, c, v, w):
    """Hörmann's steps 2–3 for an iteration whose quick test failed (branch-free).

    Returns ``(inside, k, m, vv)``: the candidate ``k`` (0 when outside
    ``[0, n]``), the mode ``m`` and the transformed uniform ``vv`` to compare
    with ``f(k) / f(m)``.
    """
    q = 1.0 - p
    inv_b = 1.0 / b
    vr = 0.92 - 4.2 * inv_b
    alpha = (2.83 + 5.1 * inv_b) * math.sqrt(float(n) * p * q)
    big = v >= vr
    t = v / vr - 0.93
    u = w - 0.5 if big else math.copysign(0.5, t) - t
    v2 = v if big else w * vr
    us = 0.5 - abs(u)
    ius = 1.0 / us
    kf = np.floor((2.0 * a * ius + b) * u + c)  # float: may be huge
    inside = (kf >= 0.0) & (kf <= n)
    k = int(kf if inside else 0.0)
    vv = v2 * alpha / (a * ius * ius + b)
    m = math.floor((n + 1) * p)
    return inside, k, m, vv


@njit(cache=True, inline="always")
def _btrd_log_ratio(lf_m, lf_nm, lf_k, lf_nk, k, m, lr):
    """``log f(k) - log f(m) = log C(n,k) - log C(n,m) + (k - m) log r``."""
    return (lf_m + lf_nm) - lf_k - lf_nk + (k - m) * lr


@njit(cache=True, inline="always")
def _btrd_accept(vv, lf_m, lf_nm, lf_k, lf_nk, k, m, lr):
    """Exact acceptance ``vv ≤ f(k)/f(m)``."""
    return vv <= _exp(_btrd_log_ratio(lf_m, lf_nm, lf_k, lf_nk, k, m, lr))


@njit(cache=True, inline="always")
def _btrd_slow(n, p, lr, a, b, c, v, w):
    """The rest of a BTRD iteration whose quick test failed: ``(accepted, k)``."""
    inside, k, m, vv = _btrd_candidate(n, p, a, b, c, v, w)
    ok = inside and _btrd_accept(vv, _lfact(m), _lfact(n - m), _lfact(k), _lfact(n - k), k, m, lr)
    return ok, k


@njit(cache=True, inline="always")
def _btrd_continue(n, p, lr, v, w, key, ctr):
    """BTRD (``n p ≥ 10``, ``p ≤ 1/2``, ``lr = log(p/(1-p))``) from an iteration with uniforms ``(v, w)``.

    Iteration ``t ≥ 1`` takes its uniforms from counters ``ctr + 2(t-1)``, ``+ 1``.
    """
    a, b, c = _btrd_setup(n, p)
    while True:
        ok, k = _btrd_quick(a, b, c, v, w)
        if ok:
            return k
        ok, k = _btrd_slow(n, p, lr, a, b, c, v, w)
        if ok:
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
def _binomial(n, p, key, slot):
    """One exact ``Binomial(n, p)`` draw using the counters of ``slot`` (the reference path)."""
    if p >= 1.0:
        return n
    flip = p > 0.5
    pp = 1.0 - p if flip else p
    base = _U64(slot) << _SLOT
    if n <= 0 or pp <= 0.0:
        x = 0
    elif n * pp < 10.0:
        x = _binomial_inversion(n, pp, key, base + _U64(2))
    else:
        v = _u01(key, base)
        w = _u01(key, base + _U64(1))
        x = _btrd_continue(n, pp, _log_odds(pp), v, w, key, base + _U64(2))
    return n - x if flip else x


@njit(cache=True, error_model="numpy")
def binomial_block(n, p, lr, key, slot0, out, wi, wf, wb):
    """Exact binomial draws ``out[i] ~ Binomial(n[i], p[i])`` for independent lanes.

    Lane ``i`` uses the counters of slot ``slot0 + i`` and gets exactly the
    value of the scalar reference sampler (:func:`binomial_draws`).

    Parameters
    ----------
    n, p : (L,) int64, float64
        Trials and success probabilities.
    lr : (L,) float64
        ``log(p'/(1-p'))`` with ``p' = min(p, 1-p)`` (:func:`log_odds`) if known
        (gene-level lanes: constants of the cohort), else NaN: it is then
        computed where needed (and stored in ``lr``).
    key, slot0 : uint64
        Stream key and first slot.
    out : (L,) int64
        Draws.
    wi : (6, W) int64, wf : (4, W) float64, wb : (2, W) bool
        Work arrays, C-contiguous, ``W ≥ L``.

    Notes
    -----
    All lanes advance their BTRD iterations together. The first iteration's
    quick acceptance (65–80 % of lanes) is one SIMD loop. The other lanes are
    compacted (branch-free) into contiguous arrays; the rest of their
    iteration, with the exact pmf test (``log k!`` table, polynomial ``exp``),
    and the following iterations then run as SIMD loops, with the table
    lookups and the compactions in short scalar loops. This avoids the branch
    mispredictions that cost a per-draw rejection sampler more than its
    arithmetic (and the gathers this CPU's compiler avoids). Lanes that need
    inversion (``n p' < 10``) or have ``n ≥ LFACT_TABLE`` use the scalar path.
    """
    L = n.shape[0]
    idx = wi[0]
    gn = wi[1]
    gk = wi[2]
    gm = wi[3]
    gslot = wi[4]
    ebits = wi[5]
    ef = ebits.view(np.float64)
    gp = wf[0]
    glr = wf[1]
    gvv = wf[2]
    gd = wf[3]
    okb = wb[0]
    gin = wb[1]
    n_scalar = 0
    for i in range(L):  # SIMD: quick acceptance of iteration 0
        ni = n[i]
        pi = p[i]
        flip = pi > 0.5
        pp = min(pi, 1.0 - pi)
        base = (slot0 + _U64(i)) << _SLOT
        a, b, c = _btrd_setup(ni, pp)
        ok, k = _btrd_quick(a, b, c, _u01(key, base), _u01(key, base + _U64(1)))
        out[i] = ni - k if flip else k
        btrd = ni * pp >= 10.0
        done = ok & btrd
        keep = done | (btrd & (ni < LFACT_TABLE))  # False: the lane needs the scalar path
        okb[i] = done
        gin[i] = keep
        n_scalar += not keep
    if n_scalar:  # inversion (n p' < 10) and large-n lanes
        for i in range(L):
            if not gin[i]:
                out[i] = _binomial(n[i], p[i], key, slot0 + _U64(i))
                okb[i] = True
    m = 0
    for i in range(L):  # branch-free compaction into contiguous arrays
        idx[m] = i
        gn[m] = n[i]
        gp[m] = min(p[i], 1.0 - p[i])
        glr[m] = lr[i]
        gslot[m] = i
        m += not okb[i]
    for j in range(m):
        if glr[j] != glr[j]:  # log-odds not given (NaN)
            glr[j] = _log_odds(gp[j])
    t = _U64(0)
    while m > 0:
        for j in range(m):  # SIMD: candidate of the rest of iteration t/2
            ni = gn[j]
            pp = gp[j]
            ctr = ((slot0 + _U64(gslot[j])) << _SLOT) + t
            a, b, c = _btrd_setup(ni, pp)
            inside, k, mo, vv = _btrd_candidate(
                ni, pp, a, b, c, _u01(key, ctr), _u01(key, ctr + _U64(1))
            )
            gin[j] = inside
            gk[j] = k
            gm[j] = mo
            gvv[j] = vv
        for j in range(m):  # table lookups
            ni = gn[j]
            k = gk[j]
            mo = gm[j]
            gd[j] = _btrd_log_ratio(_LF[mo], _LF[ni - mo], _LF[k], _LF[ni - k], k, mo, glr[j])
        for j in range(m):  # SIMD: exp, with 2**n built from its bits
            poly, nn = _exp_parts(gd[j])
            gd[j] = poly
            ebits[j] = (nn + 1023) << 52
        for j in range(m):  # SIMD: exact test
            okb[j] = gin[j] & (gvv[j] <= gd[j] * ef[j])
        m = _settle(m, okb, gk, idx, gn, gp, glr, gslot, n, p, out)
        t += _U64(2)
        for j in range(m):  # SIMD: quick acceptance of the next iteration
            ni = gn[j]
            pp = gp[j]
            ctr = ((slot0 + _U64(gslot[j])) << _SLOT) + t
            a, b, c = _btrd_setup(ni, pp)
            ok, k = _btrd_quick(a, b, c, _u01(key, ctr), _u01(key, ctr + _U64(1)))
            okb[j] = ok
            gk[j] = k
        m = _settle(m, okb, gk, idx, gn, gp, glr, gslot, n, p, out)


@njit(cache=True, inline="always")
def _settle(m, okb, gk, idx, gn, gp, glr, gslot, n, p, out):
    """Write the draws ``gk`` of the lanes in ``idx[:m]``; keep those not accepted (in place)."""
    left = 0
    for j in range(m):
        i = idx[j]
        k = gk[j]
        out[i] = n[i] - k if p[i] > 0.5 else k
        idx[left] = i
        gn[left] = gn[j]
        gp[left] = gp[j]
        glr[left] = glr[j]
        gslot[left] = gslot[j]
        left += not okb[j]
    return left


@njit(cache=True, error_model="numpy")
def binomial_draws(n, p, keys, slots):
    """Scalar reference path: ``Binomial(n[i], p[i])`` with stream ``keys[i]``, slot ``slots[i]``."""
    out = np.empty(n.shape[0], dtype=np.int64)
    for i in range(n.shape[0]):
        out[i] = _binomial(n[i], p[i], keys[i], slots[i])
    return out


@njit(cache=True, error_model="numpy")
def log_odds(p):
    """``log(p'/(1-p'))`` with ``p' = min(p, 1-p)``, elementwise (the ``lr`` of :func:`binomial_block`)."""
    out = np.empty(p.shape[0], dtype=np.float64)
    for i in range(p.shape[0]):
        out[i] = _log_odds(min(p[i], 1.0 - p[i]))
    return out


# ----------------------------------------------------------------------------- gamma


def _ziggurat_tables(n=256, r=3.6541528853610088, v=0.00492867323399):
    """Marsaglia & Tsang's ziggurat tables for the normal (``n`` layers, 52-bit magnitudes)."""
    m1 = 2.0**52
    k = np.zeros(n, dtype=np.uint64)
    w = np.zeros(n)
    f = np.zeros(n)
    dn = tn = r
    q = v / math.exp(-0.5 * dn * dn)
    k[0] = np.uint64((dn / q) * m1)
    k[1] = 0
    w[0] = q / m1
    w[n - 1] = dn / m1
    f[0] = 1.0
    f[n - 1] = math.exp(-0.5 * dn * dn)
    for i in range(n - 2, 0, -1):
        dn = math.sqrt(-2.0 * math.log(v / dn + math.exp(-0.5 * dn * dn)))
        k[i + 1] = np.uint64((dn / tn) * m1)
        tn = dn
        f[i] = math.exp(-0.5 * dn * dn)
        w[i] = dn / m1
    return k, w, f


_ZIG_R = 3.6541528853610088
_ZIG_K, _ZIG_W, _ZIG_F = _ziggurat_tables()


@njit(cache=True, inline="always")
def _normal(key, ctr):
    """A standard normal by the ziggurat (Marsaglia & Tsang 2000): ``(z, next counter)``.

    One 64-bit number gives the layer (8 bits), the sign (1 bit) and a 52-bit
    magnitude; about 99 % of draws are accepted without further work.
    """
    while True:
        r = _mix(key + (ctr + _U64(1)) * _GOLDEN)
        ctr += _U64(1)
        i = int(r & _U64(0xFF))
        neg = ((r >> _U64(8)) & _U64(1)) == _U64(1)
        rabs = r >> _U64(12)
        x = float(rabs) * _ZIG_W[i]
        if rabs < _ZIG_K[i]:
            return -x if neg else x, ctr
        if i == 0:  # the tail beyond R (Marsaglia's method)
            while True:
                xx = -math.log(_u01(key, ctr)) / _ZIG_R
                yy = -math.log(_u01(key, ctr + _U64(1)))
                ctr += _U64(2)
                if yy + yy > xx * xx:
                    break
            x = _ZIG_R + xx
            return -x if neg else x, ctr
        u = _u01(key, ctr)
        ctr += _U64(1)
        if _ZIG_F[i] + u * (_ZIG_F[i - 1] - _ZIG_F[i]) < math.exp(-0.5 * x * x):
            return -x if neg else x, ctr


@njit(cache=True, inline="always")
def _gamma(shape, key, slot):
    """One ``Gamma(shape, 1)`` draw (Marsaglia–Tsang) using the counters of ``slot``."""
    base = _U64(slot) << _SLOT
    a = shape + 1.0 if shape < 1.0 else shape
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    ctr = base
    while True:
        z, ctr = _normal(key, ctr)
        v = 1.0 + c * z
        if v <= 0.0:
            continue
        v = v * v * v
        u = _u01(key, ctr)
        ctr += _U64(1)
        z2 = z * z
        if u < 1.0 - 0.0331 * z2 * z2 or math.log(u) < 0.5 * z2 + d * (1.0 - v + math.log(v)):
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
    lane_lr,
    lane_gene,
    last_gene,
    tree,
    tcount,
    tprob,
    tlr,
    rem,
    x,
    wi,
    wf,
    wb,
    counts,
    out_row,
):
    P = alpha_c.shape[0]
    T = tree.shape[0] // 2  # leaves of the pathway tree (power of two >= P)
    # theta ~ Dirichlet(alpha_c), as unnormalised gammas (slots 0 .. P-1)
    for p in range(P):
        tree[T + p] = _gamma(alpha_c[p], key, p)
    tree[T + P :] = 0.0
    for k in range(T - 1, 0, -1):
        tree[k] = tree[2 * k] + tree[2 * k + 1]
    # pathway reads ~ Multinomial(R, theta) by binary splitting down the tree:
    # node k sends Binomial(n_k, w_left / w_k) reads left (slot P + k); the
    # nodes of one level are independent lanes
    tcount[1] = reads
    lo = 1
    while lo < T:
        for k in range(lo, 2 * lo):
            tprob[k - lo] = tree[2 * k] / tree[k] if tree[k] > 0.0 else 0.0
        tlr[:lo] = np.nan
        binomial_block(
            tcount[lo : 2 * lo],
            tprob[:lo],
            tlr[:lo],
            key,
            _U64(P + lo),
            x[:lo],
            wi,
            wf,
            wb,
        )
        for k in range(lo, 2 * lo):
            left = x[k - lo]
            tcount[2 * k] = left
            tcount[2 * k + 1] = tcount[k] - left
        lo *= 2
    # gene reads ~ Multinomial(n_p, beta_p), position-major (slots P + T + lane)
    for p in range(P):
        rem[rank_of[p]] = tcount[T + p]
    counts[:] = 0.0
    gene_slot0 = P + T
    for j in range(pos_ptr.shape[0] - 1):
        lo = pos_ptr[j]
        width = pos_ptr[j + 1] - lo
        binomial_block(
            rem[:width],
            lane_cond[lo : lo + width],
            lane_lr[lo : lo + width],
            key,
            _U64(gene_slot0 + lo),
            x[:width],
            wi,
            wf,
            wb,
        )
        for r in range(width):
            xr = x[r]
            rem[r] -= xr
            counts[lane_gene[lo + r]] += xr
    for r in range(P):
        counts[last_gene[r]] += rem[r]
    for gi in range(out_row.shape[0]):
        out_row[gi] = counts[gi] / divisor


@njit(cache=True, parallel=True, nogil=True, error_model="numpy")
def simulate_samples(
    keys,
    classes,
    reads,
    divisors,
    alpha,
    rank_of,
    pos_ptr,
    lane_cond,
    lane_lr,
    lane_gene,
    last_gene,
    out,
):
    """Simulate expression rows ``out[i]`` (float32) for samples with keys ``keys[i]``.

    Random slots of a sample: ``0 .. P-1`` the gammas of ``θ``; ``P + k`` node
    ``k`` of the pathway tree (``1 ≤ k < T``, ``T`` the power of two ``≥ P``);
    ``P + T + l`` gene-level lane ``l``.

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
    lane_cond, lane_lr, lane_gene : (pos_ptr[-1],)
        Conditional probability ``β_j / Σ_{i≥j} β_i``, its :func:`log_odds` and
        the gene index of each lane.
    last_gene : int64 (P,)
        Gene index of the last member of the pathway of each rank (gets the remainder).
    out : float32 (n, G)
        Output rows.
    """
    n = keys.shape[0]
    nblocks = min(n, _BLOCKS)
    for blk in prange(nblocks):
        _simulate_range(
            blk * n // nblocks,
            (blk + 1) * n // nblocks,
            keys,
            classes,
            reads,
            divisors,
            alpha,
            rank_of,
            pos_ptr,
            lane_cond,
            lane_lr,
            lane_gene,
            last_gene,
            out,
        )


@njit(cache=True, error_model="numpy")
def _simulate_range(
    lo,
    hi,
    keys,
    classes,
    reads,
    divisors,
    alpha,
    rank_of,
    pos_ptr,
    lane_cond,
    lane_lr,
    lane_gene,
    last_gene,
    out,
):
    """Samples ``lo .. hi-1`` of :func:`simulate_samples`, with one set of scratch arrays."""
    P = alpha.shape[1]
    G = out.shape[1]
    T = 1
    while T < P:
        T *= 2
    width = max(T, P)
    tree = np.empty(2 * T, dtype=np.float64)
    tcount = np.empty(2 * T, dtype=np.int64)
    tprob = np.empty(T, dtype=np.float64)
    tlr = np.empty(T, dtype=np.float64)
    rem = np.empty(P, dtype=np.int64)
    x = np.empty(width, dtype=np.int64)
    wi = np.empty((6, width), dtype=np.int64)
    wf = np.empty((4, width), dtype=np.float64)
    wb = np.empty((2, width), dtype=np.bool_)
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
            lane_lr,
            lane_gene,
            last_gene,
            tree,
            tcount,
            tprob,
            tlr,
            rem,
            x,
            wi,
            wf,
            wb,
            counts,
            out[i],
        )
