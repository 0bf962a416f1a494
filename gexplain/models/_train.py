"""Training orchestration: data preparation, one model, a folder of models (torch-free here).

torch is imported only when a model is actually fitted (:mod:`._torch`), so
this module and :mod:`gexplain.models` import without it.

Order of the input transforms (the paper's, and identical at training and
export): a stored cohort row ``x`` is z-scored with the training mean and
standard deviation in float32, ``z = (x - mean) * (1 / std)``; diffused models
then see ``S z`` (``z @ S`` for a row; ``S`` is symmetric). The exported graph
computes the same ``Sub``/``Mul`` and folds ``S`` into the first ``Gemm``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from .._atomic import atomic_file
from .._progress import progress
from .._rng import generator
from ..cohort import Cohort
from ..errors import GexplainError, InputError
from ..modelmeta import gene_ids_hash
from ..preprocess import zscore_stats
from ._graph import (
    GRAPH_FILE,
    correlation_graph,
    diffusion_operator,
    graph_info,
    graph_sha256,
    read_graph,
    write_graph,
)
from ._model import (
    KINDS,
    TRAINING_FORMAT,
    TrainedModel,
    model_name,
    model_stem,
    split_kind,
    training_record,
)
from ._predict import confusion_counts

__all__ = [
    "TrainConfig",
    "TrainingData",
    "fit",
    "parse_kinds",
    "train_models",
    "write_tables",
]

_CHUNK_ROWS = 2048


@dataclass
class TrainConfig:
    """Hyper-parameters; the defaults are the paper's recipe.

    Attributes
    ----------
    hidden
        MLP hidden width (20).
    epochs
        Training epochs (25).
    lr
        SGD learning rate (0.1).
    batch_size
        Mini-batch size (32).
    weight_decay
        SGD weight decay (1e-4).
    milestones
        MultiStepLR epochs at which the learning rate is multiplied by ``gamma``
        ((12, 22)).
    gamma
        MultiStepLR factor (0.1).
    dropout
        LR input dropout (0.2).
    momentum
        SGD momentum (0.9).
    graph_threshold
        Diffused models keep correlations ``> graph_threshold`` (0.5).
    split_column
        Sample column holding ``"train"`` / ``"test"`` (``"split"``).
    """

    hidden: int = 20
    epochs: int = 25
    lr: float = 0.1
    batch_size: int = 32
    weight_decay: float = 1e-4
    milestones: tuple[int, ...] = (12, 22)
    gamma: float = 0.1
    dropout: float = 0.2
    momentum: float = 0.9
    graph_threshold: float = 0.5
    split_column: str = "split"

    def __post_init__(self) -> None:
        self.milestones = tuple(int(m) for m in self.milestones)
        if self.epochs < 1:
            raise ValueError("epochs must be ≥ 1")
        if self.batch_size < 1:
            raise ValueError("batch_size must be ≥ 1")
        if self.hidden < 1:
            raise ValueError("hidden must be ≥ 1")
        if not 0 <= self.dropout < 1:
            raise ValueError("dropout must be in [0, 1)")

    def fit_kwargs(self, base_kind: str) -> dict[str, Any]:
        """Keyword arguments of the torch training loop for ``lr`` or ``mlp``."""
        kw: dict[str, Any] = {
            "epochs": self.epochs,
            "lr": self.lr,
            "batch_size": self.batch_size,
            "weight_decay": self.weight_decay,
            "milestones": self.milestones,
            "gamma": self.gamma,
            "momentum": self.momentum,
        }
        if base_kind == "lr":
            kw["dropout"] = self.dropout
        else:
            kw["hidden"] = self.hidden
        return kw


def parse_kinds(values: str | Iterable[str]) -> list[str]:
    """``"lr,mlp"`` or ``["lr", "diffuse-mlp"]`` → validated, de-duplicated kinds in order."""
    items = [values] if isinstance(values, str) else list(values)
    out: list[str] = []
    for item in items:
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            split_kind(part)  # validates
            if part not in out:
                out.append(part)
    if not out:
        raise ValueError(f"no model kind given; choose from {', '.join(KINDS)}")
    return out


def _zscore_rows(
    x: np.ndarray, rows: np.ndarray, mean: np.ndarray, inv: np.ndarray, h: Any = None
) -> np.ndarray:
    out = np.empty((rows.shape[0], x.shape[1]), dtype=np.float32)
    for a in range(0, rows.shape[0], _CHUNK_ROWS):
        block = np.asarray(x[rows[a : a + _CHUNK_ROWS]], dtype=np.float32)
        if h is not None:
            h.update(np.ascontiguousarray(block).tobytes())
        dst = out[a : a + block.shape[0]]
        np.subtract(block, mean, out=dst)
        np.multiply(dst, inv, out=dst)
    return out


def _diffuse(z: np.ndarray, s32: sp.csr_matrix) -> np.ndarray:
    out = np.empty_like(z)
    for a in range(0, z.shape[0], _CHUNK_ROWS):
        block = z[a : a + _CHUNK_ROWS]
        out[a : a + block.shape[0]] = np.asarray(s32 @ block.T).T  # rows: z @ S, S symmetric
    return out


@dataclass
class Graph:
    """A diffusion graph: the thresholded correlation ``A``, ``S``, its hash and file name."""

    s: sp.csr_matrix
    sha256: str
    adjacency: sp.csr_matrix | None = None
    file: str = GRAPH_FILE
    params: dict[str, Any] = field(default_factory=dict)


class TrainingData:
    """A cohort's training and test inputs, z-scored with training statistics.

    Parameters
    ----------
    cohort
        Labelled cohort with a split column; samples with a null label are
        left out.
    split_column
        Column holding ``"train"`` / ``"test"``.

    Attributes
    ----------
    class_names, gene_ids, preprocessing
        Output order, input order, the cohort's value transforms.
    mean, inv_std
        float32 per-gene training mean and 1 / std (:func:`gexplain.preprocess.zscore_stats`).
    x_train, y_train, x_test, y_test
        z-scored float32 rows and class indices.
    sha256
        Hash of the raw training matrix (float32 bytes, gene order) and labels.
    """

    def __init__(self, cohort: Cohort, split_column: str = "split") -> None:
        if not cohort.has_labels:
            raise InputError("training needs a 'label' column in the cohort's sample table")
        if split_column not in cohort.samples.columns:
            raise InputError(
                f"training needs a {split_column!r} column (train/test); make one with "
                "`gexplain preprocess COHORT --split 0.4 --out ...`",
                column=split_column,
            )
        labels = cohort.labels.cast(pl.String)
        split = cohort.samples[split_column].cast(pl.String)
        has_label = labels.is_not_null().to_numpy()
        train = (split == "train").fill_null(False).to_numpy() & has_label
        test = (split == "test").fill_null(False).to_numpy() & has_label
        if train.sum() < 2:
            raise InputError(
                f"fewer than 2 labelled samples have {split_column} == 'train'",
                column=split_column,
            )
        self.split_column = split_column
        self.class_names = cohort.classes
        self.gene_ids = cohort.gene_ids
        self.sample_ids = cohort.sample_ids
        self.preprocessing = list(cohort.value_transforms)
        lookup = {c: i for i, c in enumerate(self.class_names)}
        y_all = np.array([lookup.get(v, -1) for v in labels.to_list()], dtype=np.int64)
        view = Cohort(
            cohort.expression,
            pl.DataFrame(
                {
                    "sample_id": cohort.samples["sample_id"],
                    "split": np.where(train, "train", "other"),
                }
            ),
            cohort.genes.select("gene_id"),
        )
        mean, std = zscore_stats(view, split="train")
        self.mean = mean.astype(np.float32)
        self.inv_std = (1.0 / std).astype(np.float32)
        self.train_rows = np.flatnonzero(train)
        self.test_rows = np.flatnonzero(test)
        h = hashlib.sha256()
        x = cohort.expression
        self.x_train = _zscore_rows(x, self.train_rows, self.mean, self.inv_std, h)
        self.y_train = y_all[self.train_rows]
        h.update("\n".join(labels.gather(self.train_rows).to_list()).encode())
        self.sha256 = h.hexdigest()
        self.x_test = _zscore_rows(x, self.test_rows, self.mean, self.inv_std)
        self.y_test = y_all[self.test_rows]
        self._diffused: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def n_classes(self) -> int:
        """Number of classes (outputs)."""
        return len(self.class_names)

    def graph_params(self, threshold: float) -> dict[str, Any]:
        """What a stored graph must match to be reused."""
        return {
            "threshold": float(threshold),
            "training_data_sha256": self.sha256,
            "gene_ids_sha256": gene_ids_hash(self.gene_ids),
            "split_column": self.split_column,
        }

    def build_graph(self, threshold: float = 0.5, *, block_size: int = 1024) -> Graph:
        """Correlation graph of the training rows and its diffusion operator ``S``."""
        a = correlation_graph(self.x_train, threshold, block_size=block_size)
        s = diffusion_operator(a)
        return Graph(s, graph_sha256(s), a, params=self.graph_params(threshold))

    def inputs(self, graph: Graph | None) -> tuple[np.ndarray, np.ndarray]:
        """Network inputs ``(train, test)``: z-scored, then diffused by ``S`` if a graph is given."""
        if graph is None:
            return self.x_train, self.x_test
        if graph.sha256 not in self._diffused:
            s32 = graph.s.astype(np.float32)
            self._diffused[graph.sha256] = (
                _diffuse(self.x_train, s32),
                _diffuse(self.x_test, s32),
            )
        return self._diffused[graph.sha256]

    def labels_for(self, seed: int, permute: bool) -> np.ndarray:
        """Training labels, randomly permuted (keyed on ``seed``) for the label-randomisation control."""
        if not permute:
            return self.y_train
        return self.y_train[generator(seed, "models.permute-labels").permutation(self.y_train.size)]


def run_params(
    kind: str,
    seed: int,
    config: TrainConfig,
    data: TrainingData,
    permute: bool,
    graph: Graph | None,
) -> dict[str, Any]:
    """Everything a trained model depends on; equal parameters let a rerun skip it."""
    base, diffused = split_kind(kind)
    params: dict[str, Any] = {
        "format": TRAINING_FORMAT,
        "kind": kind,
        "seed": int(seed),
        "permuted_labels": bool(permute),
        "split_column": data.split_column,
        "training_data_sha256": data.sha256,
        **{k: list(v) if isinstance(v, tuple) else v for k, v in config.fit_kwargs(base).items()},
    }
    if diffused:
        params["graph_threshold"] = float(config.graph_threshold)
        params["graph_sha256"] = graph.sha256 if graph is not None else None
    return json.loads(json.dumps(params))


def _assemble(
    kind: str,
    seed: int,
    data: TrainingData,
    graph: Graph | None,
    permute: bool,
    params: dict[str, Any],
    result: Any,
    y_used: np.ndarray,
) -> TrainedModel:
    history = pl.DataFrame(
        {
            "epoch": [int(r["epoch"]) for r in result.history],
            "loss": [r["loss"] for r in result.history],
            "train_balanced_accuracy": [r["train_balanced_accuracy"] for r in result.history],
            "test_balanced_accuracy": [r["test_balanced_accuracy"] for r in result.history],
        },
        schema={
            "epoch": pl.Int64,
            "loss": pl.Float64,
            "train_balanced_accuracy": pl.Float64,
            "test_balanced_accuracy": pl.Float64,
        },
    )
    c = data.n_classes
    frames = []
    for split, y, pred in (
        ("train", y_used, result.pred_train),
        ("test", data.y_test, result.pred_test),
    ):
        if pred is None or len(y) == 0:
            continue
        frames.append(_confusion_frame(split, confusion_counts(y, pred, c), data.class_names))
    return TrainedModel(
        kind=kind,
        seed=int(seed),
        class_names=list(data.class_names),
        gene_ids=list(data.gene_ids),
        mean=data.mean,
        inv_std=data.inv_std,
        params=result.params,
        diffusion=graph.s if graph is not None else None,
        permuted_labels=permute,
        preprocessing=list(data.preprocessing),
        training_data_sha256=data.sha256,
        graph_file=graph.file if graph is not None else None,
        graph_sha256=graph.sha256 if graph is not None else None,
        training=params,
        history=history,
        confusion=pl.concat(frames) if frames else None,
    )


def _confusion_frame(split: str, counts: np.ndarray, names: Sequence[str]) -> pl.DataFrame:
    c = len(names)
    t, p = np.divmod(np.arange(c * c), c)
    arr = np.asarray(names, dtype=object)
    return pl.DataFrame(
        {
            "split": [split] * (c * c),
            "true": arr[t].tolist(),
            "predicted": arr[p].tolist(),
            "count": counts.ravel().astype(np.int64),
        },
        schema={"split": pl.String, "true": pl.String, "predicted": pl.String, "count": pl.Int64},
    )


def _fit_arrays(
    base: str,
    x_tr: np.ndarray,
    y: np.ndarray,
    x_te: np.ndarray,
    y_te: np.ndarray,
    n_classes: int,
    seed: int,
    kwargs: dict[str, Any],
    on_epoch: Callable[[dict[str, float]], Any] | None,
) -> Any:
    from ._torch import fit_module

    return fit_module(
        base,
        x_tr,
        y,
        n_classes,
        seed=seed,
        x_test=x_te if len(y_te) else None,
        y_test=y_te if len(y_te) else None,
        on_epoch=on_epoch,
        **kwargs,
    )


def fit(
    cohort: Cohort | TrainingData,
    model: str = "mlp",
    seed: int = 0,
    *,
    config: TrainConfig | None = None,
    permute_labels: bool = False,
    graph: Graph | None = None,
    on_epoch: Callable[[dict[str, float]], Any] | None = None,
) -> TrainedModel:
    """Train one model on a cohort's training split (in this process; imports torch).

    Parameters
    ----------
    cohort
        Labelled cohort with a ``split`` column (or prepared :class:`TrainingData`).
    model
        ``lr``, ``mlp``, ``diffuse-lr`` or ``diffuse-mlp``.
    seed
        Seed of the initialisation, shuffling, dropout (and label permutation).
    config
        Hyper-parameters (default: the paper's recipe).
    permute_labels
        Train on randomly permuted training labels (sanity control).
    graph
        Diffusion graph to reuse (diffused models); built from the training
        split when ``None``.
    on_epoch
        Called after each epoch with ``{"epoch", "loss", "train_balanced_accuracy",
        "test_balanced_accuracy"}``.

    Returns
    -------
    TrainedModel
        Save it with ``.save("model.onnx")``.

    Examples
    --------
    >>> import gexplain as gx
    >>> m = gx.models.fit(gx.Cohort.load("cohort/"), "mlp", seed=0)  # doctest: +SKIP
    >>> m.save("mlp-seed0.onnx")  # doctest: +SKIP
    """
    config = config or TrainConfig()
    data = cohort if isinstance(cohort, TrainingData) else TrainingData(cohort, config.split_column)
    base, diffused = split_kind(model)
    if diffused and graph is None:
        graph = data.build_graph(config.graph_threshold)
    if not diffused:
        graph = None
    x_tr, x_te = data.inputs(graph)
    y = data.labels_for(seed, permute_labels)
    params = run_params(model, seed, config, data, permute_labels, graph)
    result = _fit_arrays(
        base, x_tr, y, x_te, data.y_test, data.n_classes, seed, config.fit_kwargs(base), on_epoch
    )
    return _assemble(model, seed, data, graph, permute_labels, params, result, y)


# ---------------------------------------------------------------------- folder of models


def _prepare_graph(
    out: Path, data: TrainingData, threshold: float, overwrite: bool, quiet: bool | None
) -> Graph:
    path = out / GRAPH_FILE
    want = data.graph_params(threshold)
    if path.exists():
        info = graph_info(path)
        if all(info.get(k) == v for k, v in want.items()):
            s, _ = read_graph(path, data.gene_ids)
            digest = graph_sha256(s)
            if digest == info.get("sha256"):
                return Graph(s, digest, None, params=want)
        if not overwrite:
            raise GexplainError(
                f"{path} was built from other training data or threshold "
                f"(stored: threshold {info.get('threshold')}); pass --overwrite to rebuild it "
                "(and retrain the diffused models) or use another --out"
            )
    t0 = time.perf_counter()
    graph = data.build_graph(threshold)
    write_graph(path, graph.s, data.gene_ids, adjacency=graph.adjacency, params=want)
    _say(
        f"graph: {graph.adjacency.nnz // 2 if graph.adjacency is not None else '?'} edges "
        f"(correlation > {threshold}) over {len(data.gene_ids)} genes "
        f"in {time.perf_counter() - t0:.1f} s -> {path}",
        quiet,
    )
    return graph


def _say(message: str, quiet: bool | None) -> None:
    """A status line on stderr unless ``quiet`` is True (kept clear of a live progress bar)."""
    if quiet is not True:
        from tqdm.auto import tqdm

        tqdm.write(message, file=sys.stderr)


def train_models(
    cohort: Cohort | str | os.PathLike[str],
    models: str | Sequence[str] = ("mlp",),
    seeds: int | Sequence[int] = (0,),
    out: str | os.PathLike[str] = "models",
    *,
    config: TrainConfig | None = None,
    permute_labels: bool = False,
    threads: int = 1,
    quiet: bool | None = None,
    overwrite: bool = False,
) -> pl.DataFrame:
    """Train every (model, seed) on the cohort's training split into a models folder.

    Writes ``<name>-seed<k>.onnx`` per run (``<name>`` is the kind, plus
    ``-permuted`` with ``permute_labels``), ``training.parquet`` (``model, seed,
    epoch, loss, train_balanced_accuracy, test_balanced_accuracy``),
    ``confusion-<name>.parquet`` (``model, seed, split, true, predicted,
    count``) and, for diffused models, ``graph.parquet``. Each file is written
    atomically; a rerun skips models whose file exists with the same
    parameters (the tables are rebuilt from all models in the folder).

    Parameters
    ----------
    cohort
        Labelled cohort (or folder) with a train/test split column.
    models
        Kinds (``lr``, ``mlp``, ``diffuse-lr``, ``diffuse-mlp``; a list or a
        comma-separated string).
    seeds
        Seeds, one model per (kind, seed).
    out
        The models folder (created if needed).
    config
        Hyper-parameters (default: the paper's recipe).
    permute_labels
        Train label-permuted sanity controls instead.
    threads
        Models trained at once, each in its own worker process with one torch
        thread; the weights do not depend on this number.
    quiet
        ``True`` hides progress and messages; ``None`` shows the progress bar on
        a terminal only (a line per trained model is printed to stderr either way);
        ``False`` forces the bar.
    overwrite
        Retrain models (and rebuild the graph) stored with other parameters
        instead of refusing.

    Returns
    -------
    polars.DataFrame
        One row per (model, seed): ``model, seed, path, status`` (``trained`` or
        ``skipped``), ``train_balanced_accuracy, test_balanced_accuracy`` (last
        epoch) and ``seconds`` (training wall time, null when skipped).

    Examples
    --------
    >>> import gexplain as gx
    >>> gx.models.train_models("cohort/", ["lr", "mlp"], range(10), "models/")  # doctest: +SKIP
    """
    config = config or TrainConfig()
    kinds = parse_kinds(models)
    seed_list = [int(seeds)] if isinstance(seeds, int | np.integer) else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError("no seeds given")
    if not isinstance(cohort, Cohort):
        cohort = Cohort.load(cohort)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GexplainError(f"{out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    data = TrainingData(cohort, config.split_column)
    graph = None
    if any(split_kind(k)[1] for k in kinds):
        graph = _prepare_graph(out, data, config.graph_threshold, overwrite, quiet)

    jobs: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    for kind in kinds:
        g = graph if split_kind(kind)[1] else None
        for seed in seed_list:
            params = run_params(kind, seed, config, data, permute_labels, g)
            path = out / f"{model_stem(kind, seed, permute_labels)}.onnx"
            if path.exists():
                rec = training_record(path)
                if rec is not None and rec["training"] == params:
                    summary.append(_summary_row(kind, seed, permute_labels, path, "skipped", rec))
                    continue
                if not overwrite:
                    old = rec["training"] if rec else {}
                    diff = sorted(k for k in set(old) | set(params) if old.get(k) != params.get(k))
                    raise GexplainError(
                        f"{path} exists but was trained with other parameters "
                        f"({', '.join(diff) or 'not a gexplain-trained model'}); "
                        "pass --overwrite to retrain it or use another --out"
                    )
            jobs.append({"kind": kind, "seed": seed, "params": params, "path": path, "graph": g})

    bar = progress(
        total=len(jobs) * config.epochs,
        desc="training",
        quiet=True if not jobs else quiet,
        unit="epoch",
    )
    try:
        if threads <= 1 or len(jobs) <= 1:
            for job in jobs:
                summary.append(_run_local(job, data, config, permute_labels, bar, quiet))
        else:
            summary.extend(_run_pool(jobs, data, config, permute_labels, bar, quiet, threads, out))
    finally:
        bar.close()
    write_tables(out)
    order = {(k, s): i for i, (k, s) in enumerate((k, s) for k in kinds for s in seed_list)}
    summary.sort(key=lambda r: order[(r["kind"], r["seed"])])
    return pl.DataFrame(
        [{k: v for k, v in r.items() if k != "kind"} for r in summary],
        schema={
            "model": pl.String,
            "seed": pl.Int64,
            "path": pl.String,
            "status": pl.String,
            "train_balanced_accuracy": pl.Float64,
            "test_balanced_accuracy": pl.Float64,
            "seconds": pl.Float64,
        },
    )


def _summary_row(
    kind: str,
    seed: int,
    permute: bool,
    path: Path,
    status: str,
    rec: dict[str, Any] | None = None,
    model: TrainedModel | None = None,
    seconds: float | None = None,
) -> dict[str, Any]:
    tr = te = None
    if model is not None and model.history is not None and model.history.height:
        tr = model.history["train_balanced_accuracy"][-1]
        te = model.history["test_balanced_accuracy"][-1]
    elif rec is not None and rec["history"].get("epoch"):
        tr = rec["history"]["train_balanced_accuracy"][-1]
        te = rec["history"]["test_balanced_accuracy"][-1]
    return {
        "kind": kind,
        "model": model_name(kind, permute),
        "seed": seed,
        "path": str(path),
        "status": status,
        "train_balanced_accuracy": tr,
        "test_balanced_accuracy": te,
        "seconds": seconds,
    }


def _epoch_callback(bar: Any, stem: str) -> Callable[[dict[str, float]], None]:
    def cb(row: dict[str, float]) -> None:
        bar.set_description(stem)
        te = row["test_balanced_accuracy"]
        bar.set_postfix(
            epoch=int(row["epoch"]),
            loss=f"{row['loss']:.3g}",
            train=f"{row['train_balanced_accuracy']:.3f}",
            test="-" if te != te else f"{te:.3f}",
        )
        bar.update(1)

    return cb


def _finish(
    job: dict[str, Any],
    data: TrainingData,
    permute: bool,
    result: Any,
    seconds: float,
    quiet: bool | None,
) -> dict[str, Any]:
    y = data.labels_for(job["seed"], permute)
    model = _assemble(
        job["kind"], job["seed"], data, job["graph"], permute, job["params"], result, y
    )
    model.save(job["path"])
    _say(
        f"{model.stem}: balanced accuracy train {model.history['train_balanced_accuracy'][-1]:.4f}"
        f", test {model.test_balanced_accuracy:.4f} ({seconds:.1f} s) -> {job['path']}",
        quiet,
    )
    return _summary_row(
        job["kind"], job["seed"], permute, job["path"], "trained", model=model, seconds=seconds
    )


def _run_local(
    job: dict[str, Any],
    data: TrainingData,
    config: TrainConfig,
    permute: bool,
    bar: Any,
    quiet: bool | None,
) -> dict[str, Any]:
    base = split_kind(job["kind"])[0]
    x_tr, x_te = data.inputs(job["graph"])
    y = data.labels_for(job["seed"], permute)
    stem = job["path"].stem
    t0 = time.perf_counter()
    result = _fit_arrays(
        base,
        x_tr,
        y,
        x_te,
        data.y_test,
        data.n_classes,
        job["seed"],
        config.fit_kwargs(base),
        _epoch_callback(bar, stem),
    )
    return _finish(job, data, permute, result, time.perf_counter() - t0, quiet)


def _run_pool(
    jobs: list[dict[str, Any]],
    data: TrainingData,
    config: TrainConfig,
    permute: bool,
    bar: Any,
    quiet: bool | None,
    threads: int,
    out: Path,
) -> list[dict[str, Any]]:
    """Train ``jobs`` in ``threads`` worker subprocesses (:mod:`._worker`)."""
    import subprocess

    tmp = out / f".train-tmp-{uuid.uuid4().hex[:8]}"
    (tmp / "jobs").mkdir(parents=True)
    rows: list[dict[str, Any]] = []
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        # inputs shared with the workers through memory-mapped .npy files
        shared: dict[str | None, dict[str, str]] = {}
        by_file: dict[Path, dict[str, Any]] = {}
        for i, job in enumerate(jobs):
            g = job["graph"]
            key = None if g is None else g.sha256
            if key not in shared:
                x_tr, x_te = data.inputs(g)
                tag = "z" if g is None else f"s{len(shared)}"
                paths = {}
                for name, arr in (("x_train", x_tr), ("x_test", x_te), ("y_test", data.y_test)):
                    p = tmp / f"{tag}-{name}.npy"
                    np.save(p, arr)
                    paths[name] = str(p)
                shared[key] = paths
            base = split_kind(job["kind"])[0]
            y_path = tmp / f"y-{i:04d}.npy"
            np.save(y_path, data.labels_for(job["seed"], permute))
            spec = {
                "base": base,
                "arrays": shared[key],
                "y": str(y_path),
                "n_classes": data.n_classes,
                "seed": job["seed"],
                "kwargs": json.loads(json.dumps(config.fit_kwargs(base))),
                "stem": job["path"].stem,
            }
            jf = tmp / "jobs" / f"{i:04d}.json"
            jf.write_text(json.dumps(spec))
            by_file[jf] = job
        for w in range(min(threads, len(jobs))):
            err = tmp / f"worker{w}.stderr"
            with err.open("wb") as fh:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "gexplain.models._worker", str(tmp), str(os.getpid())],
                    stdout=subprocess.DEVNULL,
                    stderr=fh,
                )
            procs.append((proc, err))
        offsets: dict[Path, int] = {}
        started: dict[Path, float] = {}
        remaining = dict(by_file)
        while remaining:
            time.sleep(0.2)
            for jf, job in list(remaining.items()):
                if jf not in started and jf.with_suffix(".claim").exists():
                    started[jf] = time.perf_counter()
                prog = jf.with_suffix(".progress")
                if prog.exists():
                    with prog.open() as fh:
                        fh.seek(offsets.get(jf, 0))
                        chunk = fh.read()
                    complete = chunk[: chunk.rfind("\n") + 1]
                    offsets[jf] = offsets.get(jf, 0) + len(complete)
                    cb = _epoch_callback(bar, job["path"].stem)
                    for line in complete.splitlines():
                        cb(json.loads(line))
                res = jf.with_suffix(".npz")
                if res.exists():
                    result = _load_result(res)
                    seconds = time.perf_counter() - started.get(jf, time.perf_counter())
                    rows.append(_finish(job, data, permute, result, seconds, quiet))
                    del remaining[jf]
            if remaining and all(p.poll() is not None for p, _ in procs):
                bad = [(p, e) for p, e in procs if p.returncode != 0]
                detail = ""
                if bad:
                    detail = bad[0][1].read_text(errors="replace").strip().splitlines()[-1:]
                    detail = f": {detail[0]}" if detail else ""
                raise GexplainError(
                    f"training workers stopped with {len(remaining)} models unfinished{detail}"
                )
    finally:
        for p, _ in procs:
            if p.poll() is None:
                p.terminate()
        for p, _ in procs:
            with contextlib.suppress(Exception):
                p.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def _load_result(path: Path) -> Any:
    from types import SimpleNamespace

    with np.load(path) as z:
        params = {k[len("param:") :]: z[k] for k in z.files if k.startswith("param:")}
        history = json.loads(bytes(z["history"]).decode())
        pred_train = z["pred_train"]
        pred_test = z["pred_test"] if "pred_test" in z.files else None
    return SimpleNamespace(
        params=params, history=history, pred_train=pred_train, pred_test=pred_test
    )


def write_tables(out: str | os.PathLike[str]) -> dict[str, Path]:
    """Rebuild ``training.parquet`` and ``confusion-<model>.parquet`` from the folder's models.

    Reads the training record stored in each gexplain-trained ``*.onnx`` file's
    metadata. Returns the written paths by table name.
    """
    out = Path(out)
    hist_frames = []
    conf: dict[str, list[pl.DataFrame]] = {}
    for path in sorted(out.glob("*.onnx")):
        rec = training_record(path)
        if rec is None:
            continue
        meta = rec["meta"]
        name, seed = meta.model_kind, meta.seed
        h = rec["history"]
        if h.get("epoch"):
            hist_frames.append(
                pl.DataFrame(
                    {
                        "model": [name] * len(h["epoch"]),
                        "seed": [seed] * len(h["epoch"]),
                        "epoch": h["epoch"],
                        "loss": h["loss"],
                        "train_balanced_accuracy": h["train_balanced_accuracy"],
                        "test_balanced_accuracy": h["test_balanced_accuracy"],
                    },
                    schema={
                        "model": pl.String,
                        "seed": pl.Int64,
                        "epoch": pl.Int64,
                        "loss": pl.Float64,
                        "train_balanced_accuracy": pl.Float64,
                        "test_balanced_accuracy": pl.Float64,
                    },
                )
            )
        names = meta.class_names or []
        lookup = {c: i for i, c in enumerate(names)}
        for split, triples in rec["confusion"].items():
            counts = np.zeros((len(names), len(names)), dtype=np.int64)
            for t, p, n in triples:
                counts[lookup[t], lookup[p]] = n
            f = _confusion_frame(split, counts, names).with_columns(
                model=pl.lit(name), seed=pl.lit(seed, dtype=pl.Int64)
            )
            conf.setdefault(name, []).append(
                f.select("model", "seed", "split", "true", "predicted", "count")
            )
    written: dict[str, Path] = {}
    if hist_frames:
        table = pl.concat(hist_frames).sort("model", "seed", "epoch")
        p = out / "training.parquet"
        with atomic_file(p) as tmp:
            table.write_parquet(tmp)
        written["training"] = p
    for name, frames in conf.items():
        p = out / f"confusion-{name}.parquet"
        with atomic_file(p) as tmp:
            pl.concat(frames).sort("seed", "split", maintain_order=True).write_parquet(tmp)
        written[f"confusion-{name}"] = p
    return written
