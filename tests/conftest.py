"""Shared fixtures: small cohorts, random models, a CLI runner."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from gexplain.cohort import Cohort


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


def make_cohort(
    n: int = 12, g: int = 7, n_classes: int = 3, seed: int = 0, split: bool = True
) -> Cohort:
    """A small labelled cohort with a stratified-looking split."""
    r = np.random.default_rng(seed)
    x = r.gamma(2.0, 3.0, size=(n, g)).astype(np.float32)
    samples = {
        "sample_id": [f"S{i:03d}" for i in range(n)],
        "label": [f"C{i % n_classes}" for i in range(n)],
    }
    if split:
        samples["split"] = ["train" if i % 5 < 3 else "test" for i in range(n)]
    genes = pl.DataFrame(
        {"gene_id": [f"ENSG{j:05d}" for j in range(g)], "gene_name": [f"GENE{j}" for j in range(g)]}
    )
    return Cohort(x, samples, genes, {"units": "counts"})


@pytest.fixture
def small_cohort() -> Cohort:
    return make_cohort()


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()
