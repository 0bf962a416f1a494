"""The report's figures, drawn with matplotlib's Agg canvas (no pyplot, no display).

Each function returns PNG bytes, or ``None`` when there is nothing to draw.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

# Okabe–Ito: distinguishable with colour-vision deficiencies
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
DPI = 110


def _mpl() -> Any:
    try:
        import matplotlib
    except ImportError:  # pragma: no cover - the plot extra
        from ..errors import GexplainError

        raise GexplainError("the report needs matplotlib: pip install 'gexplain[plot]'") from None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    matplotlib.rcParams.update(
        {
            "font.size": 9,
            "axes.titlesize": 10,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "legend.frameon": False,
        }
    )
    return Figure, FigureCanvasAgg


def _png(fig: Any, canvas_cls: Any) -> bytes:
    canvas_cls(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def _grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = min(max_cols, max(1, n))
    return math.ceil(n / cols), cols


def _mean_curve(frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, mean and sd across seeds of one curve (class average rows)."""
    g = (
        frame.group_by("x")
        .agg(pl.col("value").mean().alias("m"), pl.col("value").std().alias("s"))
        .sort("x")
    )
    s = g["s"].fill_null(0.0).to_numpy()
    return g["x"].to_numpy(), g["m"].to_numpy(), s


def prediction_gap_curves(curves: pl.DataFrame, models: Sequence[str]) -> bytes | None:
    """PGI / PGU / PGR deletion curves per model: the explained output vs fraction of genes removed."""
    f = curves.filter(pl.col("class").is_null() & pl.col("curve").is_in(["PGI", "PGU", "PGR"]))
    models = [m for m in models if f.filter(pl.col("model") == m).height]
    if not models:
        return None
    Figure, Canvas = _mpl()
    rows, cols = _grid(len(models))
    fig = Figure(figsize=(3.2 * cols, 2.6 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True)
    styles = {
        ("PGI", "local"): (PALETTE[3], "-", "PGI order, local (most important removed first)"),
        ("PGU", "local"): (PALETTE[0], "-", "PGU order, local (least important removed first)"),
        ("PGI", "global-mean"): (PALETTE[3], "--", "PGI order, global (class mean)"),
        ("PGU", "global-mean"): (PALETTE[0], "--", "PGU order, global (class mean)"),
        ("PGR", "random"): ("#777777", ":", "PGR: random order"),
    }
    handles: dict[str, Any] = {}
    for i, model in enumerate(models):
        ax = axes[i // cols][i % cols]
        m = f.filter(pl.col("model") == model)
        for (curve, variant), (color, ls, label) in styles.items():
            c = m.filter((pl.col("curve") == curve) & (pl.col("variant") == variant))
            if c.height == 0:
                continue
            x, mean, sd = _mean_curve(c)
            (line,) = ax.plot(x, mean, color=color, ls=ls, lw=1.6)
            ax.fill_between(x, mean - sd, mean + sd, color=color, alpha=0.15, lw=0)
            handles[label] = line
        ax.set_title(model)
        ax.set_xlabel("fraction of genes set to the baseline")
        if i % cols == 0:
            ax.set_ylabel("explained output f_y")
    for j in range(len(models), rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    fig.legend(
        list(handles.values()),
        list(handles),
        loc="outside lower center",
        ncols=min(3, len(handles)),
    )
    return _png(fig, Canvas)


def agreement_bars(metrics: pl.DataFrame, models: Sequence[str]) -> bytes | None:
    """Feature agreement (local, global, diffused-local, diffused-global) per model vs random."""
    variants = ["local", "global", "diffused-local", "diffused-global"]
    f = metrics.filter(pl.col("class").is_null() & (pl.col("metric") == "FA"))
    if f.height == 0:
        return None
    variants = [v for v in variants if f.filter(pl.col("variant") == v).height]
    models = [m for m in models if f.filter(pl.col("model") == m).height]
    if not models or not variants:
        return None
    Figure, Canvas = _mpl()
    fig = Figure(
        figsize=(max(5.0, 1.3 * len(models) * len(variants) / 2 + 2), 3.2), layout="constrained"
    )
    ax = fig.subplots()
    width = 0.8 / len(variants)
    x = np.arange(len(models))
    all_means: list[float] = []
    all_sds: list[float] = []
    for vi, variant in enumerate(variants):
        means, sds, rand = [], [], []
        for model in models:
            g = f.filter((pl.col("model") == model) & (pl.col("variant") == variant))
            s = g.filter(pl.col("control").is_null())["value"]
            r = g.filter(pl.col("control") == "random")["value"]
            means.append(s.mean() if s.len() else np.nan)
            sds.append(s.std() if s.len() > 1 else 0.0)
            rand.append(r.mean() if r.len() else np.nan)
        all_means += means
        all_sds += [0.0 if sd is None or not np.isfinite(sd) else sd for sd in sds]
        pos = x - 0.4 + width * (vi + 0.5)
        ax.bar(
            pos, means, width * 0.92, yerr=sds, color=PALETTE[vi], label=f"FA {variant}", capsize=2
        )
        ax.scatter(pos, rand, marker="_", s=160, color="black", zorder=3, linewidths=2)
    ax.scatter([], [], marker="_", s=160, color="black", linewidths=2, label="random attributions")
    ax.set_xticks(x, models)
    tops = [m + (s or 0) for m, s in zip(all_means, all_sds) if np.isfinite(m)]
    ax.set_ylim(0, max(1.02, max(tops, default=0) + 0.03))
    ax.set_ylabel("fraction of top-k genes that are true biomarkers")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return _png(fig, Canvas)


def jaccard_heatmap(
    stability: pl.DataFrame, models: Sequence[str], k: int | None = None
) -> tuple[bytes | None, int | None]:
    """Pairwise Jaccard@k of the class-average top-k gene sets of every (model, seed)."""
    f = stability.filter(pl.col("metric") == "jaccard@k")
    if "class" in f.columns and f["class"].null_count():
        f = f.filter(pl.col("class").is_null())  # class-average rows when stored
    # otherwise per-class rows: averaged over classes below
    if f.height == 0:
        return None, None
    if k is None:
        counts = f.group_by("k").len().sort(["len", "k"], descending=[True, False])
        k = int(counts["k"][0]) if counts["k"][0] is not None else None
    if k is not None:
        f = f.filter(pl.col("k") == k)
    order = {m: i for i, m in enumerate(models)}
    items = sorted(
        {(a, int(s)) for a, s in zip(f["model_a"], f["seed_a"])}
        | {(b, int(s)) for b, s in zip(f["model_b"], f["seed_b"])},
        key=lambda t: (order.get(t[0], len(order)), t[0], t[1]),
    )
    idx = {it: i for i, it in enumerate(items)}
    n = len(items)
    mat = np.full((n, n), np.nan)
    np.fill_diagonal(mat, 1.0)
    sums = f.group_by("model_a", "seed_a", "model_b", "seed_b").agg(pl.col("value").mean())
    for a, sa, b, sb, v in sums.iter_rows():
        i, j = idx[(a, int(sa))], idx[(b, int(sb))]
        mat[i, j] = mat[j, i] = v
    Figure, Canvas = _mpl()
    size = min(11.0, max(4.0, 0.32 * n + 2.5))
    fig = Figure(figsize=(size + 1.0, size), layout="constrained")
    ax = fig.subplots()
    ax.grid(False)
    im = ax.imshow(mat, vmin=0, vmax=1, cmap="viridis")
    labels = [f"{m} s{s}" for m, s in items]
    ax.set_xticks(range(n), labels, rotation=90, fontsize=7 if n > 16 else 8)
    ax.set_yticks(range(n), labels, fontsize=7 if n > 16 else 8)
    if n <= 16:
        for i in range(n):
            for j in range(n):
                if np.isfinite(mat[i, j]):
                    ax.text(
                        j,
                        i,
                        f"{mat[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if mat[i, j] < 0.6 else "black",
                    )
    # separate model blocks
    bounds = [i for i in range(1, n) if items[i][0] != items[i - 1][0]]
    for b in bounds:
        ax.axhline(b - 0.5, color="white", lw=1.5)
        ax.axvline(b - 0.5, color="white", lw=1.5)
    fig.colorbar(im, ax=ax, shrink=0.8, label=f"Jaccard@{k}" if k is not None else "Jaccard")
    return _png(fig, Canvas), k


def keep_remove_curves(curves: pl.DataFrame, models: Sequence[str]) -> bytes | None:
    """Balanced accuracy when keeping only / removing the top-k genes, vs random gene sets."""
    names = [
        "keep",
        "remove",
        "keep-random",
        "remove-random",
        "keep-random-excluding-top",
        "remove-random-excluding-top",
    ]
    f = curves.filter(pl.col("class").is_null() & pl.col("curve").is_in(names))
    # the per-class protocol (class c's top-k on class c's samples; the class average is
    # the balanced accuracy) when present, else the union of the classes' top-k
    variants = f["variant"].unique().to_list()
    variant = "per-class" if "per-class" in variants else ("union" if "union" in variants else None)
    if variant is not None:
        f = f.filter(pl.col("variant") == variant)
    models = [m for m in models if f.filter(pl.col("model") == m).height]
    if not models:
        return None
    Figure, Canvas = _mpl()
    rows, cols = _grid(len(models))
    fig = Figure(figsize=(3.2 * cols, 2.6 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True)
    styles = {
        "keep": (PALETTE[2], "-", "keep top-k by |IG|"),
        "keep-random": (PALETTE[2], ":", "keep k random genes"),
        "remove": (PALETTE[4], "-", "remove top-k by |IG|"),
        "remove-random": (PALETTE[4], ":", "remove k random genes"),
        "keep-random-excluding-top": (PALETTE[2], "-.", "keep k random genes outside the top"),
        "remove-random-excluding-top": (PALETTE[4], "-.", "remove k random genes outside the top"),
    }
    handles: dict[str, Any] = {}
    for i, model in enumerate(models):
        ax = axes[i // cols][i % cols]
        m = f.filter(pl.col("model") == model)
        for curve, (color, ls, label) in styles.items():
            c = m.filter(pl.col("curve") == curve)
            if c.height == 0:
                continue
            x, mean, sd = _mean_curve(c)
            ok = x > 0
            (line,) = ax.plot(x[ok], mean[ok], color=color, ls=ls, lw=1.6, marker=".", ms=3)
            ax.fill_between(x[ok], (mean - sd)[ok], (mean + sd)[ok], color=color, alpha=0.12, lw=0)
            handles[label] = line
        ax.set_xscale("log")
        ax.set_title(model)
        ax.set_xlabel("k (genes)")
        ax.set_ylim(-0.02, 1.02)
        if i % cols == 0:
            ax.set_ylabel("balanced accuracy")
    for j in range(len(models), rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=3)
    return _png(fig, Canvas)


def completeness_histogram(deltas: pl.DataFrame, models: Sequence[str]) -> bytes | None:
    """Distribution of log10 |completeness error| of IG per model."""
    models = [m for m in models if deltas.filter(pl.col("model") == m).height]
    if not models:
        return None
    Figure, Canvas = _mpl()
    fig = Figure(figsize=(6.4, 3.0), layout="constrained")
    ax = fig.subplots()
    floor = 1e-17
    data = []
    for model in models:
        d = np.abs(deltas.filter(pl.col("model") == model)["delta"].drop_nulls().to_numpy())
        data.append(np.log10(np.maximum(d, floor)))
    lo = min(float(np.min(d)) for d in data if d.size) if any(d.size for d in data) else -17
    hi = max(float(np.max(d)) for d in data if d.size) if any(d.size for d in data) else 0
    if hi - lo < 1:
        lo, hi = lo - 0.5, hi + 0.5
    bins = np.linspace(lo, hi, 41)
    for i, (model, d) in enumerate(zip(models, data)):
        ax.hist(d, bins=bins, histtype="step", lw=1.6, color=PALETTE[i % len(PALETTE)], label=model)
    ax.set_xlabel(
        "log10 |Σ attributions − (f(x) − f(baseline))|  (values below 1e-17 shown at −17)"
    )
    ax.set_ylabel("explained samples")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(fig, Canvas)
