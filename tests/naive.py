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


def random_head(
    rng: np.random.Generator,
    n_in: int,
    widths: list[int],
    acts: list[str | None],
    scale: float = 1.0,
    zero_weight: bool = False,
) -> tuple:
    """A random head program and its ``head_forward`` twin (layer tuples).

    One affine layer per width (weights ``scale · N(0, 1)``), each followed by
    its activation (``"bn"`` is an inference BatchNorm, ``None`` none). With
    ``zero_weight`` the first weight of every affine layer is 0 (kernels skip
    such terms).
    """
    from gexplain.head import HeadProgram

    b = HeadProgram.builder(n_in)
    ref: list[tuple] = []
    w_in = n_in
    for w, act in zip(widths, acts):
        M, c = rng.normal(size=(w, w_in)) * scale, rng.normal(size=w)
        if zero_weight:
            M[0, 0] = 0.0
        b.affine(M, c)
        ref.append(("affine", M, c))
        if act == "bn":
            a, s = rng.normal(size=w), rng.normal(size=w)
            b.scale(a, s)
            ref.append(("scale", a, s))
        elif act == "leaky_relu":
            b.leaky_relu(0.1)
            ref.append(("leaky_relu", 0.1))
        elif act is not None:
            getattr(b, act)()
            ref.append((act,))
        w_in = w
    return b.build(), ref


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


def head_jacobian(layers: list[tuple], z: np.ndarray) -> np.ndarray:
    """Jacobian ``∂logits/∂z`` (C × H) of :func:`head_forward` by the chain rule, layer by layer.

    ReLU/LeakyReLU use the derivative at ``x > 0`` (1) else 0 / alpha (as torch).
    """
    x = np.asarray(z, dtype=np.float64)
    J = np.eye(x.size)
    for layer in layers:
        kind = layer[0]
        if kind == "affine":
            J = layer[1] @ J
            x = layer[1] @ x + layer[2]
        elif kind == "scale":
            J = layer[1][:, None] * J
            x = layer[1] * x + layer[2]
        elif kind == "relu":
            J = (x > 0).astype(float)[:, None] * J
            x = np.maximum(x, 0.0)
        elif kind == "leaky_relu":
            J = np.where(x > 0, 1.0, layer[1])[:, None] * J
            x = np.where(x > 0, x, layer[1] * x)
        elif kind == "sigmoid":
            s = 1.0 / (1.0 + np.exp(-x))
            J = (s * (1 - s))[:, None] * J
            x = s
        elif kind == "tanh":
            t = np.tanh(x)
            J = (1 - t * t)[:, None] * J
            x = t
        else:
            raise ValueError(kind)
    return J


def output_grad(logits: np.ndarray, target: int, output: str) -> np.ndarray:
    """Gradient of the explained scalar w.r.t. the logits."""
    e = np.zeros(logits.size)
    e[target] = 1.0
    if output == "logit":
        return e
    p = np.exp(logits - logits.max())
    p /= p.sum()
    if output == "log_probability":
        return e - p
    return p[target] * (e - p)


def ig_quadrature(layers, Z, Zb, bidx, targets, output, alphas, weights):
    """``Σ_k w_k ∇_z f_t(z' + α_k (z − z'))`` with explicit Jacobians (n × T × H)."""
    n, h = Z.shape
    out = np.zeros((n, targets.shape[1], h))
    for r in range(n):
        zb = Zb[bidx[r]]
        for a, w in zip(alphas, weights):
            zk = zb + a * (Z[r] - zb)
            J = head_jacobian(layers, zk)
            logits = head_forward(layers, zk)
            for t, tg in enumerate(targets[r]):
                out[r, t] += w * (J.T @ output_grad(logits, tg, output))
    return out


def _pattern(layers, z):
    """Signs of every ReLU/LeakyReLU input (the activation pattern) at ``z``."""
    x = np.asarray(z, dtype=np.float64)
    signs = []
    for layer in layers:
        if layer[0] in ("relu", "leaky_relu"):
            signs.append(x > 0)
        x = head_forward([layer], x)
    return np.concatenate(signs) if signs else np.zeros(0, bool)


