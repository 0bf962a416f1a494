"""Prediction gaps of the paper: deletion curves toward a baseline (PGI, PGU, PGR).

Definition (Bontonou et al., arXiv 2303.11336, after the "prediction gap" of
OpenXAI, Agarwal et al. 2022): for a sample ``x`` with explained class ``y``, a
baseline ``x'`` and an order of the ``d`` genes, cumulatively set the next
block of ``g`` genes (default 10) to the baseline; ``x⁽ⁱ⁾`` is ``x`` with the
first ``i`` blocks replaced. With ``N = ⌊d/g⌋`` (the last ``d − N g`` genes
are never removed),

    PG(x) = (g/d) Σ_{i=1..N} max(0, f_y(x) − f_y(x⁽ⁱ⁾))

where ``f_y`` is the softmax probability of ``y`` (or its logit /
log-probability). Orders:

- **PGI**: attribution descending (removing the most important genes first
  should hurt: large is good); **PGU**: ascending (removing the least
  important first should not: small is good). Ties are broken by gene index
  (stable sorts, increasing index in both directions).
- **local**: the sample's own attribution; **global-mean / global-ranksum /
  global-rankmedian**: one ranking per class from the L2-normalised
  attributions of the class's rows (:func:`class_scores`).
- **PGU_adjusted** = PGU / (1 − f_y(x')) (probability output only).
- **PGR**: random orders (``random_draws`` permutations per sample, seeded per
  sample by global index), the mean of their PG per sample.

Per class: the mean over the samples of the class; the class-average row
(``class`` null) is the unweighted mean over classes. The random-attribution
control of PGI, PGU and PGU_adjusted (``control = "random"``) is the PGR
value: a random attribution orders genes uniformly at random, which is what
PGR draws.

Curves (``curves`` frame): ``curve`` PGI/PGU/PGR, ``x = i g / d``, ``value`` the
mean of ``f_y(x⁽ⁱ⁾)`` over the class's samples (PGR: each sample's mean over its
draws first) and ``sd`` its population standard deviation; the class-average
curve is the unweighted mean of the class curves and of their ``sd``.

Computation: :func:`gexplain.kernels.pg.deletion_curves` updates the first
layer's pre-activation incrementally (one pass over the weight matrix per
sample and order, then the small head per block), in chunks of samples
(:func:`pg_chunk`, a pure function of a sample range that can be mapped
locally or on a cluster).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from .._rng import SeedLike, as_seed, sample_seeds
from ..errors import InputError
from ._aggregate import class_scores
from ._result import MetricResult

#: Order variants of the paper's PG and the class aggregation behind each global one.
PG_ORDERS: dict[str, str | None] = {
    "local": None,
    "global-mean": "mean",
    "global-ranksum": "rank-sum",
    "global-rankmedian": "rank-median",
}

#: Bytes of one chunk's curve array when the chunk size is automatic.
CHUNK_BUDGET = 64 * 2**20

_RANDOM_STREAM = "metrics.pg.random-orders"


# ---------------------------------------------------------------------- shared helpers
@dataclass
class ModelArrays:
    """The arrays the kernels need from a :class:`CompiledModel`."""

    weight: np.ndarray
    bias: np.ndarray
    layers: np.ndarray
    params: np.ndarray
    n_acts: int
    mode: int
    class_names: list[str]
    model_zero: np.ndarray

    @property
    def n_genes(self) -> int:
        return int(self.weight.shape[0])


def load_model(model: Any, output: str) -> tuple[Any, ModelArrays]:
    """Compile ``model`` (path, ONNX proto or CompiledModel) and collect its kernel arrays."""
    from ..explain import CompiledModel
    from ..head import output_mode

    cm = CompiledModel.load(model)
    try:
        mode = output_mode(output)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    arrays = ModelArrays(
        np.ascontiguousarray(cm.weight, dtype=np.float64),
        np.ascontiguousarray(cm.bias, dtype=np.float64),
        cm.head.layers,
        cm.head.params,
        cm.head.n_acts,
        mode,
        list(cm.class_names),
        np.asarray(cm.model_zero, dtype=np.float64),
    )
    return cm, arrays


def check_inputs(
    arrays: ModelArrays, X: Any, attributions: Any, targets: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate shapes: ``X`` and ``attributions`` ``(n, G)``, ``targets`` ``(n,)`` class indices."""
    x = np.asarray(X)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != arrays.n_genes:
        raise InputError(
            f"X has shape {x.shape} but the model expects (n_samples, {arrays.n_genes} genes)"
        )
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    x = np.ascontiguousarray(x)
    a = np.asarray(attributions)
    if a.ndim == 1:
        a = a[None, :]
    if a.shape != x.shape:
        raise InputError(f"attributions have shape {a.shape}, X has {x.shape}")
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float64)
    a = np.ascontiguousarray(a)
    t = np.asarray(targets)
    if t.ndim != 1 or t.shape[0] != x.shape[0]:
        raise InputError(f"targets must have one class index per row ({x.shape[0]}), got {t.shape}")
    if t.size and (not np.issubdtype(t.dtype, np.integer)):
        raise InputError("targets must be class indices (integers)")
    t = t.astype(np.int64)
    n_classes = len(arrays.class_names)
    if t.size and (t.min() < 0 or t.max() >= n_classes):
        raise InputError(f"targets must lie in 0..{n_classes - 1}")
    return x, a, t


