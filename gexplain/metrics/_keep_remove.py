"""Keep/remove accuracy curves: the paper's motivating figure.

How accurate is the model when it sees only the genes an explanation ranks
highest, or everything but them? Genes that are not kept (or are removed) are
set to the baseline (default: the model's zero input, the training mean when
z-scoring is folded in), and the balanced accuracy over the test samples is
recorded for a log grid of ``k`` (1, 2, 5, 10, 20, 50, … and ``G``). The gene
ranking of class ``c`` is its class-averaged score (pass, e.g., the class mean
of the L2-normalised ``|IG|`` from :func:`~gexplain.metrics.class_scores`;
higher = more important; ties broken by the lower gene index).

Two variants:

- ``union``: the set is the union over classes of each class's top-``k``
  genes, applied to every test sample; ``x`` is the number of genes in the
  union (it grows faster than ``k``); the value is the balanced accuracy.
- ``per-class``: for class ``c`` the set is class ``c``'s top-``k``, applied
  to the samples whose *true* label is ``c``, and the value is the recall of
  class ``c`` (the fraction of them still predicted ``c``). The set used for a
  sample depends on its label only through which class's recall it enters — it
  does not tell the model anything, since every input is the sample's own
  expression with the same genes kept for all samples of that class. Rows have
  ``class = c``; the ``class``-null row is the unweighted mean over classes
  (which equals the balanced accuracy of the per-class protocol).

Controls (``random_draws`` seeded draws; ``value`` is the mean over draws and
``sd`` their standard deviation): ``keep-random``/``remove-random`` use random
gene sets of the same size (the prefixes of one random permutation per draw,
so a draw's sets are nested), and ``keep-random-excluding-top`` /
``remove-random-excluding-top`` random sets of the same size drawn outside the
top set (defined while the top set holds at most half of the genes).

Cost: with ``z0 = xW + b`` and ``zb = x'W + b``, a set ``K`` moves the first
pre-activation by ``Σ_{j∈K}(x'_j − x_j)W_j``, so every curve is an incremental
walk in the first layer's space (:mod:`gexplain.kernels.keep_remove`), at most
``G·H`` per sample and order instead of one full forward per point.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from .._rng import SeedLike, generator
from ..errors import InputError
from ._result import CURVE_SCHEMA, MetricResult


def log_grid(n_genes: int) -> list[int]:
    """1, 2, 5, 10, 20, 50, … below ``n_genes``, then ``n_genes``.

    Examples
    --------
    >>> log_grid(120)
    [1, 2, 5, 10, 20, 50, 100, 120]
    """
    out: list[int] = []
    base = 1
    while True:
        for m in (1, 2, 5):
            if base * m >= n_genes:
                return [*out, n_genes]
            out.append(base * m)
        base *= 10


def _class_orders(scores: np.ndarray) -> np.ndarray:
    """Each class's genes by descending score (ties: lower index first): ``(C, G)`` int64."""
    from ..kernels.topk import topk_rows

    c, g = scores.shape
    return topk_rows(np.ascontiguousarray(scores, dtype=np.float64), np.full(c, g, np.int64))


