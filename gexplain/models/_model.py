"""A trained model's weights and training record, and its ONNX export (torch-free)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import polars as pl
import scipy.sparse as sp

from .._atomic import atomic_file
from ..modelmeta import ModelMetadata, read_metadata, write_metadata
from ._export import build_onnx

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["KINDS", "TrainedModel", "model_name", "model_stem", "split_kind"]

KINDS = ("lr", "mlp", "diffuse-lr", "diffuse-mlp")
BN_EPSILON = 1e-5
#: Version of the training recipe/format; part of the resume parameters.
TRAINING_FORMAT = 2


def split_kind(kind: str) -> tuple[str, bool]:
    """``"diffuse-mlp"`` → ``("mlp", True)``; ``"lr"`` → ``("lr", False)``."""
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; choose from {', '.join(KINDS)}")
    diffused = kind.startswith("diffuse-")
    return (kind[len("diffuse-") :] if diffused else kind), diffused


def model_name(kind: str, permuted_labels: bool = False) -> str:
    """The model's name in file names and tables: the kind, ``-permuted`` if so."""
    return f"{kind}-permuted" if permuted_labels else kind


def model_stem(kind: str, seed: int, permuted_labels: bool = False) -> str:
    """``<name>-seed<k>``: the ONNX file name without ``.onnx``."""
    return f"{model_name(kind, permuted_labels)}-seed{seed}"


def _json_floats(values: Any) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, dtype=float)]


