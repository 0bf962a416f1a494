"""Prediction-gap kernels: deletion curves and Gaussian-perturbation gaps in the first layer's space.

A compiled model is ``f(x) = out(head(z))`` with ``z = x @ W + b`` (``W`` is
``G × H``, H small). Both kernels below work on ``z`` instead of ``x``:

**Deletion curves** (the paper's PGI/PGU/PGR). For one sample ``x``, a
baseline ``x'`` and an order of the genes, the curve point ``i`` is the
explained value after the first ``i`` blocks of ``g`` genes (in that order)
were set to the baseline. Setting block ``B`` to the baseline moves ``z`` by
``Σ_{j∈B} (x'_j − x_j) W[j, :]``, so the kernel computes ``z = x W + b`` once
(one pass over ``W``), then for each block adds the contributions of its
genes (cumulatively) and runs the small head: the whole curve costs one more
pass over ``W`` (``G·H``) plus ``N`` head evaluations, instead of ``N`` full
forwards (``N·G·H``). Accumulation is in float64, genes of a block in order.

**Gaussian perturbations** (OpenXAI's PGI/PGU). A perturbation adds noise
``δ`` to some genes; ``z`` moves by ``Σ_j δ_j W[j, :]``. PGI perturbs the top-k
genes (cost ``k·H``); PGU perturbs the others, computed as the full noise's
shift minus the top-k part (cost ``G·H`` once per perturbation, then ``k·H``
for every k of the grid, which share the same draws).

**Draw order** (random numbers, per sample). Each sample ``i`` has its own
seed (from :func:`gexplain._rng.sample_seeds`, by *global* sample index):

- random orders (:func:`random_order`) come from a SplitMix64 stream started
  at the sample's seed: a Fisher–Yates shuffle of ``0 .. G-1`` (``i = G-1``
  down to ``1`` swaps ``i`` with a uniform ``j ≤ i``, Lemire's bounded draw on
  the output's high 32 bits), the orders ``r = 0, 1, ...`` in sequence on the
  same stream. SplitMix64 costs ~1 ns per draw; Numba's Mersenne Twister
  permutation took 5× longer than the rest of a random curve.
- :func:`openxai_gaps` calls ``np.random.seed(seeds[i])`` and then draws, for
  perturbation ``t = 0 .. n_perturb − 1``: ``G`` standard normals, gene ``0``
  first (``δ_j = std · N(0, 1)``). The same draws serve PGI and PGU and every
  ``k``.

Both states are per sample, so results do not depend on the thread count or
the chunking. Every sample's arithmetic is serial, so results are also
bitwise identical on 1 or N threads.

**Curve evaluation.** The curve's ``N + 1`` first-layer vectors ``z`` are
accumulated gene by gene (float64, genes of a block in order) into tiles of
``TILE`` points stored point-minor (``acts[unit, point]``); the head then runs
on a whole tile at once, its loops over the tile's points innermost
(vectorised), with a vectorised ``exp`` (Cody–Waite reduction and a degree-13
polynomial, < 2 ulp) for the softmax.

Ties in an attribution order are broken by gene index (stable sorts): PGI
orders by attribution descending, PGU ascending, both with equal values kept in
increasing gene index.
"""

# ruff: noqa: NPY002  (Numba has only the legacy, per-thread np.random state; seeded per sample)

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .fastexp import exp_nonpositive
from .head import (
    OP_AFFINE,
    OUT_LOGIT,
    OUT_LOGPROB,
    _layer_forward,
    head_forward_columns,
)
from .sort import radix_argsort, stable_order  # noqa: F401  (stable_order: part of this API)

#: Curve points per head evaluation tile.
TILE = 64


@njit(cache=True)
def output_value(logits, target, mode):
    """The explained scalar from the logits: logit, softmax probability or log-probability."""
    if mode == OUT_LOGIT:
        return logits[target]
    c = logits.shape[0]
    m = logits[0]
    for j in range(1, c):
        if logits[j] > m:
            m = logits[j]
    s = 0.0
    for j in range(c):
        s += math.exp(logits[j] - m)
    logp = logits[target] - m - math.log(s)
    if mode == OUT_LOGPROB:
        return logp
    return math.exp(logp)


@njit(cache=True)
def _first_layer(x, W, b, z):
    h = W.shape[1]
    for k in range(h):
        z[k] = b[k]
    for j in range(W.shape[0]):
        v = np.float64(x[j])
        if v != 0.0:
            for k in range(h):
                z[k] += v * W[j, k]


