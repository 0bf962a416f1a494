"""Integrated Gradients in the first layer's space.

A compiled model is ``f(x) = out(head(z))`` with ``z = x @ W + b``. Along the
straight path ``x(α) = x' + α (x − x')`` the first pre-activation is
``z(α) = z' + α Δz`` with ``z' = x' @ W + b`` and ``Δz = (x − x') @ W``, so

    IG(x) = (x − x') ⊙ (W @ ∫₀¹ ∇_z f(z' + α Δz) dα).

These kernels compute the H-dimensional integral ``Ḡ = ∫₀¹ ∇_z f dα`` for every
sample and target; the caller pulls it back with one matrix product.

- :func:`ig_quadrature`: ``Σ_k w_k ∇_z f(z' + α_k Δz)`` for given nodes/weights
  (Captum's Riemann and Gauss–Legendre rules, or any other).
- :func:`ig_exact`: for heads whose nonlinearities are ReLU/LeakyReLU, walks the
  breakpoints of the path (where a unit of any layer changes sign; inside a
  segment every layer is affine in α) and integrates the smooth output
  (softmax / log-softmax) of each segment with Gauss–Legendre on pieces short
  enough that the logit spread changes by at most ``max_spread``. A sum of
  positive exponentials has no zero within ``π / spread-rate`` of the real
  axis, so on a piece mapped to [-1, 1] the softmax is analytic inside the
  Bernstein ellipse of semi-minor axis ``2π / max_spread``; with
  ``max_spread = 9`` (ρ ≈ 1.92) 32 nodes leave an error ~ρ^-64 ≈ 1e-18 (32
  nodes: the loops over a piece's nodes fill whole SIMD blocks). Pieces
  where the integrand is below ``C·e^-40`` (target probability vanished, or
  saturated) are skipped. For the ``logit`` output the integral is exact.

Each sample is independent: the loops run in ``prange`` and give identical
results on any thread count.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .fastexp import exp_nonpositive
from .head import (
    OP_AFFINE,
    OP_RELU,
    OP_SCALE,
    OUT_LOGIT,
    OUT_PROB,
    _layer_forward,
    head_backward,
    output_value_grad,
)

#: status codes of :func:`ig_exact`
EXACT_OK = 0
EXACT_TOO_MANY_SEGMENTS = 1


@njit(cache=True, inline="always")
def _forward_inline(layers, params, z, acts):
    """:func:`head_forward`, inlined so the caller's fast-math flags vectorise its dot products."""
    n0 = layers[0, 1]
    for i in range(n0):
        acts[i] = z[i]
    start = 0
    for k in range(layers.shape[0]):
        n_in = layers[k, 1]
        n_out = layers[k, 2]
        _layer_forward(
            layers, params, k, acts[start : start + n_in], acts[start + n_in : start + n_in + n_out]
        )
        start += n_in
    return acts[start : start + layers[layers.shape[0] - 1, 2]]


@njit(cache=True, parallel=True, fastmath={"reassoc", "contract"})
def ig_quadrature(layers, params, Z, Zb, bidx, targets, mode, alphas, weights, n_acts, width):
    """``Σ_k weights[k] ∇_z f_t(z' + alphas[k] (z − z'))`` for every sample and target.

    Parameters
    ----------
    layers, params
        The head program (see :mod:`gexplain.kernels.head`).
    Z
        ``(n, H)`` first pre-activations of the inputs.
    Zb
        ``(m, H)`` first pre-activations of the baselines.
    bidx
        ``(n,)`` int64: row of ``Zb`` that is sample ``i``'s baseline.
    targets
        ``(n, T)`` int64 class indices.
    mode
        ``OUT_LOGIT``, ``OUT_PROB`` or ``OUT_LOGPROB``.
    alphas, weights
        Quadrature nodes in [0, 1] and their weights.
    n_acts, width
        Scratch sizes of the head program.

    Returns
    -------
    numpy.ndarray
        ``(n, T, H)`` float64.
    """
    n, h = Z.shape
    nt = targets.shape[1]
    c = layers[layers.shape[0] - 1, 2]
    out = np.zeros((n, nt, h))
    for r in prange(n):
        rb = bidx[r]
        acts = np.empty(n_acts)
        ga = np.empty(width)
        gb = np.empty(width)
        gl = np.empty(c)
        gz = np.empty(h)
        zk = np.empty(h)
        for k in range(alphas.shape[0]):
            a = alphas[k]
            for j in range(h):
                zk[j] = Zb[rb, j] + a * (Z[r, j] - Zb[rb, j])
            logits = _forward_inline(layers, params, zk, acts)
            for t in range(nt):
                output_value_grad(logits, targets[r, t], mode, gl)
                head_backward(layers, params, acts, gl, ga, gb, gz)
                w = weights[k]
                for j in range(h):
                    out[r, t, j] += w * gz[j]
    return out


