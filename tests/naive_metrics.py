"""Slow, obviously correct twins of the metric kernels (plain Python loops)."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np


def topk(v: np.ndarray, k: int) -> list[int]:
    """Indices of the k largest entries, descending; ties by lower index first."""
    return sorted(range(len(v)), key=lambda j: (-v[j], j))[: min(k, len(v))]


def average_ranks_desc(v: np.ndarray) -> np.ndarray:
    out = np.empty(len(v))
    for j in range(len(v)):
        greater = sum(1 for u in v if u > v[j])
        equal = sum(1 for u in v if u == v[j])
        out[j] = greater + (equal + 1) / 2
    return out


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, float) - np.mean(a)
    b = np.asarray(b, float) - np.mean(b)
    den = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else math.nan


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return pearson(average_ranks_desc(a), average_ranks_desc(b))


def pair_counts(a: np.ndarray, b: np.ndarray) -> tuple[int, int, int, int, int]:
    """(concordant, discordant, tied in a only, tied in b only, tied in both) over all pairs."""
    c = d = ta = tb = tab = 0
    for i, j in combinations(range(len(a)), 2):
        sa = np.sign(a[i] - a[j])
        sb = np.sign(b[i] - b[j])
        if sa == 0 and sb == 0:
            tab += 1
        elif sa == 0:
            ta += 1
        elif sb == 0:
            tb += 1
        elif sa == sb:
            c += 1
        else:
            d += 1
    return c, d, ta, tb, tab


def kendall_tau_b(a: np.ndarray, b: np.ndarray) -> float:
    c, d, ta, tb, _ = pair_counts(a, b)
    den = math.sqrt((c + d + ta) * (c + d + tb))
    return (c - d) / den if den > 0 else math.nan


def same_order_fraction(a: np.ndarray, b: np.ndarray) -> float:
    c, d, ta, tb, tab = pair_counts(a, b)
    total = c + d + ta + tb + tab
    return (c + tab) / total if total else math.nan


def average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    """Σ over distinct thresholds (descending) of (ΔRecall) × Precision."""
    npos = int(np.sum(truth))
    if npos == 0:
        return math.nan
    ap = 0.0
    prev = 0.0
    for thr in sorted(set(scores.tolist()), reverse=True):
        sel = scores >= thr
        tp = int(np.sum(truth & sel))
        recall = tp / npos
        ap += (recall - prev) * tp / int(sel.sum())
        prev = recall
    return ap


def keep_remove_logits(forward, x: np.ndarray, base: np.ndarray, genes, keep: bool) -> np.ndarray:
    """Full forward on inputs where the genes outside (keep) / inside (remove) the set are the baseline."""
    xs = np.array(x, dtype=np.float64)
    mask = np.zeros(x.shape[1], dtype=bool)
    mask[list(genes)] = True
    if keep:
        xs[:, ~mask] = base[~mask]
    else:
        xs[:, mask] = base[mask]
    return forward(xs)