@njit(cache=True)
def transposed_params(layers, params):
    """The head parameters with every affine matrix stored input-major (``n_in × n_out``).

    :func:`head_value` then accumulates ``y += x_i M[:, i]`` over contiguous
    memory (vectorised) and skips inputs that are exactly zero (after a ReLU,
    about half of them).
    """
    out = params.copy()
    for k in range(layers.shape[0]):
        if layers[k, 0] == OP_AFFINE:
            n_in = layers[k, 1]
            n_out = layers[k, 2]
            off = layers[k, 3]
            for o in range(n_out):
                for i in range(n_in):
                    out[off + i * n_out + o] = params[off + o * n_in + i]
    return out


@njit(cache=True)
def head_value(layers, pt, z, acts, target, mode):
    """The explained scalar of the head at ``z`` (``pt`` from :func:`transposed_params`)."""
    n0 = layers[0, 1]
    for i in range(n0):
        acts[i] = z[i]
    start = 0
    nl = layers.shape[0]
    for k in range(nl):
        n_in = layers[k, 1]
        n_out = layers[k, 2]
        x = acts[start : start + n_in]
        y = acts[start + n_in : start + n_in + n_out]
        if layers[k, 0] == OP_AFFINE:
            off = layers[k, 3]
            cb = off + n_in * n_out
            for o in range(n_out):
                y[o] = pt[cb + o]
            for i in range(n_in):
                xi = x[i]
                if xi != 0.0:
                    row = off + i * n_out
                    for o in range(n_out):
                        y[o] += xi * pt[row + o]
        else:
            _layer_forward(layers, pt, k, x, y)
        start += n_in
    return output_value(acts[start : start + layers[nl - 1, 2]], target, mode)


# ---------------------------------------------------------------- random orders (SplitMix64)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_LOW32 = np.uint64(0xFFFFFFFF)
_TWO32 = np.uint64(1) << np.uint64(32)


