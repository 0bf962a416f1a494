"""Slow, obviously correct twins of the Numba kernels (stumpy style).

Each kernel in ``kernels/`` has a reference here written with plain numpy
loops; tests compare the two on random inputs of awkward sizes. Sections are
kept per area.
"""

from __future__ import annotations

import math

import numpy as np

# ----------------------------------------------------------------------------- head


def head_forward(layers: list[tuple], z: np.ndarray) -> np.ndarray:
    """Reference head: ``layers`` is a list of ("affine", M, c) / ("relu",) / ... tuples."""
    x = np.asarray(z, dtype=np.float64)
    for layer in layers:
        kind = layer[0]
        if kind == "affine":
            x = layer[1] @ x + layer[2]
        elif kind == "scale":
            x = layer[1] * x + layer[2]
        elif kind == "relu":
            x = np.maximum(x, 0.0)
        elif kind == "leaky_relu":
            x = np.where(x > 0, x, layer[1] * x)
        elif kind == "sigmoid":
            x = 1.0 / (1.0 + np.exp(-x))
        elif kind == "tanh":
            x = np.tanh(x)
        else:
            raise ValueError(kind)
    return x


# ----------------------------------------------------------------------------- simulate
# Plain-Python twins of kernels/simulate.py. They follow the published
# algorithms step by step (Hörmann's BTRD with math.lgamma/math.exp, Marsaglia &
# Tsang's gamma and ziggurat, conditional binomials) and read the same
# counter-based random stream, so the kernels must return the same numbers.

_MASK64 = (1 << 64) - 1
_GOLDEN64 = 0x9E3779B97F4A7C15


def splitmix_output(key: int, ctr: int) -> int:
    """SplitMix64 output number ``ctr + 1`` of the stream seeded with ``key``."""
    z = (int(key) + (int(ctr) + 1) * _GOLDEN64) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def uniform01(key: int, ctr: int) -> float:
    """Uniform in (0, 1) from the top 53 bits of output ``ctr``."""
    return ((splitmix_output(key, ctr) >> 11) + 0.5) / 2.0**53


def _log_binom_ratio(n: int, k: int, m: int, p: float) -> float:
    """log f(k) - log f(m) for Binomial(n, p), with math.lgamma."""
    lf = lambda j: math.lgamma(j + 1.0)  # noqa: E731
    return lf(m) + lf(n - m) - lf(k) - lf(n - k) + (k - m) * math.log(p / (1.0 - p))


def binomial(n: int, p: float, key: int, slot: int) -> int:
    """Binomial(n, p) using the counters of ``slot`` (inversion for n p' < 10, else BTRD)."""
    if p >= 1.0:
        return n
    flip = p > 0.5
    pp = 1.0 - p if flip else p
    base = int(slot) << 16
    if n <= 0 or pp <= 0.0:
        x = 0
    elif n * pp < 10.0:  # inversion: sequential search from 0
        q = 1.0 - pp
        qn = math.exp(n * math.log1p(-pp))
        r = pp / q
        g = r * (n + 1)
        ctr = base + 2
        while True:
            u = uniform01(key, ctr)
            ctr += 1
            x, px = 0, qn
            while u > px:
                u -= px
                x += 1
                if x > n:
                    break
                px *= g / x - r
            if x <= n:
                break
    else:  # BTRD (Hörmann 1993), one iteration per pair of uniforms
        q = 1.0 - pp
        spq = math.sqrt(float(n) * pp * q)
        b = 1.15 + 2.53 * spq
        a = -0.0873 + 0.0248 * b + 0.01 * pp
        c = float(n) * pp + 0.5
        vr = 0.92 - 4.2 / b
        alpha = (2.83 + 5.1 / b) * spq
        m = math.floor((n + 1) * pp)
        ctr = base
        while True:
            v, w = uniform01(key, ctr), uniform01(key, ctr + 1)
            ctr += 2
            if v <= 0.86 * vr:  # quick acceptance; U = v/vr - 0.43 is drawn from w
                u = 0.86 * w - 0.43
                x = math.floor((2.0 * a / (0.5 - abs(u)) + b) * u + c)
                break
            if v >= vr:
                u = w - 0.5
            else:
                u = v / vr - 0.93
                u = math.copysign(0.5, u) - u
                v = w * vr
            us = 0.5 - abs(u)
            k = math.floor((2.0 * a / us + b) * u + c)
            if k < 0 or k > n:
                continue
            v = v * alpha / (a / (us * us) + b)
            if v <= math.exp(_log_binom_ratio(n, k, m, pp)):
                x = k
                break
    return n - x if flip else x