@njit(cache=True)
def _backward_fixed(layers, params, slope, grad_out, ga, gb, grad_z):
    """Pull ``grad_out`` back through the head with a fixed activation pattern ``slope``."""
    nl = layers.shape[0]
    start = 0
    for k in range(nl):
        start += layers[k, 1]
    cur = ga
    nxt = gb
    for j in range(layers[nl - 1, 2]):
        cur[j] = grad_out[j]
    for kk in range(nl):
        k = nl - 1 - kk
        op = layers[k, 0]
        n_in = layers[k, 1]
        n_out = layers[k, 2]
        off = layers[k, 3]
        start -= n_in
        if op == OP_AFFINE:
            for i in range(n_in):
                nxt[i] = 0.0
            for o in range(n_out):
                g = cur[o]
                if g != 0.0:
                    row = off + o * n_in
                    for i in range(n_in):
                        nxt[i] += params[row + i] * g
        elif op == OP_SCALE:
            for i in range(n_in):
                nxt[i] = params[off + i] * cur[i]
        else:  # RELU / LEAKY with the recorded pattern
            for i in range(n_in):
                nxt[i] = slope[start + i] * cur[i]
        tmp = cur
        cur = nxt
        nxt = tmp
    for i in range(layers[0, 1]):
        grad_z[i] += cur[i]


@njit(cache=True)
def _forward_tangent(layers, params, zb, dz, alpha, eps, v, d, slope):
    """Values ``v`` and α-derivatives ``d`` of every layer at ``alpha``; the pattern in ``slope``.

    Returns the distance in α to the next sign change of any ReLU/LeakyReLU input
    (``inf`` if none). A unit within ``eps`` of its crossing counts as crossed.
    """
    n0 = layers[0, 1]
    for i in range(n0):
        v[i] = zb[i] + alpha * dz[i]
        d[i] = dz[i]
    tmin = np.inf
    start = 0
    for k in range(layers.shape[0]):
        op = layers[k, 0]
        n_in = layers[k, 1]
        n_out = layers[k, 2]
        off = layers[k, 3]
        yo = start + n_in
        if op == OP_AFFINE:
            cb = off + n_out * n_in
            for o in range(n_out):
                acc = params[cb + o]
                accd = 0.0
                row = off + o * n_in
                for i in range(n_in):
                    m = params[row + i]
                    acc += m * v[start + i]
                    accd += m * d[start + i]
                v[yo + o] = acc
                d[yo + o] = accd
        elif op == OP_SCALE:
            for i in range(n_in):
                a = params[off + i]
                v[yo + i] = a * v[start + i] + params[off + n_in + i]
                d[yo + i] = a * d[start + i]
        else:
            neg = 0.0 if op == OP_RELU else params[off]
            for i in range(n_in):
                x = v[start + i]
                dd = d[start + i]
                if dd == 0.0:
                    on = x > 0.0
                else:
                    t = -x / dd
                    if t > eps:
                        on = x > 0.0
                        if t < tmin:
                            tmin = t
                    else:
                        on = dd > 0.0
                s = 1.0 if on else neg
                slope[start + i] = s
                v[yo + i] = s * x
                d[yo + i] = s * dd
        start += n_in
    return tmin


#: Pieces where the integrand is below ``C·exp(-NEGLIGIBLE)`` everywhere are skipped.
NEGLIGIBLE = 40.0


