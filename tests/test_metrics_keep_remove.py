"""Keep/remove curves against full forwards of the modified inputs."""

from __future__ import annotations

import naive_metrics as naive
import numba
import numpy as np
import polars as pl
import pytest
from explain_helpers import gexplain_graph, reference_forward

from gexplain._rng import generator
from gexplain.errors import InputError
from gexplain.explain import CompiledModel
from gexplain.metrics import keep_remove_curves
from gexplain.metrics._keep_remove import log_grid


def _balanced(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean([np.mean(pred[y == c] == c) for c in np.unique(y)]))


def _model(rng, g=13, c=3, hidden=(4,)):
    proto, p = gexplain_graph(rng, g, c, hidden, class_names=["a", "b", "c"][:c])
    cm = CompiledModel.load(proto)

    def forward(x):
        return reference_forward(p, x, len(hidden)).argmax(axis=1)

    return cm, forward


def _curve(res, variant, curve, cls=None):
    f = res.curves.filter(variant=variant, curve=curve)
    f = f.filter(pl.col("class").is_null() if cls is None else pl.col("class") == cls)
    return dict(zip(f["x"].to_list(), f["value"].to_list()))


def test_log_grid():
    assert log_grid(1) == [1]
    assert log_grid(2) == [1, 2]
    assert log_grid(10) == [1, 2, 5, 10]
    assert log_grid(15000)[-3:] == [5000, 10000, 15000]


@pytest.mark.parametrize("g", [13, 8])
def test_curves_match_full_forwards_of_modified_inputs(rng, g):
    cm, forward = _model(rng, g=g)
    x = rng.normal(size=(17, g)) * 2 + cm.model_zero
    y = np.arange(17) % 3
    scores = rng.integers(0, 3, size=(3, g)).astype(float)  # ties
    draws = 3
    res = keep_remove_curves(cm, x, y, ["a", "b", "c"], scores, random_draws=draws, seed=4)
    base = cm.model_zero
    tops = [naive.topk(scores[c], g) for c in range(3)]
    rng_p = generator(4, "metrics.keep-remove")
    perms = [rng_p.permutation(g) for _ in range(draws)]
    # union
    keep = _curve(res, "union", "keep")
    remove = _curve(res, "union", "remove")
    for k in log_grid(g):
        u = sorted(set().union(*(t[:k] for t in tops)))
        kp = forward(naive.keep_remove_logits(lambda v: v, x, base, u, True))
        rm = forward(naive.keep_remove_logits(lambda v: v, x, base, u, False))
        assert keep[len(u)] == pytest.approx(_balanced(kp, y))
        assert remove[len(u)] == pytest.approx(_balanced(rm, y))
        rnd = [
            _balanced(forward(naive.keep_remove_logits(lambda v: v, x, base, p[: len(u)], True)), y)
            for p in perms
        ]
        assert _curve(res, "union", "keep-random")[len(u)] == pytest.approx(np.mean(rnd))
        if len(u) <= g - len(u):
            ex = [
                _balanced(
                    forward(
                        naive.keep_remove_logits(
                            lambda v: v, x, base, [j for j in p if j not in u][: len(u)], False
                        )
                    ),
                    y,
                )
                for p in perms
            ]
            got = _curve(res, "union", "remove-random-excluding-top")[len(u)]
            assert got == pytest.approx(np.mean(ex))
        else:
            assert len(u) not in _curve(res, "union", "remove-random-excluding-top")
    # per class: recall of class c with class c's top-k
    for k in log_grid(g):
        recalls = []
        for c, name in enumerate("abc"):
            rows = y == c
            kp = forward(naive.keep_remove_logits(lambda v: v, x[rows], base, tops[c][:k], True))
            recalls.append(np.mean(kp == c))
            assert _curve(res, "per-class", "keep", name)[k] == pytest.approx(recalls[-1])
            rm = forward(naive.keep_remove_logits(lambda v: v, x[rows], base, tops[c][:k], False))
            assert _curve(res, "per-class", "remove", name)[k] == pytest.approx(np.mean(rm == c))
            ex = [
                np.mean(
                    forward(
                        naive.keep_remove_logits(
                            lambda v: v,
                            x[rows],
                            base,
                            [j for j in p if j not in tops[c][:k]][:k],
                            True,
                        )
                    )
                    == c
                )
                for p in perms
            ]
            if k <= g - k:
                got = _curve(res, "per-class", "keep-random-excluding-top", name)[k]
                assert got == pytest.approx(np.mean(ex))
        assert _curve(res, "per-class", "keep")[k] == pytest.approx(np.mean(recalls))
    # the ends: all genes kept = the model; all removed = the baseline's prediction
    full = _balanced(forward(x), y)
    assert keep[g] == pytest.approx(full)
    assert remove[g] == pytest.approx(_balanced(np.repeat(forward(base[None]), 17), y))


def test_curves_identical_on_one_and_two_threads_and_sd(rng):
    cm, _ = _model(rng, g=30)
    x = rng.normal(size=(11, 30)) + cm.model_zero
    y = np.arange(11) % 3
    scores = rng.normal(size=(3, 30))
    runs = []
    for t in (1, 2):
        numba.set_num_threads(t)
        runs.append(keep_remove_curves(cm, x, y, ["a", "b", "c"], scores, random_draws=5))
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    assert runs[0].curves.equals(runs[1].curves)
    one_row_blocks = keep_remove_curves(
        cm, x, y, ["a", "b", "c"], scores, random_draws=5, block_rows=1
    )
    assert one_row_blocks.curves.equals(runs[0].curves)
    rnd = runs[0].curves.filter(curve="keep-random")
    assert (rnd["sd"] >= 0).all() and rnd["sd"].null_count() == 0
    assert runs[0].curves.filter(curve="keep")["sd"].null_count() == len(
        runs[0].curves.filter(curve="keep")
    )


