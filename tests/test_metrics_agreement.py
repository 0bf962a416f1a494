"""Ground-truth agreement: the paper's FA, biomarker recovery, OpenXAI's family, and their kernels."""

from __future__ import annotations

import naive_metrics as naive
import numba
import numpy as np
import pytest
import scipy.sparse as sp
from gexplain.kernels import topk as K

from gexplain.cohort import GroundTruth
from gexplain.errors import InputError
from gexplain.metrics import (
    biomarker_recovery,
    feature_agreement,
    linear_reference_attribution,
    openxai_agreement,
)
from gexplain.metrics._agreement import load_graph

GENES = ["g0", "g1", "g2", "g3", "g4"]


# ----------------------------------------------------------------------------- kernels


@pytest.mark.parametrize("shape", [(1, 1), (1, 6), (4, 1), (7, 9), (3, 40)])
def test_topk_and_correlation_kernels_match_naive(shape):
    r = np.random.default_rng(sum(shape))
    n, g = shape
    a = r.integers(0, 4, size=shape).astype(np.float64)  # many ties
    b = r.integers(0, 4, size=shape).astype(np.float64)
    ks = r.integers(0, g + 2, size=n)
    top = K.topk_rows(a, ks)
    for i in range(n):
        ref = naive.topk(a[i], ks[i])
        assert top[i, : len(ref)].tolist() == ref
        assert (top[i, len(ref) :] == -1).all()
    sp_ = K.spearman_rows(a, b)
    conc = K.concordance_rows(a, b)
    stats = K.rank_stats_rows(a, b)
    np.testing.assert_array_equal(stats[:, 0], sp_)
    np.testing.assert_array_equal(stats[:, 1:], conc)
    order, ranks = K.argsort_ranks_rows(a)
    np.testing.assert_array_equal(np.take_along_axis(a, order, axis=1), np.sort(a, axis=1))
    for i in range(n):
        np.testing.assert_array_equal(ranks[i], g + 1 - naive.average_ranks_desc(a[i]))
    np.testing.assert_array_equal(K.concordance_given_order_rows(a, b, order), conc)
    np.testing.assert_array_equal(K.pearson_rows(ranks, K.argsort_ranks_rows(b)[1]), sp_)
    truth = r.random(shape) < 0.4
    ap = K.average_precision_rows(a, truth)
    for i in range(n):
        np.testing.assert_allclose(sp_[i], naive.spearman(a[i], b[i]), equal_nan=True)
        np.testing.assert_allclose(conc[i, 0], naive.kendall_tau_b(a[i], b[i]), equal_nan=True)
        np.testing.assert_allclose(
            conc[i, 1], naive.same_order_fraction(a[i], b[i]), equal_nan=True
        )
        np.testing.assert_allclose(ap[i], naive.average_precision(a[i], truth[i]), equal_nan=True)


