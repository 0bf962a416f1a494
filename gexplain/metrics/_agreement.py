"""Agreement of attributions with the ground truth: the paper's feature agreement (FA)
and biomarker recovery (precision@k, recall@k, AUPRC).

Feature agreement (Bontonou et al., arXiv 2303.11336, "Metrics"): for class
``c`` with ``k_c`` true biomarkers,

- **local FA**: for each sample of class ``c``, the fraction of its ``k_c``
  highest (signed) attributions that are true biomarkers of ``c``; averaged over
  the class's samples, then (unweighted) over classes;
- **global FA**: each sample of ``c`` contributes its top-``k_c`` genes; the
  ``k_c`` genes selected most often across the class form the global set, and
  the score is the fraction of them that are true biomarkers. Tie rule: equal
  counts are ordered by the class mean of the L2-normalised attributions
  (descending), then by the lower column index;
- **diffused FA** (``diffused-local``, ``diffused-global``): the same on
  ``attr · S`` where ``S`` is the model's diffusion operator
  (``S = D^{-1/2}(A + I)D^{-1/2}``, read from the models folder's
  ``graph.parquet``), so that a gene correlated with true biomarkers is credited.

The random control (rows with ``control = "random"``) scores i.i.d. random
attributions (``random_draws`` draws, per-sample seeds) the same way; for
local FA its expected value is ``k_c / G``. Since the top-``k`` of i.i.d.
scores is a uniform random ``k``-subset, the plain variants draw the subsets
directly (global ties broken at random); the diffused variants draw standard
normal attributions and diffuse them.

Only the biomarkers present among ``gene_ids`` count (``k_c`` is their
number); classes without biomarkers or without rows are left out of the class
average.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from .._rng import SeedLike, as_seed, generator, sample_seeds
from ..errors import InputError
from ._aggregate import l2_normalize
from ._result import MetricResult

_CHUNK = 1024


def load_graph(path: str | os.PathLike[str], gene_ids: Sequence[str]) -> sp.csr_matrix:
    """The diffusion operator ``S`` of a models folder, ordered like ``gene_ids``.

    Parameters
    ----------
    path
        A ``graph.parquet`` (``gene_i, gene_j, weight``) or the models folder holding it.
    gene_ids
        Column order of the attributions.

    Returns
    -------
    scipy.sparse.csr_matrix
        ``S`` (G × G, float64). Genes absent from the graph get no entries
        (their diffused attribution is 0).
    """
    from ..models._graph import GRAPH_FILE, read_graph

    p = Path(path)
    if p.is_dir():
        p = p / GRAPH_FILE
    try:
        st = p.stat()
    except OSError:
        s, _ = read_graph(p, gene_ids)  # read_graph names the missing file
        return s
    return _cached_graph(str(p.resolve()), st.st_mtime_ns, st.st_size, tuple(map(str, gene_ids)))


@functools.lru_cache(maxsize=2)
def _cached_graph(path: str, mtime_ns: int, size: int, gene_ids: tuple[str, ...]) -> sp.csr_matrix:
    """One read per (file version, gene order): every diffused model of a run shares it."""
    from ..models._graph import read_graph

    s, _ = read_graph(Path(path), list(gene_ids))
    return sp.csr_matrix(s, dtype=np.float64)


def normal_rows(seeds: np.ndarray, g: int) -> np.ndarray:
    """Standard normal ``(n, g)`` float64 matrix, row ``i`` from its own PCG64 stream ``seeds[i]``.

    NumPy's ziggurat sampler: ~20× Numba's polar method, and rows depend only on
    their seed (any chunking gives the same matrix).
    """
    out = np.empty((len(seeds), g))
    for i, s in enumerate(np.asarray(seeds).tolist()):
        np.random.Generator(np.random.PCG64(s)).standard_normal(out=out[i])
    return out


def _diffuse(block: np.ndarray, s: sp.csr_matrix) -> np.ndarray:
    """``block @ S`` (rows of attributions diffused over the graph)."""
    from ..kernels.topk import diffuse_rows

    return diffuse_rows(np.ascontiguousarray(block, dtype=np.float64), s.indptr, s.indices, s.data)


def _truth_mask(truth: Any, class_names: Sequence[str], gene_ids: Sequence[str]) -> np.ndarray:
    """``(C, G)`` bool: gene ``j`` is a true biomarker of class ``c``."""
    sets = truth.biomarker_sets()
    lookup = {str(g): j for j, g in enumerate(gene_ids)}
    mask = np.zeros((len(class_names), len(gene_ids)), dtype=bool)
    for i, c in enumerate(class_names):
        for g in sets.get(str(c), ()):
            j = lookup.get(g)
            if j is not None:
                mask[i, j] = True
    return mask


def _check(
    values: np.ndarray, classes: Any, gene_ids: Sequence[str]
) -> tuple[np.ndarray, list[str], np.ndarray]:
    v = np.asarray(values)
    if v.ndim != 2:
        raise InputError(f"attributions must be 2-D (samples × genes), got shape {v.shape}")
    cls = np.asarray(classes).astype(str)
    if cls.shape != (v.shape[0],):
        raise InputError(f"{cls.shape[0]} classes for {v.shape[0]} attribution rows")
    if len(gene_ids) != v.shape[1]:
        raise InputError(f"{len(gene_ids)} gene ids for {v.shape[1]} attribution columns")
    names = sorted(set(cls.tolist()))
    idx = np.searchsorted(np.asarray(names), cls).astype(np.int64)
    return v, names, idx


def _topk_stats(
    rows: Any,
    n: int,
    g: int,
    cls_idx: np.ndarray,
    kc: np.ndarray,
    mask: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row local FA, per-class top-k counts and per-class sums of normalised rows.

    ``rows(a, b)`` returns the float64 attribution rows ``a:b`` (already diffused).
    """
    from ..kernels.topk import topk_rows

    n_cls = mask.shape[0]
    local = np.empty(n)
    counts = np.zeros(n_cls * g)
    sums = np.zeros((n_cls, g))
    for a in range(0, n, _CHUNK):
        b = min(n, a + _CHUNK)
        block = rows(a, b)
        ci = cls_idx[a:b]
        ks = kc[ci]
        top = topk_rows(block, ks)
        local[a:b] = _hits(top, ci, ks, mask, counts)
        normed = l2_normalize(block)
        for c in np.unique(ci):
            sums[c] += normed[ci == c].sum(axis=0)
    return local, counts.reshape(n_cls, g), sums


