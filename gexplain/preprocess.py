"""Preprocessing steps: pure functions ``Cohort -> Cohort``, each recorded in ``cohort.json``.

Every step appends ``{"step": NAME, "transforms_values": bool, ...params}`` to
``cohort.meta["preprocessing"]``. Steps that change values (``log2p1``, ``cpm``,
``tpm``, ``zscore``) are the cohort's *value transforms*: a model records the
list it was trained with, and every later stage refuses a cohort whose list
differs (:func:`gexplain.modelmeta.prepare_cohort`).

The paper's recipe for real data is ``log2p1`` → ``filter_genes`` → ``split``;
the per-gene z-score with training statistics is folded into the exported model
by training (so it is *not* applied to the stored cohort), which keeps
attributions in the space of the stored values. :func:`zscore` exists for users
who want standardised values themselves.

Column statistics are computed in sample chunks with float64 accumulation, so
the steps run over memory-mapped cohorts larger than RAM without loading them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import polars as pl

from ._rng import SeedLike, as_seed
from .cohort import Cohort
from .errors import InputError

__all__ = [
    "column_stats",
    "cpm",
    "filter_genes",
    "filter_variance",
    "log2p1",
    "split",
    "tpm",
    "zscore",
    "zscore_stats",
]

_CHUNK_BYTES = 64 * 2**20


def _row_chunks(x: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    step = max(1, _CHUNK_BYTES // max(1, 4 * x.shape[1]))
    for start in range(0, x.shape[0], step):
        yield start, x[start : start + step]


def _with_step(cohort: Cohort, x: np.ndarray | None, step: dict[str, Any], **kw: Any) -> Cohort:
    meta = dict(cohort.meta)
    meta["preprocessing"] = [*meta.get("preprocessing", []), step]
    if "units" in kw:
        meta["units"] = kw.pop("units")
    return Cohort(
        cohort.expression if x is None else x,
        kw.pop("samples", cohort.samples),
        kw.pop("genes", cohort.genes),
        meta,
        truth=cohort.truth,
    )


def _refuse_twice(cohort: Cohort, name: str, force: bool) -> None:
    if not force and name in cohort.value_transforms:
        raise InputError(
            f"the cohort is already transformed by {name!r} (recorded in cohort.json); "
            "pass force=True (CLI: --force) to apply it again"
        )


def _map_chunks(cohort: Cohort, fn: Any) -> np.ndarray:
    x = cohort.expression
    out = np.empty(x.shape, dtype=np.float32)
    for start, block in _row_chunks(x):
        out[start : start + block.shape[0]] = fn(block.astype(np.float64))
    return out


def column_stats(cohort: Cohort, samples: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-gene ``n_nan``, ``n_inf``, ``min``, ``max``, ``mean``, ``var`` (ddof 0), in chunks.

    Parameters
    ----------
    cohort
        Any cohort (memory-mapped ones are read chunk by chunk).
    samples
        Optional boolean mask or row indices restricting the samples.

    Notes
    -----
    Means and variances ignore non-finite values and use float64 accumulation
    (Chan et al.'s pairwise update between chunks).
    """
    x = cohort.expression
    g = x.shape[1]
    n = np.zeros(g)
    mean = np.zeros(g)
    m2 = np.zeros(g)
    lo = np.full(g, np.inf)
    hi = np.full(g, -np.inf)
    n_nan = np.zeros(g, dtype=np.int64)
    n_inf = np.zeros(g, dtype=np.int64)
    rows = None if samples is None else np.asarray(samples)
    if rows is not None and rows.dtype == bool:
        rows = np.flatnonzero(rows)
    for start, block in _row_chunks(x):
        if rows is not None:
            sel = rows[(rows >= start) & (rows < start + block.shape[0])] - start
            block = block[sel]
        if block.shape[0] == 0:
            continue
        b = block.astype(np.float64)
        nan = np.isnan(b)
        inf = np.isinf(b)
        n_nan += nan.sum(axis=0)
        n_inf += inf.sum(axis=0)
        finite = ~(nan | inf)
        bz = np.where(finite, b, 0.0)
        cnt = finite.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            bmean = np.where(cnt > 0, bz.sum(axis=0) / np.maximum(cnt, 1), 0.0)
            bm2 = (np.where(finite, b - bmean, 0.0) ** 2).sum(axis=0)
        tot = n + cnt
        delta = bmean - mean
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(tot > 0, mean + delta * cnt / np.maximum(tot, 1), 0.0)
            m2 = m2 + bm2 + delta**2 * n * cnt / np.maximum(tot, 1)
        n = tot
        lo = np.minimum(lo, np.where(finite, b, np.inf).min(axis=0))
        hi = np.maximum(hi, np.where(finite, b, -np.inf).max(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.where(n > 0, m2 / np.maximum(n, 1), np.nan)
    mean = np.where(n > 0, mean, np.nan)
    return {"n": n, "n_nan": n_nan, "n_inf": n_inf, "min": lo, "max": hi, "mean": mean, "var": var}


def log2p1(cohort: Cohort, *, force: bool = False) -> Cohort:
    """``log2(x + 1)`` of every value (the paper's transform of real data).

    Examples
    --------
    >>> import numpy as np, gexplain as gx
    >>> c = gx.preprocess.log2p1(gx.Cohort(np.array([[0.0, 1.0, 3.0]])))
    >>> c.expression, c.value_transforms
    (array([[0., 1., 2.]], dtype=float32), ['log2p1'])
    """
    _refuse_twice(cohort, "log2p1", force)
    x = cohort.expression
    neg = None
    for start, block in _row_chunks(x):
        bad = np.argwhere(block < -1)
        if bad.size:
            neg = (start + int(bad[0, 0]), int(bad[0, 1]))
            break
    if neg is not None:
        raise InputError(
            f"log2(x+1) needs values ≥ -1; sample {cohort.sample_ids[neg[0]]!r}, "
            f"gene {cohort.gene_ids[neg[1]]!r} is {x[neg]}"
        )
    out = _map_chunks(cohort, lambda b: np.log1p(b) / np.log(2.0))
    units = cohort.meta.get("units", "unknown")
    return _with_step(
        cohort, out, {"step": "log2p1", "transforms_values": True}, units=f"log2({units}+1)"
    )


def cpm(cohort: Cohort, *, force: bool = False) -> Cohort:
    """Counts per million: each sample divided by its total, times 10⁶."""
    _refuse_twice(cohort, "cpm", force)

    def f(b: np.ndarray) -> np.ndarray:
        tot = b.sum(axis=1, keepdims=True)
        if (tot <= 0).any():
            raise InputError("a sample has a total of 0 counts; CPM is undefined for it")
        return b / tot * 1e6

    return _with_step(
        cohort, _map_chunks(cohort, f), {"step": "cpm", "transforms_values": True}, units="CPM"
    )


def tpm(cohort: Cohort, *, length_column: str = "length", force: bool = False) -> Cohort:
    """Transcripts per million from counts, with gene lengths from the gene table.

    ``TPM = 10⁶ · (x / length) / Σ (x / length)`` per sample.
    """
    _refuse_twice(cohort, "tpm", force)
    if length_column not in cohort.genes.columns:
        raise InputError(
            f"TPM needs gene lengths: the gene table has no {length_column!r} column",
            column=length_column,
        )
    length = cohort.genes[length_column].cast(pl.Float64).to_numpy()
    if not np.all(length > 0):
        raise InputError(
            f"gene lengths in {length_column!r} must be positive", column=length_column
        )

    def f(b: np.ndarray) -> np.ndarray:
        rate = b / length
        return rate / rate.sum(axis=1, keepdims=True) * 1e6

    return _with_step(
        cohort, _map_chunks(cohort, f), {"step": "tpm", "transforms_values": True}, units="TPM"
    )


def filter_genes(cohort: Cohort, *, drop_nan: bool = True, min_max: float | None = 0.0) -> Cohort:
    """The paper's gene filter: drop genes with any NaN, and genes whose maximum is ≤ ``min_max``.

    Examples
    --------
    >>> import numpy as np, gexplain as gx
    >>> x = np.array([[0.0, 1.0, np.nan], [0.0, 2.0, 1.0]])
    >>> gx.preprocess.filter_genes(gx.Cohort(x, genes=["a", "b", "c"])).gene_ids
    ['b']
    """
    st = column_stats(cohort)
    keep = np.ones(cohort.n_genes, dtype=bool)
    if drop_nan:
        keep &= st["n_nan"] == 0
    if min_max is not None:
        keep &= st["max"] > min_max
    step = {
        "step": "filter_genes",
        "transforms_values": False,
        "drop_nan": drop_nan,
        "min_max": min_max,
        "n_before": cohort.n_genes,
        "n_after": int(keep.sum()),
    }
    out = cohort.select(genes=keep)
    return _with_step(out, None, step)


def _train_mask(cohort: Cohort, split_name: str | None) -> np.ndarray | None:
    if split_name is None:
        return None
    if "split" not in cohort.samples.columns:
        raise InputError(
            f"statistics are taken on the {split_name!r} split but the cohort has no 'split' "
            "column; run gexplain.preprocess.split first (or pass split=None)"
        )
    mask = (cohort.samples["split"] == split_name).to_numpy()
    if not mask.any():
        raise InputError(f"no sample is in split {split_name!r}")
    return mask


def filter_variance(
    cohort: Cohort,
    *,
    min_variance: float | None = None,
    top_n: int | None = None,
    split: str | None = "train",
) -> Cohort:
    """Keep genes with variance ≥ ``min_variance`` and/or the ``top_n`` most variable.

    Variances are computed on the ``split`` samples (training data by default, so
    test samples do not leak into the choice of genes).
    """
    if min_variance is None and top_n is None:
        raise ValueError("give min_variance and/or top_n")
    var = column_stats(cohort, _train_mask(cohort, split))["var"]
    var = np.nan_to_num(var, nan=-np.inf)
    keep = np.ones(cohort.n_genes, dtype=bool)
    if min_variance is not None:
        keep &= var >= min_variance
    if top_n is not None and top_n < keep.sum():
        order = np.argsort(-np.where(keep, var, -np.inf), kind="stable")[:top_n]
        keep = np.zeros(cohort.n_genes, dtype=bool)
        keep[order] = True
    step = {
        "step": "filter_variance",
        "transforms_values": False,
        "min_variance": min_variance,
        "top_n": top_n,
        "split": split,
        "n_before": cohort.n_genes,
        "n_after": int(keep.sum()),
    }
    return _with_step(cohort.select(genes=keep), None, step)


def zscore_stats(cohort: Cohort, split: str | None = "train") -> tuple[np.ndarray, np.ndarray]:
    """Per-gene mean and standard deviation (ddof 0) on the ``split`` samples.

    A standard deviation of 0 (a constant gene) is returned as 1, so the gene
    maps to 0 after standardisation instead of dividing by zero.
    """
    st = column_stats(cohort, _train_mask(cohort, split))
    if (st["n_nan"] > 0).any():
        raise InputError(
            f"{int((st['n_nan'] > 0).sum())} genes hold NaN values; filter or fill them first "
            "(gexplain.preprocess.filter_genes)"
        )
    std = np.sqrt(st["var"])
    std[~(std > 0)] = 1.0
    return st["mean"], std


def zscore(cohort: Cohort, *, split: str | None = "train", force: bool = False) -> Cohort:
    """Standardise each gene with the mean and std of the ``split`` samples.

    The statistics are kept in the gene table (``zscore_mean``, ``zscore_std``).
    gexplain's training folds this step into the model instead; use this only
    to inspect or export standardised values.
    """
    _refuse_twice(cohort, "zscore", force)
    mean, std = zscore_stats(cohort, split)
    out = _map_chunks(cohort, lambda b: (b - mean) / std)
    genes = cohort.genes.with_columns(pl.Series("zscore_mean", mean), pl.Series("zscore_std", std))
    return _with_step(
        cohort,
        out,
        {"step": "zscore", "transforms_values": True, "split": split},
        genes=genes,
        units=f"z-score of {cohort.meta.get('units', 'unknown')}",
    )


def split(
    cohort: Cohort,
    *,
    test_size: float = 0.4,
    seed: SeedLike = 0,
    stratify: str | None = "label",
) -> Cohort:
    """Assign each sample to ``"train"`` or ``"test"`` (the paper: 60/40, stratified by label).

    Parameters
    ----------
    cohort
        The cohort; an existing ``split`` column is replaced.
    test_size
        Fraction of samples in the test split (0 < test_size < 1).
    seed
        Seed (int or ``numpy.random.Generator``).
    stratify
        Sample column to stratify on (``None`` for a plain random split).

    Examples
    --------
    >>> import numpy as np, gexplain as gx
    >>> c = gx.Cohort(np.zeros((10, 2)), {"sample_id": list("abcdefghij"), "label": list("xxxxxyyyyy")})
    >>> s = gx.preprocess.split(c, test_size=0.4, seed=0)
    >>> s.samples.group_by("label", "split").len().sort("label", "split")["len"].to_list()
    [2, 3, 2, 3]
    """
    from sklearn.model_selection import train_test_split

    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}")
    s = as_seed(seed)
    labels = None
    if stratify is not None:
        if stratify not in cohort.samples.columns:
            raise InputError(f"cannot stratify: no sample column {stratify!r}", column=stratify)
        labels = cohort.samples[stratify].cast(pl.String).fill_null("<null>").to_numpy()
        _, counts = np.unique(labels, return_counts=True)
        if (counts < 2).any():
            raise InputError(f"cannot stratify on {stratify!r}: some classes have a single sample")
    idx = np.arange(cohort.n_samples)
    _, test_idx = train_test_split(
        idx, test_size=test_size, random_state=s % 2**32, stratify=labels
    )
    is_test = np.zeros(cohort.n_samples, dtype=bool)
    is_test[test_idx] = True
    samples = cohort.samples.with_columns(
        split=pl.Series(np.where(is_test, "test", "train")).cast(pl.String)
    )
    step = {
        "step": "split",
        "transforms_values": False,
        "test_size": test_size,
        "seed": s,
        "stratify": stratify,
    }
    return _with_step(cohort, None, step, samples=samples)
