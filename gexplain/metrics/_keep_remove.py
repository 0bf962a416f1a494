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
pre-activation by ``Σ_{j∈K}(x'_j − x_j)W_j``. Every curve point is a prefix of
a gene order (a class ranking, the union order, a random permutation) minus a
few genes (the top genes a random prefix contains, for the excluding-top
sets), so each sample walks each order once, accumulating in the first
layer's space and running the small head at every point
(:func:`gexplain.kernels.keep_remove.walk_correct`): at most ``(2 + draws) · G · H``
per sample for all curves, instead of one full forward of the test matrix per
point and draw. The genes removed for the excluding-top sets of one draw are
nested, so they are walked once too; prefixes past an order's largest gap
between checkpoints are computed from the order's end; results do not depend
on the thread count or ``block_rows``, and equal a plain gene-by-gene walk up
to float rounding of the sums (~1e-15 relative).
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
    block_rows: int = 32,
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
    block_rows
        Rows walked together by the kernel (speed only; results do not change).

    Returns
    -------
    MetricResult
        Curves ``keep``, ``remove``, ``keep-random``, ``remove-random``,
        ``keep-random-excluding-top``, ``remove-random-excluding-top``; variants
        ``union`` (``x`` = genes in the union) and ``per-class`` (``x`` = k).
    """
    from ..explain import CompiledModel
    from ..kernels.keep_remove import walk_correct

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
    for variant in variants:
        if variant not in ("union", "per-class"):
            raise InputError(f"unknown keep/remove variant {variant!r}: use union or per-class")
    plan = _Plan(s, grid, random_draws, seed)
    # rows: the labelled ones, sorted by group (a ranked class, or "other")
    group_of_model = np.full(cm.n_classes, plan.n_cls, dtype=np.int64)
    group_of_model[model_idx] = np.arange(plan.n_cls)
    if (labels >= cm.n_classes).any():
        raise InputError(f"labels must be class indices below {cm.n_classes}")
    labelled = np.flatnonzero(labels >= 0)
    grp = group_of_model[labels[labelled]]
    order = np.argsort(grp, kind="stable")
    rows = labelled[order].astype(np.int64)
    grp = grp[order]
    lab = labels[rows]
    starts, stops, bgroups = _blocks(grp, block_rows)
    z0 = cm.first_layer(x[rows])
    zb = np.ascontiguousarray(
        np.broadcast_to(base @ cm.weight + cm.bias, z0.shape), dtype=np.float64
    )
    head = cm.head
    keep, remove = walk_correct(
        x,
        rows,
        base,
        cm.weight,
        z0,
        zb,
        head.layers,
        head.params,
        head.n_acts,
        lab,
        starts,
        stops,
        bgroups,
        plan.orders,
        plan.group_orders,
        plan.cp_pos,
        plan.cp_seq,
        plan.sub_start,
        plan.sub_len,
        plan.sub_fam,
        plan.sub_idx,
        plan.cp_back,
    )
    out: list[dict[str, Any]] = []
    present = np.unique(lab)
    u_sizes, k_sizes = plan.u_sizes, plan.k_sizes
    nu, nk = len(u_sizes), len(k_sizes)
    a_sl, b_sl = slice(0, nu), slice(nu, nu + nk)
    c_sl, d_sl = slice(nu + nk, 2 * nu + nk), slice(2 * nu + nk, 2 * nu + 2 * nk)
    u_excl_ok = u_sizes <= g - u_sizes
    k_excl_ok = k_sizes <= g - k_sizes

    def balanced(ok: np.ndarray) -> np.ndarray:
        return np.mean([ok[lab == c].mean(axis=0) for c in present], axis=0)

    for name, ok in (("keep", keep), ("remove", remove)):
        if "union" in variants:
            _add(out, None, name, "union", u_sizes, balanced(ok[:, 0, a_sl]))
            if plan.n_draws:
                draws = balanced(ok[:, 2:, a_sl])  # (D, U)
                _add(out, None, f"{name}-random", "union", u_sizes, *_stats(draws))
                ex = balanced(ok[:, 2:, c_sl])
                _add(
                    out,
                    None,
                    f"{name}-random-excluding-top",
                    "union",
                    u_sizes[u_excl_ok],
                    *(v[u_excl_ok] for v in _stats(ex)),
                )
        if "per-class" in variants:
            ranked = [c for c in range(plan.n_cls) if (grp == c).any()]
            if not ranked:
                continue
            per_top = np.stack([ok[grp == c][:, 1, b_sl].mean(axis=0) for c in ranked])
            for i, c in enumerate(ranked):
                _add(out, names[c], name, "per-class", k_sizes, per_top[i])
            _add(out, None, name, "per-class", k_sizes, per_top.mean(axis=0))
            if plan.n_draws:
                for curve, sl, keep_pts in (
                    (f"{name}-random", b_sl, np.ones(nk, bool)),
                    (f"{name}-random-excluding-top", d_sl, k_excl_ok),
                ):
                    per = np.stack([ok[grp == c][:, 2:, sl].mean(axis=0) for c in ranked])
                    for i, c in enumerate(ranked):
                        mean, sd = _stats(per[i])
                        _add(
                            out,
                            names[c],
                            curve,
                            "per-class",
                            k_sizes[keep_pts],
                            mean[keep_pts],
                            sd[keep_pts],
                        )
                    mean, sd = _stats(per.mean(axis=0))
                    _add(
                        out,
                        None,
                        curve,
                        "per-class",
                        k_sizes[keep_pts],
                        mean[keep_pts],
                        sd[keep_pts],
                    )
    return MetricResult(curves=pl.DataFrame(out, schema=CURVE_SCHEMA))


def _add(
    out: list[dict[str, Any]],
    cls: str | None,
    curve: str,
    variant: str,
    xs: np.ndarray,
    values: np.ndarray,
    sd: np.ndarray | None = None,
) -> None:
    for i, xv in enumerate(xs):
        out.append(
            {
                "class": cls,
                "curve": curve,
                "variant": variant,
                "x": float(xv),
                "value": float(values[i]),
                "sd": None if sd is None else float(sd[i]),
            }
        )


def _blocks(grp: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Blocks of at most ``size`` consecutive rows within one group (rows sorted by group)."""
    starts, stops, groups = [], [], []
    n = grp.shape[0]
    a = 0
    while a < n:
        b = a
        while b < n and grp[b] == grp[a] and b - a < size:
            b += 1
        starts.append(a)
        stops.append(b)
        groups.append(grp[a])
        a = b
    as64 = lambda v: np.asarray(v, dtype=np.int64)  # noqa: E731
    return as64(starts), as64(stops), as64(groups)


class _Plan:
    """Orders and checkpoints of every curve point (see :mod:`gexplain.kernels.keep_remove`).

    Groups ``0..C-1`` are the ranked classes (their samples), group ``C`` the
    samples of other classes (union curves only). Order slots: 0 the union
    order, 1 the group's class order, ``2 + d`` random permutation ``d``.
    Checkpoint slots: ``[0, U)`` union sizes, ``[U, U+K)`` grid sizes, then the
    excluding-top sets for the union sizes and for the grid sizes.
    """

    def __init__(self, scores: np.ndarray, grid: list[int], draws: int, seed: SeedLike) -> None:
        from ..kernels.keep_remove import excluding_top

        c, g = scores.shape
        self.n_cls = c
        self.n_draws = draws
        class_orders = _class_orders(scores)
        union, entry = _union_order(class_orders)
        self.k_sizes = np.asarray(grid, dtype=np.int64)
        self.u_sizes = np.array(sorted({int((entry < k).sum()) for k in grid}), dtype=np.int64)
        rng = generator(seed, "metrics.keep-remove")
        perms = [rng.permutation(g) for _ in range(draws)]
        self.orders = np.ascontiguousarray(
            np.vstack([union[None, :], class_orders, *(p[None, :] for p in perms)]), dtype=np.int64
        )
        nu, nk = self.u_sizes.size, self.k_sizes.size
        n_groups, t_max, q_max = c + 1, 2 + draws, 2 * nu + 2 * nk
        self.group_orders = np.full((n_groups, t_max), -1, dtype=np.int64)
        self.group_orders[:, 0] = 0
        self.group_orders[:c, 1] = 1 + np.arange(c)
        self.group_orders[:, 2:] = 1 + c + np.arange(draws)[None, :]
        self.cp_pos = np.full((n_groups, t_max, q_max), -1, dtype=np.int64)
        self.sub_start = np.zeros((n_groups, t_max, q_max), dtype=np.int64)
        self.sub_len = np.zeros((n_groups, t_max, q_max), dtype=np.int64)
        self.sub_fam = np.full((n_groups, t_max, q_max), -1, dtype=np.int64)
        subs: list[np.ndarray] = []
        offset = 0
        self.cp_pos[:, 0, :nu] = self.u_sizes
        self.cp_pos[:c, 1, nu : nu + nk] = self.k_sizes
        union_rank = np.empty(g, dtype=np.int64)
        union_rank[union] = np.arange(g)
        class_rank = np.empty((c, g), dtype=np.int64)
        class_rank[np.arange(c)[:, None], class_orders] = np.arange(g)[None, :]
        u_ok = np.flatnonzero(self.u_sizes <= g - self.u_sizes)
        k_ok = np.flatnonzero(self.k_sizes <= g - self.k_sizes)
        u_ms = np.ascontiguousarray(self.u_sizes[u_ok])
        k_ms = np.ascontiguousarray(self.k_sizes[k_ok])
        for d, perm in enumerate(perms):
            t = 2 + d
            self.cp_pos[:, t, :nu] = self.u_sizes
            self.cp_pos[:, t, nu : nu + nk] = self.k_sizes
            # excluding-top sets: family 0 (union sizes, every group), 1 (the group's class)
            for fam, ranks, ms, q0, grps in (
                (0, union_rank[None, :], u_ms, nu + nk + u_ok, [slice(None)]),
                (1, class_rank, k_ms, 2 * nu + nk + k_ok, list(range(c))),
            ):
                if ms.size == 0:
                    continue
                for rank, gi in zip(ranks, grps):
                    p, seq, ends = excluding_top(perm, rank, ms)
                    self.cp_pos[gi, t, q0] = p
                    self.sub_start[gi, t, q0] = offset
                    self.sub_len[gi, t, q0] = ends
                    self.sub_fam[gi, t, q0] = fam
                    subs.append(seq)
                    offset += seq.size
        self.sub_idx = (
            np.concatenate(subs).astype(np.int64) if subs else np.zeros(0, dtype=np.int64)
        )
        # checkpoints of each (group, slot) by increasing prefix length; -1 ends the list
        key = np.where(self.cp_pos < 0, np.iinfo(np.int64).max, self.cp_pos)
        seq = np.argsort(key, axis=2, kind="stable")
        self.cp_seq = np.where(np.take_along_axis(self.cp_pos, seq, axis=2) < 0, -1, seq)
        self.cp_back = _back_checkpoints(self.cp_pos, self.sub_fam, g)


def _back_checkpoints(cp_pos: np.ndarray, sub_fam: np.ndarray, g: int) -> np.ndarray:
    """Which checkpoints are reached from the end of their order (``(n_groups, T, Q)`` bool).

    A plain prefix ``p`` (no genes subtracted) can be computed as the sum over
    all genes minus the sum over ``order[p:]``. Per order, the prefixes above
    the largest gap between consecutive checkpoints are reached by walking
    back from the end when that is shorter than walking forward to them (the
    excluding-top checkpoints are always reached forward).
    """
    back = np.zeros(cp_pos.shape, dtype=np.bool_)
    for gi in range(cp_pos.shape[0]):
        for t in range(cp_pos.shape[1]):
            pos, fam = cp_pos[gi, t], sub_fam[gi, t]
            front = int(pos[(pos >= 0) & (fam >= 0)].max(initial=0))
            plain = np.unique(pos[(pos > front) & (pos < g) & (fam < 0)])
            if plain.size == 0:
                continue
            # split after plain[i - 1]: forward to max(front, plain[i - 1]), back from plain[i]
            ends = np.concatenate(([front], plain))
            cost = ends[:-1] + (g - plain)
            i = int(np.argmin(cost))
            if cost[i] < plain[-1]:
                back[gi, t] = (pos >= plain[i]) & (pos < g) & (fam < 0)
    return back
