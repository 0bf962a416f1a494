"""The pull-back (float32 products straight into the output) and the float64 completeness sums."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from gexplain.kernels import ig as k

from gexplain.explain import _linalg
from gexplain.explain._linalg import ROWS, pullback


def naive_pullback(gbar, W, x, xb, bidx, T, scale=1.0, out=None):
    """Row by row in float64: ``out[q] += scale · (x[r] − xb[bidx[r]]) ⊙ (W @ gbar[q])``."""
    m, g = gbar.shape[0], W.shape[0]
    res = np.zeros((m, g)) if out is None else out.astype(np.float64)
    for q in range(m):
        r = q // T
        d = x[r].astype(np.float64) - xb[bidx[r]].astype(np.float64)
        res[q] += scale * d * (W.astype(np.float64) @ gbar[q].astype(np.float64))
    return res


def naive_sums(Z, Zb, bidx, gbar):
    n, T, _ = gbar.shape
    return np.array([[(Z[r] - Zb[bidx[r]]) @ gbar[r, t] for t in range(T)] for r in range(n)])


def _case(rng, n, T, h, g, nb):
    gbar = rng.normal(size=(n * T, h)).astype(np.float32)
    W = rng.normal(size=(g, h)).astype(np.float32)  # the pull-back takes Wᵀ, (h, g) contiguous
    x = rng.normal(size=(n, g)).astype(np.float32)
    xb = rng.normal(size=(nb, g))
    bidx = rng.integers(0, nb, size=n).astype(np.int64)
    return gbar, W, x, xb, bidx


@pytest.mark.parametrize(
    ("n", "T", "h", "g", "nb"),
    [(1, 1, 1, 1, 1), (3, 2, 5, 7, 1), (ROWS + 1, 1, 4, 9, 2), (40, 3, 33, 130, 40)],
)
def test_pullback_matches_naive(rng, monkeypatch, n, T, h, g, nb):
    monkeypatch.setattr(_linalg, "COLS", 64)
    gbar, W, x, xb, bidx = _case(rng, n, T, h, g, nb)
    WT = np.ascontiguousarray(W.T)
    want = naive_pullback(gbar, W, x, xb, bidx, T)
    got = np.full((n * T, g), np.nan, dtype=np.float32)  # need not be zeroed
    pullback(gbar, WT, x, xb, bidx, T, got)
    scale = np.abs(want).max()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * scale)
    # accumulate: adds scale · the attributions on top of what is there
    start = rng.normal(size=(n * T, g)).astype(np.float32)
    acc = start.copy()
    pullback(gbar, WT, x, xb, bidx, T, acc, scale=0.25, accumulate=True)
    want2 = naive_pullback(gbar, W, x, xb, bidx, T, scale=0.25, out=start)
    np.testing.assert_allclose(acc, want2, rtol=1e-5, atol=1e-6 * np.abs(want2).max())


def test_pullback_rejects_bad_output(rng):
    gbar, W, x, xb, bidx = _case(rng, 2, 1, 3, 4, 1)
    WT = np.ascontiguousarray(W.T)
    with pytest.raises(ValueError, match="float32"):
        pullback(gbar, WT, x, xb, bidx, 1, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="accumulate"):
        pullback(gbar, WT, x, xb, bidx, 1, np.zeros((2, 4), np.float32), scale=0.5)


def test_pullback_same_on_one_and_two_threads_and_any_split(rng, monkeypatch):
    """A row's values do not depend on the thread count nor on the rows around it."""
    monkeypatch.setattr(_linalg, "COLS", 128)  # several column panels, the last one narrower
    n, T, h, g = 2 * ROWS + 9, 2, 17, 301
    gbar, W, x, xb, bidx = _case(rng, n, T, h, g, 3)
    WT = np.ascontiguousarray(W.T)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = np.empty((n * T, g), np.float32)
        pullback(gbar, WT, x, xb, bidx, T, one)
        numba.set_num_threads(2)
        two = np.empty((n * T, g), np.float32)
        pullback(gbar, WT, x, xb, bidx, T, two)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one, two)
    for lo, hi in ((0, 1), (5, 70), (33, n)):  # chunks starting anywhere, of any length
        part = np.empty(((hi - lo) * T, g), np.float32)
        pullback(gbar[lo * T : hi * T], WT, x[lo:hi], xb, bidx[lo:hi], T, part)
        np.testing.assert_array_equal(part, one[lo * T : hi * T])


