"""Slow, obviously correct twins of the Numba kernels (stumpy style).

Each kernel in ``kernels/`` has a reference here written with plain numpy
loops; tests compare the two on random inputs of awkward sizes. Sections are
kept per area.
"""

from __future__ import annotations

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
