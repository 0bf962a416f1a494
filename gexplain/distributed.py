"""Chunked work, in process or on a Dask cluster.

Every chunked command of gexplain (``simulate``, ``explain``, ``evaluate``)
splits its samples into chunks that are independent given a few files on
disk. :func:`map_chunks` runs one small task per chunk, either here, one after
the other (``scheduler=None``), or on a Dask cluster:

``local:N``
    a :class:`distributed.LocalCluster` of ``N`` single-threaded worker
    processes, started for the call and closed after it (a laptop "cluster");
``tcp://HOST:PORT`` (or ``HOST:PORT``)
    the address of a running Dask scheduler (e.g. a ``dask-jobqueue``
    ``SLURMCluster``'s ``scheduler_address``);
a ``.json`` file
    a scheduler file written by ``dask scheduler --scheduler-file``;
a :class:`distributed.Client`
    used as is (and left open).

Tasks are small descriptions (paths, sample ranges, settings); workers read
their chunk themselves from shared storage (memory-mapped Arrow IPC), run the
same Numba kernels, write their part into the run's ``.OUT.partial`` folder
and return a small summary. No array travels through the scheduler. Dask
reruns the tasks of a worker that dies; ``retries`` reruns a task that raised.
Results are the same bytes as a single-process run because every chunk is
computed by the same code on the same rows, whatever machine runs it.

Needs the ``dask`` extra (``pip install "gexplain[dask]"``).

Examples
--------
>>> from gexplain.distributed import map_chunks
>>> sorted(map_chunks(abs, [-2, 1, -3]))
[1, 2, 3]
>>> sorted(map_chunks(abs, [-2, 1, -3], scheduler="local:2"))  # doctest: +SKIP
[1, 2, 3]
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import pickle
import shutil
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ._progress import progress
from .errors import GexplainError, InputError

__all__ = [
    "SchedulerLike",
    "get_client",
    "in_worker",
    "limit_threads",
    "load_spilled",
    "map_chunks",
    "map_plan",
    "parse_scheduler",
    "pwrite_rows",
    "spill",
    "worker_cache",
]

log = logging.getLogger("gexplain.distributed")

T = TypeVar("T")
R = TypeVar("R")

#: What ``scheduler=`` accepts: ``None`` (in process), ``"local:N"``, an address,
#: a scheduler file, or a :class:`distributed.Client`.
SchedulerLike = Any

_DASK_MISSING = (
    "running on a Dask cluster needs the dask extra: pip install 'gexplain[dask]' "
    "(or pip install 'dask[distributed]')"
)


def parse_scheduler(scheduler: SchedulerLike) -> tuple[str, Any]:
    """Classify a ``scheduler=`` value.

    Returns
    -------
    tuple
        ``("none", None)``, ``("local", n_workers)``, ``("address", str)``,
        ``("file", path)`` or ``("client", client)``.

    Raises
    ------
    InputError
        For a malformed ``local:N``.

    Examples
    --------
    >>> parse_scheduler("local:2"), parse_scheduler("tcp://10.0.0.5:8786")
    (('local', 2), ('address', 'tcp://10.0.0.5:8786'))
    >>> parse_scheduler(None)
    ('none', None)
    """
    if scheduler is None:
        return "none", None
    if isinstance(scheduler, (str, os.PathLike)):
        text = str(scheduler).strip()
        if text.startswith("local:") or text == "local":
            n = text[len("local:") :] if ":" in text else ""
            try:
                workers = int(n)
            except ValueError:
                raise InputError(
                    f"scheduler {text!r}: expected local:N with N a number of workers"
                ) from None
            if workers < 1:
                raise InputError(f"scheduler {text!r}: a local cluster needs at least one worker")
            return "local", workers
        if not text:
            raise InputError("empty scheduler address")
        if text.endswith(".json"):
            if not Path(text).is_file():
                raise InputError("Dask scheduler file not found", path=text)
            return "file", text
        return "address", text
    if hasattr(scheduler, "submit") and hasattr(scheduler, "scheduler_info"):
        return "client", scheduler
    raise InputError(
        f"scheduler must be None, 'local:N', a scheduler address or a dask Client, "
        f"got {type(scheduler).__name__}"
    )


@contextlib.contextmanager
def get_client(scheduler: SchedulerLike) -> Iterator[Any]:
    """A :class:`distributed.Client` for ``scheduler`` (see the module docstring).

    A ``local:N`` cluster is created for the block and closed after it; a client
    made from an address or a scheduler file is closed (the cluster keeps
    running); a Client passed in is yielded as is and left open.

    Raises
    ------
    GexplainError
        If Dask is not installed or the scheduler cannot be reached.

    Examples
    --------
    >>> from gexplain.distributed import get_client
    >>> with get_client("local:2") as client:  # doctest: +SKIP
    ...     print(len(client.scheduler_info()["workers"]))
    2
    """
    kind, value = parse_scheduler(scheduler)
    if kind == "none":
        raise InputError("get_client needs a scheduler (local:N, an address or a Client)")
    if kind == "client":
        yield value
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - the dask extra is installed in tests
        raise GexplainError(_DASK_MISSING) from exc
    if kind == "local":
        with (
            LocalCluster(
                n_workers=value,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",  # a free port: never clashes with another cluster
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
        return
    try:
        client = (
            Client(scheduler_file=value, timeout="20s")
            if kind == "file"
            else Client(value, timeout="20s")
        )
    except (OSError, TimeoutError) as exc:
        raise GexplainError(f"cannot reach the Dask scheduler at {value}: {exc}") from exc
    with client:
        yield client


def map_chunks(
    fn: Callable[[T], R],
    tasks: Iterable[T],
    *,
    scheduler: SchedulerLike = None,
    quiet: bool | None = None,
    retries: int = 2,
    desc: str | None = None,
    size: Callable[[T], int] | None = None,
    unit: str = "chunk",
) -> Iterator[R]:
    """Run ``fn(task)`` for every task, here or on a Dask cluster; yield results as they complete.

    Parameters
    ----------
    fn
        A top-level (importable) function of one task; on a cluster it runs in
        the worker processes, so tasks and results should be small (paths,
        ranges, summaries), never arrays.
    tasks
        The task descriptions.
    scheduler
        ``None`` (in this process, in order), ``"local:N"``, a scheduler
        address or file, or a :class:`distributed.Client` (see the module docstring).
    quiet
        Hide the progress bar (``None``: show it on a terminal).
    retries
        On a cluster, how many times a task that raised is rerun before the
        error is raised here (tasks lost with a dead worker are rerun by Dask
        regardless, up to its ``distributed.scheduler.allowed-failures``).
    desc, unit
        Progress bar label and unit.
    size
        Progress units of a task (default 1 per task).

    Yields
    ------
    object
        ``fn(task)``: in task order in process, in completion order on a cluster.
        Leaving the loop early (or an error) cancels the tasks not yet run.

    Examples
    --------
    >>> list(map_chunks(len, ["ab", "c"], quiet=True))
    [2, 1]
    """
    todo = list(tasks)
    weight = size or (lambda _task: 1)
    bar = progress(total=sum(weight(t) for t in todo), desc=desc, quiet=quiet, unit=unit)
    with bar:
        kind, _ = parse_scheduler(scheduler)
        if kind == "none":
            for task in todo:
                result = fn(task)
                bar.update(weight(task))
                yield result
            return
        if not todo:
            return
        with get_client(scheduler) as client:
            yield from _run_on_client(client, fn, todo, retries, bar, weight)


def _run_on_client(
    client: Any,
    fn: Callable[[T], R],
    todo: list[T],
    retries: int,
    bar: Any,
    weight: Callable[[T], int],
) -> Iterator[R]:
    from distributed import as_completed

    name = getattr(fn, "__name__", "task").strip("_") or "task"
    token = uuid.uuid4().hex[:8]
    futures = [
        client.submit(
            fn,
            task,
            key=f"gexplain-{name}-{i:06d}-{token}",
            retries=retries,
            pure=False,
            priority=-i,  # earlier chunks first: a resumed run then finds a prefix done
        )
        for i, task in enumerate(todo)
    ]
    index = {f.key: i for i, f in enumerate(futures)}
    try:
        for fut in as_completed(futures):
            result = fut.result()
            bar.update(weight(todo[index[fut.key]]))
            yield result
    finally:
        pending = [f for f in futures if not f.done()]
        if pending:
            client.cancel(pending)


# ----------------------------------------------------------------------------- worker side


def in_worker() -> Any:
    """The current :class:`distributed.Worker` when called inside a Dask task, else ``None``."""
    try:
        from distributed import get_worker
    except ImportError:  # pragma: no cover
        return None
    try:
        return get_worker()
    except ValueError:
        return None


@contextlib.contextmanager
def limit_threads() -> Iterator[None]:
    """Inside a Dask task: at most as many Numba/BLAS threads as the worker has threads.

    A ``local:N`` worker has one thread: without this, N workers would each
    start a Numba pool as large as the machine. Outside a worker this does
    nothing. Kernels give the same results on any thread count.
    """
    worker = in_worker()
    if worker is None:
        yield
        return
    import numba
    from threadpoolctl import threadpool_limits

    n = max(1, min(int(worker.state.nthreads), numba.config.NUMBA_NUM_THREADS))
    before = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        numba.set_num_threads(before)


_CACHE: OrderedDict[Any, Any] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 4


def worker_cache(key: Any, factory: Callable[[], T]) -> T:
    """Per-process cache of a job's loaded state (model, memory-mapped cohort, ...).

    Tasks of the same job that land on the same worker load their inputs
    once. Only the last four entries are kept, so a long-lived worker does not
    accumulate state across runs.
    """
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    value = factory()
    with _CACHE_LOCK:
        _CACHE[key] = value
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return value


def pwrite_rows(path: str | os.PathLike[str], offset: int, values: np.ndarray) -> None:
    """Write the bytes of ``values`` (C order) at byte ``offset`` of an existing file.

    Used by workers to fill their rows of a preallocated Arrow IPC matrix on
    shared storage; disjoint rows may be written concurrently.
    """
    data = memoryview(np.ascontiguousarray(values)).cast("B")
    fd = os.open(path, os.O_WRONLY)
    try:
        pos = offset
        while data:
            n = os.pwrite(fd, data, pos)
            data, pos = data[n:], pos + n
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- spilled plans


def spill(obj: Any, folder: str | os.PathLike[str]) -> Path:
    """Write a picklable object into ``folder`` with its numpy arrays as separate raw files.

    :func:`load_spilled` maps those files back (copy-on-write), so a worker that
    uses rows ``start:stop`` of a large array reads only those pages from
    shared storage. Returns the folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    for i, buf in enumerate(buffers):
        with open(folder / f"{i}.buf", "wb") as f:
            f.write(buf.raw())
    (folder / "object.pkl").write_bytes(data)
    (folder / "buffers.txt").write_text(str(len(buffers)))
    return folder


