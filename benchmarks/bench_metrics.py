"""Prediction-gap curves: the incremental first-layer kernel against batched full forwards.

Usage::

    python benchmarks/bench_metrics.py --work /tmp/bench-metrics            # SIMU1
    python benchmarks/bench_metrics.py --work /tmp/bench-metrics --quick    # small smoke run
    python benchmarks/bench_metrics.py --work DIR --evaluate 0,1            # + gexplain evaluate

Steps (2 threads everywhere):

1. Cohort and models with gexplain's own pipeline: ``simulate("simu1", seed=0)``
   (9900 × 15000, 33 classes), ``log2p1``, the paper's MLP (15000→20→BN→ReLU→33)
   and LR trained with ``gexplain.models`` for **3 epochs** (not 25: enough for
   ~all test samples to be classified correctly), exact IG of the true class's
   probability from the model-zero baseline (``explain_cohort``). Cached in ``--work``.
2. PG curves (g = 10, 1500 blocks) of the MLP for every correctly classified test
   sample: :func:`gexplain.metrics.prediction_gaps` with all of the paper's orders
   (local PGI/PGU, three global aggregations × PGI/PGU, 30 random orders = 38
   curves per sample), and the local PGI order alone.
3. The straightforward implementation in the same run: one forward of the whole
   model per block (numpy float32 ``X⁽ⁱ⁾ @ W`` batched over 64 samples, then the
   head), on a subset of samples for the local PGI order; its time per
   (sample, order) is extrapolated to the full set. Both curves are compared.
4. Optionally (``--evaluate SEEDS``): ``gexplain evaluate`` end to end for LR and
   MLP × the given seeds (each trained and explained like the seed-0 models).

Prints one JSON line per measurement (``RESULT {...}``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

THREADS = "2"
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = THREADS


def emit(obj: dict) -> None:
    print("RESULT " + json.dumps(obj), flush=True)


def prepare(work: Path, quick: bool, seeds: list[int]) -> None:
    """Cohort, models and attributions (skipped when already in ``work``)."""
    from gexplain.explain import explain_cohort
    from gexplain.models import TrainConfig, train_models
    from gexplain.preprocess import log2p1
    from gexplain.simulate import simulate

    cohort = work / "cohort"
    if not cohort.exists():
        t = time.perf_counter()
        if quick:
            sim = simulate("demo", seed=0)
        else:
            sim = simulate("simu1", seed=0)
        log2p1(sim).save(cohort)
        emit({"step": "simulate", "seconds": time.perf_counter() - t, "quick": quick})
    t = time.perf_counter()
    train_models(
        cohort,
        "mlp,lr",
        seeds,
        work / "models",
        config=TrainConfig(epochs=3, milestones=()),
        quiet=True,
    )
    emit({"step": "train (3 epochs)", "seeds": seeds, "seconds": time.perf_counter() - t})
    for m in sorted((work / "models").glob("*.onnx")):
        out = work / "attr" / m.stem
        if not out.exists():
            t = time.perf_counter()
            explain_cohort(m, cohort, out, quiet=True)
            emit({"step": f"explain {m.stem}", "seconds": time.perf_counter() - t})


def scored_rows(work: Path):
    """X, attributions, targets of the MLP's correctly classified test samples."""
    from gexplain.cohort import Cohort
    from gexplain.explain import Attributions, CompiledModel
    from gexplain.metrics._evaluate import ModelInput, select_rows

    cohort = Cohort.load(work / "cohort")
    path = work / "models" / "mlp-seed0.onnx"
    model = CompiledModel.load(path)
    prepared = model.prepare(cohort)
    attr = Attributions.load(work / "attr" / "mlp-seed0")
    inp = ModelInput(path, work / "attr" / "mlp-seed0")
    data = select_rows(model, prepared, attr, inp, split="test", all_samples=False)
    n_test = int((cohort.samples["split"] == "test").sum())
    return model, data, n_test


def reference_curves(model, X, orders, targets, block: int, batch: int = 64):
    """One full forward per block, batched over samples (numpy float32 first layer)."""
    import numpy as np

    from gexplain.explain._compiled import output_values

    W = model.weight.astype(np.float32)
    b = model.bias
    base = model.model_zero.astype(np.float32)
    n, G = X.shape
    N = G // block
    out = np.empty((n, N + 1))
    for s in range(0, n, batch):
        xb = np.array(X[s : s + batch], dtype=np.float32)
        ob = orders[s : s + batch]
        rows = np.arange(xb.shape[0])[:, None]
        tb = targets[s : s + batch]
        for i in range(N + 1):
            if i:
                cols = ob[:, (i - 1) * block : i * block]
                xb[rows, cols] = base[cols]
            z = (xb @ W).astype(np.float64) + b
            out[s : s + batch, i] = output_values(model.head.forward(z), tb, "probability")
    return out