def ig_exact(layers, zb, z, target, output, grid=4001):
    """Exact ``∫₀¹ ∇_z f_t dα`` for one sample: breakpoints by grid scan + bisection,
    each smooth segment integrated with adaptive ``scipy.integrate.quad``."""
    from scipy.integrate import quad

    zb, z = np.asarray(zb, float), np.asarray(z, float)

    def pat(a):
        return _pattern(layers, zb + a * (z - zb))

    def find(lo, hi, plo, phi, out):
        if np.array_equal(plo, phi):
            return
        if hi - lo < 1e-15:
            out.append(hi)
            return
        mid = 0.5 * (lo + hi)
        pm = pat(mid)
        find(lo, mid, plo, pm, out)
        find(mid, hi, pm, phi, out)

    cuts = [0.0]
    a_grid = np.linspace(0.0, 1.0, grid)
    pats = [pat(a) for a in a_grid]
    for i in range(grid - 1):
        find(a_grid[i], a_grid[i + 1], pats[i], pats[i + 1], cuts)
    cuts.append(1.0)
    total = np.zeros(z.size)

    def grad(a):
        zk = zb + a * (z - zb)
        return head_jacobian(layers, zk).T @ output_grad(head_forward(layers, zk), target, output)

    import itertools
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quad's roundoff warnings at 1e-14
        for lo, hi in itertools.pairwise(cuts):
            if hi <= lo:
                continue
            for j in range(z.size):
                total[j] += quad(
                    lambda a, j=j: grad(a)[j], lo, hi, epsabs=1e-14, epsrel=1e-13, limit=200
                )[0]
    return total


def accumulate_attributions(P, x, xb, bidx, scale, out, out_rows, sums, t):
    """Reference of the pull-back accumulation from a precomputed ``P = Ḡ_t Wᵀ``."""
    for r in range(P.shape[0]):
        v = (x[r].astype(np.float64) - xb[bidx[r]].astype(np.float64)) * P[r] * scale
        out[out_rows[r]] = (out[out_rows[r]].astype(np.float64) + v).astype(out.dtype)
        sums[r, t] += v.sum()


def normalize_rows(out, rows):
    """Reference of per-row L2 normalisation."""
    for o in rows:
        v = out[o].astype(np.float64)
        n = np.sqrt((v * v).sum())
        if n > 0:
            out[o] = (v / n).astype(out.dtype)


# ----------------------------------------------------------------------------- metrics


# ----------------------------------------------------------------------------- io


_NUMBER_RE = None


def _naive_number(token: str) -> tuple[float, int]:
    """(float32 value, status) of one numeric field: 0 finite, 1 NaN/inf, 2 not a number."""
    import re

    global _NUMBER_RE
    if _NUMBER_RE is None:
        _NUMBER_RE = re.compile(r"^ *[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)? *$")
    if _NUMBER_RE.match(token):
        with np.errstate(over="ignore"):
            v = np.float64(float(token)).astype(np.float32)
        return v, 0 if np.isfinite(v) else 1
    t = token.strip(" ").lower()
    if t in ("", "na", "nan", "n/a", "null"):
        return np.float32(np.nan), 1
    sign = -1.0 if t.startswith("-") else 1.0
    if t.lstrip("+-") in ("inf", "infinity") and len(t) - len(t.lstrip("+-")) <= 1:
        return np.float32(sign * np.inf), 1
    return np.float32(0.0), 2


