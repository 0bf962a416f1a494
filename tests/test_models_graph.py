"""The diffusion graph: blockwise sparse correlation against a dense loop reference."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
from naive import correlation_graph_dense, diffusion_operator_dense

from gexplain.errors import AlignmentError
from gexplain.models import (
    correlation_graph,
    diffusion_operator,
    graph_info,
    graph_sha256,
    read_graph,
    write_graph,
)


def _correlated(rng, n, g, n_factors=3):
    f = rng.normal(size=(n, n_factors))
    load = rng.normal(size=(n_factors, g)) * (rng.random(g) < 0.7)
    return (f @ load + 0.6 * rng.normal(size=(n, g))).astype(np.float32)


@pytest.mark.parametrize(("n", "g", "block"), [(30, 17, 4), (9, 23, 1), (50, 12, 12), (5, 7, 100)])
def test_blockwise_graph_equals_dense_reference(rng, n, g, block):
    x = _correlated(rng, n, g)
    x[:, 3] = 2.5  # a constant gene: no edges
    ref = correlation_graph_dense(x, 0.5)
    a = correlation_graph(x, 0.5, block_size=block)
    assert isinstance(a, sp.csr_matrix) and a.shape == (g, g)
    dense = a.toarray()
    np.testing.assert_array_equal(dense != 0, ref != 0)
    np.testing.assert_allclose(dense, ref, rtol=0, atol=1e-12)
    assert ref.any(), "the test data should have edges"
    assert not dense[3].any() and not dense[:, 3].any()
    assert np.all(np.diag(dense) == 0)
    np.testing.assert_array_equal(dense, dense.T)


def test_threshold_is_strict_and_other_thresholds(rng):
    x = _correlated(rng, 40, 15)
    for thr in (-0.2, 0.0, 0.3, 0.8):
        np.testing.assert_allclose(
            correlation_graph(x, thr, block_size=4).toarray(),
            correlation_graph_dense(x, thr),
            atol=1e-12,
        )
    # perfectly correlated pair: corr = 1 is kept at threshold 0.5, dropped at threshold 1
    y = np.stack([np.arange(6.0), 2 * np.arange(6.0) + 1], axis=1)
    assert correlation_graph(y, 0.5).nnz == 2
    assert correlation_graph(y, 1.0 + 1e-9).nnz == 0


def test_one_gene_and_too_few_samples():
    a = correlation_graph(np.arange(5.0)[:, None])
    assert a.shape == (1, 1) and a.nnz == 0
    np.testing.assert_array_equal(diffusion_operator(a).toarray(), [[1.0]])
    with pytest.raises(ValueError, match="at least 2"):
        correlation_graph(np.ones((1, 3)))


def test_diffusion_operator_matches_dense(rng):
    x = _correlated(rng, 25, 11)
    a = correlation_graph(x, 0.3, block_size=3)
    s = diffusion_operator(a)
    np.testing.assert_allclose(
        s.toarray(), diffusion_operator_dense(correlation_graph_dense(x, 0.3)), atol=1e-14
    )
    # hand-computed: path graph 0-1 with weight 1, isolated 2
    s2 = diffusion_operator(sp.csr_matrix(np.array([[0, 1.0, 0], [1.0, 0, 0], [0, 0, 0]])))
    np.testing.assert_allclose(
        s2.toarray(), [[0.5, 0.5, 0], [0.5, 0.5, 0], [0, 0, 1.0]], atol=1e-15
    )


def test_graph_file_roundtrip_and_realignment(tmp_path, rng):
    x = _correlated(rng, 30, 9)
    ids = [f"g{j}" for j in range(9)]
    a = correlation_graph(x, 0.3)
    s = diffusion_operator(a)
    digest = write_graph(tmp_path / "graph.parquet", s, ids, adjacency=a, params={"threshold": 0.3})
    assert digest == graph_sha256(s)
    info = graph_info(tmp_path / "graph.parquet")
    assert info["threshold"] == 0.3 and info["sha256"] == digest and info["n_genes"] == 9
    t = pl.read_parquet(tmp_path / "graph.parquet")
    assert t.columns == ["gene_i", "gene_j", "weight", "correlation"]
    assert t.height == s.nnz
    diag = t.filter(pl.col("gene_i") == pl.col("gene_j"))
    assert diag.height == 9 and (diag["correlation"] == 0).all()
    s_back, ids_back = read_graph(tmp_path / "graph.parquet", ids)
    assert ids_back == ids
    assert graph_sha256(s_back) == digest
    # another gene order: S is permuted accordingly
    perm = rng.permutation(9)
    s_perm, _ = read_graph(tmp_path / "graph.parquet", [ids[k] for k in perm])
    np.testing.assert_array_equal(s_perm.toarray(), s.toarray()[np.ix_(perm, perm)])
    with pytest.raises(AlignmentError, match="not among"):
        read_graph(tmp_path / "graph.parquet", ids[:-1])