@njit(cache=True, inline="always")
def _gap_bound(l0, l1, j, k0, k1):
    """Upper bound of ``l_j − max_k l_k`` on a piece with end logits ``l0``, ``l1``.

    ``l_j − l_k`` is affine, so its maximum is at an end; ``max_k l_k`` is at
    least ``l_{k0}`` and ``l_{k1}`` (the ends' argmax) everywhere.
    """
    a = max(l0[j] - l0[k0], l1[j] - l1[k0])
    b = max(l0[j] - l0[k1], l1[j] - l1[k1])
    return min(a, b)


@njit(cache=True, inline="always")
def _negligible_piece(l0, l1, tg, mode, k0, k1):
    """Whether ∇ of every target's output is below ``C·e^-40`` on a piece.

    ``l0``, ``l1``: the logits at the piece's ends (affine in between), ``k0``,
    ``k1`` their argmax. With ``p = softmax(l)``: the gradient of ``p_t`` is
    ``p_t (e_t − p)``, negligible where ``l_t`` is far below the largest logit
    (``p_t ≈ 0``) or far above all others (saturated, ``p ≈ e_t``); the gradient
    of ``log p_t`` (``e_t − p``) only in the latter. Both are checked with bounds
    exact for affine logits: ``l_j − l_t`` is affine (extremes at the ends).
    """
    c = l0.shape[0]
    for i in range(tg.shape[0]):
        t = tg[i]
        # saturated: max over j != t of l_j - l_t, maximal at an end of the piece
        sat = -np.inf
        for j in range(c):
            if j != t:
                g = max(l0[j] - l0[t], l1[j] - l1[t])
                if g > sat:
                    sat = g
        if sat < -NEGLIGIBLE:
            continue
        if mode != OUT_PROB:
            return False
        # vanished target probability
        if _gap_bound(l0, l1, t, k0, k1) >= -NEGLIGIBLE:
            return False
    return True


@njit(cache=True, fastmath={"reassoc", "contract"})
def _softmax_piece(v, d, start, active, na, tg, mode, p, hp, glx, glw, acc, X, bits, aux):
    """Add one Gauss–Legendre piece of ``∫ ∇_l out_t(softmax(l(β))) dβ`` to ``acc``.

    The logits of the ``na`` active classes (``active``) at the piece's nodes
    ``β_q = (p + glx[q]) · hp`` are laid out class by class in the flat scratch
    ``X`` (``na · Q`` values), so that ``exp`` runs as one long vectorised loop
    (Cody–Waite reduction ``x = n ln2 + r`` and a degree-13 Taylor polynomial,
    < 2 ulp; ``2^n`` from the exponent bits in ``bits``). Arguments of ``exp``
    are ``l_j − max_k l_k ≤ 0``. ``aux``: ``(3, Q)`` scratch.
    """
    nq = glx.shape[0]
    mq = aux[0]
    tot = aux[1]
    wq = aux[2]
    for q in range(nq):
        mq[q] = -np.inf
        tot[q] = 0.0
    for a in range(na):
        j = active[a]
        vj = v[start + j]
        dj = d[start + j]
        o = a * nq
        for q in range(nq):
            lv = vj + (p + glx[q]) * hp * dj
            X[o + q] = lv
            if lv > mq[q]:
                mq[q] = lv
    for a in range(na):
        o = a * nq
        for q in range(nq):
            X[o + q] -= mq[q]
    m = na * nq
    exp_nonpositive(X, bits, m)  # vectorised
    for a in range(na):
        o = a * nq
        for q in range(nq):
            tot[q] += X[o + q]
    for q in range(nq):
        tot[q] = 1.0 / tot[q]
    for a in range(na):
        o = a * nq
        for q in range(nq):
            X[o + q] *= tot[q]  # probabilities
    for t in range(tg.shape[0]):
        k = tg[t]
        ak = -1
        for a in range(na):
            if active[a] == k:
                ak = a
        if mode == OUT_PROB:
            if ak < 0:
                continue  # target probability below e^-40 on the whole piece
            for q in range(nq):
                wq[q] = glw[q] * hp * X[ak * nq + q]
        else:
            for q in range(nq):
                wq[q] = glw[q] * hp
        sw = 0.0
        for q in range(nq):
            sw += wq[q]
        acc[t, k] += sw
        for a in range(na):
            o = a * nq
            s = 0.0
            for q in range(nq):
                s += wq[q] * X[o + q]
            acc[t, active[a]] -= s


