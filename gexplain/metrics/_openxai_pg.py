"""Prediction gaps of the OpenXAI family: Gaussian perturbations of the top-k or other genes.

Definition (Agarwal et al., "OpenXAI: Towards a Transparent Evaluation of
Model Explanations", NeurIPS 2022 Datasets and Benchmarks): for a sample
``x`` with explained class ``y`` and the set ``T_k`` of its ``k`` genes of
largest ``|attribution|``,

    PGI(x, k) = (1/n) Σ_t |f_y(x + δ_t ⊙ 1[T_k]) − f_y(x)|     (perturb the top-k)
    PGU(x, k) = (1/n) Σ_t |f_y(x + δ_t ⊙ 1[not T_k]) − f_y(x)| (perturb all the others)

with ``δ_t ~ N(0, std² I)`` (``std = 0.1``, ``n = 100`` perturbations), in the
model's input units; ``f_y`` is the softmax probability of ``y`` (or the
logit / log-probability). A faithful attribution has a large PGI and a small
PGU. ``k`` is a count (int) or a fraction of the ``d`` genes (float in (0, 1],
``round(k d)``, at least 1); the ``k`` column of the scores is always the
count. The AUC over a grid of ``k`` is the trapezoid rule over ``k/d``.

Ties in ``|attribution|`` are broken by gene index (lower first). The noise is
drawn per sample from its own seed (by global sample index): perturbation
``t`` draws ``d`` standard normals in gene order, and the same draws serve PGI,
PGU and every ``k`` (common random numbers), so any chunking or thread count
gives the same numbers. The random-attribution control (``control =
"random"``) replaces each sample's ranking by a uniformly random permutation
(its own seed stream) with the same noise.

Two bugs of earlier OpenXAI releases are guarded by the tests: PGI once
perturbed the unimportant features (computing PGU), and an integer ``k``
once made the metric return ``None``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._rng import SeedLike, as_seed, sample_seeds
from ..errors import InputError
from ._pg import (
    ModelArrays,
    auto_chunk,
    check_inputs,
    class_means,
    frame,
    load_model,
    plan_chunks,
    resolve_classes,
    score_rows,
)
from ._result import MetricResult

_NOISE_STREAM = "metrics.openxai.noise"
_RANDOM_STREAM = "metrics.openxai.random-ranking"


def resolve_ks(k: Any, d: int) -> list[int]:
    """Gene counts of ``k``: an int count, a float fraction of ``d``, or a sequence of these.

    Returns the sorted distinct counts, each in ``1..d``.

    Examples
    --------
    >>> resolve_ks(0.25, 8), resolve_ks(2, 8), resolve_ks([1, 0.5, 4], 8)
    ([2], [2], [1, 4])
    """
    items = list(k) if isinstance(k, (list, tuple, np.ndarray)) else [k]
    if not items:
        raise InputError("k: give at least one count or fraction")
    out = []
    for v in items:
        if isinstance(v, bool):
            raise InputError(f"k must be a count or a fraction, got {v!r}")
        if isinstance(v, (int, np.integer)):
            c = int(v)
        elif isinstance(v, (float, np.floating)):
            if not 0.0 < float(v) <= 1.0:
                raise InputError(f"a fractional k must lie in (0, 1], got {v}")
            c = max(1, round(float(v) * d))
        else:
            raise InputError(f"k must be a count or a fraction, got {v!r}")
        if not 1 <= c <= d:
            raise InputError(f"k = {c} genes is outside 1..{d}")
        out.append(c)
    return sorted(set(out))


@dataclass
class OpenXAIPlan:
    """Inputs of one chunk of the OpenXAI pass (picklable)."""

    arrays: ModelArrays
    X: np.ndarray
    attr: np.ndarray
    targets: np.ndarray
    ks: np.ndarray
    n_perturb: int
    std: float
    seed: int
    sample_index: np.ndarray
    random_control: bool


@dataclass
class OpenXAIChunk:
    """Per-sample gaps of rows ``start:stop``: ``(n, nk)`` each; controls empty when off."""

    start: int
    stop: int
    pgi: np.ndarray
    pgu: np.ndarray
    pgi_random: np.ndarray
    pgu_random: np.ndarray


def _seeds(seed: int, stream: str, index: np.ndarray) -> np.ndarray:
    out = np.empty(index.shape[0], dtype=np.uint32)
    for j, g in enumerate(index):
        out[j] = sample_seeds(seed, stream, int(g), int(g) + 1)[0]
    return out


def openxai_chunk(plan: OpenXAIPlan, start: int, stop: int) -> OpenXAIChunk:
    """OpenXAI gaps of rows ``start:stop`` of ``plan`` (a pure function of the range)."""
    from ..kernels.pg import openxai_gaps, topk_abs_orders

    a = plan.arrays
    idx = plan.sample_index[start:stop]
    noise = _seeds(plan.seed, _NOISE_STREAM, idx)
    x = plan.X[start:stop]
    t = plan.targets[start:stop]
    kmax = int(plan.ks[-1])
    args = (x, a.weight, a.bias, a.layers, a.params, a.n_acts, t, a.mode)
    top = topk_abs_orders(plan.attr[start:stop], kmax, noise, False)
    pgi, pgu = openxai_gaps(*args, top, plan.ks, plan.n_perturb, plan.std, noise)
    if plan.random_control:
        rnd = topk_abs_orders(
            plan.attr[start:stop], kmax, _seeds(plan.seed, _RANDOM_STREAM, idx), True
        )
        rpgi, rpgu = openxai_gaps(*args, rnd, plan.ks, plan.n_perturb, plan.std, noise)
    else:
        rpgi = rpgu = np.zeros((0, plan.ks.shape[0]))
    return OpenXAIChunk(start, stop, pgi, pgu, rpgi, rpgu)


def openxai_prediction_gaps(
    model: Any,
    X: Any,
    attributions: Any,
    targets: Any,
    *,
    k: int | float | Sequence[int | float] = 0.1,
    n_perturb: int = 100,
    std: float = 0.1,
    auc: bool = False,
    random_control: bool = True,
    classes: Any = None,
    seed: SeedLike = 0,
    output: str = "probability",
    sample_index: Any = None,
    chunk_size: int | None = None,
    quiet: bool | None = True,
) -> MetricResult:
    """OpenXAI's PGI and PGU: mean output change under Gaussian noise on the top-k / other genes.

    Definitions in the module docstring (Agarwal et al. 2022).

    Parameters
    ----------
    model
        A :class:`~gexplain.explain.CompiledModel` or ONNX path.
    X
        ``(n, G)`` inputs in the model's gene order.
    attributions
        ``(n, G)`` attributions; genes are ranked by ``|attribution|``.
    targets
        ``(n,)`` explained class indices.
    k
        Top genes: a count, a fraction of ``G``, or a sequence of these (the grid).
    n_perturb
        Perturbations per sample.
    std
        Noise standard deviation, in the model's input units.
    auc
        Also report the trapezoid area over ``k/G`` of the grid (needs two or more ``k``).
    random_control
        Also score a random ranking per sample (rows with ``control = "random"``).
    classes
        Class name of each row for the per-class means (default: its target's name).
    seed
        Seed of the noise and of the random rankings (per sample, by ``sample_index``).
    output
        ``probability`` (default), ``logit`` or ``log_probability``.
    sample_index
        Global index of each row (its random streams); default ``0..n-1``.
    chunk_size
        Rows per kernel call (default: automatic).
    quiet
        Hide the progress bar.

    Returns
    -------
    MetricResult
        ``scores``: metrics ``openxai-PGI`` / ``openxai-PGU`` (variant
        ``gaussian``, ``k`` = the count) and, with ``auc``, ``openxai-PGI-AUC`` /
        ``openxai-PGU-AUC`` (variant ``auc``), per class and averaged.

    Examples
    --------
    >>> res = openxai_prediction_gaps("lr-seed0.onnx", X, attr, y, k=[10, 0.01])  # doctest: +SKIP
    >>> res.score("openxai-PGI", "gaussian", k=10)  # doctest: +SKIP
    """
    from .._progress import progress

    _, arrays = load_model(model, output)
    x, a, t = check_inputs(arrays, X, attributions, targets)
    n, G = x.shape
    ks = np.asarray(resolve_ks(k, G), dtype=np.int64)
    if int(n_perturb) < 1:
        raise InputError("n_perturb must be >= 1")
    if not float(std) > 0:
        raise InputError("std must be positive")
    if auc and ks.shape[0] < 2:
        raise InputError("auc needs a grid of at least two k values")
    cls = resolve_classes(arrays, classes, t)
    names = sorted(set(cls.tolist()))
    idx = (
        np.arange(n, dtype=np.int64)
        if sample_index is None
        else np.asarray(sample_index, dtype=np.int64)
    )
    if idx.shape != (n,):
        raise InputError(f"sample_index must have one entry per row ({n}), got {idx.shape}")
    plan = OpenXAIPlan(
        arrays, x, a, t, ks, int(n_perturb), float(std), as_seed(seed), idx, bool(random_control)
    )
    size = int(chunk_size) if chunk_size else auto_chunk(8 * G * 4)
    if size < 1:
        raise InputError("chunk_size must be positive")
    parts = [
        openxai_chunk(plan, s, e)
        for s, e in progress(plan_chunks(n, size), desc="OpenXAI PG", quiet=quiet)
    ]
    return summarize_openxai(plan, parts, cls, names, auc=auc)


def summarize_openxai(
    plan: OpenXAIPlan,
    parts: Sequence[OpenXAIChunk],
    classes: np.ndarray,
    names: list[str],
    *,
    auc: bool,
) -> MetricResult:
    """Scores of the chunk results of an :class:`OpenXAIPlan`."""
    from ._result import SCORE_SCHEMA

    nk = plan.ks.shape[0]
    parts = sorted(parts, key=lambda p: p.start)

    def cat(attr: str) -> np.ndarray:
        arrs = [getattr(p, attr) for p in parts]
        return np.concatenate(arrs) if arrs else np.zeros((0, nk))

    sets = [("openxai-PGI", cat("pgi"), None), ("openxai-PGU", cat("pgu"), None)]
    if plan.random_control:
        sets += [
            ("openxai-PGI", cat("pgi_random"), "random"),
            ("openxai-PGU", cat("pgu_random"), "random"),
        ]
    G = plan.arrays.n_genes
    rows = []
    for metric, vals, control in sets:
        per_class, counts = class_means(vals, classes, names)  # (C, nk)
        for q, kk in enumerate(plan.ks):
            rows.append(
                score_rows(
                    metric, "gaussian", per_class[:, q], counts, names, k=int(kk), control=control
                )
            )
        if auc:
            area = np.trapezoid(vals, plan.ks / G, axis=1) if vals.shape[0] else vals[:, 0]
            per_class, counts = class_means(area, classes, names)
            rows.append(
                score_rows(f"{metric}-AUC", "auc", per_class, counts, names, control=control)
            )
    return MetricResult(frame(rows, SCORE_SCHEMA))