@njit(cache=True, inline="always")
def _next(state):
    """Next SplitMix64 output; ``state`` is a one-element uint64 array."""
    s = state[0] + _GOLDEN
    state[0] = s
    z = (s ^ (s >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@njit(cache=True, inline="always")
def _bounded(state, r):
    """Uniform integer in ``[0, r)`` (Lemire's multiply-shift on 32 bits, with rejection)."""
    ru = np.uint64(r)
    m = (_next(state) >> np.uint64(32)) * ru
    low = m & _LOW32
    if low < ru:
        t = (_TWO32 - ru) % ru
        while low < t:
            m = (_next(state) >> np.uint64(32)) * ru
            low = m & _LOW32
    return np.int64(m >> np.uint64(32))


@njit(cache=True)
def new_state(seed):
    """A SplitMix64 state (one-element uint64 array) started at ``seed``."""
    state = np.empty(1, dtype=np.uint64)
    state[0] = np.uint64(seed)
    return state


@njit(cache=True)
def random_order(d, state):
    """A uniformly random permutation of ``0 .. d-1`` (Fisher–Yates) from ``state``."""
    o = np.arange(d)
    for i in range(d - 1, 0, -1):
        j = _bounded(state, i + 1)
        t = o[i]
        o[i] = o[j]
        o[j] = t
    return o


# ---------------------------------------------------------------- tiled head
@njit(cache=True)
def head_tile(layers, params, A, T, target, mode, out, E, bits, ms):
    """The explained value at the ``T`` points of a tile into ``out[:T]``.

    ``A`` is ``(n_acts, TILE)``: rows ``0 .. H-1`` hold the points' ``z``
    (column ``t`` = point ``t``); the layers' outputs follow, row by unit
    (:func:`kernels.head.head_forward_columns`).
    ``E``, ``bits`` (``C · TILE``) and ``ms`` (``2 · TILE``) are scratch.
    """
    start = head_forward_columns(layers, params, A, T)
    nl = layers.shape[0]
    c = layers[nl - 1, 2]
    if mode == OUT_LOGIT:
        for t in range(T):
            out[t] = A[start + target, t]
        return
    mx = ms[0]
    sm = ms[1]
    L = A[start]
    for t in range(T):
        mx[t] = L[t]
    for j in range(1, c):
        L = A[start + j]
        for t in range(T):
            mx[t] = max(mx[t], L[t])
    for j in range(c):
        L = A[start + j]
        e = E[j * T : (j + 1) * T]
        for t in range(T):
            e[t] = L[t] - mx[t]
    exp_nonpositive(E, bits, c * T)
    for t in range(T):
        sm[t] = 0.0
    for j in range(c):
        e = E[j * T : (j + 1) * T]
        for t in range(T):
            sm[t] += e[t]
    L = A[start + target]
    if mode == OUT_LOGPROB:
        for t in range(T):
            out[t] = L[t] - mx[t] - math.log(sm[t])
    else:
        e = E[target * T : (target + 1) * T]
        for t in range(T):
            out[t] = e[t] / sm[t]


@njit(cache=True)
def _curve(x, base, W, z0, order, block, n_blocks, layers, params, ws, target, mode, out):
    """Deletion curve of one order into ``out`` (length n_blocks + 1); ``z0`` is x's z."""
    A, E, bits, ms, z = ws
    h = W.shape[1]
    for k in range(h):
        z[k] = z0[k]
    n_pts = n_blocks + 1
    for p0 in range(0, n_pts, TILE):
        T = min(TILE, n_pts - p0)
        for tt in range(T):
            i = p0 + tt
            if i > 0:
                for p in range((i - 1) * block, i * block):
                    j = order[p]
                    dv = np.float64(base[j]) - np.float64(x[j])
                    if dv != 0.0:
                        for k in range(h):
                            z[k] += dv * W[j, k]
            for k in range(h):
                A[k, tt] = z[k]
        head_tile(layers, params, A, T, target, mode, out[p0 : p0 + T], E, bits, ms)


@njit(cache=True)
def _workspace(layers, n_acts, h):
    c = layers[layers.shape[0] - 1, 2]
    return (
        np.empty((n_acts, TILE)),
        np.empty(c * TILE),
        np.empty(c * TILE, dtype=np.int64),
        np.empty((2, TILE)),
        np.empty(h),
    )


@njit(cache=True)
def local_orders(a):
    """PGI (descending) and PGU (ascending) orders of ``a``, ties by increasing index.

    One sort: the ascending order is the descending one reversed, with each run
    of equal values reversed back into increasing index.
    """
    desc = stable_order(a, True)
    n = a.shape[0]
    asc = desc[::-1].copy()
    p = 0
    while p < n:
        q = p + 1
        while q < n and a[asc[q]] == a[asc[p]]:
            q += 1
        if q - p > 1:
            asc[p:q] = asc[p:q][::-1].copy()
        p = q
    return desc, asc


@njit(cache=True, parallel=True)
def deletion_curves(
    X,
    W,
    b,
    layers,
    params,
    n_acts,
    B,
    base_index,
    targets,
    mode,
    block,
    attr,
    orders,
    order_index,
    seeds,
    n_random,
):
    """Deletion curves of every sample for its local, given and random orders.

    Parameters
    ----------
    X : (n, G) float32/float64
        Model inputs.
    W, b : (G, H), (H,) float64
        First linear map.
    layers, params, n_acts
        The head program (see :mod:`gexplain.kernels.head`).
    B : (m, G) float64
        Baseline rows; sample ``i`` uses ``B[base_index[i]]``.
    targets : (n,) int64
        Explained class of each sample.
    mode : int
        Output mode (logit, probability, log-probability).
    block : int
        Genes per block ``g``; the curve has ``N + 1 = G // g + 1`` points.
    attr : (n, G) float, or (0, G)
        Local attributions; when given, curves 0 and 1 are its PGI order
        (descending) and PGU order (ascending).
    orders : (q, G) int64
        Shared orders (e.g. one per class and aggregation); sample ``i`` uses
        rows ``order_index[i, :]`` (``order_index`` is ``(n, K_g)``, ``-1``
        skips: its curve is left NaN).
    seeds : (n,) uint32
        Per-sample seeds of the random orders.
    n_random : int
        Random orders per sample (the last ``n_random`` curves).

    Returns
    -------
    curves : (n, K, N + 1) float64
        ``K = 2·[attr given] + K_g + n_random``.
    """
    n = X.shape[0]
    G = W.shape[0]
    h = W.shape[1]
    n_blocks = G // block
    n_local = 2 if attr.shape[0] > 0 else 0
    n_given = order_index.shape[1]
    K = n_local + n_given + n_random
    out = np.full((n, K, n_blocks + 1), np.nan)
    for i in prange(n):
        ws = _workspace(layers, n_acts, h)
        z0 = np.empty(h)
        x = X[i]
        base = B[base_index[i]]
        t = targets[i]
        _first_layer(x, W, b, z0)
        if n_local:
            desc, asc = local_orders(attr[i].astype(np.float64))
            _curve(x, base, W, z0, desc, block, n_blocks, layers, params, ws, t, mode, out[i, 0])
            _curve(x, base, W, z0, asc, block, n_blocks, layers, params, ws, t, mode, out[i, 1])
        for q in range(n_given):
            r = order_index[i, q]
            if r >= 0:
                _curve(
                    x,
                    base,
                    W,
                    z0,
                    orders[r],
                    block,
                    n_blocks,
                    layers,
                    params,
                    ws,
                    t,
                    mode,
                    out[i, n_local + q],
                )
        if n_random > 0:
            state = new_state(seeds[i])
            for r in range(n_random):
                o = random_order(G, state)
                _curve(
                    x,
                    base,
                    W,
                    z0,
                    o,
                    block,
                    n_blocks,
                    layers,
                    params,
                    ws,
                    t,
                    mode,
                    out[i, n_local + n_given + r],
                )
    return out


@njit(cache=True)
def random_orders(seeds, n_random, d):
    """The random orders :func:`deletion_curves` draws, as ``(n, n_random, d)`` (for tests)."""
    n = seeds.shape[0]
    out = np.empty((n, n_random, d), dtype=np.int64)
    for i in range(n):
        state = new_state(seeds[i])
        for r in range(n_random):
            out[i, r] = random_order(d, state)
    return out


@njit(cache=True)
def _draw_noise(delta, std):
    for j in range(delta.shape[0]):
        delta[j] = std * np.random.standard_normal()


@njit(cache=True)
def gaussian_noise(seeds, n_perturb, d, std):
    """The noise :func:`openxai_gaps` draws, as ``(n, n_perturb, d)`` (for tests)."""
    n = seeds.shape[0]
    out = np.empty((n, n_perturb, d))
    for i in range(n):
        np.random.seed(seeds[i])
        for t in range(n_perturb):
            _draw_noise(out[i, t], std)
    return out


@njit(cache=True, parallel=True)
def topk_abs_orders(attr, kmax, seeds, randomize):
    """First ``kmax`` genes of each row by ``|attr|`` descending (ties by gene index).

    With ``randomize``, a random permutation from the row's seed instead (the
    random-attribution control; the attributions are then ignored).
    """
    n = attr.shape[0]
    d = attr.shape[1]
    out = np.empty((n, kmax), dtype=np.int64)
    for i in prange(n):
        if randomize:
            o = random_order(d, new_state(seeds[i]))
        else:
            o = stable_order(np.abs(attr[i].astype(np.float64)), True)
        for p in range(kmax):
            out[i, p] = o[p]
    return out


@njit(cache=True, parallel=True)
def openxai_gaps(X, W, b, layers, params, n_acts, targets, mode, top, ks, n_perturb, std, seeds):
    """OpenXAI prediction gaps: mean over perturbations of ``|f(x̃) − f(x)|``.

    Parameters
    ----------
    X, W, b, layers, params, n_acts, targets, mode
        As in :func:`deletion_curves`.
    top : (n, kmax) int64
        Each sample's genes by decreasing importance (at least ``max(ks)``).
    ks : (nk,) int64
        Increasing numbers of top genes.
    n_perturb : int
        Perturbations per sample.
    std : float
        Noise standard deviation (model input units).
    seeds : (n,) uint32
        Per-sample seeds (draw order in the module docstring).

    Returns
    -------
    pgi, pgu : (n, nk) float64
        Noise on the top-k genes (PGI) or on all the others (PGU).
    """
    n = X.shape[0]
    G = W.shape[0]
    h = W.shape[1]
    nk = ks.shape[0]
    pgi = np.zeros((n, nk))
    pgu = np.zeros((n, nk))
    kmax = ks[nk - 1] if nk > 0 else 0
    pt = transposed_params(layers, params)
    for i in prange(n):
        acts = np.empty(n_acts)
        z0 = np.empty(h)
        zall = np.empty(h)
        ztop = np.empty(h)
        z = np.empty(h)
        delta = np.empty(G)
        x = X[i]
        t = targets[i]
        _first_layer(x, W, b, z0)
        f0 = head_value(layers, pt, z0, acts, t, mode)
        np.random.seed(seeds[i])
        for _ in range(n_perturb):
            _draw_noise(delta, std)
            for k in range(h):
                zall[k] = 0.0
                ztop[k] = 0.0
            for j in range(G):
                dv = delta[j]
                for k in range(h):
                    zall[k] += dv * W[j, k]
            p = 0
            for q in range(nk):
                while p < ks[q] and p < kmax:
                    j = top[i, p]
                    dv = delta[j]
                    for k in range(h):
                        ztop[k] += dv * W[j, k]
                    p += 1
                for k in range(h):
                    z[k] = z0[k] + ztop[k]
                pgi[i, q] += abs(head_value(layers, pt, z, acts, t, mode) - f0)
                for k in range(h):
                    z[k] = z0[k] + (zall[k] - ztop[k])
                pgu[i, q] += abs(head_value(layers, pt, z, acts, t, mode) - f0)
        if n_perturb > 0:
            for q in range(nk):
                pgi[i, q] /= n_perturb
                pgu[i, q] /= n_perturb
    return pgi, pgu
