"""Per-row top-k selection, random subsets, rank correlations and average precision.

Every kernel works row by row (``prange`` over rows) and a row's result depends
only on that row (and its seed), so results are identical on any thread count.

Conventions
-----------
- *Top-k* of a row: the ``k`` largest entries, in descending order; ties are
  broken by the lower column index first (a stable order). Inputs must be
  finite.
- Ranks are "average" ranks (ties share the mean of their positions).
- Kendall's tau-b uses Knight's O(G log G) algorithm (sort by ``a`` then ``b``,
  count the inversions of ``b`` with a merge sort).
- Average precision is the step-wise area under the precision–recall curve
  with one step per distinct score (scikit-learn's ``average_precision_score``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .sort import stable_order

# ruff: noqa: NPY002  (Numba has only the legacy, per-thread np.random state; seeded per row)


@njit(cache=True)
def _row_topk(v, k, out):
    """Write the indices of the ``k`` largest entries of ``v`` into ``out[:k]``."""
    g = v.shape[0]
    if k <= 0:
        return
    if k >= g:
        order = np.argsort(-v, kind="mergesort")
        for t in range(g):
            out[t] = order[t]
        return
    neg = -v
    thr = -np.partition(neg, k - 1)[k - 1]  # the k-th largest value
    sel = np.empty(k, dtype=np.int64)
    m = 0
    for j in range(g):
        if v[j] > thr:
            sel[m] = j
            m += 1
    for j in range(g):
        if m >= k:
            break
        if v[j] == thr:
            sel[m] = j
            m += 1
    vals = np.empty(k)
    for t in range(k):
        vals[t] = -v[sel[t]]
    order = np.argsort(vals, kind="mergesort")
    for t in range(k):
        out[t] = sel[order[t]]


@njit(cache=True, parallel=True)
def topk_rows(values, ks):
    """Top-``ks[i]`` column indices of each row, descending (ties: lower index first).

    Returns an ``(n, max(ks))`` int64 array padded with ``-1``.
    """
    n, g = values.shape
    kmax = 0
    for i in range(n):
        kmax = max(kmax, min(ks[i], g))
    out = np.full((n, kmax), -1, dtype=np.int64)
    for i in prange(n):
        _row_topk(values[i], min(ks[i], g), out[i])
    return out


@njit(cache=True, parallel=True)
def random_subsets(seeds, ks, g):
    """A uniform random ``ks[i]``-subset of ``range(g)`` per row, in draw order.

    Row ``i`` seeds the generator with ``seeds[i]`` and runs a partial
    Fisher–Yates shuffle. Returns ``(n, max(ks))`` int64 padded with ``-1``.
    """
    n = seeds.shape[0]
    kmax = 0
    for i in range(n):
        kmax = max(kmax, min(ks[i], g))
    out = np.full((n, kmax), -1, dtype=np.int64)
    for i in prange(n):
        np.random.seed(seeds[i])
        k = min(ks[i], g)
        perm = np.arange(g)
        for t in range(k):
            j = t + np.random.randint(0, g - t)
            tmp = perm[t]
            perm[t] = perm[j]
            perm[j] = tmp
            out[i, t] = perm[t]
    return out


@njit(cache=True, parallel=True)
def diffuse_rows(block, indptr, indices, data):
    """``block @ S`` for a CSR matrix ``S`` (``indptr``, ``indices``, ``data``), parallel over rows.

    Each output row accumulates ``block[i, j] · S[j, :]`` for ``j`` in increasing
    order, so results do not depend on the thread count.
    """
    n, g = block.shape
    m = indptr.shape[0] - 1
    out = np.zeros((n, m if g == 0 else g))
    for i in prange(n):
        for j in range(g):
            v = block[i, j]
            if v != 0.0:
                for p in range(indptr[j], indptr[j + 1]):
                    out[i, indices[p]] += v * data[p]
    return out


@njit(cache=True)
def _pearson(a, b):
    n = a.shape[0]
    ma = 0.0
    mb = 0.0
    for j in range(n):
        ma += a[j]
        mb += b[j]
    ma /= n
    mb /= n
    sab = 0.0
    saa = 0.0
    sbb = 0.0
    for j in range(n):
        da = a[j] - ma
        db = b[j] - mb
        sab += da * db
        saa += da * da
        sbb += db * db
    if saa == 0.0 or sbb == 0.0:
        return np.nan
    return sab / math.sqrt(saa * sbb)


@njit(cache=True, parallel=True)
def spearman_rows(a, b):
    """Spearman correlation of each row pair (Pearson of average ranks); NaN if a row is constant."""
    n, g = a.shape
    out = np.empty(n)
    for i in prange(n):
        ra = np.empty(g)
        rb = np.empty(g)
        _average_ranks_from_order(a[i], stable_order(a[i], False), ra)
        _average_ranks_from_order(b[i], stable_order(b[i], False), rb)
        out[i] = _pearson(ra, rb)
    return out


@njit(cache=True)
def _tie_pairs_sorted(v):
    """Σ t(t-1)/2 over runs of equal values of a sorted array."""
    n = v.shape[0]
    total = 0.0
    i = 0
    while i < n:
        j = i
        while j + 1 < n and v[j + 1] == v[i]:
            j += 1
        t = j - i + 1
        total += 0.5 * t * (t - 1)
        i = j + 1
    return total


@njit(cache=True)
def _count_inversions(v):
    """Sort ``v`` in place (bottom-up merge sort); return the number of pairs i < j with v[i] > v[j]."""
    n = v.shape[0]
    buf = np.empty(n)
    swaps = 0.0
    width = 1
    while width < n:
        lo = 0
        while lo < n:
            mid = min(lo + width, n)
            hi = min(lo + 2 * width, n)
            i = lo
            j = mid
            t = lo
            while i < mid and j < hi:
                if v[j] < v[i]:
                    buf[t] = v[j]
                    swaps += mid - i
                    j += 1
                else:
                    buf[t] = v[i]
                    i += 1
                t += 1
            while i < mid:
                buf[t] = v[i]
                i += 1
                t += 1
            while j < hi:
                buf[t] = v[j]
                j += 1
                t += 1
            lo = hi
        for t in range(n):
            v[t] = buf[t]
        width *= 2
    return swaps


@njit(cache=True)
def _average_ranks_from_order(v, order, out):
    """Ascending average ranks (1 = smallest) of ``v`` given ``order = argsort(v)``."""
    n = v.shape[0]
    i = 0
    while i < n:
        j = i
        while j + 1 < n and v[order[j + 1]] == v[order[i]]:
            j += 1
        r = 0.5 * (i + j) + 1.0
        for t in range(i, j + 1):
            out[order[t]] = r
        i = j + 1


@njit(cache=True)
def _pair_counts_from_order(a, b, oa):
    """(pairs, ties in a, ties in b, ties in both, discordant) given ``oa = argsort(a)``."""
    n = a.shape[0]
    order = oa.copy()
    # sort each run of equal a by b: the order is then lexicographic (a, b)
    i = 0
    while i < n:
        j = i
        while j + 1 < n and a[order[j + 1]] == a[order[i]]:
            j += 1
        if j > i:
            seg = order[i : j + 1].copy()
            sub = np.argsort(b[seg])
            for t in range(j - i + 1):
                order[i + t] = seg[sub[t]]
        i = j + 1
    sa = a[order]
    sb = b[order]
    n1 = _tie_pairs_sorted(sa)
    n3 = 0.0
    i = 0
    while i < n:
        j = i
        while j + 1 < n and sa[j + 1] == sa[i] and sb[j + 1] == sb[i]:
            j += 1
        t = j - i + 1
        n3 += 0.5 * t * (t - 1)
        i = j + 1
    disc = _count_inversions(sb)  # sb is now sorted
    n2 = _tie_pairs_sorted(sb)
    n0 = 0.5 * n * (n - 1)
    return n0, n1, n2, n3, disc


@njit(cache=True)
def _pair_counts(a, b):
    return _pair_counts_from_order(a, b, np.argsort(a))


@njit(cache=True)
def _tau_and_same_order(n0, n1, n2, n3, disc):
    conc = n0 - n1 - n2 + n3 - disc
    den = (n0 - n1) * (n0 - n2)
    tau = (conc - disc) / math.sqrt(den) if den > 0 else np.nan
    same = (conc + n3) / n0 if n0 > 0 else np.nan
    return tau, same


@njit(cache=True, parallel=True)
def concordance_rows(a, b):
    """Kendall's tau-b and the fraction of pairs in the same relative order, per row pair.

    Returns ``(n, 2)``: column 0 is tau-b (NaN if a row is constant), column 1 is
    ``(concordant + tied in both) / all pairs`` (NaN for fewer than 2 columns).
    """
    n = a.shape[0]
    out = np.empty((n, 2))
    for i in prange(n):
        n0, n1, n2, n3, disc = _pair_counts(a[i], b[i])
        out[i, 0], out[i, 1] = _tau_and_same_order(n0, n1, n2, n3, disc)
    return out


@njit(cache=True, parallel=True)
def rank_stats_rows(a, b):
    """Spearman, Kendall's tau-b and the same-order pair fraction of each row pair.

    One sort of each row serves all three (``(n, 3)``, NaN where undefined).
    """
    n, g = a.shape
    out = np.empty((n, 3))
    for i in prange(n):
        oa = stable_order(a[i], False)
        ob = stable_order(b[i], False)
        ra = np.empty(g)
        rb = np.empty(g)
        _average_ranks_from_order(a[i], oa, ra)
        _average_ranks_from_order(b[i], ob, rb)
        out[i, 0] = _pearson(ra, rb)
        n0, n1, n2, n3, disc = _pair_counts_from_order(a[i], b[i], oa)
        out[i, 1], out[i, 2] = _tau_and_same_order(n0, n1, n2, n3, disc)
    return out


@njit(cache=True, parallel=True)
def average_precision_rows(scores, truth):
    """Average precision of each row's scores (higher = predicted positive) against ``truth``.

    ``AP = Σ_t (R_t − R_{t−1}) P_t`` over the distinct score thresholds, highest
    first (ties enter together). NaN for a row without positives.
    """
    n, g = scores.shape
    out = np.empty(n)
    for i in prange(n):
        v = scores[i]
        npos = 0
        for j in range(g):
            if truth[i, j]:
                npos += 1
        if npos == 0:
            out[i] = np.nan
            continue
        order = np.argsort(-v, kind="mergesort")
        ap = 0.0
        tp = 0
        prev_recall = 0.0
        t = 0
        while t < g:
            u = t
            while u + 1 < g and v[order[u + 1]] == v[order[t]]:
                u += 1
            for s in range(t, u + 1):
                if truth[i, order[s]]:
                    tp += 1
            recall = tp / npos
            ap += (recall - prev_recall) * (tp / (u + 1))
            prev_recall = recall
            t = u + 1
        out[i] = ap
    return out


@njit(cache=True, parallel=True)
def topk_agreement_rows(a, b, k):
    """OpenXAI's top-k agreements of each row pair, ranking features by ``|value|``.

    Returns ``(n, 4)``: feature agreement (shared top-k features), rank agreement
    (same feature at the same rank), sign agreement (shared and same sign) and
    signed rank agreement (same rank and same sign), each divided by ``k``.
    """
    n, g = a.shape
    kk = min(k, g)
    out = np.zeros((n, 4))
    if kk <= 0:
        return out
    for i in prange(n):
        ta = np.empty(kk, dtype=np.int64)
        tb = np.empty(kk, dtype=np.int64)
        _row_topk(np.abs(a[i]), kk, ta)
        _row_topk(np.abs(b[i]), kk, tb)
        pos = np.full(g, -1, dtype=np.int64)
        for t in range(kk):
            pos[tb[t]] = t
        fa = 0.0
        ra = 0.0
        sa = 0.0
        sra = 0.0
        for t in range(kk):
            f = ta[t]
            if pos[f] < 0:
                continue
            fa += 1.0
            same_sign = np.sign(a[i, f]) == np.sign(b[i, f])
            if same_sign:
                sa += 1.0
            if pos[f] == t:
                ra += 1.0
                if same_sign:
                    sra += 1.0
        out[i, 0] = fa / kk
        out[i, 1] = ra / kk
        out[i, 2] = sa / kk
        out[i, 3] = sra / kk
    return out


@njit(cache=True, parallel=True)
def argsort_ranks_rows(values):
    """Ascending order and average ranks of each row: ``(order int64, ranks float64)``."""
    n, g = values.shape
    order = np.empty((n, g), dtype=np.int64)
    ranks = np.empty((n, g))
    for i in prange(n):
        order[i] = np.argsort(values[i])
        _average_ranks_from_order(values[i], order[i], ranks[i])
    return order, ranks


@njit(cache=True, parallel=True)
def concordance_given_order_rows(a, b, order_a):
    """:func:`concordance_rows` with ``order_a = argsort(a)`` per row computed beforehand."""
    n = a.shape[0]
    out = np.empty((n, 2))
    for i in prange(n):
        n0, n1, n2, n3, disc = _pair_counts_from_order(a[i], b[i], order_a[i])
        out[i, 0], out[i, 1] = _tau_and_same_order(n0, n1, n2, n3, disc)
    return out


@njit(cache=True, parallel=True)
def pearson_rows(a, b):
    """Pearson correlation of each row pair (NaN if a row is constant)."""
    n = a.shape[0]
    out = np.empty(n)
    for i in prange(n):
        out[i] = _pearson(a[i], b[i])
    return out
