"""Timings of the agreement, stability and keep/remove metrics at SIMU1 scale.

A random MLP of the paper's shape (G genes → 20 → BatchNorm → ReLU → C) and
random attributions stand in for a trained model: the metrics' cost does not
depend on the values. Keep/remove is compared in the same run with the
straightforward implementation (one full forward of the modified test matrix
per curve point and draw), timed on a few points and extrapolated to the
number of forwards the curves need.

    python benchmarks/bench_agreement.py [--genes 15000] [--classes 33] [--samples 3960]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--genes", type=int, default=15000)
    ap.add_argument("--classes", type=int, default=33)
    ap.add_argument("--samples", type=int, default=3960)
    ap.add_argument("--draws", type=int, default=100)
    ap.add_argument("--naive-points", type=int, default=6)
    a = ap.parse_args()
    from explain_helpers import gexplain_graph

    from gexplain.cohort import GroundTruth
    from gexplain.explain import CompiledModel
    from gexplain.metrics import (
        class_scores,
        feature_agreement,
        keep_remove_curves,
        openxai_agreement,
        stability,
    )
    from gexplain.metrics._keep_remove import log_grid

    rng = np.random.default_rng(0)
    g, c, n = a.genes, a.classes, a.samples
    ids = [f"g{j}" for j in range(g)]
    names = [f"c{i}" for i in range(c)]
    proto, _ = gexplain_graph(rng, g, c, hidden=(20,), class_names=names, gene_ids=ids)
    cm = CompiledModel.load(proto)
    x = (rng.normal(size=(n, g)) + cm.model_zero).astype(np.float32)
    y = np.arange(n) % c
    values = rng.normal(size=(n, g)).astype(np.float32)
    cls = np.array(names)[y]
    per = max(1, min(370, g // c))
    truth = GroundTruth.from_gene_sets(
        {nm: [f"g{j}" for j in range(per * i, per * i + per)] for i, nm in enumerate(names)}
    )

    def timed(label: str, fn):
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        print(f"{label}: {dt:.2f} s", flush=True)
        return out, dt

    # compile / load the Numba caches on a tiny case first
    feature_agreement(values[:3, :50], cls[:3], truth, ids[:50], random_draws=1)
    openxai_agreement(values[:2, :50], values[:2, :50], k=5)
    keep_remove_curves(cm, x[:3], y[:3], names, rng.normal(size=(c, g)), random_draws=1)

    timed(
        f"feature_agreement {n} x {g}, k_c = {per} (local + global, 10 random draws)",
        lambda: feature_agreement(values, cls, truth, ids, random_draws=10),
    )
    timed(
        f"openxai_agreement {n} x {g}, k = {per} (FA/RA/SA/SRA/RC/PRA)",
        lambda: openxai_agreement(values, values[::-1], k=per),
    )
    _, s = class_scores(np.abs(values), cls)
    runs = {
        (kind, seed): (names, s + 0.1 * np.random.default_rng(seed).normal(size=s.shape))
        for kind in ("lr", "mlp")
        for seed in range(10)
    }
    timed("stability, 2 kinds x 10 seeds (100 pairs x 33 classes)", lambda: stability(runs))
    _, t_kernel = timed(
        f"keep_remove_curves {n} x {g} ({a.draws} draws, union + per-class)",
        lambda: keep_remove_curves(cm, x, y, names, s, random_draws=a.draws),
    )
    # straightforward: one full forward of the modified test matrix per set
    base = cm.model_zero
    order = np.argsort(-s[0], kind="stable")
    t0 = time.perf_counter()
    for k in log_grid(g)[: a.naive_points]:
        xm = np.array(x, dtype=np.float64)
        xm[:, order[:k]] = base[order[:k]]
        cm.logits(xm).argmax(axis=1)
    t_point = (time.perf_counter() - t0) / a.naive_points
    sizes = len(log_grid(g))
    # union + per-class (per class: its own samples only, so one test matrix in all),
    # each: top, random and random-excluding-top sets; keep and remove
    n_forwards = 2 * 2 * sizes * (1 + 2 * a.draws)
    print(
        f"straightforward: {t_point:.3f} s per full forward of {n} x {g}; "
        f"{n_forwards} forwards -> ~{t_point * n_forwards:.0f} s; "
        f"kernel {t_kernel:.1f} s; ratio ~{t_point * n_forwards / t_kernel:.0f}x",
        flush=True,
    )


if __name__ == "__main__":
    main()
