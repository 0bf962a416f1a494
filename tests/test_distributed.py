"""Chunked runs on Dask: same bytes as one process, worker and driver faults, CLI.

One 2-worker LocalCluster (processes, one thread each) is shared by the module;
the tests that need a fresh cluster go through ``local:N``. Worker-side
behaviour (a slow chunk, a log of computed chunks) is injected with a Dask
worker plugin, never with hooks in the library.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import make_cohort
from explain_helpers import gexplain_graph

distributed = pytest.importorskip("distributed")

import onnx  # noqa: E402

import gexplain.distributed as gd  # noqa: E402
from gexplain.cli import main  # noqa: E402
from gexplain.errors import InputError  # noqa: E402
from gexplain.explain import CompiledModel, explain_cohort  # noqa: E402
from gexplain.simulate import simulate_to_disk  # noqa: E402

N, G, C = 40, 9, 3


@pytest.fixture(scope="module")
def client():
    import psutil

    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as cl,
    ):
        yield cl

    def leftovers():  # multiprocessing's resource tracker lives as long as this process
        return [
            p
            for p in psutil.Process().children(recursive=True)
            if "resource_tracker" not in " ".join(p.cmdline())
        ]

    # every worker and nanny process is gone
    deadline = time.monotonic() + 10
    while leftovers() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leftovers() == []


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A stored labelled cohort and a matching ReLU MLP (ONNX file)."""
    d = tmp_path_factory.mktemp("stored")
    cohort = make_cohort(n=N, g=G, n_classes=C, seed=3)
    cohort.save(d / "cohort")
    proto, _ = gexplain_graph(
        np.random.default_rng(7),
        G,
        C,
        (5,),
        softmax=True,
        gene_ids=cohort.gene_ids,
        class_names=cohort.classes,
        scale=3.0,
    )
    onnx.save(proto, d / "mlp.onnx")
    return d / "cohort", d / "mlp.onnx", cohort


class _Interrupt(Exception):
    pass


def _die_after(monkeypatch, finished: int) -> None:
    """Make the driver die (raise) once ``finished`` chunks are reported done."""
    real_progress = gd.progress

    def dying_progress(*args, **kw):
        bar = real_progress(*args, **kw)
        real_update, calls = bar.update, []

        def update(n=1):
            calls.append(n)
            real_update(n)
            if len(calls) == finished:
                raise _Interrupt

        bar.update = update
        return bar

    monkeypatch.setattr(gd, "progress", dying_progress)


def _same_attributions(a: Path, b: Path) -> None:
    assert (a / "attributions.arrow").read_bytes() == (b / "attributions.arrow").read_bytes()
    for name in ("attributions.parquet", "genes.parquet", "topk.parquet"):
        if (a / name).exists() or (b / name).exists():
            assert pl.read_parquet(a / name).equals(pl.read_parquet(b / name)), name
    ja, jb = (json.loads((p / "attributions.json").read_text()) for p in (a, b))
    assert ja == jb


def _no_leftovers(folder: Path) -> None:
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]


# ----------------------------------------------------------------------------- map_chunks


def test_parse_scheduler(tmp_path):
    assert gd.parse_scheduler(None) == ("none", None)
    assert gd.parse_scheduler("local:3") == ("local", 3)
    assert gd.parse_scheduler(" tcp://10.1.2.3:8786 ") == ("address", "tcp://10.1.2.3:8786")
    (tmp_path / "sched.json").write_text("{}")
    assert gd.parse_scheduler(tmp_path / "sched.json") == ("file", str(tmp_path / "sched.json"))
    for bad in ("local:0", "local:two", "local", "", 3):
        with pytest.raises(InputError):
            gd.parse_scheduler(bad)
    with pytest.raises(InputError, match="not found"):
        gd.parse_scheduler(tmp_path / "missing.json")


