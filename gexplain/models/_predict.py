"""Predictions with onnxruntime (torch-free): any ONNX classifier gexplain accepts.

gexplain's own models output ``logits`` (softmax gives probabilities);
skl2onnx models output ``label`` and ``probabilities`` (``zipmap=False``).
Genes are aligned to the model by id (:func:`gexplain.modelmeta.prepare_cohort`)
chunk by chunk, so memory stays bounded on large cohorts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import polars as pl

from ..errors import AlignmentError, InputError, ModelError
from ..modelmeta import ModelMetadata, prepare_cohort, read_metadata

__all__ = ["LoadedModel", "balanced_accuracy", "confusion_counts", "load_model", "predict"]


def balanced_accuracy(y_true: Any, y_pred: Any) -> float:
    """Mean over the classes present in ``y_true`` of the fraction predicted correctly.

    Works on integer indices or strings; NaN when ``y_true`` is empty.

    Examples
    --------
    >>> balanced_accuracy([0, 0, 0, 1], [0, 0, 1, 1])
    0.8333333333333333
    """
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.shape != p.shape:
        raise ValueError("y_true and y_pred must have the same length")
    if t.size == 0:
        return float("nan")
    classes, inv = np.unique(t, return_inverse=True)
    hit = (t == p).astype(np.float64)
    recall = np.bincount(inv, weights=hit, minlength=classes.size) / np.bincount(
        inv, minlength=classes.size
    )
    return float(recall.mean())


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """``n_classes × n_classes`` int64 counts: row = true class, column = predicted class."""
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes
    )


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class LoadedModel:
    """An onnxruntime session with gexplain's metadata and how to read its outputs."""

    path: Path
    session: Any
    meta: ModelMetadata
    input_name: str
    n_inputs: int | None
    output_name: str
    output_is_probability: bool
    class_names: list[str]

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities (float64) for rows ``x`` already aligned to the model."""
        out = self.session.run([self.output_name], {self.input_name: x.astype(np.float32)})[0]
        out = np.asarray(out)
        if out.ndim != 2:
            raise ModelError(
                f"output {self.output_name!r} of {self.path} has shape {out.shape}; "
                "expected [batch, classes]"
            )
        return out.astype(np.float64) if self.output_is_probability else _softmax(out)


def load_model(path: str | os.PathLike[str], *, threads: int | None = None) -> LoadedModel:
    """Open an ONNX classifier with onnxruntime and read its gexplain metadata.

    Parameters
    ----------
    path
        The ``.onnx`` file.
    threads
        onnxruntime intra-op threads (default: onnxruntime's choice).
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.exists():
        raise InputError("model file not found", path=path)
    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # protobuf errors have no common base
        raise ModelError(f"{path}: not a readable ONNX model ({exc})") from exc
    meta = read_metadata(proto, path)
    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(
        proto.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"]
    )
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ModelError(f"{path}: expected one input (samples × genes), found {len(inputs)}")
    shape = inputs[0].shape
    n_inputs = shape[1] if len(shape) == 2 and isinstance(shape[1], int) else None
    outputs = {o.name: o for o in session.get_outputs()}
    if "logits" in outputs:
        out_name, is_prob = "logits", False
    elif "probabilities" in outputs:
        out_name, is_prob = "probabilities", True
    else:
        floats = [o for o in session.get_outputs() if o.type == "tensor(float)"]
        if not floats:
            raise ModelError(f"{path}: no float output to read class scores from")
        out_name = floats[0].name
        is_prob = any(n.op_type == "Softmax" for n in proto.graph.node if out_name in n.output)
    n_out = outputs[out_name].shape[1] if len(outputs[out_name].shape or []) == 2 else None
    if meta.class_names is not None:
        class_names = list(meta.class_names)
    elif isinstance(n_out, int):
        class_names = [str(i) for i in range(n_out)]
    else:
        class_names = []
    return LoadedModel(
        path, session, meta, inputs[0].name, n_inputs, out_name, is_prob, class_names
    )


def predict(
    model: str | os.PathLike[str] | LoadedModel,
    cohort: Any,
    *,
    split: str | None = None,
    split_column: str = "split",
    fill: float | None = None,
    batch_size: int = 2048,
    threads: int | None = None,
) -> pl.DataFrame:
    """Predicted class and class probabilities for every sample of a cohort.

    Parameters
    ----------
    model
        Path of an ONNX classifier (or a :class:`LoadedModel`).
    cohort
        A :class:`gexplain.Cohort` (or a cohort folder). Its genes are aligned
        to the model's by id; its recorded value transforms must equal the
        model's.
    split
        Only samples whose ``split_column`` equals this (e.g. ``"test"``).
    fill
        Value for model genes missing from the cohort (default: refuse).
    batch_size
        Samples per onnxruntime call (bounds memory).
    threads
        onnxruntime intra-op threads.

    Returns
    -------
    polars.DataFrame
        ``sample_id``, ``label`` and ``split`` (when present), ``predicted``,
        ``correct`` (when labelled), ``probability`` (of the predicted class)
        and one ``p_<class>`` column per class in output order.

    Examples
    --------
    >>> frame = predict("models/mlp-seed0.onnx", "cohort/", split="test")  # doctest: +SKIP
    >>> balanced_accuracy(frame["label"], frame["predicted"])  # doctest: +SKIP
    """
    from ..cohort import Cohort

    if not isinstance(cohort, Cohort):
        cohort = Cohort.load(cohort)
    lm = model if isinstance(model, LoadedModel) else load_model(model, threads=threads)
    if split is not None:
        if split_column not in cohort.samples.columns:
            raise InputError(f"the cohort has no {split_column!r} column", column=split_column)
        cohort = cohort.select(samples=cohort.samples[split_column] == split)
    if lm.meta.gene_ids is None and lm.n_inputs is not None and lm.n_inputs != cohort.n_genes:
        raise AlignmentError(
            f"{lm.path} takes {lm.n_inputs} inputs and records no gene ids, "
            f"but the cohort has {cohort.n_genes} genes"
        )
    probs: list[np.ndarray] = []
    for chunk in cohort.iter_chunks(max(1, batch_size)):
        aligned = prepare_cohort(chunk, lm.meta, fill=fill)
        probs.append(lm.probabilities(np.asarray(aligned.expression)))
    n_classes = len(lm.class_names) or (probs[0].shape[1] if probs else 0)
    p = np.concatenate(probs) if probs else np.zeros((0, n_classes))
    if p.shape[1] != n_classes:
        raise ModelError(
            f"{lm.path} outputs {p.shape[1]} classes but its metadata names {n_classes}"
        )
    names = lm.class_names or [str(i) for i in range(n_classes)]
    idx = p.argmax(axis=1) if p.shape[0] else np.zeros(0, dtype=np.int64)
    cols: dict[str, Any] = {"sample_id": cohort.samples["sample_id"]}
    for c in ("label", split_column):
        if c in cohort.samples.columns:
            cols[c] = cohort.samples[c]
    predicted = pl.Series("predicted", np.asarray(names, dtype=object)[idx].tolist(), pl.String)
    frame = pl.DataFrame(cols).with_columns(predicted)
    if "label" in frame.columns:
        frame = frame.with_columns(correct=pl.col("label").cast(pl.String) == pl.col("predicted"))
    prob_cols = [pl.Series(f"p_{nm}", p[:, j]) for j, nm in enumerate(names)]
    frame = frame.with_columns(
        pl.Series("probability", p[np.arange(p.shape[0]), idx] if p.shape[0] else []),
        *prob_cols,
    )
    return frame


def summarize(frame: pl.DataFrame, split_column: str = "split") -> dict[str, Any]:
    """Balanced accuracy and accuracy of a :func:`predict` frame, overall and per split."""

    def scores(f: pl.DataFrame) -> dict[str, Any]:
        f = f.filter(pl.col("label").is_not_null())
        return {
            "n_samples": f.height,
            "balanced_accuracy": balanced_accuracy(
                f["label"].cast(pl.String).to_numpy(), f["predicted"].to_numpy()
            ),
            "accuracy": float(f["correct"].mean()) if f.height else float("nan"),
        }

    out: dict[str, Any] = {"n_samples": frame.height}
    if "label" not in frame.columns:
        return out
    out.update(scores(frame))
    if split_column in frame.columns:
        out["splits"] = {
            str(s): scores(frame.filter(pl.col(split_column) == s))
            for s in sorted(frame[split_column].drop_nulls().unique().to_list())
        }
    return out
