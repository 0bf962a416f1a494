"""Simulated cohorts: statistics vs the analytic truth, split, disk streaming and resume, CLI."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import polars as pl
import pytest

import gexplain as gx
from gexplain.cli import main
from gexplain.simulate import Simulation, get_params, simulate, simulate_to_disk
from gexplain.simulate import _simulate as sim_module


@pytest.fixture(scope="module")
def demo() -> gx.Cohort:
    return simulate("demo", seed=0)


def test_demo_cohort_tables_and_meta(demo):
    assert demo.shape == (600, 1000)
    assert demo.classes == [f"C0{c}" for c in range(6)]
    s = demo.samples
    assert s.columns == ["sample_id", "label", "split", "library_size"]
    assert s["label"].to_list() == sorted(s["label"].to_list())  # ordered by class
    per_class = s.group_by("label", "split").len().sort("label", "split")
    assert per_class["len"].to_list() == [40, 60] * 6  # stratified 60/40, exactly per class
    assert demo.meta["units"] == "per-million"
    assert demo.value_transforms == []  # the split does not change values
    (step,) = demo.meta["preprocessing"]
    assert (step["step"], step["test_size"], step["stratify"]) == ("split", 0.4, "label")
    (prov,) = demo.meta["provenance"]
    assert prov["source"] == "gexplain.simulate" and prov["preset"] == "demo"
    assert prov["seed"] == 0 and prov["params"]["n_genes"] == 1000
    assert demo.truth is not None and demo.truth.params["simulation"] == prov["params"]
    assert demo.genes["n_pathways"].to_list() == [1] * 1000
    # per-million: every row sums to 10**6 (1.5e6 reads / 1.5), float32 rounding aside
    np.testing.assert_allclose(demo.expression.sum(axis=1, dtype=np.float64), 1e6, rtol=1e-6)


def _mean_z_scores(cohort: gx.Cohort) -> tuple[np.ndarray, np.ndarray]:
    """z-scores of the class means of every expressed gene against the expected mean."""
    n_genes = cohort.n_genes
    truth = cohort.truth.biomarkers.sort("class", "gene_id")
    mu = truth["expected_mean"].to_numpy().reshape(len(cohort.classes), n_genes)
    labels = cohort.labels.to_numpy()
    z, silent = [], []
    for c, name in enumerate(cohort.classes):
        x = cohort.expression[labels == name].astype(np.float64)
        expressed = mu[c] > 0
        silent.append(x[:, ~expressed])
        sd = x[:, expressed].std(0, ddof=1) / np.sqrt(len(x))
        z.append((x[:, expressed].mean(0) - mu[c, expressed]) / sd)
    return np.concatenate(z), np.concatenate(silent, axis=None)


def test_per_gene_means_match_the_analytic_expectation(demo):
    """z-scores of the class means of every gene against the truth's expected mean.

    With 100 samples per class the sample mean is close to normal; across the
    6000 (class, gene) pairs the z-scores must look standard: |mean| < 0.1,
    0.9 < sd < 1.1, max |z| < 5 (a fixed seed; P(max > 5) ≈ 0.3 % for 6000
    independent standard normals).
    """
    z, silent = _mean_z_scores(demo)
    assert z.size == 6000 and silent.size == 0
    assert abs(z.mean()) < 0.1 and 0.9 < z.std() < 1.1 and np.abs(z).max() < 5.0


def test_overlapping_pathways_means_match_the_expectation():
    """SIMU2-style random overlapping pathways; genes in no pathway are exactly 0."""
    c = simulate(
        "simu2",
        seed=1,
        n_classes=3,
        samples_per_class=150,
        n_genes=600,
        n_pathways=120,
        informative_pathways=8,
        units="counts",
    )
    z, silent = _mean_z_scores(c)
    assert silent.size > 0 and (silent == 0).all()
    assert abs(z.mean()) < 0.1 and 0.9 < z.std() < 1.1 and np.abs(z).max() < 5.0
    assert (c.expression.sum(axis=1, dtype=np.float64) == 1_500_000).all()


def test_per_gene_variances_match_the_hierarchical_model(demo):
    """Sample variances against the analytic variance of the LDA model (disjoint pathways).

    Given θ, ``x_g ~ Binomial(R, θ_p β_g)``; with ``θ ~ Dirichlet(α_c)``:
    ``Var x_g = R β_g E θ_p - R β_g² E θ_p² + R² β_g² Var θ_p``. Averaged over
    the 6000 (class, gene) pairs, the ratio sample / analytic variance must be
    1 within 3 % (genes of a pathway share θ_p: ~600 independent groups of 99
    degrees of freedom give a standard error near 1 %).
    """
    from gexplain.simulate import build_model

    model = build_model("demo", seed=0)
    R = 1_500_000
    beta = np.zeros(1000)
    beta[model.path_genes] = model.path_weights
    path = np.repeat(np.arange(100), 10)
    labels = demo.labels.to_numpy()
    ratios = []
    for c, name in enumerate(demo.classes):
        a = model.alpha[c]
        a0 = a.sum()
        mean = a / a0
        var = a * (a0 - a) / (a0**2 * (a0 + 1))
        m, v = mean[path], var[path]
        analytic = R * beta * m - R * beta**2 * (v + m**2) + R**2 * beta**2 * v
        x = demo.expression[labels == name].astype(np.float64) * 1.5  # back to counts
        ratios.append(x.var(axis=0, ddof=1) / analytic)
    ratio = np.concatenate(ratios)
    assert abs(ratio.mean() - 1.0) < 0.03


def test_raw_counts_preserve_the_library_size():
    fixed = simulate("demo", seed=1, units="counts", samples_per_class=5)
    assert fixed.meta["units"] == "counts"
    assert (fixed.expression.sum(axis=1, dtype=np.float64) == 1_500_000).all()
    assert np.array_equal(fixed.expression, np.round(fixed.expression))
    lognormal = simulate("demo", seed=1, units="counts", library_sigma=0.8, samples_per_class=20)
    lib = lognormal.samples["library_size"].to_numpy()
    assert np.array_equal(lognormal.expression.sum(axis=1, dtype=np.float64), lib)
    assert lib.std() > 0 and 0.5 < np.median(lib) / 1_500_000 < 2.0


def test_per_million_divides_by_each_library_size():
    c = simulate("demo", seed=2, library_sigma=0.5, samples_per_class=3)
    counts = simulate("demo", seed=2, library_sigma=0.5, samples_per_class=3, units="counts")
    lib = counts.samples["library_size"].to_numpy()
    np.testing.assert_allclose(
        c.expression, counts.expression / (lib[:, None] / 1e6), rtol=1e-6, atol=1e-6
    )


def test_logistic_regression_separates_the_demo_classes(demo):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.preprocessing import StandardScaler

    x = np.log2(demo.expression.astype(np.float64) + 1)
    y = demo.labels.to_numpy()
    train = (demo.samples["split"] == "train").to_numpy()
    scale = StandardScaler().fit(x[train])
    model = LogisticRegression(C=0.1, max_iter=2000).fit(scale.transform(x[train]), y[train])
    acc = balanced_accuracy_score(y[~train], model.predict(scale.transform(x[~train])))
    assert acc > 0.85  # chance is 1/6; the demo is separable, not trivially (see the preset)


def test_imbalanced_classes():
    c = simulate("demo", seed=0, class_proportions=(4, 1, 1, 1, 1, 2), n_samples=100)
    counts = c.samples["label"].value_counts().sort("label")["count"].to_list()
    assert counts == [40, 10, 10, 10, 10, 20]
    tests = c.samples.filter(pl.col("split") == "test").group_by("label").len().sort("label")
    assert tests["len"].to_list() == [16, 4, 4, 4, 4, 8]


def test_seed_accepts_a_generator_and_changes_the_draws():
    a = simulate("demo", seed=np.random.default_rng(5), samples_per_class=2)
    b = simulate("demo", seed=np.random.default_rng(5), samples_per_class=2)
    assert np.array_equal(a.expression, b.expression)
    assert not np.array_equal(
        a.expression, simulate("demo", seed=6, samples_per_class=2).expression
    )


# ----------------------------------------------------------------------------- disk


def test_to_disk_equals_in_memory_and_carries_the_truth(tmp_path, demo):
    path = simulate_to_disk(tmp_path / "demo", "demo", seed=0, chunk_size=77, quiet=True)
    c = gx.Cohort.load(path)
    assert np.array_equal(c.expression, demo.expression)
    assert c.samples.equals(demo.samples) and c.genes.equals(demo.genes)
    assert c.truth.biomarkers.equals(demo.truth.biomarkers)
    assert c.truth.summary()["biomarkers_per_class"] == {f"C0{k}": 80 for k in range(6)}
    assert c.meta["provenance"][0]["params"] == demo.meta["provenance"][0]["params"]
    with pytest.raises(gx.GexplainError, match="exists"):
        simulate_to_disk(path, "demo", seed=0, quiet=True)
    simulate_to_disk(path, "demo", seed=1, quiet=True, samples_per_class=2, overwrite=True)
    assert gx.Cohort.load(path).n_samples == 12


def test_memory_stays_bounded_by_the_chunk(tmp_path):
    """4000 × 2000 float32 is 32 MB; with 100-row chunks numpy never holds more than a few MB."""
    params = dict(samples_per_class=1000, n_classes=4, n_genes=2000, n_pathways=200)
    tracemalloc.start()
    try:
        simulate_to_disk(tmp_path / "big", "demo", seed=0, chunk_size=100, quiet=True, **params)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20
    c = gx.Cohort.load(tmp_path / "big")
    assert c.shape == (4000, 2000)
    assert np.array_equal(
        c.expression[3990:], Simulation(get_params("demo", **params), 0).rows(3990, 4000)
    )


def test_an_interrupted_run_resumes_its_finished_chunks(tmp_path, monkeypatch):
    out = tmp_path / "cohort"
    filled: list[int] = []
    original = Simulation.fill

    def fill_then_stop(self, start, rows):
        if len(filled) == 3:
            raise KeyboardInterrupt
        filled.append(start)
        original(self, start, rows)

    monkeypatch.setattr(Simulation, "fill", fill_then_stop)
    with pytest.raises(KeyboardInterrupt):
        simulate_to_disk(out, "demo", seed=4, chunk_size=100, quiet=True)
    assert not out.exists()
    assert filled == [0, 100, 200]
    monkeypatch.setattr(
        Simulation,
        "fill",
        lambda self, start, rows: (filled.append(start), original(self, start, rows)),
    )
    simulate_to_disk(out, "demo", seed=4, chunk_size=100, quiet=True)
    assert filled[3:] == [300, 400, 500]  # only the unfinished chunks ran again
    assert np.array_equal(gx.Cohort.load(out).expression, simulate("demo", seed=4).expression)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_chunks_cover_the_cohort():
    sim = Simulation(get_params("demo", samples_per_class=5), 0)
    assert list(sim.chunks(7))[-1] == (28, 30)
    assert list(sim.chunks()) == [(0, 30)]
    with pytest.raises(ValueError):
        sim.fill(25, np.empty((6, 1000), np.float32))
    assert sim_module.SAMPLER.startswith("exact")


# ----------------------------------------------------------------------------- CLI


def test_cli_simulate_and_info(tmp_path, cli):
    out = tmp_path / "c"
    r = cli.invoke(
        main,
        [
            "simulate",
            "--preset",
            "demo",
            "--seed",
            "3",
            "--n-genes",
            "500",
            "--n-pathways",
            "50",
            "--samples-per-class",
            "4",
            "--units",
            "counts",
            "--out",
            str(out),
            "-q",
        ],
    )
    assert r.exit_code == 0, r.output
    c = gx.Cohort.load(out)
    assert c.shape == (24, 500) and c.meta["units"] == "counts"
    assert c.meta["provenance"][0]["overrides"] == {
        "n_genes": 500,
        "n_pathways": 50,
        "samples_per_class": 4,
        "units": "counts",
    }
    expected = simulate(
        "demo", seed=3, n_genes=500, n_pathways=50, samples_per_class=4, units="counts"
    )
    assert np.array_equal(c.expression, expected.expression)
    info = cli.invoke(main, ["info", str(out)])
    assert info.exit_code == 0 and "biomarkers per class    80" in info.output
    assert "simulated               seed 3, disjoint pathways" in info.output


def test_cli_show_params_and_errors(tmp_path, cli):
    r = cli.invoke(
        main,
        [
            "simulate",
            "--preset",
            "simu2",
            "--class-proportions",
            "1,2",
            "--n-classes",
            "2",
            "--informative-pathways",
            "3",
            "--show-params",
        ],
    )
    assert r.exit_code == 0, r.output
    shown = json.loads(r.output)
    assert shown["membership"] == "random" and shown["class_proportions"] == [1.0, 2.0]
    bad = cli.invoke(
        main, ["simulate", "--preset", "simu1", "--n-pathways", "10", "--out", str(tmp_path / "x")]
    )
    assert bad.exit_code == 1 and "informative_pathways" in bad.output
    assert not (tmp_path / "x").exists()
    missing = cli.invoke(main, ["simulate", "--preset", "demo"])
    assert missing.exit_code == 2 and "--out" in missing.output