def _csr(seed: int, g: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m = sp.random(g, g, density=0.1, format="csr", random_state=seed)
    m.sort_indices()
    return m.indptr, m.indices, m.data


def test_diffuse_rows_is_the_sparse_product():
    r = np.random.default_rng(4)
    a = r.normal(size=(5, 70))
    a[:, :3] = 0.0
    indptr, indices, data = _csr(2, 70)
    S = sp.csr_matrix((data, indices, indptr), shape=(70, 70))
    np.testing.assert_allclose(
        K.diffuse_rows(a, indptr, indices, data), a @ S.toarray(), atol=1e-12
    )


def test_normal_rows_depend_on_the_row_seed_only():
    from gexplain.metrics._agreement import normal_rows

    seeds = np.array([5, 9, 11], dtype=np.uint32)
    full = normal_rows(seeds, 2000)
    np.testing.assert_array_equal(normal_rows(seeds[1:], 2000), full[1:])
    assert abs(full.mean()) < 0.05 and abs(full.std() - 1.0) < 0.05
    assert not np.array_equal(full[0], full[1])


def test_kernels_identical_on_one_and_two_threads():
    r = np.random.default_rng(3)
    a = r.normal(size=(9, 70))
    b = a + r.normal(size=a.shape)
    seeds = np.arange(9, dtype=np.uint32)
    ks = np.full(9, 7, dtype=np.int64)
    runs = []
    for t in (1, 2):
        numba.set_num_threads(t)
        runs.append(
            (
                K.topk_rows(a, ks),
                K.concordance_rows(a, b),
                K.spearman_rows(a, b),
                K.rank_stats_rows(a, b),
                K.random_subsets(seeds, ks, 70),
                K.diffuse_rows(a, *_csr(7, 70)),
                K.average_precision_rows(a, b > 0),
            )
        )
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    for x, y in zip(*runs):
        np.testing.assert_array_equal(x, y)


def test_random_subsets_are_uniform_and_distinct():
    seeds = np.arange(4000, dtype=np.uint32)
    sub = K.random_subsets(seeds, np.full(4000, 3, dtype=np.int64), 6)
    assert all(len(set(row)) == 3 for row in sub.tolist())
    freq = np.bincount(sub.ravel(), minlength=6) / sub.size
    np.testing.assert_allclose(freq, 1 / 6, atol=0.02)


def test_average_precision_matches_scikit_learn():
    from sklearn.metrics import average_precision_score

    r = np.random.default_rng(0)
    s = np.round(r.normal(size=(5, 50)), 1)  # ties
    t = r.random((5, 50)) < 0.3
    ap = K.average_precision_rows(s, t)
    for i in range(5):
        assert ap[i] == pytest.approx(average_precision_score(t[i], s[i]))


# ----------------------------------------------------------------------------- paper FA


def test_feature_agreement_hand_computed_with_ties():
    truth = GroundTruth.from_gene_sets({"a": ["g0", "g1"], "b": ["g4"]})
    v = np.array(
        [
            [3.0, 1.0, 2.0, 0.0, 0.0],  # a: top2 g0, g2 -> 1/2
            [2.0, 3.0, 1.0, 0.0, 0.0],  # a: top2 g1, g0 -> 1
            [1.0, 0.0, 0.0, 0.0, 1.0],  # b: top1 tie g0 = g4 -> lower index g0 -> 0
            [0.0, 0.0, 0.0, 0.0, 5.0],  # b: g4 -> 1
        ]
    )
    r = feature_agreement(v, ["a", "a", "b", "b"], truth, GENES, random_draws=0)
    assert r.score("FA", "local", cls="a") == 0.75
    assert r.score("FA", "local", cls="b") == 0.5
    assert r.score("FA", "local") == pytest.approx(0.625)
    # global a: counts g0 2, g1 1, g2 1; tie g1/g2 broken by mean normalised attribution
    # (g1: (1+3)/√14/2 > g2: (2+1)/√14/2) -> {g0, g1} -> 1
    assert r.score("FA", "global", cls="a") == 1.0
    # global b: counts g0 1, g4 1; mean normalised g4 (1/√2 + 1)/2 > g0 (1/√2)/2 -> g4 -> 1
    assert r.score("FA", "global", cls="b") == 1.0
    row = r.scores.filter(r.scores["class"] == "a", r.scores["variant"] == "local")
    assert row["k"].to_list() == [2] and row["n"].to_list() == [2]


def test_feature_agreement_uses_signed_attributions():
    truth = GroundTruth.from_gene_sets({"a": ["g0"]})
    v = np.array([[-9.0, 1.0, 0.0, 0.0, 0.0]])
    r = feature_agreement(v, ["a"], truth, GENES, random_draws=0)
    assert r.score("FA", "local") == 0.0


def test_diffused_feature_agreement_on_a_hand_graph():
    truth = GroundTruth.from_gene_sets({"a": ["g0"]})
    # g1 carries the attribution but is connected to g0 with a heavy weight
    s = sp.csr_matrix(
        np.array(
            [
                [0.5, 0.5, 0.0, 0.0, 0.0],
                [0.5, 0.4, 0.0, 0.0, 0.0],
                [0.0, 0.0, 1.0, 0.0, 0.0],
                [0.0, 0.0, 0.0, 1.0, 0.0],
                [0.0, 0.0, 0.0, 0.0, 1.0],
            ]
        )
    )
    v = np.array([[0.0, 1.0, 0.6, 0.0, 0.0]])  # v·S = [0.5, 0.4, 0.6, 0, 0]
    r = feature_agreement(v, ["a"], truth, GENES, graph=s, random_draws=0)
    assert r.score("FA", "local") == 0.0
    assert r.score("FA", "diffused-local") == 0.0  # g2 still wins 0.6 > 0.5
    v2 = np.array([[0.0, 1.0, 0.45, 0.0, 0.0]])  # v·S = [0.5, 0.4, 0.45, 0, 0]
    r2 = feature_agreement(v2, ["a"], truth, GENES, graph=s, random_draws=0)
    assert r2.score("FA", "local") == 0.0
    assert r2.score("FA", "diffused-local") == 1.0
    assert r2.score("FA", "diffused-global") == 1.0


def test_load_graph_reads_a_models_folder(tmp_path):
    from gexplain.models._graph import write_graph

    s = sp.csr_matrix(np.array([[0.6, 0.4], [0.4, 0.6]]))
    write_graph(tmp_path / "graph.parquet", s, ["b", "a"])
    got = load_graph(tmp_path, ["a", "b", "c"])
    np.testing.assert_allclose(got.toarray(), [[0.6, 0.4, 0.0], [0.4, 0.6, 0.0], [0.0, 0.0, 0.0]])


def test_random_control_expectation_is_k_over_g():
    g, k = 50, 5
    truth = GroundTruth.from_gene_sets({"a": [f"g{j}" for j in range(k)]})
    ids = [f"g{j}" for j in range(g)]
    v = np.zeros((300, g))
    r = feature_agreement(v, ["a"] * 300, truth, ids, random_draws=10, seed=1)
    assert r.score("FA", "local", control="random") == pytest.approx(k / g, abs=0.01)
    # global: one random set of k per draw -> mean of 10 hypergeometric fractions
    assert r.score("FA", "global", control="random") == pytest.approx(k / g, abs=0.08)
    # reproducible seeds
    r2 = feature_agreement(v, ["a"] * 300, truth, ids, random_draws=10, seed=1)
    assert r2.scores.equals(r.scores)
    # diffused control: Gaussian attributions through S (identity here) -> the same k/G
    eye = sp.identity(g, format="csr")
    r3 = feature_agreement(v[:100], ["a"] * 100, truth, ids, graph=eye, random_draws=5)
    assert r3.score("FA", "diffused-local", control="random") == pytest.approx(k / g, abs=0.02)


def test_gene_sets_only_count_genes_present_and_bad_input():
    truth = GroundTruth.from_gene_sets({"a": ["g0", "gX"]})
    v = np.array([[1.0, 0.0, 0.0, 0.0, 0.0]])
    r = feature_agreement(v, ["a"], truth, GENES, random_draws=0)
    assert r.score("FA", "local") == 1.0  # k_a = 1: gX is not a column
    with pytest.raises(InputError, match="gene ids"):
        feature_agreement(v, ["a"], truth, GENES[:3])
    with pytest.raises(InputError, match="biomarker"):
        feature_agreement(v, ["z"], truth, GENES)


# ----------------------------------------------------------------------------- recovery


def test_biomarker_recovery_hand_computed():
    truth = GroundTruth.from_gene_sets({"a": ["g0", "g3"], "b": ["g1"]})
    v = np.array(
        [
            [4.0, 0.0, -3.0, 0.0, 0.0],  # |normalised| = [.8, 0, .6, 0, 0]
            [0.0, 0.0, 0.0, 3.0, -4.0],  # [0, 0, 0, .6, .8]
            [0.0, 1.0, 0.0, 0.0, 0.0],
        ]
    )
    r = biomarker_recovery(v, ["a", "a", "b"], truth, GENES, ks=[1, 2, 9], random_draws=0)
    # class a: mean |.| = [.4, 0, .3, .3, .4]: order g0, g4, g2, g3, g1 (ties: lower index)
    assert r.score("precision@k", cls="a", k=1) == 1.0
    assert r.score("precision@k", cls="a", k=2) == 0.5
    assert r.score("recall@k", cls="a", k=2) == 0.5
    assert r.score("recall@k", cls="a", k=9) == 1.0  # k above G counts as G
    assert r.score("precision@k", cls="a", k=9) == pytest.approx(2 / 5)
    # AUPRC a: thresholds .4 {g0, g4}: P 1/2 R 1/2; .3 {g2, g3}: P 2/4 R 1; -> .25 + .25
    assert r.score("AUPRC", cls="a") == pytest.approx(0.5)
    assert r.score("AUPRC", cls="b") == 1.0
    assert r.score("AUPRC") == pytest.approx(0.75)


def test_biomarker_recovery_random_control():
    g = 200
    truth = GroundTruth.from_gene_sets({"a": [f"g{j}" for j in range(20)]})
    ids = [f"g{j}" for j in range(g)]
    v = np.random.default_rng(0).normal(size=(3, g))
    r = biomarker_recovery(v, ["a"] * 3, truth, ids, ks=[100], random_draws=40, seed=0)
    assert r.score("precision@k", k=100, control="random") == pytest.approx(0.1, abs=0.03)
    assert r.score("recall@k", k=100, control="random") == pytest.approx(0.5, abs=0.1)
    assert r.score("AUPRC", control="random") == pytest.approx(0.1, abs=0.05)


# ----------------------------------------------------------------------------- trained model


def test_trained_mlp_agrees_far_above_the_random_control():
    from metrics_data import demo

    d = demo()
    r = feature_agreement(d.values, d.classes, d.cohort.truth, d.gene_ids, random_draws=5)
    k_over_g = 50 / 300
    assert r.score("FA", "local", control="random") == pytest.approx(k_over_g, abs=0.03)
    assert r.score("FA", "local") > 2.5 * k_over_g
    assert r.score("FA", "global") > 4 * k_over_g
    rec = biomarker_recovery(d.values, d.classes, d.cohort.truth, d.gene_ids, random_draws=5)
    assert rec.score("AUPRC") > 2 * rec.score("AUPRC", control="random")


# ----------------------------------------------------------------------------- OpenXAI


def test_openxai_agreement_hand_computed():
    v = np.array([[3.0, -2.0, 1.0, 0.0], [1.0, 1.0, -1.0, 5.0]])
    ref = np.array([[3.0, 1.0, 2.0, 0.5], [1.0, 1.0, 1.0, 5.0]])
    r = openxai_agreement(v, ref, k=2)
    # row 0: top2 E {0, 1}, R {0, 2}: FA .5 RA .5 (f0 first in both) SA .5 SRA .5
    # row 1: |E| = [1, 1, 1, 5] -> top2 [3, 0] (tie: lower index); R -> [3, 0]: all 1
    for m in ("FA", "RA", "SA", "SRA"):
        assert r.score(f"openxai-{m}") == 0.75
    # RC row 0: ranks |E| [1, 2, 3, 4], |R| [1, 3, 2, 4] -> 1 - 6·2/60 = 0.8; row 1 identical |.|
    assert r.score("openxai-RC") == pytest.approx((0.8 + 1.0) / 2)
    # PRA row 0: 6 pairs, only (1, 2) swapped -> 5/6; row 1: 1
    assert r.score("openxai-PRA") == pytest.approx((5 / 6 + 1) / 2)
    assert r.scores["k"].unique().to_list() == [2]
    assert set(r.scores["variant"]) == {"vs-truth"}


def test_openxai_k_as_count_or_fraction_and_per_class():
    r = np.random.default_rng(5)
    v = r.normal(size=(6, 20))
    ref = v + 0.5 * r.normal(size=v.shape)
    a = openxai_agreement(v, ref, k=5)
    b = openxai_agreement(v, ref, k=0.25)
    assert a.scores.equals(b.scores)
    assert np.isfinite(a.scores["value"].to_numpy()).all()
    with pytest.raises(InputError):
        openxai_agreement(v, ref, k=0)
    with pytest.raises(InputError):
        openxai_agreement(v, ref, k=1.5)
    c = openxai_agreement(v, ref, k=5, classes=["x", "x", "y", "y", "y", "y"])
    x_only = openxai_agreement(v[:2], ref[:2], k=5)
    assert c.score("openxai-FA", cls="x") == x_only.score("openxai-FA")
    assert c.score("openxai-FA") == pytest.approx(
        (c.score("openxai-FA", cls="x") + c.score("openxai-FA", cls="y")) / 2
    )


def test_openxai_agreement_of_linear_model_ig_with_its_reference(rng):
    from explain_helpers import gexplain_graph

    from gexplain.explain import CompiledModel, integrated_gradients

    proto, p = gexplain_graph(rng, 12, 3)
    cm = CompiledModel.load(proto)
    targets = np.array([0, 1, 2, 1])
    x = rng.normal(size=(4, 12)) * 3
    ig = integrated_gradients(cm, x, labels=targets, target="label", output="logit").values
    ref_ig = linear_reference_attribution(cm, x, targets, kind="ig-logit")
    np.testing.assert_allclose(ig, ref_ig, rtol=1e-4, atol=1e-5)
    r = openxai_agreement(ig, ref_ig, k=4)
    for m in ("FA", "RA", "SA", "SRA", "RC", "PRA"):
        assert r.score(f"openxai-{m}") == pytest.approx(1.0), m
    # the weights (OpenXAI's reference): with x - x' = +1 everywhere IG equals them,
    # with x - x' = -1 it is their negation: same ranking by |.|, every sign flipped
    w = linear_reference_attribution(cm, x, targets)
    np.testing.assert_allclose(w[0], p["W0"][0] * p["inv_std"], rtol=1e-5)
    for shift, sign in ((1.0, 1.0), (-1.0, 0.0)):
        xs = cm.model_zero + shift
        ig1 = integrated_gradients(
            cm, np.tile(xs, (4, 1)), labels=targets, target="label", output="logit"
        ).values
        r1 = openxai_agreement(ig1, w, k=0.5)
        for m in ("FA", "RA", "RC", "PRA"):
            assert r1.score(f"openxai-{m}") == pytest.approx(1.0)
        assert r1.score("openxai-SA") == sign and r1.score("openxai-SRA") == sign


def test_linear_reference_is_none_for_a_nonlinear_model(rng):
    from explain_helpers import gexplain_graph

    proto, _ = gexplain_graph(rng, 6, 2, hidden=(4,))
    assert linear_reference_attribution(proto, np.zeros((1, 6)), np.array([0])) is None


def test_openxai_agreement_with_several_k_equals_one_call_per_k():
    from gexplain.metrics import openxai_agreement

    r = np.random.default_rng(8)
    v, ref = r.normal(size=(12, 40)), r.normal(size=(12, 40))
    cls = np.array(list("ab") * 6)
    both = openxai_agreement(v, ref, k=[0.1, 3, 3], classes=cls).scores
    for k in (3, 4):
        one = openxai_agreement(v, ref, k=k, classes=cls).scores
        got = both.filter(both["k"] == k)
        assert got.height == one.height > 0
        assert got.sort(["metric", "class"], nulls_last=True).equals(
            one.sort(["metric", "class"], nulls_last=True)
        )
