"""The ONNX compiler: normal form, agreement with onnxruntime and the exporters, errors."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
from explain_helpers import gexplain_graph, reference_forward, torch_export
from onnx import TensorProto, helper, numpy_helper

from gexplain.cohort import Cohort
from gexplain.errors import AlignmentError, InputError, ModelError
from gexplain.explain import SUPPORTED_OPS, CompiledModel, compile_model


@pytest.mark.parametrize("hidden", [(), (5,), (6, 4)])
@pytest.mark.parametrize("div", [False, True])
def test_gexplain_graph_normal_form(rng, hidden, div):
    model, p = gexplain_graph(rng, 9, 4, hidden, div=div, softmax=bool(hidden))
    m = CompiledModel.load(model)
    assert (m.n_genes, m.n_classes) == (9, 4)
    assert m.n_hidden == (hidden[0] if hidden else 4)
    # the first layer folds the z-scoring: z = (x - mean)/std @ W0.T + b0, then BN folded too
    inv = p["inv_std"].astype(np.float64) if "inv_std" in p else 1.0 / p["std"].astype(np.float64)
    W0 = p["W0"].T.astype(np.float64) * inv[:, None]
    b0 = p["b0"] - (p["mean"] * inv) @ p["W0"].T.astype(np.float64)
    z0 = p["b0"].astype(np.float64)  # first pre-activation at the training mean
    if hidden:
        a = p["g0"] / np.sqrt(p["var0"].astype(np.float64) + 1e-5)
        W0, b0 = W0 * a, (b0 - p["mu0"]) * a + p["beta0"]
        z0 = (z0 - p["mu0"]) * a + p["beta0"]
    np.testing.assert_allclose(m.weight, W0, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(m.bias, b0, rtol=1e-6, atol=1e-9)
    assert m.weight.flags.c_contiguous and m.weight.dtype == np.float64
    # model-zero is the training mean (the input the z-scoring maps to zero)
    np.testing.assert_allclose(m.model_zero, p["mean"], rtol=1e-6)
    np.testing.assert_allclose(m.first_layer(m.model_zero[None])[0], z0, rtol=1e-6, atol=1e-6)
    X = rng.normal(size=(7, 9)).astype(np.float32)
    ref = reference_forward(p, X, len(hidden))
    np.testing.assert_allclose(m.logits(X), ref, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(m.ort_logits(X), ref, rtol=1e-9, atol=1e-9)
    assert m.ort_precision == "float64"
    assert m.output_activation == ("softmax" if hidden else None)
    assert m.head.ops == (["relu", "affine"] * len(hidden) or ["scale"])
    np.testing.assert_array_equal(m.predict(X), ref.argmax(1))
    np.testing.assert_allclose(m.predict_proba(X).sum(1), 1.0)


def test_metadata_names_and_alignment(rng):
    genes = [f"ENSG{j}" for j in range(6)]
    model, _ = gexplain_graph(rng, 6, 3, (4,), gene_ids=genes, class_names=["a", "b", "c"])
    m = compile_model(model)
    assert m.class_names == ["a", "b", "c"] and m.gene_ids == genes
    assert m.metadata.model_kind == "mlp"
    X = rng.gamma(2.0, size=(5, 6)).astype(np.float32)
    cohort = Cohort(X, genes=genes)
    perm = [5, 2, 0, 1, 4, 3]
    shuffled = Cohort(X[:, perm], genes=[genes[j] for j in perm])
    np.testing.assert_array_equal(m.prepare(shuffled).expression, X)
    np.testing.assert_allclose(m.logits(shuffled), m.logits(X))  # realigned by id
    with pytest.raises(AlignmentError, match="missing"):
        m.prepare(cohort.select(genes=genes[:5]))
    filled = m.prepare(cohort.select(genes=genes[:5]), fill=0.0)
    assert filled.expression[:, 5].tolist() == [0.0] * 5
    with pytest.raises(InputError, match="expects 6 genes"):
        m.logits(X[:, :5])


def test_metadata_inconsistent_with_graph(rng):
    model, _ = gexplain_graph(rng, 6, 3, (), class_names=["a", "b"])
    with pytest.raises(ModelError, match="2 class names but the model has 3"):
        CompiledModel.load(model)


def test_load_from_path_and_bad_file(rng, tmp_path):
    model, _ = gexplain_graph(rng, 4, 2, (3,))
    onnx.save(model, tmp_path / "m.onnx")
    m = CompiledModel.load(tmp_path / "m.onnx")
    assert m.path == tmp_path / "m.onnx" and CompiledModel.load(m) is m
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(InputError, match=r"bad\.onnx"):
        CompiledModel.load(tmp_path / "bad.onnx")
    with pytest.raises(InputError, match="not found"):
        CompiledModel.load(tmp_path / "missing.onnx")


def _graph(nodes, inits, n_in=4, n_out=2, out="y"):
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", n_in])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["b", n_out])],
        [numpy_helper.from_array(np.asarray(v, dtype=np.float32), k) for k, v in inits.items()],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_unsupported_op_names_node_and_supported_set():
    W = np.ones((4, 2))
    model = _graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["h"], name="fc"),
            helper.make_node("Elu", ["h"], ["y"], name="my_elu"),
        ],
        {"W": W},
    )
    with pytest.raises(ModelError) as err:
        CompiledModel.load(model)
    msg = str(err.value)
    assert "'my_elu'" in msg and "Elu" in msg and "Gemm" in msg and "Relu" in msg
    assert "Elu" not in SUPPORTED_OPS


def test_skip_connection_and_multilabel_refused():
    skip = _graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("Add", ["r", "h"], ["y"], name="residual"),
        ],
        {"W": np.ones((4, 2))},
    )
    with pytest.raises(ModelError, match="residual"):
        CompiledModel.load(skip)
    multi = _graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Sigmoid", ["h"], ["y"])],
        {"W": np.ones((4, 2))},
    )
    with pytest.raises(ModelError, match="multi-label"):
        CompiledModel.load(multi)
    data_mul = _graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["h"]),
            helper.make_node("Mul", ["h", "h"], ["y"], name="square"),
        ],
        {"W": np.ones((4, 2))},
    )
    with pytest.raises(ModelError, match="square"):
        CompiledModel.load(data_mul)


def test_checker_rejects_invalid_graph():
    model = _graph([helper.make_node("MatMul", ["x", "W"], ["y"])], {"W": np.ones((4, 2))})
    model.graph.node[0].input[1] = "nowhere"
    with pytest.raises(ModelError, match="invalid ONNX model"):
        CompiledModel.load(model)


def test_single_sigmoid_logit_becomes_two_logits(rng):
    w = rng.normal(size=(4, 1))
    model = _graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["l"]),
            helper.make_node("Sigmoid", ["l"], ["y"]),
        ],
        {"W": w},
        n_out=1,
    )
    m = CompiledModel.load(model)
    X = rng.normal(size=(5, 4))
    logit = X @ w.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(m.logits(X), np.hstack([np.zeros_like(logit), logit]), rtol=1e-12)
    np.testing.assert_allclose(m.ort_logits(X), m.logits(X), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(m.predict_proba(X)[:, 1], 1 / (1 + np.exp(-logit[:, 0])))
    assert m.output_activation == "sigmoid" and m.n_classes == 2


torch = pytest.importorskip("torch")


def _torch_models():
    nn = torch.nn

    class ViewNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(7, 5), nn.Linear(5, 1)

        def forward(self, x):
            x = x.view(x.size(0), -1)
            return torch.sigmoid(self.b(torch.tanh(self.a(x))))

    torch.manual_seed(0)
    mlp = nn.Sequential(
        nn.Flatten(),
        nn.Linear(7, 6),
        nn.BatchNorm1d(6),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(6, 4),
        nn.LeakyReLU(0.2),
        nn.Linear(4, 3),
        nn.Softmax(dim=1),
    )
    with torch.no_grad():
        mlp[2].running_mean.normal_()
        mlp[2].running_var.uniform_(0.5, 2.0)
    lr = nn.Sequential(nn.Dropout(0.2), nn.Linear(7, 5))
    return {"mlp": mlp, "lr": lr, "view": ViewNet()}


@pytest.mark.parametrize("name", ["mlp", "lr", "view"])
def test_torch_legacy_export(rng, name):
    module = _torch_models()[name].eval()
    m = CompiledModel.load(torch_export(module, 7))
    X = rng.normal(size=(6, 7)).astype(np.float32)
    with torch.no_grad():
        out = module(torch.from_numpy(X)).double().numpy()
    np.testing.assert_allclose(m.ort_logits(X), m.logits(X), rtol=1e-6, atol=1e-7)
    if name == "mlp":
        np.testing.assert_allclose(m.predict_proba(X), out, atol=1e-6)
    elif name == "lr":
        np.testing.assert_allclose(m.logits(X), out, atol=1e-5)
        assert m.output_activation is None and m.is_linear
    else:
        np.testing.assert_allclose(m.predict_proba(X)[:, 1], out[:, 0], atol=1e-6)


def test_torch_dynamo_export(rng):
    module = _torch_models()["mlp"].eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proto = torch_export(module, 7, dynamo=True)
    m = CompiledModel.load(proto)
    X = rng.normal(size=(6, 7)).astype(np.float32)
    with torch.no_grad():
        out = module(torch.from_numpy(X)).double().numpy()
    np.testing.assert_allclose(m.predict_proba(X), out, atol=1e-6)
    assert m.head.ops == ["relu", "affine", "leaky_relu", "affine"]


skl2onnx = pytest.importorskip("skl2onnx")


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("kind", ["lr", "mlp"])
@pytest.mark.parametrize("zipmap", [True, False])
def test_skl2onnx_classifiers(rng, n_classes, kind, zipmap):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    X = rng.normal(size=(40, 5)).astype(np.float32)
    y = np.array(["x", "y", "z"])[np.arange(40) % n_classes]
    est = LogisticRegression() if kind == "lr" else MLPClassifier((4,), max_iter=30, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    options = None if zipmap else {"zipmap": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proto = skl2onnx.to_onnx(est, X[:1], options=options, target_opset=17)
    m = CompiledModel.load(proto)
    assert m.class_names == list(est.classes_)
    np.testing.assert_allclose(m.predict_proba(X), est.predict_proba(X), atol=1e-6)
    np.testing.assert_allclose(m.ort_logits(X), m.logits(X), atol=1e-5)
    assert m.is_linear == (kind == "lr")
