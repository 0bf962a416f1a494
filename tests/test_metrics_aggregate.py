"""Per-class aggregation of attributions (the global orders of the paper)."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from scipy.stats import rankdata

from gexplain.errors import InputError
from gexplain.metrics import class_scores, descending_ranks, l2_normalize


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (5, 1), (13, 31)])
def test_descending_ranks_match_scipy_with_ties(shape):
    r = np.random.default_rng(sum(shape))
    v = r.integers(-2, 3, size=shape).astype(np.float64)  # many ties
    assert np.array_equal(descending_ranks(v), rankdata(-v, axis=1))


def test_descending_ranks_same_on_one_or_two_threads():
    v = np.random.default_rng(3).normal(size=(40, 257))
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = descending_ranks(v)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = descending_ranks(v)
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(one, two)


def test_class_scores_by_hand():
    v = np.array([[3.0, 0.0, 4.0], [0.0, 2.0, 0.0], [1.0, 1.0, 1.0]])
    cls = ["b", "a", "b"]
    names, mean = class_scores(v, cls, "mean")
    assert names == ["a", "b"]
    s3 = 1 / np.sqrt(3)
    np.testing.assert_allclose(mean, [[0, 1, 0], [(0.6 + s3) / 2, s3 / 2, (0.8 + s3) / 2]])
    # ranks (1 = largest): row0 [2,3,1], row2 [2,2,2]; row1 [2.5,1,2.5]
    _, rsum = class_scores(v, cls, "rank-sum")
    np.testing.assert_allclose(rsum, [[-2.5, -1, -2.5], [-4, -5, -3]])
    _, rmed = class_scores(v, cls, "rank-median")
    np.testing.assert_allclose(rmed, [[-2.5, -1, -2.5], [-2, -2.5, -1.5]])


def test_class_scores_empty_class_is_nan_and_bad_input():
    names, s = class_scores(np.ones((2, 3)), ["a", "a"], "mean", class_order=["a", "z"])
    assert names == ["a", "z"] and np.isnan(s[1]).all() and np.isfinite(s[0]).all()
    with pytest.raises(InputError, match="aggregation"):
        class_scores(np.ones((2, 3)), ["a", "a"], "max")
    with pytest.raises(InputError, match="same rows"):
        class_scores(np.ones((2, 3)), ["a"], "mean")


def test_l2_normalize_keeps_zero_rows():
    out = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
