"""IG baselines: where the straight path starts.

A baseline spec is one of

============== =============================================================
``model-zero`` zero in the model's input space after its folded
               preprocessing: the training mean when z-scoring is folded
               (the paper's baseline; :attr:`CompiledModel.model_zero`)
``zeros``      zero expression in the cohort's stored values
``train-mean`` mean of the cohort's training samples (``split == "train"``;
               all samples when there is no split column)
``class-mean`` per sample, the mean of the training samples sharing its label
array (G,)     one explicit baseline (model gene order)
array (n, G)   one baseline per explained sample
Cohort         rows matched by ``sample_id`` when the ids cover the explained
               samples (one baseline each); otherwise every row is a baseline
               and the attributions are averaged over them
FILE           ``.npy`` (model gene order), ``.tsv``/``.csv``/``.parquet``
               with columns ``gene_id`` and ``value`` (aligned by id), or a
               cohort folder
============== =============================================================

and a list of specs is averaged: ``IG = mean_b IG(x; b)``, ``f_baseline =
mean_b f(b)`` (completeness holds for the average).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

BASELINE_NAMES = ("model-zero", "zeros", "train-mean", "class-mean")


@dataclass
class Baseline:
    """One resolved baseline.

    ``rows`` holds the distinct baseline vectors (model gene order, float64);
    :meth:`index` says which row each explained sample uses.
    """

    name: str
    rows: np.ndarray
    kind: str  # "shared", "per_class" or "per_sample"
    order: np.ndarray | None = None  # per_sample: row of ``rows`` for each explained sample

    def select(
        self, positions: np.ndarray, label_idx: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Baseline rows and per-sample row index for the samples at ``positions``."""
        n = positions.shape[0]
        if self.kind == "shared":
            return self.rows, np.zeros(n, dtype=np.int64)
        if self.kind == "per_class":
            assert label_idx is not None
            bad = ~np.isfinite(self.rows[label_idx]).all(axis=1) if n else np.zeros(0, bool)
            if bad.any():
                raise InputError(
                    f"class-mean baseline: no training sample has the label of "
                    f"{int(bad.sum())} explained samples"
                )
            return self.rows, np.asarray(label_idx, dtype=np.int64)
        pick = positions if self.order is None else self.order[positions]
        rows = np.asarray(self.rows[pick], dtype=np.float64)
        return rows, np.arange(n, dtype=np.int64)


def _train_rows(cohort: Any) -> np.ndarray:
    samples = cohort.samples
    if "split" in samples.columns:
        mask = (samples["split"] == "train").fill_null(False).to_numpy()
        if mask.any():
            return np.flatnonzero(mask)
    return np.arange(cohort.n_samples)


def _mean_rows(x: np.ndarray, rows: np.ndarray, block: int = 2048) -> np.ndarray:
    acc = np.zeros(x.shape[1])
    for s in range(0, rows.size, block):
        acc += np.asarray(x[rows[s : s + block]], dtype=np.float64).sum(axis=0)
    return acc / max(1, rows.size)


def _read_vector(path: Path, model: Any) -> np.ndarray:
    import polars as pl

    suffix = path.suffix.lower()
    if suffix == ".npy":
        v = np.load(path)
        if v.ndim != 1 or v.shape[0] != model.n_genes:
            raise InputError(
                f"baseline vector has shape {v.shape}, expected ({model.n_genes},)", path=path
            )
        return v.astype(np.float64)
    if suffix in (".tsv", ".csv", ".txt"):
        frame = pl.read_csv(path, separator="\t" if suffix != ".csv" else ",")
    elif suffix == ".parquet":
        frame = pl.read_parquet(path)
    else:
        raise InputError("baseline file must be .npy, .tsv, .csv or .parquet", path=path)
    for col in ("gene_id", "value"):
        if col not in frame.columns:
            raise InputError(f"baseline table needs a {col!r} column", path=path, column=col)
    if model.gene_ids is None:
        raise InputError(
            "the model records no gene ids, so a gene_id/value baseline table cannot be "
            "aligned; pass a .npy vector in model input order",
            path=path,
        )
    lookup = dict(zip(frame["gene_id"].cast(pl.String).to_list(), frame["value"].to_list()))
    missing = [g for g in model.gene_ids if g not in lookup]
    if missing:
        raise InputError(
            f"baseline table lacks {len(missing)} model genes, e.g. {missing[:5]}", path=path
        )
    return np.array([lookup[g] for g in model.gene_ids], dtype=np.float64)