def parse_lines(data: bytes, delim: str, colmap: np.ndarray) -> dict:
    """Reference for ``kernels.parse.find_line_starts`` + ``parse_lines``.

    ``data`` is whole lines ending with ``\\n``. Returns per-line ``values``
    (rows of float32, NaN where not written), ``texts`` (list of text-field
    strings per line), ``err``, ``err_field``, ``nonfinite``, ``first_nonfinite``
    with the kernel's codes (0 ok, 1 too few, 2 too many, 3 bad number, 4 blank).
    """
    lines = data.split(b"\n")[:-1]
    n_out = int(colmap.max(initial=-1)) + 1
    n_fields = len(colmap)
    res: dict = {k: [] for k in ("values", "texts", "err", "err_field", "nonfinite", "first_nf")}
    for raw in lines:
        line = raw[:-1] if raw.endswith(b"\r") else raw
        values = np.full(n_out, np.nan, dtype=np.float32)
        texts: dict[int, str] = {}
        err, err_field, nonfinite, first_nf = 0, -1, 0, -1
        if not line:
            err = 4
        else:
            fields = line.decode("utf-8", errors="replace").split(delim)
            for f, tok in enumerate(fields):
                if f >= n_fields:
                    err, err_field = 2, f
                    break
                m = colmap[f]
                if m >= 0:
                    v, st = _naive_number(tok)
                    if st == 2:
                        err, err_field = 3, f
                        break
                    if st == 1:
                        if nonfinite == 0:
                            first_nf = f
                        nonfinite += 1
                    values[m] = v
                elif m <= -2:
                    texts[-2 - m] = tok
            if err == 0 and len(fields) < n_fields:
                err, err_field = 1, len(fields)
        res["values"].append(values)
        res["texts"].append(texts)
        res["err"].append(err)
        res["err_field"].append(err_field)
        res["nonfinite"].append(nonfinite)
        res["first_nf"].append(first_nf)
    return res


def read_matrix_tsv(path, delim: str = "\t") -> tuple[list[str], list[str], np.ndarray]:
    """Reference reader of a genes × samples text matrix: (sample ids, gene ids, genes × samples)."""
    import csv

    with open(path, newline="") as f:
        rows = list(csv.reader(f, delimiter=delim))
    samples = rows[0][1:]
    genes = [r[0] for r in rows[1:]]
    values = np.array(
        [[np.nan if v in ("NA", "") else float(v) for v in r[1:]] for r in rows[1:]],
        dtype=np.float64,
    )
    return samples, genes, values.astype(np.float32)


def count_byte(buf: np.ndarray, n: int, byte: int) -> int:
    """Reference for ``kernels.parse.count_byte``."""
    return bytes(buf[:n]).count(bytes([byte]))


# ----------------------------------------------------------------------------- models


def correlation_graph_dense(x: np.ndarray, threshold: float) -> np.ndarray:
    """Dense G × G reference: Pearson correlation, diagonal removed, entries ≤ threshold zeroed.

    Constant genes have no edges (their correlation is undefined).
    """
    x = np.asarray(x, dtype=np.float64)
    g = x.shape[1]
    a = np.zeros((g, g))
    const = x.std(axis=0) == 0
    for i in range(g):
        for j in range(g):
            if i == j or const[i] or const[j]:
                continue
            xi = x[:, i] - x[:, i].mean()
            xj = x[:, j] - x[:, j].mean()
            r = (xi @ xj) / np.sqrt((xi @ xi) * (xj @ xj))
            if r > threshold:
                a[i, j] = r
    return a


def diffusion_operator_dense(a: np.ndarray) -> np.ndarray:
    """Dense ``D^{-1/2} (A + I) D^{-1/2}`` with D the row sums of A + I."""
    a_hat = a + np.eye(a.shape[0])
    d = a_hat.sum(axis=1)
    out = np.empty_like(a_hat)
    for i in range(a.shape[0]):
        for j in range(a.shape[0]):
            out[i, j] = a_hat[i, j] / np.sqrt(d[i] * d[j])
    return out


def model_forward(x, mean, std, params, s=None, eps=1e-5):
    """Reference float64 forward of a gexplain LR/MLP from its raw weights (state_dict names)."""
    z = (np.asarray(x, dtype=np.float64) - mean) / std
    if s is not None:
        z = z @ s
    if "linear.weight" in params:
        return z @ params["linear.weight"].T.astype(np.float64) + params["linear.bias"]
    h = z @ params["fc1.weight"].T.astype(np.float64) + params["fc1.bias"]
    h = (h - params["bn.running_mean"]) / np.sqrt(params["bn.running_var"] + eps)
    h = h * params["bn.weight"] + params["bn.bias"]
    h = np.maximum(h, 0.0)
    return h @ params["fc2.weight"].T.astype(np.float64) + params["fc2.bias"]
