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


# ----------------------------------------------------------------------------- metrics


# ----------------------------------------------------------------------------- io


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
