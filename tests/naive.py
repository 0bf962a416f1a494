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