def load_spilled(folder: str | os.PathLike[str]) -> Any:
    """Read an object written by :func:`spill`; its arrays are private maps of the files."""
    folder = Path(folder)
    n = int((folder / "buffers.txt").read_text())
    buffers: list[Any] = []
    for i in range(n):
        with open(folder / f"{i}.buf", "rb") as f:
            size = os.fstat(f.fileno()).st_size
            buffers.append(
                bytearray() if size == 0 else mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
            )
    return pickle.loads((folder / "object.pkl").read_bytes(), buffers=buffers)


@dataclass(frozen=True)
class PlanChunk:
    """``fn(plan, start, stop)`` with the plan spilled at ``plan`` (see :func:`map_plan`)."""

    fn: Callable[[Any, int, int], Any]
    plan: str
    start: int
    stop: int


def plan_chunk(task: PlanChunk) -> tuple[int, Any]:
    """Run one :class:`PlanChunk` on a worker (the plan is loaded once per worker)."""
    with limit_threads():
        plan = worker_cache(("plan", task.plan), lambda: load_spilled(task.plan))
        return task.start, task.fn(plan, task.start, task.stop)


def map_plan(
    fn: Callable[[Any, int, int], R],
    plan: Any,
    ranges: Sequence[tuple[int, int]],
    *,
    scheduler: SchedulerLike,
    workdir: str | os.PathLike[str],
    quiet: bool | None = None,
    retries: int = 2,
    desc: str | None = None,
) -> list[R]:
    """``[fn(plan, start, stop) for (start, stop) in ranges]``, on a Dask cluster.

    For per-sample passes whose inputs are an in-memory *plan* (arrays and
    settings) rather than files: the plan is spilled once into a temporary
    folder under ``workdir`` (which every worker must see), workers map it and
    compute their ranges, and only the per-chunk results travel back. The
    folder is removed afterwards. Results come back in range order.
    """
    folder = Path(workdir) / f".spill-{uuid.uuid4().hex[:12]}"
    try:
        spill(plan, folder)
        tasks = [PlanChunk(fn, str(folder.resolve()), a, b) for a, b in ranges]
        done = dict(
            map_chunks(
                plan_chunk,
                tasks,
                scheduler=scheduler,
                quiet=quiet,
                retries=retries,
                desc=desc,
                size=lambda t: t.stop - t.start,
                unit="sample",
            )
        )
        return [done[a] for a, _ in ranges]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