def test_attribution_row_kernels_match_naive(rng):
    n, T, g = 4, 2, 11
    x = rng.normal(size=(n, g)).astype(np.float32)
    xb = rng.normal(size=(2, g))
    bidx = np.array([1, 0, 1, 1], dtype=np.int64)
    P = rng.normal(size=(n * T, g)).astype(np.float32)
    d = np.repeat(x.astype(np.float64) - xb[bidx], T, axis=0)
    out = P.copy()
    k.attribution_rows_inplace(out, 2, 5, 1, 8, x, xb, bidx, T)  # rows 2..6, columns 1..7
    want = P.copy()
    want[2:7, 1:8] = (d[2:7, 1:8] * P[2:7, 1:8].astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(out, want)
    out = np.ones((n * T, g), np.float32)
    k.attribution_rows_add(P[3:6, :4], x, xb, bidx, T, 3, 2, 0.5, out)  # columns 2..5
    want = np.ones((n * T, g))
    want[3:6, 2:6] += 0.5 * d[3:6, 2:6] * P[3:6, :4]
    np.testing.assert_allclose(out, want, rtol=1e-6)
    assert (out[:3] == 1).all() and (out[6:] == 1).all()
    assert (out[:, :2] == 1).all() and (out[:, 6:] == 1).all()


def test_completeness_sums_match_naive(rng):
    n, T, h = 5, 3, 7
    Z = rng.normal(size=(n, h))
    Zb = rng.normal(size=(2, h))
    bidx = np.array([0, 1, 1, 0, 1], dtype=np.int64)
    gbar = rng.normal(size=(n, T, h))
    sums = np.full((n, T), 2.0)
    k.completeness_sums(Z, Zb, bidx, gbar, 0.5, sums)
    np.testing.assert_allclose(sums, 2.0 + 0.5 * naive_sums(Z, Zb, bidx, gbar), rtol=1e-14)
    # hand-computed: Δz = (1, 2), Ḡ = (3, −1) → 1
    one = np.zeros((1, 1))
    k.completeness_sums(
        np.array([[1.5, 2.0]]),
        np.array([[0.5, 0.0]]),
        np.zeros(1, np.int64),
        np.array([[[3.0, -1.0]]]),
        1.0,
        one,
    )
    assert one[0, 0] == 1.0


def test_chunk_values_equal_the_float64_pullback_to_float32_precision(rng):
    """The float32 product changes the stored values by float32 rounding only."""
    from explain_helpers import gexplain_graph

    from gexplain.explain import CompiledModel, integrated_gradients
    from gexplain.explain._ig import integrate, resolve_settings

    proto, _ = gexplain_graph(rng, 300, 4, (16,), softmax=True)
    model = CompiledModel.load(proto)
    X = rng.normal(size=(70, 300))
    attr = integrated_gradients(model, X, target="all", baseline="zeros")
    Z = model.ort_forward(X, with_z=True)[1]
    Z = model.first_layer(X) if Z is None else Z
    Zb = model.first_layer(np.zeros((1, 300)))
    settings = resolve_settings(model, None, None, "probability", 1e-3, 4096)
    gbar, _ = integrate(
        model, Z, Zb, np.zeros(70, np.int64), np.tile(np.arange(4), (70, 1)), settings
    )
    want = (X[:, None, :] * np.einsum("gh,nth->ntg", model.weight, gbar)).reshape(280, 300)
    np.testing.assert_allclose(attr.values, want, rtol=2e-5, atol=1e-6 * np.abs(want).max())
    # delta is the float64 completeness of the integral: Σ of the float64 attributions
    gap = (attr.rows["f_x"] - attr.rows["f_baseline"]).to_numpy()
    np.testing.assert_allclose(attr.delta, want.sum(axis=1) - gap, atol=1e-12)


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_left", "riemann_right", "trapezoid"])
@pytest.mark.parametrize("act", ["relu", "leaky_relu"])
def test_relu_first_flip_search_matches_naive(rng, method, act):
    """Many units and nodes: the bisection finds each unit's flip node as a node-by-node scan."""
    from naive import ig_quadrature as naive_quadrature

    from gexplain.explain import quadrature
    from gexplain.head import HeadProgram, output_mode

    h, n, steps = 40, 3, 50
    M, c = rng.normal(size=(3, h)), rng.normal(size=3)
    b = HeadProgram.builder(h)
    getattr(b, act)(*(() if act == "relu" else (0.1,)))
    b.affine(M, c)
    head = b.build()
    ref = [(act,) if act == "relu" else (act, 0.1), ("affine", M, c)]
    Z = rng.normal(size=(n, h)) * 2
    Zb = rng.normal(size=(1, h))
    a, w = quadrature(method, steps)
    nodes = np.array([1, 10, steps - 2, steps - 1])
    at = (a[nodes - 1] + a[nodes]) / 2  # z crosses 0 just before nodes 1, 10, K−2 and K−1
    Z[0, :4] = Zb[0, :4] * (1 - 1 / at)
    Z[1, 0] = Zb[0, 0]  # Δz = 0
    bidx = np.zeros(n, np.int64)
    targets = np.array([[0, 2], [1, 0], [2, 1]])
    L = head.layers
    rest = np.ascontiguousarray(L[2:])
    for output in ("logit", "probability"):
        got = k.ig_quadrature_relu_first(
            L, head.params, rest, Z, Zb, bidx, targets, output_mode(output), a, w, 0, 0
        )
        want = naive_quadrature(ref, Z, Zb, bidx, targets, output, a, w)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