@njit(cache=True)
def _exact_sample(
    layers, params, zb, dz, tg, mode, glx, glw, max_spread, eps, max_segments, gbar, bufs, n_acts
):
    """Exact ``∫₀¹ ∇_z f_t dα`` for one sample; adds into ``gbar`` (T × H). Returns segments."""
    v = bufs[0]
    d = bufs[1]
    slope = bufs[2]
    ga = bufs[3]
    gb = bufs[4]
    nl = layers.shape[0]
    c = layers[nl - 1, 2]
    nt = tg.shape[0]
    start_out = n_acts - c
    acc = np.empty((nt, c))
    active = np.empty(c, dtype=np.int64)
    l0 = np.empty(c)
    l1 = np.empty(c)
    nq = glx.shape[0]
    X = np.empty(c * nq)
    bits = np.empty(c * nq, dtype=np.int64)
    aux = np.empty((3, nq))
    alpha = 0.0
    nseg = 0
    while True:
        tnext = _forward_tangent(layers, params, zb, dz, alpha, eps, v, d, slope)
        rest = 1.0 - alpha
        last = not (tnext < rest)
        seg = rest if last else tnext
        for t in range(nt):
            for j in range(c):
                acc[t, j] = 0.0
        if mode == OUT_LOGIT:
            for t in range(nt):
                acc[t, tg[t]] = seg
        else:
            lo = np.inf
            hi = -np.inf
            for j in range(c):
                s = d[start_out + j]
                if s < lo:
                    lo = s
                if s > hi:
                    hi = s
            npieces = math.ceil((hi - lo) * seg / max_spread)
            if npieces < 1:
                npieces = 1
            hp = seg / npieces
            for j in range(c):
                l1[j] = v[start_out + j]
            for p in range(npieces):
                # logits at the piece's ends (the end of one piece starts the next)
                b1 = (p + 1) * hp
                k0 = 0
                k1 = 0
                for j in range(c):
                    l0[j] = l1[j]
                    l1[j] = v[start_out + j] + b1 * d[start_out + j]
                    if l0[j] > l0[k0]:
                        k0 = j
                    if l1[j] > l1[k1]:
                        k1 = j
                if _negligible_piece(l0, l1, tg, mode, k0, k1):
                    continue
                # classes whose probability stays below e^-40 of the largest on the
                # whole piece change neither the normaliser nor the gradient at
                # double precision: only the others are evaluated
                na = 0
                for j in range(c):
                    if _gap_bound(l0, l1, j, k0, k1) >= -NEGLIGIBLE:
                        active[na] = j
                        na += 1
                _softmax_piece(
                    v, d, start_out, active, na, tg, mode, p, hp, glx, glw, acc, X, bits, aux
                )
        for t in range(nt):
            _backward_fixed(layers, params, slope, acc[t], ga, gb, gbar[t])
        nseg += 1
        if last:
            break
        alpha += seg
        if nseg >= max_segments:
            return -nseg
    return nseg


