"""integrated_gradients / explain_cohort / gexplain explain: options, storage, resume, errors."""

from __future__ import annotations

import json

import numpy as np
import onnx
import polars as pl
import pytest
from conftest import make_cohort
from explain_helpers import gexplain_graph

from gexplain.cli import main
from gexplain.cohort import Cohort
from gexplain.errors import AlignmentError, InputError, ModelError
from gexplain.explain import (
    Attributions,
    CompiledModel,
    explain_cohort,
    integrated_gradients,
    output_values,
)
from gexplain.explain import _run as run_mod
from gexplain.explain._run import auto_chunk_size

N, G, C = 14, 7, 3


@pytest.fixture
def cohort() -> Cohort:
    return make_cohort(n=N, g=G, n_classes=C, seed=3)


@pytest.fixture
def model(cohort, rng):
    proto, _ = gexplain_graph(
        rng,
        G,
        C,
        (5,),
        softmax=True,
        gene_ids=cohort.gene_ids,
        class_names=cohort.classes,
        scale=3.0,
    )
    return CompiledModel.load(proto)


def _manual_ig(model: CompiledModel, x, xb, target, output="probability", n=4000):
    """Reference IG: midpoint rule in input space with the compiled head's gradient."""
    alphas = (np.arange(n) + 0.5) / n
    path = xb[None, :] + alphas[:, None] * (x - xb)[None, :]
    Z = model.first_layer(path)
    _, gz = model.head.value_and_grad(Z, np.full(n, target), output)
    return (x - xb) * (model.weight @ gz.mean(axis=0))


def test_cohort_api_values_rows_and_reference(cohort, model):
    attr = integrated_gradients(model, cohort)  # label target, model-zero, exact, probability
    assert attr.values.shape == (N, G) and attr.values.dtype == np.float32
    rows = attr.rows
    assert rows["sample_id"].to_list() == cohort.sample_ids
    assert rows["target"].to_list() == cohort.labels.to_list()
    assert set(rows["method"]) == {"exact"}
    logits = model.ort_logits(cohort.expression)
    np.testing.assert_allclose(
        rows["f_x"], output_values(logits, rows["target_index"].to_numpy(), "probability")
    )
    zero_logits = model.ort_logits(model.model_zero[None])
    np.testing.assert_allclose(
        rows["f_baseline"],
        output_values(np.repeat(zero_logits, N, 0), rows["target_index"].to_numpy(), "probability"),
    )
    gap = np.abs(rows["f_x"] - rows["f_baseline"]).to_numpy()
    assert np.all(np.abs(attr.delta) <= 1e-6 * np.maximum(1, gap))
    pred = [model.class_names[i] for i in logits.argmax(1)]
    assert rows["predicted"].to_list() == pred
    assert rows["correct"].to_list() == [p == lab for p, lab in zip(pred, cohort.labels)]
    for r in (0, 5):
        ref = _manual_ig(
            model, cohort.expression[r].astype(float), model.model_zero, rows["target_index"][r]
        )
        np.testing.assert_allclose(attr.values[r], ref, rtol=2e-3, atol=2e-4 * np.abs(ref).max())
    assert attr.meta["method"] == "exact" and attr.meta["ort_precision"] == "float64"
    assert attr.gene_ids == cohort.gene_ids


def test_targets(cohort, model):
    a = integrated_gradients(model, cohort, target="all", output="logit")
    assert a.n_rows == N * C
    assert a.rows["target"].to_list()[:C] == model.class_names
    b = integrated_gradients(model, cohort, target="predicted", output="logit")
    c = integrated_gradients(model, cohort, target=model.class_names[1], output="logit")
    d = integrated_gradients(model, cohort, target=1, output="logit")
    np.testing.assert_array_equal(c.values, d.values)
    np.testing.assert_allclose(a.values[1::C], c.values, rtol=1e-6, atol=1e-7)  # shared work
    pred = b.rows["target_index"].to_numpy()
    np.testing.assert_allclose(b.values, a.values.reshape(N, C, G)[np.arange(N), pred], atol=1e-6)
    with pytest.raises(InputError, match="unknown target 'nope'"):
        integrated_gradients(model, cohort, target="nope")
    with pytest.raises(InputError, match="out of range"):
        integrated_gradients(model, cohort, target=7)
    with pytest.raises(InputError, match="needs labelled samples"):
        integrated_gradients(model, cohort.expression, target="label")


