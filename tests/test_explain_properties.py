"""Property tests of the IG axioms on random ONNX models (hypothesis)."""

from __future__ import annotations

import numpy as np
import onnx
from explain_helpers import gexplain_graph
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import numpy_helper

from gexplain.explain import CompiledModel, integrated_gradients

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)


@st.composite
def models(draw):
    seed = draw(st.integers(0, 2**31 - 1))
    g = draw(st.integers(2, 9))
    c = draw(st.integers(2, 4))
    hidden = draw(st.sampled_from([(), (1,), (4,), (7,), (3, 4)]))
    act = draw(st.sampled_from(["Relu", "LeakyRelu"]))
    scale = draw(st.sampled_from([0.5, 2.0, 6.0]))
    rng = np.random.default_rng(seed)
    model, p = gexplain_graph(
        rng, g, c, hidden, act=act, scale=scale, softmax=draw(st.booleans()), div=True
    )
    x = rng.normal(size=(3, g)) * 3
    return model, p, x, rng


def _get(model: onnx.ModelProto, name: str) -> np.ndarray:
    return next(numpy_helper.to_array(i) for i in model.graph.initializer if i.name == name)


def _set(model: onnx.ModelProto, name: str, arr: np.ndarray) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for init in out.graph.initializer:
        if init.name == name:
            init.CopyFrom(numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name))
    return out


@SETTINGS
@given(models(), st.sampled_from(["probability", "logit", "log_probability"]))
def test_completeness_of_exact_ig(m, output):
    model, _, x, rng = m
    baseline = ["model-zero", "zeros", rng.normal(size=x.shape[1])][int(rng.integers(3))]
    attr = integrated_gradients(model, x, baseline=baseline, target="all", output=output)
    gap = (attr.rows["f_x"] - attr.rows["f_baseline"]).abs().to_numpy()
    assert np.all(np.abs(attr.delta) <= 1e-6 * np.maximum(1.0, gap))
    # the stored float32 values keep completeness to float32 precision
    sums = attr.values.astype(np.float64).sum(axis=1)
    np.testing.assert_allclose(
        sums, attr.rows["f_x"] - attr.rows["f_baseline"], atol=1e-5 * max(1.0, gap.max())
    )


@SETTINGS
@given(models(), st.floats(-2, 2), st.floats(-2, 2))
def test_linearity_in_the_output(m, a, b):
    """IG of ``a·l₁ + b·l₂`` (a new logit) equals ``a·IG(l₁) + b·IG(l₂)``."""
    model, p, x, _ = m
    last = max(int(k[1:]) for k in p if k.startswith("W"))
    W, c = _get(model, f"W{last}").astype(np.float64), _get(model, f"b{last}").astype(np.float64)
    W2, c2 = W.copy(), c.copy()
    W2[0] = a * W[0] + b * W[1]
    c2[0] = a * c[0] + b * c[1]
    # store the combined row in float32 and compare with the float32 rows it came from
    W2 = W2.astype(np.float32)
    mixed = _set(_set(model, f"W{last}", W2), f"b{last}", c2.astype(np.float32))
    base = integrated_gradients(model, x, target=[0, 1], output="logit", method="exact")
    comb = integrated_gradients(mixed, x, target=0, output="logit", method="exact")
    v = base.values.astype(np.float64).reshape(x.shape[0], 2, -1)
    expect = a * v[:, 0] + b * v[:, 1]
    scale = np.abs(v).max() * (abs(a) + abs(b)) + 1e-12
    np.testing.assert_allclose(comb.values, expect, atol=1e-5 * scale)


@SETTINGS
@given(models(), st.data())
def test_dummy_genes_get_zero(m, data):
    model, _, x, _ = m
    g = x.shape[1]
    j = data.draw(st.integers(0, g - 1))
    W0 = _get(model, "W0").copy()
    W0[:, j] = 0.0
    dummy = _set(model, "W0", W0)
    cm = CompiledModel.load(dummy)
    for method in ("exact", "gausslegendre"):
        attr = integrated_gradients(cm, x, target="all", method=method, baseline="zeros")
        assert np.all(attr.values[:, j] == 0.0)


@SETTINGS
@given(models(), st.data())
def test_symmetric_genes_get_equal_attributions(m, data):
    model, _, x, _ = m
    g = x.shape[1]
    j, k = data.draw(st.lists(st.integers(0, g - 1), min_size=2, max_size=2, unique=True))
    sym = model
    for name in ("mean", "std"):
        arr = _get(sym, name).copy()
        arr[k] = arr[j]
        sym = _set(sym, name, arr)
    W0 = _get(sym, "W0").copy()
    W0[:, k] = W0[:, j]
    sym = _set(sym, "W0", W0)
    x = x.copy()
    x[:, k] = x[:, j]
    for method in ("exact", "riemann_middle"):
        attr = integrated_gradients(sym, x, target="all", method=method)
        np.testing.assert_allclose(attr.values[:, j], attr.values[:, k], rtol=1e-6, atol=1e-9)