def bench_pg(work: Path, subset: int) -> None:
    import numpy as np

    from gexplain.metrics import deletion_curves, prediction_gaps

    model, data, n_test = scored_rows(work)
    n, G = data.X.shape
    emit({"step": "scored rows", "n_correct_test": n, "n_test": n_test, "genes": G})
    # warm the kernels (compiled and cached)
    prediction_gaps(model, data.X[:2], data.values[:2], data.targets[:2], random_draws=1)
    t = time.perf_counter()
    res = prediction_gaps(
        model, data.X, data.values, data.targets, classes=data.classes, random_draws=30, seed=0
    )
    full = time.perf_counter() - t
    n_orders = 2 + 6 + 30
    emit(
        {
            "step": "gexplain prediction_gaps (38 curves/sample)",
            "samples": n,
            "seconds": full,
            "ms_per_sample_order": 1e3 * full / (n * n_orders),
            "PGI_local": res.score("PGI", "local"),
            "PGU_local": res.score("PGU", "local"),
            "PGR": res.score("PGR", "random"),
        }
    )
    order = np.argsort(-data.values.astype(np.float64), axis=1, kind="stable")
    t = time.perf_counter()
    kern = deletion_curves(model, data.X, order, data.targets, block=10)
    local = time.perf_counter() - t
    emit(
        {
            "step": "gexplain deletion_curves (local PGI order only)",
            "samples": n,
            "seconds": local,
            "ms_per_sample_order": 1e3 * local / n,
        }
    )
    m = min(subset, n)
    t = time.perf_counter()
    ref = reference_curves(model, data.X[:m], order[:m], data.targets[:m], 10)
    rt = time.perf_counter() - t
    per = rt / m
    emit(
        {
            "step": "reference: one full forward per block (numpy float32, batch 64)",
            "samples": m,
            "seconds": rt,
            "ms_per_sample_order": 1e3 * per,
            "extrapolated_seconds_local_PGI_all_samples": per * n,
            "extrapolated_seconds_38_curves_all_samples": per * n * n_orders,
            "max_abs_curve_difference": float(np.abs(ref - kern[:m]).max()),
            "speedup_vs_full_run": per * n * n_orders / full,
            "speedup_vs_local_only": per * n / local,
        }
    )


def bench_evaluate(work: Path, seeds: list[int], families: list[str]) -> None:
    import shutil

    models = work / "eval-models"
    attr = work / "eval-attr"
    for d in (models, attr):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
    for kind in ("lr", "mlp"):
        for s in seeds:
            stem = f"{kind}-seed{s}"
            os.symlink(work / "models" / f"{stem}.onnx", models / f"{stem}.onnx")
            os.symlink(work / "attr" / stem, attr / stem)
    for metrics in families:
        out = work / f"metrics-{metrics.replace(',', '-')}"
        cmd = [
            sys.executable, "-c", "from gexplain.cli import main; main()", "evaluate", str(work / "cohort"),
            "--models", str(models), "--attributions", str(attr), "--metrics", metrics,
            "--out", str(out), "--overwrite", "--json", "--quiet",
        ]  # fmt: skip
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        dt = time.perf_counter() - t
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            raise SystemExit("gexplain evaluate failed")
        summary = json.loads(proc.stdout)["summary"]
        head = [
            r
            for r in summary
            if (r["metric"], r["variant"]) in {("PGI", "local"), ("PGU", "local"), ("PGR", "random"), ("FA", "local")}
            or (r["metric"].startswith("openxai-PG") and r["variant"] == "auc")
        ]  # fmt: skip
        emit(
            {
                "step": f"gexplain evaluate --metrics {metrics}",
                "models": f"lr, mlp × seeds {seeds}",
                "seconds": dt,
                "headline": head,
            }
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--subset", type=int, default=64, help="samples of the reference run")
    ap.add_argument("--evaluate", default=None, help="seeds for gexplain evaluate, e.g. 0,1")
    ap.add_argument(
        "--evaluate-metrics",
        default="pg,fa,stability;openxai",
        help="metric families of each timed gexplain evaluate run, runs separated by ';'",
    )
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    seeds = [0] + (
        [int(s) for s in args.evaluate.split(",") if int(s) != 0] if args.evaluate else []
    )
    prepare(args.work, args.quick, sorted(set(seeds)))
    bench_pg(args.work, args.subset)
    if args.evaluate:
        bench_evaluate(args.work, sorted(set(seeds)), args.evaluate_metrics.split(";"))


if __name__ == "__main__":
    main()