def test_baselines(cohort, model, tmp_path):
    x = cohort.expression.astype(np.float64)
    train = cohort.split("train").expression.astype(np.float64)
    kw = {"target": 0, "output": "logit"}
    zeros = integrated_gradients(model, cohort, baseline="zeros", **kw)
    vec = integrated_gradients(model, cohort, baseline=np.zeros(G), **kw)
    np.testing.assert_array_equal(zeros.values, vec.values)
    # linear in logit space per segment: the logit IG with a fixed baseline sums to the gap
    tm = integrated_gradients(model, cohort, baseline="train-mean", **kw)
    np.testing.assert_allclose(
        tm.rows["f_baseline"], model.ort_logits(train.mean(0)[None])[0, 0], rtol=1e-6
    )
    cm = integrated_gradients(model, cohort, baseline="class-mean", **kw)
    labels = cohort.labels.to_numpy()
    tl = cohort.split("train").labels.to_numpy()
    for r in (0, 1, 2):
        mean = train[tl == labels[r]].mean(0)
        assert cm.rows["f_baseline"][r] == pytest.approx(model.ort_logits(mean[None])[0, 0])
    # several baselines: the average of the single-baseline attributions
    both = integrated_gradients(model, cohort, baseline=["zeros", "train-mean"], **kw)
    np.testing.assert_allclose(both.values, (zeros.values + tm.values) / 2, rtol=1e-5, atol=1e-6)
    assert both.rows["baseline"][0] == "zeros+train-mean"
    # per-sample baselines: an (n, G) array and a cohort with the same sample ids
    per = x[::-1].copy()
    a = integrated_gradients(model, cohort, baseline=per, **kw)
    b = integrated_gradients(
        model, cohort, baseline=Cohort(per[::-1][::-1], cohort.samples, cohort.genes), **kw
    )
    np.testing.assert_allclose(a.values, b.values, rtol=1e-6)
    np.testing.assert_allclose(a.rows["f_baseline"], model.ort_logits(per)[:, 0])
    # files: .npy in model order, gene_id/value table aligned by id
    np.save(tmp_path / "b.npy", x[3])
    pl.DataFrame({"gene_id": cohort.gene_ids[::-1], "value": x[3][::-1]}).write_csv(
        tmp_path / "b.tsv", separator="\t"
    )
    f1 = integrated_gradients(model, cohort, baseline=str(tmp_path / "b.npy"), **kw)
    f2 = integrated_gradients(model, cohort, baseline=str(tmp_path / "b.tsv"), **kw)
    np.testing.assert_array_equal(f1.values, f2.values)
    assert np.all(f1.values[3] == 0)  # the sample is its own baseline
    with pytest.raises(InputError, match=r"shape \(5,\)"):
        integrated_gradients(model, cohort, baseline=np.zeros(5))
    with pytest.raises(InputError, match="unknown baseline"):
        integrated_gradients(model, cohort, baseline="median")


