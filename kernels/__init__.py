"""Numba kernels of gexplain (shipped as ``gexplain.kernels``).

Pure array-in/array-out functions: no I/O, no Polars, every one compiled with
``@njit(cache=True)`` (``parallel=True`` where it pays). Random draws use
per-sample seeds (see :mod:`gexplain._rng`), so results do not depend on the
thread count or the chunk size.
"""
