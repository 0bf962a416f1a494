"""Keep/remove correctness of a compiled model for many gene sets, walked incrementally.

The model is ``head(x W + b)``. With ``z0 = x W + b``, ``zb = x' W + b`` and a
gene set ``K``, ``s_K = Σ_{j∈K} (x'_j − x_j) W_j``:

- removing ``K`` (its genes set to the baseline ``x'``): ``z = z0 + s_K``;
- keeping only ``K`` (every other gene at the baseline): ``z = zb − s_K``.

Every set is described as a *checkpoint* on a gene order: the first ``p``
genes of the order minus a short list of genes (``K = order[:p] \\ sub``). The
prefixes of a ranking, of a random permutation, and random sets that avoid
the top genes (a permutation's prefix minus the top genes it contains) all
have this form, so one walk along each order, accumulating ``s`` gene by
gene, serves every checkpoint on it (the whole order, ``p = G``, needs no walk:
``s = zb − z0``).

Rows are processed in blocks of one group (rows that share orders and
checkpoints); inside a block the differences ``x' − x`` are stored gene-major,
so each gene's weight row is used for all the block's rows at once. A row's
sums are accumulated in the same order whatever the block and the thread, so
results do not depend on the thread count. Predictions are the argmax of the
logits (first index on ties); the kernel returns whether it equals the label.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .head import head_forward


@njit(cache=True)
def _argmax_head(layers, params, z, acts):
    logits = head_forward(layers, params, z, acts)
    best = 0
    for c in range(1, logits.shape[0]):
        if logits[c] > logits[best]:
            best = c
    return best


@njit(cache=True, parallel=True)
def walk_correct(
    x,
    rows,
    base,
    weight,
    z0,
    zb,
    layers,
    params,
    n_acts,
    labels,
    block_start,
    block_stop,
    block_group,
    orders,
    group_orders,
    cp_pos,
    cp_seq,
    sub_start,
    sub_len,
    sub_idx,
):
    """Keep/remove correctness at every checkpoint.

    Parameters
    ----------
    x : (N, G) inputs; rows : (n,) int64 the rows of ``x`` processed, in order
    base : (G,) baseline; weight : (G, H); z0, zb : (n, H) for those rows
    layers, params, n_acts : the head program
    labels : (n,) int64 true class index of each processed row
    block_start, block_stop, block_group : row blocks ``[start, stop)``, each
        within one group
    orders : (O, G) int64 gene orders
    group_orders : (n_groups, T) int64 order walked in slot ``t`` (``-1``: none)
    cp_pos : (n_groups, T, Q) int64 prefix length of checkpoint ``q``
    cp_seq : (n_groups, T, Q) int64 checkpoint indices by increasing ``cp_pos``
        (``-1`` ends the list)
    sub_start, sub_len : (n_groups, T, Q) int64 slice of ``sub_idx`` removed
        from the prefix
    sub_idx : (S,) int64 genes

    Returns
    -------
    keep, remove : (n, T, Q) int8 — 1 if the prediction equals the label, 0 if
    not, -1 where no checkpoint is defined.
    """
    n = rows.shape[0]
    g = x.shape[1]
    hh = weight.shape[1]
    t_max = group_orders.shape[1]
    q_max = cp_pos.shape[2]
    keep = np.full((n, t_max, q_max), -1, dtype=np.int8)
    remove = np.full((n, t_max, q_max), -1, dtype=np.int8)
    for b in prange(block_start.shape[0]):
        r0 = block_start[b]
        nr = block_stop[b] - r0
        grp = block_group[b]
        d = np.empty((g, nr))
        for rr in range(nr):
            for j in range(g):
                d[j, rr] = base[j] - x[rows[r0 + rr], j]
        acc = np.empty((hh, nr))  # gene-major walk: the inner loop runs over the block's rows
        s = np.empty(hh)
        z = np.empty(hh)
        acts = np.empty(n_acts)
        for t in range(t_max):
            o = group_orders[grp, t]
            if o < 0:
                continue
            order = orders[o]
            acc[:] = 0.0
            pos = 0
            for u in range(q_max):
                q = cp_seq[grp, t, u]
                if q < 0:
                    break
                p = cp_pos[grp, t, q]
                if p >= g:  # every gene: s = zb - z0, no walk needed
                    for rr in range(nr):
                        r = r0 + rr
                        for h in range(hh):
                            acc[h, rr] = zb[r, h] - z0[r, h]
                    pos = g
                while pos < p:
                    j = order[pos]
                    dj = d[j]
                    for h in range(hh):
                        w = weight[j, h]
                        ah = acc[h]
                        for rr in range(nr):
                            ah[rr] += dj[rr] * w
                    pos += 1
                a = sub_start[grp, t, q]
                m = sub_len[grp, t, q]
                for rr in range(nr):
                    r = r0 + rr
                    for h in range(hh):
                        s[h] = acc[h, rr]
                    for e in range(a, a + m):
                        j = sub_idx[e]
                        dj = d[j, rr]
                        for h in range(hh):
                            s[h] -= dj * weight[j, h]
                    for h in range(hh):
                        z[h] = z0[r, h] + s[h]
                    remove[r, t, q] = 1 if _argmax_head(layers, params, z, acts) == labels[r] else 0
                    for h in range(hh):
                        z[h] = zb[r, h] - s[h]
                    keep[r, t, q] = 1 if _argmax_head(layers, params, z, acts) == labels[r] else 0
    return keep, remove
