"""Training benchmark: the paper's recipe on SIMU1/SIMU2, 10 seeds, accuracy and wall time.

Reproduction target (Bontonou et al. 2023, balanced test accuracy):
SIMU1 LR 99.8, MLP 99.9; SIMU2 LR 99.6, MLP 99.6.

For each preset the cohort is simulated once (``gexplain.simulate``, cached in
``--work``), then ``gexplain.models.train_models`` trains every (model, seed)
with the paper's recipe and we report mean ± sd balanced test accuracy and the
wall time. The anchor, timed in the same run on the same data, is a plain
PyTorch loop as one would write it from the paper (``TensorDataset`` +
``DataLoader(shuffle=True)``, ``nn.Dropout``, default SGD, torch's default
threads), one epoch per architecture including the same per-epoch evaluation;
the ratio printed is anchor time / gexplain time for one epoch.

Usage::

    python benchmarks/bench_train.py                 # SIMU1 + SIMU2, 4 kinds, 10 seeds, 2 workers
    python benchmarks/bench_train.py --quick         # demo preset, 2 seeds
    python benchmarks/bench_train.py --synthetic     # no simulator: random data of SIMU shape (timing only)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

PAPER = {
    ("simu1", "lr"): 99.8,
    ("simu1", "mlp"): 99.9,
    ("simu2", "lr"): 99.6,
    ("simu2", "mlp"): 99.6,
}


def synthetic_cohort(n: int, g: int, c: int, seed: int = 0):
    """Random class-shifted data with a 60/40 split (timing only)."""
    from gexplain import Cohort

    r = np.random.default_rng(seed)
    y = np.arange(n) % c
    x = r.gamma(2.0, 1.0, size=(n, g)).astype(np.float32)
    for k in range(c):
        x[y == k, 37 * k : 37 * k + 37] += 1.0
    split = np.where(r.random(n) < 0.6, "train", "test")
    samples = {
        "sample_id": [f"S{i}" for i in range(n)],
        "label": [f"c{k}" for k in y],
        "split": split,
    }
    return Cohort(x, samples, [f"G{j}" for j in range(g)])


def get_cohort(preset: str, work: Path, synthetic: bool):
    from gexplain import Cohort

    path = work / f"cohort-{preset}{'-synthetic' if synthetic else ''}"
    if path.exists():
        return Cohort.load(path), 0.0
    t0 = time.perf_counter()
    if synthetic:
        shape = {"demo": (600, 1000, 6)}.get(preset, (9900, 15000, 33))
        cohort = synthetic_cohort(*shape)
    else:
        import gexplain.simulate as sim

        sim.simulate_to_disk(path, preset, seed=0, quiet=True)
        return Cohort.load(path), time.perf_counter() - t0
    cohort.save(path)
    return Cohort.load(path), time.perf_counter() - t0


def anchor_epoch(base: str, x_tr, y_tr, x_te, y_te, n_classes: int) -> float:
    """One epoch of a plain PyTorch DataLoader loop (+ evaluation), default threads."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    g = x_tr.shape[1]
    if base == "lr":
        model = nn.Sequential(nn.Dropout(0.2), nn.Linear(g, n_classes))
    else:
        model = nn.Sequential(
            nn.Linear(g, 20), nn.BatchNorm1d(20), nn.ReLU(), nn.Linear(20, n_classes)
        )
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    xt = torch.from_numpy(np.ascontiguousarray(x_tr))
    yt = torch.from_numpy(y_tr.astype(np.int64))
    loader = DataLoader(TensorDataset(xt, yt), batch_size=32, shuffle=True, drop_last=base == "mlp")
    t0 = time.perf_counter()
    model.train()
    for xb, yb in loader:
        loss = nn.functional.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        model(xt).argmax(1)
        model(torch.from_numpy(np.ascontiguousarray(x_te))).argmax(1)
    return time.perf_counter() - t0


