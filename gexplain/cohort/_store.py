"""On-disk cohort folders: Arrow IPC expression matrix + Parquet tables + JSON.

Layout of a cohort folder::

    expression.arrow   Arrow IPC file, one column ``expression`` of type
                       fixed_size_list<float32>[n_genes], rows = samples
    samples.parquet    sample table (``sample_id`` first)
    genes.parquet      gene table (``gene_id`` first)
    cohort.json        meta: units, provenance, preprocessing steps
    truth/             optional ground truth (simulated cohorts)

The matrix is written as one record batch whose float32 values are contiguous
in the file, so loading memory-maps it and hands out a zero-copy, C-contiguous
``(n_samples, n_genes)`` view. Writers that produce rows in chunks
(:class:`CohortWriter`) pre-allocate that layout and fill it through a
``numpy.memmap``: memory stays bounded by the chunk, whatever the cohort size.
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from .._atomic import PartialDir, _check_target, _tmp_sibling, commit_dir, write_json
from ..errors import InputError

EXPRESSION_FILE = "expression.arrow"
SAMPLES_FILE = "samples.parquet"
GENES_FILE = "genes.parquet"
META_FILE = "cohort.json"
TRUTH_DIR = "truth"
FORMAT_VERSION = 1


def expression_schema(n_genes: int) -> pa.Schema:
    """Arrow schema of ``expression.arrow`` for ``n_genes`` genes."""
    return pa.schema(
        [pa.field("expression", pa.list_(pa.float32(), n_genes), nullable=False)],
        metadata={b"gexplain.n_genes": str(n_genes).encode()},
    )


def fixed_size_list(matrix: np.ndarray) -> pa.FixedSizeListArray:
    """Zero-copy Arrow view of a C-contiguous float32 matrix as fixed-size lists (rows)."""
    if matrix.dtype != np.float32 or not matrix.flags.c_contiguous or matrix.ndim != 2:
        raise ValueError("expected a C-contiguous float32 matrix")
    flat = matrix.reshape(-1)
    values = pa.Array.from_buffers(pa.float32(), flat.size, [None, pa.py_buffer(flat)])
    return pa.FixedSizeListArray.from_arrays(values, matrix.shape[1])


def write_expression(path: Path, matrix: np.ndarray) -> None:
    """Write ``matrix`` (samples × genes float32) as a single-batch Arrow IPC file."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    schema = expression_schema(matrix.shape[1])
    batch = pa.record_batch([fixed_size_list(matrix)], schema=schema)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        writer.write_batch(batch)


def _values_offset(path: Path) -> int:
    """Byte offset of the (single) batch's float32 values inside an IPC file."""
    mm = pa.memory_map(str(path), "r")
    try:
        whole = mm.read_buffer()
        reader = pa.ipc.open_file(pa.BufferReader(whole))
        col = reader.get_batch(0).column(0)
        values = col.values
        start = 4 * (col.offset * col.type.list_size + values.offset)
        return values.buffers()[1].address + start - whole.address
    finally:
        mm.close()


class _HoleWriter:
    """File sink for Arrow that seeks over large all-zero writes, leaving a sparse hole.

    Arrow hands the record batch body over as one zero-copy buffer; skipping it
    makes preallocating a multi-GB matrix cost milliseconds instead of a full
    write of zeros (a hole reads back as zeros). With ``known_zero`` the
    caller guarantees that large buffers are zeros and they are not scanned.
    """

    def __init__(self, f: Any, known_zero: bool = False) -> None:
        self.f = f
        self.pos = 0
        self.known_zero = known_zero

    def write(self, data: Any) -> int:
        mv = memoryview(data)
        n = mv.nbytes
        if n >= 1 << 20 and (self.known_zero or not np.frombuffer(mv, dtype=np.uint8).any()):
            self.f.seek(n, os.SEEK_CUR)
        else:
            self.f.write(mv)
        self.pos += n
        return n

    def tell(self) -> int:
        return self.pos

    def flush(self) -> None:
        self.f.flush()

    def close(self) -> None:
        self.f.close()

    @property
    def closed(self) -> bool:
        return self.f.closed

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False


