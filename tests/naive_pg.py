"""Slow, obviously correct twins of the prediction-gap kernels (full forward per step)."""

from __future__ import annotations

import numpy as np

from gexplain.explain._compiled import CompiledModel, output_values


def _f(model: CompiledModel, X: np.ndarray, targets: np.ndarray, output: str) -> np.ndarray:
    """The explained value from the model's full forward pass (onnxruntime, float64)."""
    return output_values(model.ort_logits(np.asarray(X, dtype=np.float64)), targets, output)


def deletion_curve(
    model: CompiledModel,
    x: np.ndarray,
    base: np.ndarray,
    order: np.ndarray,
    target: int,
    block: int,
    output: str = "probability",
) -> np.ndarray:
    """One curve: rebuild x⁽ⁱ⁾ with i blocks set to the baseline and run the whole model."""
    d = x.shape[0]
    n_blocks = d // block
    rows = []
    for i in range(n_blocks + 1):
        xi = np.array(x, dtype=np.float64)
        gone = order[: i * block]
        xi[gone] = base[gone]
        rows.append(xi)
    return _f(model, np.stack(rows), np.full(n_blocks + 1, target), output)


def prediction_gap(curve: np.ndarray, block: int, d: int) -> float:
    """(g/d) Σ_{i=1..N} max(0, f(x) − f(x⁽ⁱ⁾))."""
    return block / d * sum(max(0.0, curve[0] - c) for c in curve[1:])


def local_order(a: np.ndarray, descending: bool) -> np.ndarray:
    """Attribution order with ties by increasing gene index, by an explicit key sort."""
    keys = [(-v if descending else v, j) for j, v in enumerate(np.asarray(a, dtype=np.float64))]
    return np.array([j for _, j in sorted(keys)], dtype=np.int64)


def openxai_gaps(
    model: CompiledModel,
    x: np.ndarray,
    target: int,
    top: np.ndarray,
    ks: list[int],
    noise: np.ndarray,
    output: str = "probability",
) -> tuple[np.ndarray, np.ndarray]:
    """Mean |f(x̃) − f(x)| with the given noise rows (n_perturb, d) on top-k / the others."""
    d = x.shape[0]
    f0 = _f(model, x[None, :], np.array([target]), output)[0]
    pgi, pgu = [], []
    for k in ks:
        mask = np.zeros(d, dtype=bool)
        mask[top[:k]] = True
        xi = x[None, :] + noise * mask
        xu = x[None, :] + noise * ~mask
        t = np.full(noise.shape[0], target)
        pgi.append(np.abs(_f(model, xi, t, output) - f0).mean())
        pgu.append(np.abs(_f(model, xu, t, output) - f0).mean())
    return np.array(pgi), np.array(pgu)
