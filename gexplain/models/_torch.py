"""torch architectures and the training loop (imported only when training).

Determinism: weights are initialised under ``torch.manual_seed(seed)`` (inside
:func:`torch.random.fork_rng`, so the caller's RNG is untouched); shuffling and
dropout masks come from a numpy generator keyed on the seed; deterministic
algorithms are switched on; and the loop runs with **one intra-op thread**.
MKL's float32 GEMM splits the reduction over the gene axis differently on 1 and
2 threads (measured: first-layer outputs differ by ~1e-4 after a single matmul
at G = 15,000), so the thread count is pinned rather than tolerated; the
trained weights are then bit-identical whatever ``torch.get_num_threads()`` the
caller set. Parallelism comes from training several models at once
(:func:`gexplain.models.train_models` with ``threads > 1``). One thread is
also the faster choice per model here: a batch of 32 is too small to amortise
OpenMP synchronisation on 2 cores.

Data loading is a row gather from an in-memory (or memory-mapped) float32
matrix into a reused buffer, no DataLoader; dropout keeps an input when a
uniform 32-bit draw is ≥ round(p·2³²) (so the drop probability is p to within
2⁻³³), drawn from the seeded numpy stream two per raw 64-bit word; SGD is torch's fused CPU kernel (same update rule as the
default, without per-step temporaries: on this 2-core VM every fresh 2 MB
gradient-sized temporary costs hundreds of page faults).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .._rng import generator
from ._predict import balanced_accuracy

__all__ = ["LogisticRegression", "MultiLayerPerceptron", "build_module", "fit_module"]

_FUSED_SGD = True  # one kernel per step, no temporaries (measured faster on CPU)


class LogisticRegression(nn.Module):
    """The paper's LR: Dropout(p) → Linear(G, C).

    Dropout is applied by :func:`fit_module` to the batch (with its own seeded
    generator) rather than by an ``nn.Dropout`` layer: same distribution,
    faster than torch's ``bernoulli_`` on CPU, and reproducible.
    """

    def __init__(self, n_genes: int, n_classes: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.dropout = float(dropout)
        self.linear = nn.Linear(n_genes, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class MultiLayerPerceptron(nn.Module):
    """The paper's MLP: Linear(G, H) → BatchNorm1d(H) → ReLU → Linear(H, C)."""

    def __init__(self, n_genes: int, n_classes: int, hidden: int = 20) -> None:
        super().__init__()
        self.dropout = 0.0
        self.fc1 = nn.Linear(n_genes, hidden)
        self.bn = nn.BatchNorm1d(hidden, eps=1e-5)
        self.fc2 = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.bn(self.fc1(x))))


def build_module(
    base_kind: str, n_genes: int, n_classes: int, *, hidden: int = 20, dropout: float = 0.2
) -> nn.Module:
    """A freshly initialised module (``base_kind`` ``lr`` or ``mlp``) under the current RNG."""
    if base_kind == "lr":
        return LogisticRegression(n_genes, n_classes, dropout)
    if base_kind == "mlp":
        return MultiLayerPerceptron(n_genes, n_classes, hidden)
    raise ValueError(f"unknown architecture {base_kind!r}")


def load_params(module: nn.Module, params: dict[str, np.ndarray]) -> None:
    """Copy numpy weights (state_dict names) into ``module``."""
    state = module.state_dict()
    new = {}
    for k, v in state.items():
        if k in params:
            new[k] = torch.from_numpy(np.array(params[k])).to(v.dtype)
        else:
            new[k] = v
    module.load_state_dict(new)


def module_params(module: nn.Module) -> dict[str, np.ndarray]:
    """The module's state as numpy float32 copies (counters dropped)."""
    return {
        k: v.detach().cpu().numpy().astype(np.float32, copy=True)
        for k, v in module.state_dict().items()
        if v.is_floating_point()
    }


@contextlib.contextmanager
def deterministic(seed: int) -> Iterator[None]:
    """Seed torch, pin one intra-op thread, enforce deterministic algorithms; restore after."""
    threads = torch.get_num_threads()
    det = torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(det)
            torch.set_num_threads(threads)


def _dropout_threshold(p: float) -> np.uint32:
    """``t`` with ``P(u < t) = t / 2³² ≈ p`` for a uniform 32-bit ``u`` (error ≤ 2⁻³³)."""
    return np.uint32(min(2**32 - 1, round(p * 2**32)))