def _union_order(orders: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Genes by the first rank at which they enter some class's top list.

    Returns the order and, per gene, its entry rank ``e_j = min_c rank_c(j)``;
    the union of the top-``k`` sets is ``{j : e_j < k}``, a prefix of the order
    (ties in ``e_j`` are ordered by class, then by gene index).
    """
    c, g = orders.shape
    ranks = np.empty((c, g), dtype=np.int64)
    rows = np.arange(c)[:, None]
    ranks[rows, orders] = np.arange(g)[None, :]
    entry = ranks.min(axis=0)
    first_class = ranks.argmin(axis=0)
    order = np.lexsort((np.arange(g), first_class, entry))
    return order, entry


def _resolve_baseline(cm: Any, baseline: Any) -> np.ndarray:
    if baseline is None or (isinstance(baseline, str) and baseline == "model-zero"):
        return np.asarray(cm.model_zero, dtype=np.float64)
    if isinstance(baseline, str):
        raise InputError(f"keep/remove baseline must be 'model-zero' or a vector, got {baseline!r}")
    b = np.asarray(baseline, dtype=np.float64)
    if b.shape != (cm.n_genes,):
        raise InputError(f"baseline has shape {b.shape}, expected ({cm.n_genes},)")
    return b


def _recalls(pred: np.ndarray, labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Recall of each class in ``classes`` over its rows: ``(len(classes), *pred.shape[1:])``."""
    out = np.empty((len(classes), *pred.shape[1:]))
    for i, c in enumerate(classes):
        rows = labels == c
        out[i] = (pred[rows] == c).mean(axis=0)
    return out


def _stats(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sd over axis 0 (sd 0 for a single draw)."""
    mean = draws.mean(axis=0)
    sd = draws.std(axis=0, ddof=1) if draws.shape[0] > 1 else np.zeros_like(mean)
    return mean, sd


def keep_remove_curves(
    model: Any,
    X: np.ndarray,
    labels_idx: np.ndarray,
    class_names: Sequence[str],
    scores: np.ndarray,
    *,
    ks: Sequence[int] | None = None,
    random_draws: int = 100,
    seed: SeedLike = 0,
    baseline: Any = None,
    variants: Sequence[str] = ("union", "per-class"),
) -> MetricResult:
    """Balanced accuracy when keeping only, or removing, each class's top-k genes.

    Parameters
    ----------
    model
        A :class:`~gexplain.explain.CompiledModel` or an ONNX path.
    X
        ``(n, G)`` test samples (all of them), in the model's gene order.
    labels_idx
        ``(n,)`` true class index of each row in the model's class order
        (``-1``: unlabelled, left out).
    class_names
        Names of the rows of ``scores`` (model class names).
    scores
        ``(C, G)`` per-class gene scores, higher = more important. A class whose
        row is not finite (no explained samples) is left out: its genes enter no
        union and it gets no per-class curve.
    ks
        Grid of ``k`` (default :func:`log_grid`).
    random_draws
        Random gene sets per size for the controls (0 disables them).
    seed
        Seed of the random sets.
    baseline
        ``None``/``"model-zero"`` or a ``(G,)`` vector.
    variants
        ``union`` and/or ``per-class``.

    Returns
    -------
    MetricResult
        Curves ``keep``, ``remove``, ``keep-random``, ``remove-random``,
        ``keep-random-excluding-top``, ``remove-random-excluding-top``; variants
        ``union`` (``x`` = genes in the union) and ``per-class`` (``x`` = k).
    """
    from ..explain import CompiledModel
    from ..kernels.keep_remove import excluding_predictions, prefix_predictions

    cm = CompiledModel.load(model)
    x = np.ascontiguousarray(X)
    if x.ndim != 2 or x.shape[1] != cm.n_genes:
        raise InputError(f"X must be (n, {cm.n_genes}), got {x.shape}")
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    labels = np.asarray(labels_idx, dtype=np.int64)
    if labels.shape != (x.shape[0],):
        raise InputError(f"{labels.shape[0]} labels for {x.shape[0]} rows")
    s = np.asarray(scores, dtype=np.float64)
    names = [str(c) for c in class_names]
    g = cm.n_genes
    if s.shape != (len(names), g):
        raise InputError(f"scores have shape {s.shape}, expected ({len(names)}, {g})")
    finite = np.isfinite(s).all(axis=1)
    if not finite.any():
        raise InputError("every class's scores hold non-finite values (no explained samples?)")
    # a class without explained samples (a NaN row) has no ranking: it is left out
    s = s[finite]
    names = [c for c, ok in zip(names, finite) if ok]
    lookup = {c: i for i, c in enumerate(cm.class_names)}
    missing = [c for c in names if c not in lookup]
    if missing:
        raise InputError(f"classes {missing} are not outputs of the model")
    model_idx = np.array([lookup[c] for c in names], dtype=np.int64)
    grid = sorted({min(int(k), g) for k in (log_grid(g) if ks is None else ks)})
    if not grid or grid[0] <= 0:
        raise InputError("every k must be positive")
    base = _resolve_baseline(cm, baseline)
    z0 = cm.first_layer(x)
    zb = np.ascontiguousarray(
        np.broadcast_to(base @ cm.weight + cm.bias, z0.shape), dtype=np.float64
    )
    head = cm.head
    args = (x, base, cm.weight, z0, zb, head.layers, head.params, head.n_acts)
    rng = generator(seed, "metrics.keep-remove")
    perms = np.stack([rng.permutation(g) for _ in range(random_draws)]) if random_draws else None
    class_orders = _class_orders(s)
    labelled = labels >= 0
    present = np.unique(labels[labelled])
    rows: list[dict[str, Any]] = []

    def add(cls: str | None, curve: str, variant: str, xs: Sequence[float], v, sd=None) -> None:
        for i, xv in enumerate(xs):
            if not np.isfinite(v[i]):
                continue
            rows.append(
                {
                    "class": cls,
                    "curve": curve,
                    "variant": variant,
                    "x": float(xv),
                    "value": float(v[i]),
                    "sd": None if sd is None else float(sd[i]),
                }
            )

    for variant in variants:
        if variant == "union":
            order, entry = _union_order(class_orders)
            sizes = np.array(sorted({int((entry < k).sum()) for k in grid}), dtype=np.int64)
            excl_rank = np.empty((1, g), dtype=np.int64)
            excl_rank[0, order] = np.arange(g)
            orders = np.concatenate([order[None, :], perms]) if perms is not None else order[None]
            row_group = np.where(labelled, 0, -1).astype(np.int64)
            group_orders = np.arange(orders.shape[0], dtype=np.int64)[None, :]
            keep, remove = prefix_predictions(*args, orders, row_group, group_orders, sizes[None])
            ex = None
            if perms is not None:
                ex = excluding_predictions(*args, perms, row_group, excl_rank, sizes[None])

            def bal(pred: np.ndarray) -> np.ndarray:
                return _recalls(pred[labelled], labels[labelled], present).mean(axis=0)

            for name, pred in (("keep", keep), ("remove", remove)):
                acc = bal(pred)  # (T, S)
                add(None, name, "union", sizes, acc[0])
                if perms is not None:
                    mean, sd = _stats(acc[1:])
                    add(None, f"{name}-random", "union", sizes, mean, sd)
            if ex is not None:
                for name, pred in zip(("keep", "remove"), ex):
                    acc = bal(pred)  # (D, S)
                    acc[:, sizes > g - sizes] = np.nan
                    mean, sd = _stats(acc)
                    add(None, f"{name}-random-excluding-top", "union", sizes, mean, sd)
        elif variant == "per-class":
            # group c: the rows whose true label is class c (of ``class_names``)
            group_of_model = np.full(max(cm.n_classes, 1), -1, dtype=np.int64)
            group_of_model[model_idx] = np.arange(len(names))
            row_group = np.where(labelled, group_of_model[np.where(labelled, labels, 0)], -1)
            sizes = np.array(grid, dtype=np.int64)
            n_groups = len(names)
            n_draws = 0 if perms is None else perms.shape[0]
            orders = class_orders if perms is None else np.concatenate([class_orders, perms])
            group_orders = np.empty((n_groups, 1 + n_draws), dtype=np.int64)
            group_orders[:, 0] = np.arange(n_groups)
            group_orders[:, 1:] = n_groups + np.arange(n_draws)[None, :]
            size_tab = np.broadcast_to(sizes, (n_groups, sizes.size)).copy()
            keep, remove = prefix_predictions(*args, orders, row_group, group_orders, size_tab)
            ex = None
            if perms is not None:
                ranks = np.empty((n_groups, g), dtype=np.int64)
                ranks[np.arange(n_groups)[:, None], class_orders] = np.arange(g)[None, :]
                ex = excluding_predictions(*args, perms, row_group, ranks, size_tab)
            per_group = [np.flatnonzero(row_group == c) for c in range(n_groups)]
            has_rows = [c for c in range(n_groups) if per_group[c].size]

            def recall(pred: np.ndarray, c: int, groups: list = per_group) -> np.ndarray:
                return (pred[groups[c]] == model_idx[c]).mean(axis=0)

            for name, pred in (("keep", keep), ("remove", remove)):
                per = np.stack([recall(pred, c) for c in has_rows])  # (C', T, S)
                for i, c in enumerate(has_rows):
                    add(names[c], name, "per-class", sizes, per[i, 0])
                add(None, name, "per-class", sizes, per[:, 0].mean(axis=0))
                if perms is not None:
                    draws = per[:, 1:]  # (C', D, S)
                    for i, c in enumerate(has_rows):
                        mean, sd = _stats(draws[i])
                        add(names[c], f"{name}-random", "per-class", sizes, mean, sd)
                    mean, sd = _stats(draws.mean(axis=0))
                    add(None, f"{name}-random", "per-class", sizes, mean, sd)
            if ex is not None:
                for name, pred in zip(("keep", "remove"), ex):
                    per = np.stack([recall(pred, c) for c in has_rows])  # (C', D, S)
                    per[:, :, sizes > g - sizes] = np.nan
                    for i, c in enumerate(has_rows):
                        mean, sd = _stats(per[i])
                        add(names[c], f"{name}-random-excluding-top", "per-class", sizes, mean, sd)
                    mean, sd = _stats(per.mean(axis=0))
                    add(None, f"{name}-random-excluding-top", "per-class", sizes, mean, sd)
        else:
            raise InputError(f"unknown keep/remove variant {variant!r}: use union or per-class")
    return MetricResult(curves=pl.DataFrame(rows, schema=CURVE_SCHEMA))