@njit(cache=True, parallel=True)
def ig_exact(
    layers,
    params,
    Z,
    Zb,
    bidx,
    targets,
    mode,
    glx,
    glw,
    max_spread,
    eps,
    max_segments,
    n_acts,
    width,
):
    """Exact ``∫₀¹ ∇_z f_t(z' + α (z − z')) dα`` for piecewise-linear heads.

    Parameters
    ----------
    layers, params
        Head program whose nonlinear layers are all RELU/LEAKY.
    Z, Zb, bidx, targets, mode
        As in :func:`ig_quadrature`.
    glx, glw
        Gauss–Legendre nodes and weights on [0, 1] used inside each piece.
    max_spread
        Largest change of the logit spread (max − min logit slope times length)
        integrated by one Gauss–Legendre piece.
    eps
        Crossings closer than ``eps`` (in α) to the current point count as passed.
    max_segments
        Safety cap on the number of linear segments per sample.
    n_acts, width
        Scratch sizes of the head program.

    Returns
    -------
    gbar : numpy.ndarray
        ``(n, T, H)`` float64.
    segments : numpy.ndarray
        ``(n,)`` int64 number of linear segments per sample (negative if the cap
        was hit and the integral is incomplete).
    """
    n, h = Z.shape
    nt = targets.shape[1]
    out = np.zeros((n, nt, h))
    segs = np.zeros(n, dtype=np.int64)
    for r in prange(n):
        rb = bidx[r]
        bufs = np.zeros((5, max(n_acts, width)))
        dz = np.empty(h)
        for j in range(h):
            dz[j] = Z[r, j] - Zb[rb, j]
        segs[r] = _exact_sample(
            layers,
            params,
            Zb[rb],
            dz,
            targets[r],
            mode,
            glx,
            glw,
            max_spread,
            eps,
            max_segments,
            out[r],
            bufs,
            n_acts,
        )
    return out, segs


@njit(cache=True)
def gauss_legendre(n):
    """Gauss–Legendre nodes and weights on [-1, 1] by Newton's method (O(n²), any n).

    Matches :func:`numpy.polynomial.legendre.leggauss` (whose eigenvalue method
    is O(n³) and impractical beyond a few thousand nodes) to ~1e-15.
    """
    x = np.empty(n)
    w = np.empty(n)
    m = (n + 1) // 2
    for i in range(m):
        z = math.cos(math.pi * (i + 0.75) / (n + 0.5))
        for _ in range(30):
            p1 = 1.0
            p2 = 0.0
            for j in range(1, n + 1):
                p3 = p2
                p2 = p1
                p1 = ((2.0 * j - 1.0) * z * p2 - (j - 1.0) * p3) / j
            pp = n * (z * p1 - p2) / (z * z - 1.0)
            z1 = z
            z = z1 - p1 / pp
            if abs(z - z1) <= 4e-16:
                break
        # final derivative at the converged root
        p1 = 1.0
        p2 = 0.0
        for j in range(1, n + 1):
            p3 = p2
            p2 = p1
            p1 = ((2.0 * j - 1.0) * z * p2 - (j - 1.0) * p3) / j
        pp = n * (z * p1 - p2) / (z * z - 1.0)
        x[i] = -z
        x[n - 1 - i] = z
        w[i] = 2.0 / ((1.0 - z * z) * pp * pp)
        w[n - 1 - i] = w[i]
    return x, w


@njit(cache=True, parallel=True)
def accumulate_attributions(P, x, xb, bidx, scale, out, out_rows, sums, t):
    """``out[out_rows[r]] += scale · (x[r] − xb[bidx[r]]) ⊙ P[r]`` and the row sums.

    ``P`` (n × G, float64) is ``Ḡ_t @ Wᵀ`` for target column ``t`` (a BLAS
    product in fixed row blocks, see :mod:`gexplain.explain._linalg`); ``out``
    is the float32 attribution matrix; the float64 sums of the added values go
    to ``sums[r, t]`` (completeness is checked on them, before the float32 cast).
    """
    n, g = P.shape
    for r in prange(n):
        b = bidx[r]
        o = out_rows[r]
        acc = 0.0
        for j in range(g):
            v = (np.float64(x[r, j]) - np.float64(xb[b, j])) * P[r, j] * scale
            acc += v
            out[o, j] += v
        sums[r, t] += acc


@njit(cache=True, parallel=True)
def normalize_rows(out, rows):
    """Scale ``out[rows[i]]`` to unit L2 norm in place (norm in float64; zero rows stay zero)."""
    for i in prange(rows.shape[0]):
        o = rows[i]
        s = 0.0
        for j in range(out.shape[1]):
            v = np.float64(out[o, j])
            s += v * v
        if s > 0.0:
            inv = 1.0 / math.sqrt(s)
            for j in range(out.shape[1]):
                out[o, j] = np.float64(out[o, j]) * inv


