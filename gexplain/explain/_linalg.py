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

from concurrent.futures import ThreadPoolExecutor

import numpy as np

#: Rows per BLAS call.
ROWS = 64


def _threads() -> int:
    import numba

    return int(numba.get_num_threads())


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
    from threadpoolctl import threadpool_limits

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
    with threadpool_limits(limits=1, user_api="blas"):
        if threads <= 1:
            for i in range(nblocks):
                work(i)
        else:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(work, range(nblocks)))
    return out
