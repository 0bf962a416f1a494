"""Integrated Gradients from a compiled ONNX model.

All the work happens in the first layer's space (see :mod:`gexplain.kernels.ig`):
two matrix products give the path's end points ``z = x @ W + b`` and
``z' = x' @ W + b``, the kernels integrate the head's gradient along
``z' + α (z − z')`` (H numbers per sample and target), and one more product
pulls it back: ``IG = (x − x') ⊙ (W @ Ḡ)``.

Methods
-------
``exact``
    Default when every hidden nonlinearity is ReLU/LeakyReLU (and for linear
    models, where it is the closed form: ``w ⊙ (x − x')`` for a logit, a 1-D
    integral along the line for softmax outputs). Walks the breakpoints of the
    path and integrates each linear segment's softmax with Gauss–Legendre to
    machine precision; completeness holds to ~1e-12.
``gausslegendre``, ``riemann_left``, ``riemann_right``, ``riemann_middle``, ``riemann_trapezoid``
    Captum's rules, node for node (Captum computes the Riemann nodes with
    float32 ``torch.linspace``; gexplain uses exact float64 nodes, a relative
    difference ~1e-7). Captum's ``riemann_trapezoid`` places ``n`` nodes on
    ``linspace(0, 1, n)`` but gives them weights ``1/n`` (ends halved), which
    sum to ``(n − 1)/n``: its attributions are scaled by ``(n−1)/n`` and
    completeness is off by ``1/n``. It is kept for parity.
``trapezoid``
    The correct trapezoidal rule on the same nodes (weights ``1/(n−1)``, ends halved).

``steps="auto"`` (any quadrature method) doubles the number of steps, per
sample, from 16 until ``|delta| ≤ tolerance · max(1, |f_x − f_baseline|)`` or
``max_steps``; the ``steps`` column records what each row needed (for
``exact`` it records the number of linear segments walked).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from ..errors import InputError, ModelError
from ..head import output_mode
from ..kernels import ig as _k
from ._baselines import Baseline
from ._compiled import CompiledModel, output_values
from ._linalg import ROWS, _threads, pullback

METHODS = (
    "exact",
    "gausslegendre",
    "riemann_left",
    "riemann_right",
    "riemann_middle",
    "riemann_trapezoid",
    "trapezoid",
)
OUTPUTS = ("probability", "logit", "log_probability")
DEFAULT_STEPS = 50
ADAPTIVE_START = 16

#: Gauss–Legendre order inside each exact-IG piece and the logit-spread bound per piece
#: (error ~ρ^-64 ≈ 1e-18 with ρ ≈ 1.92, see :mod:`gexplain.kernels.ig`; was 24 nodes and
#: spread 6, which takes 1.3× the time for the same double-precision result).
EXACT_GL_NODES = 32
EXACT_MAX_SPREAD = 9.0
EXACT_EPS = 1e-11
EXACT_MAX_SEGMENTS = 1_000_000


def quadrature(method: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes (in [0, 1]) and weights of a quadrature rule.

    Parameters
    ----------
    method
        ``gausslegendre``, ``riemann_left``, ``riemann_right``, ``riemann_middle``,
        ``riemann_trapezoid`` (Captum's: weights sum to ``(n−1)/n``) or ``trapezoid``.
    steps
        Number of nodes.

    Examples
    --------
    >>> round(float(quadrature("riemann_trapezoid", 4)[1].sum()), 12)
    0.75
    >>> round(float(quadrature("trapezoid", 4)[1].sum()), 12)
    1.0
    """
    n = int(steps)
    if n < 1 or (method != "gausslegendre" and n < 2):
        raise ValueError(f"{method} needs at least {1 if method == 'gausslegendre' else 2} steps")
    k = np.arange(n, dtype=np.float64)
    if method == "gausslegendre":
        if n <= 200:
            x, w = np.polynomial.legendre.leggauss(n)
        else:
            x, w = _k.gauss_legendre(n)
        return 0.5 * (1.0 + x), 0.5 * w
    if method == "riemann_left":
        return k / n, np.full(n, 1.0 / n)
    if method == "riemann_right":
        return (k + 1.0) / n, np.full(n, 1.0 / n)
    if method == "riemann_middle":
        return (k + 0.5) / n, np.full(n, 1.0 / n)
    if method in ("riemann_trapezoid", "trapezoid"):
        a = k / (n - 1)
        w = np.full(n, 1.0 / n if method == "riemann_trapezoid" else 1.0 / (n - 1))
        w[0] /= 2
        w[-1] /= 2
        return a, w
    raise ValueError(f"unknown quadrature method {method!r}; expected one of {METHODS[1:]}")


