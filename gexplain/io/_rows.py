"""Streaming engines for delimited matrices: genes as rows (transposed) or samples as rows."""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._progress import progress
from ..errors import InputError
from . import _text
from ._common import NanTally, Target
from ._text import LineParser, count_data_lines


@dataclass
class RowsResult:
    """What a streaming pass read besides the matrix."""

    texts: list[list[str]]  # per text slot, the value of every kept data line
    lines: np.ndarray  # 1-based file line number of every kept data line
    n_lines: int


def _copy_columns(x: np.ndarray, vals: np.ndarray, g: int) -> None:
    x[:, g : g + vals.shape[0]] = vals.T  # numpy's strided copy beats a tiled Numba loop


def _blocks_total(path: Path, start: int, block_bytes: int) -> int:
    return max(1, math.ceil((path.stat().st_size - start) / block_bytes))


def stream_gene_rows(
    path: Path,
    source: Path,
    *,
    start: int,
    first_line: int,
    n_lines: int,
    colmap: np.ndarray,
    delim: str,
    field_names: Sequence[str],
    target: Target,
    tally: NanTally,
    quiet: bool | None,
    desc: str,
    block_bytes: int | None = None,
) -> RowsResult:
    """Parse a genes × samples text matrix into ``target`` (samples × genes), transposing.

    Line ``i`` of the data becomes column ``i`` of ``target.expression``. Genes
    with NaN/inf are recorded in ``tally`` (``drop-genes``), filled, or raise.
    """
    block_bytes = int(block_bytes or _text.BLOCK_BYTES)
    parser = LineParser(
        path,
        start,
        first_line,
        colmap,
        delim,
        field_names=field_names,
        source=source,
        n_expected=n_lines,
        block_bytes=block_bytes,
    )
    n_text = parser.n_text
    texts: list[list[str]] = [[] for _ in range(n_text)]
    line_numbers: list[np.ndarray] = []
    g = 0
    x = np.asarray(target.expression)
    bar = progress(
        parser, total=_blocks_total(path, start, block_bytes), desc=desc, quiet=quiet, unit="block"
    )
    # The transposed copy of block k (numpy, one thread, GIL released) overlaps the
    # parsing of block k + 1 (Numba, all threads, GIL released).
    copier = ThreadPoolExecutor(max_workers=1)
    pending: Future[None] | None = None
    try:
        for block in bar:
            b = block.n_lines
            if g + b > n_lines:
                raise InputError(
                    f"more data lines than counted ({n_lines}); is the file changing?",
                    path=source,
                )
            vals = block.values
            if block.nonfinite.any():
                rows = np.flatnonzero(block.nonfinite)
                tally.add(block.nonfinite.sum())
                if tally.policy.mode == "error":
                    r = int(rows[0])
                    f = int(block.first_nonfinite[r])
                    what = f"sample {field_names[f]!r}"
                    raise tally.error(source, block.first_line + r, f + 1, what)
                if tally.policy.mode == "fill":
                    tally.fill(vals)
                else:
                    tally.bad_genes.update(int(g + r) for r in rows)
            if pending is not None:
                pending.result()
            pending = copier.submit(_copy_columns, x, vals, g)
            for k in range(n_text):
                texts[k].extend(block.texts(k))
            line_numbers.append(block.first_line + np.arange(b))
            g += b
        if pending is not None:
            pending.result()
    finally:
        copier.shutdown(wait=True)  # never leave a copy running into a matrix being removed
    if g != n_lines:
        raise InputError(f"expected {n_lines} data lines, read {g}", path=source)
    lines = np.concatenate(line_numbers) if line_numbers else np.zeros(0, dtype=np.int64)
    return RowsResult(texts, lines, g)


def stream_sample_rows(
    path: Path,
    source: Path,
    *,
    start: int,
    first_line: int,
    n_lines: int,
    colmap: np.ndarray,
    delim: str,
    field_names: Sequence[str],
    target: Target,
    tally: NanTally,
    quiet: bool | None,
    desc: str,
    block_bytes: int | None = None,
) -> RowsResult:
    """Parse a samples × genes text matrix into ``target`` (rows written as they come).

    Genes (columns) with NaN/inf are recorded in ``tally`` (``drop-genes``),
    filled, or raise.
    """
    block_bytes = int(block_bytes or _text.BLOCK_BYTES)
    parser = LineParser(
        path,
        start,
        first_line,
        colmap,
        delim,
        field_names=field_names,
        source=source,
        n_expected=n_lines,
        block_bytes=block_bytes,
    )
    n_text = parser.n_text
    texts: list[list[str]] = [[] for _ in range(n_text)]
    line_numbers: list[np.ndarray] = []
    # output column -> field index, for messages
    field_of = np.full(max(parser.n_out, 0), -1, dtype=np.int64)
    for f, m in enumerate(colmap):
        if m >= 0:
            field_of[m] = f
    bad_cols = np.zeros(parser.n_out, dtype=bool)
    i = 0
    bar = progress(
        parser, total=_blocks_total(path, start, block_bytes), desc=desc, quiet=quiet, unit="block"
    )
    for block in bar:
        b = block.n_lines
        if i + b > n_lines:
            raise InputError(
                f"more data lines than counted ({n_lines}); is the file changing?", path=source
            )
        vals = block.values
        if block.nonfinite.any():
            rows = np.flatnonzero(block.nonfinite)
            tally.add(block.nonfinite.sum())
            if tally.policy.mode == "error":
                r = int(rows[0])
                f = int(block.first_nonfinite[r])
                raise tally.error(source, block.first_line + r, f + 1, f"gene {field_names[f]!r}")
            if tally.policy.mode == "fill":
                tally.fill(vals)
            else:
                bad_cols |= ~np.isfinite(vals[rows]).all(axis=0)
        target.expression[i : i + b] = vals
        for k in range(n_text):
            texts[k].extend(block.texts(k))
        line_numbers.append(block.first_line + np.arange(b))
        i += b
    if i != n_lines:
        raise InputError(f"expected {n_lines} data lines, read {i}", path=source)
    tally.bad_genes.update(int(j) for j in np.flatnonzero(bad_cols))
    lines = np.concatenate(line_numbers) if line_numbers else np.zeros(0, dtype=np.int64)
    return RowsResult(texts, lines, i)


def count_lines(path: Path, start: int) -> int:
    """Data lines from ``start`` (see :func:`gexplain.io._text.count_data_lines`)."""
    return count_data_lines(path, start)
