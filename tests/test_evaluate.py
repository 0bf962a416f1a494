"""``gexplain evaluate`` end to end on a tiny simulated cohort, resuming, and bad inputs."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from gexplain.cli import main
from gexplain.cohort import Cohort
from gexplain.errors import InputError
from gexplain.explain import Attributions, CompiledModel
from gexplain.metrics import EVALUATE_METRICS, evaluate
from gexplain.metrics import _evaluate as ev

pytest.importorskip("torch")


def _available(*modules: str) -> bool:
    return all(importlib.util.find_spec(f"gexplain.metrics.{m}") is not None for m in modules)


def families() -> list[str]:
    """The families whose implementation exists in this tree (the others land separately)."""
    need = {
        "pg": ("_pg",),
        "openxai": ("_openxai_pg",),
        "fa": ("_agreement", "_openxai_agreement"),
        "stability": ("_stability",),
        "keep-remove": ("_keep_remove",),
        "sanity": ("_sanity",),
    }
    return [f for f in EVALUATE_METRICS if _available(*need[f])]


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """A 3-class simulated cohort, LR and MLP × 2 seeds, their exact IG."""
    from gexplain.explain import explain_cohort
    from gexplain.models import TrainConfig, train_models
    from gexplain.simulate import simulate

    root = tmp_path_factory.mktemp("study")
    cohort = simulate(
        "demo",
        seed=0,
        n_classes=3,
        samples_per_class=40,
        n_genes=200,
        n_pathways=20,
        informative_pathways=3,
    )
    cohort.save(root / "cohort")
    train_models(
        root / "cohort",
        "mlp,lr",
        [0, 1],
        root / "models",
        config=TrainConfig(hidden=8, epochs=8, milestones=()),
        quiet=True,
    )
    # a label-permuted control (skipped when the folder is scanned)
    train_models(
        root / "cohort",
        "mlp",
        [0],
        root / "models",
        config=TrainConfig(hidden=8, epochs=8, milestones=()),
        permute_labels=True,
        quiet=True,
    )
    for m in sorted((root / "models").glob("*.onnx")):
        explain_cohort(m, root / "cohort", root / "attr" / m.stem, quiet=True)
    return root


def _run(cli, *args: str):
    return cli.invoke(main, ["evaluate", *map(str, args)], catch_exceptions=False)


def test_end_to_end_cli(study: Path, cli, tmp_path: Path) -> None:
    out = tmp_path / "metrics"
    fam = ",".join(families())
    res = _run(
        cli,
        study / "cohort",
        "--models",
        study / "models",
        "--attributions",
        study / "attr",
        "--metrics",
        fam,
        "--out",
        out,
        "--json",
        "--quiet",
        "--random-draws",
        "10",
        "--n-perturb",
        "20",
        "--keep-remove-draws",
        "5",
        "--label-control",
        study / "models" / "mlp-permuted-seed0.onnx",
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["out"] == str(out)
    for name in ("metrics.parquet", "curves.parquet", "stability.parquet", "evaluate.json"):
        assert (out / name).exists()
    assert not list(tmp_path.glob(".metrics*"))  # partial folder gone
    scores = pl.read_parquet(out / "metrics.parquet")
    curves = pl.read_parquet(out / "curves.parquet")
    assert scores.columns[:3] == ["model", "seed", "model_file"]
    assert set(scores["model_file"].drop_nulls()) == {
        "lr-seed0.onnx",
        "lr-seed1.onnx",
        "mlp-seed0.onnx",
        "mlp-seed1.onnx",
    }

    def avg(model: str, seed: int, metric: str, variant: str, control=None) -> float:
        f = scores.filter(
            (pl.col("model") == model)
            & (pl.col("seed") == seed)
            & (pl.col("metric") == metric)
            & (pl.col("variant") == variant)
            & pl.col("class").is_null()
            & (pl.col("control").is_null() if control is None else pl.col("control") == control)
        )
        assert f.height == 1, (model, seed, metric, variant, f)
        return float(f["value"][0])

    # the acceptance: on the simulated cohort the MLP's IG gives PGI > PGR > PGU
    for seed in (0, 1):
        pgi = avg("mlp", seed, "PGI", "local")
        pgr = avg("mlp", seed, "PGR", "random")
        pgu = avg("mlp", seed, "PGU", "local")
        assert pgi > pgr > pgu, (pgi, pgr, pgu)
        assert pgi > 2 * pgr
    if "fa" in families():
        for seed in (0, 1):
            fa = avg("mlp", seed, "FA", "local")
            assert fa > 3 * avg("mlp", seed, "FA", "local", control="random")
    if "sanity" in families():
        ctrl = scores.filter(
            (pl.col("metric") == "rank-correlation") & (pl.col("variant") == "label-randomization")
        )
        # the control applies to the models of its kind only
        assert set(ctrl["model"]) == {"mlp"}
        assert (
            scores.filter(
                pl.col("variant").str.starts_with("model-randomization") & (pl.col("model") == "lr")
            ).height
            > 0
        )
    if "keep-remove" in families():
        assert curves.filter(pl.col("model") == "mlp").height > 0
    # the JSON summary: mean over the two seeds of each kind
    row = next(
        r
        for r in summary["summary"]
        if r["model"] == "mlp" and r["metric"] == "PGI" and r["variant"] == "local"
    )
    assert row["n_seeds"] == 2
    assert row["mean"] == pytest.approx(
        (avg("mlp", 0, "PGI", "local") + avg("mlp", 1, "PGI", "local")) / 2
    )
    pgi_curve = curves.filter(
        (pl.col("model") == "mlp")
        & (pl.col("seed") == 0)
        & (pl.col("curve") == "PGI")
        & (pl.col("variant") == "local")
        & pl.col("class").is_null()
    ).sort("x")
    assert pgi_curve.height == 200 // 10 + 1
    assert pgi_curve["value"][0] > pgi_curve["value"][-1]
    meta = json.loads((out / "evaluate.json").read_text())
    assert meta["settings"]["random_draws"] == 10
    assert len(meta["inputs"]["models"]) == 4
    assert all(len(m["model_sha256"]) == 64 for m in meta["inputs"]["models"])
    assert "numba" in meta["versions"]


def test_scored_rows_are_correct_test_samples(study: Path) -> None:
    res = evaluate(
        study / "cohort",
        study / "models" / "mlp-seed0.onnx",
        study / "attr" / "mlp-seed0",
        metrics="pg",
        random_draws=2,
    )
    cohort = Cohort.load(study / "cohort")
    model = CompiledModel.load(study / "models" / "mlp-seed0.onnx")
    test = cohort.split("test")
    pred = model.predict(model.prepare(test).expression)
    labels = np.array([model.class_names.index(v) for v in test.labels.to_list()])
    expected = int((pred == labels).sum())
    assert res.meta["n_scored_rows"] == {"mlp-seed0": expected}
    n = res.scores.filter(
        (pl.col("metric") == "PGI") & (pl.col("variant") == "local") & pl.col("class").is_null()
    )["n"][0]
    assert n == expected
    every = evaluate(
        study / "cohort",
        study / "models" / "mlp-seed0.onnx",
        study / "attr" / "mlp-seed0",
        metrics="pg",
        random_draws=2,
        all_samples=True,
    )
    assert every.meta["n_scored_rows"] == {"mlp-seed0": cohort.n_samples}


def test_chunking_does_not_change_scores(study: Path) -> None:
    kw = dict(metrics="pg,openxai", random_draws=3, n_perturb=5)
    a = evaluate(study / "cohort", study / "models", study / "attr", **kw)
    b = evaluate(study / "cohort", study / "models", study / "attr", chunk_size=7, **kw)
    assert a.scores.equals(b.scores)
    assert a.curves.equals(b.curves)


def test_resume_skips_finished_parts(study: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "m"
    kw = dict(metrics="pg,openxai", random_draws=3, n_perturb=5, out=out)
    real = ev._family
    calls: list[tuple[str, str]] = []

    def failing(family, model, *args, **kwargs):
        calls.append((Path(model.path).stem, family))
        if family == "openxai" and Path(model.path).stem == "mlp-seed0":
            raise KeyboardInterrupt
        return real(family, model, *args, **kwargs)

    monkeypatch.setattr(ev, "_family", failing)
    with pytest.raises(KeyboardInterrupt):
        evaluate(study / "cohort", study / "models", study / "attr", **kw)
    assert not out.exists()
    partial = tmp_path / ".m.partial"
    assert (partial / "lr-seed0--pg").is_dir() and (partial / "mlp-seed0--pg").is_dir()
    done_before = set(calls)
    calls.clear()

    def counting(family, model, *args, **kwargs):
        calls.append((Path(model.path).stem, family))
        return real(family, model, *args, **kwargs)

    monkeypatch.setattr(ev, "_family", counting)
    # the same inputs given as relative paths from another working directory resume too
    monkeypatch.chdir(study)
    resumed = evaluate("cohort", "models", Path("attr"), **kw)
    assert ("lr-seed0", "pg") not in calls and ("mlp-seed0", "pg") not in calls
    assert ("mlp-seed0", "openxai") in calls and ("mlp-seed1", "pg") in calls
    assert ("lr-seed0", "pg") in done_before
    fresh = evaluate(
        study / "cohort",
        study / "models",
        study / "attr",
        metrics="pg,openxai",
        random_draws=3,
        n_perturb=5,
    )
    assert resumed.scores.sort(pl.all()).equals(fresh.scores.sort(pl.all()))
    assert (out / "metrics.parquet").exists() and not partial.exists()
    # an existing output is refused without overwrite
    with pytest.raises(Exception, match="exists"):
        evaluate(study / "cohort", study / "models", study / "attr", **kw)


# ---------------------------------------------------------------- bad inputs
def _fails(cli, tmp_path: Path, *args, match: str) -> None:
    out = tmp_path / "bad-out"
    res = cli.invoke(main, ["evaluate", *map(str, args), "--out", str(out), "--metrics", "pg"])
    assert res.exit_code != 0
    assert match in res.output, res.output
    assert not out.exists()
    assert not list(tmp_path.glob(".bad-out*"))


def test_attributions_of_another_model(study: Path, cli, tmp_path: Path) -> None:
    attr = tmp_path / "attr"
    shutil.copytree(study / "attr" / "lr-seed0", attr / "mlp-seed0")
    _fails(
        cli,
        tmp_path,
        study / "cohort",
        "--models",
        study / "models" / "mlp-seed0.onnx",
        "--attributions",
        attr,
        match="lr-seed0.onnx",
    )


def test_missing_attributions_folder(study: Path, cli, tmp_path: Path) -> None:
    attr = tmp_path / "attr"
    shutil.copytree(study / "attr" / "lr-seed0", attr / "lr-seed0")
    _fails(
        cli,
        tmp_path,
        study / "cohort",
        "--models",
        study / "models",
        "--attributions",
        attr,
        match="no attributions for model",
    )


def test_cohort_missing_genes(study: Path, cli, tmp_path: Path) -> None:
    cohort = Cohort.load(study / "cohort")
    fewer = cohort.select(genes=cohort.gene_ids[:-3])
    fewer.save(tmp_path / "c")
    _fails(
        cli,
        tmp_path,
        tmp_path / "c",
        "--models",
        study / "models" / "mlp-seed0.onnx",
        "--attributions",
        study / "attr" / "mlp-seed0",
        match="G00199",
    )


def test_cohort_without_split(study: Path, cli, tmp_path: Path) -> None:
    cohort = Cohort.load(study / "cohort")
    plain = Cohort(
        np.asarray(cohort.expression),
        cohort.samples.drop("split"),
        cohort.genes,
        dict(cohort.meta),
        truth=cohort.truth,
    )
    plain.save(tmp_path / "c")
    _fails(
        cli,
        tmp_path,
        tmp_path / "c",
        "--models",
        study / "models" / "mlp-seed0.onnx",
        "--attributions",
        study / "attr" / "mlp-seed0",
        match="split",
    )
    # every row can still be scored explicitly
    res = evaluate(
        tmp_path / "c",
        study / "models" / "mlp-seed0.onnx",
        study / "attr" / "mlp-seed0",
        metrics="pg",
        all_samples=True,
        random_draws=2,
    )
    assert res.meta["n_scored_rows"]["mlp-seed0"] == cohort.n_samples


def test_unknown_samples_and_metric(study: Path, tmp_path: Path) -> None:
    attr = Attributions.load(study / "attr" / "mlp-seed0")
    rows = attr.rows.with_columns(
        pl.when(pl.int_range(pl.len()) == 0)
        .then(pl.lit("nobody"))
        .otherwise(pl.col("sample_id"))
        .alias("sample_id")
    )
    Attributions(np.asarray(attr.values), rows, attr.gene_ids, attr.meta).save(tmp_path / "a")
    with pytest.raises(Exception, match="nobody"):
        evaluate(
            study / "cohort", study / "models" / "mlp-seed0.onnx", tmp_path / "a", metrics="pg"
        )
    with pytest.raises(InputError, match="unknown metric"):
        evaluate(study / "cohort", study / "models", study / "attr", metrics="pg,nope")