@dataclass(frozen=True)
class IGSettings:
    """Resolved IG settings (what the kernels need)."""

    method: str
    steps: int | None
    adaptive: bool
    tolerance: float
    max_steps: int
    output: str

    @property
    def mode(self) -> int:
        return output_mode(self.output)

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "steps": "auto" if self.adaptive else self.steps,
            "tolerance": self.tolerance if self.adaptive else None,
            "output": self.output,
        }


def resolve_settings(
    model: CompiledModel,
    method: str | None,
    steps: int | str | None,
    output: str,
    tolerance: float,
    max_steps: int,
) -> IGSettings:
    """Check and complete the method/steps/output choice for ``model``."""
    if output not in OUTPUTS:
        raise InputError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
    if method in (None, "auto"):
        method = "exact" if model.is_piecewise_linear else "gausslegendre"
        if method == "gausslegendre" and steps is None:
            steps = "auto"
    if method not in METHODS:
        raise InputError(f"unknown IG method {method!r}; expected one of {', '.join(METHODS)}")
    if method == "exact":
        if not model.is_piecewise_linear:
            raise ModelError(
                "exact IG needs a head whose hidden nonlinearities are all ReLU/LeakyReLU; this "
                f"model's head is {' → '.join(model.head.ops)}. Use a quadrature method "
                "(e.g. gausslegendre with steps='auto')"
            )
        return IGSettings("exact", None, False, tolerance, max_steps, output)
    adaptive = isinstance(steps, str)
    if adaptive and steps != "auto":
        raise InputError(f"steps must be a positive integer or 'auto', got {steps!r}")
    n = DEFAULT_STEPS if steps is None else (ADAPTIVE_START if adaptive else int(steps))
    quadrature(method, n)  # validates
    if not tolerance > 0:
        raise InputError("tolerance must be positive")
    return IGSettings(method, n, adaptive, float(tolerance), int(max_steps), output)


# ----------------------------------------------------------------------------- H-space integral


def _quadrature_kernel(
    head: Any,
    Z: np.ndarray,
    Zb: np.ndarray,
    bidx: np.ndarray,
    targets: np.ndarray,
    mode: int,
    a: np.ndarray,
    w: np.ndarray,
) -> np.ndarray:
    """Run the quadrature kernel, using the ReLU-first shortcut when the head allows it."""
    from ..kernels.head import OP_AFFINE, OP_LEAKY, OP_RELU

    L = head.layers
    if (
        L.shape[0] >= 2
        and int(L[0, 0]) in (OP_RELU, OP_LEAKY)
        and int(L[1, 0]) == OP_AFFINE
        and np.all(np.diff(a) >= 0)
    ):
        rest = np.ascontiguousarray(L[2:])
        n_acts = int(rest[0, 1] + rest[:, 2].sum()) if rest.shape[0] else 0
        width = int(max(rest[:, 1].max(), rest[:, 2].max())) if rest.shape[0] else 0
        return _k.ig_quadrature_relu_first(
            L, head.params, rest, Z, Zb, bidx, targets, mode, a, w, n_acts, width
        )
    return _k.ig_quadrature(
        L, head.params, Z, Zb, bidx, targets, mode, a, w, head.n_acts, head.width
    )


def _exact_nodes() -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.legendre.leggauss(EXACT_GL_NODES)
    return 0.5 * (1.0 + x), 0.5 * w