def test_options_correct_only_normalize_topk(cohort, model):
    full = integrated_gradients(model, cohort)
    sel = integrated_gradients(model, cohort, correct_only=True, normalize=True, top_k=3)
    keep = full.rows["correct"].to_numpy()
    assert 0 < keep.sum() < N  # the fixture has both kinds
    assert (
        sel.rows["sample_id"].to_list()
        == full.rows.filter(pl.col("correct"))["sample_id"].to_list()
    )
    v = full.values[keep].astype(np.float64)
    np.testing.assert_allclose(sel.values, v / np.linalg.norm(v, axis=1, keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(sel.values, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(sel.delta, full.delta[keep])  # delta of the raw sums
    top = sel.topk
    assert top.columns == ["sample_id", "target", "rank", "gene_id", "attribution"]
    assert top.height == 3 * sel.n_rows
    first = top.filter(pl.col("sample_id") == sel.sample_ids[0]).sort("rank")
    order = np.argsort(-sel.values[0])[:3]
    assert first["gene_id"].to_list() == [cohort.gene_ids[j] for j in order]
    np.testing.assert_array_equal(first["attribution"].to_numpy(), sel.values[0][order])


def test_quadrature_methods_and_adaptive_steps(cohort, model):
    exact = integrated_gradients(model, cohort)
    gl = integrated_gradients(model, cohort, method="gausslegendre", steps=50)
    assert set(gl.rows["steps"]) == {50}
    auto = integrated_gradients(model, cohort, method="gausslegendre", steps="auto", tolerance=1e-3)
    gap = np.abs(auto.rows["f_x"] - auto.rows["f_baseline"]).to_numpy()
    assert np.all(np.abs(auto.delta) <= 1e-3 * np.maximum(1, gap))
    assert auto.rows["steps"].max() < 4096
    assert auto.rows["steps"].min() >= 16 and auto.meta["steps"] == "auto"
    assert np.abs(auto.values - exact.values).max() < np.abs(gl.values - exact.values).max() + 1e-6


def test_exact_refused_for_smooth_heads(rng):
    proto, _ = gexplain_graph(rng, 5, 2, (3,), act="Tanh", bn=False)
    m = CompiledModel.load(proto)
    with pytest.raises(ModelError, match="exact IG needs"):
        integrated_gradients(m, rng.normal(size=(2, 5)), method="exact")
    a = integrated_gradients(m, rng.normal(size=(2, 5)))  # default: adaptive Gauss–Legendre
    assert a.meta["method"] == "gausslegendre" and a.meta["steps"] == "auto"


def test_array_input_needs_no_metadata(rng):
    proto, _ = gexplain_graph(rng, 6, 2, (4,))
    X = rng.normal(size=(3, 6))
    a = integrated_gradients(proto, X, labels=[0, 1, 1], target="label", sample_ids=["a", "b", "c"])
    assert a.gene_ids == [str(j) for j in range(6)] and a.sample_ids == ["a", "b", "c"]
    assert a.rows["label"].to_list() == ["0", "1", "1"]
    with pytest.raises(InputError, match="expects 6 genes"):
        integrated_gradients(proto, X[:, :4])
    bad = X.copy()
    bad[1, 2] = np.nan
    with pytest.raises(InputError, match="sample 'b'"):
        integrated_gradients(proto, bad, sample_ids=["a", "b", "c"])


def test_gene_alignment(cohort, model):
    ref = integrated_gradients(model, cohort)
    perm = np.random.default_rng(0).permutation(G)
    shuffled = cohort.select(genes=[cohort.gene_ids[j] for j in perm])
    again = integrated_gradients(model, shuffled)
    np.testing.assert_array_equal(again.values, ref.values)
    assert again.gene_ids == cohort.gene_ids  # columns in model order
    with pytest.raises(AlignmentError, match="missing"):
        integrated_gradients(model, cohort.select(genes=cohort.gene_ids[1:]))


def test_chunked_run_to_disk_matches_memory(cohort, model, tmp_path):
    cohort.save(tmp_path / "c")
    out = explain_cohort(
        model, tmp_path / "c", tmp_path / "attr", target="all", chunk_size=4, top_k=2, quiet=True
    )
    disk = Attributions.load(out)
    mem = integrated_gradients(model, cohort, target="all", top_k=2)
    np.testing.assert_array_equal(disk.values, mem.values)
    assert disk.rows.equals(mem.rows) and disk.topk.equals(mem.topk)
    assert disk.gene_ids == cohort.gene_ids and disk.meta["target"] == "all"
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())
    with pytest.raises(Exception, match="exists"):
        explain_cohort(model, tmp_path / "c", tmp_path / "attr", quiet=True)
    # --correct-only: rows unknown in advance, chunk files assembled at the end
    out = explain_cohort(
        model, tmp_path / "c", tmp_path / "ok", correct_only=True, chunk_size=3, quiet=True
    )
    mem = integrated_gradients(model, cohort, correct_only=True)
    disk = Attributions.load(out)
    np.testing.assert_array_equal(disk.values, mem.values)
    assert disk.rows.equals(mem.rows) and 0 < disk.n_rows < N


def test_interrupted_run_resumes_without_recomputing(cohort, model, tmp_path, monkeypatch):
    cohort.save(tmp_path / "c")
    calls = []
    real = run_mod.explain_chunk

    def flaky(*args, **kw):
        calls.append(int(args[2][0]))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(run_mod, "explain_chunk", flaky)
    with pytest.raises(KeyboardInterrupt):
        explain_cohort(model, tmp_path / "c", tmp_path / "attr", chunk_size=4, quiet=True)
    assert not (tmp_path / "attr").exists()
    assert (tmp_path / ".attr.partial").is_dir()
    calls.clear()
    explain_cohort(model, tmp_path / "c", tmp_path / "attr", chunk_size=4, quiet=True)
    assert calls == [8, 12]  # chunks 0 and 1 were kept
    assert not (tmp_path / ".attr.partial").exists()
    monkeypatch.undo()
    whole = integrated_gradients(model, cohort)
    np.testing.assert_array_equal(Attributions.load(tmp_path / "attr").values, whole.values)


def test_chunk_memory_bound():
    # a 20,000-gene cohort with all 33 targets: chunks small enough for ~256 MB of work arrays
    n = auto_chunk_size(20_000, 33)
    # float32 attributions of 33 targets + float64 input copy and pull-back buffer
    assert 1 <= n and n * 20_000 * (33 * 4 + 16) <= 256 * 2**20


def test_cli(cli, cohort, model, tmp_path):
    cohort.save(tmp_path / "c")
    onnx.save(model.proto, tmp_path / "m.onnx")
    args = ["explain", str(tmp_path / "c"), str(tmp_path / "m.onnx"), "--out", str(tmp_path / "a")]
    r = cli.invoke(main, [*args, "--quiet", "--top-k", "3", "--normalize", "--correct-only"])
    assert r.exit_code == 0, r.output
    a = Attributions.load(tmp_path / "a")
    assert a.meta["normalized"] and a.topk is not None and a.rows["correct"].all()
    meta = json.loads((tmp_path / "a" / "attributions.json").read_text())
    assert meta["method"] == "exact" and meta["model"].endswith("m.onnx")
    r = cli.invoke(main, [*args, "--quiet"])
    assert r.exit_code == 1 and "exists" in r.output
    r = cli.invoke(
        main,
        [
            *args,
            "--overwrite",
            "--method",
            "riemann_middle",
            "--steps",
            "8",
            "--target",
            "all",
            "--baseline",
            "zeros,train-mean",
            "--output",
            "logit",
        ],
    )
    assert r.exit_code == 0, r.output
    a = Attributions.load(tmp_path / "a")
    assert a.n_rows == N * C and set(a.rows["steps"]) == {8}
    assert a.rows["baseline"][0] == "zeros+train-mean"
    r = cli.invoke(main, [*args, "--overwrite", "--target", "nope"])
    assert r.exit_code == 1 and "unknown target 'nope'" in r.output
    r = cli.invoke(main, [*args, "--overwrite", "--steps", "x"])
    assert r.exit_code == 2


def test_runs_without_torch(tmp_path, rng):
    import subprocess
    import sys
    import textwrap

    proto, _ = gexplain_graph(rng, 6, 3, (4,), softmax=True)
    onnx.save(proto, tmp_path / "m.onnx")
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None
        import numpy as np
        from gexplain.explain import integrated_gradients
        a = integrated_gradients({str(tmp_path / "m.onnx")!r}, np.ones((2, 6)), target="all")
        assert a.values.shape == (6, 6) and abs(a.delta).max() < 1e-9
        assert not any(m.startswith("torch") for m, v in sys.modules.items() if v is not None)
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_whole_run_same_on_one_and_two_threads(cohort, model):
    import numba
    from threadpoolctl import threadpool_limits

    before = numba.get_num_threads()
    res = []
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            with threadpool_limits(threads):
                res.append(integrated_gradients(model, cohort, target="all", chunk_size=5))
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(res[0].values, res[1].values)
    assert res[0].rows.equals(res[1].rows)