def resolve_baseline(arrays: ModelArrays, baseline: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Baseline rows ``(m, G)`` and the row of each sample ``(n,)``.

    ``baseline`` is ``"model-zero"`` (the model's zero input after its folded
    preprocessing, the paper's), ``"zeros"``, an array ``(G,)`` or ``(n, G)``.
    """
    G = arrays.n_genes
    if isinstance(baseline, str):
        if baseline == "model-zero":
            rows = arrays.model_zero[None, :]
        elif baseline == "zeros":
            rows = np.zeros((1, G))
        else:
            raise InputError(
                f"baseline must be 'model-zero', 'zeros' or an array, got {baseline!r}"
            )
        return np.ascontiguousarray(rows, dtype=np.float64), np.zeros(n, dtype=np.int64)
    b = np.asarray(baseline, dtype=np.float64)
    if b.ndim == 1 and b.shape[0] == G:
        return np.ascontiguousarray(b[None, :]), np.zeros(n, dtype=np.int64)
    if b.ndim == 2 and b.shape == (n, G):
        return np.ascontiguousarray(b), np.arange(n, dtype=np.int64)
    raise InputError(f"baseline array must be ({G},) or ({n}, {G}), got {b.shape}")


def resolve_classes(arrays: ModelArrays, classes: Any, targets: np.ndarray) -> np.ndarray:
    """Class name of each row (default: the name of its target)."""
    if classes is None:
        names = np.asarray(arrays.class_names, dtype=object)
        return names[targets].astype(str) if targets.size else np.zeros(0, dtype=str)
    c = np.asarray(classes).astype(str)
    if c.shape != targets.shape:
        raise InputError(f"classes must have one entry per row ({targets.shape[0]}), got {c.shape}")
    return c


def class_means(
    values: np.ndarray, classes: np.ndarray, names: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class mean of ``values`` (n, ...) and per-class counts; NaN for an empty class."""
    out = np.full((len(names), *values.shape[1:]), np.nan)
    counts = np.zeros(len(names), dtype=np.int64)
    for c, name in enumerate(names):
        rows = classes == name
        counts[c] = int(rows.sum())
        if counts[c]:
            out[c] = values[rows].mean(axis=0)
    return out, counts


def score_rows(
    metric: str,
    variant: str,
    per_class: np.ndarray,
    counts: np.ndarray,
    names: list[str],
    *,
    k: int | None = None,
    control: str | None = None,
) -> dict[str, list[Any]]:
    """Score rows of one (metric, variant): one per class plus the class average (class null)."""
    present = counts > 0
    avg = float(np.mean(per_class[present])) if present.any() else float("nan")
    return {
        "class": [*names, None],
        "metric": [metric] * (len(names) + 1),
        "variant": [variant] * (len(names) + 1),
        "k": [k] * (len(names) + 1),
        "control": [control] * (len(names) + 1),
        "value": [*(float(v) for v in per_class), avg],
        "n": [*(int(c) for c in counts), int(counts.sum())],
    }


def frame(rows: list[dict[str, list[Any]]], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Concatenate column dicts into one frame of ``schema``."""
    if not rows:
        return pl.DataFrame(schema=schema)
    return pl.concat([pl.DataFrame(r, schema=schema) for r in rows])


def auto_chunk(per_sample_bytes: int, budget: int = CHUNK_BUDGET) -> int:
    """Samples per chunk so that one chunk's work arrays fit ``budget``."""
    return int(max(1, min(4096, budget // max(1, per_sample_bytes))))


def gaps_from_curves(curves: np.ndarray) -> np.ndarray:
    """``(g/d) Σ_{i≥1} max(0, c₀ − cᵢ)`` along the last axis, with ``g/d = 1/N`` up to the tail.

    ``curves[..., 0]`` is ``f_y(x)``; the factor ``g/d`` is applied by the caller
    (it depends on ``d``, not only on the number of points).
    """
    gap = curves[..., :1] - curves[..., 1:]
    return np.maximum(gap, 0.0).sum(axis=-1)


# ---------------------------------------------------------------------- the chunk pass
@dataclass
class PGPlan:
    """Everything one chunk of the deletion-curve pass needs (picklable).

    ``kinds`` names each curve of the kernel output, in order: ``(curve,
    variant)`` pairs for the local and given orders; the ``n_random`` random
    curves follow.
    """

    arrays: ModelArrays
    X: np.ndarray
    baseline_rows: np.ndarray
    base_index: np.ndarray
    targets: np.ndarray
    attr: np.ndarray  # (n, G) or (0, G) when no local order
    orders: np.ndarray  # (q, G) int64
    order_index: np.ndarray  # (n, K_g) int64
    seed: int
    sample_index: np.ndarray  # global index of each row (seeds)
    n_random: int
    block: int
    kinds: list[tuple[str, str]] = field(default_factory=list)

    @property
    def n_points(self) -> int:
        return self.arrays.n_genes // self.block + 1


@dataclass
class PGChunk:
    """Result of :func:`pg_chunk` for rows ``start:stop``.

    ``gaps`` ``(n, K')`` per-sample PG (``g/d`` applied) of each named curve, and
    PGR (mean over the random draws) last when there are random orders;
    ``curves`` ``(n, K', N+1)`` the matching curves (PGR: mean over draws).
    """

    start: int
    stop: int
    gaps: np.ndarray
    curves: np.ndarray


def pg_chunk(plan: PGPlan, start: int, stop: int) -> PGChunk:
    """Deletion curves and gaps of rows ``start:stop`` of ``plan`` (a pure function).

    Seeds come from the rows' global indices (``plan.sample_index``), so any
    chunking gives the same numbers.
    """
    from ..kernels.pg import deletion_curves as _kernel

    a = plan.arrays
    seeds = np.empty(stop - start, dtype=np.uint32)
    for j, g in enumerate(plan.sample_index[start:stop]):
        seeds[j] = sample_seeds(plan.seed, _RANDOM_STREAM, int(g), int(g) + 1)[0]
    attr = plan.attr[start:stop] if plan.attr.shape[0] else plan.attr
    raw = _kernel(
        plan.X[start:stop],
        a.weight,
        a.bias,
        a.layers,
        a.params,
        a.n_acts,
        plan.baseline_rows,
        plan.base_index[start:stop],
        plan.targets[start:stop],
        a.mode,
        plan.block,
        attr,
        plan.orders,
        plan.order_index[start:stop],
        seeds,
        plan.n_random,
    )
    scale = plan.block / a.n_genes
    named = len(plan.kinds)
    gaps = gaps_from_curves(raw[:, :named]) * scale
    curves = raw[:, :named]
    if plan.n_random:
        rnd = raw[:, named:]
        gaps = np.concatenate([gaps, (gaps_from_curves(rnd) * scale).mean(axis=1)[:, None]], axis=1)
        curves = np.concatenate([curves, rnd.mean(axis=1)[:, None, :]], axis=1)
    return PGChunk(start, stop, gaps, np.ascontiguousarray(curves))


def _global_orders(
    attr: np.ndarray, classes: np.ndarray, names: list[str], hows: list[str]
) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Per-class PGI/PGU orders for each aggregation; per-row index into them."""
    G = attr.shape[1]
    n = attr.shape[0]
    orders = np.empty((2 * len(hows) * len(names), G), dtype=np.int64)
    index = np.full((n, 2 * len(hows)), -1, dtype=np.int64)
    kinds: list[tuple[str, str]] = []
    for how in hows:
        variant = next(v for v, a in PG_ORDERS.items() if a == how)
        kinds += [("PGI", variant), ("PGU", variant)]
    for c, name in enumerate(names):
        rows = np.flatnonzero(classes == name)
        for h, how in enumerate(hows):
            # one class at a time: bounded memory whatever the cohort size
            _, s = class_scores(attr[rows], classes[rows], how, class_order=[name])
            r = 2 * (h * len(names) + c)
            orders[r] = np.argsort(-s[0], kind="stable")
            orders[r + 1] = np.argsort(s[0], kind="stable")
            index[rows, 2 * h] = r
            index[rows, 2 * h + 1] = r + 1
    return orders, index, kinds


def plan_prediction_gaps(
    model: Any,
    X: Any,
    attributions: Any,
    targets: Any,
    *,
    baseline: Any = "model-zero",
    classes: Any = None,
    block: int = 10,
    orders: Sequence[str] = tuple(PG_ORDERS),
    random_draws: int = 30,
    seed: SeedLike = 0,
    output: str = "probability",
    sample_index: Any = None,
) -> tuple[PGPlan, np.ndarray, list[str]]:
    """Validate the inputs of :func:`prediction_gaps` and build its :class:`PGPlan`.

    Returns the plan, the class of each row and the class names (sorted).
    """
    _, arrays = load_model(model, output)
    x, a, t = check_inputs(arrays, X, attributions, targets)
    n, G = x.shape
    block = int(block)
    if block < 1 or block > G:
        raise InputError(f"block must be between 1 and the number of genes ({G}), got {block}")
    unknown = [o for o in orders if o not in PG_ORDERS]
    if unknown:
        raise InputError(f"unknown PG orders {unknown}; expected some of {list(PG_ORDERS)}")
    if int(random_draws) < 0:
        raise InputError("random_draws must be >= 0")
    cls = resolve_classes(arrays, classes, t)
    names = sorted(set(cls.tolist()))
    rows, bidx = resolve_baseline(arrays, baseline, n)
    hows = [PG_ORDERS[o] for o in orders if PG_ORDERS[o] is not None]
    g_orders, g_index, g_kinds = _global_orders(a, cls, names, hows)  # type: ignore[arg-type]
    kinds = ([("PGI", "local"), ("PGU", "local")] if "local" in orders else []) + g_kinds
    idx = (
        np.arange(n, dtype=np.int64)
        if sample_index is None
        else np.asarray(sample_index, dtype=np.int64)
    )
    if idx.shape != (n,):
        raise InputError(f"sample_index must have one entry per row ({n}), got {idx.shape}")
    plan = PGPlan(
        arrays,
        x,
        rows,
        bidx,
        t,
        a if "local" in orders else np.zeros((0, G)),
        g_orders,
        g_index,
        as_seed(seed),
        idx,
        int(random_draws),
        block,
        kinds,
    )
    return plan, cls, names


def summarize_prediction_gaps(
    plan: PGPlan, parts: Sequence[PGChunk], classes: np.ndarray, names: list[str]
) -> MetricResult:
    """Turn the chunk results of a :class:`PGPlan` into scores and curves."""
    from ._result import CURVE_SCHEMA, SCORE_SCHEMA

    parts = sorted(parts, key=lambda p: p.start)
    K = len(plan.kinds) + (1 if plan.n_random else 0)
    P = plan.n_points
    if parts:
        gaps = np.concatenate([p.gaps for p in parts])
        curves = np.concatenate([p.curves for p in parts])
    else:
        gaps = np.zeros((0, K))
        curves = np.zeros((0, K, P))
    kinds = list(plan.kinds) + ([("PGR", "random")] if plan.n_random else [])
    prob = plan.arrays.mode == 1
    adjust = None
    if prob:
        fb = baseline_values(plan)
        adjust = 1.0 / (1.0 - fb)
    scores: list[dict[str, list[Any]]] = []
    pgr_class = None
    if plan.n_random:
        pgr_class, counts = class_means(gaps[:, -1], classes, names)
        scores.append(score_rows("PGR", "random", pgr_class, counts, names))
        if adjust is not None:
            pgr_adj_class, _ = class_means(gaps[:, -1] * adjust, classes, names)
    for j, (curve, variant) in enumerate(plan.kinds):
        per_class, counts = class_means(gaps[:, j], classes, names)
        scores.append(score_rows(curve, variant, per_class, counts, names))
        if pgr_class is not None:
            scores.append(score_rows(curve, variant, pgr_class, counts, names, control="random"))
        if curve == "PGU" and adjust is not None:
            adj, _ = class_means(gaps[:, j] * adjust, classes, names)
            scores.append(score_rows("PGU_adjusted", variant, adj, counts, names))
            if pgr_class is not None:
                scores.append(
                    score_rows(
                        "PGU_adjusted", variant, pgr_adj_class, counts, names, control="random"
                    )
                )
    x_axis = np.arange(P) * plan.block / plan.arrays.n_genes
    curve_rows: list[dict[str, list[Any]]] = []
    for j, (curve, variant) in enumerate(kinds):
        means, counts = class_means(curves[:, j], classes, names)
        sds = np.full_like(means, np.nan)
        for c, name in enumerate(names):
            rows = classes == name
            if rows.any():
                sds[c] = curves[rows, j].std(axis=0)
        present = counts > 0
        all_mean = means[present].mean(axis=0) if present.any() else np.full(P, np.nan)
        all_sd = sds[present].mean(axis=0) if present.any() else np.full(P, np.nan)
        for name, m, s in [*zip(names, means, sds, strict=True), (None, all_mean, all_sd)]:
            curve_rows.append(
                {
                    "class": [name] * P,
                    "curve": [curve] * P,
                    "variant": [variant] * P,
                    "x": x_axis.tolist(),
                    "value": m.tolist(),
                    "sd": s.tolist(),
                }
            )
    return MetricResult(frame(scores, SCORE_SCHEMA), frame(curve_rows, CURVE_SCHEMA))


def baseline_values(plan: PGPlan) -> np.ndarray:
    """``f_y(x')`` of each row: its baseline row, its target (one forward per baseline row)."""
    from ..kernels.head import head_forward_batch
    from ..kernels.pg import output_value

    a = plan.arrays
    z = np.ascontiguousarray(plan.baseline_rows @ a.weight + a.bias)
    logits = head_forward_batch(a.layers, a.params, z, a.n_acts)
    vals = np.array(
        [[output_value(row, c, a.mode) for c in range(len(a.class_names))] for row in logits]
    )
    return vals[plan.base_index, plan.targets] if plan.targets.size else np.zeros(0)


def plan_chunks(n: int, chunk_size: int) -> list[tuple[int, int]]:
    """``(start, stop)`` ranges covering ``0..n`` in chunks of ``chunk_size``."""
    return [(s, min(n, s + chunk_size)) for s in range(0, n, chunk_size)]


def pg_chunk_size(plan: PGPlan, chunk_size: int | None) -> int:
    """Rows per chunk: given, or sized so the kernel's curve array stays near :data:`CHUNK_BUDGET`."""
    if chunk_size is not None:
        if int(chunk_size) < 1:
            raise InputError("chunk_size must be positive")
        return int(chunk_size)
    k = len(plan.kinds) + plan.n_random
    return auto_chunk(8 * max(1, k) * plan.n_points)


def prediction_gaps(
    model: Any,
    X: Any,
    attributions: Any,
    targets: Any,
    *,
    baseline: Any = "model-zero",
    classes: Any = None,
    block: int = 10,
    orders: Sequence[str] = tuple(PG_ORDERS),
    random_draws: int = 30,
    seed: SeedLike = 0,
    output: str = "probability",
    sample_index: Any = None,
    chunk_size: int | None = None,
    quiet: bool | None = True,
) -> MetricResult:
    """The paper's prediction gaps PGI, PGU, PGU_adjusted and PGR, with their deletion curves.

    See the module docstring for the definitions (Bontonou et al. 2023, arXiv
    2303.11336; OpenXAI, Agarwal et al. 2022, for the name).

    Parameters
    ----------
    model
        A :class:`~gexplain.explain.CompiledModel`, an ONNX path or proto.
    X
        ``(n, G)`` inputs in the model's gene order (the samples to score,
        typically the correctly classified test samples).
    attributions
        ``(n, G)`` signed attributions of the rows of ``X``.
    targets
        ``(n,)`` class index explained in each row.
    baseline
        ``"model-zero"`` (default, the paper's), ``"zeros"``, or an array
        ``(G,)`` / ``(n, G)``.
    classes
        Class name of each row for the per-class means and global orders
        (default: the name of its target).
    block
        Genes removed per step, ``g``.
    orders
        Which of ``local``, ``global-mean``, ``global-ranksum``,
        ``global-rankmedian`` to score.
    random_draws
        Random orders per sample for PGR (0 skips PGR and the random control).
    seed
        Seed of the random orders (per sample by ``sample_index``).
    output
        ``probability`` (default, the paper's), ``logit`` or ``log_probability``.
    sample_index
        Global index of each row (its random stream); default ``0..n-1``.
    chunk_size
        Rows per kernel call (default: ~64 MB of curves).
    quiet
        Hide the progress bar.

    Returns
    -------
    MetricResult
        ``scores``: metrics PGI, PGU, PGU_adjusted (variants as ``orders``) and
        PGR (variant ``random``), per class and averaged (class null), with
        ``control = "random"`` rows; ``curves``: PGI/PGU/PGR deletion curves.

    Examples
    --------
    >>> res = prediction_gaps("mlp-seed0.onnx", X, attr, targets)  # doctest: +SKIP
    >>> res.score("PGI", "local") > res.score("PGU", "local")  # doctest: +SKIP
    True
    """
    from .._progress import progress

    plan, cls, names = plan_prediction_gaps(
        model,
        X,
        attributions,
        targets,
        baseline=baseline,
        classes=classes,
        block=block,
        orders=orders,
        random_draws=random_draws,
        seed=seed,
        output=output,
        sample_index=sample_index,
    )
    size = pg_chunk_size(plan, chunk_size)
    chunks = plan_chunks(plan.X.shape[0], size)
    parts = [pg_chunk(plan, s, e) for s, e in progress(chunks, desc="PG", quiet=quiet)]
    return summarize_prediction_gaps(plan, parts, cls, names)


def deletion_curves(
    model: Any,
    X: Any,
    orders: Any,
    targets: Any,
    baseline: Any = "model-zero",
    block: int = 10,
    *,
    output: str = "probability",
) -> np.ndarray:
    """Deletion curves of given gene orders (the kernel behind :func:`prediction_gaps`).

    Parameters
    ----------
    model
        A CompiledModel or ONNX path.
    X
        ``(n, G)`` inputs.
    orders
        ``(n, G)`` integer gene order of each row (the first ``block`` genes
        are set to the baseline first).
    targets
        ``(n,)`` explained class indices.
    baseline
        ``"model-zero"``, ``"zeros"`` or an array ``(G,)`` / ``(n, G)``.
    block
        Genes per step.
    output
        ``probability``, ``logit`` or ``log_probability``.

    Returns
    -------
    numpy.ndarray
        ``(n, N + 1)``, ``N = G // block``: ``f_y`` after ``0, 1, ..., N`` blocks.
    """
    from ..kernels.pg import deletion_curves as _kernel

    _, arrays = load_model(model, output)
    x, _, t = check_inputs(arrays, X, np.zeros(np.shape(X), dtype=np.float32), targets)
    n, G = x.shape
    o = np.ascontiguousarray(np.asarray(orders), dtype=np.int64)
    if o.shape != (n, G):
        raise InputError(f"orders must be ({n}, {G}), got {o.shape}")
    if n and not (np.sort(o, axis=1) == np.arange(G)).all():
        raise InputError("each row of orders must be a permutation of 0..G-1")
    if int(block) < 1 or int(block) > G:
        raise InputError(f"block must be between 1 and {G}, got {block}")
    rows, bidx = resolve_baseline(arrays, baseline, n)
    raw = _kernel(
        x,
        arrays.weight,
        arrays.bias,
        arrays.layers,
        arrays.params,
        arrays.n_acts,
        rows,
        bidx,
        t,
        arrays.mode,
        int(block),
        np.zeros((0, G)),
        o,
        np.arange(n, dtype=np.int64)[:, None],
        np.zeros(n, dtype=np.uint32),
        0,
    )
    return raw[:, 0, :]
