"""Public entry points: :func:`integrated_gradients` (in memory) and :func:`explain_cohort`
(chunked, resumable, written to an attributions folder)."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from .._atomic import PartialDir, write_json
from .._progress import progress
from ..errors import InputError
from ._attributions import GENES_FILE, META_FILE, ROWS_FILE, TOPK_FILE, VALUES_FILE, Attributions
from ._baselines import Baseline, resolve_baselines
from ._compiled import CompiledModel
from ._ig import (
    ChunkResult,
    IGSettings,
    TargetSpec,
    Workspace,
    explain_chunk,
    resolve_settings,
    resolve_target,
)

log = logging.getLogger("gexplain.explain")

#: Memory budget (bytes) of one chunk's float64 work arrays when the chunk size is automatic.
CHUNK_BUDGET = 256 * 2**20


def auto_chunk_size(n_genes: int, n_targets: int) -> int:
    """Samples per chunk so that one chunk's arrays fit :data:`CHUNK_BUDGET`.

    Per sample: the float64 input copy and pull-back buffer (``2 × 8 G`` bytes)
    and the float32 attributions of its ``T`` targets (``4 T G``).
    """
    per_sample = n_genes * (16 + 4 * n_targets)
    return int(max(1, min(4096, CHUNK_BUDGET // max(1, per_sample))))


@dataclass
class _Run:
    model: CompiledModel
    x: np.ndarray
    sample_ids: list[str]
    label_idx: np.ndarray | None
    baselines: list[Baseline]
    target: TargetSpec
    settings: IGSettings
    gene_ids: list[str]
    chunk_size: int
    meta: dict[str, Any]
    correct_only: bool
    normalize: bool
    top_k: int | None
    workspace: Workspace = field(default_factory=Workspace)

    def chunks(self) -> Iterator[tuple[int, int]]:
        n = self.x.shape[0]
        for start in range(0, n, self.chunk_size):
            yield start, min(n, start + self.chunk_size)

    def run_chunk(self, start: int, stop: int, out: np.ndarray | None = None) -> ChunkResult:
        pos = np.arange(start, stop, dtype=np.int64)
        return explain_chunk(
            self.model,
            self.x[start:stop],
            pos,
            self.sample_ids[start:stop],
            None if self.label_idx is None else self.label_idx[start:stop],
            self.baselines,
            self.target,
            self.settings,
            self.gene_ids,
            correct_only=self.correct_only,
            normalize=self.normalize,
            top_k=self.top_k,
            out=out,
            workspace=self.workspace,
        )

    @property
    def n_targets(self) -> int:
        if self.target.kind == "all":
            return self.model.n_classes
        return self.target.n_targets or 1


def _describe_baseline(spec: Any) -> Any:
    if isinstance(spec, (list, tuple)) and spec and not isinstance(spec[0], (int, float)):
        return [_describe_baseline(s) for s in spec]
    if isinstance(spec, (str, os.PathLike)):
        return str(spec)
    from ..cohort import Cohort

    if isinstance(spec, Cohort):
        return f"cohort({spec.n_samples} samples)"
    arr = np.asarray(spec, dtype=np.float64)
    return f"array{arr.shape} sha256:{hashlib.sha256(arr.tobytes()).hexdigest()[:16]}"


def _prepare(
    model: Any,
    X: Any,
    *,
    baseline: Any,
    target: Any,
    method: str | None,
    steps: int | str | None,
    output: str,
    tolerance: float,
    max_steps: int,
    correct_only: bool,
    normalize: bool,
    top_k: int | None,
    labels: Sequence[Any] | None,
    sample_ids: Sequence[str] | None,
    gene_ids: Sequence[str] | None,
    fill: float | None,
    chunk_size: int | None,
) -> _Run:
    from ..cohort import Cohort

    cm = CompiledModel.load(model)
    if isinstance(X, (str, os.PathLike)):
        X = Cohort.load(X)
    if isinstance(X, Cohort):
        data: Any = cm.prepare(X, fill=fill)
        x = data.expression
        ids = data.sample_ids
        genes = cm.gene_ids or data.gene_ids
        lab = data.labels.cast(pl.String).to_list() if data.has_labels else None
        if labels is not None:
            raise InputError("labels= is for arrays; a Cohort carries its own labels")
    else:
        x = np.asarray(X)
        if x.ndim != 2:
            raise InputError(f"expected a 2-D samples × genes array, got shape {x.shape}")
        if x.shape[1] != cm.n_genes:
            raise InputError(
                f"the input has {x.shape[1]} columns but the model expects {cm.n_genes} genes"
            )
        data = x
        ids = (
            [str(s) for s in sample_ids]
            if sample_ids is not None
            else [str(i) for i in range(x.shape[0])]
        )
        if len(ids) != x.shape[0]:
            raise InputError(f"{len(ids)} sample ids for {x.shape[0]} rows")
        genes = cm.gene_ids or (
            [str(g) for g in gene_ids]
            if gene_ids is not None
            else [str(j) for j in range(cm.n_genes)]
        )
        lab = None
        if labels is not None:
            lab = [
                cm.class_names[int(v)]
                if isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                else (None if v is None else str(v))
                for v in labels
            ]
            if len(lab) != x.shape[0]:
                raise InputError(f"{len(lab)} labels for {x.shape[0]} rows")
    label_idx = None
    if lab is not None:
        lookup = {c: i for i, c in enumerate(cm.class_names)}
        label_idx = np.array(
            [lookup.get(v, -1) if v is not None else -1 for v in lab], dtype=np.int64
        )
    if target is None:
        target = "label" if label_idx is not None else "predicted"
    tspec = resolve_target(target, cm)
    if tspec.kind == "label" and label_idx is None:
        raise InputError("target 'label' needs labelled samples (a Cohort with labels)")
    settings = resolve_settings(cm, method, steps, output, tolerance, max_steps)
    base = resolve_baselines(baseline, cm, data, sample_ids=ids, fill=fill)
    if top_k is not None and int(top_k) <= 0:
        raise InputError("top-k must be positive")
    n_targets = cm.n_classes if tspec.kind == "all" else (tspec.n_targets or 1)
    size = int(chunk_size) if chunk_size else auto_chunk_size(cm.n_genes, n_targets)
    if size <= 0:
        raise InputError("chunk size must be positive")
    meta = {
        "model": str(cm.path) if cm.path is not None else None,
        "model_kind": cm.metadata.model_kind,
        "seed": cm.metadata.seed,
        "class_names": cm.class_names,
        **settings.describe(),
        "target": tspec.describe(),
        "baseline": _describe_baseline(baseline),
        "normalized": bool(normalize),
        "correct_only": bool(correct_only),
        "output_activation": cm.output_activation,
        "closed_form": bool(settings.method == "exact" and cm.is_linear),
    }
    return _Run(
        cm,
        x,
        ids,
        label_idx,
        base,
        tspec,
        settings,
        list(genes),
        size,
        meta,
        bool(correct_only),
        bool(normalize),
        None if top_k is None else int(top_k),
    )


def integrated_gradients(
    model: Any,
    X: Any,
    *,
    baseline: Any = "model-zero",
    target: Any = None,
    method: str | None = None,
    steps: int | str | None = None,
    output: str = "probability",
    tolerance: float = 1e-3,
    max_steps: int = 4096,
    correct_only: bool = False,
    normalize: bool = False,
    top_k: int | None = None,
    labels: Sequence[Any] | None = None,
    sample_ids: Sequence[str] | None = None,
    gene_ids: Sequence[str] | None = None,
    fill: float | None = None,
    chunk_size: int | None = None,
    quiet: bool | None = True,
) -> Attributions:
    """Integrated Gradients of an ONNX classifier, computed without torch.

    Parameters
    ----------
    model
        Path of an ``.onnx`` file, an :class:`onnx.ModelProto` or a :class:`CompiledModel`.
    X
        A :class:`gexplain.Cohort` (genes aligned to the model by id), a cohort
        folder, or a 2-D samples × genes array in the model's input order.
    baseline
        ``model-zero`` (default: the model's zero after its folded
        preprocessing, the paper's), ``zeros``, ``train-mean``, ``class-mean``,
        an array ``(G,)`` or ``(n, G)``, a Cohort, a file, or a list of these
        (averaged). See :mod:`gexplain.explain._baselines`.
    target
        ``label`` (the sample's class; default when labels are known),
        ``predicted`` (default otherwise), ``all``, a class name or index, or a
        list of classes.
    method
        ``exact`` (default for ReLU heads and linear models), ``gausslegendre``
        (default otherwise, with ``steps="auto"``), ``riemann_left``,
        ``riemann_right``, ``riemann_middle``, ``riemann_trapezoid`` (Captum's)
        or ``trapezoid``.
    steps
        Quadrature nodes (default 50, as Captum), or ``"auto"``: doubled per
        sample until completeness holds to ``tolerance``.
    output
        ``probability`` (softmax, the paper's), ``logit`` or ``log_probability``.
    tolerance, max_steps
        For ``steps="auto"``: ``|delta| ≤ tolerance · max(1, |f_x − f_baseline|)``.
    correct_only
        Explain only the samples the model classifies correctly (needs labels).
    normalize
        Scale each row to unit L2 norm (``delta`` still describes the raw sums).
    top_k
        Also build the long frame of each row's ``top_k`` largest attributions.
    labels, sample_ids, gene_ids
        For array input: class (name or index) of each row, row ids, column ids.
    fill
        Value for model genes missing from a Cohort (``None`` refuses them).
    chunk_size
        Samples per chunk (default: sized to ~256 MB of work arrays).
    quiet
        Hide the progress bar (``None``: show it on a terminal).

    Returns
    -------
    Attributions
        ``.values`` is ``(rows, genes)``: one row per (sample, target).

    Examples
    --------
    >>> import numpy as np
    >>> from gexplain.explain import integrated_gradients
    >>> attr = integrated_gradients("model.onnx", X, target="predicted")  # doctest: +SKIP
    >>> attr.values.shape, attr.delta.max()  # doctest: +SKIP
    """
    run = _prepare(
        model,
        X,
        baseline=baseline,
        target=target,
        method=method,
        steps=steps,
        output=output,
        tolerance=tolerance,
        max_steps=max_steps,
        correct_only=correct_only,
        normalize=normalize,
        top_k=top_k,
        labels=labels,
        sample_ids=sample_ids,
        gene_ids=gene_ids,
        fill=fill,
        chunk_size=chunk_size,
    )
    parts: list[ChunkResult] = []
    T = run.n_targets
    # without --correct-only the row count is known: write straight into the result
    values = (
        None if run.correct_only else np.zeros((run.x.shape[0] * T, run.model.n_genes), np.float32)
    )
    bar = progress(total=run.x.shape[0], desc="explain", quiet=quiet, unit="sample")
    with bar:
        for start, stop in run.chunks():
            out = None if values is None else values[start * T : stop * T]
            parts.append(run.run_chunk(start, stop, out))
            bar.update(stop - start)
    if not parts:
        parts.append(run.run_chunk(0, 0))
    return _assemble(run, parts, values)


def _assemble(run: _Run, parts: list[ChunkResult], values: np.ndarray | None) -> Attributions:
    if values is None:
        values = np.concatenate([p.values for p in parts])
    rows = pl.concat([p.rows for p in parts])
    topk = pl.concat([p.topk for p in parts]) if run.top_k is not None else None
    meta = {**run.meta, "ort_precision": run.model.ort_precision}
    return Attributions(values, rows, run.gene_ids, meta, topk=topk)


def _model_digest(model: CompiledModel) -> str:
    return hashlib.sha256(model.proto.SerializeToString()).hexdigest()


def explain_cohort(
    model: Any,
    cohort: Any,
    out: str | os.PathLike[str],
    *,
    baseline: Any = "model-zero",
    target: Any = None,
    method: str | None = None,
    steps: int | str | None = None,
    output: str = "probability",
    tolerance: float = 1e-3,
    max_steps: int = 4096,
    correct_only: bool = False,
    normalize: bool = False,
    top_k: int | None = None,
    fill: float | None = None,
    chunk_size: int | None = None,
    overwrite: bool = False,
    quiet: bool | None = None,
    scheduler: Any = None,
    retries: int = 2,
) -> Path:
    """Explain a stored cohort chunk by chunk into the attributions folder ``out``.

    Memory stays bounded by one chunk whatever the cohort size and number of
    targets; finished chunks are kept in ``.OUT.partial`` so that an interrupted
    run resumes where it stopped (same parameters); the folder appears
    atomically when every chunk is done. Parameters as in
    :func:`integrated_gradients`, and:

    Parameters
    ----------
    scheduler
        ``None`` (this process), or run the chunks on a Dask cluster:
        ``"local:N"`` (a LocalCluster of N single-threaded workers for this
        call), a scheduler address ``"tcp://host:8786"`` or a
        :class:`distributed.Client` (see :mod:`gexplain.distributed`). Workers
        read their chunks from the stored cohort (``out`` and the cohort must
        be on storage every worker sees) and write them into the partial
        folder; the result is byte-identical to a local run with the same
        chunk size, and a local run can resume a distributed one and back.
    retries
        With a scheduler: reruns of a chunk that raised.

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    from ..cohort import Cohort

    if scheduler is not None:  # a malformed scheduler fails before any work
        from ..distributed import parse_scheduler

        parse_scheduler(scheduler)
    source = cohort
    if isinstance(cohort, (str, os.PathLike)):
        cohort = Cohort.load(cohort)
    run = _prepare(
        model,
        cohort,
        baseline=baseline,
        target=target,
        method=method,
        steps=steps,
        output=output,
        tolerance=tolerance,
        max_steps=max_steps,
        correct_only=correct_only,
        normalize=normalize,
        top_k=top_k,
        labels=None,
        sample_ids=None,
        gene_ids=None,
        fill=fill,
        chunk_size=chunk_size,
    )
    params = {
        **run.meta,
        "model_sha256": _model_digest(run.model),
        "cohort": str(source) if isinstance(source, (str, os.PathLike)) else None,
        "sample_ids_sha256": hashlib.sha256("\n".join(run.sample_ids).encode()).hexdigest(),
        "gene_ids_sha256": hashlib.sha256("\n".join(run.gene_ids).encode()).hexdigest(),
        "n_samples": len(run.sample_ids),
        "chunk_size": run.chunk_size,
        "top_k": run.top_k,
        "fill": fill,
    }
    part = PartialDir(out, params, overwrite=overwrite)
    names = []
    T, G = run.n_targets, run.model.n_genes
    direct = (
        None
        if run.correct_only or run.x.shape[0] == 0
        else _DirectValues(part, run.x.shape[0] * T, G)
    )
    if scheduler is not None:
        names = _explain_distributed(run, part, direct, cohort, scheduler, quiet, retries, fill)
        return _commit(part, run, names, direct)
    bar = progress(total=run.x.shape[0], desc="explain", quiet=quiet, unit="sample")
    with bar:
        for i, (start, stop) in enumerate(run.chunks()):
            name = f"chunk-{i:06d}"
            names.append(name)
            if not part.is_done(name):
                if direct is not None:
                    buf = run.workspace.get("out", ((stop - start) * T, G), np.float32)
                    buf.fill(0.0)
                    res = run.run_chunk(start, stop, buf)
                    direct.write(start * T, res.values)
                else:
                    res = run.run_chunk(start, stop)
                _write_chunk(part, name, res, with_values=direct is None)
            bar.update(stop - start)
    if not names:
        names.append("chunk-000000")
        _write_chunk(part, names[0], run.run_chunk(0, 0), with_values=direct is None)
    return _commit(part, run, names, direct)


class _DirectValues:
    """The final ``attributions.arrow``, preallocated in the partial folder and filled in place.

    Used when the number of rows is known in advance (no ``correct_only``): each
    chunk's rows are written at their offset with ``pwrite`` (no second copy, no
    per-page faults of a memory map), before the chunk is marked done.
    """

    def __init__(self, part: PartialDir, n_rows: int, n_genes: int) -> None:
        from ..cohort._store import _values_offset, preallocate_expression

        self.path = part.chunk_path("values.arrow")
        if not self.path.exists():
            # finished chunks without their values cannot be trusted: start afresh
            for name in part.done():
                if name.startswith("chunk-"):
                    shutil.rmtree(part.chunk_path(name))
            tmp = part.chunk_path(".values.arrow.tmp")
            mm = preallocate_expression(tmp, n_rows, n_genes)
            del mm
            os.replace(tmp, self.path)
        self.offset = _values_offset(self.path)
        self.row_bytes = 4 * n_genes

    def write(self, row: int, values: np.ndarray) -> None:
        data = memoryview(np.ascontiguousarray(values, dtype=np.float32)).cast("B")
        fd = os.open(self.path, os.O_WRONLY)
        try:
            pos = self.offset + row * self.row_bytes
            while data:
                n = os.pwrite(fd, data, pos)
                data, pos = data[n:], pos + n
        finally:
            os.close(fd)


def _write_chunk(
    part: PartialDir | _ChunkDir, name: str, res: ChunkResult, *, with_values: bool
) -> None:
    # a private temporary name: on a cluster two attempts at a chunk may overlap
    tmp = part.chunk_path(f".{name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.mkdir()
    if with_values:
        np.save(tmp / "values.npy", res.values)
    res.rows.write_parquet(tmp / "rows.parquet")
    if res.topk is not None:
        res.topk.write_parquet(tmp / "topk.parquet")
    try:
        os.replace(tmp, part.chunk_path(name))
    except OSError:
        if not part.chunk_path(name).is_dir():
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # another attempt finished it: same content


def _commit(part: PartialDir, run: _Run, names: list[str], direct: _DirectValues | None) -> Path:
    from ..cohort._store import preallocate_expression

    run.model._ort()  # sets ort_precision even when every chunk was already done
    rows = [pl.read_parquet(part.chunk_path(n) / "rows.parquet") for n in names]
    total = sum(r.height for r in rows)
    G = run.model.n_genes
    tmp = part.new_output_dir()
    try:
        if direct is not None:
            os.replace(direct.path, tmp / VALUES_FILE)
        else:
            mm = preallocate_expression(tmp / VALUES_FILE, total, G)
            at = 0
            for n in names:
                v = np.load(part.chunk_path(n) / "values.npy", mmap_mode="r")
                mm[at : at + v.shape[0]] = v
                at += v.shape[0]
            mm.flush()
            del mm
        pl.concat(rows).write_parquet(tmp / ROWS_FILE)
        pl.DataFrame({"gene_id": run.gene_ids}).write_parquet(tmp / GENES_FILE)
        if run.top_k is not None:
            pl.concat(
                [pl.read_parquet(part.chunk_path(n) / "topk.parquet") for n in names]
            ).write_parquet(tmp / TOPK_FILE)
        from .._version import __version__

        meta = {
            "gexplain_version": __version__,
            **run.meta,
            "ort_precision": run.model.ort_precision,
        }
        write_json(tmp / META_FILE, meta)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return part.commit(tmp)


# ----------------------------------------------------------------------------- on a Dask cluster


class _ChunkDir:
    """The partial folder as seen by a worker: a path, no ownership (no cleanup, no params)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.dir = Path(path)

    def chunk_path(self, name: str) -> Path:
        return self.dir / name


@dataclass(frozen=True)
class ExplainJob:
    """What every chunk of a distributed explain run shares: paths and resolved settings.

    Small (a few hundred bytes pickled): the model, baselines and cohort are
    files that workers open themselves.
    """

    token: str
    partial: str
    cohort: str
    model: str
    model_sha256: str
    baselines: str
    fill: float | None
    target: TargetSpec
    settings: IGSettings
    correct_only: bool
    normalize: bool
    top_k: int | None
    n_targets: int
    values: str | None  # preallocated attributions.arrow (rows known in advance), else None
    values_offset: int


@dataclass(frozen=True)
class ExplainTask:
    """One chunk: samples ``start .. stop-1`` of the stored cohort, saved as ``name``."""

    job: ExplainJob
    name: str
    start: int
    stop: int


class _WorkerRun:
    """A job's inputs, loaded once per worker process: model, memory-mapped cohort, baselines."""

    def __init__(self, job: ExplainJob) -> None:
        import json

        from ..cohort import Cohort
        from ..distributed import worker_cache

        # the compiled model (and its onnxruntime session) outlives the run: same digest, same model
        self.model = worker_cache(
            ("model", job.model_sha256), lambda: CompiledModel.load(job.model)
        )
        self.cohort = Cohort.load(job.cohort)
        self.gene_ids = list(self.model.gene_ids or self.cohort.gene_ids)
        self.lookup = {c: i for i, c in enumerate(self.model.class_names)}
        folder = Path(job.baselines)
        self.baselines = []
        for i, b in enumerate(json.loads((folder / "baselines.json").read_text())):
            rows = np.load(folder / f"{i}.rows.npy", mmap_mode="r")
            if b["kind"] != "per_sample":
                rows = np.array(rows)
            order = np.load(folder / f"{i}.order.npy") if b["order"] else None
            self.baselines.append(Baseline(b["name"], rows, b["kind"], order))
        self._local = threading.local()

    @property
    def workspace(self) -> Workspace:
        ws = getattr(self._local, "ws", None)
        if ws is None:
            ws = self._local.ws = Workspace()
        return ws


def explain_task(task: ExplainTask) -> dict[str, Any]:
    """Explain one chunk on a worker: read its rows, run the kernels, write its part.

    The values go straight into the preallocated ``attributions.arrow`` at the
    chunk's offset (or into the chunk folder when rows are not known in
    advance); the chunk folder (row table, top-k) is renamed into place last,
    which marks the chunk done. A chunk already done (a rerun after a lost
    worker or a crashed driver) is not recomputed. Returns a small summary.
    """
    from ..distributed import limit_threads, pwrite_rows, worker_cache

    job = task.job
    part = _ChunkDir(job.partial)
    summary = {"name": task.name, "start": task.start, "stop": task.stop, "computed": False}
    if part.chunk_path(task.name).is_dir():
        return summary
    with limit_threads():
        st: _WorkerRun = worker_cache(("explain", job.token), lambda: _WorkerRun(job))
        chunk = st.cohort.select(samples=slice(task.start, task.stop))
        data = st.model.prepare(chunk, fill=job.fill)
        label_idx = None
        if data.has_labels:
            labels = data.labels.cast(pl.String).to_list()
            label_idx = np.array(
                [st.lookup.get(v, -1) if v is not None else -1 for v in labels], dtype=np.int64
            )
        ws = st.workspace
        out = None
        if job.values is not None:
            out = ws.get(
                "out", ((task.stop - task.start) * job.n_targets, st.model.n_genes), np.float32
            )
            out.fill(0.0)
        res = explain_chunk(
            st.model,
            data.expression,
            np.arange(task.start, task.stop, dtype=np.int64),
            data.sample_ids,
            label_idx,
            st.baselines,
            job.target,
            job.settings,
            st.gene_ids,
            correct_only=job.correct_only,
            normalize=job.normalize,
            top_k=job.top_k,
            out=out,
            workspace=ws,
        )
        if job.values is not None:
            row_bytes = 4 * st.model.n_genes
            pwrite_rows(
                job.values, job.values_offset + task.start * job.n_targets * row_bytes, res.values
            )
        _write_chunk(part, task.name, res, with_values=job.values is None)
    return {**summary, "computed": True, "rows": res.rows.height}


def _save_baselines(baselines: list[Baseline], folder: Path) -> None:
    tmp = folder.with_name(f".{folder.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    desc = []
    for i, b in enumerate(baselines):
        np.save(tmp / f"{i}.rows.npy", np.asarray(b.rows))
        if b.order is not None:
            np.save(tmp / f"{i}.order.npy", np.asarray(b.order))
        desc.append({"name": b.name, "kind": b.kind, "order": b.order is not None})
    write_json(tmp / "baselines.json", desc)
    os.replace(tmp, folder)


def _explain_job(
    run: _Run, part: PartialDir, direct: _DirectValues | None, cohort: Any, fill: float | None
) -> ExplainJob:
    """Put the run's inputs where workers can read them and describe the job."""
    token = uuid.uuid4().hex[:12]
    work = part.chunk_path("dask")
    work.mkdir(exist_ok=True)
    model = work / "model.onnx"
    if not model.exists():  # the model is fixed by the run's parameters (its digest)
        tmp = work / f".model.{token}.tmp"
        tmp.write_bytes(run.model.proto.SerializeToString())
        os.replace(tmp, model)
    source = getattr(cohort, "_path", None)
    if source is None:  # an in-memory cohort: store it once for the workers
        source = work / f"cohort-{token}"
        cohort.save(source)
    baselines = work / f"baselines-{token}"
    _save_baselines(run.baselines, baselines)
    return ExplainJob(
        token=token,
        partial=str(part.dir.resolve()),
        cohort=str(Path(source).resolve()),
        model=str(model.resolve()),
        model_sha256=part.params["model_sha256"],
        baselines=str(baselines.resolve()),
        fill=fill,
        target=run.target,
        settings=run.settings,
        correct_only=run.correct_only,
        normalize=run.normalize,
        top_k=run.top_k,
        n_targets=run.n_targets,
        values=None if direct is None else str(direct.path.resolve()),
        values_offset=0 if direct is None else direct.offset,
    )


def _explain_distributed(
    run: _Run,
    part: PartialDir,
    direct: _DirectValues | None,
    cohort: Any,
    scheduler: Any,
    quiet: bool | None,
    retries: int,
    fill: float | None,
) -> list[str]:
    from ..distributed import map_chunks

    chunks = list(run.chunks())
    names = [f"chunk-{i:06d}" for i in range(len(chunks))]
    if not chunks:
        names = ["chunk-000000"]
        _write_chunk(part, names[0], run.run_chunk(0, 0), with_values=direct is None)
        return names
    job = _explain_job(run, part, direct, cohort, fill)
    tasks = [
        ExplainTask(job, name, start, stop)
        for name, (start, stop) in zip(names, chunks)
        if not part.is_done(name)
    ]
    log.info(
        "explain: %d of %d chunks already done, %d to run",
        len(chunks) - len(tasks),
        len(chunks),
        len(tasks),
    )
    for _ in map_chunks(
        explain_task,
        tasks,
        scheduler=scheduler,
        quiet=quiet,
        retries=retries,
        desc="explain",
        size=lambda t: t.stop - t.start,
        unit="sample",
    ):
        pass
    return names
