"""IG kernels against their naive twins; thread independence; Gauss–Legendre nodes; caching."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from gexplain.kernels import ig as k
from naive import ig_exact as naive_exact
from naive import ig_quadrature as naive_quadrature

from gexplain.explain import quadrature
from gexplain.explain._ig import EXACT_EPS, EXACT_MAX_SPREAD, _exact_nodes
from gexplain.head import HeadProgram, output_mode


def _head(rng, n_in, spec):
    """Random head from a spec like ["affine:5", "relu", "scale", "affine:3"]."""
    b = HeadProgram.builder(n_in)
    ref = []
    w = n_in
    for item in spec:
        kind, _, arg = item.partition(":")
        if kind == "affine":
            M, c = rng.normal(size=(int(arg), w)) * 1.5, rng.normal(size=int(arg))
            b.affine(M, c)
            ref.append(("affine", M, c))
            w = int(arg)
        elif kind == "scale":
            a, c = rng.uniform(0.5, 2, size=w) * rng.choice([-1, 1], size=w), rng.normal(size=w)
            b.scale(a, c)
            ref.append(("scale", a, c))
        elif kind == "leaky_relu":
            b.leaky_relu(0.1)
            ref.append(("leaky_relu", 0.1))
        else:
            getattr(b, kind)()
            ref.append((kind,))
    return b.build(), ref


HEADS = {
    "linear": ["affine:3"],
    "relu": ["relu", "affine:4"],
    "deep": ["scale", "relu", "affine:5", "leaky_relu", "affine:3"],
    "one-unit": ["relu", "affine:2"],
    "smooth": ["tanh", "affine:3", "sigmoid", "affine:2"],
}


@pytest.mark.parametrize("name", list(HEADS))
@pytest.mark.parametrize("output", ["logit", "probability", "log_probability"])
def test_quadrature_matches_naive(rng, name, output):
    n_in = 1 if name == "one-unit" else 4
    head, ref = _head(rng, n_in, HEADS[name])
    n = 3
    Z = rng.normal(size=(n, n_in)) * 2
    Zb = np.vstack([rng.normal(size=n_in), np.zeros(n_in)])
    bidx = np.array([0, 1, 0])
    C = head.n_out
    targets = np.stack([np.arange(C) % C, (np.arange(C) + 1) % C, np.zeros(C, int)])[:, :2]
    for method, steps in [("gausslegendre", 7), ("riemann_trapezoid", 5), ("riemann_left", 2)]:
        a, w = quadrature(method, steps)
        got = k.ig_quadrature(
            head.layers,
            head.params,
            Z,
            Zb,
            bidx,
            targets,
            output_mode(output),
            a,
            w,
            head.n_acts,
            head.width,
        )
        want = naive_quadrature(ref, Z, Zb, bidx, targets, output, a, w)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)


RELU_FIRST = {
    "one-hidden": ["relu", "affine:4"],
    "deep": ["relu", "affine:5", "leaky_relu", "affine:3"],
    "leaky": ["leaky_relu", "affine:3"],
    "smooth-rest": ["relu", "affine:3", "tanh", "affine:2"],
}


@pytest.mark.parametrize("name", list(RELU_FIRST))
@pytest.mark.parametrize("output", ["logit", "probability", "log_probability"])
def test_relu_first_quadrature_matches_naive(rng, name, output):
    n_in = 5
    head, ref = _head(rng, n_in, RELU_FIRST[name])
    n = 4
    Z = rng.normal(size=(n, n_in)) * 2
    Zb = np.vstack([rng.normal(size=n_in), np.zeros(n_in)])
    Z[0, 1] = Zb[0, 1]  # a unit that does not move (Δz = 0)
    Z[1, 2], Zb[0, 2] = 1.0, -1.0  # crosses exactly at α = 0.5, a node of the even rules
    bidx = np.array([0, 0, 1, 0])
    C = head.n_out
    targets = np.stack([np.arange(2) % C, (np.arange(2) + 1) % C, [0, 0], [C - 1, 0]])
    L = head.layers
    rest = np.ascontiguousarray(L[2:])
    n_acts = int(rest[0, 1] + rest[:, 2].sum()) if rest.shape[0] else 0
    width = int(max(rest[:, 1].max(), rest[:, 2].max())) if rest.shape[0] else 0
    for method, steps in [("gausslegendre", 9), ("riemann_trapezoid", 5), ("trapezoid", 3)]:
        a, w = quadrature(method, steps)
        got = k.ig_quadrature_relu_first(
            L, head.params, rest, Z, Zb, bidx, targets, output_mode(output), a, w, n_acts, width
        )
        want = naive_quadrature(ref, Z, Zb, bidx, targets, output, a, w)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["linear", "relu", "deep", "one-unit"])
@pytest.mark.parametrize("output", ["logit", "probability", "log_probability"])
def test_exact_matches_naive(rng, name, output):
    n_in = 1 if name == "one-unit" else 3
    head, ref = _head(rng, n_in, HEADS[name])
    Z = rng.normal(size=(2, n_in)) * 3
    Zb = rng.normal(size=(1, n_in))
    targets = np.array([[0, head.n_out - 1], [1, 0]])
    glx, glw = _exact_nodes()
    got, segs = k.ig_exact(
        head.layers,
        head.params,
        Z,
        Zb,
        np.zeros(2, np.int64),
        targets,
        output_mode(output),
        glx,
        glw,
        EXACT_MAX_SPREAD,
        EXACT_EPS,
        10_000,
        head.n_acts,
        head.width,
    )
    assert (segs >= 1).all()
    if name == "linear":
        assert (segs == 1).all()
    for r in range(2):
        for t in range(2):
            want = naive_exact(ref, Zb[0], Z[r], targets[r, t], output)
            np.testing.assert_allclose(got[r, t], want, rtol=1e-9, atol=1e-11)


def test_exact_ties_and_flat_units(rng):
    """Units exactly at zero along the whole path, a path of length zero, breakpoints at α=0 and 1."""
    M = np.array([[1.0, -1.0, 0.5], [0.3, 0.2, -1.0]])
    head = HeadProgram.builder(3).relu().affine(M, np.zeros(2)).build()
    Zb = np.array([[0.0, -1.0, 1.0], [0.5, 0.5, 0.5]])
    Z = np.array([[0.0, 1.0, -1.0], [0.5, 0.5, 0.5]])  # unit 0 stays at 0; sample 2: no path
    glx, glw = _exact_nodes()
    for output in ("logit", "probability"):
        got, segs = k.ig_exact(
            head.layers,
            head.params,
            Z,
            Zb,
            np.array([0, 1]),
            np.array([[0], [1]]),
            output_mode(output),
            glx,
            glw,
            EXACT_MAX_SPREAD,
            EXACT_EPS,
            100,
            head.n_acts,
            head.width,
        )
        ref = [("relu",), ("affine", M, np.zeros(2))]
        np.testing.assert_allclose(got[0, 0], naive_exact(ref, Zb[0], Z[0], 0, output), atol=1e-12)
        # zero-length path: the integral of the gradient is the gradient at the point
        g = naive_quadrature(
            ref, Z[1:], Zb[1:], np.zeros(1, int), np.array([[1]]), output, [0.5], [1.0]
        )
        np.testing.assert_allclose(got[1, 0], g[0, 0], atol=1e-14)
        assert segs[0] == 2  # units 1 and 2 cross at the same α = 0.5


def test_same_result_on_one_and_two_threads(rng):
    head, _ = _head(rng, 6, HEADS["deep"][1:])
    Z = rng.normal(size=(37, 6)) * 2
    Zb = rng.normal(size=(1, 6))
    bidx = np.zeros(37, np.int64)
    targets = np.tile(np.arange(3), (37, 1))
    glx, glw = _exact_nodes()
    a, w = quadrature("gausslegendre", 11)
    before = numba.get_num_threads()
    results = []
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            e, _ = k.ig_exact(
                head.layers,
                head.params,
                Z,
                Zb,
                bidx,
                targets,
                1,
                glx,
                glw,
                EXACT_MAX_SPREAD,
                EXACT_EPS,
                10_000,
                head.n_acts,
                head.width,
            )
            q = k.ig_quadrature(
                head.layers, head.params, Z, Zb, bidx, targets, 1, a, w, head.n_acts, head.width
            )
            rest = np.ascontiguousarray(head.layers[2:])
            q2 = k.ig_quadrature_relu_first(
                head.layers,
                head.params,
                rest,
                Z,
                Zb,
                bidx,
                targets,
                1,
                a,
                w,
                int(rest[0, 1] + rest[:, 2].sum()),
                int(rest[:, 1:3].max()),
            )
            results.append((e, q, q2))
    finally:
        numba.set_num_threads(before)
    for x1, x2 in zip(results[0], results[1]):
        np.testing.assert_array_equal(x1, x2)
    np.testing.assert_allclose(results[0][2], results[0][1], rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("n", [1, 2, 7, 64, 200])
def test_gauss_legendre_nodes_match_numpy(n):
    x, w = k.gauss_legendre(n)
    xr, wr = np.polynomial.legendre.leggauss(n)
    np.testing.assert_allclose(x, xr, atol=1e-14)
    np.testing.assert_allclose(w, wr, rtol=1e-10, atol=1e-15)  # 1 - x² near ±1


def test_large_gauss_legendre_integrates_exactly():
    x, w = quadrature("gausslegendre", 3000)  # Newton nodes above 200
    assert w.sum() == pytest.approx(1.0, abs=1e-13)
    assert (w * np.cos(3 * x)).sum() == pytest.approx(np.sin(3) / 3, abs=1e-13)
    assert np.all(np.diff(x) > 0) and x[0] > 0 and x[-1] < 1


def test_quadrature_rules_match_captum_definitions():
    a, w = quadrature("riemann_trapezoid", 5)
    np.testing.assert_allclose(a, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(w, [0.1, 0.2, 0.2, 0.2, 0.1])  # sums to (n-1)/n = 0.8
    a, w = quadrature("trapezoid", 5)
    np.testing.assert_allclose(w, [0.125, 0.25, 0.25, 0.25, 0.125])
    np.testing.assert_allclose(quadrature("riemann_left", 4)[0], [0, 0.25, 0.5, 0.75])
    np.testing.assert_allclose(quadrature("riemann_right", 4)[0], [0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(quadrature("riemann_middle", 4)[0], [0.125, 0.375, 0.625, 0.875])
    with pytest.raises(ValueError):
        quadrature("riemann_left", 1)


def test_kernels_are_cached():
    for fn in (
        k.ig_exact,
        k.ig_quadrature,
        k.ig_quadrature_relu_first,
        k.gauss_legendre,
        k.accumulate_attributions,
        k.normalize_rows,
    ):
        assert type(fn._cache).__name__ != "NullCache", fn


@pytest.mark.parametrize("n,g,h,t", [(1, 1, 1, 1), (5, 3, 4, 2), (17, 40, 3, 3)])
def test_accumulate_attributions_matches_naive(rng, n, g, h, t):
    import naive

    W = rng.normal(size=(g, h))
    x = rng.normal(size=(n, g)).astype(np.float32)
    gbar = rng.normal(size=(n, t, h))
    xb = rng.normal(size=(2, g))
    xb[0, 0] = x[0, 0]  # a gene at its baseline value
    bidx = rng.integers(0, 2, size=n)
    got = np.zeros((n * t, g), np.float32)
    got[::2] = 1.5  # accumulates on top of what is there
    want = got.copy()
    s_got, s_want = np.ones((n, t)), np.ones((n, t))
    for tt in range(t):
        P = gbar[:, tt, :] @ W.T
        rows = np.arange(n) * t + tt
        k.accumulate_attributions(P, x, xb, bidx, 0.5, got, rows, s_got, tt)
        naive.accumulate_attributions(P, x, xb, bidx, 0.5, want, rows, s_want, tt)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(s_got, s_want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n,g", [(1, 1), (5, 3), (17, 40)])
def test_normalize_rows_matches_naive(rng, n, g):
    import naive

    got = rng.normal(size=(n, g)).astype(np.float32)
    got[0] = 0.0  # a zero row stays zero
    want = got.copy()
    k.normalize_rows(got, np.arange(n))
    naive.normalize_rows(want, np.arange(n))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert np.all(got[0] == 0)


def test_dense_products_same_on_one_and_two_threads_and_any_row_count(rng):
    from gexplain.explain._linalg import matmul_rows

    W = rng.normal(size=(300, 7))
    x = rng.normal(size=(150, 300)).astype(np.float32)
    gbar = rng.normal(size=(45, 2, 7))
    res = []
    before = numba.get_num_threads()
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            out = np.zeros((45, 300), np.float32)
            sums = np.zeros((45, 2))
            P = matmul_rows(gbar[:, 1, :], W.T)
            k.accumulate_attributions(
                P,
                x[:45],
                np.zeros((1, 300)),
                np.zeros(45, np.int64),
                1.0,
                out,
                np.arange(45),
                sums,
                1,
            )
            res.append((matmul_rows(x, W), out, sums))
    finally:
        numba.set_num_threads(before)
    for a, b in zip(res[0], res[1]):
        np.testing.assert_array_equal(a, b)
    # a row's product does not depend on the rows multiplied with it
    full = res[0][0]
    for lo, hi in ((0, 1), (3, 70), (64, 150), (149, 150)):
        np.testing.assert_array_equal(matmul_rows(x[lo:hi], W), full[lo:hi])
    np.testing.assert_allclose(full, x.astype(np.float64) @ W, rtol=1e-12, atol=1e-12)
