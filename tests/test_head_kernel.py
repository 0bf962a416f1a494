"""The head interpreter against the naive numpy twin, and its gradient by finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from naive import head_forward as naive_forward
from naive import random_head

from gexplain.head import HeadProgram


@pytest.mark.parametrize(
    "widths,acts",
    [
        ([3], [None]),
        ([1], [None]),
        ([6, 2], ["relu", None]),
        ([5, 4, 3], ["bn", "leaky_relu", None]),
        ([4, 4, 2], ["sigmoid", "tanh", None]),
    ],
)
def test_forward_matches_naive(rng, widths, acts):
    head, ref = random_head(rng, 5, widths, acts)
    Z = rng.normal(size=(9, 5))
    expected = np.stack([naive_forward(ref, z) for z in Z])
    np.testing.assert_allclose(head.forward(Z), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "widths,acts",
    [
        ([3], [None]),
        ([6, 2], ["relu", None]),
        ([5, 4, 3], ["bn", "leaky_relu", None]),
        ([4, 4, 2], ["sigmoid", "tanh", None]),
    ],
)
@pytest.mark.parametrize("T", [1, 13])
def test_columns_forward_equals_the_per_row_forward(rng, widths, acts, T):
    from gexplain.kernels import head as kh

    head, ref = random_head(rng, 5, widths, acts, scale=2.0, zero_weight=True)
    Z = rng.normal(size=(T, 5)) * 3.0
    A = np.full((head.n_acts, T + 3), np.nan)  # wider than T: the extra columns stay untouched
    A[:5, :T] = Z.T
    s = kh.head_forward_columns(head.layers, head.params, A, T)
    c = widths[-1]
    assert s == head.n_acts - c
    np.testing.assert_array_equal(A[s : s + c, :T].T, head.forward(Z))
    assert np.isnan(A[5:, T:]).all()
    np.testing.assert_allclose(
        A[s : s + c, :T].T, [naive_forward(ref, z) for z in Z], rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("output", ["logit", "probability", "log_probability"])
def test_gradient_matches_finite_differences(rng, output):
    head, ref = random_head(rng, 4, [6, 3], ["tanh", None])
    Z = rng.normal(size=(5, 4))
    targets = np.array([0, 1, 2, 0, 1])

    def f(z, t):
        logits = naive_forward(ref, z)
        if output == "logit":
            return logits[t]
        p = np.exp(logits - logits.max())
        p /= p.sum()
        return p[t] if output == "probability" else np.log(p[t])

    values, grads = head.value_and_grad(Z, targets, output)
    eps = 1e-6
    for r in range(5):
        assert values[r] == pytest.approx(f(Z[r], targets[r]), rel=1e-12)
        num = [
            (f(Z[r] + eps * e, targets[r]) - f(Z[r] - eps * e, targets[r])) / (2 * eps)
            for e in np.eye(4)
        ]
        np.testing.assert_allclose(grads[r], num, rtol=1e-6, atol=1e-8)


def test_properties():
    h = HeadProgram.builder(3).affine(np.ones((2, 3))).relu().affine(np.ones((4, 2))).build()
    assert (h.n_in, h.n_out) == (3, 4)
    assert h.ops == ["affine", "relu", "affine"]
    assert h.is_piecewise_linear and not h.is_affine
    assert HeadProgram.builder(3).build().is_affine
    with pytest.raises(ValueError, match="output must be one of"):
        h.value_and_grad(np.zeros((1, 3)), [0], "softmax")