def normal(key: int, ctr: int) -> tuple[float, int]:
    """Ziggurat standard normal from counter ``ctr``: (z, next counter)."""
    from gexplain.kernels.simulate import _ZIG_F, _ZIG_K, _ZIG_R, _ZIG_W

    while True:
        r = splitmix_output(key, ctr)
        ctr += 1
        i = r & 0xFF
        neg = (r >> 8) & 1
        rabs = r >> 12
        x = rabs * float(_ZIG_W[i])
        if rabs < int(_ZIG_K[i]):
            return (-x if neg else x), ctr
        if i == 0:
            while True:
                xx = -math.log(uniform01(key, ctr)) / _ZIG_R
                yy = -math.log(uniform01(key, ctr + 1))
                ctr += 2
                if yy + yy > xx * xx:
                    break
            return (-(_ZIG_R + xx) if neg else _ZIG_R + xx), ctr
        u = uniform01(key, ctr)
        ctr += 1
        if _ZIG_F[i] + u * (_ZIG_F[i - 1] - _ZIG_F[i]) < math.exp(-0.5 * x * x):
            return (-x if neg else x), ctr


def gamma(shape: float, key: int, slot: int) -> float:
    """Gamma(shape, 1) by Marsaglia & Tsang using the counters of ``slot``."""
    base = int(slot) << 16
    a = shape + 1.0 if shape < 1.0 else shape
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    ctr = base
    while True:
        z, ctr = normal(key, ctr)
        v = 1.0 + c * z
        if v <= 0.0:
            continue
        v = v**3
        u = uniform01(key, ctr)
        ctr += 1
        if u < 1.0 - 0.0331 * z**4 or math.log(u) < 0.5 * z * z + d * (1.0 - v + math.log(v)):
            g = d * v
            break
    if shape < 1.0:
        g *= uniform01(key, base + (1 << 16) - 1) ** (1.0 / shape)
    return g


def simulate_samples(
    keys: np.ndarray,
    classes: np.ndarray,
    reads: np.ndarray,
    divisors: np.ndarray,
    alpha: np.ndarray,
    path_ptr: np.ndarray,
    path_genes: np.ndarray,
    path_weights: np.ndarray,
    n_genes: int,
) -> np.ndarray:
    """The LDA sampler, sample by sample, pathway by pathway.

    Slots as in the kernel: gamma of pathway ``p`` is slot ``p``; node ``k`` of
    the binary pathway tree (heap order, ``T`` leaves) is slot ``P + k``; member
    ``j`` of the pathway of size rank ``r`` is slot ``P + T + start_j + r``
    where ``start_j`` counts the draws of positions before ``j``.
    """
    P = alpha.shape[1]
    T = 1
    while T < P:
        T *= 2
    sizes = np.diff(path_ptr)
    order = sorted(range(P), key=lambda q: (-sizes[q], q))
    rank = {q: r for r, q in enumerate(order)}
    start = [0]
    for j in range(int(sizes.max()) - 1):
        start.append(start[-1] + int((sizes >= j + 2).sum()))
    out = np.zeros((len(keys), n_genes), dtype=np.float32)
    for i, key in enumerate(int(k) for k in keys):
        a = alpha[classes[i]]
        weight = [gamma(float(a[q]), key, q) for q in range(P)] + [0.0] * (T - P)
        node_w = [0.0] * (2 * T)
        node_w[T:] = weight
        for k in range(T - 1, 0, -1):
            node_w[k] = node_w[2 * k] + node_w[2 * k + 1]
        node_n = [0] * (2 * T)
        node_n[1] = int(reads[i])
        for k in range(1, T):  # heap order = level by level
            prob = node_w[2 * k] / node_w[k] if node_w[k] > 0.0 else 0.0
            left = binomial(node_n[k], prob, key, P + k)
            node_n[2 * k], node_n[2 * k + 1] = left, node_n[k] - left
        counts = np.zeros(n_genes)
        for q in range(P):
            genes = path_genes[path_ptr[q] : path_ptr[q + 1]]
            w = path_weights[path_ptr[q] : path_ptr[q + 1]]
            left = node_n[T + q]
            for j in range(len(genes) - 1):
                cond = min(w[j] / np.cumsum(w[::-1])[::-1][j], 1.0)
                x = binomial(left, float(cond), key, P + T + start[j] + rank[q])
                counts[genes[j]] += x
                left -= x
            counts[genes[-1]] += left
        out[i] = counts / divisors[i]
    return out


# ----------------------------------------------------------------------------- explain (IG)


# ----------------------------------------------------------------------------- metrics


# ----------------------------------------------------------------------------- io