def resolve_baselines(
    spec: Any,
    model: Any,
    data: Any,
    *,
    sample_ids: Sequence[str] | None,
    fill: float | None = None,
) -> list[Baseline]:
    """Turn a baseline spec (or list of specs) into :class:`Baseline` objects.

    Parameters
    ----------
    spec
        See the module docstring.
    model
        The :class:`CompiledModel`.
    data
        The explained samples: a prepared Cohort (model gene order) or a 2-D array.
    sample_ids
        Ids of the explained samples (to match a baseline cohort).
    fill
        Fill value for genes a baseline cohort lacks.
    """
    from ..cohort import Cohort

    if isinstance(spec, (list, tuple)) and not (
        len(spec) and isinstance(spec[0], (int, float, np.floating))
    ):
        out: list[Baseline] = []
        for s in spec:
            out.extend(resolve_baselines(s, model, data, sample_ids=sample_ids, fill=fill))
        if not out:
            raise InputError("no baseline given")
        return out
    g = model.n_genes
    if isinstance(spec, (str, os.PathLike)) and str(spec) in BASELINE_NAMES:
        name = str(spec)
        if name == "model-zero":
            return [Baseline(name, model.model_zero[None, :].copy(), "shared")]
        if name == "zeros":
            return [Baseline(name, np.zeros((1, g)), "shared")]
        if isinstance(data, Cohort):
            x, rows = data.expression, _train_rows(data)
        else:
            x, rows = np.asarray(data), np.arange(np.asarray(data).shape[0])
        if name == "train-mean":
            return [Baseline(name, _mean_rows(x, rows)[None, :], "shared")]
        # class-mean
        if not isinstance(data, Cohort) or not data.has_labels:
            raise InputError(
                "the class-mean baseline needs labelled samples (a Cohort with labels)"
            )
        labels = data.labels.cast(str).to_numpy()
        means = np.full((model.n_classes, g), np.nan)
        for k, cname in enumerate(model.class_names):
            sel = rows[labels[rows] == cname]
            if sel.size:
                means[k] = _mean_rows(x, sel)
        return [Baseline(name, means, "per_class")]
    if isinstance(spec, (str, os.PathLike)):
        path = Path(spec)
        if path.is_dir():
            return resolve_baselines(
                Cohort.load(path), model, data, sample_ids=sample_ids, fill=fill
            )
        if not path.exists():
            raise InputError(
                f"unknown baseline {str(spec)!r}: expected one of {', '.join(BASELINE_NAMES)}, "
                "a file or a cohort folder"
            )
        return [Baseline(path.name, _read_vector(path, model)[None, :], "shared")]
    if isinstance(spec, Cohort):
        aligned = model.prepare(spec, fill=fill)
        ids = aligned.sample_ids
        if sample_ids is not None and set(sample_ids) <= set(ids):
            pos = dict(zip(ids, range(len(ids))))
            order = np.array([pos[s] for s in sample_ids], dtype=np.int64)
            return [Baseline("cohort", aligned.expression, "per_sample", order)]
        x = np.asarray(aligned.expression, dtype=np.float64)
        return [Baseline(f"cohort:{sid}", x[i : i + 1], "shared") for i, sid in enumerate(ids)]
    arr = np.asarray(spec, dtype=np.float64)
    n = (
        None
        if data is None
        else (data.n_samples if isinstance(data, Cohort) else np.asarray(data).shape[0])
    )
    if arr.ndim == 1 and arr.shape[0] == g:
        return [Baseline("vector", arr[None, :].copy(), "shared")]
    if arr.ndim == 2 and arr.shape[1] == g and arr.shape[0] == n:
        return [Baseline("array", np.ascontiguousarray(arr), "per_sample")]
    raise InputError(
        f"baseline of shape {arr.shape} does not fit: expected ({g},) or "
        f"({n}, {g}) for {n} samples × {g} model genes"
    )
