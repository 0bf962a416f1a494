"""The whole evaluation: every metric family over a cohort, a folder of models and their attributions.

:func:`evaluate` pairs each model file (``MODELS/<kind>-seed<k>.onnx`` as
written by ``gexplain train``) with its attributions folder (``ATTR/<stem>/``
as written by ``gexplain explain COHORT MODELS/<stem>.onnx --out
ATTR/<stem>``), checks that they belong together and to the cohort, and runs
the requested metric families:

==============  ===========================================================
``pg``          :func:`prediction_gaps` (PGI, PGU, PGU_adjusted, PGR, curves)
``openxai``     :func:`openxai_prediction_gaps` (Gaussian PGI/PGU, AUC over k)
``fa``          :func:`feature_agreement`, :func:`biomarker_recovery` (needs
                the cohort's ground truth) and, for linear models,
                :func:`openxai_agreement` against :func:`linear_reference_attribution`
``stability``   :func:`stability` of the per-class global rankings across
                seeds and model kinds (pairs in ``stability.parquet``)
``keep-remove`` :func:`keep_remove_curves` on every test sample
``sanity``      :func:`model_randomization` and, with ``label_control``,
                :func:`label_randomization`
==============  ===========================================================

**Which rows are scored** (the paper's): attribution rows of samples in the
``split`` (default ``test``) that the model classifies correctly and whose
explained target is their true label. ``all_samples=True`` scores every row
of the attributions folder, with its own target. Samples are matched by
``sample_id`` (never by position) and genes by id through
:meth:`CompiledModel.prepare`.

**Seeds.** The per-sample random streams (PGR orders, OpenXAI noise) are keyed
by the sample's position in the cohort, so a sample gets the same draws
whatever subset or chunking is scored.

**Output** (``out``, written atomically): ``metrics.parquet`` (every
family's scores with ``model`` (kind), ``seed`` and ``model_file`` columns),
``curves.parquet`` (same columns), ``stability.parquet`` (pairwise rows) and
``evaluate.json`` (settings, inputs with SHA-256 digests, package versions).
Finished (model, family) parts are kept in ``.OUT.partial`` and skipped when
the same run is started again, so an interrupted evaluation resumes.

The per-sample kernels run in chunks of bounded memory through
:func:`run_chunks` (``pg_chunk`` / ``openxai_chunk``: pure functions of a
sample range), which can be mapped in process or on a cluster.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from .._atomic import PartialDir, write_json
from .._progress import progress
from .._version import __version__
from ..errors import AlignmentError, GexplainError, InputError
from ._result import CURVE_SCHEMA, SCORE_SCHEMA, MetricResult

#: Metric families of :func:`evaluate` (``gexplain evaluate --metrics``).
EVALUATE_METRICS: tuple[str, ...] = ("pg", "openxai", "fa", "stability", "keep-remove", "sanity")

#: Columns :func:`evaluate` adds in front of the score and curve columns.
MODEL_COLUMNS: dict[str, pl.DataType] = {
    "model": pl.String(),
    "seed": pl.Int64(),
    "model_file": pl.String(),
}

METRICS_FILE = "metrics.parquet"
CURVES_FILE = "curves.parquet"
STABILITY_FILE = "stability.parquet"
META_FILE = "evaluate.json"

#: Default OpenXAI k grid (fractions of the genes).
OPENXAI_K: tuple[float, ...] = (0.001, 0.01, 0.1)


@dataclass
class EvaluationResult(MetricResult):
    """:class:`MetricResult` of an evaluation: scores and curves with model columns.

    Attributes
    ----------
    scores, curves
        As in :class:`MetricResult`, with ``model``, ``seed`` and ``model_file``
        columns in front.
    stability
        Pairwise stability rows (one per pair of rankings, class and metric).
    meta
        What ``evaluate.json`` holds.
    """

    stability: pl.DataFrame = field(default_factory=pl.DataFrame)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # keep the model columns (MetricResult would drop them)
        pass

    def summary(self) -> pl.DataFrame:
        """Class-averaged scores per model kind: mean and sd over seeds (controls included)."""
        return summarize(self.scores)


def summarize(scores: pl.DataFrame) -> pl.DataFrame:
    """Mean ± sd over seeds of the class-averaged rows, per model kind, metric, variant, k, control."""
    keys = ["model", "metric", "variant", "k", "control"]
    return (
        scores.filter(pl.col("class").is_null())
        .group_by(keys, maintain_order=True)
        .agg(
            pl.col("value").mean().alias("mean"),
            pl.col("value").std().alias("sd"),
            pl.col("seed").n_unique().alias("n_seeds"),
        )
        .sort(keys, nulls_last=True)
    )


# ---------------------------------------------------------------------- inputs
def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _sha256_files(folder: Path, names: Sequence[str]) -> str:
    h = hashlib.sha256()
    for name in names:
        p = folder / name
        if p.exists():
            h.update(name.encode())
            h.update(_sha256_file(p).encode())
    return h.hexdigest()


@dataclass
class ModelInput:
    """One model file and its attributions folder."""

    path: Path
    attributions: Path

    @property
    def stem(self) -> str:
        return self.path.stem


def find_inputs(models: Any, attributions: Any) -> list[ModelInput]:
    """Pair each model with its attributions folder.

    ``models`` is a folder of ``.onnx`` files (label-permuted controls
    ``*-permuted-seed*.onnx`` are skipped: pass one as ``label_control``) or one
    file; ``attributions`` a folder of per-model folders named by the model's
    stem, or (single model) one attributions folder.
    """
    mpath = Path(models)
    apath = Path(attributions)
    if mpath.is_dir():
        files = sorted(p for p in mpath.glob("*.onnx") if "-permuted-seed" not in p.stem)
        if not files:
            raise InputError("no .onnx model in the models folder", path=mpath)
    elif mpath.is_file():
        files = [mpath]
    else:
        raise InputError("models: no such file or folder", path=mpath)
    if not apath.is_dir():
        raise InputError("attributions: no such folder", path=apath)
    single = (apath / "attributions.json").exists()
    if single and len(files) > 1:
        raise InputError(
            f"{len(files)} models but a single attributions folder; give a folder holding "
            "one attributions folder per model (named by the model file's stem)",
            path=apath,
        )
    out = []
    for f in files:
        folder = apath if single else apath / f.stem
        if not (folder / "attributions.json").exists():
            raise InputError(
                f"no attributions for model {f.name} (expected an attributions folder "
                f"{folder.name}/ written by gexplain explain)",
                path=folder,
            )
        out.append(ModelInput(f, folder))
    return out


def check_pair(model: Any, attr: Any, inp: ModelInput, gene_ids: Sequence[str]) -> None:
    """Refuse attributions computed for another model or on other genes."""
    meta = attr.meta
    recorded = meta.get("model")
    if recorded is not None and Path(str(recorded)).name != inp.path.name:
        raise InputError(
            f"these attributions were computed for model {Path(str(recorded)).name}, "
            f"not {inp.path.name} (attributions.json 'model')",
            path=inp.attributions,
        )
    md = model.metadata
    for key, mine in (("model_kind", md.model_kind), ("seed", md.seed)):
        theirs = meta.get(key)
        if theirs is not None and mine is not None and str(theirs) != str(mine):
            raise InputError(
                f"attributions.json records {key} {theirs!r} but {inp.path.name} is {mine!r}",
                path=inp.attributions,
            )
    names = meta.get("class_names")
    if names is not None and [str(c) for c in names] != list(model.class_names):
        raise InputError(
            f"the attributions' classes differ from those of {inp.path.name}",
            path=inp.attributions,
        )
    if list(attr.gene_ids) != list(gene_ids):
        raise AlignmentError(
            f"{inp.attributions}: the attribution columns are not the genes of "
            f"{inp.path.name} (in its input order)"
        )


@dataclass
class Scored:
    """The rows of one model's attributions that are scored, in the model's gene order."""

    X: np.ndarray  # (n, G) inputs
    values: np.ndarray  # (n, G) attributions
    targets: np.ndarray  # (n,) class indices
    classes: np.ndarray  # (n,) class names
    positions: np.ndarray  # (n,) sample positions in the cohort
    test_X: np.ndarray | None  # every sample of the split (keep/remove)
    test_labels: np.ndarray | None  # their label indices (-1 unknown)


def sample_positions(prepared: Any, attr: Any, inp: ModelInput) -> np.ndarray:
    """Cohort position of each attribution row, matched by ``sample_id``."""
    lookup = {s: i for i, s in enumerate(prepared.sample_ids)}
    sids = attr.rows["sample_id"].to_list()
    pos = np.array([lookup.get(s, -1) for s in sids], dtype=np.int64)
    if (pos < 0).any():
        missing = [s for s, p in zip(sids, pos, strict=True) if p < 0][:3]
        raise AlignmentError(
            f"{inp.attributions}: {int((pos < 0).sum())} attribution rows name samples absent "
            f"from the cohort (e.g. {', '.join(missing)})"
        )
    return pos


def check_split(prepared: Any, split: str, all_samples: bool) -> None:
    """The paper's selection needs labels and a split holding samples."""
    if all_samples:
        return
    samples = prepared.samples
    if "split" not in samples.columns:
        raise InputError(
            f"the cohort has no 'split' column: cannot select the {split!r} samples "
            "(create one with gexplain preprocess, or score every row with --all-samples)"
        )
    if not (samples["split"] == split).fill_null(False).any():
        raise InputError(f"the cohort has no sample in split {split!r}")
    if not prepared.has_labels:
        raise InputError("the cohort has no 'label' column: cannot find correct samples")


