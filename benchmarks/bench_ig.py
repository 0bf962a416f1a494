"""Integrated Gradients: gexplain (ONNX + Numba, torch-free) side by side with Captum 0.9.

Usage::

    python benchmarks/bench_ig.py            # full runs (several minutes)
    python benchmarks/bench_ig.py --quick    # smaller sizes, for a smoke test
    python benchmarks/bench_ig.py --parts 1,3
    python benchmarks/bench_ig.py --parts floor   # time of each unavoidable piece

Parts (each measurement runs in its own subprocess, 2 threads everywhere, so
that peak RSS is per method):

1. MLP 20000→256→64→33 (ReLU), N=256, 50-step Gauss–Legendre, target class 0
   probability, zero baseline. Goal: ≥ 50× faster than Captum, peak RSS ≤ ⅓.
2. The paper's MLP 15000→20→BN→ReLU→33 on the SIMU1 cohort (9900 samples,
   gexplain's LDA simulator, seed 0, log2(x+1); ``--quick`` uses small random
   data instead), exact IG of the true class's softmax probability from the
   model-zero (training-mean) baseline. Goal ≤ 10 s.
   Captum at the paper's 3000 Gauss–Legendre steps on a subset, extrapolated;
   completeness error distributions of both.
3. Logistic regression on the same cohort: closed form (exact) vs Captum 50
   steps. Goal ≥ 150×.

Also: cold (empty Numba cache) and warm CLI start times of ``gexplain explain``;
``--parts floor`` times the unavoidable pieces of parts 1 and 3 on their own.
Wall times and process CPU times (all threads) are both reported: on a shared,
loaded host the CPU-time ratio is the steadier of the two.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

THREADS = "2"
ENV = {
    **os.environ,
    "OMP_NUM_THREADS": THREADS,
    "OPENBLAS_NUM_THREADS": THREADS,
    "MKL_NUM_THREADS": THREADS,
    "NUMBA_NUM_THREADS": THREADS,
}


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _emit(obj: dict) -> None:
    obj["peak_rss_mb"] = _rss_mb()
    print("RESULT " + json.dumps(obj))


def _worker(name: str, work: Path, *extra: str, env: dict | None = None) -> dict:
    cmd = [sys.executable, __file__, "--worker", name, "--work", str(work), *extra]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env or ENV)
    if out.returncode != 0:
        sys.stderr.write(out.stdout + out.stderr)
        raise SystemExit(f"worker {name} failed")
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[7:])


def _quantiles(x) -> dict:
    import numpy as np

    x = np.abs(np.asarray(x, dtype=np.float64))
    return {q: float(np.quantile(x, p)) for q, p in (("median", 0.5), ("p99", 0.99), ("max", 1.0))}


# ----------------------------------------------------------------------------- preparation


def prep1(work: Path, quick: bool) -> None:
    import numpy as np
    import torch
    from torch import nn

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import onnx
    from explain_helpers import torch_export

    G = 2000 if quick else 20000
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(G, 256), nn.ReLU(), nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, 33)
    ).eval()
    onnx.save(torch_export(model, G), work / "mlp1.onnx")
    torch.save(model.state_dict(), work / "mlp1.pt")
    rng = np.random.default_rng(0)
    np.save(work / "x1.npy", rng.normal(size=(256, G)).astype(np.float32))
    _emit({"G": G})


def _paper_modules(G: int, C: int):
    import torch
    from torch import nn

    class Standardize(nn.Module):
        def __init__(self, mean, std):
            super().__init__()
            self.register_buffer("mean", torch.as_tensor(mean))
            self.register_buffer("std", torch.as_tensor(std))

        def forward(self, x):
            return (x - self.mean) / self.std

    def mlp(mean, std):
        return nn.Sequential(
            Standardize(mean, std),
            nn.Linear(G, 20),
            nn.BatchNorm1d(20),
            nn.ReLU(),
            nn.Linear(20, C),
        )

    def lr(mean, std):
        return nn.Sequential(Standardize(mean, std), nn.Dropout(0.2), nn.Linear(G, C))

    return mlp, lr


def prep2(work: Path, quick: bool) -> None:
    import numpy as np
    import onnx
    import polars as pl
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from explain_helpers import torch_export

    from gexplain.cohort import Cohort
    from gexplain.modelmeta import ModelMetadata, write_metadata

    if quick:
        G, C, per = 3000, 33, 30
        N = C * per
        rng = np.random.default_rng(1)
        labels = np.repeat(np.arange(C), per)
        base = rng.normal(5.0, 2.0, size=G).astype(np.float32)
        x = base + rng.normal(0.0, 1.0, size=(N, G)).astype(np.float32)
        genes_per_class = 74
        for c in range(C):
            idx = (np.arange(genes_per_class) + c * genes_per_class) % G
            rows = np.flatnonzero(labels == c)
            x[np.ix_(rows, idx)] += rng.normal(0.6, 0.2, size=genes_per_class).astype(np.float32)
        split = np.where(rng.random(N) < 0.6, "train", "test")
        gene_ids = [f"G{j:05d}" for j in range(G)]
        classes = [f"class{c:02d}" for c in range(C)]
        sample_ids = [f"S{i:05d}" for i in range(N)]
        units = "random SIMU1-shaped data"
    else:
        # the paper's SIMU1 cohort from gexplain's LDA simulator, log2(x + 1)
        from gexplain.simulate import simulate

        sim = simulate("simu1", seed=0)
        x = np.log2(np.asarray(sim.expression, dtype=np.float32) + 1.0)
        classes = sim.classes
        labels = np.array([classes.index(v) for v in sim.labels.to_list()])
        split = sim.samples["split"].to_numpy()
        gene_ids, sample_ids = sim.gene_ids, sim.sample_ids
        G, C, N = x.shape[1], len(classes), x.shape[0]
        units = "log2(per-million + 1), simulate('simu1', seed=0)"
    cohort = Cohort(
        x,
        {"sample_id": sample_ids, "label": [classes[c] for c in labels], "split": split},
        gene_ids,
        {"units": units},
    )
    cohort.save(work / "cohort", overwrite=True)
    cohort.select(samples=slice(0, 200)).save(work / "cohort_small", overwrite=True)
    train = split == "train"
    mean = x[train].mean(0)
    std = x[train].std(0) + 1e-6
    make_mlp, make_lr = _paper_modules(G, C)
    torch.manual_seed(0)
    torch.set_num_threads(2)
    xt = torch.from_numpy(x[train])
    yt = torch.from_numpy(labels[train])
    for name, make in (("mlp", make_mlp), ("lr", make_lr)):
        model = make(mean, std)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        model.train()
        for _ in range(3 if not quick else 2):
            perm = torch.randperm(xt.shape[0])
            for s in range(0, xt.shape[0], 32):
                b = perm[s : s + 32]
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(xt[b]), yt[b])
                loss.backward()
                opt.step()
        model.eval()
        with torch.no_grad():
            acc = float(
                (model(torch.from_numpy(x[~train])).argmax(1).numpy() == labels[~train]).mean()
            )
        proto = torch_export(model, G)
        write_metadata(
            proto,
            ModelMetadata(model_kind=name, seed=0, class_names=classes, gene_ids=gene_ids),
        )
        onnx.save(proto, work / f"{name}.onnx")
        torch.save(model.state_dict(), work / f"{name}.pt")
        print(f"{name}: test accuracy {acc:.3f}", file=sys.stderr)
    pl.DataFrame({"mean": mean}).write_parquet(work / "mean.parquet")
    _emit({"N": N, "G": G})


# ----------------------------------------------------------------------------- workers


def gx1(work: Path, repeats: int) -> None:
    import numpy as np

    from gexplain.explain import CompiledModel, integrated_gradients

    x = np.load(work / "x1.npy")
    model = CompiledModel.load(work / "mlp1.onnx")
    kw = dict(baseline="zeros", target=0, method="gausslegendre", steps=50, output="probability")
    integrated_gradients(model, x[:2], **kw)  # warm-up (kernels are cached on disk)
    times, cpu = [], []
    for _ in range(repeats):
        c = time.process_time()
        t = time.perf_counter()
        attr = integrated_gradients(model, x, **kw)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    np.save(work / "gx1_attr.npy", attr.values)
    _emit({"times": times, "cpu": cpu, "max_abs_delta": float(np.abs(attr.delta).max())})


def cap1(work: Path, repeats: int) -> None:
    import numpy as np
    import torch
    from captum.attr import IntegratedGradients
    from torch import nn

    torch.set_num_threads(2)
    x = torch.from_numpy(np.load(work / "x1.npy"))
    G = x.shape[1]
    model = nn.Sequential(
        nn.Linear(G, 256), nn.ReLU(), nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, 33)
    )
    model.load_state_dict(torch.load(work / "mlp1.pt"))
    model.eval()

    def fwd(inp):
        return torch.softmax(model(inp), dim=1)

    ig = IntegratedGradients(fwd)
    times, cpu = [], []
    for _ in range(repeats):
        c = time.process_time()
        t = time.perf_counter()
        attr, delta = ig.attribute(
            x,
            baselines=torch.zeros_like(x),
            target=0,
            n_steps=50,
            method="gausslegendre",
            return_convergence_delta=True,
        )
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    np.save(work / "cap1_attr.npy", attr.detach().numpy())
    _emit({"times": times, "cpu": cpu, "max_abs_delta": float(delta.abs().max())})


def gx2(work: Path, which: str, repeats: int) -> None:
    import numpy as np

    from gexplain.cohort import Cohort
    from gexplain.explain import CompiledModel, integrated_gradients

    cohort = Cohort.load(work / "cohort")
    model = CompiledModel.load(work / f"{which}.onnx")
    integrated_gradients(model, cohort.select(samples=slice(0, 4)))  # warm-up
    times, cpu = [], []
    for _ in range(repeats):
        c = time.process_time()
        t = time.perf_counter()
        attr = integrated_gradients(model, cohort)  # exact, label, probability, model-zero
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    gap = np.abs(attr.rows["f_x"] - attr.rows["f_baseline"]).to_numpy()
    rel = np.abs(attr.delta) / np.maximum(1.0, gap)
    segs = attr.rows["steps"].to_numpy()
    _emit(
        {
            "times": times,
            "cpu": cpu,
            "n": attr.n_rows,
            "delta": _quantiles(attr.delta),
            "rel_ok_1e-6": bool((rel <= 1e-6).all()),
            "segments_median": float(np.median(segs)),
            "segments_max": int(segs.max()),
            "accuracy": float(attr.rows["correct"].mean()),
        }
    )


def cap2(work: Path, which: str, steps: int, subset: int) -> None:
    import numpy as np
    import polars as pl
    import torch
    from captum.attr import IntegratedGradients

    from gexplain.cohort import Cohort

    torch.set_num_threads(2)
    cohort = Cohort.load(work / "cohort")
    G = cohort.n_genes
    classes = sorted(set(cohort.labels.to_list()))
    make_mlp, make_lr = _paper_modules(G, len(classes))
    mean = pl.read_parquet(work / "mean.parquet")["mean"].to_numpy()
    model = (make_mlp if which == "mlp" else make_lr)(mean, np.ones(G, np.float32))
    model.load_state_dict(torch.load(work / f"{which}.pt"))
    model.eval()
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(cohort.n_samples, size=subset, replace=False))
    x = torch.from_numpy(np.ascontiguousarray(cohort.expression[idx]))
    lab = cohort.labels.to_numpy()[idx]
    target = torch.tensor([classes.index(v) for v in lab])
    base = torch.from_numpy(np.broadcast_to(mean.astype(np.float32), x.shape).copy())

    def fwd(inp):
        return torch.softmax(model(inp), dim=1)

    ig = IntegratedGradients(fwd)
    batch = max(steps, 50 * 100)
    c = time.process_time()
    t = time.perf_counter()
    _attr, delta = ig.attribute(
        x,
        baselines=base,
        target=target,
        n_steps=steps,
        method="gausslegendre",
        internal_batch_size=batch,
        return_convergence_delta=True,
    )
    elapsed = time.perf_counter() - t
    elapsed_cpu = time.process_time() - c
    with torch.no_grad():
        gap = (fwd(x) - fwd(base)).gather(1, target[:, None])[:, 0].abs().numpy()
    d = delta.detach().double().numpy()
    _emit(
        {
            "time_subset": elapsed,
            "subset": subset,
            "per_sample": elapsed / subset,
            "cpu_per_sample": elapsed_cpu / subset,
            "delta": _quantiles(d),
            "rel_ok_1e-6": bool((np.abs(d) <= 1e-6 * np.maximum(1, gap)).all()),
            "rel_ok_1pct": bool((np.abs(d) <= 0.01).all()),
        }
    )


def floor(work: Path, part: str, repeats: int) -> None:
    """Time the unavoidable pieces of a part on its own (medians over ``repeats``).

    ``read_x``: one pass over the input (sum of every row); ``write_out``: allocate
    and fill the ``N × G`` float32 result; ``reference``: the float64 onnxruntime
    pass that gives ``f_x`` (and ``z``); ``pullback``: the float32 product
    ``Ḡ Wᵀ`` scaled by ``x − x'`` into a preallocated output; ``integral``: the
    path integral in the first layer's space; ``total``: the whole
    ``integrated_gradients`` call. Also the process CPU time of each.
    """
    import numpy as np

    from gexplain.explain import CompiledModel, integrated_gradients
    from gexplain.explain._ig import integrate, resolve_settings
    from gexplain.explain._linalg import pullback

    if str(part) == "1":
        x = np.load(work / "x1.npy")
        model = CompiledModel.load(work / "mlp1.onnx")
        xb = np.zeros((1, x.shape[1]))
        targets = np.zeros((x.shape[0], 1), np.int64)
        kw = dict(baseline="zeros", target=0, method="gausslegendre", steps=50)
        settings = resolve_settings(model, "gausslegendre", 50, "probability", 1e-3, 4096)
    else:
        from gexplain.cohort import Cohort

        cohort = Cohort.load(work / "cohort")
        model = CompiledModel.load(work / "lr.onnx")
        x = cohort.expression
        xb = model.model_zero[None].astype(np.float64)
        labels = cohort.labels.to_list()
        targets = np.array([[model.class_names.index(v)] for v in labels], dtype=np.int64)
        kw = {}
        settings = resolve_settings(model, None, None, "probability", 1e-3, 4096)
    n, g = x.shape
    integrated_gradients(model, x[:4], **kw)  # warm-up
    Z = model.ort_forward(x[:4], with_z=True)[1]
    Zb = model.ort_forward(xb, with_z=True)[1]
    if Z is None:
        Zb = model.first_layer(xb)
    gbar = None
    out = np.zeros((n, g), np.float32)
    bidx = np.zeros(n, np.int64)

    def read_x():
        for s in range(0, n, 1024):
            np.asarray(x[s : s + 1024]).sum(axis=1)

    def write_out():
        np.empty((n, g), np.float32).fill(1.0)

    def reference():
        nonlocal Z
        Z = model.ort_forward(x, with_z=True)[1]
        if Z is None:
            Z = model.first_layer(x)

    def integral():
        nonlocal gbar
        gbar = integrate(model, Z, Zb, bidx, targets, settings)[0]

    def pull():
        pullback(gbar[:, 0, :].astype(np.float32), model.weight32_t, x, xb, bidx, 1, out)

    def total():
        integrated_gradients(model, x, **kw)

    res = {}
    for name, fn in (
        ("read_x", read_x),
        ("write_out", write_out),
        ("reference", reference),
        ("integral", integral),
        ("pullback", pull),
        ("total", total),
    ):
        walls, cpus = [], []
        for _ in range(repeats):
            c = time.process_time()
            t = time.perf_counter()
            fn()
            walls.append(time.perf_counter() - t)
            cpus.append(time.process_time() - c)
        res[name] = {"wall": _median(walls), "cpu": _median(cpus)}
    _emit({"part": part, "n": n, "g": g, "x_mb": n * g * 4 / 2**20, "floor": res})


def cli_start(work: Path) -> None:
    exe = Path(sys.executable).with_name("gexplain")
    out = {}
    t = time.perf_counter()
    subprocess.run([str(exe), "--help"], check=True, capture_output=True, env=ENV)
    out["help"] = time.perf_counter() - t
    cache = Path(tempfile.mkdtemp(prefix="numba-cold-"))
    env = {**ENV, "NUMBA_CACHE_DIR": str(cache)}
    for label in ("cold", "warm", "warm2"):
        target = work / f"attr-{label}"
        t = time.perf_counter()
        subprocess.run(
            [
                str(exe),
                "explain",
                str(work / "cohort_small"),
                str(work / "mlp.onnx"),
                "--out",
                str(target),
                "--quiet",
                "--overwrite",
            ],
            check=True,
            capture_output=True,
            env=env,
        )
        out[label] = time.perf_counter() - t
    shutil.rmtree(cache, ignore_errors=True)
    _emit(out)


# ----------------------------------------------------------------------------- driver


def _median(xs):
    import statistics

    return statistics.median(xs)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--parts", default="1,2,3,cli")
    ap.add_argument("--work", default=None)
    ap.add_argument("--worker", default=None)
    ap.add_argument("args", nargs="*")
    a = ap.parse_args()
    if a.worker:
        work = Path(a.work)
        fn = globals()[a.worker]
        conv = [
            int(v) if v.isdigit() else (v == "quick" if v in ("quick", "full") else v)
            for v in a.args
        ]
        fn(work, *conv)
        return
    parts = a.parts.split(",")
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="bench-ig-"))
    work.mkdir(parents=True, exist_ok=True)
    mode = "quick" if a.quick else "full"
    report = {}
    print(f"work dir {work} ({mode}), {THREADS} threads")
    if "floor" in parts:
        for part in ("1", "3"):
            if part == "1" and not (work / "mlp1.onnx").exists():
                _worker("prep1", work, mode)
            if part == "3" and not (work / "lr.onnx").exists():
                report["prep2"] = _worker("prep2", work, mode)
            report[f"floor{part}"] = _worker("floor", work, part, "5")
            print(json.dumps({f"floor{part}": report[f"floor{part}"]}, indent=1))
    if "1" in parts:
        info = _worker("prep1", work, mode)
        r = 2 if a.quick else 5
        ours = _worker("gx1", work, str(r))
        theirs = _worker("cap1", work, "1" if a.quick else "3")
        import numpy as np

        A = np.load(work / "gx1_attr.npy").astype(np.float64)
        B = np.load(work / "cap1_attr.npy").astype(np.float64)
        rel = float((np.linalg.norm(A - B, axis=1) / np.linalg.norm(B, axis=1)).max())
        t_o, t_c = _median(ours["times"]), _median(theirs["times"])
        report["part1"] = {
            "G": info["G"],
            "gexplain_s": t_o,
            "captum_s": t_c,
            "speedup": t_c / t_o,
            "gexplain_cpu_s": _median(ours["cpu"]),
            "captum_cpu_s": _median(theirs["cpu"]),
            "cpu_speedup": _median(theirs["cpu"]) / _median(ours["cpu"]),
            "gexplain_rss_mb": ours["peak_rss_mb"],
            "captum_rss_mb": theirs["peak_rss_mb"],
            "rss_ratio": ours["peak_rss_mb"] / theirs["peak_rss_mb"],
            "max_rel_l2_vs_captum": rel,
            "gexplain_max_delta": ours["max_abs_delta"],
            "captum_max_delta": theirs["max_abs_delta"],
        }
        print(json.dumps({"part1": report["part1"]}, indent=1))
    if {"2", "3", "cli"} & set(parts):
        if not (work / "mlp.onnx").exists():
            report["prep2"] = _worker("prep2", work, mode)
    for part, which, steps, subset in (
        ("2", "mlp", 3000, 8 if a.quick else 24),
        ("3", "lr", 50, 200 if a.quick else 1000),
    ):
        if part not in parts:
            continue
        ours = _worker("gx2", work, which, "2" if a.quick else "3")
        theirs = _worker("cap2", work, which, str(steps), str(subset))
        t_o = _median(ours["times"])
        extrap = theirs["per_sample"] * ours["n"]
        report[f"part{part}"] = {
            "model": which,
            "n": ours["n"],
            "gexplain_s": t_o,
            "captum_steps": steps,
            "captum_subset": subset,
            "captum_subset_s": theirs["time_subset"],
            "captum_extrapolated_s": extrap,
            "speedup": extrap / t_o,
            "gexplain_cpu_s": _median(ours["cpu"]),
            "captum_cpu_extrapolated_s": theirs["cpu_per_sample"] * ours["n"],
            "cpu_speedup": theirs["cpu_per_sample"] * ours["n"] / _median(ours["cpu"]),
            "gexplain_rss_mb": ours["peak_rss_mb"],
            "captum_rss_mb": theirs["peak_rss_mb"],
            "gexplain_delta": ours["delta"],
            "gexplain_rel_ok_1e-6": ours["rel_ok_1e-6"],
            "captum_delta": theirs["delta"],
            "captum_rel_ok_1e-6": theirs["rel_ok_1e-6"],
            "captum_within_1pct": theirs["rel_ok_1pct"],
            "segments_median": ours["segments_median"],
            "segments_max": ours["segments_max"],
            "accuracy": ours["accuracy"],
        }
        print(json.dumps({f"part{part}": report[f"part{part}"]}, indent=1))
    if "cli" in parts:
        report["cli"] = _worker("cli_start", work)
        print(json.dumps({"cli": report["cli"]}, indent=1))
    (work / "report.json").write_text(json.dumps(report, indent=1))
    print(f"report: {work / 'report.json'}")


if __name__ == "__main__":
    main()