def _random_u32(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` uniform 32-bit integers from the generator's raw 64-bit stream.

    Two draws per raw word: about 3x faster than ``rng.random(dtype=float32)``,
    which matters because LR's input dropout needs G x 32 draws per batch.
    """
    raw = rng.bit_generator.random_raw((n + 1) // 2)
    return raw.view(np.uint32)[:n]


@torch.no_grad()
def predict_logits(module: nn.Module, x: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Logits of ``module`` (eval mode) for rows ``x``, in chunks."""
    was = module.training
    module.eval()
    out = []
    for a in range(0, x.shape[0], chunk):
        block = np.ascontiguousarray(x[a : a + chunk], dtype=np.float32)
        if not block.flags.writeable:  # torch warns on read-only memory
            block = block.copy()
        xb = torch.from_numpy(block)
        out.append(module(xb).numpy())
    module.train(was)
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(out)


@dataclass
class FitResult:
    """What :func:`fit_module` returns: weights, per-epoch history, final predictions."""

    params: dict[str, np.ndarray]
    history: list[dict[str, float]]
    pred_train: np.ndarray
    pred_test: np.ndarray | None


def fit_module(
    base_kind: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    n_classes: int,
    *,
    seed: int,
    x_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    hidden: int = 20,
    epochs: int = 25,
    lr: float = 0.1,
    batch_size: int = 32,
    weight_decay: float = 1e-4,
    milestones: tuple[int, ...] = (12, 22),
    gamma: float = 0.1,
    dropout: float = 0.2,
    momentum: float = 0.9,
    on_epoch: Callable[[dict[str, float]], Any] | None = None,
) -> FitResult:
    """Train one module with the paper's recipe on prepared inputs.

    ``x_train`` rows are the network inputs (already z-scored, and diffused for
    diffused models); ``y_train`` class indices. Cross-entropy, SGD with
    momentum and weight decay, MultiStepLR. A final batch of a single sample
    is skipped for the MLP (BatchNorm needs two).
    """
    n, g = x_train.shape
    if n == 0:
        raise ValueError("no training samples")
    y_tr = torch.from_numpy(np.asarray(y_train, dtype=np.int64))
    rng = generator(seed, "models.train")
    with deterministic(seed):
        module = build_module(base_kind, g, n_classes, hidden=hidden, dropout=dropout)
        opt = torch.optim.SGD(
            module.parameters(),
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            fused=_FUSED_SGD,
        )
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(milestones), gamma=gamma)
        rows = min(batch_size, n)
        buf = np.empty((rows, g), dtype=np.float32)
        p = float(module.dropout) if base_kind == "lr" else 0.0
        if p > 0:  # dropout scratch, reused every batch (no per-step allocation)
            keep = np.empty((rows, g), dtype=bool)
            drop_below = _dropout_threshold(p)
        scale = np.float32(1.0 / (1.0 - p)) if p < 1 else np.float32(0.0)
        history: list[dict[str, float]] = []
        pred_train = np.zeros(0, dtype=np.int64)
        pred_test = None
        for epoch in range(1, epochs + 1):
            module.train()
            order = rng.permutation(n)
            total = 0.0
            seen = 0
            for a in range(0, n, batch_size):
                idx = order[a : a + batch_size]
                m = idx.shape[0]
                if base_kind == "mlp" and m < 2:
                    continue
                xb = buf[:m]
                np.take(x_train, idx, axis=0, out=xb)
                if p > 0:
                    bits = _random_u32(rng, m * g).reshape(m, g)
                    np.greater_equal(bits, drop_below, out=keep[:m])
                    np.multiply(xb, keep[:m], out=xb)
                    xb *= scale
                logits = module(torch.from_numpy(xb))
                loss = F.cross_entropy(logits, y_tr[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item() * m
                seen += m
            sched.step()
            pred_train = predict_logits(module, x_train).argmax(axis=1)
            row = {
                "epoch": float(epoch),
                "loss": total / max(seen, 1),
                "train_balanced_accuracy": balanced_accuracy(y_train, pred_train),
                "test_balanced_accuracy": float("nan"),
            }
            if x_test is not None and y_test is not None and len(y_test):
                pred_test = predict_logits(module, x_test).argmax(axis=1)
                row["test_balanced_accuracy"] = balanced_accuracy(y_test, pred_test)
            history.append(row)
            if on_epoch is not None:
                on_epoch(row)
        module.eval()
        params = module_params(module)
    return FitResult(params, history, pred_train, pred_test)
