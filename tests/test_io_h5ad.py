"""AnnData h5ad: dense/sparse X, layers, raw, round trip with export, CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import make_cohort

from gexplain.cli import main
from gexplain.cohort import Cohort
from gexplain.errors import InputError
from gexplain.io import read_h5ad, write_h5ad

ad = pytest.importorskip("anndata")


def _adata(rng, fmt="dense"):
    x = rng.poisson(3.0, size=(7, 5)).astype(np.float64)
    x[0, :2] = 0
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical(["T", "B", "T", "NK", "B", "T", "NK"]),
            "depth": np.arange(7) * 10,
        },
        index=[f"cell{i}" for i in range(7)],
    )
    var = pd.DataFrame({"symbol": [f"S{j}" for j in range(5)]}, index=[f"G{j}" for j in range(5)])
    X = {"dense": x, "csr": sp.csr_matrix(x), "csc": sp.csc_matrix(x)}[fmt]
    a = ad.AnnData(X=X, obs=obs, var=var)
    a.layers["counts"] = sp.csr_matrix(x * 2)
    raw = ad.AnnData(X=x[:, :3] + 100, obs=obs, var=var.iloc[:3])
    a.raw = raw
    return a, x


@pytest.mark.parametrize("fmt", ["dense", "csr", "csc"])
def test_x_dense_and_sparse(tmp_path, rng, fmt):
    a, x = _adata(rng, fmt)
    f = tmp_path / "a.h5ad"
    a.write_h5ad(f)
    c = read_h5ad(f, label="cell_type", chunk=3)
    np.testing.assert_array_equal(c.expression, x.astype(np.float32))
    assert c.sample_ids == [f"cell{i}" for i in range(7)]
    assert c.gene_ids == [f"G{j}" for j in range(5)]
    assert c.labels.to_list() == ["T", "B", "T", "NK", "B", "T", "NK"]
    assert c.samples["depth"].to_list() == list(range(0, 70, 10))
    assert c.genes["symbol"].to_list() == [f"S{j}" for j in range(5)]
    assert c.meta["units"] == "unknown"


def test_layer_and_raw(tmp_path, rng):
    a, x = _adata(rng)
    f = tmp_path / "a.h5ad"
    a.write_h5ad(f)
    c = read_h5ad(f, layer="counts", units="counts")
    np.testing.assert_array_equal(c.expression, 2 * x)
    assert c.meta["units"] == "counts"
    r = read_h5ad(f, raw=True)
    np.testing.assert_array_equal(r.expression, x[:, :3] + 100)
    assert r.gene_ids == ["G0", "G1", "G2"]
    with pytest.raises(InputError, match=r"no layer 'spliced'; layers are \['counts'\]"):
        read_h5ad(f, layer="spliced")
    with pytest.raises(InputError, match="no obs column 'batch'"):
        read_h5ad(f, label="batch")
    with pytest.raises(ValueError, match="not both"):
        read_h5ad(f, layer="counts", raw=True)


def test_round_trip_keeps_tables_and_meta(tmp_path):
    c = make_cohort(n=9, g=4)
    c.meta["preprocessing"] = [{"step": "log2p1", "transforms_values": True, "by": "source"}]
    c.meta["units"] = "log2(x+1)"
    f = write_h5ad(c, tmp_path / "c.h5ad")
    with pytest.raises(InputError, match="exists"):
        write_h5ad(c, f)
    back = read_h5ad(f, label="label", out=tmp_path / "back")
    np.testing.assert_array_equal(back.expression, c.expression)
    assert back.sample_ids == c.sample_ids and back.gene_ids == c.gene_ids
    assert back.samples["split"].to_list() == c.samples["split"].to_list()
    assert back.genes["gene_name"].to_list() == c.genes["gene_name"].to_list()
    assert back.meta["units"] == "log2(x+1)" and back.value_transforms == ["log2p1"]
    assert [p["source"] for p in back.meta["provenance"]] == ["h5ad"]
    # the AnnData itself: obs/var indices, X float32, meta as JSON in uns
    a = ad.read_h5ad(f)
    assert a.obs_names.tolist() == c.sample_ids and a.X.dtype == np.float32
    assert '"log2p1"' in a.uns["gexplain_meta"]


def test_nan_in_x(tmp_path, rng):
    a, x = _adata(rng)
    a.X[2, 3] = np.nan
    f = tmp_path / "a.h5ad"
    a.write_h5ad(f)
    with pytest.raises(InputError, match=r"non-finite value in X at sample 'cell2', gene 'G3'"):
        read_h5ad(f, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    c = read_h5ad(f, nan="drop-genes")
    assert c.gene_ids == ["G0", "G1", "G2", "G4"]
    np.testing.assert_array_equal(c.expression, x[:, [0, 1, 2, 4]])


def test_cli_import_and_export_h5ad(cli, tmp_path, rng):
    a, x = _adata(rng, "csr")
    f = tmp_path / "a.h5ad"
    a.write_h5ad(f)
    r = cli.invoke(
        main,
        [
            "import",
            "h5ad",
            str(f),
            "--label",
            "cell_type",
            "--layer",
            "counts",
            "--out",
            str(tmp_path / "c"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "7 samples × 5 genes, 3 classes" in r.output
    np.testing.assert_array_equal(Cohort.load(tmp_path / "c").expression, 2 * x)
    r = cli.invoke(main, ["export", "h5ad", str(tmp_path / "c"), "--out", str(tmp_path / "e.h5ad")])
    assert r.exit_code == 0, r.output
    np.testing.assert_array_equal(ad.read_h5ad(tmp_path / "e.h5ad").X, 2 * x)
    r = cli.invoke(main, ["import", "h5ad", str(f), "--layer", "counts", "--raw", "--out", "z"])
    assert r.exit_code == 2 and "not both" in r.output