def ours_epoch(base: str, x_tr, y_tr, x_te, y_te, n_classes: int) -> float:
    from gexplain.models._torch import fit_module

    t0 = time.perf_counter()
    fit_module(base, x_tr, y_tr, n_classes, seed=0, x_test=x_te, y_test=y_te, epochs=1)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="demo preset, 2 seeds")
    ap.add_argument("--synthetic", action="store_true", help="random data instead of the simulator")
    ap.add_argument("--presets", default=None, help="comma list (default simu1,simu2)")
    ap.add_argument("--models", default="lr,mlp,diffuse-lr,diffuse-mlp")
    ap.add_argument("--seeds", default=None, help="e.g. 0-9 (default 0-9, quick 0-1)")
    ap.add_argument("--threads", type=int, default=2, help="models trained at once")
    ap.add_argument("--work", type=Path, default=Path("benchmarks/out/train"))
    ap.add_argument("--anchor-repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--skip-training", action="store_true", help="only the epoch and graph timings")
    args = ap.parse_args()

    from gexplain.cli._common import parse_int_list
    from gexplain.models import TrainingData, train_models

    presets = (args.presets or ("demo" if args.quick else "simu1,simu2")).split(",")
    seeds = parse_int_list(args.seeds or ("0-1" if args.quick else "0-9"))
    args.work.mkdir(parents=True, exist_ok=True)
    results = []
    for preset in presets:
        cohort, t_sim = get_cohort(preset, args.work, args.synthetic)
        print(
            f"\n== {preset}: {cohort} (simulated in {t_sim:.0f} s)"
            if t_sim
            else f"\n== {preset}: {cohort}"
        )
        # anchor vs ours, one epoch each, same data, interleaved, medians
        data = TrainingData(cohort)
        for base in ("lr", "mlp"):
            a, o = [], []
            for _ in range(args.anchor_repeats):
                a.append(
                    anchor_epoch(
                        base, data.x_train, data.y_train, data.x_test, data.y_test, data.n_classes
                    )
                )
                o.append(
                    ours_epoch(
                        base, data.x_train, data.y_train, data.x_test, data.y_test, data.n_classes
                    )
                )
            ma, mo = statistics.median(a), statistics.median(o)
            print(
                f"  one epoch {base}: plain torch DataLoader loop {ma:.2f} s, gexplain {mo:.2f} s, "
                f"ratio {ma / mo:.2f}x (medians of {args.anchor_repeats})"
            )
            results.append(
                {"preset": preset, "what": f"epoch-{base}", "anchor_s": ma, "gexplain_s": mo}
            )
        # graph: blockwise sparse (gexplain) vs dense numpy corrcoef + threshold (anchor)
        t0 = time.perf_counter()
        graph = data.build_graph(0.5)
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        dense = np.corrcoef(data.x_train, rowvar=False)
        np.fill_diagonal(dense, 0.0)
        n_dense = int((dense > 0.5).sum())
        t_dense = time.perf_counter() - t0
        del dense
        print(
            f"  graph: {graph.adjacency.nnz // 2} edges; blockwise sparse {t_ours:.1f} s, "
            f"dense np.corrcoef {t_dense:.1f} s (G x G float64 in memory), ratio {t_dense / t_ours:.2f}x"
            + ("" if n_dense == graph.adjacency.nnz else f"  [dense kept {n_dense} entries]")
        )
        results.append(
            {"preset": preset, "what": "graph", "anchor_s": t_dense, "gexplain_s": t_ours}
        )
        del data, graph
        if args.skip_training:
            continue
        out = args.work / f"models-{preset}{'-synthetic' if args.synthetic else ''}"
        t0 = time.perf_counter()
        summary = train_models(
            cohort, args.models, seeds, out, threads=args.threads, quiet=True, overwrite=True
        )
        wall = time.perf_counter() - t0
        trained = summary.filter(summary["status"] == "trained")
        print(
            f"  train_models: {summary.height} models ({trained.height} trained) in {wall:.0f} s wall, {args.threads} workers"
        )
        for kind in args.models.split(","):
            rows = summary.filter(summary["model"] == kind)
            acc = [100 * v for v in rows["test_balanced_accuracy"].to_list()]
            secs = [v for v in rows["seconds"].to_list() if v is not None]
            mean = statistics.mean(acc)
            sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
            paper = PAPER.get((preset, kind))
            ref = f" (paper {paper})" if paper else ""
            med = statistics.median(secs) if secs else float("nan")
            print(
                f"  {kind:12s} balanced test accuracy {mean:6.2f} ± {sd:.2f}{ref}; median {med:.0f} s per model"
            )
            results.append(
                {
                    "preset": preset,
                    "model": kind,
                    "mean": mean,
                    "sd": sd,
                    "n": len(acc),
                    "median_s": med,
                    "paper": paper,
                }
            )
        results.append(
            {
                "preset": preset,
                "what": "train_models_wall_s",
                "value": wall,
                "threads": args.threads,
            }
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