def preallocate_expression(path: Path, n_samples: int, n_genes: int) -> np.memmap:
    """Create ``expression.arrow`` for ``n_samples × n_genes`` and return a writable memmap.

    The file is a valid single-batch IPC file filled with zeros; rows are then
    written in place (:meth:`CohortWriter.write`, or the returned memmap). The
    zero values are a sparse hole: the batch body comes from an anonymous
    mapping that is never touched (no memory) and the sink seeks over it, so
    this takes milliseconds and no disk space until rows are written.
    """
    anon = mmap.mmap(-1, max(4 * n_samples * n_genes, 1))
    zeros = np.frombuffer(anon, dtype=np.float32, count=n_samples * n_genes)
    schema = expression_schema(n_genes)
    batch = pa.record_batch([fixed_size_list(zeros.reshape(n_samples, n_genes))], schema=schema)
    with open(path, "wb") as raw:
        sink = _HoleWriter(raw, known_zero=True)
        with pa.ipc.new_file(sink, schema) as writer:
            writer.write_batch(batch)
        raw.truncate(sink.pos)  # in case the file ends in a hole
    del batch, zeros
    anon.close()
    offset = _values_offset(path)
    return np.memmap(path, dtype=np.float32, mode="r+", offset=offset, shape=(n_samples, n_genes))


def _matrix_view(col: pa.FixedSizeListArray, n_genes: int, path: Path) -> np.ndarray:
    """Zero-copy ``(rows, n_genes)`` view of a fixed-size-list column.

    Goes through the raw values buffer: ``flatten()``/``to_numpy()`` would touch
    every page of a memory-mapped file.
    """
    values = col.values
    if col.null_count or values.null_count:
        raise InputError("expression matrix holds nulls", path=path)
    start = (col.offset * n_genes) + values.offset
    count = len(col) * n_genes
    if values.type == pa.float32():
        arr = np.frombuffer(values.buffers()[1], dtype=np.float32, count=count, offset=4 * start)
    else:
        arr = values.to_numpy(zero_copy_only=False)[start : start + count].astype(np.float32)
    return arr.reshape(len(col), n_genes)


def read_expression(path: Path, mmap: bool = True) -> list[np.ndarray]:
    """Read ``expression.arrow`` as a list of per-batch ``(rows, n_genes)`` float32 arrays.

    With ``mmap=True`` the arrays are read-only, zero-copy views of the mapped file.
    """
    if not path.exists():
        raise InputError("missing expression matrix (expression.arrow)", path=path.parent)
    try:
        source = pa.memory_map(str(path), "r") if mmap else pa.OSFile(str(path), "rb")
        reader = pa.ipc.open_file(source)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"not an Arrow IPC file: {exc}", path=path) from exc
    field = reader.schema.field(0) if reader.schema.names else None
    if field is None or not pa.types.is_fixed_size_list(field.type):
        raise InputError(
            "expected a single column 'expression' of fixed_size_list<float32>", path=path
        )
    n_genes = field.type.list_size
    out = []
    for i in range(reader.num_record_batches):
        col = reader.get_batch(i).column(0)
        out.append(_matrix_view(col, n_genes, path))
    if not out:
        out.append(np.empty((0, n_genes), dtype=np.float32))
    return out


def write_tables(
    folder: Path, samples: pl.DataFrame, genes: pl.DataFrame, meta: dict[str, Any]
) -> None:
    """Write the sample and gene tables and ``cohort.json`` into ``folder``."""
    samples.write_parquet(folder / SAMPLES_FILE)
    genes.write_parquet(folder / GENES_FILE)
    write_json(folder / META_FILE, meta)


def read_tables(folder: Path) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    """Read the sample and gene tables and ``cohort.json`` of a cohort folder."""
    for name in (SAMPLES_FILE, GENES_FILE, META_FILE):
        if not (folder / name).exists():
            raise InputError(f"not a cohort folder: {name} is missing", path=folder)
    try:
        meta = json.loads((folder / META_FILE).read_text())
    except ValueError as exc:
        raise InputError(f"cohort.json is not valid JSON: {exc}", path=folder / META_FILE) from exc
    return pl.read_parquet(folder / SAMPLES_FILE), pl.read_parquet(folder / GENES_FILE), meta


