"""Keep/remove correctness of a compiled model for many gene sets, walked incrementally.

The model is ``head(x W + b)``. With ``z0 = x W + b``, ``zb = x' W + b`` and a
gene set ``K``, ``s_K = Σ_{j∈K} (x'_j − x_j) W_j``:

- removing ``K`` (its genes set to the baseline ``x'``): ``z = z0 + s_K``;
- keeping only ``K`` (every other gene at the baseline): ``z = zb − s_K``.

Every set is described as a *checkpoint* on a gene order: the first ``p``
genes of the order minus a list of genes (``K = order[:p] \\ sub``). The
prefixes of a ranking, of a random permutation, and random sets that avoid
the top genes (a permutation's prefix minus the top genes it contains) all
have this form, so one walk along each order, accumulating ``s`` gene by
gene, serves every checkpoint on it (the whole order, ``p = G``, needs no walk:
``s = zb − z0``). Three things keep the walk short:

- the genes removed from the excluding-top sets of one order and one top
  ranking are nested (a larger size removes a superset), so they form one
  *family* sequence (:func:`excluding_top`) whose prefixes are the removed
  lists; its sum is walked incrementally like the order itself;
- plain prefixes past the largest gap between an order's checkpoints are
  reached from the other end: ``s = (zb − z0) − Σ_{j∈order[p:]} …`` (the
  plan marks them in ``cp_back``);
- the walk adds four genes per pass over the accumulator, and the head and
  its argmax run for a whole block of rows at once (rows innermost).

Rows are processed in blocks of one group (rows that share orders and
checkpoints); inside a block the differences ``x' − x`` are stored gene-major,
so each gene's weight row is used for all the block's rows at once. A row's
sums are accumulated in the same order whatever the block and the thread, so
results do not depend on the thread count or the block size. Predictions are
the argmax of the logits (first index on ties); the kernel returns whether it
equals the label.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .head import head_forward_columns


@njit(cache=True)
def _block_argmax(layers, params, A, best, bestv):
    """Argmax of the head's logits for a block of rows, rows innermost.

    ``A`` (``n_acts × nr``) holds the head's input in its first rows, one
    column per row; :func:`kernels.head.head_forward_columns` fills the rest
    with exactly the per-row arithmetic of :func:`kernels.head.head_forward`.
    ``best`` receives the first index of the largest logit of each row.
    """
    nr = best.shape[0]
    s = head_forward_columns(layers, params, A, nr)
    n_c = layers[layers.shape[0] - 1, 2]
    for rr in range(nr):
        best[rr] = 0
        bestv[rr] = A[s, rr]
    for c in range(1, n_c):
        lc = A[s + c]
        for rr in range(nr):
            if lc[rr] > bestv[rr]:
                bestv[rr] = lc[rr]
                best[rr] = c


@njit(cache=True)
def _score(layers, params, z0t, zbt, src, A, best, bestv, labels, r0, t, q, keep, remove):
    """Correctness of a block's rows at one checkpoint, ``src`` = the sums ``s`` (H × nr)."""
    hh = src.shape[0]
    nr = src.shape[1]
    for h in range(hh):
        for rr in range(nr):
            A[h, rr] = z0t[h, rr] + src[h, rr]
    _block_argmax(layers, params, A, best, bestv)
    for rr in range(nr):
        remove[r0 + rr, t, q] = 1 if best[rr] == labels[r0 + rr] else 0
    for h in range(hh):
        for rr in range(nr):
            A[h, rr] = zbt[h, rr] - src[h, rr]
    _block_argmax(layers, params, A, best, bestv)
    for rr in range(nr):
        keep[r0 + rr, t, q] = 1 if best[rr] == labels[r0 + rr] else 0


@njit(cache=True)
def _advance(acc, d, weight, order, start, stop):
    """``acc[h, r] += d[j, r] * weight[j, h]`` for ``j = order[start:stop]``, in that order.

    Four genes per pass over ``acc`` (one load and store of ``acc`` per four
    genes instead of per gene); each element still receives its products one
    by one in the order's sequence, so the rounding is that of the plain loop.
    """
    hh = acc.shape[0]
    nr = acc.shape[1]
    pos = start
    while pos + 4 <= stop:
        j0 = order[pos]
        j1 = order[pos + 1]
        j2 = order[pos + 2]
        j3 = order[pos + 3]
        d0 = d[j0]
        d1 = d[j1]
        d2 = d[j2]
        d3 = d[j3]
        for h in range(hh):
            w0 = weight[j0, h]
            w1 = weight[j1, h]
            w2 = weight[j2, h]
            w3 = weight[j3, h]
            ah = acc[h]
            for rr in range(nr):
                ah[rr] = (((ah[rr] + d0[rr] * w0) + d1[rr] * w1) + d2[rr] * w2) + d3[rr] * w3
        pos += 4
    while pos < stop:
        j = order[pos]
        dj = d[j]
        for h in range(hh):
            w = weight[j, h]
            ah = acc[h]
            for rr in range(nr):
                ah[rr] += dj[rr] * w
        pos += 1


