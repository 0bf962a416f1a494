"""Drivers: simulate a cohort in memory, or stream it to disk in sample chunks."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from .._progress import progress
from .._rng import SeedLike, _splitmix64, as_seed, generator, stream_id
from ..cohort import Cohort, CohortWriter, provenance_entry
from ._model import SimulationModel, build_model
from ._params import SimulationParams, get_params

__all__ = ["Simulation", "sample_keys", "simulate", "simulate_to_disk"]

log = logging.getLogger("gexplain.simulate")

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_CHUNK_BYTES = 32 * 2**20
SAMPLER = "exact: Dirichlet by Marsaglia-Tsang gammas, multinomials by conditional binomials (BTRD/inversion)"


def sample_keys(
    seed: SeedLike, start: int, stop: int, stream: str = "simulate.expression"
) -> np.ndarray:
    """64-bit stream keys of samples ``start .. stop-1`` (global indices).

    Element ``j`` depends only on ``(seed, stream, start + j)`` (a SplitMix64
    hash, as :func:`gexplain._rng.sample_seeds` but keeping 64 bits, so that
    keys of large cohorts do not collide).
    """
    s = as_seed(seed)
    base = _splitmix64(np.array([s ^ (stream_id(stream) << 32)], dtype=np.uint64))[0]
    idx = np.arange(start, stop, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return _splitmix64(base ^ (idx * _GOLDEN))


class Simulation:
    """A simulation plan: parameters, seed, model, per-sample design; draws rows on demand.

    Parameters
    ----------
    params
        Parameters or preset name.
    seed
        Seed (int or ``numpy.random.Generator``).

    Attributes
    ----------
    params : SimulationParams
        The parameters.
    seed : int
        The seed as an int.
    model : SimulationModel
        Pathways, gene weights and class priors (drawn from the seed).
    n_samples : int
        Number of samples; samples are ordered by class.
    classes : numpy.ndarray
        Class index of every sample.
    library_size : numpy.ndarray
        Reads of every sample.
    divisor : numpy.ndarray
        Output is ``counts / divisor`` (``library_size / 1e6`` per million, else 1).

    Examples
    --------
    >>> from gexplain.simulate import Simulation
    >>> sim = Simulation("demo", seed=0)
    >>> x = sim.rows(0, 3)
    >>> x.shape, bool((x.sum(axis=1) > 0).all())
    ((3, 1000), True)
    """

    def __init__(self, params: SimulationParams | str | None = "demo", seed: SeedLike = 0) -> None:
        self.params = params if isinstance(params, SimulationParams) else get_params(params)
        self.seed = as_seed(seed)
        self.model: SimulationModel = build_model(self.params, self.seed)
        p = self.params
        counts = p.class_counts
        self.n_samples = int(sum(counts))
        self.classes = np.repeat(np.arange(p.n_classes, dtype=np.int64), counts)
        if p.library_sigma > 0:
            z = generator(self.seed, "simulate.library").standard_normal(self.n_samples)
            self.library_size = np.maximum(
                1, np.rint(p.reads * np.exp(p.library_sigma * z))
            ).astype(np.int64)
        else:
            self.library_size = np.full(self.n_samples, p.reads, dtype=np.int64)
        if p.units == "per-million":
            self.divisor = self.library_size / 1e6
        else:
            self.divisor = np.ones(self.n_samples)
        self._layout = self.model.kernel_layout()

    # ------------------------------------------------------------------ tables
    def split(self) -> np.ndarray:
        """Stratified split: in each class, ``round(n_c · test_size)`` random samples are "test"."""
        rng = generator(self.seed, "simulate.split")
        is_test = np.zeros(self.n_samples, dtype=bool)
        start = 0
        for n_c in self.params.class_counts:
            n_test = int(np.floor(n_c * self.params.test_size + 0.5))
            if n_c >= 2:
                n_test = min(max(n_test, 1), n_c - 1)
            else:
                n_test = 0
            is_test[start + rng.permutation(n_c)[:n_test]] = True
            start += n_c
        return is_test

    def samples(self) -> pl.DataFrame:
        """Sample table: ``sample_id``, ``label``, ``split``, ``library_size``."""
        width = max(5, len(str(self.n_samples - 1)))
        names = np.array(self.params.class_names)
        return pl.DataFrame(
            {
                "sample_id": [f"S{i:0{width}d}" for i in range(self.n_samples)],
                "label": names[self.classes],
                "split": np.where(self.split(), "test", "train"),
                "library_size": self.library_size,
            }
        )

    def genes(self) -> pl.DataFrame:
        """Gene table: ``gene_id`` and ``n_pathways`` (how many pathways hold the gene; 0: never expressed)."""
        n_paths = np.bincount(self.model.path_genes, minlength=self.params.n_genes)
        return pl.DataFrame(
            {"gene_id": self.params.gene_ids, "n_pathways": n_paths.astype(np.int32)}
        )

    def meta(self, origin: dict[str, Any] | None = None) -> dict[str, Any]:
        """``cohort.json`` content: units, provenance (parameters, seed), the split step.

        ``origin`` (e.g. ``{"preset": "simu1", "overrides": {...}}``) is recorded too.
        """
        p = self.params
        entry = provenance_entry(
            "gexplain.simulate",
            **(origin or {}),
            seed=self.seed,
            sampler=SAMPLER,
            params=p.to_dict(),
        )
        split = {
            "step": "split",
            "transforms_values": False,
            "test_size": p.test_size,
            "seed": self.seed,
            "stratify": "label",
            "method": "per-class shuffle (gexplain.simulate)",
        }
        return {"units": p.units, "provenance": [entry], "preprocessing": [split]}

    # ------------------------------------------------------------------ rows
    def fill(self, start: int, out: np.ndarray) -> None:
        """Simulate samples ``start .. start + len(out) - 1`` into ``out`` (float32, C-contiguous)."""
        from ..kernels.simulate import simulate_samples

        stop = start + out.shape[0]
        if not (0 <= start <= stop <= self.n_samples):
            raise ValueError(f"rows {start}..{stop} out of 0..{self.n_samples}")
        if (
            out.dtype != np.float32
            or not out.flags.c_contiguous
            or out.shape[1] != self.params.n_genes
        ):
            raise ValueError("out must be a C-contiguous float32 array with one column per gene")
        if stop == start:
            return
        lay = self._layout
        simulate_samples(
            sample_keys(self.seed, start, stop),
            self.classes[start:stop],
            self.library_size[start:stop],
            self.divisor[start:stop],
            self.model.alpha,
            lay["rank_of"],
            lay["pos_ptr"],
            lay["lane_cond"],
            lay["lane_lr"],
            lay["lane_gene"],
            lay["last_gene"],
            out,
        )

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Simulated rows ``start .. stop-1`` as a new float32 array."""
        out = np.empty((stop - start, self.params.n_genes), dtype=np.float32)
        self.fill(start, out)
        return out

    def chunks(self, chunk_size: int | None = None) -> Iterator[tuple[int, int]]:
        """``(start, stop)`` sample ranges of at most ``chunk_size`` rows (default: ~32 MB)."""
        size = chunk_size or max(1, _CHUNK_BYTES // (4 * self.params.n_genes))
        if size < 1:
            raise ValueError("chunk_size must be positive")
        for start in range(0, self.n_samples, size):
            yield start, min(start + size, self.n_samples)


class _Writer:
    """Write a chunk and mark it done (flushed to disk) in a background thread."""

    def __init__(self, writer: CohortWriter, start: int, rows: np.ndarray, label: str) -> None:
        self.error: BaseException | None = None
        self.thread = threading.Thread(
            target=self._run, args=(writer, start, rows, label), daemon=True
        )
        self.thread.start()

    def _run(self, writer: CohortWriter, start: int, rows: np.ndarray, label: str) -> None:
        try:
            writer.write(start, rows)
            writer.mark_done(label)
        except BaseException as exc:  # pragma: no cover - disk errors
            self.error = exc

    def join(self, raise_error: bool = True) -> None:
        self.thread.join()
        if self.error is not None and raise_error:
            raise self.error


def _simulation(
    preset: SimulationParams | str | None, seed: SeedLike, overrides: dict[str, Any]
) -> tuple[Simulation, dict[str, Any]]:
    params = get_params(preset, **overrides)
    origin = {
        "preset": preset if isinstance(preset, str) else None,
        "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
    }
    return Simulation(params, seed), origin


def simulate(
    preset: SimulationParams | str | None = "demo",
    *,
    seed: SeedLike = 0,
    chunk_size: int | None = None,
    quiet: bool | None = True,
    **overrides: Any,
) -> Cohort:
    """Simulate a labelled, split cohort with known biomarkers, in memory.

    Parameters
    ----------
    preset
        ``"simu1"``, ``"simu2"``, ``"demo"`` or a :class:`SimulationParams`.
    seed
        Seed (int or ``numpy.random.Generator``). The same seed gives bit-identical
        output whatever the thread count or ``chunk_size``.
    chunk_size
        Samples per kernel call (progress granularity); does not change the result.
    quiet
        Hide the progress bar (``None``: show it on a terminal).
    **overrides
        Parameters overriding the preset (see :class:`SimulationParams`).

    Returns
    -------
    Cohort
        ``expression`` (samples ordered by class), ``samples`` (``sample_id``,
        ``label``, ``split``, ``library_size``), ``genes`` (``gene_id``,
        ``n_pathways``), ``meta`` (units, provenance with parameters and seed) and
        ``truth`` (:class:`~gexplain.cohort.GroundTruth`).

    Examples
    --------
    >>> import gexplain as gx
    >>> c = gx.simulate.simulate("demo", seed=0)
    >>> c.shape, c.classes[:2], c.meta["units"]
    ((600, 1000), ['C00', 'C01'], 'per-million')
    >>> sorted(c.truth.biomarker_sets()["C00"])[:3]
    ['G00000', 'G00001', 'G00002']
    """
    sim, origin = _simulation(preset, seed, overrides)
    x = np.empty((sim.n_samples, sim.params.n_genes), dtype=np.float32)
    for start, stop in progress(
        list(sim.chunks(chunk_size)), desc="simulate", quiet=quiet, unit="chunk"
    ):
        sim.fill(start, x[start:stop])
    return Cohort(x, sim.samples(), sim.genes(), sim.meta(origin), truth=sim.model.ground_truth())


def simulate_to_disk(
    out: str | os.PathLike[str],
    preset: SimulationParams | str | None = "demo",
    *,
    seed: SeedLike = 0,
    chunk_size: int | None = None,
    overwrite: bool = False,
    quiet: bool | None = None,
    scheduler: Any = None,
    retries: int = 2,
    **overrides: Any,
) -> Path:
    """Simulate a cohort straight into a cohort folder, chunk by chunk.

    Memory stays bounded by two chunk buffers (one being sampled, one being
    written into the pre-allocated ``expression.arrow``). An interrupted run
    resumes its finished chunks when rerun with the same arguments; the folder
    appears atomically.

    Parameters
    ----------
    out
        Cohort folder to create.
    preset, seed, chunk_size, quiet, **overrides
        As :func:`simulate`.
    overwrite
        Replace an existing folder.
    scheduler
        ``None`` (this process), or simulate the chunks on a Dask cluster:
        ``"local:N"``, a scheduler address or a :class:`distributed.Client`
        (see :mod:`gexplain.distributed`). Each worker rebuilds the simulation
        plan from the parameters and seed, samples its chunks and writes them
        into the preallocated ``expression.arrow`` (``out`` must be on storage
        every worker sees): the bytes are those of a local run.
    retries
        With a scheduler: reruns of a chunk that raised.

    Returns
    -------
    pathlib.Path
        ``out``.

    Examples
    --------
    >>> import os, tempfile, gexplain as gx
    >>> path = gx.simulate.simulate_to_disk(os.path.join(tempfile.mkdtemp(), "demo"), seed=0)
    >>> c = gx.Cohort.load(path)
    >>> c.shape, c.truth.summary()["informative_pathways_per_class"]
    ((600, 1000), 8)
    """
    if scheduler is not None:  # a malformed scheduler fails before any work
        from ..distributed import parse_scheduler

        parse_scheduler(scheduler)
    sim, origin = _simulation(preset, seed, overrides)
    p = sim.params
    chunks = list(sim.chunks(chunk_size))
    writer = CohortWriter(
        out,
        sim.n_samples,
        sim.genes(),
        overwrite=overwrite,
        resume_params={
            "job": "gexplain.simulate",
            "params": p.to_dict(),
            "seed": sim.seed,
            "chunks": [chunks[0][1] - chunks[0][0], len(chunks)],
        },
    )
    if scheduler is not None:
        _simulate_distributed(sim, writer, chunks, scheduler, quiet, retries)
        return writer.commit(sim.samples(), sim.meta(origin), sim.model.ground_truth())
    bar = progress(total=sim.n_samples, desc="simulate", quiet=quiet, unit="sample")
    # Double buffering: the kernel (which releases the GIL) fills one chunk
    # buffer while a thread writes the other to the file and marks it done
    # (the writer flushes it to disk), so disk writes overlap the sampling.
    size = max(b - a for a, b in chunks)
    buffers = [np.empty((size, p.n_genes), dtype=np.float32) for _ in range(min(2, len(chunks)))]
    writing: _Writer | None = None
    try:
        for k, (start, stop) in enumerate(chunks):
            label = f"{start}-{stop}"
            if not writer.is_done(label):
                buf = buffers[k % len(buffers)][: stop - start]
                sim.fill(start, buf)
                if writing is not None:
                    writing.join()
                writing = _Writer(writer, start, buf, label)
            bar.update(stop - start)
        if writing is not None:
            writing.join()
            writing = None
    finally:
        if writing is not None:
            writing.join(raise_error=False)
        bar.close()
    return writer.commit(sim.samples(), sim.meta(origin), sim.model.ground_truth())


# ----------------------------------------------------------------------------- on a Dask cluster


@dataclass(frozen=True)
class SimulateTask:
    """One chunk of a distributed simulation: a sample range and where to write it (no data)."""

    token: str
    params: SimulationParams
    seed: int
    expression: str  # the preallocated expression.arrow
    offset: int  # byte offset of its float32 values
    done: str  # marker file created once the rows are written
    start: int
    stop: int


def simulate_task(task: SimulateTask) -> dict[str, Any]:
    """Sample rows ``start .. stop-1`` on a worker and write them in place.

    The worker rebuilds the simulation plan from the parameters and seed (once
    per job) and samples with the same per-sample streams as a local run; the
    chunk's marker is created after its rows are written. Returns a summary.
    """
    from ..distributed import limit_threads, pwrite_rows, worker_cache

    summary = {"start": task.start, "stop": task.stop, "computed": False}
    if os.path.exists(task.done):
        return summary
    with limit_threads():
        sim: Simulation = worker_cache(
            ("simulate", task.token), lambda: Simulation(task.params, task.seed)
        )
        rows = sim.rows(task.start, task.stop)
        pwrite_rows(task.expression, task.offset + 4 * task.start * sim.params.n_genes, rows)
    Path(task.done).touch()
    return {**summary, "computed": True}


def _simulate_distributed(
    sim: Simulation,
    writer: CohortWriter,
    chunks: list[tuple[int, int]],
    scheduler: Any,
    quiet: bool | None,
    retries: int,
) -> None:
    import uuid

    from ..distributed import map_chunks

    expr = Path(writer.expression.filename).resolve()
    done_dir = writer._partial  # resumable writer: its markers are the partial folder's
    assert done_dir is not None
    token = uuid.uuid4().hex[:12]
    tasks = [
        SimulateTask(
            token,
            sim.params,
            sim.seed,
            str(expr),
            int(writer.expression.offset),
            str(done_dir.chunk_path(f"done-{start}-{stop}").resolve()),
            start,
            stop,
        )
        for start, stop in chunks
        if not writer.is_done(f"{start}-{stop}")
    ]
    log.info(
        "simulate: %d of %d chunks already done, %d to run",
        len(chunks) - len(tasks),
        len(chunks),
        len(tasks),
    )
    for _ in map_chunks(
        simulate_task,
        tasks,
        scheduler=scheduler,
        quiet=quiet,
        retries=retries,
        desc="simulate",
        size=lambda t: t.stop - t.start,
        unit="sample",
    ):
        pass
