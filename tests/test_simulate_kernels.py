"""Simulator kernels: exact samplers (vs scipy and the naive twins), block = scalar, determinism."""

from __future__ import annotations

import math

import naive
import numba
import numpy as np
import pytest
from gexplain.kernels import simulate as K
from scipy import stats

from gexplain.simulate import Simulation, get_params, sample_keys

U64 = np.uint64


def _work(width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.empty((6, width), np.int64),
        np.empty((4, width), np.float64),
        np.empty((2, width), np.bool_),
    )


def _block(n: np.ndarray, p: np.ndarray, key: int, slot0: int, lr: np.ndarray | None = None):
    out = np.empty(len(n), np.int64)
    lr = np.full(len(n), np.nan) if lr is None else lr
    K.binomial_block(n, p, lr, U64(key), U64(slot0), out, *_work(len(n) + 3))
    return out


def _awkward_lanes(rng: np.random.Generator, size: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    n = rng.integers(0, 3000, size)
    p = rng.uniform(0.0, 1.0, size)
    n[:50] = 0
    n[50:200] = rng.integers(1, 25, 150)  # inversion regime (n p' < 10)
    n[200:260] = rng.integers(16_384, 5_000_000, 60)  # beyond the log-factorial table
    p[260:300] = 0.0
    p[300:340] = 1.0
    p[340:380] = 0.5
    p[380:420] = rng.uniform(0.999, 1.0, 40)  # flipped, tiny p'
    n[420] = 1
    return n, p


# ----------------------------------------------------------------------------- binomial


def test_block_equals_scalar_reference_on_awkward_lanes():
    n, p = _awkward_lanes(np.random.default_rng(0))
    ref = K.binomial_draws(n, p, np.full(len(n), U64(99)), U64(5) + np.arange(len(n), dtype=U64))
    assert np.array_equal(_block(n, p, 99, 5), ref)
    # precomputed log-odds give the same draws; a single lane too
    assert np.array_equal(_block(n, p, 99, 5, lr=K.log_odds(p)), ref)
    for i in (0, 120, 230, 500):
        assert _block(n[i : i + 1], p[i : i + 1], 99, 5 + i)[0] == ref[i]


def test_block_equals_naive_twin():
    rng = np.random.default_rng(1)
    n, p = _awkward_lanes(rng, size=1500)
    got = _block(n, p, 2024, 11)
    want = [naive.binomial(int(n[i]), float(p[i]), 2024, 11 + i) for i in range(len(n))]
    assert got.tolist() == want


def test_binomial_edge_values():
    n = np.array([0, 0, 5, 5, 7, 10**9])
    p = np.array([0.0, 1.0, 0.0, 1.0, 0.5, 1e-12])
    x = _block(n, p, 3, 0)
    assert x[:4].tolist() == [0, 0, 0, 5]
    assert 0 <= x[4] <= 7 and 0 <= x[5] <= 10**9


@pytest.mark.parametrize(
    ("n", "p"),
    [
        (1000, 0.1),  # BTRD
        (200, 0.5),
        (37, 0.4),  # BTRD near n p = 10
        (20, 0.2),  # inversion
        (3000, 0.93),  # flipped BTRD
        (50_000, 0.3),  # beyond the log-factorial table (Stirling)
        (1_500_000, 1 / 1500),  # top-level sizes
    ],
)
def test_binomial_matches_pmf(n, p):
    """Chi-square goodness of fit of 200k draws (bins with >= 20 expected); fixed seed."""
    size = 200_000
    x = _block(np.full(size, n), np.full(size, p), 7, 0)
    assert x.min() >= 0 and x.max() <= n
    k = np.arange(x.min(), x.max() + 1)
    expected = stats.binom.pmf(k, n, p) * size
    observed = np.bincount(x - x.min())
    keep = expected >= 20
    obs = np.append(observed[keep], observed[~keep].sum())
    exp = np.append(expected[keep], size - expected[keep].sum())
    assert stats.chisquare(obs, exp).pvalue > 1e-3
    assert abs(x.mean() - n * p) < 5 * math.sqrt(n * p * (1 - p) / size)


def test_log_odds_of_the_smaller_probability():
    p = np.array([0.0, 0.1, 0.5, 0.75, 1.0, 1e-300])
    q = np.minimum(p, 1 - p)
    with np.errstate(divide="ignore"):
        want = np.log(q / (1 - q))
    np.testing.assert_allclose(K.log_odds(p), want, rtol=1e-15)


def test_exp_polynomial_is_accurate():
    @numba.njit
    def many(x):
        out = np.empty_like(x)
        for i in range(x.shape[0]):
            out[i] = K._exp(x[i])
        return out

    x = np.concatenate([np.linspace(-700, 9.9, 20001), [-0.5, 0.0, 1e-300, 0.3465]])
    rel = np.abs(many(x) / np.exp(x) - 1.0)
    assert rel.max() < 1e-14


# ----------------------------------------------------------------------------- gamma, normal


def test_gamma_equals_naive_twin():
    shapes = np.array([0.3, 1.0, 4.0, 8.0, 4.0, 50.0, 0.05, 2.5])
    keys = np.array([1, 2, 3, 4, 5, 6, 7, 8], dtype=U64)
    slots = np.array([0, 9, 1500, 3, 70000, 2, 11, 5], dtype=U64)
    got = K.gamma_draws(shapes, keys, slots)
    want = np.array([naive.gamma(float(a), int(k), int(s)) for a, k, s in zip(shapes, keys, slots)])
    big = shapes >= 1.0
    assert got[big].tolist() == want[big].tolist()
    # shape < 1 multiplies by U**(1/shape): numba's and CPython's pow may differ by an ulp
    np.testing.assert_allclose(got[~big], want[~big], rtol=1e-15, atol=0)


@pytest.mark.parametrize("shape", [0.3, 1.0, 4.0, 8.0])
def test_gamma_matches_distribution(shape):
    size = 100_000
    g = K.gamma_draws(np.full(size, shape), np.full(size, U64(13)), np.arange(size, dtype=U64))
    assert stats.kstest(g, stats.gamma(shape).cdf).pvalue > 1e-3


def test_ziggurat_normal_matches_distribution_and_tail():
    @numba.njit
    def normals(key, size):
        out = np.empty(size)
        ctr = U64(0)
        for i in range(size):
            out[i], ctr = K._normal(key, ctr)
        return out

    z = normals(U64(42), 400_000)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    tail = (np.abs(z) > K._ZIG_R).mean()  # the rarely used tail branch is right too
    expected = 2 * stats.norm.sf(K._ZIG_R)
    assert abs(tail - expected) < 4 * math.sqrt(expected / z.size)


# ----------------------------------------------------------------------------- simulator


def _tiny_sim(**kw) -> Simulation:
    base = dict(
        n_classes=3,
        samples_per_class=2,
        n_genes=41,
        n_pathways=9,
        membership="random",
        membership_prob=0.2,
        informative_pathways=2,
        reads=20_000,
    )
    return Simulation(get_params("demo", **{**base, **kw}), seed=5)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"units": "counts", "library_sigma": 1.0},
        {"membership": "disjoint", "pathway_size": 4, "n_pathways": 10},
        {"n_pathways": 1, "informative_pathways": 0, "n_genes": 3, "membership_prob": 0.9},
        {"reads": 40, "units": "counts"},
        # one gene, one pathway, one class, one sample
        {
            "n_genes": 1,
            "n_pathways": 1,
            "membership": "disjoint",
            "pathway_size": 1,
            "n_classes": 1,
            "samples_per_class": 1,
            "informative_pathways": 1,
        },
    ],
)
def test_simulate_samples_equals_naive_twin(kw):
    sim = _tiny_sim(**kw)
    m = sim.model
    want = naive.simulate_samples(
        sample_keys(sim.seed, 0, sim.n_samples),
        sim.classes,
        sim.library_size,
        sim.divisor,
        m.alpha,
        m.path_ptr,
        m.path_genes,
        m.path_weights,
        sim.params.n_genes,
    )
    got = sim.rows(0, sim.n_samples)
    np.testing.assert_array_equal(got, want)


def test_same_output_on_one_or_two_threads_and_any_chunk_size():
    sim = Simulation(get_params("demo", n_genes=600, n_pathways=60, samples_per_class=9), seed=8)
    n = sim.n_samples
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = sim.rows(0, n)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = sim.rows(0, n)
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(one, two)
    for size in (1, 7, 50):
        chunked = np.concatenate([sim.rows(s, min(s + size, n)) for s in range(0, n, size)])
        assert np.array_equal(chunked, one)
    assert not np.array_equal(one, Simulation(sim.params, seed=9).rows(0, n))


def test_kernels_are_cached():
    for name in ("binomial_block", "binomial_draws", "gamma_draws", "log_odds", "simulate_samples"):
        dispatcher = getattr(K, name)
        assert dispatcher._cache.__class__.__name__ == "FunctionCache", name
