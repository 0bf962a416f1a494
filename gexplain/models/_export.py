"""Build the ONNX graph of a trained gexplain model from its weights (torch-free).

The graph is written node by node with :mod:`onnx.helper` from the trained
weights, which is exact and deterministic (no exporter tracing)::

    expression [batch, G] float32
      -> Sub(mean)            per-gene training mean     } the z-score, folded
      -> Mul(1 / std)         per-gene 1 / training std  }
      -> Gemm(W, b, transB=1) first layer; diffused models: W' = W S
      [MLP: -> BatchNormalization (inference, running statistics) -> Relu -> Gemm]
      -> logits [batch, C]

LR's Dropout is the identity at inference and does not appear. Opset 17, one
file, dynamic batch, no external data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
INPUT_NAME = "expression"
OUTPUT_NAME = "logits"

__all__ = ["INPUT_NAME", "OPSET", "OUTPUT_NAME", "build_onnx"]


def _init(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.float32), name)


def build_onnx(
    *,
    mean: np.ndarray,
    inv_std: np.ndarray,
    layers: Sequence[dict[str, Any]],
    name: str = "gexplain",
) -> onnx.ModelProto:
    """The ONNX model ``logits = layers((x - mean) * inv_std)``.

    Parameters
    ----------
    mean, inv_std
        Per-gene training mean and reciprocal standard deviation (length G).
    layers
        Sequence of ``{"op": "gemm", "weight": (out, in), "bias": (out,)}``,
        ``{"op": "batchnorm", "scale", "bias", "mean", "var", "epsilon"}`` and
        ``{"op": "relu"}``, applied in order; the first must be a gemm with
        ``in == G``.

    Returns
    -------
    onnx.ModelProto
        Checked with :func:`onnx.checker.check_model`; no metadata yet.

    Examples
    --------
    >>> import numpy as np
    >>> m = build_onnx(mean=np.zeros(3), inv_std=np.ones(3),
    ...                layers=[{"op": "gemm", "weight": np.eye(2, 3), "bias": np.zeros(2)}])
    >>> [n.op_type for n in m.graph.node]
    ['Sub', 'Mul', 'Gemm']
    """
    mean = np.asarray(mean)
    g = mean.shape[0]
    if np.asarray(inv_std).shape != (g,):
        raise ValueError("mean and inv_std must have the same length")
    if not layers or layers[0]["op"] != "gemm" or np.asarray(layers[0]["weight"]).shape[1] != g:
        raise ValueError("the first layer must be a gemm with one input per gene")
    inits = [_init("input_mean", mean), _init("input_inv_std", inv_std)]
    nodes = [
        helper.make_node("Sub", [INPUT_NAME, "input_mean"], ["centred"], name="zscore_sub"),
        helper.make_node("Mul", ["centred", "input_inv_std"], ["zscored"], name="zscore_mul"),
    ]
    current = "zscored"
    width = g
    n_gemm = n_bn = n_relu = 0
    for i, layer in enumerate(layers):
        op = layer["op"]
        out = OUTPUT_NAME if i == len(layers) - 1 else f"h{i}"
        if op == "gemm":
            w = np.asarray(layer["weight"])
            b = np.asarray(layer["bias"])
            if w.ndim != 2 or w.shape[1] != width or b.shape != (w.shape[0],):
                raise ValueError(f"layer {i}: gemm weight {w.shape} / bias {b.shape} mismatch")
            n_gemm += 1
            wn, bn = f"gemm{n_gemm}_weight", f"gemm{n_gemm}_bias"
            inits += [_init(wn, w), _init(bn, b)]
            nodes.append(
                helper.make_node("Gemm", [current, wn, bn], [out], name=f"gemm{n_gemm}", transB=1)
            )
            width = w.shape[0]
        elif op == "batchnorm":
            n_bn += 1
            names = [f"bn{n_bn}_{k}" for k in ("scale", "bias", "mean", "var")]
            for nm, k in zip(names, ("scale", "bias", "mean", "var")):
                v = np.asarray(layer[k])
                if v.shape != (width,):
                    raise ValueError(f"layer {i}: batchnorm {k} has shape {v.shape}")
                inits.append(_init(nm, v))
            nodes.append(
                helper.make_node(
                    "BatchNormalization",
                    [current, *names],
                    [out],
                    name=f"batchnorm{n_bn}",
                    epsilon=float(layer.get("epsilon", 1e-5)),
                )
            )
        elif op == "relu":
            n_relu += 1
            nodes.append(helper.make_node("Relu", [current], [out], name=f"relu{n_relu}"))
        else:
            raise ValueError(f"unknown layer op {op!r}")
        current = out
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", g])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", width])],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="gexplain",
    )
    onnx.checker.check_model(model, full_check=True)
    return model
