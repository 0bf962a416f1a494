"""Seeds: one ``seed`` argument (int or ``numpy.random.Generator``), per-sample streams.

Kernels never share a random stream between samples. Each sample ``i`` (its
*global* index in the cohort, not its index in a chunk) gets its own 32-bit
seed, derived from the user's seed and a stream id by a SplitMix64 hash, and the
kernel calls ``np.random.seed(seeds[i])`` before drawing for that sample. Numba
keeps one generator state per thread, so the draws of a sample depend only on
its seed: results are identical for any thread count and any chunk size.
"""

from __future__ import annotations

import zlib

import numpy as np

SeedLike = int | np.integer | np.random.Generator | None

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def as_seed(seed: SeedLike) -> int:
    """Turn the user's ``seed`` into a non-negative 63-bit integer.

    ``None`` draws fresh entropy; a ``Generator`` contributes one draw (so
    passing the same generator twice gives two different but reproducible
    seeds, as in scanpy/scikit-learn).
    """
    if seed is None:
        return int(np.random.SeedSequence().generate_state(2, np.uint64)[0] >> np.uint64(1))
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, 2**63 - 1))
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an int or numpy.random.Generator, not {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    return int(seed) & (2**63 - 1)


def stream_id(name: str) -> int:
    """A stable integer id for a named random stream (e.g. ``"simulate.theta"``)."""
    return zlib.crc32(name.encode())


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = x + _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
        return x ^ (x >> np.uint64(31))


def sample_seeds(seed: SeedLike, stream: str | int, start: int, stop: int) -> np.ndarray:
    """Per-sample 32-bit seeds for global sample indices ``start .. stop-1``.

    Parameters
    ----------
    seed
        The user's seed.
    stream
        Name (or id) of the random stream, so that two uses of one seed differ.
    start, stop
        Global sample index range.

    Returns
    -------
    numpy.ndarray
        ``uint32`` array of length ``stop - start``; element ``j`` depends only
        on ``(seed, stream, start + j)``.
    """
    s = as_seed(seed)
    sid = stream_id(stream) if isinstance(stream, str) else int(stream)
    base = _splitmix64(np.array([s ^ (sid << 32)], dtype=np.uint64))[0]
    idx = np.arange(start, stop, dtype=np.uint64)
    with np.errstate(over="ignore"):
        mixed = _splitmix64(base ^ (idx * _GOLDEN))
    return (mixed >> np.uint64(32)).astype(np.uint32)


def generator(seed: SeedLike, stream: str | int = 0) -> np.random.Generator:
    """A numpy ``Generator`` for Python-side draws of a named stream."""
    s = as_seed(seed)
    sid = stream_id(stream) if isinstance(stream, str) else int(stream)
    return np.random.default_rng(np.random.SeedSequence([s & 0xFFFFFFFF, s >> 32, sid]))
