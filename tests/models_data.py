"""Small labelled cohorts for the model tests (separable classes, correlated gene blocks)."""

from __future__ import annotations

import numpy as np
import polars as pl

from gexplain.cohort import Cohort


def separable_cohort(
    n: int = 240, g: int = 48, n_classes: int = 4, seed: int = 0, shift: float = 3.0
) -> Cohort:
    """Counts-like values; class k raises genes 6k..6k+5; later genes in blocks of 6 share a factor.

    Rows with ``i % 5 < 3`` are in the train split, the others in test.
    """
    r = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    x = r.gamma(2.0, 1.0, size=(n, g))
    for k in range(n_classes):
        x[y == k, 6 * k : 6 * k + 6] += shift
    for b in range(6 * n_classes, g, 6):
        x[:, b : b + 6] += 2.0 * r.gamma(2.0, 1.0, size=(n, 1))
    samples = pl.DataFrame(
        {
            "sample_id": [f"S{i:04d}" for i in range(n)],
            "label": [f"class{k}" for k in y],
            "split": ["train" if i % 5 < 3 else "test" for i in range(n)],
        }
    )
    genes = [f"ENSG{j:05d}" for j in range(g)]
    return Cohort(x.astype(np.float32), samples, genes, {"units": "counts"})
