"""Stability of gene rankings across seeds, model kinds and attribution runs.

Compared per class on the global rankings of :func:`~gexplain.metrics.class_scores`
(higher score = more important):

================  ===============================================================
jaccard@k         ``|T_a ∩ T_b| / |T_a ∪ T_b|`` of the two top-k gene sets (ties:
                  lower gene index first)
spearman          Spearman correlation of the full score vectors (average ranks)
kendall           Kendall's tau-b of the full score vectors (ties corrected)
sign-agreement    among the genes of ``T_a ∪ T_b``, the fraction whose scores have
                  the same sign in both runs (``k`` set; meaningful for the ``mean``
                  aggregation, whose scores are signed)
================  ===============================================================

Pairs: ``across-seeds`` compares every pair of seeds of one model kind;
``across-models`` compares every pair of different kinds trained with the same
seed (``model_pairs="all"`` compares every cross-kind pair instead). The
pairwise table keeps every (pair, class, metric, k) value for heatmaps; the
:class:`MetricResult` holds their means over pairs, per class, and the
unweighted mean over classes (``class`` null).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from itertools import combinations
from typing import Any

import numpy as np
import polars as pl

from ..errors import InputError
from ._openxai_agreement import resolve_k
from ._result import MetricResult

PAIRWISE_SCHEMA: dict[str, pl.DataType] = {
    "model_a": pl.String(),
    "seed_a": pl.Int64(),
    "model_b": pl.String(),
    "seed_b": pl.Int64(),
    "variant": pl.String(),
    "class": pl.String(),
    "metric": pl.String(),
    "k": pl.Int64(),
    "value": pl.Float64(),
}


def _default_ks(g: int) -> list[int]:
    return [k for k in (10, 100, 1000) if k < g] or [max(1, g // 2)]


def _pair_metrics(
    a: np.ndarray,
    b: np.ndarray,
    ta: np.ndarray,
    tb: np.ndarray,
    ks: Sequence[int],
    prep_a: tuple[np.ndarray, np.ndarray] | None = None,
    prep_b: tuple[Any, np.ndarray] | None = None,
) -> dict[tuple[str, int | None], np.ndarray]:
    """Per-row metrics of two ``(R, G)`` score matrices (``ta``, ``tb`` their top-kmax indices;
    ``prep_*`` their rows' ascending orders and average ranks, if already computed)."""
    from ..kernels.topk import argsort_ranks_rows, concordance_given_order_rows, pearson_rows

    out: dict[tuple[str, int | None], np.ndarray] = {}
    rows = a.shape[0]
    for k in ks:
        jac = np.empty(rows)
        sign = np.empty(rows)
        for r in range(rows):
            sa, sb = ta[r, :k], tb[r, :k]
            inter = np.intersect1d(sa, sb, assume_unique=True).size
            union = np.union1d(sa, sb)
            jac[r] = inter / union.size
            sign[r] = np.mean(np.sign(a[r, union]) == np.sign(b[r, union]))
        out[("jaccard@k", k)] = jac
        out[("sign-agreement", k)] = sign
    order_a, ranks_a = argsort_ranks_rows(a) if prep_a is None else prep_a
    _, ranks_b = argsort_ranks_rows(b) if prep_b is None else prep_b
    out[("spearman", None)] = pearson_rows(ranks_a, ranks_b)
    out[("kendall", None)] = concordance_given_order_rows(a, b, order_a)[:, 0]
    return out


def stability(
    rankings: Mapping[tuple[str, int], tuple[Sequence[str], np.ndarray]],
    *,
    ks: Sequence[int] | None = None,
    model_pairs: str = "same-seed",
) -> tuple[MetricResult, pl.DataFrame]:
    """Agreement of per-class gene rankings between seeds and between model kinds.

    Parameters
    ----------
    rankings
        ``{(model_kind, seed): (class_names, scores)}`` with ``scores`` a
        ``(C, G)`` array from :func:`~gexplain.metrics.class_scores` (same genes
        in the same order for every run). Classes are matched by name; only
        classes present in both runs of a pair are compared, and a class whose
        row is not finite (no explained samples) is left out.
    ks
        Top-k sizes (default 10, 100, 1000 below G).
    model_pairs
        ``same-seed`` (default) or ``all`` for the ``across-models`` pairs.

    Returns
    -------
    (MetricResult, polars.DataFrame)
        Means over pairs (variants ``across-seeds``, ``across-models``; ``n`` the
        number of pairs), and the pairwise table (:data:`PAIRWISE_SCHEMA`).

    Examples
    --------
    >>> import numpy as np
    >>> runs = {("mlp", 0): (["a"], np.array([[3.0, 2.0, 1.0, 0.0]])),
    ...         ("mlp", 1): (["a"], np.array([[3.0, 1.0, 2.0, 0.0]]))}
    >>> res, pairs = stability(runs, ks=[2])
    >>> res.score("jaccard@k", "across-seeds", k=2), res.score("spearman", "across-seeds")
    (0.3333333333333333, 0.8)
    """
    if model_pairs not in ("same-seed", "all"):
        raise InputError(f"model_pairs must be 'same-seed' or 'all', got {model_pairs!r}")
    runs: dict[tuple[str, int], tuple[list[str], np.ndarray]] = {}
    n_genes = None
    for key, (names, scores) in rankings.items():
        s = np.ascontiguousarray(scores, dtype=np.float64)
        names = [str(c) for c in names]
        if s.ndim != 2 or s.shape[0] != len(names):
            raise InputError(f"run {key}: scores {s.shape} do not match {len(names)} classes")
        if n_genes is None:
            n_genes = s.shape[1]
        elif s.shape[1] != n_genes:
            raise InputError(f"run {key} has {s.shape[1]} genes, another run {n_genes}")
        finite = np.isfinite(s).all(axis=1)  # a class without explained samples: NaN row
        s = np.ascontiguousarray(s[finite])
        names = [c for c, ok in zip(names, finite) if ok]
        runs[(str(key[0]), int(key[1]))] = (names, s)
    if n_genes is None:
        return MetricResult(), pl.DataFrame(schema=PAIRWISE_SCHEMA)
    ks = _default_ks(n_genes) if ks is None else [resolve_k(k, n_genes) for k in ks]
    kmax = max(ks)
    from ..kernels.topk import argsort_ranks_rows, topk_rows

    tops = {
        key: topk_rows(s, np.full(s.shape[0], kmax, dtype=np.int64)) for key, (_, s) in runs.items()
    }
    # one sort per run and class, shared by all the pairs it enters
    prep = {key: argsort_ranks_rows(s) for key, (_, s) in runs.items()}
    pairs: list[tuple[str, tuple[str, int], tuple[str, int]]] = []
    for a, b in combinations(sorted(runs), 2):
        if a[0] == b[0]:
            pairs.append(("across-seeds", a, b))
        elif model_pairs == "all" or a[1] == b[1]:
            pairs.append(("across-models", a, b))
    frames = []
    for variant, a, b in pairs:
        names_a, sa = runs[a]
        names_b, sb = runs[b]
        common = [c for c in names_a if c in set(names_b)]
        if not common:
            continue
        ia = np.array([names_a.index(c) for c in common])
        ib = np.array([names_b.index(c) for c in common])
        per = _pair_metrics(
            np.ascontiguousarray(sa[ia]),
            np.ascontiguousarray(sb[ib]),
            tops[a][ia],
            tops[b][ib],
            ks,
            (prep[a][0][ia], prep[a][1][ia]),
            (None, prep[b][1][ib]),
        )
        m = len(common)
        for (metric, k), vals in per.items():
            frames.append(
                pl.DataFrame(
                    {
                        "model_a": [a[0]] * m,
                        "seed_a": [a[1]] * m,
                        "model_b": [b[0]] * m,
                        "seed_b": [b[1]] * m,
                        "variant": [variant] * m,
                        "class": common,
                        "metric": [metric] * m,
                        "k": [k] * m,
                        "value": vals,
                    },
                    schema=PAIRWISE_SCHEMA,
                )
            )
    pairwise = pl.concat(frames) if frames else pl.DataFrame(schema=PAIRWISE_SCHEMA)
    return MetricResult(scores=_summarise(pairwise)), pairwise


def _summarise(pairwise: pl.DataFrame) -> pl.DataFrame:
    """Mean over pairs per class, then the unweighted mean over classes."""
    keys = ["variant", "metric", "k"]
    per_class = pairwise.group_by([*keys, "class"]).agg(
        pl.col("value").filter(pl.col("value").is_not_nan()).mean().alias("value"),
        pl.len().alias("n"),
    )
    overall = per_class.group_by(keys).agg(
        pl.col("value").filter(pl.col("value").is_not_null()).mean().alias("value"),
        pl.col("n").max().alias("n"),
    )
    out = pl.concat(
        [per_class, overall.with_columns(pl.lit(None, dtype=pl.String).alias("class"))],
        how="diagonal",
    )
    return out.with_columns(pl.lit(None, dtype=pl.String).alias("control")).sort(
        ["variant", "metric", "k", "class"], nulls_last=True
    )


def sample_stability(
    values_a: np.ndarray,
    values_b: np.ndarray,
    *,
    k: int | float,
    classes: Sequence[Hashable] | np.ndarray | None = None,
    by: str = "signed",
) -> MetricResult:
    """The stability metrics per sample between two attribution runs of the same samples.

    Parameters
    ----------
    values_a, values_b
        ``(n, G)`` attributions; row ``i`` of both describes the same sample
        and target (the caller matches rows).
    k
        Top-k size: a count or a fraction of G.
    classes
        Optional class per row: per-class means and their unweighted mean.
    by
        ``signed`` (rank genes by signed attribution, the paper's order) or ``abs``.

    Returns
    -------
    MetricResult
        Metrics ``jaccard@k``, ``sign-agreement`` (``k`` set), ``spearman``,
        ``kendall``; variant ``per-sample``; averaged over samples.

    Examples
    --------
    >>> import numpy as np
    >>> r = sample_stability(np.array([[3.0, 2, 1, 0]]), np.array([[3.0, 1, 2, 0]]), k=2)
    >>> r.score("jaccard@k", k=2), r.score("kendall")
    (0.3333333333333333, 0.6666666666666666)
    """
    from ..kernels.topk import topk_rows

    a = np.asarray(values_a, dtype=np.float64)
    b = np.asarray(values_b, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise InputError(f"the two runs must have the same 2-D shape, got {a.shape} and {b.shape}")
    if by not in ("signed", "abs"):
        raise InputError(f"by must be 'signed' or 'abs', got {by!r}")
    kk = resolve_k(k, a.shape[1])
    records: dict[tuple[str, int | None], list[np.ndarray]] = {}
    chunk = 1024
    for s in range(0, a.shape[0], chunk):
        ca = np.ascontiguousarray(a[s : s + chunk])
        cb = np.ascontiguousarray(b[s : s + chunk])
        ra, rb = (np.abs(ca), np.abs(cb)) if by == "abs" else (ca, cb)
        ks = np.full(ca.shape[0], kk, dtype=np.int64)
        per = _pair_metrics(ra, rb, topk_rows(ra, ks), topk_rows(rb, ks), [kk])
        if by == "abs":  # sign agreement is about the signed values
            ta, tb = topk_rows(ra, ks), topk_rows(rb, ks)
            sign = np.empty(ca.shape[0])
            for r in range(ca.shape[0]):
                u = np.union1d(ta[r], tb[r])
                sign[r] = np.mean(np.sign(ca[r, u]) == np.sign(cb[r, u]))
            per[("sign-agreement", kk)] = sign
        for key, vals in per.items():
            records.setdefault(key, []).append(vals)
    per_sample = {key: np.concatenate(v) for key, v in records.items()}
    if classes is None:
        groups: dict[Any, np.ndarray] = {None: np.arange(a.shape[0])}
    else:
        cls = np.asarray(classes).astype(str)
        if cls.shape != (a.shape[0],):
            raise InputError(f"{cls.shape[0]} classes for {a.shape[0]} rows")
        groups = {c: np.flatnonzero(cls == c) for c in sorted(set(cls.tolist()))}
    rows: list[dict[str, Any]] = []
    for (metric, k_), vals in per_sample.items():
        means = []
        for c, idx in groups.items():
            v = vals[idx]
            v = v[np.isfinite(v)]
            mean = float(v.mean()) if v.size else float("nan")
            means.append(mean)
            if c is not None:
                rows.append(_srow(c, metric, k_, mean, v.size))
        if classes is None:
            rows.append(_srow(None, metric, k_, means[0], int(np.isfinite(vals).sum())))
        else:
            ok = [m for m in means if np.isfinite(m)]
            rows.append(_srow(None, metric, k_, float(np.mean(ok)) if ok else np.nan, a.shape[0]))
    return MetricResult(scores=pl.DataFrame(rows))


def _srow(cls: str | None, metric: str, k: int | None, value: float, n: int) -> dict[str, Any]:
    return {
        "class": cls,
        "metric": metric,
        "variant": "per-sample",
        "k": k,
        "control": None,
        "value": value,
        "n": int(n),
    }
