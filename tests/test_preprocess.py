from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from conftest import make_cohort

import gexplain.preprocess as pp
from gexplain.cli import main
from gexplain.cohort import Cohort
from gexplain.errors import InputError


def test_log2p1_values_and_record():
    c = Cohort(np.array([[0.0, 1.0, 3.0, 1e-8]]), meta={"units": "counts"})
    out = pp.log2p1(c)
    np.testing.assert_allclose(out.expression, [[0.0, 1.0, 2.0, 1e-8 / np.log(2)]], rtol=1e-6)
    assert out.value_transforms == ["log2p1"]
    assert out.meta["units"] == "log2(counts+1)"
    assert c.value_transforms == []  # pure: the input is untouched
    with pytest.raises(InputError, match="already transformed by 'log2p1'"):
        pp.log2p1(out)
    with pytest.raises(InputError, match="needs values ≥ -1"):
        pp.log2p1(Cohort(np.array([[0.0, -3.0]])))


def test_cpm_and_tpm():
    x = np.array([[1.0, 3.0], [5.0, 5.0]])
    c = pp.cpm(Cohort(x))
    np.testing.assert_allclose(c.expression, [[250_000, 750_000], [500_000, 500_000]])
    genes = pl.DataFrame({"gene_id": ["a", "b"], "length": [1000.0, 3000.0]})
    t = pp.tpm(Cohort(x, genes=genes))
    # rates [1e-3, 1e-3] and [5e-3, 1.667e-3]
    np.testing.assert_allclose(t.expression[0], [500_000, 500_000], rtol=1e-6)
    np.testing.assert_allclose(t.expression[1], [750_000, 250_000], rtol=1e-6)
    with pytest.raises(InputError, match="no 'length' column"):
        pp.tpm(Cohort(x))


def test_filter_genes_is_the_papers_filter():
    x = np.array([[0.0, 1.0, np.nan, -1.0], [0.0, 2.0, 1.0, 0.0]])
    out = pp.filter_genes(Cohort(x, genes=["zero", "ok", "nan", "neg"]))
    assert out.gene_ids == ["ok"]
    step = out.meta["preprocessing"][-1]
    assert step["n_before"] == 4 and step["n_after"] == 1
    assert out.value_transforms == []


def test_split_is_stratified_and_seeded():
    c = make_cohort(n=50, g=3, n_classes=2, split=False)
    a = pp.split(c, test_size=0.4, seed=1)
    b = pp.split(c, test_size=0.4, seed=1)
    assert a.samples["split"].to_list() == b.samples["split"].to_list()
    counts = a.samples.group_by("label", "split").len().sort("label", "split")
    assert counts["len"].to_list() == [10, 15, 10, 15]
    other = pp.split(c, test_size=0.4, seed=2)
    assert other.samples["split"].to_list() != a.samples["split"].to_list()
    assert a.meta["preprocessing"][-1]["seed"] == 1


def test_zscore_uses_training_statistics_only():
    x = np.array([[1.0, 5.0], [3.0, 5.0], [100.0, 7.0]])
    c = Cohort(x, {"sample_id": ["a", "b", "c"], "split": ["train", "train", "test"]})
    mean, std = pp.zscore_stats(c)
    np.testing.assert_allclose(mean, [2.0, 5.0])
    np.testing.assert_allclose(std, [1.0, 1.0])  # constant gene: std 1
    z = pp.zscore(c)
    np.testing.assert_allclose(z.expression, [[-1, 0], [1, 0], [98, 2]])
    assert z.genes["zscore_mean"].to_list() == [2.0, 5.0]


def test_filter_variance_on_training_split():
    x = np.array([[0.0, 0.0, 1.0], [0.0, 2.0, 3.0], [9.0, 4.0, 1.0]])
    c = Cohort(
        x, {"sample_id": list("abc"), "split": ["train", "train", "test"]}, genes=list("xyz")
    )
    assert pp.filter_variance(c, min_variance=0.5).gene_ids == ["y", "z"]
    assert pp.filter_variance(c, top_n=1).gene_ids == ["y"]


def test_column_stats_chunked_equals_numpy(monkeypatch):
    monkeypatch.setattr(pp, "_CHUNK_BYTES", 4 * 5 * 3)  # 3 rows per chunk
    r = np.random.default_rng(0)
    x = r.normal(size=(10, 5)) * 100 + 1000
    st = pp.column_stats(Cohort(x))
    x32 = x.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(st["mean"], x32.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(st["var"], x32.var(axis=0), rtol=1e-9)
    np.testing.assert_allclose(st["max"], x32.max(axis=0))


def test_cli_preprocess_pipeline(cli, tmp_path):
    c = make_cohort(n=30, g=6, n_classes=3, split=False)
    x = np.array(c.expression)
    x[:, 2] = 0.0  # a gene the paper's filter drops
    Cohort(x, c.samples, c.genes, c.meta).save(tmp_path / "raw")
    r = cli.invoke(
        main,
        [
            "preprocess",
            str(tmp_path / "raw"),
            "--log2",
            "--filter-genes",
            "--split",
            "0.4",
            "--seed",
            "3",
            "--out",
            str(tmp_path / "ready"),
            "--quiet",
        ],
    )
    assert r.exit_code == 0, r.output
    out = Cohort.load(tmp_path / "ready")
    assert out.n_genes == 5 and "ENSG00002" not in out.gene_ids
    assert out.value_transforms == ["log2p1"]
    assert [s["step"] for s in out.meta["preprocessing"]] == ["log2p1", "filter_genes", "split"]
    assert out.samples["split"].value_counts().sort("split")["count"].to_list() == [12, 18]
    np.testing.assert_allclose(
        out.expression[:, 0], np.log2(x[:, 0].astype(np.float64) + 1), rtol=1e-6
    )
