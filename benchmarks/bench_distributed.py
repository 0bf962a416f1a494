"""Explain on Dask: a 2-worker LocalCluster against the single-process run, and a projection.

Usage::

    python benchmarks/bench_distributed.py                 # SIMU1, full size
    python benchmarks/bench_distributed.py --quick         # 990 × 15000, a smoke test
    python benchmarks/bench_distributed.py --work /tmp/h4bench --repeats 3

What it does:

1. Prepares (once, cached in ``--work``) the SIMU1 cohort (9900 × 15000,
   ``gexplain.simulate`` preset ``simu1``, seed 0, log2(x+1), stored as a
   cohort folder) and the paper's MLP 15000→20→BN→ReLU→33 trained for one epoch
   with the paper's SGD settings (torch), exported to ONNX with the training
   z-scoring in front (folded by the compiler).
2. Single process (2 Numba/BLAS threads): ``explain_cohort`` of every sample,
   exact IG of the true class's probability from the model-zero baseline,
   written to disk; a warm-up run, then ``--repeats`` timed runs.
3. The same on a LocalCluster of 2 worker processes × 1 thread (``local:2``):
   the cluster is started once (its start is timed apart), a warm-up run, then
   timed runs; per-task compute times and the idle gaps between tasks come from
   Dask's task stream. One end-to-end ``scheduler="local:2"`` run (cluster
   start included) is timed too. Outputs are checked byte for byte.
4. Both at the default chunk size (~894 samples here) and at 100 samples per
   chunk (99 chunks: the granularity a 100-worker projection needs).
5. Projection for W = 2, 10, 100 workers (:func:`project`) from the measured
   per-chunk compute time ``c``, the per-task overhead ``o`` (median idle gap
   between tasks on a worker), the driver's fixed cost ``F`` (prepare + commit),
   an assumed shared-storage bandwidth ``B`` (each sample reads its G float32
   and writes G float32) and an assumed scheduler cost of 1 ms per task.
   ``--project LOG`` recomputes it from a saved run's output.

Prints a JSON summary (``RESULT {...}``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
THREADS = "2"
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(var, THREADS)


def prepare(work: Path, quick: bool) -> None:
    """SIMU1 cohort (log2) and a one-epoch paper MLP, cached in ``work``."""
    if (work / "mlp.onnx").exists() and (work / "cohort").is_dir():
        return
    import numpy as np
    import onnx
    import torch

    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(HERE.parent / "tests"))
    from bench_ig import _paper_modules
    from explain_helpers import torch_export

    from gexplain.cohort import Cohort
    from gexplain.modelmeta import ModelMetadata, write_metadata
    from gexplain.simulate import simulate

    work.mkdir(parents=True, exist_ok=True)
    if quick:
        sim = simulate("simu1", seed=0, samples_per_class=30, informative_pathways=8)
    else:
        sim = simulate("simu1", seed=0)
    x = np.log2(np.asarray(sim.expression, dtype=np.float32) + 1.0)
    classes = sim.classes
    labels = np.array([classes.index(v) for v in sim.labels.to_list()])
    split = sim.samples["split"].to_numpy()
    cohort = Cohort(
        x,
        {"sample_id": sim.sample_ids, "label": sim.labels.to_list(), "split": split},
        sim.gene_ids,
        {"units": "log2(per-million + 1), simulate('simu1', seed=0)"},
    )
    cohort.save(work / "cohort", overwrite=True)
    G, C = x.shape[1], len(classes)
    train = split == "train"
    mean, std = x[train].mean(0), x[train].std(0) + 1e-6
    make_mlp, _ = _paper_modules(G, C)
    torch.manual_seed(0)
    torch.set_num_threads(2)
    model = make_mlp(mean, std)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    xt, yt = torch.from_numpy(x[train]), torch.from_numpy(labels[train])
    model.train()
    perm = torch.randperm(xt.shape[0])
    for s in range(0, xt.shape[0], 32):
        b = perm[s : s + 32]
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xt[b]), yt[b]).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(torch.from_numpy(x[~train])).argmax(1).numpy() == labels[~train]).mean())
    proto = torch_export(model, G)
    write_metadata(
        proto, ModelMetadata(model_kind="mlp", seed=0, class_names=classes, gene_ids=sim.gene_ids)
    )
    onnx.save(proto, work / "mlp.onnx")
    (work / "model.json").write_text(json.dumps({"test_accuracy": acc, "epochs": 1}))
    print(f"prepared {x.shape}, MLP test accuracy {acc:.3f}", file=sys.stderr)


def _timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def _stream_stats(records: list[dict]) -> dict:
    """Per-task compute times and idle gaps between consecutive tasks of a worker."""
    spans: dict[str, list[tuple[float, float]]] = {}
    for r in records:
        for ss in r["startstops"]:
            if ss["action"] == "compute":
                spans.setdefault(r["worker"], []).append((ss["start"], ss["stop"]))
    compute, gaps = [], []
    for s in spans.values():
        s.sort()
        compute += [b - a for a, b in s]
        gaps += [s[i + 1][0] - s[i][1] for i in range(len(s) - 1)]
    return {
        "tasks": len(compute),
        "compute_median": statistics.median(compute),
        "compute_sum": sum(compute),
        "gap_median": statistics.median(gaps) if gaps else 0.0,
        "workers": len(spans),
    }


def run(work: Path, repeats: int, chunk_sizes: list[int | None]) -> dict:
    import numba
    from distributed import Client, LocalCluster, get_task_stream

    from gexplain.cohort import Cohort
    from gexplain.explain import explain_cohort

    cohort_dir, model = work / "cohort", work / "mlp.onnx"
    N, G = Cohort.load(cohort_dir).shape
    out = work / "out"
    results: dict = {"N": N, "G": G, "numba_threads_single": numba.get_num_threads()}

    def explain(name: str, chunk: int | None, scheduler=None) -> Path:
        path = out / name
        shutil.rmtree(path, ignore_errors=True)
        return explain_cohort(
            model, cohort_dir, path, chunk_size=chunk, quiet=True, scheduler=scheduler
        )

    out.mkdir(parents=True, exist_ok=True)
    for chunk in chunk_sizes:
        tag = str(chunk or "auto")
        explain(f"single-{tag}", chunk)  # warm-up: kernels, page cache
        results[f"single_{tag}"] = _timed(lambda c=chunk, t=tag: explain(f"single-{t}", c), repeats)
        results[f"fixed_{tag}"] = _fixed_cost(model, cohort_dir, out, tag, chunk)

    t = time.perf_counter()
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        results["cluster_start"] = time.perf_counter() - t
        for chunk in chunk_sizes:
            tag = str(chunk or "auto")
            explain(f"dask-{tag}", chunk, client)  # warm-up: imports and kernels in workers
            times, streams = [], []
            for _ in range(repeats):
                with get_task_stream(client) as ts:
                    t = time.perf_counter()
                    explain(f"dask-{tag}", chunk, client)
                    times.append(time.perf_counter() - t)
                streams.append(_stream_stats(ts.data))
            results[f"dask_{tag}"] = times
            results[f"stream_{tag}"] = streams
            for f in ("attributions.arrow", "attributions.parquet"):
                a = (out / f"single-{tag}" / f).read_bytes()
                b = (out / f"dask-{tag}" / f).read_bytes()
                if f.endswith(".arrow"):
                    assert a == b, f"{f} differs ({tag})"
            results[f"identical_{tag}"] = True
    t = time.perf_counter()
    explain("dask-e2e", None, "local:2")
    results["e2e_local2"] = time.perf_counter() - t
    return results


def _fixed_cost(model: Path, cohort_dir: Path, out: Path, tag: str, chunk: int | None) -> float:
    """Driver time of a run with no chunk to compute: prepare, check the parts, commit."""
    from gexplain.explain import _run as run_mod
    from gexplain.explain import explain_cohort

    target = out / f"fixed-{tag}"
    shutil.rmtree(target, ignore_errors=True)

    def interrupt_before_commit(*args, **kw):
        raise KeyboardInterrupt

    # compute every chunk but stop before the commit; then time the resumed run
    run_mod._commit, saved = interrupt_before_commit, run_mod._commit
    try:
        explain_cohort(model, cohort_dir, target, chunk_size=chunk, quiet=True)
    except KeyboardInterrupt:
        pass
    finally:
        run_mod._commit = saved
    t = time.perf_counter()
    explain_cohort(model, cohort_dir, target, chunk_size=chunk, quiet=True)
    return time.perf_counter() - t


#: Scheduler cost per task assumed by the projection (Dask's documented order of magnitude:
#: "around 1 ms of overhead per task"), i.e. at most ~1000 tasks/s whatever the worker count.
SCHEDULER_S_PER_TASK = 1e-3


def project(results: dict, chunk_sizes: list[int | None], bandwidths: list[float]) -> dict:
    """Projected wall time and throughput on W single-threaded workers.

    ``T(W) = F + max(ceil(n_chunks / W) · (c + o), N · b / B, n_chunks · s)`` and, for a
    cohort large enough to keep every worker busy, ``throughput = min(W · size / (c + o),
    B / b, size / s)``: ``c`` the median per-chunk compute time on a one-thread worker,
    ``o`` the median idle gap between two tasks of a worker (scheduling, result
    hand-off), ``F`` the driver's fixed cost (prepare + commit), ``b`` the bytes a
    sample moves through shared storage (its row read, its attribution row written),
    ``B`` the aggregate shared-storage bandwidth, ``s`` the scheduler's time per task.
    """
    from gexplain.explain._run import auto_chunk_size

    N, G = results["N"], results["G"]
    bytes_per_sample = 2 * 4 * G  # read the sample's row, write its attribution row
    proj: dict = {}
    for chunk in chunk_sizes:
        tag = str(chunk or "auto")
        size = chunk or auto_chunk_size(G, 1)
        n_chunks = math.ceil(N / size)
        s = results[f"stream_{tag}"]
        c = statistics.median(x["compute_median"] for x in s)
        o = statistics.median(x["gap_median"] for x in s)
        F = results[f"fixed_{tag}"]
        rows = {}
        for W in (2, 10, 100):
            for B in bandwidths:
                compute = math.ceil(n_chunks / W) * (c + o)
                io = N * bytes_per_sample / B
                sched = n_chunks * SCHEDULER_S_PER_TASK
                total = F + max(compute, io, sched)
                steady = min(W * size / (c + o), B / bytes_per_sample, size / SCHEDULER_S_PER_TASK)
                rows[f"W={W},B={B / 1e9:g}GB/s"] = {
                    "simu1_seconds": total,
                    "simu1_samples_per_s": N / total,
                    "steady_samples_per_s": steady,
                }
        proj[tag] = {"chunk": size, "n_chunks": n_chunks, "c": c, "o": o, "F": F, "rows": rows}
    return proj


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=Path("/tmp/gexplain-bench-distributed"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--project", type=Path, help="Recompute the projection from a saved log.")
    args = ap.parse_args()
    chunks: list[int | None] = [None, 100]
    if args.project:
        text = args.project.read_text()
        res = json.loads(text[text.index("RESULT ") + 7 :])
        print(json.dumps(project(res, chunks, [1e9, 10e9]), indent=1))
        return
    work = args.work / ("quick" if args.quick else "simu1")
    prepare(work, args.quick)
    res = run(work, args.repeats, chunks)
    res["projection"] = project(res, chunks, [1e9, 10e9])
    summary = {}
    for chunk in chunks:
        tag = str(chunk or "auto")
        single = statistics.median(res[f"single_{tag}"])
        dask = statistics.median(res[f"dask_{tag}"])
        summary[tag] = {"single": single, "dask": dask, "overhead": dask / single - 1}
    res["summary"] = summary
    print("RESULT " + json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