def test_bad_scheduler_fails_before_any_work(stored, tmp_path, cli):
    cohort_dir, model_path, _ = stored
    for cmd in (
        ["explain", str(cohort_dir), str(model_path)],
        ["simulate", "--preset=demo"],
    ):
        res = cli.invoke(main, [*cmd, "--scheduler", "local:0", "--out", str(tmp_path / "o")])
        assert res.exit_code == 1
        assert "a local cluster needs at least one worker" in res.output
    assert list(tmp_path.iterdir()) == []


def test_map_chunks_in_process():
    seen = []

    def fn(t):
        seen.append(t)
        return t * t

    gen = gd.map_chunks(fn, [3, 1, 2], quiet=True)
    assert next(gen) == 9 and seen == [3]  # lazy, in order
    assert list(gen) == [1, 4]
    assert list(gd.map_chunks(fn, [], quiet=True)) == []
    with pytest.raises(InputError, match="local:0"):
        list(gd.map_chunks(gd.parse_scheduler, ["local:1", "local:0"], quiet=True))


def test_map_chunks_on_cluster(client):
    # tasks are importable functions of small values; results arrive as they complete
    out = set(gd.map_chunks(gd.parse_scheduler, ["local:1", "local:3", "x:1"], scheduler=client))
    assert out == {("local", 1), ("local", 3), ("address", "x:1")}
    # a task's error comes back as the same exception type and message
    with pytest.raises(InputError, match="at least one worker"):
        list(gd.map_chunks(gd.parse_scheduler, ["local:0"], scheduler=client, retries=0))
    # the client passed in stays open
    assert client.status == "running"
    # local:N: a cluster of its own for the call, closed after it (no process left: see fixture)
    assert sorted(gd.map_chunks(abs, [-2, 1, -3], scheduler="local:1", quiet=True)) == [1, 2, 3]


# ----------------------------------------------------------------------------- same bytes


