"""Stability across seeds, model kinds and attribution runs."""

from __future__ import annotations

import naive_metrics as naive
import numpy as np
import pytest

from gexplain.errors import InputError
from gexplain.metrics import class_scores, sample_stability, stability


def test_stability_hand_computed_pairs():
    a = np.array([[3.0, 2.0, 1.0, 0.0], [1.0, -1.0, 0.5, 0.0]])
    b = np.array([[3.0, 1.0, 2.0, 0.0], [1.0, -1.0, 0.5, 0.0]])
    c = np.array([[-3.0, -2.0, 1.0, 0.0], [0.0, 0.5, -1.0, 1.0]])
    runs = {
        ("mlp", 0): (["x", "y"], a),
        ("mlp", 1): (["x", "y"], b),
        ("lr", 0): (["y", "x"], c[::-1]),  # classes matched by name
        ("lr", 5): (["x"], c[:1]),
    }
    res, pairs = stability(runs, ks=[2])
    # across seeds: (mlp 0, mlp 1) and (lr 0, lr 5); class x of mlp: {0,1} vs {0,2}
    mlp = pairs.filter(model_a="mlp", model_b="mlp", metric="jaccard@k", k=2)
    assert dict(zip(mlp["class"], mlp["value"])) == {"x": pytest.approx(1 / 3), "y": 1.0}
    # sign agreement on the union {0, 1, 2}: a and b agree in sign everywhere
    sa = pairs.filter(model_a="mlp", model_b="mlp", metric="sign-agreement", k=2, **{"class": "x"})
    assert sa["value"].to_list() == [1.0]
    # across models, same seed only: (lr 0, mlp 0)
    models = pairs.filter(variant="across-models")
    assert set(zip(models["model_a"], models["seed_a"], models["model_b"], models["seed_b"])) == {
        ("lr", 0, "mlp", 0)
    }
    # class x: lr0 = [-3, -2, 1, 0] top2 {2, 3}; mlp0 top2 {0, 1}: jaccard 0;
    # union {0, 1, 2, 3}: signs (-,+) (-,+) (+,+) (0,0) -> 2/4
    x = models.filter(**{"class": "x"})
    got = {(m, k): v for m, k, v in zip(x["metric"], x["k"], x["value"])}
    assert got[("jaccard@k", 2)] == 0.0
    assert got[("sign-agreement", 2)] == 0.5
    assert got[("spearman", None)] == pytest.approx(naive.spearman(c[0], a[0]))
    assert got[("kendall", None)] == pytest.approx(naive.kendall_tau_b(c[0], a[0]))
    # means: across-seeds per class x over its two pairs; class null = mean over classes
    x_mean = res.score("jaccard@k", "across-seeds", cls="x", k=2)
    lr_x = pairs.filter(model_a="lr", model_b="lr", metric="jaccard@k", **{"class": "x"})
    assert x_mean == pytest.approx((1 / 3 + lr_x["value"][0]) / 2)
    assert res.score("jaccard@k", "across-seeds", k=2) == pytest.approx((x_mean + 1.0) / 2)
    assert set(pairs.columns) >= {"model_a", "seed_a", "model_b", "seed_b", "class", "metric"}


def test_stability_all_model_pairs_and_errors():
    r = np.random.default_rng(0)
    runs = {(kind, s): (["x"], r.normal(size=(1, 30))) for kind in ("lr", "mlp") for s in (0, 1)}
    _, same = stability(runs, ks=[5])
    _, every = stability(runs, ks=[5], model_pairs="all")
    count = lambda p: p.filter(variant="across-models", metric="spearman").height  # noqa: E731
    assert count(same) == 2 and count(every) == 4
    with pytest.raises(InputError, match="genes"):
        stability({("a", 0): (["x"], np.zeros((1, 3))), ("a", 1): (["x"], np.zeros((1, 4)))})
    nan_row = {
        ("a", 0): (["x", "y"], np.array([[1.0, 2, 3], [np.nan] * 3])),
        ("a", 1): (["x", "y"], np.array([[1.0, 2, 3], [3.0, 2, 1]])),
    }
    res, pairs = stability(nan_row, ks=[1])
    assert set(pairs["class"]) == {"x"}  # y has no ranking in run 0
    assert res.score("spearman", "across-seeds") == 1.0


def test_stability_identical_runs_score_one_from_class_scores():
    r = np.random.default_rng(1)
    v = r.normal(size=(20, 40))
    cls = np.repeat(["p", "q"], 10)
    names, s = class_scores(v, cls)
    res, _ = stability({("mlp", 0): (names, s), ("mlp", 1): (names, s.copy())}, ks=[5, 0.25])
    for metric, k in (("jaccard@k", 5), ("jaccard@k", 10), ("sign-agreement", 5)):
        assert res.score(metric, "across-seeds", k=k) == 1.0
    assert res.score("spearman", "across-seeds") == pytest.approx(1.0)
    assert res.score("kendall", "across-seeds") == pytest.approx(1.0)


def test_sample_stability_hand_and_count_vs_fraction():
    a = np.array([[3.0, 2.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
    b = np.array([[3.0, 1.0, 2.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
    r = sample_stability(a, b, k=2)
    # row 0: 1/3; row 1 (ties, identical): 1
    assert r.score("jaccard@k", "per-sample", k=2) == pytest.approx((1 / 3 + 1) / 2)
    assert r.score("kendall") == pytest.approx((4 / 6 + 1) / 2)
    assert sample_stability(a, b, k=0.5).scores.equals(r.scores)
    by_class = sample_stability(a, b, k=2, classes=["u", "v"])
    assert by_class.score("jaccard@k", cls="u", k=2) == pytest.approx(1 / 3)
    # by |value|: a sign flip changes nothing but the sign agreement
    ab = sample_stability(a, -a, k=2, by="abs")
    assert ab.score("jaccard@k", k=2) == 1.0
    assert ab.score("sign-agreement", k=2) == 0.0  # every top gene is non-zero, signs flip
    with pytest.raises(InputError):
        sample_stability(a, b[:1], k=2)


def test_sample_stability_matches_naive_on_random_rows():
    r = np.random.default_rng(4)
    a = r.integers(-2, 3, size=(5, 13)).astype(float)
    b = r.integers(-2, 3, size=(5, 13)).astype(float)
    res = sample_stability(a, b, k=4)
    jac, sign, sp_ = [], [], []
    for i in range(5):
        ta, tb = set(naive.topk(a[i], 4)), set(naive.topk(b[i], 4))
        u = sorted(ta | tb)
        jac.append(len(ta & tb) / len(u))
        sign.append(np.mean(np.sign(a[i, u]) == np.sign(b[i, u])))
        sp_.append(naive.spearman(a[i], b[i]))
    assert res.score("jaccard@k", k=4) == pytest.approx(np.mean(jac))
    assert res.score("sign-agreement", k=4) == pytest.approx(np.mean(sign))
    assert res.score("spearman") == pytest.approx(np.mean(sp_))
