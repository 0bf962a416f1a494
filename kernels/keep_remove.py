"""Predictions of a compiled model when gene sets are kept or removed (set to a baseline).

The model is ``head(x W + b)``. With ``z0 = x W + b``, ``zb = x' W + b`` and a
gene set ``K``, ``s_K = Σ_{j∈K} (x'_j − x_j) W_j``:

- removing ``K`` (its genes set to the baseline ``x'``): ``z = z0 + s_K``;
- keeping only ``K`` (every other gene at the baseline): ``z = zb − s_K``.

Nested sets along an order (the top-k of a ranking, a random permutation's
prefixes) are walked once: ``s`` is accumulated gene by gene and the head is
evaluated at each checkpoint size. Sizes above ``G/2`` are reached from the
other end (``s_K = (zb − z0) − s_{K^c}``), so one order costs at most ``G · H``
per sample. Rows are independent (``prange``); results do not depend on the
thread count. Predictions are the argmax of the logits (first index on ties).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .head import head_forward


@njit(cache=True, inline="always")
def _add_gene(xr, base, weight, j, acc):
    d = base[j] - xr[j]
    if d != 0.0:
        for h in range(acc.shape[0]):
            acc[h] += d * weight[j, h]


@njit(cache=True)
def _argmax_head(layers, params, z, acts):
    logits = head_forward(layers, params, z, acts)
    best = 0
    for c in range(1, logits.shape[0]):
        if logits[c] > logits[best]:
            best = c
    return best


@njit(cache=True)
def _predict_both(layers, params, z0r, zbr, s, z, acts, out_keep, out_remove, r, a, b):
    hh = s.shape[0]
    for h in range(hh):
        z[h] = z0r[h] + s[h]
    out_remove[r, a, b] = _argmax_head(layers, params, z, acts)
    for h in range(hh):
        z[h] = zbr[h] - s[h]
    out_keep[r, a, b] = _argmax_head(layers, params, z, acts)


@njit(cache=True, parallel=True)
def prefix_predictions(
    x, base, weight, z0, zb, layers, params, n_acts, orders, row_group, group_orders, sizes
):
    """Keep/remove predictions for the prefixes of gene orders.

    Parameters
    ----------
    x : (n, G) inputs; base : (G,) baseline; weight : (G, H); z0, zb : (n, H)
    layers, params, n_acts : the head program
    orders : (O, G) int64 gene orders (each a permutation, or its first entries
        with the rest unused beyond the largest size)
    row_group : (n,) int64 group of each row (``-1``: skip the row)
    group_orders : (n_groups, T) int64 order ids walked by the rows of a group
    sizes : (n_groups, S) int64 ascending checkpoint sizes (``-1`` padding)

    Returns
    -------
    keep, remove : (n, T, S) int32 predicted class indices (``-1`` where not computed)
    """
    n, g = x.shape
    hh = weight.shape[1]
    t_max = group_orders.shape[1]
    s_max = sizes.shape[1]
    keep = np.full((n, t_max, s_max), -1, dtype=np.int32)
    remove = np.full((n, t_max, s_max), -1, dtype=np.int32)
    half = g // 2
    for r in prange(n):
        grp = row_group[r]
        if grp < 0:
            continue
        xr = x[r]
        acc = np.zeros(hh)
        z = np.empty(hh)
        s = np.empty(hh)
        acts = np.empty(n_acts)
        total = np.empty(hh)
        for h in range(hh):
            total[h] = zb[r, h] - z0[r, h]
        for t in range(t_max):
            o = group_orders[grp, t]
            if o < 0:
                continue
            order = orders[o]
            # forward: sizes <= G/2
            for h in range(hh):
                acc[h] = 0.0
            pos = 0
            for q in range(s_max):
                m = sizes[grp, q]
                if m < 0 or m > half:
                    continue
                while pos < m:
                    _add_gene(xr, base, weight, order[pos], acc)
                    pos += 1
                _predict_both(layers, params, z0[r], zb[r], acc, z, acts, keep, remove, r, t, q)
            # backward: sizes > G/2 from the complement
            for h in range(hh):
                acc[h] = 0.0
            pos = g
            for q in range(s_max - 1, -1, -1):
                m = sizes[grp, q]
                if m < 0 or m <= half:
                    continue
                while pos > m:
                    pos -= 1
                    _add_gene(xr, base, weight, order[pos], acc)
                for h in range(hh):
                    s[h] = total[h] - acc[h]
                _predict_both(layers, params, z0[r], zb[r], s, z, acts, keep, remove, r, t, q)
    return keep, remove


@njit(cache=True, parallel=True)
def excluding_predictions(
    x, base, weight, z0, zb, layers, params, n_acts, perms, row_group, excl_rank, sizes
):
    """Keep/remove predictions for random sets that avoid the top genes.

    For a row of group ``g``, draw ``d`` and size ``m = sizes[g, q]``, the set
    is the first ``m`` genes of ``perms[d]`` whose ``excl_rank[g, j] >= m``
    (the genes outside the group's top-``m`` set). Only sizes with
    ``m <= G − m`` are computed.

    Returns
    -------
    keep, remove : (n, D, S) int32 (``-1`` where not computed)
    """
    n, g = x.shape
    hh = weight.shape[1]
    n_draws = perms.shape[0]
    s_max = sizes.shape[1]
    keep = np.full((n, n_draws, s_max), -1, dtype=np.int32)
    remove = np.full((n, n_draws, s_max), -1, dtype=np.int32)
    for r in prange(n):
        grp = row_group[r]
        if grp < 0:
            continue
        xr = x[r]
        acc = np.zeros(hh)
        z = np.empty(hh)
        acts = np.empty(n_acts)
        for d in range(n_draws):
            perm = perms[d]
            for q in range(s_max):
                m = sizes[grp, q]
                if m <= 0 or m > g - m:
                    continue
                for h in range(hh):
                    acc[h] = 0.0
                added = 0
                pos = 0
                while added < m:
                    j = perm[pos]
                    pos += 1
                    if excl_rank[grp, j] >= m:
                        _add_gene(xr, base, weight, j, acc)
                        added += 1
                _predict_both(layers, params, z0[r], zb[r], acc, z, acts, keep, remove, r, d, q)
    return keep, remove
