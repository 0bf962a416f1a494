"""Sanity checks for attributions (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018).

- **Model-parameter randomisation**: re-initialise the model's layers in a
  cascade from the top (the output layer first, then down to the first
  layer), re-explain the same samples after each step, and measure the mean
  per-sample Spearman rank correlation with the original attributions. An
  explanation that depends on what the model learned must decorrelate; one
  that stays high is explaining the input, not the model.
- **Label randomisation**: the same comparison against a model of the same
  kind trained on permuted training labels (``gexplain train --permute-labels``).

Randomisation works on the ONNX graph (torch-free): a *layer* is a ``Gemm``, a
``MatMul`` (with the ``Add`` consuming its output, its bias) or a
``BatchNormalization`` node whose parameters are initializers. The folded
preprocessing (the z-scoring ``Sub``/``Mul``/``Div`` before the first layer)
is never touched, so the baseline ``model-zero`` stays the same input.
Re-initialisation follows torch's defaults: a linear layer's weight and bias
``~ U(−1/√fan_in, 1/√fan_in)`` (``kaiming_uniform_(a=√5)``); BatchNorm is reset
to a fresh module (scale 1, shift 0, running mean 0, running variance 1) with
``batchnorm="reset"`` (default) or left as trained with ``batchnorm="keep"``
(then it is not counted as a layer).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import polars as pl
from onnx import numpy_helper

from .._rng import SeedLike, generator
from ..errors import InputError, ModelError
from ._result import MetricResult


@dataclass
class Layer:
    """One parametrised node: its name and the initializers it owns (weight first)."""

    name: str
    op: str
    params: list[str]
    fan_in: int


def _initializers(proto: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {t.name: t for t in proto.graph.initializer}


def model_layers(model: Any, *, batchnorm: str = "reset") -> list[Layer]:
    """The parametrised layers of an ONNX model, from the output down to the input.

    Parameters
    ----------
    model
        ONNX path, :class:`onnx.ModelProto` or :class:`~gexplain.explain.CompiledModel`.
    batchnorm
        ``reset``: BatchNormalization nodes are layers; ``keep``: they are not.
    """
    if batchnorm not in ("reset", "keep"):
        raise InputError(f"batchnorm must be 'reset' or 'keep', got {batchnorm!r}")
    proto = _proto(model)
    inits = _initializers(proto)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in proto.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    layers: list[Layer] = []
    for i, node in enumerate(proto.graph.node):
        label = node.name or f"{node.op_type}_{i}"
        if node.op_type == "Gemm":
            w = node.input[1]
            if w not in inits:
                raise ModelError(f"node {label!r}: its weight {w!r} is not an initializer")
            dims = list(inits[w].dims)
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            fan_in = dims[1] if trans_b else dims[0]
            params = [w] + [p for p in node.input[2:3] if p in inits]
            layers.append(Layer(label, "Gemm", params, int(fan_in)))
        elif node.op_type == "MatMul":
            w = next((p for p in node.input if p in inits), None)
            if w is None:
                continue
            dims = list(inits[w].dims)
            params = [w]
            for nxt in consumers.get(node.output[0], []):
                if nxt.op_type == "Add":
                    params += [p for p in nxt.input if p in inits]
                    break
            layers.append(Layer(label, "MatMul", params, int(dims[0])))
        elif node.op_type == "BatchNormalization" and batchnorm == "reset":
            params = [p for p in node.input[1:5] if p in inits]
            if len(params) != 4:
                raise ModelError(
                    f"node {label!r}: BatchNormalization parameters must be initializers"
                )
            layers.append(Layer(label, "BatchNormalization", params, 0))
    if not layers:
        raise ModelError("the model has no Gemm/MatMul layer with initializer weights")
    return layers[::-1]


def _proto(model: Any) -> onnx.ModelProto:
    from ..explain import CompiledModel

    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, CompiledModel):
        return model.proto
    return CompiledModel.load(model).proto


def randomize_model(
    model: Any,
    layers: int | Sequence[str] | str = "all",
    seed: SeedLike = 0,
    *,
    batchnorm: str = "reset",
) -> onnx.ModelProto:
    """A copy of the model with its top layers re-initialised (cascading randomisation).

    Parameters
    ----------
    model
        ONNX path, :class:`onnx.ModelProto` or :class:`~gexplain.explain.CompiledModel`.
    layers
        ``"all"``, a number ``m`` (the ``m`` layers nearest the output), or
        layer names (see :func:`model_layers`; any subset).
    seed
        Seed of the new parameters (one stream per layer name, so a layer gets
        the same values whichever cascade step randomises it).
    batchnorm
        ``reset`` BatchNorm layers to a fresh module's state, or ``keep`` them.

    Returns
    -------
    onnx.ModelProto
        The randomised model (the input is not modified).

    Examples
    --------
    >>> m = randomize_model("models/mlp-seed0.onnx", layers=1)  # doctest: +SKIP
    """
    proto = _proto(model)
    all_layers = model_layers(proto, batchnorm=batchnorm)
    if isinstance(layers, str) and layers == "all":
        chosen = all_layers
    elif isinstance(layers, (int, np.integer)) and not isinstance(layers, bool):
        if not 0 <= layers <= len(all_layers):
            raise InputError(f"layers must be between 0 and {len(all_layers)}, got {layers}")
        chosen = all_layers[: int(layers)]
    else:
        names = [layers] if isinstance(layers, str) else list(layers)
        known = {layer.name: layer for layer in all_layers}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise InputError(f"unknown layers {unknown}; the model has {list(known)}")
        chosen = [known[n] for n in names]
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    inits = _initializers(out)
    for layer in chosen:
        rng = generator(seed, f"metrics.randomize.{layer.name}")
        if layer.op == "BatchNormalization":
            fresh = (1.0, 0.0, 0.0, 1.0)  # scale, bias, running mean, running var
            for pname, value in zip(layer.params, fresh):
                old = numpy_helper.to_array(inits[pname])
                inits[pname].CopyFrom(numpy_helper.from_array(np.full_like(old, value), pname))
            continue
        bound = 1.0 / math.sqrt(max(layer.fan_in, 1))
        for pname in layer.params:
            old = numpy_helper.to_array(inits[pname])
            new = rng.uniform(-bound, bound, size=old.shape).astype(old.dtype)
            inits[pname].CopyFrom(numpy_helper.from_array(new, pname))
    return out


def _explain(
    model: Any, X: np.ndarray, targets: np.ndarray, baseline: Any, output: str
) -> np.ndarray:
    from ..explain import integrated_gradients

    attr = integrated_gradients(
        model, X, labels=targets, target="label", baseline=baseline, output=output
    )
    return attr.values.astype(np.float64)


def _mean_spearman(a: np.ndarray, b: np.ndarray, absolute: bool) -> tuple[float, int]:
    from ..kernels.topk import spearman_rows

    if absolute:
        a, b = np.abs(a), np.abs(b)
    rho = spearman_rows(np.ascontiguousarray(a), np.ascontiguousarray(b))
    ok = np.isfinite(rho)
    return (float(rho[ok].mean()) if ok.any() else float("nan")), int(ok.sum())


def _setup(model: Any, X: Any, targets: Any, values: Any, baseline: Any) -> tuple[Any, ...]:
    from ..explain import CompiledModel

    cm = CompiledModel.load(model)
    x = np.asarray(X, dtype=np.float64)
    t = np.asarray(targets, dtype=np.int64)
    v = np.asarray(values, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != cm.n_genes:
        raise InputError(f"X must be (n, {cm.n_genes}), got {x.shape}")
    if t.shape != (x.shape[0],) or v.shape != x.shape:
        raise InputError(
            f"targets {t.shape} and values {v.shape} must match X {x.shape} row for row"
        )
    base = cm.model_zero if isinstance(baseline, str) and baseline == "model-zero" else baseline
    return cm, x, t, v, base


def _row(variant: str, value: float, n: int, metric: str) -> dict[str, Any]:
    return {
        "class": None,
        "metric": metric,
        "variant": variant,
        "k": None,
        "control": None,
        "value": value,
        "n": n,
    }


def model_randomization(
    model: Any,
    X: np.ndarray,
    targets: np.ndarray,
    values: np.ndarray,
    *,
    baseline: Any = "model-zero",
    seed: SeedLike = 0,
    output: str = "probability",
    batchnorm: str = "reset",
    absolute: bool = False,
    identity: bool = True,
) -> MetricResult:
    """Cascading model-parameter randomisation: rank correlation after each step.

    Parameters
    ----------
    model
        The trained model (ONNX path, ModelProto or CompiledModel).
    X
        ``(n, G)`` explained samples (model gene order).
    targets
        ``(n,)`` explained class indices.
    values
        ``(n, G)`` the original attributions of those rows (same output and baseline).
    baseline
        IG baseline (``model-zero`` is the original model's, unchanged by randomisation).
    seed
        Seed of the new parameters.
    output
        Explained output (``probability``, the paper's; ``logit``; ``log_probability``).
    batchnorm
        See :func:`randomize_model`.
    absolute
        Correlate ``|attributions|`` instead (Adebayo et al. report both).
    identity
        Also re-explain the unmodified model (variant ``model-randomization:none``,
        expected 1).

    Returns
    -------
    MetricResult
        ``rank-correlation`` rows, variant ``model-randomization:<layer>`` for the
        cascade step that has randomised every layer down to ``<layer>``; ``n``
        the samples with a defined correlation (a constant row has none).
    """
    cm, x, t, v, base = _setup(model, X, targets, values, baseline)
    metric = "rank-correlation-abs" if absolute else "rank-correlation"
    rows = []
    if identity:
        rho, n = _mean_spearman(v, _explain(cm, x, t, base, output), absolute)
        rows.append(_row("model-randomization:none", rho, n, metric))
    layers = model_layers(cm.proto, batchnorm=batchnorm)
    for step, layer in enumerate(layers, start=1):
        proto = randomize_model(cm.proto, step, seed, batchnorm=batchnorm)
        rho, n = _mean_spearman(v, _explain(proto, x, t, base, output), absolute)
        rows.append(_row(f"model-randomization:{layer.name}", rho, n, metric))
    return MetricResult(scores=pl.DataFrame(rows))


def label_randomization(
    control_model: Any,
    X: np.ndarray,
    targets: np.ndarray,
    values: np.ndarray,
    *,
    baseline: Any = "model-zero",
    output: str = "probability",
    absolute: bool = False,
) -> MetricResult:
    """Rank correlation with the attributions of a model trained on permuted labels.

    Parameters
    ----------
    control_model
        The label-permuted model (``<kind>-permuted-seed<k>.onnx``); its
        outputs must be the original model's classes in the same order.
    X, targets, values, baseline, output, absolute
        As in :func:`model_randomization` (``model-zero`` is the control
        model's own, i.e. the same training mean).

    Returns
    -------
    MetricResult
        One ``rank-correlation`` row, variant ``label-randomization``.
    """
    cm, x, t, v, base = _setup(control_model, X, targets, values, baseline)
    rho, n = _mean_spearman(v, _explain(cm, x, t, base, output), absolute)
    metric = "rank-correlation-abs" if absolute else "rank-correlation"
    return MetricResult(scores=pl.DataFrame([_row("label-randomization", rho, n, metric)]))
