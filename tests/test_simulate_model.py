"""Simulation parameters, presets, pathway construction and the analytic ground truth."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from gexplain.errors import InputError
from gexplain.simulate import PRESETS, SimulationParams, build_model, get_params

# ----------------------------------------------------------------------------- parameters


def test_presets_reproduce_the_paper():
    s1, s2 = PRESETS["simu1"], PRESETS["simu2"]
    for p in (s1, s2):
        assert (p.n_classes, p.samples_per_class, p.n_genes) == (33, 300, 15000)
        assert (p.reads, p.units, p.gene_concentration, p.min_weight) == (
            1_500_000,
            "per-million",
            5.0,
            0.01,
        )
        assert (p.informative_pathways, p.base_prior, p.class_prior, p.test_size) == (
            37,
            4.0,
            8.0,
            0.4,
        )
        assert p.total_samples == 9900
    assert (s1.membership, s1.n_pathways, s1.pathway_size) == ("disjoint", 1500, 10)
    assert (s2.membership, s2.n_pathways) == ("random", 3000)
    assert s2.membership_probability == pytest.approx(10 / 15000)
    demo = PRESETS["demo"]
    assert demo.total_samples * demo.n_genes <= 10**6  # small enough to train in seconds


def test_overrides_and_round_trip():
    p = get_params("simu1", n_genes=2000, n_pathways=100, informative_pathways=3, units="counts")
    assert (p.n_genes, p.n_pathways, p.units, p.n_classes) == (2000, 100, "counts", 33)
    assert SimulationParams.from_dict(p.to_dict()) == p
    assert get_params(p) is p
    with pytest.raises(InputError, match="unknown simulation parameter"):
        get_params("demo", n_gene=3)
    with pytest.raises(InputError, match="unknown simulation preset"):
        get_params("simu3")


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"n_pathways": 1600}, "need 16000 genes"),
        ({"informative_pathways": 50}, "exceed"),
        ({"membership": "overlap"}, "membership"),
        ({"units": "tpm"}, "units"),
        ({"test_size": 1.0}, "test_size"),
        ({"class_proportions": (1.0, 2.0)}, "has 2 values"),
        ({"membership": "random", "membership_prob": 0.0}, "membership_prob"),
        ({"n_genes": 0}, "n_genes"),
        ({"library_sigma": -1.0}, "library_sigma"),
    ],
)
def test_invalid_parameters_are_named(kw, match):
    with pytest.raises(InputError, match=match):
        get_params("simu1", **kw)


def test_class_proportions_use_largest_remainders():
    p = get_params("demo", n_classes=3, class_proportions=(1, 1, 1), n_samples=100)
    assert p.class_counts == [34, 33, 33]
    p = get_params("demo", n_classes=3, class_proportions=(5, 3, 2), n_samples=7)
    assert p.class_counts == [4, 2, 1] and p.total_samples == 7
    assert get_params("demo", samples_per_class=4).class_counts == [4] * 6


def test_names_sort_in_class_and_gene_order():
    p = get_params("demo", n_classes=12)
    assert p.class_names == sorted(p.class_names) and p.class_names[10] == "C10"
    assert p.gene_ids[:2] == ["G00000", "G00001"] and p.gene_ids == sorted(p.gene_ids)


# ----------------------------------------------------------------------------- pathways and truth


@pytest.fixture(scope="module")
def simu1_truth():
    model = build_model("simu1", seed=0)
    return model, model.ground_truth()


def test_simu1_pathways_are_blocks_of_ten(simu1_truth):
    _, truth = simu1_truth
    pw = truth.pathways
    assert pw.height == 15000 and pw["pathway"].n_unique() == 1500
    gene_index = pw["gene_id"].str.slice(1).cast(pl.Int64)
    assert (gene_index // 10 == pw["pathway"]).all()
    sums = pw.group_by("pathway").agg(pl.col("weight").sum())["weight"].to_numpy()
    np.testing.assert_allclose(sums, 1.0, rtol=1e-12)
    assert (pw["weight"] > 0).all()


def test_simu1_informative_pathways_and_min_weight(simu1_truth):
    model, truth = simu1_truth
    cp = truth.class_pathways
    assert cp.height == 33 * 37
    for c, name in enumerate(model.params.class_names):
        assert cp.filter(pl.col("class") == name)["pathway"].to_list() == list(
            range(37 * c, 37 * c + 37)
        )
    informative = truth.pathways.filter(pl.col("pathway") < 33 * 37)
    assert informative["weight"].min() >= 0.01
    # the weights of non-informative pathways are plain Dirichlet(5) draws
    rest = truth.pathways.filter(pl.col("pathway") >= 33 * 37)["weight"].to_numpy()
    assert abs(rest.mean() - 0.1) < 0.002 and abs(rest.var() - 0.09 / 51) < 0.0003


def test_simu1_biomarkers_370_per_class_and_disjoint(simu1_truth):
    _, truth = simu1_truth
    sets = truth.biomarker_sets()
    assert len(sets) == 33 and all(len(s) == 370 for s in sets.values())
    union = set().union(*sets.values())
    assert len(union) == 33 * 370  # pairwise disjoint
    assert sets["C01"] == {f"G{g:05d}" for g in range(370, 740)}
    assert truth.summary()["biomarkers_per_class"]["C32"] == 370


def test_expected_mean_is_the_analytic_mixture(simu1_truth):
    model, truth = simu1_truth
    p = model.params
    beta = np.zeros((p.n_pathways, p.n_genes))
    beta[model.pathway_of_entry, model.path_genes] = model.path_weights
    theta = model.alpha / model.alpha.sum(axis=1, keepdims=True)
    mu = 1e6 * theta @ beta  # per-million
    b = truth.biomarkers
    assert b.height == 33 * 15000
    got = b["expected_mean"].to_numpy().reshape(33, 15000)
    np.testing.assert_allclose(got, mu, rtol=1e-12)
    others = (mu.sum(0) - mu) / 32
    np.testing.assert_allclose(
        b["expected_log2fc"].to_numpy().reshape(33, 15000),
        np.log2(mu / others),
        rtol=1e-10,
        atol=1e-12,
    )
    # a biomarker's class gives it 8/4 the prior mass: log2fc ≈ log2(2 · 6148 / 6296) > 0.9
    fc = b.filter(pl.col("is_biomarker"))["expected_log2fc"]
    assert fc.min() > 0.9 and b.filter(~pl.col("is_biomarker"))["expected_log2fc"].max() < 0.1


def test_expected_mean_in_counts_uses_the_mean_library_size():
    m = build_model(get_params("demo", units="counts", library_sigma=0.5), seed=1)
    frac = m.expected_fraction()
    np.testing.assert_allclose(frac.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(
        m.expected_expression(), frac * 1_500_000 * np.exp(0.125), rtol=1e-12
    )


def test_simu2_random_membership():
    model = build_model("simu2", seed=3)
    sizes = model.pathway_sizes
    assert sizes.min() >= 1 and sizes.shape == (3000,)
    # size ~ Binomial(15000, 1/1500) conditioned on > 0: mean 10.0005, sd 3.16
    assert abs(sizes.mean() - 10.0) < 0.3
    per_gene = np.bincount(model.path_genes, minlength=15000)
    assert abs(per_gene.mean() - 2.0) < 0.05  # each gene joins ~3000 · 10/15000 pathways
    assert (per_gene == 0).mean() == pytest.approx(np.exp(-2), abs=0.01)
    truth = model.ground_truth()
    sets = truth.biomarker_sets()
    for c in (0, 32):
        members = set(
            truth.pathways.filter(pl.col("pathway").is_in(model.informative[c]))["gene_id"]
        )
        assert sets[model.params.class_names[c]] == members
    # genes outside every pathway are never expressed: no mean, no fold change
    silent = truth.biomarkers.filter(pl.col("expected_mean") == 0)
    assert silent.height == 33 * int((per_gene == 0).sum())
    assert silent["expected_log2fc"].null_count() == silent.height


def test_model_is_reproducible_and_seeded():
    a, b = build_model("simu2", seed=7), build_model("simu2", seed=7)
    assert np.array_equal(a.path_genes, b.path_genes)
    assert np.array_equal(a.path_weights, b.path_weights)
    c = build_model("simu2", seed=8)
    assert not np.array_equal(a.path_ptr, c.path_ptr)


def test_min_weight_that_cannot_hold_is_an_error():
    with pytest.raises(InputError, match="min_weight"):
        build_model(get_params("demo", pathway_size=10, min_weight=0.2), seed=0)


def test_kernel_layout_covers_every_member_once():
    model = build_model(
        get_params("simu2", n_genes=500, n_pathways=60, n_classes=4, informative_pathways=5), seed=2
    )
    lay = model.kernel_layout()
    sizes = model.pathway_sizes
    assert lay["pos_ptr"][-1] == int((sizes - 1).sum())
    members = np.concatenate([lay["lane_gene"], lay["last_gene"]])
    assert sorted(members.tolist()) == sorted(model.path_genes.tolist())
    assert ((lay["lane_cond"] > 0) & (lay["lane_cond"] <= 1)).all()