@njit(cache=True)
def excluding_top(perm, rank, ms):
    """Random sets of sizes ``ms`` outside the top sets: one nested description.

    For each ``m`` of ``ms`` (increasing, each ``<= G - m``), the set is the
    shortest prefix ``perm[:p]`` holding ``m`` genes of ``rank >= m``, minus its
    genes of ``rank < m``. Those removed genes grow with ``m``, so they are
    listed once, in a sequence whose first ``ends[i]`` entries are the ones
    removed for ``ms[i]`` (by increasing first size that removes them, then in
    ``perm`` order).

    Parameters
    ----------
    perm : (G,) int64 a permutation of the genes
    rank : (G,) int64 rank of each gene in the top order (0 = top)
    ms : (M,) int64 increasing sizes

    Returns
    -------
    p : (M,) int64 prefix lengths; seq : (S,) int64 genes; ends : (M,) int64
    """
    nm = ms.shape[0]
    p = np.zeros(nm, dtype=np.int64)
    ends = np.zeros(nm, dtype=np.int64)
    if nm == 0:
        return p, np.zeros(0, dtype=np.int64), ends
    cnt = np.zeros(nm, dtype=np.int64)
    done = 0
    pos = 0
    while done < nm:
        r = rank[perm[pos]]
        pos += 1
        for i in range(done, nm):
            if r < ms[i]:
                break
            cnt[i] += 1
            if cnt[i] == ms[i] and p[i] == 0:
                p[i] = pos
        while done < nm and p[done] > 0:
            done += 1
    # level of a removed gene: the first size whose set removes it
    last = ms[nm - 1]
    level = np.full(p[nm - 1], -1, dtype=np.int64)
    counts = np.zeros(nm, dtype=np.int64)
    for u in range(p[nm - 1]):
        r = rank[perm[u]]
        if r < last:
            lv = 0
            while ms[lv] <= r or p[lv] <= u:
                lv += 1
            level[u] = lv
            counts[lv] += 1
    start = np.zeros(nm, dtype=np.int64)
    total = 0
    for i in range(nm):
        start[i] = total
        total += counts[i]
        ends[i] = total
    seq = np.empty(total, dtype=np.int64)
    for u in range(p[nm - 1]):
        lv = level[u]
        if lv >= 0:
            seq[start[lv]] = perm[u]
            start[lv] += 1
    return p, seq, ends


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
    sub_fam,
    sub_idx,
    cp_back,
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
    sub_start, sub_len : (n_groups, T, Q) int64 slice ``sub_idx[start:start +
        len]`` removed from the prefix (checkpoints of one family share ``start``)
    sub_fam : (n_groups, T, Q) int64 family (0 or 1) of the removed list, -1: none
    sub_idx : (S,) int64 genes
    cp_back : (n_groups, T, Q) bool plain prefixes computed from the order's end

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
        tmp = np.empty((hh, nr))
        sacc = np.empty((2, hh, nr))
        spos = np.zeros(2, dtype=np.int64)
        n_acts = layers[0, 1]
        for k in range(layers.shape[0]):
            n_acts += layers[k, 2]
        A = np.empty((n_acts, nr))
        best = np.empty(nr, dtype=np.int64)
        bestv = np.empty(nr)
        z0t = np.empty((hh, nr))
        zbt = np.empty((hh, nr))
        for rr in range(nr):
            for h in range(hh):
                z0t[h, rr] = z0[r0 + rr, h]
                zbt[h, rr] = zb[r0 + rr, h]
        for t in range(t_max):
            o = group_orders[grp, t]
            if o < 0:
                continue
            order = orders[o]
            acc[:] = 0.0
            pos = 0
            sacc[:] = 0.0
            spos[:] = 0
            for u in range(q_max):
                q = cp_seq[grp, t, u]
                if q < 0:
                    break
                if cp_back[grp, t, q]:
                    continue
                p = cp_pos[grp, t, q]
                if p >= g:  # every gene: s = zb - z0, no walk needed
                    for rr in range(nr):
                        r = r0 + rr
                        for h in range(hh):
                            acc[h, rr] = zb[r, h] - z0[r, h]
                    pos = g
                _advance(acc, d, weight, order, pos, p)
                pos = max(pos, p)
                f = sub_fam[grp, t, q]
                src = acc
                if f >= 0:  # minus a prefix of the family's sequence, walked incrementally
                    a = sub_start[grp, t, q]
                    m = sub_len[grp, t, q]
                    sf = sacc[f]
                    if m > spos[f]:
                        _advance(sf, d, weight, sub_idx, a + spos[f], a + m)
                        spos[f] = m
                    for h in range(hh):
                        for rr in range(nr):
                            tmp[h, rr] = acc[h, rr] - sf[h, rr]
                    src = tmp
                _score(
                    layers,
                    params,
                    z0t,
                    zbt,
                    src,
                    A,
                    best,
                    bestv,
                    labels,
                    r0,
                    t,
                    q,
                    keep,
                    remove,
                )
            # checkpoints near the end: s = (zb - z0) - (sum over the order's tail)
            acc[:] = 0.0
            pos = g
            for u in range(q_max - 1, -1, -1):
                q = cp_seq[grp, t, u]
                if q < 0 or not cp_back[grp, t, q]:
                    continue
                p = cp_pos[grp, t, q]
                if p < pos:
                    _advance(acc, d, weight, order, p, pos)
                    pos = p
                for h in range(hh):
                    for rr in range(nr):
                        tmp[h, rr] = (zbt[h, rr] - z0t[h, rr]) - acc[h, rr]
                _score(
                    layers,
                    params,
                    z0t,
                    zbt,
                    tmp,
                    A,
                    best,
                    bestv,
                    labels,
                    r0,
                    t,
                    q,
                    keep,
                    remove,
                )
    return keep, remove