def _hits(
    top: np.ndarray, ci: np.ndarray, ks: np.ndarray, mask: np.ndarray, counts: np.ndarray
) -> np.ndarray:
    """Fraction of each row's top set that is true; adds the genes to the per-class ``counts``."""
    g = mask.shape[1]
    valid = top >= 0
    hit = np.zeros(top.shape, dtype=bool)
    hit[valid] = mask[np.broadcast_to(ci[:, None], top.shape)[valid], top[valid]]
    flat = (ci[:, None] * g + np.where(valid, top, 0))[valid]
    counts += np.bincount(flat, minlength=counts.size)
    return hit.sum(axis=1) / np.maximum(ks, 1)


def _random_subset_fa(
    n: int, g: int, cls_idx: np.ndarray, kc: np.ndarray, mask: np.ndarray, seed: int, d: int
) -> tuple[np.ndarray, np.ndarray]:
    """FA of random attributions without drawing them: the top-k of i.i.d. scores is a
    uniform random k-subset (per-sample seeds); global ties are broken at random."""
    from ..kernels.topk import random_subsets

    n_cls = mask.shape[0]
    local = np.empty(n)
    counts = np.zeros(n_cls * g)
    for a in range(0, n, _CHUNK):
        b = min(n, a + _CHUNK)
        ci = cls_idx[a:b]
        ks = kc[ci]
        top = random_subsets(sample_seeds(seed, f"metrics.fa.random.{d}", a, b), ks, g)
        local[a:b] = _hits(top, ci, ks, mask, counts)
    tiebreak = generator(seed, f"metrics.fa.random-ties.{d}").random((n_cls, g))
    per_class = np.full(n_cls, np.nan)
    for c in range(n_cls):
        sel = cls_idx == c
        if sel.any() and kc[c] > 0:
            per_class[c] = local[sel].mean()
    return per_class, _global_fa(counts.reshape(n_cls, g), tiebreak, kc, mask)