class CohortWriter:
    """Write a cohort folder row-chunk by row-chunk with bounded memory.

    The final folder appears atomically on :meth:`commit`. With ``resume_params``
    the work folder is the stable ``.NAME.partial`` beside the output: chunks
    marked done by an interrupted run are kept and :meth:`is_done` reports them
    (the parameters must match, else the work starts afresh).

    Parameters
    ----------
    path
        Final cohort folder.
    n_samples
        Number of rows that will be written.
    genes
        Gene table (``gene_id`` first) of the columns.
    overwrite
        Replace an existing folder at ``path``.
    resume_params
        JSON-serialisable parameters that identify the job, to allow resuming.

    Examples
    --------
    >>> import numpy as np, polars as pl, tempfile, os
    >>> from gexplain.cohort import CohortWriter, Cohort
    >>> out = os.path.join(tempfile.mkdtemp(), "c")
    >>> w = CohortWriter(out, 4, pl.DataFrame({"gene_id": ["g1", "g2"]}))
    >>> w.write(0, np.ones((2, 2), np.float32)); w.write(2, np.zeros((2, 2), np.float32))
    >>> c = w.commit(pl.DataFrame({"sample_id": list("abcd")}), {"units": "counts"})
    >>> Cohort.load(out).expression.sum()
    np.float32(4.0)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        n_samples: int,
        genes: pl.DataFrame,
        *,
        overwrite: bool = False,
        resume_params: dict[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self.genes = genes
        self.n_samples = int(n_samples)
        self.n_genes = genes.height
        self.overwrite = overwrite
        self._partial: PartialDir | None = None
        if resume_params is not None:
            params = {
                **resume_params,
                "_n_samples": self.n_samples,
                "_n_genes": self.n_genes,
            }
            self._partial = PartialDir(self.path, params, overwrite=overwrite)
            self.dir = self._partial.dir / "cohort"
        else:
            _check_target(self.path, overwrite)
            self.dir = _tmp_sibling(self.path, "tmp")
        self.dir.mkdir(parents=True, exist_ok=True)
        expr = self.dir / EXPRESSION_FILE
        if expr.exists():
            offset = _values_offset(expr)
            self.expression = np.memmap(
                expr,
                dtype=np.float32,
                mode="r+",
                offset=offset,
                shape=(self.n_samples, self.n_genes),
            )
        else:
            self.expression = preallocate_expression(expr, self.n_samples, self.n_genes)
        self._fd: int | None = None

    def write(self, start: int, rows: np.ndarray) -> None:
        """Write ``rows`` (chunk × genes) at sample index ``start``.

        The rows go to the file with ``pwrite`` (not through the memory map:
        first writes to the pages of a fresh sparse file are several times
        slower through a mapping); the two views of the file stay coherent.
        Thread-safe for disjoint rows.
        """
        rows = np.asarray(rows)
        if rows.ndim != 2 or rows.shape[1] != self.n_genes:
            raise ValueError(f"rows must have shape (k, {self.n_genes}), got {rows.shape}")
        if start < 0 or start + rows.shape[0] > self.n_samples:
            raise ValueError(f"rows {start}..{start + rows.shape[0]} out of 0..{self.n_samples}")
        data = memoryview(np.ascontiguousarray(rows, dtype=np.float32)).cast("B")
        pos = self.expression.offset + 4 * start * self.n_genes
        if self._fd is None:
            self._fd = os.open(self.expression.filename, os.O_WRONLY)
        while data:
            written = os.pwrite(self._fd, data, pos)
            data = data[written:]
            pos += written

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def is_done(self, chunk: str) -> bool:
        """Whether ``chunk`` was marked done (by this run or a resumed one)."""
        return self._partial is not None and self._partial.is_done(f"done-{chunk}")

    def mark_done(self, chunk: str) -> None:
        """Flush written rows to disk and record ``chunk`` as finished (resumable writers)."""
        self.expression.flush()
        if self._partial is not None:
            self._partial.chunk_path(f"done-{chunk}").touch()

    def abort(self) -> None:
        """Drop the work (not for resumable writers, whose finished chunks are kept)."""
        self._close_fd()
        del self.expression
        if self._partial is None:
            shutil.rmtree(self.dir, ignore_errors=True)

    def commit(
        self,
        samples: pl.DataFrame,
        meta: dict[str, Any],
        truth: Any | None = None,
    ) -> Path:
        """Write the tables, then move the finished folder to its final path."""
        from ._cohort import Cohort

        if samples.height != self.n_samples:
            raise ValueError(f"samples table has {samples.height} rows, expected {self.n_samples}")
        # No msync here: unmapping leaves the written pages in the page cache, which
        # every reader sees and the OS writes back. A synchronous flush would wait
        # for the disk (seconds for a GB matrix) while no other output is fsynced.
        self._close_fd()
        del self.expression
        # validate tables the same way an in-memory cohort would be
        samples, genes = Cohort._validate_tables(samples, self.genes, self.n_samples, self.n_genes)
        write_tables(self.dir, samples, genes, Cohort._complete_meta(meta))
        if truth is not None:
            truth.save(self.dir / TRUTH_DIR)
        if self._partial is not None:
            final = self._partial.dir.with_name(_tmp_sibling(self.path, "tmp").name)
            os.replace(self.dir, final)
            return self._partial.commit(final)
        commit_dir(self.dir, self.path, overwrite=self.overwrite)
        return self.path