def test_linear_model_hand_case():
    # logits = [x0 + x1, x2 + x3] with no preprocessing: class 0 iff x0 + x1 > x2 + x3
    from gexplain.head import HeadProgram

    proto, _ = gexplain_graph(np.random.default_rng(0), 4, 2, class_names=["p", "q"])
    cm = CompiledModel.load(proto)
    cm.weight = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    cm.bias = np.zeros(2)
    cm.model_zero = np.zeros(4)
    cm.head = HeadProgram.builder(2).affine(np.eye(2), np.zeros(2)).build()
    x = np.array([[3.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 3.0]])
    y = np.array([0, 1])
    scores = np.array([[4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]])  # p: g0 first; q: g3 first
    res = keep_remove_curves(cm, x, y, ["p", "q"], scores, ks=[1], random_draws=0)
    # per class, k=1: p keeps g0 -> [3,0,0,0] -> p (recall 1); q keeps g3 -> q (recall 1)
    assert _curve(res, "per-class", "keep") == {1.0: 1.0}
    # removing g0 from sample 0 -> [0,0,1,0] -> q: recall p 0; removing g3 from 1 -> p: 0
    assert _curve(res, "per-class", "remove") == {1.0: 0.0}
    # union k=1: {g0, g3}; keep: sample 0 [3,0,0,0] p, sample 1 [0,0,0,3] q -> 1
    assert _curve(res, "union", "keep") == {2.0: 1.0}
    # remove: sample 0 [0,0,1,0] q (wrong), sample 1 [0,1,0,0] p (wrong) -> 0
    assert _curve(res, "union", "remove") == {2.0: 0.0}


def test_bad_input(rng):
    cm, _ = _model(rng, g=6)
    x = np.zeros((2, 6))
    with pytest.raises(InputError, match="not outputs"):
        keep_remove_curves(cm, x, [0, 1], ["a", "zz", "c"], np.zeros((3, 6)))
    with pytest.raises(InputError, match="scores"):
        keep_remove_curves(cm, x, [0, 1], ["a", "b", "c"], np.zeros((3, 5)))
    with pytest.raises(InputError, match="non-finite"):
        keep_remove_curves(cm, x, [0, 1], ["a"], np.full((1, 6), np.nan))
    # a class without a ranking is left out
    scores = np.vstack([np.arange(6.0), np.full(6, np.nan), np.arange(6.0)[::-1]])
    res = keep_remove_curves(cm, x, [0, 1], ["a", "b", "c"], scores, random_draws=0)
    assert set(res.curves.filter(variant="per-class")["class"].drop_nulls()) == {"a"}
    with pytest.raises(InputError, match="variant"):
        keep_remove_curves(cm, x, [0, 1], ["a"], np.zeros((1, 6)), variants=["x"])


def test_trained_mlp_top_genes_beat_random_sets():
    from metrics_data import demo

    from gexplain.metrics import class_scores

    d = demo()
    names, s = class_scores(np.abs(d.values), d.classes)
    cm = d.model
    x = cm.prepare(d.test).expression
    y = np.array([cm.class_names.index(v) for v in d.test.labels.cast(pl.String).to_list()])
    res = keep_remove_curves(cm, x, y, names, s, ks=[5, 20], random_draws=10)
    keep = _curve(res, "per-class", "keep")
    assert keep[20] > _curve(res, "per-class", "keep-random")[20] + 0.2
    assert _curve(res, "per-class", "remove")[20] < _curve(res, "per-class", "remove-random")[20]


def test_one_sample_and_one_gene(rng):
    proto, p = gexplain_graph(rng, 1, 3, (4,), class_names=["a", "b", "c"])
    cm = CompiledModel.load(proto)
    x = cm.model_zero[None, :] + 3.0
    pred_x = int(reference_forward(p, x, 1).argmax())
    pred_b = int(reference_forward(p, cm.model_zero[None, :], 1).argmax())
    res = keep_remove_curves(cm, x, [pred_x], ["a", "b", "c"], np.ones((3, 1)), random_draws=2)
    # keeping the only gene is the model itself; removing it is the baseline's prediction
    assert _curve(res, "union", "keep") == {1.0: 1.0}
    assert _curve(res, "union", "remove") == {1.0: float(pred_b == pred_x)}
    assert _curve(res, "union", "keep-random") == {1.0: 1.0}
    assert _curve(res, "union", "remove-random-excluding-top") == {}  # no gene outside the top
    name = "abc"[pred_x]
    assert _curve(res, "per-class", "keep", name) == {1.0: 1.0}


@pytest.mark.parametrize("g", [1, 2, 9, 40])
def test_excluding_top_sequence_matches_definition(rng, g):
    from gexplain.kernels.keep_remove import excluding_top

    for _ in range(5):
        perm = rng.permutation(g).astype(np.int64)
        rank = rng.permutation(g).astype(np.int64)
        ms = np.array([m for m in log_grid(g) if m <= g - m], dtype=np.int64)
        p, seq, ends = excluding_top(perm, rank, ms)
        assert p.shape == ends.shape == ms.shape
        for i, m in enumerate(ms):
            # shortest prefix holding m genes of rank >= m; removed: its genes of rank < m
            r = rank[perm]
            want_p = int(np.flatnonzero(np.cumsum(r >= m) == m)[0]) + 1
            assert p[i] == want_p
            assert sorted(seq[: ends[i]]) == sorted(perm[:want_p][r[:want_p] < m])
        assert len(set(seq.tolist())) == seq.size