def integrate(
    model: CompiledModel,
    Z: np.ndarray,
    Zb: np.ndarray,
    bidx: np.ndarray,
    targets: np.ndarray,
    settings: IGSettings,
    gap: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``Ḡ = ∫₀¹ ∇_z f_t(z' + α (z − z')) dα`` for every sample and target.

    Parameters
    ----------
    model
        The compiled model.
    Z
        ``(n, H)`` first pre-activations of the samples.
    Zb, bidx
        ``(m, H)`` baseline pre-activations and each sample's row among them.
    targets
        ``(n, T)`` int64 class indices.
    settings
        Method, steps, output.
    gap
        ``(n, T)`` reference ``f_x − f_baseline`` (needed by ``steps="auto"``).

    Returns
    -------
    gbar : numpy.ndarray
        ``(n, T, H)`` float64.
    steps : numpy.ndarray
        ``(n,)`` int64: quadrature nodes used (``exact``: linear segments).
    """
    h = model.head
    Z = np.ascontiguousarray(Z, dtype=np.float64)
    Zb = np.ascontiguousarray(Zb, dtype=np.float64)
    bidx = np.ascontiguousarray(bidx, dtype=np.int64)
    targets = np.ascontiguousarray(targets, dtype=np.int64)
    mode = settings.mode
    if settings.method == "exact":
        glx, glw = _exact_nodes()
        gbar, segs = _k.ig_exact(
            h.layers,
            h.params,
            Z,
            Zb,
            bidx,
            targets,
            mode,
            glx,
            glw,
            EXACT_MAX_SPREAD,
            EXACT_EPS,
            EXACT_MAX_SEGMENTS,
            h.n_acts,
            h.width,
        )
        bad = np.flatnonzero(segs < 0)
        if bad.size:  # pragma: no cover - pathological heads only
            a, w = quadrature("gausslegendre", 2048)
            gbar[bad] = _quadrature_kernel(h, Z[bad], Zb, bidx[bad], targets[bad], mode, a, w)
            segs[bad] = 2048
        return gbar, segs
    n = settings.steps or DEFAULT_STEPS
    a, w = quadrature(settings.method, n)
    gbar = _quadrature_kernel(h, Z, Zb, bidx, targets, mode, a, w)
    used = np.full(Z.shape[0], n, dtype=np.int64)
    if not settings.adaptive:
        return gbar, used
    if gap is None:
        raise ValueError("steps='auto' needs the reference gaps f_x − f_baseline")
    dz = Z - Zb[bidx]
    todo = np.arange(Z.shape[0])
    while True:
        sums = np.einsum("nh,nth->nt", dz[todo], gbar[todo])
        err = np.abs(sums - gap[todo]) / np.maximum(1.0, np.abs(gap[todo]))
        todo = todo[~(err <= settings.tolerance).all(axis=1)]
        if todo.size == 0 or 2 * n > settings.max_steps:
            break
        n *= 2
        a, w = quadrature(settings.method, n)
        gbar[todo] = _quadrature_kernel(h, Z[todo], Zb, bidx[todo], targets[todo], mode, a, w)
        used[todo] = n
    return gbar, used


# ----------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class TargetSpec:
    """``kind`` is ``label``, ``predicted``, ``all`` or ``fixed`` (with ``indices``)."""

    kind: str
    indices: tuple[int, ...] = ()

    @property
    def n_targets(self) -> int | None:
        return len(self.indices) if self.kind == "fixed" else None

    def describe(self) -> str:
        return self.kind if self.kind != "fixed" else ",".join(map(str, self.indices))


def resolve_target(target: Any, model: CompiledModel) -> TargetSpec:
    """Parse ``label``, ``predicted``, ``all``, a class name or index, or a list of these."""
    if isinstance(target, str) and target in ("label", "predicted", "all"):
        return TargetSpec(target)
    items = list(target) if isinstance(target, (list, tuple)) else [target]
    if isinstance(target, str) and "," in target:
        items = [t.strip() for t in target.split(",") if t.strip()]
    out = []
    for t in items:
        if isinstance(t, (int, np.integer)) and not isinstance(t, bool):
            if not 0 <= int(t) < model.n_classes:
                raise InputError(
                    f"target class index {int(t)} is out of range for {model.n_classes} classes"
                )
            out.append(int(t))
        elif isinstance(t, str) and t in model.class_names:
            out.append(model.class_names.index(t))
        elif isinstance(t, str) and t.lstrip("-").isdigit() and 0 <= int(t) < model.n_classes:
            out.append(int(t))
        else:
            shown = ", ".join(model.class_names[:10]) + (", ..." if model.n_classes > 10 else "")
            raise InputError(
                f"unknown target {t!r}: expected label, predicted, all, a class name "
                f"({shown}) or an index below {model.n_classes}"
            )
    if not out:
        raise InputError("no target given")
    return TargetSpec("fixed", tuple(out))


def target_matrix(
    spec: TargetSpec, model: CompiledModel, label_idx: np.ndarray | None, predicted: np.ndarray
) -> np.ndarray:
    """``(n, T)`` int64 target class indices for a chunk."""
    n = predicted.shape[0]
    if spec.kind == "label":
        if label_idx is None:
            raise InputError("target 'label' needs labelled samples (a Cohort with labels)")
        if n and (label_idx < 0).any():
            raise InputError(
                f"{int((label_idx < 0).sum())} samples have no label among the model's classes; "
                "use --target predicted or a class"
            )
        return label_idx[:, None].astype(np.int64)
    if spec.kind == "predicted":
        return predicted[:, None].astype(np.int64)
    if spec.kind == "all":
        return np.tile(np.arange(model.n_classes, dtype=np.int64), (n, 1))
    return np.tile(np.array(spec.indices, dtype=np.int64), (n, 1))


# ----------------------------------------------------------------------------- one chunk


class Workspace:
    """Reusable float64 buffers, grown on demand and handed out as views."""

    def __init__(self) -> None:
        self._bufs: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: Any = np.float64) -> np.ndarray:
        size = int(np.prod(shape))
        buf = self._bufs.get(name)
        if buf is None or buf.size < size or buf.dtype != dtype:
            buf = self._bufs[name] = np.empty(max(size, 1), dtype=dtype)
        return buf[:size].reshape(shape)


@dataclass
class ChunkResult:
    """Attributions of one chunk: values, row table and optional top-k frame."""

    values: np.ndarray  # (rows, G) float32
    rows: pl.DataFrame
    topk: pl.DataFrame | None


def _check_finite(x: np.ndarray, Z: np.ndarray, sample_ids: Sequence[str]) -> None:
    """Refuse rows with missing or infinite values.

    Every input value reaches every unit of ``z = x @ W + b`` (``inf · 0`` is NaN),
    so only rows whose ``z`` is not finite need the full scan of their inputs.
    """
    suspect = np.flatnonzero(~np.isfinite(Z).all(axis=1))
    for r in suspect:
        if not np.isfinite(x[r]).all():
            raise InputError(
                f"sample {sample_ids[r]!r} has missing or infinite expression values; "
                "impute or drop them before explaining"
            )


def explain_chunk(
    model: CompiledModel,
    x: np.ndarray,
    positions: np.ndarray,
    sample_ids: Sequence[str],
    label_idx: np.ndarray | None,
    baselines: Sequence[Baseline],
    target: TargetSpec,
    settings: IGSettings,
    gene_ids: Sequence[str],
    *,
    correct_only: bool = False,
    normalize: bool = False,
    top_k: int | None = None,
    out: np.ndarray | None = None,
    workspace: Workspace | None = None,
) -> ChunkResult:
    """IG for the rows ``x`` (model gene order) of one chunk.

    ``positions`` are the rows' indices in the whole input (for per-sample
    baselines); ``label_idx`` the class index of each row's label (−1 unknown).
    ``out`` optionally receives the float32 values (``rows × G``, e.g. a slice
    of a preallocated matrix; it need not be zeroed); by default a new array is
    allocated. ``workspace`` keeps the pull-back's scratch blocks from one chunk
    to the next (fresh multi-MB allocations cost a page fault per page).

    Work per chunk: one onnxruntime pass over the rows (the reference ``f_x``,
    and ``z`` when the float64 graph holds it), one over each baseline's
    distinct rows, the path integral in the first layer's space, and one
    float32 product per row block written straight into ``out``; the
    completeness sums come from ``Δz · Ḡ`` in float64.
    """
    ws = workspace if workspace is not None else Workspace()
    x = np.asarray(x)
    n_all = x.shape[0]
    if n_all:
        # one reference pass over the chunk's own rows (float32 rows are widened to
        # float64 block by block inside ort_forward); it also yields z when the
        # graph holds it in float64, which saves the first-layer product
        ref_logits, Z = model.ort_forward(x, with_z=True)
        if Z is None:
            Z = model.first_layer(x)
        _check_finite(x, Z, sample_ids)
    else:
        ref_logits, Z = np.zeros((0, model.n_classes)), np.zeros((0, model.n_hidden))
    predicted = np.argmax(ref_logits, axis=1) if n_all else np.zeros(0, np.int64)
    correct = None if label_idx is None else predicted == label_idx
    if correct_only:
        if correct is None:
            raise InputError("--correct-only needs labelled samples")
        keep = np.flatnonzero(correct)
        if keep.size < n_all:
            x, Z = x[keep], Z[keep]
            positions, ref_logits, predicted = positions[keep], ref_logits[keep], predicted[keep]
            sample_ids = [sample_ids[i] for i in keep]
            label_idx = label_idx[keep] if label_idx is not None else None
            correct = correct[keep]
    n = x.shape[0]
    targets = target_matrix(target, model, label_idx, predicted)
    T = targets.shape[1] if n else (target.n_targets or 1)
    G = model.n_genes
    fx = output_values(ref_logits, targets, settings.output) if n else np.zeros((0, T))
    if out is None:
        out = np.empty((n * T, G), dtype=np.float32)
    elif out.shape != (n * T, G) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 of shape {(n * T, G)}")
    fb_mean = np.zeros((n, T))
    sums = np.zeros((n, T))
    steps_max = np.zeros(n, dtype=np.int64)
    if n:
        Z = np.ascontiguousarray(Z, dtype=np.float64)
        scale = 1.0 / len(baselines)
        threads = _threads()
        scratch = [ws.get(f"pullback{i}", (ROWS, G), np.float32) for i in range(threads)]
        if scale != 1.0:
            out.fill(0.0)  # several baselines: every one adds scale · its attributions
        for b in baselines:
            rows_b, bidx = b.select(positions, label_idx)
            fb_logits, Zb = model.ort_forward(rows_b, with_z=True)
            if Zb is None:
                Zb = model.first_layer(rows_b)
            Zb = np.ascontiguousarray(Zb, dtype=np.float64)
            fb = output_values(fb_logits[bidx], targets, settings.output)
            fb_mean += fb * scale
            gbar, used = integrate(model, Z, Zb, bidx, targets, settings, gap=fx - fb)
            steps_max = np.maximum(steps_max, used)
            # completeness in float64 from Δz · Ḡ (= Σ_j (x − x')_j (W Ḡ)_j)
            _k.completeness_sums(Z, Zb, bidx, gbar, scale, sums)
            # attributions: one float32 product per row block, straight into out
            pullback(
                gbar.reshape(n * T, -1).astype(np.float32),
                model.weight32_t,
                x,
                rows_b,
                bidx,
                T,
                out,
                scale=scale,
                accumulate=scale != 1.0,
                scratch=scratch,
            )
        if normalize:
            _k.normalize_rows(out, np.arange(n * T))
    delta = sums - (fx - fb_mean)
    names = model.class_names
    tflat = targets.reshape(-1)
    rep = np.repeat(np.arange(n), T)
    rows = pl.DataFrame(
        {
            "sample_id": pl.Series([sample_ids[i] for i in rep], dtype=pl.String),
            "target": pl.Series([names[t] for t in tflat], dtype=pl.String),
            "target_index": pl.Series(tflat, dtype=pl.Int64),
            "f_x": pl.Series(fx.reshape(-1), dtype=pl.Float64),
            "f_baseline": pl.Series(fb_mean.reshape(-1), dtype=pl.Float64),
            "delta": pl.Series(delta.reshape(-1), dtype=pl.Float64),
            "label": pl.Series(
                [
                    None if label_idx is None or label_idx[i] < 0 else names[label_idx[i]]
                    for i in rep
                ],
                dtype=pl.String,
            ),
            "predicted": pl.Series([names[predicted[i]] for i in rep], dtype=pl.String),
            "correct": pl.Series(
                [None if correct is None else bool(correct[i]) for i in rep], dtype=pl.Boolean
            ),
            "method": pl.Series([settings.method] * (n * T), dtype=pl.String),
            "steps": pl.Series(steps_max[rep], dtype=pl.Int64),
            "baseline": pl.Series(["+".join(b.name for b in baselines)] * (n * T), dtype=pl.String),
        }
    )
    topk = None if top_k is None else topk_frame(out, rows, gene_ids, top_k)
    return ChunkResult(out, rows, topk)


def topk_frame(
    values: np.ndarray, rows: pl.DataFrame, gene_ids: Sequence[str], k: int
) -> pl.DataFrame:
    """Long frame of each row's ``k`` largest (signed) attributions.

    Columns ``sample_id, target, rank`` (1 = largest), ``gene_id``, ``attribution``.
    """
    n, g = values.shape
    k = min(int(k), g)
    if k <= 0:
        raise InputError("top-k must be positive")
    if n == 0:
        idx = np.zeros((0, k), dtype=np.int64)
    elif k < g:
        part = np.argpartition(-values, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(values, part, axis=1), axis=1, kind="stable")
        idx = np.take_along_axis(part, order, axis=1)
    else:
        idx = np.argsort(-values, axis=1, kind="stable")
    genes = np.asarray(gene_ids, dtype=object)
    rep = np.repeat(np.arange(n), k)
    return pl.DataFrame(
        {
            "sample_id": rows["sample_id"].gather(rep),
            "target": rows["target"].gather(rep),
            "rank": pl.Series(np.tile(np.arange(1, k + 1), n), dtype=pl.Int32),
            "gene_id": pl.Series(genes[idx.reshape(-1)].tolist(), dtype=pl.String),
            "attribution": pl.Series(
                np.take_along_axis(values, idx, axis=1).reshape(-1), dtype=pl.Float32
            ),
        }
    )