@njit(cache=True, parallel=True, fastmath={"reassoc", "contract"})
def ig_quadrature_relu_first(
    layers, params, rest, Z, Zb, bidx, targets, mode, alphas, weights, n_acts_rest, width_rest
):
    """:func:`ig_quadrature` for heads that start with ReLU/LeakyReLU then AFFINE.

    Along the path the first pre-activation is ``z(α) = z' + α Δz``, so unit
    ``i`` changes state at most once. The AFFINE output ``y(α) = M (s(α) ⊙
    z(α)) + c`` equals ``U + α V + c`` with ``U = M (s ⊙ z')`` and ``V = M (s ⊙
    Δz)`` updated only when a unit flips, and the pulled-back integral
    ``Σ_k w_k s_i(α_k) (Mᵀ g_k)_i`` equals ``(s_A − s_B) M[:, i]·P_m + s_B
    M[:, i]·P_K``, where ``P_m`` is the running sum of ``w_k g_k`` over the
    ``m`` nodes before unit ``i`` flips (state ``s_A`` before, ``s_B`` after).
    The first layer then costs a few mat-vecs per sample instead of two per
    node. ``alphas`` must be sorted ascending; ``rest`` is the head program
    after the first two layers (possibly empty).
    """
    n, h = Z.shape
    nt = targets.shape[1]
    k_nodes = alphas.shape[0]
    leak = 0.0 if layers[0, 0] == OP_RELU else params[layers[0, 3]]
    n_out = layers[1, 2]
    moff = layers[1, 3]
    coff = moff + n_out * h
    c = layers[layers.shape[0] - 1, 2]
    has_rest = rest.shape[0] > 0
    out = np.zeros((n, nt, h))
    MT = np.empty((h, n_out))  # Mᵀ: unit i's column of M is a contiguous row
    for o in range(n_out):
        for i in range(h):
            MT[i, o] = params[moff + o * h + i]
    for r in prange(n):
        rb = bidx[r]
        dz = np.empty(h)
        sa = np.empty(h)  # state at the first node
        sb = np.empty(h)  # state after the flip
        flip = np.empty(h, dtype=np.int64)  # index of the first node in state sb
        nflip = np.zeros(k_nodes + 1, dtype=np.int64)
        for i in range(h):
            dz[i] = Z[r, i] - Zb[rb, i]
            z0 = Zb[rb, i] + alphas[0] * dz[i]
            pos0 = z0 > 0.0
            sa[i] = 1.0 if pos0 else leak
            sb[i] = sa[i]
            flip[i] = k_nodes
            zl = Zb[rb, i] + alphas[k_nodes - 1] * dz[i]
            if (zl > 0.0) != pos0 and leak != 1.0:
                # the computed z at the nodes is monotone in α: bisect for the first
                # node whose sign differs from node 0's (same test as node by node)
                lo = 0
                hi = k_nodes - 1
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if (Zb[rb, i] + alphas[mid] * dz[i] > 0.0) != pos0:
                        hi = mid
                    else:
                        lo = mid
                flip[i] = hi
                sb[i] = leak if pos0 else 1.0
            nflip[flip[i]] += 1
        # units grouped by flip node (counting sort), so node k visits only its own
        first = np.zeros(k_nodes + 2, dtype=np.int64)
        for k in range(k_nodes + 1):
            first[k + 1] = first[k] + nflip[k]
        order = np.empty(h, dtype=np.int64)
        fill = first[: k_nodes + 1].copy()
        for i in range(h):
            order[fill[flip[i]]] = i
            fill[flip[i]] += 1
        U = np.zeros(n_out)
        V = np.zeros(n_out)
        for o in range(n_out):
            row = moff + o * h
            u = 0.0
            v = 0.0
            for i in range(h):
                u += params[row + i] * (sa[i] * Zb[rb, i])
                v += params[row + i] * (sa[i] * dz[i])
            U[o] = u
            V[o] = v
        acts = np.empty(max(n_acts_rest, 1))
        ga = np.empty(max(width_rest, n_out))
        gb = np.empty(max(width_rest, n_out))
        gl = np.empty(c)
        gy = np.empty(n_out)
        y = np.empty(n_out)
        run = np.zeros((nt, n_out))  # running Σ w_k g_k
        gbar = out[r]
        for k in range(k_nodes):
            if k > 0:
                for u in range(first[k], first[k + 1]):
                    i = order[u]
                    ds = sb[i] - sa[i]
                    for t in range(nt):
                        acc = 0.0
                        for o in range(n_out):
                            acc += MT[i, o] * run[t, o]
                        gbar[t, i] -= ds * acc
                    for o in range(n_out):
                        mo = MT[i, o]
                        U[o] += mo * (ds * Zb[rb, i])
                        V[o] += mo * (ds * dz[i])
            a = alphas[k]
            for o in range(n_out):
                y[o] = U[o] + a * V[o] + params[coff + o]
            if has_rest:
                logits = _forward_inline(rest, params, y, acts)
            else:
                logits = y
            w = weights[k]
            for t in range(nt):
                output_value_grad(logits, targets[r, t], mode, gl)
                if has_rest:
                    head_backward(rest, params, acts, gl, ga, gb, gy)
                    for o in range(n_out):
                        run[t, o] += w * gy[o]
                else:
                    for o in range(n_out):
                        run[t, o] += w * gl[o]
        for t in range(nt):
            for i in range(h):
                acc = 0.0
                for o in range(n_out):
                    acc += MT[i, o] * run[t, o]
                gbar[t, i] += sb[i] * acc
    return out