def test_simulate_on_cluster_same_bytes(client, tmp_path, cli, monkeypatch):
    kw = {"seed": 5, "chunk_size": 70, "n_genes": 600, "n_pathways": 60}
    local = simulate_to_disk(tmp_path / "local", "demo", quiet=True, **kw)
    # the CLI, joining the running cluster by its address
    res = cli.invoke(
        main,
        [
            "simulate",
            "--preset=demo",
            "--seed=5",
            "--chunk-size=70",
            "--n-genes=600",
            "--n-pathways=60",
            f"--scheduler={client.scheduler.address}",
            "--out",
            str(tmp_path / "dask"),
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    dask = tmp_path / "dask"
    assert (local / "expression.arrow").read_bytes() == (dask / "expression.arrow").read_bytes()
    for name in ("samples.parquet", "genes.parquet", "truth/pathways.parquet"):
        assert pl.read_parquet(local / name).equals(pl.read_parquet(dask / name)), name
    _no_leftovers(tmp_path)
    # a cluster run whose driver dies is finished by a run without a cluster
    _die_after(monkeypatch, 2)
    with pytest.raises(_Interrupt):
        simulate_to_disk(tmp_path / "mixed", "demo", scheduler=client, quiet=True, **kw)
    monkeypatch.undo()
    counts = [-1]  # chunks already running finish: wait until the count settles
    while len(counts) < 4 or len(set(counts[-3:])) > 1:
        counts.append(len(list((tmp_path / ".mixed.partial").glob("done-*"))))
        time.sleep(0.1)
    assert counts[-1] >= 2
    simulate_to_disk(tmp_path / "mixed", "demo", quiet=True, **kw)
    assert (local / "expression.arrow").read_bytes() == (
        tmp_path / "mixed" / "expression.arrow"
    ).read_bytes()


def test_explain_on_cluster_same_bytes(client, stored, tmp_path, cli):
    cohort_dir, model_path, cohort = stored
    # rows known in advance: workers pwrite into the preallocated attributions.arrow
    local = explain_cohort(
        model_path, cohort_dir, tmp_path / "local", target="all", top_k=3, chunk_size=6, quiet=True
    )
    res = cli.invoke(
        main,
        [
            "explain",
            str(cohort_dir),
            str(model_path),
            "--target=all",
            "--top-k=3",
            "--chunk-size=6",
            f"--scheduler={client.scheduler.address}",
            "--out",
            str(tmp_path / "cli"),
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    _same_attributions(local, tmp_path / "cli")
    # rows unknown in advance (--correct-only), per-sample and per-class baselines, an
    # in-memory cohort (stored for the workers), a model given as a CompiledModel
    base = np.random.default_rng(0).normal(size=(N, G))
    kw = {
        "baseline": [base, "class-mean"],
        "correct_only": True,
        "normalize": True,
        "chunk_size": 7,
        "quiet": True,
    }
    model = CompiledModel.load(model_path)
    a = explain_cohort(model, cohort, tmp_path / "ok-local", **kw)
    b = explain_cohort(model, cohort, tmp_path / "ok-dask", scheduler=client, **kw)
    _same_attributions(a, b)
    n_rows = pl.read_parquet(b / "attributions.parquet").height
    assert 0 < n_rows < N
    _no_leftovers(tmp_path)


def test_spill_maps_arrays_back(tmp_path):
    from gexplain.metrics._pg import plan_chunks

    big = np.arange(12.0).reshape(4, 3)
    obj = {"x": big, "t": np.array([3, 1], np.int64), "s": "text", "f": plan_chunks}
    back = gd.load_spilled(gd.spill(obj, tmp_path / "sp"))
    np.testing.assert_array_equal(back["x"], big)
    assert back["x"].flags.writeable and back["s"] == "text" and back["f"] is plan_chunks
    assert (tmp_path / "sp" / "0.buf").read_bytes() == big.tobytes()  # arrays stay out of band


def test_evaluate_on_cluster_same_numbers(client, stored, tmp_path, cli):
    from gexplain.metrics import evaluate

    cohort_dir, model_path, _ = stored
    attr = explain_cohort(model_path, cohort_dir, tmp_path / "attr", quiet=True)
    kw = {"metrics": "pg", "block": 2, "random_draws": 4, "chunk_size": 2, "all_samples": True}
    a = evaluate(cohort_dir, model_path, attr, out=tmp_path / "m-local", **kw)
    b = evaluate(cohort_dir, model_path, attr, out=tmp_path / "m-api", scheduler=client, **kw)
    assert a.scores.height > 0 and a.scores.equals(b.scores) and a.curves.equals(b.curves)
    args = ["--metrics=pg", "--block=2", "--random-draws=4", "--chunk-size=2", "--all-samples"]
    res = cli.invoke(
        main,
        [
            "evaluate",
            str(cohort_dir),
            f"--models={model_path}",
            f"--attributions={attr}",
            *args,
            f"--scheduler={client.scheduler.address}",
            f"--out={tmp_path / 'm-dask'}",
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    for name in ("metrics.parquet", "curves.parquet"):
        assert pl.read_parquet(tmp_path / "m-local" / name).equals(
            pl.read_parquet(tmp_path / "m-dask" / name)
        )
    _no_leftovers(tmp_path)


# ----------------------------------------------------------------------------- faults


class _SlowChunks(distributed.WorkerPlugin):
    """On every worker (restarted ones too): log each chunk start, then make it slow."""

    name = "gexplain-slow-chunks"

    def __init__(self, log: str, delay: float) -> None:
        self.log, self.delay = log, delay

    def setup(self, worker):
        from gexplain.explain import _run

        self._real = real = _run.explain_chunk
        log, delay = self.log, self.delay

        def slow(*args, **kw):
            with open(log, "a") as f:
                f.write(f"{os.getpid()} {int(args[2][0])}\n")
            time.sleep(delay)
            return real(*args, **kw)

        _run.explain_chunk = slow

    def teardown(self, worker):
        from gexplain.explain import _run

        _run.explain_chunk = self._real


@pytest.fixture
def slow_chunks(client, tmp_path):
    import cloudpickle

    this = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(this)
    log = tmp_path / "begun.txt"
    log.touch()
    client.register_plugin(_SlowChunks(str(log), 0.4))
    try:
        yield log
    finally:
        client.unregister_worker_plugin(_SlowChunks.name)
        cloudpickle.unregister_pickle_by_value(this)


def _begun(log: Path) -> list[tuple[int, int]]:
    return [tuple(map(int, line.split())) for line in log.read_text().splitlines()]


def test_worker_killed_mid_run_costs_only_its_chunk(client, stored, tmp_path, slow_chunks):
    cohort_dir, model_path, _ = stored
    local = explain_cohort(model_path, cohort_dir, tmp_path / "local", chunk_size=4, quiet=True)
    n_chunks = N // 4
    out, partial = tmp_path / "dask", tmp_path / ".dask.partial"
    errors: list[BaseException] = []

    def drive():
        try:
            explain_cohort(model_path, cohort_dir, out, chunk_size=4, scheduler=client, quiet=True)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    pids = set(client.run(os.getpid).values())
    driver = threading.Thread(target=drive)
    driver.start()
    # wait until a worker is inside a chunk that is not finished, then kill that worker
    victim, lost, deadline = None, None, time.monotonic() + 60
    while victim is None and time.monotonic() < deadline:
        begun = _begun(slow_chunks)  # read before the finished chunks: no race
        done = set(os.listdir(partial)) if partial.exists() else set()
        for pid, start in begun:
            if pid in pids and f"chunk-{start // 4:06d}" not in done:
                victim, lost = pid, start
                break
        time.sleep(0.02)
    assert victim is not None, "no chunk in flight"
    os.kill(victim, signal.SIGKILL)
    driver.join(120)
    assert not driver.is_alive() and not errors
    _same_attributions(local, out)
    begun = [start for _, start in _begun(slow_chunks)]
    # every chunk ran, and only the one on the killed worker ran twice
    assert sorted(set(begun)) == list(range(0, N, 4))
    assert len(begun) == n_chunks + 1 and begun.count(lost) == 2, (lost, begun)
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it


def test_driver_killed_rerun_skips_finished_chunks(
    client, stored, tmp_path, monkeypatch, caplog, slow_chunks
):
    cohort_dir, model_path, _ = stored
    _die_after(monkeypatch, 3)  # the driver dies after its 3rd finished chunk
    kw = {"chunk_size": 4, "top_k": 2, "quiet": True}
    with pytest.raises(_Interrupt):
        explain_cohort(model_path, cohort_dir, tmp_path / "attr", scheduler=client, **kw)
    monkeypatch.undo()
    assert not (tmp_path / "attr").exists()
    # chunks already running when the driver died still finish (a thread cannot be stopped)
    partial = tmp_path / ".attr.partial"
    deadline, stable = time.monotonic() + 30, 0
    while stable < 5 and time.monotonic() < deadline:
        begun = {start for _, start in _begun(slow_chunks)}
        finished = {int(p.name[6:]) * 4 for p in partial.glob("chunk-*")}
        stable = stable + 1 if begun <= finished else 0
        time.sleep(0.1)
    assert 3 <= len(finished) < N // 4, finished
    n_begun = len(_begun(slow_chunks))
    with caplog.at_level("INFO", logger="gexplain.explain"):
        explain_cohort(model_path, cohort_dir, tmp_path / "attr", scheduler=client, **kw)
    assert f"{len(finished)} of {N // 4} chunks already done" in caplog.text
    # the rerun computed exactly the missing chunks
    assert len(_begun(slow_chunks)) - n_begun == N // 4 - len(finished)
    assert not partial.exists()
    local = explain_cohort(model_path, cohort_dir, tmp_path / "local", **kw)
    _same_attributions(local, tmp_path / "attr")
