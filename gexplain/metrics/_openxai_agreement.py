"""OpenXAI's ground-truth faithfulness metrics (agreement with a reference attribution).

Definitions follow OpenXAI (Agarwal et al., "OpenXAI: Towards a Transparent
Evaluation of Model Explanations", NeurIPS 2022 Datasets and Benchmarks), which
takes them from Krishna et al. ("The Disagreement Problem in Explainable
Machine Learning", 2022). Features are ranked by the magnitude ``|value|``
(ties: lower column index first); ``top_k(E)`` is the set of the ``k`` largest.
For one sample with explanation ``E`` and reference ``R``:

=====  ======================================================================
FA     feature agreement: ``|top_k(E) ∩ top_k(R)| / k``
RA     rank agreement: features at the same position of both top-k lists, / k
SA     sign agreement: shared top-k features with the same sign, / k
SRA    signed rank agreement: same position and same sign, / k
RC     rank correlation: Spearman's correlation of the two full rankings by
       ``|value|`` (average ranks for ties)
PRA    pairwise rank agreement: fraction of all feature pairs whose relative
       order by ``|value|`` is the same in both (a pair tied in both counts as
       agreeing), computed in O(G log G) with Knight's pair counting
=====  ======================================================================

Each is averaged over samples (and, with ``classes``, per class and then over
classes). ``k`` is a count (``int``) or a fraction of the features (``float``
in ``(0, 1]``, rounded to the nearest count, at least 1); OpenXAI's integer ``k``
once returned None — here both forms give the same numbers.

A ground-truth attribution exists for linear models:
:func:`linear_reference_attribution` returns the target class's weight vector
in the model's input space (OpenXAI's reference for logistic regression), or
the exact IG of the logit, ``w ⊙ (x − x')``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from ..errors import InputError
from ._result import MetricResult

METRICS = ("FA", "RA", "SA", "SRA", "RC", "PRA")
_CHUNK = 1024


def resolve_k(k: int | float, n_features: int) -> int:
    """A count from ``k`` given as a count (``int``) or a fraction (``float`` in ``(0, 1]``).

    Examples
    --------
    >>> resolve_k(3, 10), resolve_k(0.3, 10), resolve_k(0.01, 10)
    (3, 3, 1)
    """
    if isinstance(k, bool):
        raise InputError("k must be a count or a fraction, not a bool")
    if isinstance(k, (int, np.integer)):
        if k <= 0:
            raise InputError(f"k must be positive, got {k}")
        return int(min(int(k), n_features))
    kf = float(k)
    if not 0 < kf <= 1:
        raise InputError(f"a fractional k must be in (0, 1], got {kf}")
    return int(max(1, min(n_features, round(kf * n_features))))


def _per_sample(values: np.ndarray, reference: np.ndarray, ks: list[int]) -> list[np.ndarray]:
    """Per-row metrics for each k; RC and PRA (independent of k) are computed once."""
    from ..kernels.topk import rank_stats_rows, topk_agreement_rows

    n = values.shape[0]
    outs = [np.empty((n, len(METRICS))) for _ in ks]
    for a in range(0, n, _CHUNK):
        b = min(n, a + _CHUNK)
        va = np.ascontiguousarray(values[a:b], dtype=np.float64)
        vb = np.ascontiguousarray(reference[a:b], dtype=np.float64)
        stats = rank_stats_rows(np.abs(va), np.abs(vb))
        for out, k in zip(outs, ks):
            out[a:b, :4] = topk_agreement_rows(va, vb, k)
            out[a:b, 4] = stats[:, 0]
            out[a:b, 5] = stats[:, 2]
    return outs


def openxai_agreement(
    values: np.ndarray,
    reference: np.ndarray,
    *,
    k: int | float | Sequence[int | float],
    classes: Sequence[str] | np.ndarray | None = None,
) -> MetricResult:
    """OpenXAI's FA, RA, SA, SRA, RC and PRA of attributions against a reference.

    Parameters
    ----------
    values
        ``(n, G)`` attributions.
    reference
        ``(n, G)`` ground-truth attributions (same rows), or ``(G,)`` for all rows.
    k
        Top-k size: a count, or a fraction of ``G``; or a sequence of them (one
        set of rows per distinct k; RC and PRA, which do not depend on k, are
        computed once).
    classes
        Optional class of each row: adds per-class rows (the class-null row is
        then the unweighted mean over classes).

    Returns
    -------
    MetricResult
        Metrics ``openxai-FA`` … ``openxai-PRA``, variant ``vs-truth``, ``k`` the count.
        Rows whose RC is undefined (a constant row) are left out of the RC mean.

    Examples
    --------
    >>> import numpy as np
    >>> r = openxai_agreement(np.array([[3.0, -2.0, 1.0]]), np.array([[3.0, 1.0, 2.0]]), k=2)
    >>> r.score("openxai-FA"), r.score("openxai-RA"), r.score("openxai-SA")
    (0.5, 0.5, 0.5)
    >>> r.score("openxai-RC"), round(r.score("openxai-PRA"), 4)
    (0.5, 0.6667)
    """
    v = np.asarray(values)
    ref = np.asarray(reference)
    if v.ndim != 2:
        raise InputError(f"attributions must be 2-D, got shape {v.shape}")
    if ref.ndim == 1:
        ref = np.broadcast_to(ref, v.shape)
    if ref.shape != v.shape:
        raise InputError(f"reference has shape {ref.shape}, attributions {v.shape}")
    many = isinstance(k, (list, tuple, np.ndarray))
    kks = sorted({resolve_k(x, v.shape[1]) for x in (k if many else [k])})  # type: ignore[union-attr]
    pers = _per_sample(v, ref, kks)
    if classes is None:
        groups = {None: np.arange(v.shape[0])}
    else:
        cls = np.asarray(classes).astype(str)
        if cls.shape != (v.shape[0],):
            raise InputError(f"{cls.shape[0]} classes for {v.shape[0]} rows")
        groups = {c: np.flatnonzero(cls == c) for c in sorted(set(cls.tolist()))}
    records: list[dict[str, Any]] = []
    for kk, per in zip(kks, pers):
        for j, m in enumerate(METRICS):
            means = []
            for c, rows in groups.items():
                col = per[rows, j]
                col = col[np.isfinite(col)]
                val = float(col.mean()) if col.size else float("nan")
                means.append(val)
                if c is not None:
                    records.append(_row(c, m, kk, val, col.size))
            if classes is not None:
                ok = [x for x in means if np.isfinite(x)]
                records.append(
                    _row(None, m, kk, float(np.mean(ok)) if ok else float("nan"), v.shape[0])
                )
            else:
                records.append(_row(None, m, kk, means[0], int(np.isfinite(per[:, j]).sum())))
    return MetricResult(scores=pl.DataFrame(records))


def _row(cls: str | None, metric: str, k: int, value: float, n: int) -> dict[str, Any]:
    return {
        "class": cls,
        "metric": f"openxai-{metric}",
        "variant": "vs-truth",
        "k": k,
        "control": None,
        "value": value,
        "n": int(n),
    }


def linear_reference_attribution(
    model: Any,
    X: np.ndarray,
    targets: np.ndarray,
    baseline: Any = "model-zero",
    *,
    kind: str = "weights",
) -> np.ndarray | None:
    """Ground-truth attribution of a linear model (``None`` for a non-linear one).

    For a model whose logits are affine in the input, ``logit_c(x) = x · w_c + b_c``
    with ``w_c`` the class's weight in the model's input space (every folded
    preprocessing included). OpenXAI's ground truth for logistic regression is
    ``w_c`` itself (``kind="weights"``). IG of the logit then has the closed
    form ``w_c ⊙ (x − x')`` (``kind="ig-logit"``), which gexplain's exact IG of
    the logit reproduces.

    Parameters
    ----------
    model
        A :class:`gexplain.explain.CompiledModel` or an ONNX path.
    X
        ``(n, G)`` inputs in the model's gene order.
    targets
        ``(n,)`` explained class indices.
    baseline
        ``model-zero`` (the model's zero input), or a ``(G,)`` / ``(n, G)`` array;
        only used by ``kind="ig-logit"``.
    kind
        ``weights`` or ``ig-logit``.

    Returns
    -------
    numpy.ndarray or None
        ``(n, G)`` float64.
    """
    from ..explain import CompiledModel

    cm = CompiledModel.load(model)
    if not cm.is_linear:
        return None
    x = np.asarray(X, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != cm.n_genes:
        raise InputError(f"X must be (n, {cm.n_genes}), got {x.shape}")
    t = np.asarray(targets, dtype=np.int64)
    if t.shape != (x.shape[0],):
        raise InputError(f"{t.shape[0]} targets for {x.shape[0]} rows")
    # head(z) = z A + c: the weight in input space is (W + b) A + c - (b A + c)
    b = cm.bias[None, :]
    w_eff = cm.head.forward(cm.weight + b) - cm.head.forward(b)  # (G, C)
    ref = np.ascontiguousarray(w_eff[:, t].T)
    if kind == "weights":
        return ref
    if kind != "ig-logit":
        raise InputError(f"kind must be 'weights' or 'ig-logit', got {kind!r}")
    if isinstance(baseline, str):
        if baseline != "model-zero":
            raise InputError("baseline must be 'model-zero' or an array")
        base = np.asarray(cm.model_zero, dtype=np.float64)
    else:
        base = np.asarray(baseline, dtype=np.float64)
    return ref * (x - base)
