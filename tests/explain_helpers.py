"""Small ONNX models for the explain tests (built by hand, by torch, by skl2onnx)."""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from gexplain.modelmeta import ModelMetadata, write_metadata


def _init(name: str, arr: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name)


def gexplain_graph(
    rng: np.random.Generator,
    n_genes: int,
    n_classes: int,
    hidden: Sequence[int] = (),
    *,
    bn: bool = True,
    div: bool = False,
    softmax: bool = False,
    act: str = "Relu",
    gene_ids: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    preprocessing: Sequence[str] = (),
    scale: float = 1.0,
) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """The graph shape the models stage exports.

    ``expression → Sub(mean) → Mul(1/std) | Div(std) → Gemm → [BatchNorm → act → Gemm]*``
    with optional final Softmax. Returns the model and its float32 parameters.
    """
    mean = rng.normal(size=n_genes).astype(np.float32)
    std = rng.uniform(0.5, 2.0, size=n_genes).astype(np.float32)
    p: dict[str, np.ndarray] = {"mean": mean, "std": std}
    inits = [_init("mean", mean)]
    nodes = [helper.make_node("Sub", ["expression", "mean"], ["centered"], name="center")]
    if div:
        inits.append(_init("std", std))
        nodes.append(helper.make_node("Div", ["centered", "std"], ["scaled"], name="scale"))
    else:
        p["inv_std"] = (1.0 / std).astype(np.float32)
        inits.append(_init("inv_std", p["inv_std"]))
        nodes.append(helper.make_node("Mul", ["centered", "inv_std"], ["scaled"], name="scale"))
    prev, width = "scaled", n_genes
    widths = [*hidden, n_classes]
    for k, w in enumerate(widths):
        W = (rng.normal(size=(w, width)) * scale / np.sqrt(width)).astype(np.float32)
        b = (rng.normal(size=w) * 0.1).astype(np.float32)
        p[f"W{k}"], p[f"b{k}"] = W, b
        inits += [_init(f"W{k}", W), _init(f"b{k}", b)]
        out = "logits" if k == len(widths) - 1 and not softmax else f"gemm{k}"
        nodes.append(
            helper.make_node("Gemm", [prev, f"W{k}", f"b{k}"], [out], transB=1, name=f"fc{k}")
        )
        prev, width = out, w
        if k == len(widths) - 1:
            break
        if bn:
            g = rng.uniform(0.5, 1.5, size=w).astype(np.float32)
            beta = rng.normal(size=w).astype(np.float32) * 0.1
            mu = rng.normal(size=w).astype(np.float32) * 0.1
            var = rng.uniform(0.5, 2.0, size=w).astype(np.float32)
            for name, arr in (("g", g), ("beta", beta), ("mu", mu), ("var", var)):
                p[f"{name}{k}"] = arr
                inits.append(_init(f"{name}{k}", arr))
            nodes.append(
                helper.make_node(
                    "BatchNormalization",
                    [prev, f"g{k}", f"beta{k}", f"mu{k}", f"var{k}"],
                    [f"bn{k}"],
                    epsilon=1e-5,
                    name=f"bn{k}",
                )
            )
            prev = f"bn{k}"
        attrs = {"alpha": 0.1} if act == "LeakyRelu" else {}
        nodes.append(helper.make_node(act, [prev], [f"act{k}"], name=f"act{k}", **attrs))
        prev = f"act{k}"
    if softmax:
        nodes.append(helper.make_node("Softmax", [prev], ["probabilities"], axis=1, name="sm"))
        prev = "probabilities"
    graph = helper.make_graph(
        nodes,
        "gexplain",
        [helper.make_tensor_value_info("expression", TensorProto.FLOAT, ["batch", n_genes])],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, ["batch", n_classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if gene_ids is not None or class_names is not None:
        write_metadata(
            model,
            ModelMetadata(
                model_kind="mlp" if hidden else "lr",
                class_names=None if class_names is None else list(class_names),
                gene_ids=None if gene_ids is None else list(gene_ids),
                preprocessing=list(preprocessing),
                input_scaling={"kind": "zscore", "folded": True},
            ),
        )
    return model, p


def reference_forward(p: dict[str, np.ndarray], x: np.ndarray, n_hidden: int, act="Relu"):
    """Plain numpy forward of :func:`gexplain_graph` (float64, logits)."""
    h = np.asarray(x, dtype=np.float64) - p["mean"]
    h = h * p["inv_std"] if "inv_std" in p else h / p["std"].astype(np.float64)
    for k in range(n_hidden + 1):
        h = h @ p[f"W{k}"].T.astype(np.float64) + p[f"b{k}"]
        if k == n_hidden:
            break
        if f"g{k}" in p:
            h = (h - p[f"mu{k}"]) / np.sqrt(p[f"var{k}"].astype(np.float64) + 1e-5) * p[
                f"g{k}"
            ] + p[f"beta{k}"]
        h = np.maximum(h, 0) if act == "Relu" else np.where(h > 0, h, 0.1 * h)
    return h


def torch_export(module, n_genes: int, *, dynamo: bool = False, double: bool = False):
    """Export a torch module (eval mode) to an in-memory ONNX model."""
    import torch

    module = module.eval()
    dtype = torch.float64 if double else torch.float32
    x = torch.randn(3, n_genes, dtype=dtype)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            prog = torch.onnx.export(
                module,
                (x,),
                dynamo=True,
                input_names=["x"],
                output_names=["y"],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                verbose=False,
            )
            return prog.model_proto
        else:
            torch.onnx.export(
                module,
                (x,),
                buf,
                dynamo=False,
                input_names=["x"],
                output_names=["y"],
                dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
            )
    return onnx.load_from_string(buf.getvalue())
