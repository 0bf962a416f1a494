"""Per-class aggregation of attributions into one global gene ranking per class.

The paper L2-normalises each sample's attribution, then aggregates the
samples of a class by the mean attribution, the sum of per-sample ranks, or
the median per-sample rank. A *score* is returned per (class, gene) with the
convention "higher = more important" (rank aggregates are negated), so every
caller orders genes the same way: descending score for PGI, ascending for PGU.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import InputError

AGGREGATIONS = ("mean", "rank-sum", "rank-median")


def l2_normalize(values: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (all-zero rows stay zero), float64."""
    v = np.asarray(values, dtype=np.float64)
    norm = np.sqrt(np.einsum("ij,ij->i", v, v))
    norm[norm == 0] = 1.0
    return v / norm[:, None]


def descending_ranks(values: np.ndarray) -> np.ndarray:
    """Per-row rank of each entry, 1 = largest; ties get the mean of their ranks (float64)."""
    from ..kernels.rank import average_ranks_desc

    v = np.ascontiguousarray(values, dtype=np.float64)
    if v.ndim != 2:
        raise InputError(f"expected a 2-D array, got shape {v.shape}")
    return average_ranks_desc(v)


def class_scores(
    values: np.ndarray,
    classes: Sequence[str] | np.ndarray,
    how: str = "mean",
    *,
    normalize: bool = True,
    class_order: Sequence[str] | None = None,
) -> tuple[list[str], np.ndarray]:
    """One global score per (class, gene) from per-sample attributions.

    Parameters
    ----------
    values
        ``(n_samples, n_genes)`` signed attributions.
    classes
        The class of each row (the explained target).
    how
        ``mean`` (mean normalised attribution), ``rank-sum`` (minus the sum of
        per-sample descending ranks) or ``rank-median`` (minus their median).
    normalize
        L2-normalise each row first (the paper's).
    class_order
        Classes to return, in order (default: sorted unique ``classes``).

    Returns
    -------
    names, scores
        Class names and a ``(n_classes, n_genes)`` float64 array; higher is more
        important. A class without rows gets a row of NaN.

    Examples
    --------
    >>> import numpy as np
    >>> names, s = class_scores(np.array([[3.0, 1, 2], [1, 3, 2]]), ["a", "a"], "rank-sum")
    >>> names, s.tolist()
    (['a'], [[-4.0, -4.0, -4.0]])
    """
    if how not in AGGREGATIONS:
        raise InputError(f"aggregation must be one of {AGGREGATIONS}, got {how!r}")
    v = np.asarray(values, dtype=np.float64)
    cls = np.asarray(classes).astype(str)
    if v.ndim != 2 or cls.shape[0] != v.shape[0]:
        raise InputError(
            f"values {v.shape} and classes ({cls.shape[0]},) do not describe the same rows"
        )
    names = sorted(set(cls.tolist())) if class_order is None else [str(c) for c in class_order]
    if how == "mean":
        per_row = l2_normalize(v) if normalize else v
    else:
        # ranks are invariant to a positive per-row scale: normalising changes nothing
        per_row = -descending_ranks(v)
    out = np.full((len(names), v.shape[1]), np.nan)
    for i, name in enumerate(names):
        rows = np.flatnonzero(cls == name)
        if rows.size == 0:
            continue
        block = per_row[rows]
        out[i] = (
            np.median(block, axis=0)
            if how == "rank-median"
            else (block.mean(axis=0) if how == "mean" else block.sum(axis=0))
        )
    return names, out
