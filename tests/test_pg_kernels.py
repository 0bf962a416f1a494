"""Building blocks of the deletion-curve kernel: radix orders, SplitMix64 shuffles, tiled head."""

from __future__ import annotations

import math

import naive_pg
import numpy as np
import pytest
from gexplain.kernels import pg
from naive import head_forward as naive_forward
from naive import random_head


# ---------------------------------------------------------------- local orders
def _awkward_rows(rng: np.random.Generator) -> list[np.ndarray]:
    ties = np.round(rng.normal(size=300), 1)  # many ties
    ties[:7] = 0.0
    ties[7:12] = -0.0  # equal to 0.0: ties by index with the +0.0 entries
    return [
        ties,
        ties.astype(np.float32).astype(np.float64),
        rng.normal(size=1000) * 1e-30,  # tiny magnitudes: exponent bytes differ
        np.array([1e300, -1e300, np.inf, -np.inf, 5e-324, -5e-324, 0.0]),
        np.array([3.0]),
        np.zeros(5),
        np.full(4, -2.5),
        np.array([2.0, np.nan, 1.0, np.nan, 2.0]),  # NaN rows: merge sort, NaN last
    ]


@pytest.mark.parametrize("descending", [True, False])
def test_stable_order_matches_key_sort(descending: bool) -> None:
    for row in _awkward_rows(np.random.default_rng(1)):
        got = pg.stable_order(row, descending)
        if np.isnan(row).any():
            key = -row if descending else row
            expected = np.argsort(key, kind="stable")
        else:
            expected = naive_pg.local_order(row, descending)
        np.testing.assert_array_equal(got, expected)


def test_local_orders_are_both_stable_orders() -> None:
    for row in _awkward_rows(np.random.default_rng(2)):
        if np.isnan(row).any():
            continue
        desc, asc = pg.local_orders(row)
        np.testing.assert_array_equal(desc, naive_pg.local_order(row, True))
        np.testing.assert_array_equal(asc, naive_pg.local_order(row, False))


def test_radix_argsort_is_stable_on_equal_keys() -> None:
    keys = np.array([5, 1, 5, 0, 1, 2**63, 5], dtype=np.uint64)
    np.testing.assert_array_equal(pg.radix_argsort(keys), [3, 1, 4, 0, 2, 6, 5])


# ---------------------------------------------------------------- random orders
def test_random_order_is_a_uniform_permutation() -> None:
    # every one of the 24 permutations of 4 items, 12,000 draws: chi-square test
    perms = pg.random_orders(np.arange(40, dtype=np.uint32), 300, 4).reshape(-1, 4)
    assert (np.sort(perms, axis=1) == np.arange(4)).all()
    codes = perms @ np.array([64, 16, 4, 1])
    counts = np.unique(codes, return_counts=True)[1]
    assert counts.size == 24
    expected = perms.shape[0] / 24
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 49.7  # 99.9 % quantile of chi-square with 23 degrees of freedom
    # a long permutation: positions of gene 0 spread evenly over 10 bins
    long = pg.random_orders(np.arange(500, dtype=np.uint32), 4, 1000).reshape(-1, 1000)
    pos = np.argmax(long == 0, axis=1)
    bins = np.bincount(pos // 100, minlength=10)
    chi2 = float(((bins - 200) ** 2 / 200).sum())
    assert chi2 < 27.9  # 99.9 % quantile, 9 degrees of freedom


def test_random_orders_depend_on_the_seed_and_draw_only() -> None:
    a = pg.random_orders(np.array([7, 8], dtype=np.uint32), 3, 50)
    b = pg.random_orders(np.array([8], dtype=np.uint32), 3, 50)
    np.testing.assert_array_equal(a[1], b[0])
    assert not np.array_equal(a[0, 0], a[0, 1])  # consecutive draws differ
    assert not np.array_equal(a[0, 0], a[1, 0])  # seeds differ


def test_bounded_draw_covers_its_range() -> None:
    st = pg.new_state(3)
    got = {pg._bounded(st, 5) for _ in range(500)}
    assert got == {0, 1, 2, 3, 4}


# ---------------------------------------------------------------- tiled head
def _explained(logits: np.ndarray, target: int, mode: int) -> float:
    if mode == 0:
        return float(logits[target])
    m = logits.max()
    logp = logits[target] - m - math.log(np.exp(logits - m).sum())
    return logp if mode == 2 else math.exp(logp)


@pytest.mark.parametrize(
    "acts,widths",
    [
        ([None], [4]),
        (["relu", None], [6, 5]),
        (["bn", "leaky_relu", None], [5, 4, 3]),
        (["sigmoid", "tanh", None], [4, 4, 7]),
    ],
)
@pytest.mark.parametrize("T", [1, 37, pg.TILE])
def test_head_tile_matches_the_forward_pass(acts, widths, T) -> None:
    rng = np.random.default_rng(T + len(acts))
    head, ref = random_head(rng, 5, widths, acts, scale=2.0, zero_weight=True)
    c = widths[-1]
    Z = rng.normal(size=(T, 5)) * 3.0
    Z[0] = 60.0  # large logits: tiny probabilities stay accurate
    A, E, bits, ms, _ = pg._workspace(head.layers, head.n_acts, 5)
    A[:5, :T] = Z.T
    out = np.full(pg.TILE, -7.0)
    for mode in (0, 1, 2):
        for target in (0, c - 1):
            pg.head_tile(head.layers, head.params, A, T, target, mode, out, E, bits, ms)
            expected = [_explained(naive_forward(ref, z), target, mode) for z in Z]
            np.testing.assert_allclose(out[:T], expected, rtol=1e-13, atol=1e-15)
            assert (out[T:] == -7.0).all()  # nothing written past the tile's points


def test_curves_spanning_several_tiles_match_the_naive_twin() -> None:
    from explain_helpers import gexplain_graph

    from gexplain.explain import CompiledModel
    from gexplain.metrics import deletion_curves

    rng = np.random.default_rng(5)
    G, block = 150, 1  # 151 points: tiles of 64, 64 and 23
    proto, _ = gexplain_graph(rng, G, 4, hidden=(6,), bn=True, scale=3.0)
    model = CompiledModel.load(proto)
    X = rng.normal(size=(2, G)).astype(np.float32)
    orders = np.stack([rng.permutation(G) for _ in range(2)])
    t = np.array([1, 3])
    for output in ("probability", "log_probability", "logit"):
        curves = deletion_curves(model, X, orders, t, block=block, output=output)
        for i in range(2):
            ref = naive_pg.deletion_curve(
                model, X[i], model.model_zero, orders[i], t[i], block, output
            )
            np.testing.assert_allclose(curves[i], ref, rtol=1e-12, atol=1e-13)