@dataclass
class TrainedModel:
    """A trained LR/MLP (optionally diffused) with its input scaling and training record.

    Weights are numpy arrays named as in the torch module (``linear.*`` for LR;
    ``fc1.*``, ``bn.*``, ``fc2.*`` for the MLP). The model's function of a raw
    cohort row ``x`` (the stored values) is::

        z = (x - mean) * inv_std          # float32, exactly the exported Sub/Mul
        u = S z   (diffused models)       # S symmetric, so rows: u = z @ S
        logits = net(u)                   # Linear, or Linear-BatchNorm-ReLU-Linear

    Attributes
    ----------
    kind
        ``lr``, ``mlp``, ``diffuse-lr`` or ``diffuse-mlp``.
    seed
        Training seed.
    class_names
        Output order.
    gene_ids
        Input order.
    mean, inv_std
        float32 per-gene training mean and 1 / std (std 0 counted as 1).
    params
        Weights (numpy float32).
    diffusion
        ``S`` (CSR float64) for diffused models, else ``None``.
    permuted_labels
        Trained on randomly permuted training labels (a sanity control).
    preprocessing
        The cohort's value transforms at training time.
    training_data_sha256
        Hash of the training matrix and labels.
    graph_file, graph_sha256
        File name of the stored graph beside the model and the hash of ``S``.
    training
        The run's parameters (hyper-parameters, data hash, ...): a rerun with
        equal parameters skips this model.
    history
        One row per epoch: ``epoch, loss, train_balanced_accuracy,
        test_balanced_accuracy``.
    confusion
        Long form ``split, true, predicted, count`` after the last epoch.
    """

    kind: str
    seed: int
    class_names: list[str]
    gene_ids: list[str]
    mean: np.ndarray
    inv_std: np.ndarray
    params: dict[str, np.ndarray]
    diffusion: sp.csr_matrix | None = None
    permuted_labels: bool = False
    preprocessing: list[str] = field(default_factory=list)
    training_data_sha256: str | None = None
    graph_file: str | None = None
    graph_sha256: str | None = None
    training: dict[str, Any] = field(default_factory=dict)
    history: pl.DataFrame | None = None
    confusion: pl.DataFrame | None = None

    # ------------------------------------------------------------------ names
    @property
    def base_kind(self) -> str:
        """``lr`` or ``mlp``."""
        return split_kind(self.kind)[0]

    @property
    def diffused(self) -> bool:
        """Whether the inputs are diffused by ``S``."""
        return split_kind(self.kind)[1]

    @property
    def name(self) -> str:
        """Kind plus ``-permuted`` for label-permuted controls (the metadata's model kind)."""
        return model_name(self.kind, self.permuted_labels)

    @property
    def stem(self) -> str:
        """File name without extension: ``<name>-seed<k>``."""
        return model_stem(self.kind, self.seed, self.permuted_labels)

    @property
    def test_balanced_accuracy(self) -> float:
        """Balanced test accuracy after the last epoch (NaN without a test split)."""
        if self.history is None or self.history.height == 0:
            return float("nan")
        v = self.history["test_balanced_accuracy"][-1]
        return float("nan") if v is None else float(v)

    # ------------------------------------------------------------------ function
    def model_input(self, x: np.ndarray) -> np.ndarray:
        """The network's input for raw rows ``x``: z-score (float32), then ``S`` if diffused."""
        z = (np.asarray(x, dtype=np.float32) - self.mean) * self.inv_std
        if self.diffusion is not None:
            z = np.asarray(z @ self.diffusion.astype(np.float32), dtype=np.float32)
        return z

    def layers(self) -> list[dict[str, Any]]:
        """The layers after the input scaling, with ``S`` folded into the first weight."""
        p = self.params
        first = "linear" if self.base_kind == "lr" else "fc1"
        w = np.asarray(p[f"{first}.weight"], dtype=np.float64)
        if self.diffusion is not None:
            w = np.asarray((self.diffusion @ w.T).T)  # W S with S symmetric
        layers: list[dict[str, Any]] = [{"op": "gemm", "weight": w, "bias": p[f"{first}.bias"]}]
        if self.base_kind == "mlp":
            layers += [
                {
                    "op": "batchnorm",
                    "scale": p["bn.weight"],
                    "bias": p["bn.bias"],
                    "mean": p["bn.running_mean"],
                    "var": p["bn.running_var"],
                    "epsilon": BN_EPSILON,
                },
                {"op": "relu"},
                {"op": "gemm", "weight": p["fc2.weight"], "bias": p["fc2.bias"]},
            ]
        return layers

    def metadata(self) -> ModelMetadata:
        """The :class:`~gexplain.modelmeta.ModelMetadata` written into the ONNX file."""
        extra: dict[str, str] = {
            "training": json.dumps(self.training, sort_keys=True),
            "permuted_labels": json.dumps(self.permuted_labels),
        }
        if self.graph_sha256 is not None:
            extra["graph_sha256"] = self.graph_sha256
        if self.history is not None:
            extra["history"] = json.dumps(
                {
                    c: self.history[c].to_list()
                    if self.history[c].dtype.is_integer()
                    else _json_floats(self.history[c])
                    for c in self.history.columns
                }
            )
        if self.confusion is not None:
            nz = self.confusion.filter(pl.col("count") > 0)
            extra["confusion"] = json.dumps(
                {
                    s: nz.filter(pl.col("split") == s).select("true", "predicted", "count").rows()
                    for s in sorted(set(nz["split"].to_list()))
                }
            )
        return ModelMetadata(
            model_kind=self.name,
            seed=self.seed,
            class_names=list(self.class_names),
            gene_ids=list(self.gene_ids),
            preprocessing=list(self.preprocessing),
            input_scaling={"kind": "zscore", "folded": True},
            training_data_sha256=self.training_data_sha256,
            graph=self.graph_file if self.diffused else None,
            extra=extra,
        )

    def to_onnx(self, path: str | os.PathLike[str] | None = None) -> onnx.ModelProto:
        """The ONNX model (opset 17, input ``expression``, output ``logits``) with metadata."""
        model = build_onnx(
            mean=self.mean, inv_std=self.inv_std, layers=self.layers(), name=self.stem
        )
        write_metadata(model, self.metadata(), path)
        return model

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the ONNX file atomically (one file, no external data)."""
        path = Path(path)
        model = self.to_onnx(path)
        with atomic_file(path) as tmp:
            onnx.save_model(model, tmp)
        return path

    def to_torch(self) -> torch.nn.Module:
        """The trained torch module (eval mode) taking :meth:`model_input` rows. Imports torch."""
        from ._torch import build_module, load_params

        module = build_module(
            self.base_kind,
            len(self.gene_ids),
            len(self.class_names),
            hidden=int(self.params["fc1.weight"].shape[0]) if self.base_kind == "mlp" else 0,
            dropout=float(self.training.get("dropout", 0.0)),
        )
        load_params(module, self.params)
        return module.eval()


def training_record(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Read a gexplain-trained model's record (metadata, params, history, confusion) from ONNX.

    Returns ``None`` for models without gexplain training metadata.
    """
    model = onnx.load(str(path), load_external_data=False)
    meta = read_metadata(model, path)
    if "training" not in meta.extra:
        return None
    out: dict[str, Any] = {
        "meta": meta,
        "training": json.loads(meta.extra["training"]),
        "history": json.loads(meta.extra.get("history", "{}")),
        "confusion": json.loads(meta.extra.get("confusion", "{}")),
    }
    return out