class PreparedCache:
    """The cohort aligned to each distinct model gene list (one copy for all seeds)."""

    def __init__(self, cohort: Any) -> None:
        self.cohort = cohort
        self._cache: dict[Any, Any] = {}

    def get(self, model: Any) -> Any:
        key = None if model.gene_ids is None else hash(tuple(model.gene_ids))
        if key not in self._cache:
            self._cache[key] = model.prepare(self.cohort)
        return self._cache[key]


def validate(inputs: list[ModelInput], cache: PreparedCache, s: Settings) -> None:
    """Check every model, attributions folder and the cohort before any work is written."""
    from ..explain import Attributions, CompiledModel

    for inp in inputs:
        model = CompiledModel.load(inp.path)
        prepared = cache.get(model)
        attr = Attributions.load(inp.attributions)
        check_pair(model, attr, inp, model.gene_ids or prepared.gene_ids)
        sample_positions(prepared, attr, inp)
        check_split(prepared, s.split, s.all_samples)


def select_rows(
    model: Any, prepared: Any, attr: Any, inp: ModelInput, *, split: str, all_samples: bool
) -> Scored:
    """Match attribution rows to cohort samples by id and keep the scored ones."""
    ids = prepared.sample_ids
    pos = sample_positions(prepared, attr, inp)
    names = list(model.class_names)
    name_idx = {c: i for i, c in enumerate(names)}
    tidx = attr.rows["target_index"].to_numpy().astype(np.int64)
    samples = prepared.samples
    test_X = test_labels = None
    has_split = "split" in samples.columns
    if has_split:
        in_split = (samples["split"] == split).fill_null(False).to_numpy()
    check_split(prepared, split, all_samples)
    labels = (
        np.array([name_idx.get(str(v), -1) if v is not None else -1 for v in prepared.labels])
        if prepared.has_labels
        else None
    )
    if has_split and labels is not None and in_split.any():
        test_pos = np.flatnonzero(in_split)
        test_X = np.asarray(prepared.expression[test_pos])
        test_labels = labels[test_pos]
    if all_samples:
        keep = np.ones(len(pos), dtype=bool)
    else:
        assert labels is not None
        pred = np.full(len(ids), -1, dtype=np.int64)
        want = np.unique(pos[in_split[pos]])
        if want.size:
            pred[want] = model.predict(np.asarray(prepared.expression[want]))
        keep = in_split[pos] & (labels[pos] == tidx) & (pred[pos] == tidx) & (tidx >= 0)
    sel = np.flatnonzero(keep)
    if sel.size == 0:
        raise InputError(
            "no attribution row to score: none is a correctly classified "
            f"{split!r} sample explained for its label (use --all-samples to score every row)",
            path=inp.attributions,
        )
    p = pos[sel]
    return Scored(
        np.asarray(prepared.expression[p]),
        np.asarray(attr.values[sel], dtype=np.float32),
        tidx[sel],
        np.asarray(names, dtype=object)[tidx[sel]].astype(str),
        p,
        test_X,
        test_labels,
    )


