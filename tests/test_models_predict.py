"""Predictions (onnxruntime), gene alignment by id, scikit-learn export, the models folder and CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import polars as pl
import pytest
from models_data import separable_cohort

from gexplain import Cohort, preprocess
from gexplain.cli import main
from gexplain.errors import AlignmentError, GexplainError
from gexplain.modelmeta import prepare_cohort, read_metadata
from gexplain.models import (
    TrainConfig,
    balanced_accuracy,
    confusion_counts,
    export_sklearn,
    fit,
    load_model,
    predict,
    summarize,
    train_models,
)

FAST = TrainConfig(epochs=4, milestones=(3,))


@pytest.fixture(scope="module")
def cohort():
    return separable_cohort()


@pytest.fixture(scope="module")
def mlp_path(cohort, tmp_path_factory):
    pytest.importorskip("torch")
    path = tmp_path_factory.mktemp("m") / "mlp-seed0.onnx"
    fit(cohort, "mlp", seed=0, config=FAST).save(path)
    return path


def test_balanced_accuracy_and_confusion_against_sklearn(rng):
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix

    for n, c in ((9, 3), (200, 5)):
        t = rng.integers(0, c, n)
        p = rng.integers(0, c, n)
        assert balanced_accuracy(t, p) == pytest.approx(balanced_accuracy_score(t, p), abs=1e-15)
        np.testing.assert_array_equal(
            confusion_counts(t, p, c), confusion_matrix(t, p, labels=range(c))
        )
    # hand-computed: class a 2/3, class b 1/1
    assert balanced_accuracy(["a", "a", "a", "b"], ["a", "a", "b", "b"]) == pytest.approx(5 / 6)
    assert balanced_accuracy(["a"], ["b"]) == 0.0
    assert np.isnan(balanced_accuracy([], []))


def test_predict_frame(cohort, mlp_path):
    frame = predict(mlp_path, cohort, split="test")
    assert frame.height == 96
    assert frame.columns[:5] == ["sample_id", "label", "split", "predicted", "correct"]
    probs = frame.select(pl.selectors.starts_with("p_")).to_numpy()
    assert probs.shape == (96, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(frame["probability"].to_numpy(), probs.max(axis=1))
    s = summarize(frame)
    assert s["balanced_accuracy"] >= 0.95
    assert s["splits"]["test"]["n_samples"] == 96
    # matches the training record of the same model
    meta = read_metadata(onnx.load(str(mlp_path)))
    hist = json.loads(meta.extra["history"])
    assert s["balanced_accuracy"] == pytest.approx(hist["test_balanced_accuracy"][-1])


def test_permuted_gene_order_is_realigned_and_missing_genes_refused(cohort, mlp_path):
    ref = predict(mlp_path, cohort)
    perm = np.random.default_rng(1).permutation(cohort.n_genes)
    shuffled = cohort.select(genes=perm)
    assert shuffled.gene_ids != cohort.gene_ids
    got = predict(mlp_path, shuffled)
    np.testing.assert_array_equal(
        got.select(pl.selectors.starts_with("p_")).to_numpy(),
        ref.select(pl.selectors.starts_with("p_")).to_numpy(),
    )
    # extra genes in the cohort are ignored
    extra = Cohort(
        np.hstack([cohort.expression, np.ones((cohort.n_samples, 2), np.float32)]),
        cohort.samples,
        [*cohort.gene_ids, "EXTRA1", "EXTRA2"],
    )
    assert predict(mlp_path, extra)["predicted"].equals(ref["predicted"])
    missing = cohort.select(genes=list(range(1, cohort.n_genes)))
    with pytest.raises(AlignmentError, match="1 of 48 genes are missing"):
        predict(mlp_path, missing)
    filled = predict(mlp_path, missing, fill=0.0)
    assert filled.height == cohort.n_samples


def test_preprocessing_mismatch_is_refused(cohort, tmp_path):
    pytest.importorskip("torch")
    logged = preprocess.log2p1(cohort)
    path = tmp_path / "lr-log.onnx"
    fit(logged, "lr", seed=0, config=FAST).save(path)
    meta = read_metadata(onnx.load(str(path)))
    assert meta.preprocessing == ["log2p1"]
    with pytest.raises(AlignmentError, match="log2p1"):
        prepare_cohort(cohort, meta)
    with pytest.raises(AlignmentError, match="log2p1"):
        predict(path, cohort)
    assert predict(path, logged).height == cohort.n_samples
    cpm_then_log = preprocess.log2p1(preprocess.cpm(cohort))
    with pytest.raises(AlignmentError, match=r"\['cpm', 'log2p1'\]"):
        predict(path, cpm_then_log)


@pytest.mark.parametrize("kind", ["lr", "mlp"])
def test_sklearn_export(cohort, tmp_path, kind):
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    train = cohort.split("train")
    x = train.expression / 10
    y = train.labels.to_numpy()
    if kind == "lr":
        est = LogisticRegression(max_iter=500).fit(x, y)
    else:
        est = MLPClassifier(
            hidden_layer_sizes=(8,), solver="lbfgs", max_iter=2000, random_state=0
        ).fit(x, y)
    path = tmp_path / f"sk-{kind}.onnx"
    model = export_sklearn(est, train.gene_ids, path)
    onnx.checker.check_model(model)
    meta = read_metadata(onnx.load(str(path)))
    assert meta.model_kind == f"sklearn-{kind}"
    assert meta.class_names == ["class0", "class1", "class2", "class3"]
    assert meta.gene_ids == cohort.gene_ids
    ops = {n.op_type for n in model.graph.node}
    if kind == "lr":
        assert "LinearClassifier" in ops
    else:
        assert {"MatMul", "Relu", "Softmax"} <= ops
    scaled = Cohort(cohort.expression / 10, cohort.samples, cohort.genes)
    frame = predict(path, scaled.select(genes=np.arange(48)[::-1]))  # reversed gene order
    probs = frame.select(pl.selectors.starts_with("p_")).to_numpy()
    np.testing.assert_allclose(probs, est.predict_proba(scaled.expression), atol=1e-5)
    assert frame["predicted"].to_list() == est.predict(scaled.expression).tolist()
    lm = load_model(path)
    assert lm.output_name == "probabilities" and lm.output_is_probability


def test_sklearn_export_checks_inputs(cohort):
    from sklearn.linear_model import LogisticRegression

    with pytest.raises(GexplainError, match="not a fitted classifier"):
        export_sklearn(LogisticRegression(), cohort.gene_ids)
    est = LogisticRegression().fit(cohort.expression[:, :3], cohort.labels.to_numpy())
    with pytest.raises(GexplainError, match="3 features but 48"):
        export_sklearn(est, cohort.gene_ids)


def test_predict_runs_without_torch(mlp_path, tmp_path, cohort):
    cohort.save(tmp_path / "c")
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None
        from gexplain.models import predict, summarize
        f = predict({str(mlp_path)!r}, {str(tmp_path / "c")!r}, split="test")
        print(round(summarize(f)["balanced_accuracy"], 6))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    expected = summarize(predict(mlp_path, cohort, split="test"))["balanced_accuracy"]
    assert float(out.stdout) == pytest.approx(expected, abs=1e-6)


def test_train_models_folder_resume_and_tables(cohort, tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "models"
    s = train_models(cohort, "lr,diffuse-mlp", [0, 1], out, config=FAST, quiet=True)
    assert s["status"].to_list() == ["trained"] * 4
    assert s["model"].to_list() == ["lr", "lr", "diffuse-mlp", "diffuse-mlp"]
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "confusion-diffuse-mlp.parquet",
        "confusion-lr.parquet",
        "diffuse-mlp-seed0.onnx",
        "diffuse-mlp-seed1.onnx",
        "graph.parquet",
        "lr-seed0.onnx",
        "lr-seed1.onnx",
        "training.parquet",
    ]
    hist = pl.read_parquet(out / "training.parquet")
    assert hist.columns == [
        "model",
        "seed",
        "epoch",
        "loss",
        "train_balanced_accuracy",
        "test_balanced_accuracy",
    ]
    assert hist.height == 4 * 4
    conf = pl.read_parquet(out / "confusion-lr.parquet")
    assert conf.columns == ["model", "seed", "split", "true", "predicted", "count"]
    test0 = conf.filter((pl.col("seed") == 0) & (pl.col("split") == "test"))
    assert test0.height == 16 and test0["count"].sum() == 96
    # the confusion matrix agrees with onnxruntime's predictions
    frame = predict(out / "lr-seed0.onnx", cohort, split="test")
    got = frame.group_by("label", "predicted").len()
    for t, p, n in got.rows():
        row = test0.filter((pl.col("true") == t) & (pl.col("predicted") == p))
        assert row["count"].item() == n
    # rerun: skipped, files untouched
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.onnx")}
    s2 = train_models(cohort, ["lr", "diffuse-mlp"], [0, 1], out, config=FAST, quiet=True)
    assert s2["status"].to_list() == ["skipped"] * 4
    assert s2["test_balanced_accuracy"].equals(s["test_balanced_accuracy"])
    assert before == {p.name: p.stat().st_mtime_ns for p in out.glob("*.onnx")}
    # other parameters: refused, then retrained with overwrite
    other = TrainConfig(epochs=3, milestones=(3,))
    with pytest.raises(GexplainError, match=r"lr-seed0.onnx exists .*\(epochs\)"):
        train_models(cohort, "lr", [0], out, config=other, quiet=True)
    s3 = train_models(cohort, "lr", [0], out, config=other, quiet=True, overwrite=True)
    assert s3["status"].to_list() == ["trained"]
    hist = pl.read_parquet(out / "training.parquet")
    assert hist.filter((pl.col("model") == "lr") & (pl.col("seed") == 0)).height == 3
    # a graph from another threshold is refused
    with pytest.raises(GexplainError, match=r"graph\.parquet was built"):
        train_models(
            cohort,
            "diffuse-lr",
            [0],
            out,
            config=TrainConfig(epochs=1, graph_threshold=0.7),
            quiet=True,
        )
    assert not list(out.glob(".*")), "no temporary files left behind"


@pytest.mark.slow
def test_parallel_workers_give_identical_files(cohort, tmp_path):
    pytest.importorskip("torch")
    a, b = tmp_path / "a", tmp_path / "b"
    kinds = ["lr", "diffuse-mlp"]
    train_models(cohort, kinds, [0, 1], a, config=FAST, quiet=True, threads=1)
    s = train_models(cohort, kinds, [0, 1], b, config=FAST, quiet=True, threads=2)
    assert s["status"].to_list() == ["trained"] * 4
    for p in sorted(a.glob("*.onnx")):
        assert p.read_bytes() == (b / p.name).read_bytes(), p.name
    assert pl.read_parquet(a / "training.parquet").equals(pl.read_parquet(b / "training.parquet"))
    assert not list(b.glob(".*"))


def test_cli_train_and_predict(cli, cohort, tmp_path):
    pytest.importorskip("torch")
    cohort.save(tmp_path / "c")
    out = tmp_path / "m"
    args = ["train", str(tmp_path / "c"), "--model", "lr", "-m", "mlp", "--seeds", "0-1"]
    args += ["--epochs", "3", "--milestones", "2", "--out", str(out), "--quiet"]
    r = cli.invoke(main, args)
    assert r.exit_code == 0, r.output
    assert r.output == ""
    assert sorted(p.name for p in out.glob("*.onnx")) == [
        "lr-seed0.onnx",
        "lr-seed1.onnx",
        "mlp-seed0.onnx",
        "mlp-seed1.onnx",
    ]
    r = cli.invoke(main, [*args[:-1], "--permute-labels", "--seeds", "0", "--quiet"])
    assert r.exit_code == 0, r.output
    assert (out / "mlp-permuted-seed0.onnx").exists()
    assert (out / "confusion-mlp-permuted.parquet").exists()
    r = cli.invoke(main, ["train", str(tmp_path / "c"), "-m", "cnn", "--out", str(out)])
    assert r.exit_code == 2 and "unknown model kind 'cnn'" in r.output
    pred = tmp_path / "pred.parquet"
    r = cli.invoke(
        main,
        [
            *("predict", str(tmp_path / "c"), str(out / "mlp-seed0.onnx")),
            *("--split", "test", "--json", "--out", str(pred)),
        ],
    )
    assert r.exit_code == 0, r.output
    scores = json.loads(r.output)
    frame = pl.read_parquet(pred)
    assert scores["n_samples"] == frame.height == 96
    assert scores["balanced_accuracy"] == pytest.approx(
        balanced_accuracy(frame["label"].to_numpy(), frame["predicted"].to_numpy())
    )
    r = cli.invoke(main, ["predict", str(tmp_path / "c"), str(out / "mlp-seed0.onnx")])
    assert r.exit_code == 0 and "test: balanced accuracy" in r.output
    r = cli.invoke(
        main, ["predict", str(tmp_path / "c"), str(out / "mlp-seed0.onnx"), "--out", str(pred)]
    )
    assert r.exit_code == 1 and "exists" in r.output
    # a cohort with other value transforms: a clear one-line error
    preprocess.log2p1(cohort).save(tmp_path / "logged")
    r = cli.invoke(main, ["predict", str(tmp_path / "logged"), str(out / "mlp-seed0.onnx")])
    assert r.exit_code == 1 and "log2p1" in r.output