@njit(cache=True, nogil=True)
def attribution_rows_inplace(out, q0, m, g0, g1, x, xb, bidx, n_targets):
    """``out[q, g0:g1] = (x[r] − xb[bidx[r]]) ⊙ out[q, g0:g1]`` for ``q`` in ``q0 … q0+m−1``.

    ``r = q // n_targets``. ``out[q, g0:g1]`` holds the pulled-back gradient
    ``Ḡ_q Wᵀ`` (float32, written there by the product); the difference and the
    product are formed in float64 and rounded once. Single-threaded and
    GIL-free: the caller runs blocks on a thread pool.
    """
    for i in range(m):
        q = q0 + i
        r = q // n_targets
        b = bidx[r]
        for j in range(g0, g1):
            out[q, j] = (np.float64(x[r, j]) - np.float64(xb[b, j])) * np.float64(out[q, j])


@njit(cache=True, nogil=True)
def attribution_rows_add(P, x, xb, bidx, n_targets, q0, g0, scale, out):
    """``out[q0+i, g0+j] += scale · (x[r, g0+j] − xb[bidx[r], g0+j]) · P[i, j]``.

    ``r = (q0+i) // n_targets``. The accumulating twin of
    :func:`attribution_rows_inplace` (several baselines averaged); ``P`` is a
    separate block of pulled-back gradients for the columns ``g0 …``.
    """
    for i in range(P.shape[0]):
        q = q0 + i
        r = q // n_targets
        b = bidx[r]
        for jj in range(P.shape[1]):
            j = g0 + jj
            v = (np.float64(x[r, j]) - np.float64(xb[b, j])) * np.float64(P[i, jj]) * scale
            out[q, j] += v


@njit(cache=True)
def completeness_sums(Z, Zb, bidx, gbar, scale, sums):
    """``sums[r, t] += scale · Σ_h (Z[r, h] − Zb[bidx[r], h]) · gbar[r, t, h]`` in float64.

    The sum of a row's attributions ``Σ_j (x − x')_j (W Ḡ)_j`` equals
    ``((x − x') W) · Ḡ = Δz · Ḡ``: the completeness check costs ``H`` products
    per row and target, in float64, whatever the precision of the stored values.
    """
    n, nt, h = gbar.shape
    for r in range(n):
        b = bidx[r]
        for t in range(nt):
            acc = 0.0
            for k in range(h):
                acc += (Z[r, k] - Zb[b, k]) * gbar[r, t, k]
            sums[r, t] += scale * acc
