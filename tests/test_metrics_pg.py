"""Prediction gaps: the paper's deletion curves (PGI/PGU/PGR) and OpenXAI's Gaussian gaps."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import naive_pg
import numba
import numpy as np
import polars as pl
import pytest
from explain_helpers import gexplain_graph
from gexplain.kernels.pg import gaussian_noise, random_orders
from onnx import TensorProto, helper, numpy_helper

from gexplain._rng import sample_seeds
from gexplain.errors import InputError
from gexplain.explain import CompiledModel
from gexplain.metrics import (
    class_scores,
    deletion_curves,
    openxai_prediction_gaps,
    prediction_gaps,
)
from gexplain.metrics._openxai_pg import _NOISE_STREAM, resolve_ks
from gexplain.metrics._pg import _RANDOM_STREAM


def linear_model(W: np.ndarray, b: np.ndarray | None = None) -> CompiledModel:
    """``logits = x @ W + b`` as a one-Gemm ONNX graph (no input prefix: model-zero = 0)."""
    W = np.asarray(W, dtype=np.float32)
    b = np.zeros(W.shape[1], np.float32) if b is None else np.asarray(b, np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["expression", "W", "b"], ["logits"], transB=1)],
        "lin",
        [helper.make_tensor_value_info("expression", TensorProto.FLOAT, ["batch", W.shape[0]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", W.shape[1]])],
        [numpy_helper.from_array(W.T.copy(), "W"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return CompiledModel.load(model)


def _seeds(seed: int, stream: str, n: int) -> np.ndarray:
    return np.array([sample_seeds(seed, stream, i, i + 1)[0] for i in range(n)], dtype=np.uint32)


# ---------------------------------------------------------------- hand-computed cases
def test_hand_linear_logit_pgi_pgu_pgr() -> None:
    # f_0(x) = 4 x0 + 3 x1 - 2 x2 + x3, x = 1, baseline 0, g = 1: IG = w ⊙ x
    W = np.array([[4.0, 0], [3, 0], [-2, 0], [1, 0]])
    model = linear_model(W)
    x = np.ones((1, 4))
    attr = np.array([[4.0, 3, -2, 1]])
    res = prediction_gaps(
        model, x, attr, [0], block=1, output="logit", orders=("local",), random_draws=30, seed=3
    )
    # PGI order 0,1,3,2: f drops by 4, 7, 8, 6 -> (1/4)·25
    assert res.score("PGI", "local") == pytest.approx(6.25, abs=1e-12)
    assert res.score("PGI", "local", cls="0") == pytest.approx(6.25, abs=1e-12)
    # PGU order 2,3,1,0: drops -2, -1, 2, 6 -> max(0, .) -> (1/4)·8
    assert res.score("PGU", "local") == pytest.approx(2.0, abs=1e-12)
    # PGR: the mean PG of the drawn permutations, computed by hand
    orders = random_orders(_seeds(3, _RANDOM_STREAM, 1), 30, 4)[0]
    w = W[:, 0]
    pg = [np.maximum(np.cumsum(w[o]), 0).sum() / 4 for o in orders]
    assert res.score("PGR", "random") == pytest.approx(np.mean(pg), abs=1e-12)
    assert res.score("PGU", "local") < res.score("PGR", "random") < res.score("PGI", "local")
    # the random control of PGI is PGR
    assert res.score("PGI", "local", control="random") == res.score("PGR", "random")
    # logit output: no adjusted PGU
    assert res.scores.filter(pl.col("metric") == "PGU_adjusted").height == 0


def test_hand_block_not_dividing_genes() -> None:
    # d = 5, g = 2: N = 2 blocks, the last gene of each order is never removed
    W = np.array([[5.0, 0], [4, 0], [3, 0], [-2, 0], [1, 0]])
    model = linear_model(W)
    attr = np.array([[5.0, 4, 3, -2, 1]])
    res = prediction_gaps(
        model,
        np.ones((1, 5)),
        attr,
        [0],
        block=2,
        output="logit",
        orders=("local",),
        random_draws=0,
    )
    # PGI: {0,1} -> 9, {2,4} -> 13: (2/5)·22 ; PGU: {3,4} -> -1 -> 0, {2,1} -> 6: (2/5)·6
    assert res.score("PGI", "local") == pytest.approx(8.8, abs=1e-12)
    assert res.score("PGU", "local") == pytest.approx(2.4, abs=1e-12)
    assert res.scores.filter(pl.col("metric") == "PGR").height == 0
    curve = res.curves.filter(pl.col("class").is_null() & (pl.col("curve") == "PGI")).sort("x")
    assert curve["x"].to_list() == pytest.approx([0.0, 0.4, 0.8])
    assert curve["value"].to_list() == pytest.approx([11.0, 2.0, -2.0])


def test_ties_broken_by_gene_index() -> None:
    W = np.array([[4.0, 0], [3, 0], [-2, 0], [1, 0]])
    model = linear_model(W)
    # all-equal attributions: PGI and PGU both remove genes 0, 1, 2, 3 in that order
    res = prediction_gaps(
        model,
        np.ones((1, 4)),
        np.ones((1, 4)),
        [0],
        block=1,
        output="logit",
        orders=("local", "global-mean"),
        random_draws=0,
    )
    # drops 4, 7, 5, 6 -> 22/4
    for metric in ("PGI", "PGU"):
        for variant in ("local", "global-mean"):
            assert res.score(metric, variant) == pytest.approx(5.5, abs=1e-12)
    # partial tie: [2, 1, 2, 1] -> PGI 0,2,1,3 ; PGU 1,3,0,2
    res = prediction_gaps(
        model,
        np.ones((1, 4)),
        [[2.0, 1, 2, 1]],
        [0],
        block=1,
        output="logit",
        orders=("local",),
        random_draws=0,
    )
    assert res.score("PGI", "local") == pytest.approx((4 + 2 + 5 + 6) / 4)
    assert res.score("PGU", "local") == pytest.approx((3 + 4 + 8 + 6) / 4)


def test_correct_linear_attribution_pgi_above_pgu_and_adjusted() -> None:
    rng = np.random.default_rng(0)
    G, C, n = 30, 3, 12
    W = rng.normal(size=(G, C)) * 0.5
    model = linear_model(W, rng.normal(size=C) * 0.1)
    X = rng.normal(size=(n, G)) + 1.0
    t = np.argmax(model.logits(X), axis=1)
    # the logit-IG of a linear model toward baseline 0: w_t ⊙ x
    attr = model.weight[:, t].T * X
    res = prediction_gaps(model, X, attr, t, block=3, random_draws=10, seed=1)
    assert res.score("PGI", "local") > res.score("PGR", "random") > res.score("PGU", "local")
    # adjusted PGU = PGU / (1 - f_y(baseline)), per sample then averaged
    pgu = prediction_gaps(model, X, attr, t, block=3, orders=("local",), random_draws=0)
    p0 = model.predict_proba(np.zeros((1, G)))[0]
    names = model.class_names
    for c in sorted(set(t.tolist())):
        assert pgu.score("PGU_adjusted", "local", cls=names[c]) == pytest.approx(
            pgu.score("PGU", "local", cls=names[c]) / (1 - p0[c]), rel=1e-12
        )


# ---------------------------------------------------------------- kernel vs naive twin
@pytest.mark.parametrize(
    ("hidden", "G", "n", "block"),
    [((5,), 23, 4, 5), ((), 17, 3, 4), ((4,), 11, 1, 3), ((6,), 9, 2, 9)],
)
def test_kernel_matches_full_forward(hidden, G, n, block) -> None:
    rng = np.random.default_rng(G)
    proto, _ = gexplain_graph(rng, G, 3, hidden=hidden, bn=True, scale=3.0)
    model = CompiledModel.load(proto)
    X = rng.normal(size=(n, G)).astype(np.float32)
    attr = np.round(rng.normal(size=(n, G)), 1)  # rounded: ties
    attr[:, :3] = 0.0
    t = rng.integers(0, 3, size=n)
    res = prediction_gaps(
        model,
        X,
        attr,
        t,
        block=block,
        random_draws=3,
        seed=7,
        classes=["a"] * n,
    )
    base = model.model_zero
    N = G // block
    pgi_local, pgu_local, pgr = [], [], []
    for i in range(n):
        for order, acc in (
            (naive_pg.local_order(attr[i], True), pgi_local),
            (naive_pg.local_order(attr[i], False), pgu_local),
        ):
            curve = naive_pg.deletion_curve(model, X[i], base, order, t[i], block)
            assert len(curve) == N + 1
            acc.append(naive_pg.prediction_gap(curve, block, G))
        draws = random_orders(_seeds(7, _RANDOM_STREAM, n)[i : i + 1], 3, G)[0]
        pgr.append(
            np.mean(
                [
                    naive_pg.prediction_gap(
                        naive_pg.deletion_curve(model, X[i], base, o, t[i], block), block, G
                    )
                    for o in draws
                ]
            )
        )
    assert res.score("PGI", "local", cls="a") == pytest.approx(np.mean(pgi_local), abs=1e-12)
    assert res.score("PGU", "local", cls="a") == pytest.approx(np.mean(pgu_local), abs=1e-12)
    assert res.score("PGR", "random", cls="a") == pytest.approx(np.mean(pgr), abs=1e-12)
    # global orders: one per class from the aggregated attributions
    for variant, how in (("global-mean", "mean"), ("global-rankmedian", "rank-median")):
        _, s = class_scores(attr, ["a"] * n, how)
        gaps = {"PGI": [], "PGU": []}
        for i in range(n):
            for metric, desc in (("PGI", True), ("PGU", False)):
                order = naive_pg.local_order(s[0], desc)
                curve = naive_pg.deletion_curve(model, X[i], base, order, t[i], block)
                gaps[metric].append(naive_pg.prediction_gap(curve, block, G))
        for metric in ("PGI", "PGU"):
            assert res.score(metric, variant, cls="a") == pytest.approx(
                np.mean(gaps[metric]), abs=1e-12
            )
    # the low-level curves equal the naive ones point by point
    orders = np.stack([rng.permutation(G) for _ in range(n)])
    curves = deletion_curves(model, X, orders, t, block=block)
    for i in range(n):
        ref = naive_pg.deletion_curve(model, X[i], base, orders[i], t[i], block)
        np.testing.assert_allclose(curves[i], ref, rtol=0, atol=1e-12)


def test_curves_frame_means() -> None:
    rng = np.random.default_rng(2)
    proto, _ = gexplain_graph(rng, 12, 2, hidden=(3,), scale=3.0)
    model = CompiledModel.load(proto)
    X = rng.normal(size=(5, 12))
    attr = rng.normal(size=(5, 12))
    t = np.array([0, 0, 1, 1, 1])
    res = prediction_gaps(model, X, attr, t, block=4, orders=("local",), random_draws=0)
    order = np.argsort(-attr, axis=1, kind="stable")
    curves = deletion_curves(model, X, order, t, block=4)
    got = res.curves.filter(pl.col("curve") == "PGI").sort("class", "x", nulls_last=True)
    c0 = got.filter(pl.col("class") == "0")
    np.testing.assert_allclose(c0["value"], curves[:2].mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(c0["sd"], curves[:2].std(axis=0), atol=1e-12)
    avg = got.filter(pl.col("class").is_null())
    np.testing.assert_allclose(
        avg["value"], (curves[:2].mean(axis=0) + curves[2:].mean(axis=0)) / 2, atol=1e-12
    )
    # class-average score = unweighted mean of the class means
    assert res.score("PGI", "local") == pytest.approx(
        (res.score("PGI", "local", cls="0") + res.score("PGI", "local", cls="1")) / 2
    )


# ---------------------------------------------------------------- determinism
def _small_problem(n=7, G=26):
    rng = np.random.default_rng(5)
    proto, _ = gexplain_graph(rng, G, 3, hidden=(4,), scale=3.0)
    model = CompiledModel.load(proto)
    return model, rng.normal(size=(n, G)), rng.normal(size=(n, G)), rng.integers(0, 3, n)


def test_threads_and_chunks_do_not_change_results() -> None:
    model, X, A, t = _small_problem()
    saved = numba.get_num_threads()
    out = []
    try:
        for threads, chunk in ((1, None), (2, None), (2, 1), (1, 3)):
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            pg = prediction_gaps(model, X, A, t, block=4, random_draws=5, chunk_size=chunk)
            ox = openxai_prediction_gaps(
                model, X, A, t, k=[3, 0.5], n_perturb=8, chunk_size=chunk, auc=True
            )
            out.append((pg, ox))
    finally:
        numba.set_num_threads(saved)
    for pg, ox in out[1:]:
        assert pg.scores.equals(out[0][0].scores)
        assert pg.curves.equals(out[0][0].curves)
        assert ox.scores.equals(out[0][1].scores)


def test_sample_index_selects_the_random_stream() -> None:
    model, X, A, t = _small_problem()
    full = prediction_gaps(model, X, A, t, block=4, random_draws=5, classes=list("abcdefg"))
    # scoring rows 3.. alone with their global indices gives the same per-sample values
    part = prediction_gaps(
        model,
        X[3:],
        A[3:],
        t[3:],
        block=4,
        random_draws=5,
        classes=list("defg"),
        sample_index=np.arange(3, 7),
    )
    for c in "defg":
        assert part.score("PGR", "random", cls=c) == full.score("PGR", "random", cls=c)


# ---------------------------------------------------------------- OpenXAI
def _openxai_model():
    # class 0 depends strongly on genes 0..2, weakly on the rest
    G = 12
    W = np.zeros((G, 2))
    W[:3, 0] = [3.0, -2.5, 2.0]
    W[3:, 0] = 0.05
    return linear_model(W), G


def test_openxai_matches_naive_twin() -> None:
    rng = np.random.default_rng(1)
    proto, _ = gexplain_graph(rng, 14, 3, hidden=(5,), scale=3.0)
    model = CompiledModel.load(proto)
    n = 3
    X = rng.normal(size=(n, 14))
    A = np.round(rng.normal(size=(n, 14)), 1)
    t = np.array([0, 2, 1])
    res = openxai_prediction_gaps(
        model,
        X,
        A,
        t,
        k=[1, 4, 9],
        n_perturb=6,
        std=0.3,
        seed=4,
        classes=list("abc"),
        random_control=False,
    )
    noise = gaussian_noise(_seeds(4, _NOISE_STREAM, n), 6, 14, 0.3)
    for i, c in enumerate("abc"):
        top = naive_pg.local_order(np.abs(A[i]), True)
        pgi, pgu = naive_pg.openxai_gaps(model, X[i], t[i], top, [1, 4, 9], noise[i])
        for q, k in enumerate([1, 4, 9]):
            assert res.score("openxai-PGI", "gaussian", cls=c, k=k) == pytest.approx(
                pgi[q], abs=1e-12
            )
            assert res.score("openxai-PGU", "gaussian", cls=c, k=k) == pytest.approx(
                pgu[q], abs=1e-12
            )
    assert res.scores.filter(pl.col("control") == "random").height == 0


def test_openxai_pgi_is_not_pgu_and_order_matters() -> None:
    # OpenXAI once shipped PGI computing PGU: on a model driven by genes 0..2 with the
    # right attribution PGI must exceed PGU, and the reversed ranking must swap them
    model, G = _openxai_model()
    X = np.ones((4, G))
    good = np.tile(np.abs(model.weight[:, 0]), (4, 1))
    kw = dict(k=3, n_perturb=50, std=0.5, output="logit", random_control=False)
    right = openxai_prediction_gaps(model, X, good, [0] * 4, **kw)
    assert right.score("openxai-PGI", "gaussian", k=3) > 3 * right.score(
        "openxai-PGU", "gaussian", k=3
    )
    # sign does not matter (ranking by |attribution|)
    flipped = openxai_prediction_gaps(model, X, -good, [0] * 4, **kw)
    assert flipped.scores.equals(right.scores)
    # the reversed ranking puts genes 0..2 last: PGI small, PGU large
    wrong = openxai_prediction_gaps(model, X, 1.0 / good, [0] * 4, **kw)
    assert wrong.score("openxai-PGI", "gaussian", k=3) < wrong.score("openxai-PGU", "gaussian", k=3)
    assert wrong.score("openxai-PGI", "gaussian", k=3) < right.score("openxai-PGI", "gaussian", k=3)
    # logit of a linear model: |Σ_top w δ| has mean sqrt(2/π)·std·‖w_top‖
    expected = np.sqrt(2 / np.pi) * 0.5 * np.linalg.norm([3.0, -2.5, 2.0])
    assert right.score("openxai-PGI", "gaussian", k=3) == pytest.approx(expected, rel=0.2)


def test_openxai_integer_and_fractional_k_agree() -> None:
    # OpenXAI once returned None for an integer k
    model, G = _openxai_model()
    rng = np.random.default_rng(3)
    X = rng.normal(size=(5, G))
    A = rng.normal(size=(5, G))
    a = openxai_prediction_gaps(model, X, A, [0] * 5, k=3, n_perturb=10)
    b = openxai_prediction_gaps(model, X, A, [0] * 5, k=0.25, n_perturb=10)
    assert a.scores.equals(b.scores)
    assert a.scores["value"].is_not_null().all()
    assert set(a.scores["k"].to_list()) == {3}
    assert resolve_ks([1, 0.5, 4], 8) == [1, 4]
    for bad in (0, 13, 1.5, 0.0, True, "3"):
        with pytest.raises(InputError):
            resolve_ks(bad, G)


def test_openxai_auc_is_trapezoid_over_k_fraction() -> None:
    model, G = _openxai_model()
    rng = np.random.default_rng(4)
    X = rng.normal(size=(3, G))
    A = rng.normal(size=(3, G))
    res = openxai_prediction_gaps(
        model, X, A, [0] * 3, k=[2, 6, 12], n_perturb=5, auc=True, classes=list("xyz")
    )
    for c in "xyz":
        v = [res.score("openxai-PGI", "gaussian", cls=c, k=k) for k in (2, 6, 12)]
        area = 0.5 * (v[0] + v[1]) * 4 / 12 + 0.5 * (v[1] + v[2]) * 6 / 12
        assert res.score("openxai-PGI-AUC", "auc", cls=c) == pytest.approx(area, rel=1e-12)
    # the random control exists for each score
    assert res.score("openxai-PGU-AUC", "auc", control="random") >= 0
    with pytest.raises(InputError, match="two"):
        openxai_prediction_gaps(model, X, A, [0] * 3, k=3, auc=True)


# ---------------------------------------------------------------- errors and torch-free
def test_bad_inputs() -> None:
    model, X, A, t = _small_problem()
    with pytest.raises(InputError, match="attributions"):
        prediction_gaps(model, X, A[:, :-1], t)
    with pytest.raises(InputError, match="expects"):
        prediction_gaps(model, X[:, :-1], A[:, :-1], t)
    with pytest.raises(InputError, match="targets"):
        prediction_gaps(model, X, A, t[:-1])
    with pytest.raises(InputError, match="block"):
        prediction_gaps(model, X, A, t, block=0)
    with pytest.raises(InputError, match="orders"):
        prediction_gaps(model, X, A, t, orders=("nope",))
    with pytest.raises(InputError, match="baseline"):
        prediction_gaps(model, X, A, t, baseline=np.zeros(3))
    with pytest.raises(InputError, match="permutation"):
        deletion_curves(model, X, np.zeros(X.shape, dtype=int), t)


def test_prediction_gaps_run_without_torch(tmp_path) -> None:
    model, X, A, t = _small_problem(n=3)
    path = tmp_path / "m.onnx"
    path.write_bytes(model.proto.SerializeToString())
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "a.npy", A)
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None
        import numpy as np
        import gexplain.metrics as m
        X = np.load({str(tmp_path / "x.npy")!r}); A = np.load({str(tmp_path / "a.npy")!r})
        r = m.prediction_gaps({str(path)!r}, X, A, np.array({t.tolist()}), block=5,
                              random_draws=2)
        o = m.openxai_prediction_gaps({str(path)!r}, X, A, np.array({t.tolist()}), k=3,
                                      n_perturb=3)
        print(r.score("PGI", "local"), o.score("openxai-PGI", "gaussian", k=3))
        assert "torch" not in [k for k, v in sys.modules.items() if v is not None]
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.split()) == 2