def _global_fa(
    counts: np.ndarray, sums: np.ndarray, kc: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    g = counts.shape[1]
    out = np.full(counts.shape[0], np.nan)
    cols = np.arange(g)
    for c in range(counts.shape[0]):
        if kc[c] == 0:
            continue
        order = np.lexsort((cols, -sums[c], -counts[c]))[: kc[c]]
        out[c] = mask[c, order].mean()
    return out


def _fa_scores(
    rows: Any, n: int, g: int, cls_idx: np.ndarray, kc: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class local and global FA (NaN for classes without biomarkers or rows)."""
    local, counts, sums = _topk_stats(rows, n, g, cls_idx, kc, mask)
    n_cls = mask.shape[0]
    per_class = np.full(n_cls, np.nan)
    for c in range(n_cls):
        sel = cls_idx == c
        if sel.any() and kc[c] > 0:
            per_class[c] = local[sel].mean()
    return per_class, _global_fa(counts, sums, kc, mask)


def _class_rows(
    metric: str,
    variant: str,
    names: Sequence[str],
    per_class: np.ndarray,
    kc: np.ndarray,
    n_per_class: np.ndarray,
    control: str | None,
) -> list[dict[str, Any]]:
    out = []
    ok = np.isfinite(per_class)
    for c, name in enumerate(names):
        if ok[c]:
            out.append(
                {
                    "class": name,
                    "metric": metric,
                    "variant": variant,
                    "k": int(kc[c]),
                    "control": control,
                    "value": float(per_class[c]),
                    "n": int(n_per_class[c]),
                }
            )
    if ok.any():
        out.append(
            {
                "class": None,
                "metric": metric,
                "variant": variant,
                "k": None,
                "control": control,
                "value": float(per_class[ok].mean()),
                "n": int(n_per_class[ok].sum()),
            }
        )
    return out


def feature_agreement(
    values: np.ndarray,
    classes: Sequence[str] | np.ndarray,
    truth: Any,
    gene_ids: Sequence[str],
    *,
    graph: sp.spmatrix | str | os.PathLike[str] | None = None,
    seed: SeedLike = 0,
    random_draws: int = 10,
) -> MetricResult:
    """The paper's feature agreement (local, global, and diffused) with a random control.

    Parameters
    ----------
    values
        ``(n, G)`` signed attributions, one row per explained (correctly classified) sample.
    classes
        The explained class of each row.
    truth
        A :class:`gexplain.cohort.GroundTruth` (simulated, or
        :meth:`~gexplain.cohort.GroundTruth.from_gene_sets`).
    gene_ids
        Gene ids of the columns.
    graph
        Diffusion operator ``S`` (sparse G × G in ``gene_ids`` order), or a
        ``graph.parquet`` / models folder to read it from (:func:`load_graph`).
        ``None`` skips the diffused variants.
    seed
        Seed of the random control (per-sample seeds, so independent of chunking).
    random_draws
        Random attribution draws averaged in the control (0 disables it).

    Returns
    -------
    MetricResult
        ``metric = "FA"``, variants ``local``, ``global`` (and ``diffused-local``,
        ``diffused-global``); ``k`` is ``k_c`` on class rows; ``n`` the number of samples.

    Examples
    --------
    >>> import numpy as np
    >>> from gexplain.cohort import GroundTruth
    >>> truth = GroundTruth.from_gene_sets({"a": ["g0", "g1"]})
    >>> v = np.array([[3.0, 1.0, 2.0], [2.0, 3.0, 1.0]])
    >>> r = feature_agreement(v, ["a", "a"], truth, ["g0", "g1", "g2"], random_draws=0)
    >>> r.score("FA", "local"), r.score("FA", "global")
    (0.75, 1.0)
    """
    v, names, cls_idx = _check(values, classes, gene_ids)
    n, g = v.shape
    mask = _truth_mask(truth, names, gene_ids)
    kc = mask.sum(axis=1).astype(np.int64)
    n_per_class = np.bincount(cls_idx, minlength=len(names))
    if not (kc > 0).any():
        raise InputError("no explained class has a true biomarker among the attribution's genes")
    s = None
    if graph is not None:
        s = graph if sp.issparse(graph) else load_graph(graph, gene_ids)
        s = sp.csr_matrix(s, dtype=np.float64)
        s.sort_indices()
        if s.shape != (g, g):
            raise InputError(f"the diffusion graph is {s.shape}, expected ({g}, {g})")

    def plain(a: int, b: int) -> np.ndarray:
        return np.ascontiguousarray(v[a:b], dtype=np.float64)

    def diffused(source: Any) -> Any:
        def rows(a: int, b: int) -> np.ndarray:
            return _diffuse(source(a, b), s)

        return rows

    variants: list[tuple[str, str, Any]] = [("local", "global", plain)]
    if s is not None:
        variants.append(("diffused-local", "diffused-global", diffused(plain)))
    records: list[dict[str, Any]] = []
    for loc, glo, rows in variants:
        per_local, per_global = _fa_scores(rows, n, g, cls_idx, kc, mask)
        records += _class_rows("FA", loc, names, per_local, kc, n_per_class, None)
        records += _class_rows("FA", glo, names, per_global, kc, n_per_class, None)
    if random_draws > 0:
        base = as_seed(seed)
        for loc, glo, _ in variants:
            acc_l = np.zeros(len(names))
            acc_g = np.zeros(len(names))
            for d in range(random_draws):

                def rand(a: int, b: int, d: int = d) -> np.ndarray:
                    return normal_rows(sample_seeds(base, f"metrics.fa.random.{d}", a, b), g)

                if loc.startswith("diffused"):
                    per_local, per_global = _fa_scores(diffused(rand), n, g, cls_idx, kc, mask)
                else:
                    per_local, per_global = _random_subset_fa(n, g, cls_idx, kc, mask, base, d)
                acc_l += per_local
                acc_g += per_global
            records += _class_rows(
                "FA", loc, names, acc_l / random_draws, kc, n_per_class, "random"
            )
            records += _class_rows(
                "FA", glo, names, acc_g / random_draws, kc, n_per_class, "random"
            )
    return MetricResult(scores=pl.DataFrame(records, schema=_SCHEMA))


_SCHEMA = {
    "class": pl.String,
    "metric": pl.String,
    "variant": pl.String,
    "k": pl.Int64,
    "control": pl.String,
    "value": pl.Float64,
    "n": pl.Int64,
}


def _default_ks(g: int) -> list[int]:
    return [k for k in (1, 5, 10, 20, 50, 100, 200, 500, 1000) if k <= g] or [g]


def _recovery_rows(
    scores: np.ndarray,
    mask: np.ndarray,
    names: Sequence[str],
    ks: Sequence[int],
    n_per_class: np.ndarray,
    control: str | None,
) -> list[dict[str, Any]]:
    from ..kernels.topk import average_precision_rows, topk_rows

    n_cls, g = scores.shape
    npos = mask.sum(axis=1)
    ok = npos > 0
    kmax = min(max(ks), g)
    top = topk_rows(np.ascontiguousarray(scores), np.full(n_cls, kmax, dtype=np.int64))
    hits = np.take_along_axis(mask, top, axis=1).cumsum(axis=1)
    ap = average_precision_rows(np.ascontiguousarray(scores), mask)
    per: dict[tuple[str, int | None], np.ndarray] = {}
    for k in ks:
        kk = min(int(k), g)
        per[("precision@k", int(k))] = hits[:, kk - 1] / kk
        per[("recall@k", int(k))] = hits[:, kk - 1] / np.maximum(npos, 1)
    per[("AUPRC", None)] = ap
    out: list[dict[str, Any]] = []
    for (metric, k), vals in per.items():
        for c, name in enumerate(names):
            if ok[c]:
                out.append(
                    {
                        "class": name,
                        "metric": metric,
                        "variant": "abs",
                        "k": k,
                        "control": control,
                        "value": float(vals[c]),
                        "n": int(n_per_class[c]),
                    }
                )
        out.append(
            {
                "class": None,
                "metric": metric,
                "variant": "abs",
                "k": k,
                "control": control,
                "value": float(vals[ok].mean()),
                "n": int(n_per_class[ok].sum()),
            }
        )
    return out


def biomarker_recovery(
    values: np.ndarray,
    classes: Sequence[str] | np.ndarray,
    truth: Any,
    gene_ids: Sequence[str],
    *,
    ks: Sequence[int] | None = None,
    seed: SeedLike = 0,
    random_draws: int = 10,
) -> MetricResult:
    """Precision@k, recall@k and AUPRC of each class's ``|attribution|`` ranking.

    The class ranking is the class mean of the absolute L2-normalised
    attributions, ``mean_i |x_i / ||x_i|| |``; its top-``k`` genes are compared
    with the class's true biomarkers: ``precision@k = hits / k``,
    ``recall@k = hits / k_c``; AUPRC is the average precision of the whole
    ranking (step-wise, ties entering together; its random expectation is
    about ``k_c / G``). Ties in the top-k are broken by the lower column index.

    Parameters
    ----------
    values, classes, truth, gene_ids
        As in :func:`feature_agreement`.
    ks
        Cut-offs (default 1, 5, 10, 20, 50, 100, 200, 500, 1000 up to G; a k
        above G counts as G).
    seed, random_draws
        Random control: class scores drawn i.i.d. standard normal, averaged over draws.

    Returns
    -------
    MetricResult
        Metrics ``precision@k``, ``recall@k`` (``k`` set) and ``AUPRC``, variant ``abs``.

    Examples
    --------
    >>> import numpy as np
    >>> from gexplain.cohort import GroundTruth
    >>> truth = GroundTruth.from_gene_sets({"a": ["g0"]})
    >>> r = biomarker_recovery(np.array([[1.0, -2.0, 0.5]]), ["a"], truth, ["g0", "g1", "g2"],
    ...                        ks=[1, 2], random_draws=0)
    >>> r.score("precision@k", k=2), r.score("recall@k", k=1), r.score("AUPRC")
    (0.5, 0.0, 0.5)
    """
    v, names, cls_idx = _check(values, classes, gene_ids)
    n, g = v.shape
    mask = _truth_mask(truth, names, gene_ids)
    if not mask.any():
        raise InputError("no explained class has a true biomarker among the attribution's genes")
    ks = _default_ks(g) if ks is None else [int(k) for k in ks]
    if any(k <= 0 for k in ks):
        raise InputError("every k must be positive")
    n_per_class = np.bincount(cls_idx, minlength=len(names))
    scores = np.zeros((len(names), g))
    for a in range(0, n, _CHUNK):
        b = min(n, a + _CHUNK)
        block = np.abs(l2_normalize(v[a:b]))
        ci = cls_idx[a:b]
        for c in np.unique(ci):
            scores[c] += block[ci == c].sum(axis=0)
    scores /= np.maximum(n_per_class, 1)[:, None]
    records = _recovery_rows(scores, mask, names, ks, n_per_class, None)
    if random_draws > 0:
        base = as_seed(seed)
        acc: pl.DataFrame | None = None
        for d in range(random_draws):
            rnd = normal_rows(sample_seeds(base, f"metrics.recovery.random.{d}", 0, len(names)), g)
            frame = pl.DataFrame(
                _recovery_rows(rnd, mask, names, ks, n_per_class, "random"), schema=_SCHEMA
            )
            acc = frame if acc is None else acc.with_columns(acc["value"] + frame["value"])
        assert acc is not None
        records += acc.with_columns(pl.col("value") / random_draws).to_dicts()
    return MetricResult(scores=pl.DataFrame(records, schema=_SCHEMA))
