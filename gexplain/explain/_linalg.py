"""Reproducible dense products: BLAS speed, results independent of threads and row count.

A multithreaded BLAS may split a product differently depending on the number
of threads, and even single-threaded OpenBLAS treats the last rows of a call
differently from the rest: a row's result then depends on how many rows were
multiplied with it. :func:`matmul_rows` multiplies fixed-size blocks of
:data:`ROWS` rows (the last one zero-padded), each with single-threaded BLAS,
spread over a thread pool. Every row is computed by the same instructions
whatever the thread count, chunk size or neighbouring rows.
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

#: Rows per BLAS call.
ROWS = 64
#: Columns per pull-back product: wider inputs are multiplied in panels of this width
#: (narrower panels, to keep a block in the L2 cache, measured no faster).
COLS = 32768

_CONTROLLER: Any = None


def _threads() -> int:
    import numba

    return int(numba.get_num_threads())


def _single_threaded_blas() -> Any:
    """Context manager limiting BLAS to one thread (the library scan is done once)."""
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")


def matmul_rows(A: np.ndarray, B: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``A @ B`` in float64, row blocks of :data:`ROWS` rows, reproducibly.

    Parameters
    ----------
    A
        ``(m, k)`` array (any float dtype, any strides).
    B
        ``(k, n)`` float64 array (C or Fortran ordered).
    out
        Optional ``(m, n)`` float64 C-contiguous output.
    """
    m, k = A.shape
    n = B.shape[1]
    if out is None:
        out = np.empty((m, n))
    if m == 0:
        return out
    nblocks = -(-m // ROWS)

    def work(i: int) -> None:
        s = i * ROWS
        a = A[s : s + ROWS]
        if a.shape[0] == ROWS and a.dtype == np.float64 and a.flags.c_contiguous:
            np.matmul(a, B, out=out[s : s + ROWS])
        else:
            pad = np.zeros((ROWS, k))
            pad[: a.shape[0]] = a
            out[s : s + a.shape[0]] = (pad @ B)[: a.shape[0]]

    threads = min(_threads(), nblocks)
    with _single_threaded_blas():
        if threads <= 1:
            for i in range(nblocks):
                work(i)
        else:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(work, range(nblocks)))
    return out


def pullback(
    gbar: np.ndarray,
    weight_t: np.ndarray,
    x: np.ndarray,
    xb: np.ndarray,
    bidx: np.ndarray,
    n_targets: int,
    out: np.ndarray,
    *,
    scale: float = 1.0,
    accumulate: bool = False,
    scratch: list[np.ndarray] | None = None,
) -> np.ndarray:
    """Attributions ``(x − x') ⊙ (Ḡ Wᵀ)`` written (or added) straight into ``out``.

    Row ``q`` of ``gbar`` (``(m, H)``, one row per sample and target, sample
    ``r = q // n_targets``) is pulled back through ``weight_t`` (``Wᵀ``, ``(H, G)``
    float32, C-contiguous) by a float32 BLAS product in fixed blocks of :data:`ROWS` rows
    (the last one zero-padded), each single-threaded and spread over a thread
    pool, so a row's values do not depend on the thread count or the chunk. A
    full block is multiplied, :data:`COLS` columns at a time (fixed panels),
    straight into its rows of ``out`` and scaled there by ``x[r] − xb[bidx[r]]``
    (formed in float64, rounded once) while still in cache: no ``m × G``
    intermediate. With ``accumulate`` the block goes to a
    scratch buffer and ``scale ·`` the result is added to ``out`` (several
    baselines averaged).

    The stored values are float32 either way; the float64 completeness sums
    come from ``Δz · Ḡ`` (:func:`gexplain.kernels.ig.completeness_sums`), not
    from this product.

    Parameters
    ----------
    gbar
        ``(m, H)`` float32 integrated gradients in the first layer's space.
    weight_t
        ``(H, G)`` float32 transposed first-layer weight
        (:attr:`~gexplain.explain.CompiledModel.weight32_t`).
    x, xb, bidx
        ``(n, G)`` inputs, ``(k, G)`` baselines, ``(n,)`` each sample's baseline row.
    n_targets
        Rows of ``gbar`` per sample.
    out
        ``(m, G)`` float32, C-contiguous.
    scale, accumulate
        Add ``scale ·`` the attributions instead of overwriting (``scale`` must
        be 1 without ``accumulate``).
    scratch
        Optional reusable float32 buffers of shape ``(ROWS, G)``, one per thread.
    """
    from ..kernels import ig as _k

    m = gbar.shape[0]
    g = weight_t.shape[1]
    if out.shape != (m, g) or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous float32 of shape {(m, g)}")
    if not accumulate and scale != 1.0:
        raise ValueError("scale needs accumulate=True")
    if m == 0:
        return out
    A = np.ascontiguousarray(gbar, dtype=np.float32)
    nblocks = -(-m // ROWS)
    threads = max(1, min(_threads(), nblocks))
    if scratch is None or len(scratch) < threads:
        scratch = [np.empty((ROWS, g), dtype=np.float32) for _ in range(threads)]
    pads = [np.empty((ROWS, A.shape[1]), dtype=np.float32) for _ in range(threads)]
    panels = [(c, min(g, c + COLS)) for c in range(0, g, COLS)]
    blocks = itertools.count()  # handed out one by one: a slow thread does fewer

    def work(worker: int) -> None:
        pad = pads[worker]
        while (i := next(blocks)) < nblocks:
            s = i * ROWS
            rows = min(ROWS, m - s)
            if rows == ROWS:
                a = A[s : s + ROWS]
            else:
                pad[:rows] = A[s:]
                pad[rows:] = 0.0
                a = pad
            for c0, c1 in panels:  # a panel of the block stays in cache while it is scaled
                B = weight_t[:, c0:c1]
                if accumulate or rows < ROWS:
                    buf = scratch[worker][:, : c1 - c0]
                    np.matmul(a, B, out=buf)
                    if accumulate:
                        _k.attribution_rows_add(
                            buf[:rows], x, xb, bidx, n_targets, s, c0, scale, out
                        )
                        continue
                    out[s : s + rows, c0:c1] = buf[:rows]
                else:
                    np.matmul(a, B, out=out[s : s + ROWS, c0:c1])
                _k.attribution_rows_inplace(out, s, rows, c0, c1, x, xb, bidx, n_targets)

    with _single_threaded_blas():
        if threads <= 1:
            work(0)
        else:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(work, range(threads)))
    return out