# ---------------------------------------------------------------------- chunk runner
def run_chunks(
    fn: Callable[[Any, int, int], Any],
    plan: Any,
    n: int,
    chunk_size: int,
    *,
    desc: str,
    quiet: bool | None,
    scheduler: Any = None,
    workdir: Path | None = None,
) -> list[Any]:
    """Apply ``fn(plan, start, stop)`` to consecutive sample ranges of ``chunk_size``.

    ``fn`` is a pure function of the range (:func:`~gexplain.metrics._pg.pg_chunk`,
    :func:`~gexplain.metrics._openxai_pg.openxai_chunk`); results come back in order.
    With a ``scheduler`` the ranges run on a Dask cluster, the plan spilled
    under ``workdir`` (:func:`gexplain.distributed.map_plan`).
    """
    from ._pg import plan_chunks

    ranges = plan_chunks(n, chunk_size)
    if scheduler is not None:
        from ..distributed import map_plan

        wd = workdir if workdir is not None else Path.cwd()
        return map_plan(fn, plan, ranges, scheduler=scheduler, workdir=wd, desc=desc, quiet=quiet)
    return [fn(plan, s, e) for s, e in progress(ranges, desc=desc, quiet=quiet, unit="chunk")]


# ---------------------------------------------------------------------- settings
@dataclass
class Settings:
    """Knobs of :func:`evaluate` (recorded in ``evaluate.json``)."""

    metrics: tuple[str, ...] = EVALUATE_METRICS
    split: str = "test"
    all_samples: bool = False
    block: int = 10
    random_draws: int = 30
    openxai_k: tuple[int | float, ...] = OPENXAI_K
    n_perturb: int = 100
    std: float = 0.1
    fa_random_draws: int = 10
    keep_remove_draws: int = 100
    seed: int = 0
    output: str = "probability"
    chunk_size: int | None = None

    def describe(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def parse_metrics(metrics: str | Sequence[str]) -> tuple[str, ...]:
    """Metric family names from ``"pg,fa"`` or a sequence (``all`` = every family)."""
    items = metrics.split(",") if isinstance(metrics, str) else list(metrics)
    out: list[str] = []
    for m in (str(x).strip() for x in items):
        if not m:
            continue
        if m == "all":
            out.extend(EVALUATE_METRICS)
        elif m not in EVALUATE_METRICS:
            raise InputError(
                f"unknown metric family {m!r}; choose from {', '.join(EVALUATE_METRICS)}"
            )
        else:
            out.append(m)
    if not out:
        raise InputError("no metric family given")
    return tuple(dict.fromkeys(out))


# ---------------------------------------------------------------------- families
def _family(
    family: str,
    model: Any,
    data: Scored,
    gene_ids: list[str],
    s: Settings,
    *,
    truth: Any,
    graph_path: Path | None,
    label_control: Any,
    quiet: bool | None,
    scheduler: Any = None,
    workdir: Path | None = None,
) -> MetricResult:
    """One metric family on one model's scored rows."""
    from ._pg import pg_chunk, pg_chunk_size, plan_prediction_gaps, summarize_prediction_gaps

    if family == "pg":
        plan, cls, names = plan_prediction_gaps(
            model,
            data.X,
            data.values,
            data.targets,
            classes=data.classes,
            block=s.block,
            random_draws=s.random_draws,
            seed=s.seed,
            output=s.output,
            sample_index=data.positions,
        )
        size = pg_chunk_size(plan, s.chunk_size)
        parts = run_chunks(
            pg_chunk,
            plan,
            len(data.targets),
            size,
            desc="PG",
            quiet=quiet,
            scheduler=scheduler,
            workdir=workdir,
        )
        return summarize_prediction_gaps(plan, parts, cls, names)
    if family == "openxai":
        from ._openxai_pg import openxai_prediction_gaps

        ks = list(s.openxai_k)
        return openxai_prediction_gaps(
            model,
            data.X,
            data.values,
            data.targets,
            k=ks,
            n_perturb=s.n_perturb,
            std=s.std,
            auc=len(_distinct_ks(ks, model.n_genes)) > 1,
            classes=data.classes,
            seed=s.seed,
            output=s.output,
            sample_index=data.positions,
            chunk_size=s.chunk_size,
            quiet=quiet,
        )
    if family == "fa":
        return _fa(model, data, gene_ids, s, truth=truth, graph_path=graph_path)
    if family == "keep-remove":
        from ._aggregate import class_scores
        from ._keep_remove import keep_remove_curves

        if data.test_X is None or data.test_labels is None:
            raise InputError(
                "keep-remove needs a labelled cohort with a 'split' column "
                f"(its {s.split!r} samples are classified)"
            )
        known = data.test_labels >= 0
        _, scores = class_scores(
            np.abs(data.values), data.classes, "mean", class_order=model.class_names
        )
        return keep_remove_curves(
            model,
            data.test_X[known],
            data.test_labels[known],
            list(model.class_names),
            scores,
            random_draws=s.keep_remove_draws,
            seed=s.seed,
        )
    if family == "sanity":
        from ._sanity import label_randomization, model_randomization

        res = model_randomization(
            model, data.X, data.targets, data.values, seed=s.seed, output=s.output
        )
        if label_control is not None:
            res = res + label_randomization(
                label_control, data.X, data.targets, data.values, output=s.output
            )
        return res
    raise InputError(f"unknown metric family {family!r}")


def _distinct_ks(ks: Sequence[int | float], d: int) -> list[int]:
    from ._openxai_pg import resolve_ks

    return resolve_ks(list(ks), d)


def _fa(
    model: Any,
    data: Scored,
    gene_ids: list[str],
    s: Settings,
    *,
    truth: Any,
    graph_path: Path | None,
) -> MetricResult:
    res = MetricResult()
    if truth is not None:
        from ._agreement import biomarker_recovery, feature_agreement, load_graph

        graph = load_graph(graph_path, gene_ids) if graph_path is not None else None
        res = res + feature_agreement(
            data.values,
            data.classes,
            truth,
            gene_ids,
            graph=graph,
            seed=s.seed,
            random_draws=s.fa_random_draws,
        )
        res = res + biomarker_recovery(
            data.values, data.classes, truth, gene_ids, seed=s.seed, random_draws=s.fa_random_draws
        )
    from ._openxai_agreement import linear_reference_attribution, openxai_agreement

    ref = linear_reference_attribution(model, data.X, data.targets)
    if ref is not None:
        ks = _distinct_ks(list(s.openxai_k), model.n_genes)
        res = res + openxai_agreement(data.values, ref, k=ks, classes=data.classes)
    return res


def _graph_path(model: Any, inp: ModelInput) -> Path | None:
    name = model.metadata.graph
    if name is None:
        return None
    p = inp.path.parent / name
    if not p.exists():
        raise InputError(
            f"model {inp.path.name} is diffused but its graph {name} is not beside it", path=p
        )
    return p


# ---------------------------------------------------------------------- parts on disk
def _write_part(part: PartialDir, name: str, res: MetricResult, extra: dict[str, Any]) -> None:
    tmp = part.chunk_path(f".{name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    _with_model(res.scores, extra, SCORE_SCHEMA).write_parquet(tmp / "scores.parquet")
    _with_model(res.curves, extra, CURVE_SCHEMA).write_parquet(tmp / "curves.parquet")
    os.replace(tmp, part.chunk_path(name))


def _with_model(frame: pl.DataFrame, extra: dict[str, Any], schema: dict[str, Any]) -> pl.DataFrame:
    cols = [pl.lit(extra.get(c), dtype=t).alias(c) for c, t in MODEL_COLUMNS.items()]
    base = frame.select([pl.col(c).cast(t) for c, t in schema.items()])
    return base.select([*cols, pl.all()])


def _read_parts(
    part: PartialDir, names: list[str], file: str, schema: dict[str, Any]
) -> pl.DataFrame:
    frames = [pl.read_parquet(part.chunk_path(n) / file) for n in names]
    if not frames:
        return pl.DataFrame(schema={**MODEL_COLUMNS, **schema})
    return pl.concat(frames)


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"gexplain": __version__}
    for pkg in ("numpy", "polars", "numba", "onnx", "onnxruntime", "scipy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:  # pragma: no cover
            pass
    return out


# ---------------------------------------------------------------------- the entry point
def evaluate(
    cohort: Any,
    models: str | os.PathLike[str],
    attributions: str | os.PathLike[str],
    *,
    metrics: str | Sequence[str] = EVALUATE_METRICS,
    out: str | os.PathLike[str] | None = None,
    split: str = "test",
    all_samples: bool = False,
    block: int = 10,
    random_draws: int = 30,
    openxai_k: int | float | Sequence[int | float] = OPENXAI_K,
    n_perturb: int = 100,
    std: float = 0.1,
    fa_random_draws: int = 10,
    keep_remove_draws: int = 100,
    seed: int = 0,
    output: str = "probability",
    chunk_size: int | None = None,
    label_control: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    quiet: bool | None = True,
    scheduler: Any = None,
) -> EvaluationResult:
    """Score the attributions of one or more models on a cohort with every metric family.

    Parameters
    ----------
    cohort
        A cohort folder or :class:`gexplain.Cohort` (the one the models were
        trained and explained on; its ground truth, if any, feeds ``fa``).
    models
        A folder of ``.onnx`` files written by ``gexplain train`` (label-permuted
        controls are skipped) or one ``.onnx`` file.
    attributions
        A folder holding one attributions folder per model, named by the model
        file's stem; or, for a single model, its attributions folder.
    metrics
        Families to run, from :data:`EVALUATE_METRICS` (or ``"pg,fa"``).
    out
        Metrics folder to write (atomically; resumable). ``None``: only return.
    split
        Samples scored: the correctly classified ones of this split, explained
        for their label (the paper's).
    all_samples
        Score every attribution row instead (any split, correct or not, its own target).
    block, random_draws
        PG block size ``g`` and random orders per sample (PGR).
    openxai_k, n_perturb, std
        OpenXAI k grid (counts or fractions; AUC when it has two or more
        values; also the k of the OpenXAI agreement metrics), perturbations
        per sample and noise sd.
    fa_random_draws, keep_remove_draws
        Draws of the random controls of FA/recovery and keep/remove curves.
    seed
        Seed of every random control (per-sample streams by cohort position).
    output
        Explained quantity of PG/OpenXAI: ``probability`` (the paper's), ``logit``,
        ``log_probability``.
    chunk_size
        Samples per kernel call (default: bounded memory, automatic).
    label_control
        A model trained on permuted labels (``gexplain train --permute-labels``)
        for the label-randomisation check of ``sanity``.
    overwrite
        Replace an existing ``out``.
    quiet
        Hide progress bars (``None``: on a terminal only).
    scheduler
        Run the per-sample PG pass on a Dask cluster: ``"local:N"``, a scheduler
        address or a :class:`distributed.Client` (:mod:`gexplain.distributed`;
        ``out`` must be on storage the workers see). Same numbers as in process.

    Returns
    -------
    EvaluationResult
        ``scores`` and ``curves`` with ``model``, ``seed``, ``model_file``
        columns; ``stability`` pairs; ``meta``.

    Examples
    --------
    >>> from gexplain.metrics import evaluate
    >>> res = evaluate("cohort", "models", "attr", metrics="pg,fa", out="metrics")  # doctest: +SKIP
    >>> res.summary()  # doctest: +SKIP
    """
    from ..cohort import Cohort
    from ..explain import CompiledModel

    ks = tuple(openxai_k) if isinstance(openxai_k, (list, tuple)) else (openxai_k,)
    s = Settings(
        parse_metrics(metrics),
        str(split),
        bool(all_samples),
        int(block),
        int(random_draws),
        ks,
        int(n_perturb),
        float(std),
        int(fa_random_draws),
        int(keep_remove_draws),
        int(seed),
        str(output),
        None if chunk_size is None else int(chunk_size),
    )
    if s.chunk_size is not None and s.chunk_size < 1:
        raise InputError("chunk size must be positive")
    cohort_path = Path(cohort).resolve() if isinstance(cohort, (str, os.PathLike)) else None
    data_cohort = Cohort.load(cohort) if cohort_path is not None else cohort
    inputs = find_inputs(models, attributions)
    control = CompiledModel.load(label_control) if label_control is not None else None
    # the inputs and their digests: the run's identity for resuming
    model_info = []
    for inp in inputs:
        model_info.append(
            {
                "model_file": inp.path.name,
                "model_sha256": _sha256_file(inp.path),
                "attributions": str(inp.attributions.resolve()),
                "attributions_sha256": _sha256_files(
                    inp.attributions, ["attributions.json", "attributions.parquet", "genes.parquet"]
                ),
            }
        )
    cohort_info: dict[str, Any] = {"path": None if cohort_path is None else str(cohort_path)}
    if cohort_path is not None:
        cohort_info["sha256"] = _sha256_files(
            cohort_path, ["cohort.json", "samples.parquet", "genes.parquet"]
        )
    else:
        cohort_info["sample_ids_sha256"] = hashlib.sha256(
            "\n".join(data_cohort.sample_ids).encode()
        ).hexdigest()
    meta: dict[str, Any] = {
        "settings": s.describe(),
        "inputs": {
            "cohort": cohort_info,
            "models": model_info,
            "label_control": None
            if label_control is None
            else {
                "path": str(Path(label_control).resolve()),
                "sha256": _sha256_file(Path(label_control)),
            },
        },
        "versions": _versions(),
    }
    truth = getattr(data_cohort, "truth", None)
    cache = PreparedCache(data_cohort)
    validate(inputs, cache, s)
    part: Any = None
    tmp_dir: Path | None = None
    if out is not None:
        part = PartialDir(out, meta, overwrite=overwrite)
    else:
        import tempfile

        tmp_dir = Path(tempfile.mkdtemp(prefix="gexplain-evaluate-"))
        part = _MemoryPart(tmp_dir)
    try:
        with contextlib.ExitStack() as stack:
            if scheduler is not None:  # one cluster (or connection) for the whole evaluation
                from ..distributed import get_client

                scheduler = stack.enter_context(get_client(scheduler))
            return _run(
                part, inputs, cache, s, truth, control, meta, model_info, out, quiet, scheduler
            )
    except GexplainError:
        # a bad input found late: leave no partial folder unless work was finished
        if out is not None and not [n for n in part.done() if n != "params.json"]:
            shutil.rmtree(part.dir, ignore_errors=True)
        raise
    finally:
        if tmp_dir is not None:
            shutil.rmtree(tmp_dir, ignore_errors=True)


class _MemoryPart:
    """A throwaway part folder for ``out=None`` (same code path, nothing kept)."""

    def __init__(self, folder: Path) -> None:
        self.dir = folder

    def chunk_path(self, name: str) -> Path:
        return self.dir / name

    def is_done(self, name: str) -> bool:
        return (self.dir / name).exists()

    def done(self) -> list[str]:
        return sorted(p.name for p in self.dir.iterdir())


def _run(
    part: Any,
    inputs: list[ModelInput],
    cache: PreparedCache,
    s: Settings,
    truth: Any,
    control: Any,
    meta: dict[str, Any],
    model_info: list[dict[str, Any]],
    out: Any,
    quiet: bool | None,
    scheduler: Any = None,
) -> EvaluationResult:
    from ..explain import Attributions, CompiledModel
    from ._aggregate import class_scores

    per_model = [f for f in s.metrics if f != "stability"]
    names: list[str] = []
    rankings: dict[tuple[str, int], tuple[list[str], np.ndarray]] = {}
    n_rows: dict[str, int] = {}
    total = len(inputs) * (len(per_model) + (1 if "stability" in s.metrics else 0))
    bar = progress(
        total=total + (1 if "stability" in s.metrics else 0),
        desc="evaluate",
        quiet=quiet,
        unit="part",
    )
    with bar:
        for inp, info in zip(inputs, model_info, strict=True):
            model = CompiledModel.load(inp.path)
            prepared = cache.get(model)
            gene_ids = model.gene_ids or prepared.gene_ids
            attr = Attributions.load(inp.attributions)
            check_pair(model, attr, inp, gene_ids)
            kind = model.metadata.model_kind or inp.stem
            seed = model.metadata.seed
            extra = {"model": kind, "seed": seed, "model_file": inp.path.name}
            info.update(model=kind, seed=seed)
            data: Scored | None = None
            wanted = [f for f in per_model if not part.is_done(f"{inp.stem}--{f}")]
            rank_name = f"{inp.stem}--rankings.npz"
            if "stability" in s.metrics and not part.is_done(rank_name):
                wanted.append("rankings")
            if wanted:
                data = select_rows(
                    model, prepared, attr, inp, split=s.split, all_samples=s.all_samples
                )
                n_rows[inp.stem] = len(data.targets)
            for family in per_model:
                name = f"{inp.stem}--{family}"
                names.append(name)
                if not part.is_done(name):
                    assert data is not None
                    bar.set_postfix_str(f"{inp.stem} {family}")
                    res = _family(
                        family,
                        model,
                        data,
                        list(gene_ids),
                        s,
                        truth=truth,
                        graph_path=_graph_path(model, inp) if family == "fa" else None,
                        label_control=_matching_control(control, model),
                        quiet=quiet,
                        scheduler=scheduler,
                        workdir=part.dir,
                    )
                    _write_part(part, name, res, extra)
                bar.update(1)
            if "stability" in s.metrics:
                if not part.is_done(rank_name):
                    assert data is not None
                    cls_names, sc = class_scores(
                        data.values, data.classes, "mean", class_order=model.class_names
                    )
                    tmp = part.chunk_path(f".{rank_name}.tmp.npz")
                    np.savez(tmp, scores=sc, classes=np.asarray(cls_names, dtype=str))
                    os.replace(tmp, part.chunk_path(rank_name))
                z = np.load(part.chunk_path(rank_name))
                key = (kind, -1 if seed is None else int(seed))
                if key in rankings:
                    raise InputError(
                        f"two models have kind {kind!r} and seed {seed}: {inp.path.name}"
                    )
                rankings[key] = ([str(c) for c in z["classes"]], z["scores"])
                bar.update(1)
        stab_pairs = pl.DataFrame()
        if "stability" in s.metrics:
            stab_pairs = _stability(part, rankings)
            names.append("stability")
            bar.update(1)
    scores = _read_parts(part, names, "scores.parquet", SCORE_SCHEMA)
    curves = _read_parts(part, names, "curves.parquet", CURVE_SCHEMA)
    meta = {**meta, "n_scored_rows": n_rows}
    result = EvaluationResult(scores, curves, stab_pairs, meta)
    if out is not None:
        tmp = part.new_output_dir()
        try:
            scores.write_parquet(tmp / METRICS_FILE)
            curves.write_parquet(tmp / CURVES_FILE)
            stab_pairs.write_parquet(tmp / STABILITY_FILE)
            write_json(tmp / META_FILE, meta)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        part.commit(tmp)
    return result


def _matching_control(control: Any, model: Any) -> Any:
    """The label-permuted control applies to models of its kind (or to all when unknown)."""
    if control is None:
        return None
    ck = control.metadata.model_kind
    mk = model.metadata.model_kind
    if ck is None or mk is None or ck.removesuffix("-permuted") == mk:
        return control
    return None


def _stability(
    part: Any, rankings: dict[tuple[str, int], tuple[list[str], np.ndarray]]
) -> pl.DataFrame:
    """Run :func:`stability` over every model's rankings; a part of its own."""
    name = "stability"
    if not part.is_done(name):
        from ._stability import stability

        res, pairs = stability(rankings)
        tmp = part.chunk_path(f".{name}.tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        _with_model(res.scores, {}, SCORE_SCHEMA).write_parquet(tmp / "scores.parquet")
        _with_model(res.curves, {}, CURVE_SCHEMA).write_parquet(tmp / "curves.parquet")
        pairs.write_parquet(tmp / "pairs.parquet")
        os.replace(tmp, part.chunk_path(name))
    return pl.read_parquet(part.chunk_path(name) / "pairs.parquet")
