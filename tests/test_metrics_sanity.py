"""Sanity checks: cascading model randomisation on the ONNX graph, label randomisation."""

from __future__ import annotations

import numpy as np
import pytest
from explain_helpers import gexplain_graph
from onnx import numpy_helper

from gexplain.errors import InputError
from gexplain.explain import CompiledModel
from gexplain.metrics import label_randomization, model_randomization, randomize_model
from gexplain.metrics._sanity import model_layers


def _params(proto):
    return {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}


def test_layers_are_listed_top_down_and_preprocessing_is_untouched(rng):
    proto, _ = gexplain_graph(rng, 10, 3, hidden=(5,))
    names = [layer.name for layer in model_layers(proto)]
    assert names == ["fc1", "bn0", "fc0"]
    assert [layer.name for layer in model_layers(proto, batchnorm="keep")] == ["fc1", "fc0"]
    before = _params(proto)
    one = _params(randomize_model(proto, 1, seed=3))
    changed = {k for k in before if not np.array_equal(before[k], one[k])}
    assert changed == {"W1", "b1"}
    # torch's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = 5 for fc1
    bound = 1 / np.sqrt(5)
    assert np.abs(one["W1"]).max() <= bound and one["W1"].std() > 0.3 * bound
    assert one["W1"].dtype == np.float32 and one["W1"].shape == before["W1"].shape
    every = _params(randomize_model(proto, "all", seed=3))
    assert {k for k in before if not np.array_equal(before[k], every[k])} == {
        "W0",
        "b0",
        "W1",
        "b1",
        "g0",
        "beta0",
        "mu0",
        "var0",
    }
    np.testing.assert_array_equal(every["mean"], before["mean"])  # z-scoring untouched
    np.testing.assert_array_equal(every["inv_std"], before["inv_std"])
    for name, value in (("g0", 1.0), ("beta0", 0.0), ("mu0", 0.0), ("var0", 1.0)):
        np.testing.assert_array_equal(every[name], value)
    assert np.abs(every["W0"]).max() <= 1 / np.sqrt(10)
    # cascading: a layer gets the same values at every step; seeds differ
    np.testing.assert_array_equal(every["W1"], one["W1"])
    other = _params(randomize_model(proto, 1, seed=4))
    assert not np.array_equal(other["W1"], one["W1"])
    by_name = _params(randomize_model(proto, ["fc0"], seed=3))
    assert {k for k in before if not np.array_equal(before[k], by_name[k])} == {"W0", "b0"}
    # the model itself is not modified, and the result compiles with the same model zero
    assert all(np.array_equal(v, _params(proto)[k]) for k, v in before.items())
    np.testing.assert_allclose(
        CompiledModel.load(randomize_model(proto)).model_zero, CompiledModel.load(proto).model_zero
    )
    with pytest.raises(InputError, match="unknown layers"):
        randomize_model(proto, ["nope"])
    with pytest.raises(InputError):
        randomize_model(proto, 4)


def test_matmul_add_layers_are_found(rng):
    from onnx import TensorProto, helper

    w = numpy_helper.from_array(rng.normal(size=(4, 2)).astype(np.float32), "w")
    b = numpy_helper.from_array(np.zeros(2, np.float32), "b")
    mean = numpy_helper.from_array(np.ones(4, np.float32), "mean")
    graph = helper.make_graph(
        [
            helper.make_node("Sub", ["x", "mean"], ["c"], name="center"),
            helper.make_node("MatMul", ["c", "w"], ["m"], name="mm"),
            helper.make_node("Add", ["m", "b"], ["logits"], name="bias"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 2])],
        [w, b, mean],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    (layer,) = model_layers(proto)
    assert layer.params == ["w", "b"] and layer.fan_in == 4
    new = _params(randomize_model(proto))
    assert np.abs(new["b"]).max() > 0 and np.array_equal(new["mean"], np.ones(4))


def test_model_randomization_cascade_decorrelates():
    from metrics_data import demo

    d = demo()
    r = model_randomization(d.model, d.x_correct, d.targets, d.values, seed=0)
    assert r.score("rank-correlation", "model-randomization:none") == pytest.approx(1.0)
    steps = r.scores.filter(r.scores["variant"] != "model-randomization:none")
    assert steps["variant"].to_list() == [
        "model-randomization:gemm2",
        "model-randomization:batchnorm1",
        "model-randomization:gemm1",
    ]
    assert (steps["value"] < 0.5).all()
    assert (r.scores["n"] == d.values.shape[0]).all()


def test_label_randomization_against_a_permuted_label_model():
    from metrics_data import demo

    d = demo()
    control = demo("mlp", permute_labels=True)
    assert control.model_path.name == "mlp-permuted-seed0.onnx"
    assert control.model.class_names == d.model.class_names
    r = label_randomization(control.model, d.x_correct, d.targets, d.values)
    assert r.score("rank-correlation", "label-randomization") < 0.5
    # the trained model itself as its own "control" reproduces its attributions
    same = label_randomization(d.model, d.x_correct, d.targets, d.values)
    assert same.score("rank-correlation", "label-randomization") == pytest.approx(1.0)
    with pytest.raises(InputError, match="row for row"):
        label_randomization(d.model, d.x_correct, d.targets[:-1], d.values)
