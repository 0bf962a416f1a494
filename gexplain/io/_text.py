"""Reading delimited text in blocks of whole lines and parsing them with the kernels.

Everything here is format-agnostic: the readers (Xena, PanCanAtlas, GDC, wide
tables) describe each field with a column map (see :mod:`gexplain.kernels.parse`)
and receive float32 blocks plus the byte ranges of text fields. Errors are
reported with the file, the 1-based line number and the 1-based column.
"""

from __future__ import annotations

import gzip
import mmap
import os
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._progress import progress
from ..errors import InputError
from ..kernels import parse as K

BLOCK_BYTES = 32 * 2**20

NAN_TOKENS = ("", "NA", "NaN", "N/A", "null")


def is_gzip(path: Path) -> bool:
    """Whether ``path`` starts with the gzip magic bytes."""
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def gunzip_to(path: Path, dest: Path, quiet: bool | None = True) -> None:
    """Decompress ``path`` into ``dest`` in bounded memory; clear error when truncated/corrupt."""
    bar = progress(total=path.stat().st_size, desc="gunzip", quiet=quiet, unit="B")
    try:
        with open(path, "rb") as raw, gzip.open(raw, "rb") as src, open(dest, "wb") as dst:
            while chunk := src.read(8 * 2**20):
                dst.write(chunk)
                bar.update(raw.tell() - bar.n)
    except (EOFError, OSError, zlib.error) as exc:
        raise InputError(f"truncated or corrupt gzip file ({exc})", path=path) from exc
    finally:
        bar.close()


class PlainText:
    """A text file on disk, decompressed to a temporary file first if gzipped.

    Use as a context manager; the temporary file (beside ``workdir`` or in the
    system temporary folder) is removed on exit.
    """

    def __init__(
        self, path: str | os.PathLike[str], workdir: Path | None = None, quiet: bool | None = True
    ) -> None:
        self.source = Path(path)
        if not self.source.exists():
            raise InputError("file not found", path=self.source)
        if self.source.is_dir():
            raise InputError("expected a file, got a folder", path=self.source)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.path = self.source
        self.gzipped = is_gzip(self.source)
        if self.gzipped:
            parent = None if workdir is None else str(workdir)
            if parent is not None:
                Path(parent).mkdir(parents=True, exist_ok=True)
            self._tmp = tempfile.TemporaryDirectory(prefix=".gexplain-gunzip-", dir=parent)
            self.path = Path(self._tmp.name) / "plain.txt"
            try:
                gunzip_to(self.source, self.path, quiet=quiet)
            except BaseException:
                self.close()
                raise

    def close(self) -> None:
        """Remove the temporary decompressed copy, if any."""
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> PlainText:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Head:
    """The first lines of a text file and where the data lines begin."""

    lines: list[str]  # decoded lines (without line ends), as many as requested
    offsets: list[int]  # byte offset of each line's start
    end_offset: int  # byte offset just after the last returned line


def read_head(path: Path, n_lines: int, source: Path | None = None) -> Head:
    """Read the first ``n_lines`` lines (fewer if the file is shorter)."""
    lines: list[str] = []
    offsets: list[int] = []
    pos = 0
    with open(path, "rb") as f:
        for _ in range(n_lines):
            raw = f.readline()
            if not raw:
                break
            offsets.append(pos)
            pos += len(raw)
            try:
                lines.append(raw.rstrip(b"\r\n").decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"not UTF-8 text ({exc.reason} at byte {exc.start})",
                    path=source or path,
                    line=len(offsets),
                ) from exc
    return Head(lines, offsets, pos)


def count_data_lines(path: Path, start: int) -> int:
    """Number of lines from byte ``start`` to the end, ignoring trailing blank lines."""
    size = path.stat().st_size
    if start >= size:
        return 0
    newlines = 0
    window = 64 * 2**20
    with open(path, "rb") as f, _Mapped(f) as mm:
        arr = np.frombuffer(mm.mm, dtype=np.uint8)
        for off in range(start, size, window):
            stop = min(off + window, size)
            newlines += int(K.count_byte(arr[off:stop], stop - off, 10))
            mm.release(off, stop)
        tail = bytes(arr[max(start, size - (1 << 16)) : size])
        del arr
    body = tail.rstrip(b"\r\n")
    if not body and len(tail) == size - start:
        return 0  # nothing but line ends
    lines = newlines + (0 if tail.endswith(b"\n") else 1)
    trailing_blank = max(tail[len(body) :].count(b"\n") - 1, 0)
    return lines - trailing_blank


@dataclass
class Block:
    """One parsed block of lines."""

    first_line: int  # 1-based file line number of the block's first line
    n_lines: int
    values: np.ndarray  # (n_lines, n_out) float32
    text_start: np.ndarray  # (n_lines, n_text) int64
    text_end: np.ndarray
    nonfinite: np.ndarray  # (n_lines,) int64
    first_nonfinite: np.ndarray  # (n_lines,) int64 field index
    buf: np.ndarray  # the block's bytes (valid until the next block is read)
    n_raw_lines: int  # lines in the block including skipped trailing blank lines

    def text(self, line: int, slot: int) -> str:
        """Decoded text field ``slot`` of block line ``line``."""
        return bytes(self.buf[self.text_start[line, slot] : self.text_end[line, slot]]).decode(
            "utf-8", errors="replace"
        )

    def texts(self, slot: int) -> list[str]:
        """Decoded text field ``slot`` of every line of the block."""
        buf = self.buf
        s = self.text_start[:, slot]
        e = self.text_end[:, slot]
        mv = memoryview(buf)
        return [bytes(mv[a:b]).decode("utf-8", errors="replace") for a, b in zip(s, e)]


class LineParser:
    """Parse the data lines of a plain text file in blocks with a fixed column map.

    Parameters
    ----------
    path
        Plain (decompressed) file to read.
    start
        Byte offset of the first data line.
    first_line
        1-based line number of that line (for error messages).
    colmap
        Column map (see :mod:`gexplain.kernels.parse`).
    delim
        Field delimiter character.
    field_names
        Names of the fields (header), used in error messages.
    source
        Path to name in errors (the user's file, e.g. the ``.gz``).
    n_expected
        Number of data lines (trailing blank lines excluded); blank lines
        before it are errors, after it ignored.
    """

    def __init__(
        self,
        path: Path,
        start: int,
        first_line: int,
        colmap: np.ndarray,
        delim: str,
        field_names: Sequence[str] | None = None,
        source: Path | None = None,
        n_expected: int | None = None,
        block_bytes: int | None = None,
    ) -> None:
        self.path = path
        self.start = start
        self.first_line = first_line
        self.colmap = np.ascontiguousarray(colmap, dtype=np.int64)
        self.delim = delim
        self.delim_byte = ord(delim)
        self.field_names = list(field_names) if field_names is not None else None
        self.source = source or path
        self.n_out = int(self.colmap.max(initial=-1)) + 1
        self.n_text = int((-2 - self.colmap[self.colmap <= -2]).max(initial=-1)) + 1
        self.n_expected = n_expected
        self.block_bytes = int(block_bytes or BLOCK_BYTES)

    # ---------------------------------------------------------------- errors
    def _field_label(self, field: int) -> str:
        if self.field_names is not None and 0 <= field < len(self.field_names):
            return f" ({self.field_names[field]!r})"
        return ""

    def raise_for_line(
        self, buf: np.ndarray, start: int, end: int, line_no: int, code: int, field: int
    ) -> None:
        """Raise the :class:`InputError` describing a bad line."""
        raw = bytes(buf[start:end]).rstrip(b"\r\n").decode("utf-8", errors="replace")
        n_fields = len(self.colmap)
        if code == K.BLANK:
            raise InputError("blank line inside the data", path=self.source, line=line_no)
        if code in (K.TOO_FEW, K.TOO_MANY):
            found = raw.count(self.delim) + 1
            raise InputError(
                f"expected {n_fields} fields (as in the header) but found {found}",
                path=self.source,
                line=line_no,
                column=field + 1 if code == K.TOO_MANY else found,
            )
        token = raw.split(self.delim)[field] if field < raw.count(self.delim) + 1 else ""
        raise InputError(
            f"not a number: {token[:40]!r}{self._field_label(field)}",
            path=self.source,
            line=line_no,
            column=field + 1,
        )

    # ---------------------------------------------------------------- blocks
    def _parse(self, arr: np.ndarray, n: int, line_no: int) -> Block:
        starts = K.find_line_starts(arr, n)
        n_lines = len(starts)
        out = np.empty((n_lines, max(self.n_out, 0)), dtype=np.float32)
        ts = np.zeros((n_lines, self.n_text), dtype=np.int64)
        te = np.zeros((n_lines, self.n_text), dtype=np.int64)
        err = np.zeros(n_lines, dtype=np.int8)
        err_field = np.zeros(n_lines, dtype=np.int64)
        nonfinite = np.zeros(n_lines, dtype=np.int64)
        first_nf = np.zeros(n_lines, dtype=np.int64)
        K.parse_lines(
            arr,
            starts,
            n,
            self.delim_byte,
            self.colmap,
            out,
            ts,
            te,
            err,
            err_field,
            nonfinite,
            first_nf,
        )
        bad = np.flatnonzero(err)
        if bad.size:
            for i in bad:
                i = int(i)
                if err[i] == K.BLANK and self.n_expected is not None:
                    data_index = line_no - self.first_line + i
                    if data_index >= self.n_expected:
                        continue  # trailing blank line
                end = int(starts[i + 1]) if i + 1 < n_lines else n
                self.raise_for_line(
                    arr, int(starts[i]), end, line_no + i, int(err[i]), int(err_field[i])
                )
            keep = np.flatnonzero(err == 0)
            out, ts, te = out[keep], ts[keep], te[keep]
            nonfinite, first_nf = nonfinite[keep], first_nf[keep]
            n_lines = len(keep)
        return Block(line_no, n_lines, out, ts, te, nonfinite, first_nf, arr, len(starts))

    def __iter__(self) -> Iterator[Block]:
        """Blocks of whole lines, parsed straight from a read-only memory map of the file.

        No copy of the text is made; each block's pages are released from the
        process (``MADV_DONTNEED``, they stay in the page cache) once parsed, so
        resident memory stays bounded by one block however large the file.
        """
        size = self.path.stat().st_size
        if size <= self.start:
            return
        line_no = self.first_line
        with open(self.path, "rb") as f, _Mapped(f) as mm:
            arr = np.frombuffer(mm.mm, dtype=np.uint8)
            pos = self.start
            while pos < size:
                end = min(pos + self.block_bytes, size)
                cut = size if end == size else mm.mm.rfind(b"\n", pos, end) + 1
                if cut <= pos:  # a line longer than the block
                    nl = mm.mm.find(b"\n", end)
                    cut = size if nl < 0 else nl + 1
                if arr[cut - 1] == 10:
                    view = arr[pos:cut]
                else:  # the file's last line has no line end: parse a terminated copy
                    view = np.frombuffer(bytes(arr[pos:cut]) + b"\n", dtype=np.uint8)
                block = self._parse(view, len(view), line_no)
                line_no += block.n_raw_lines
                yield block
                del block, view
                mm.release(pos, cut)
                pos = cut
            del arr


class _Mapped:
    """A read-only memory map of a whole file whose parsed ranges can be released."""

    def __init__(self, f: object) -> None:
        self.mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)  # type: ignore[attr-defined]

    def release(self, start: int, stop: int) -> None:
        """Drop the pages fully inside ``[start, stop)`` from this process."""
        page = mmap.PAGESIZE
        a = -(-start // page) * page
        b = (stop // page) * page
        if b > a and hasattr(self.mm, "madvise"):
            self.mm.madvise(mmap.MADV_DONTNEED, a, b - a)

    def __enter__(self) -> _Mapped:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.mm.close()
        except BufferError:  # a caller still holds a view; the map goes with it
            pass


def split_header(line: str, delim: str) -> list[str]:
    """Split a header line; strips surrounding double quotes from names."""
    names = line.split(delim)
    return [n[1:-1] if len(n) >= 2 and n[0] == n[-1] == '"' else n for n in names]


def check_unique(
    names: Sequence[str], what: str, path: Path, line: int | None, offset: int = 1
) -> None:
    """Raise if a name repeats; the error gives the 1-based columns of both occurrences."""
    seen: dict[str, int] = {}
    for j, name in enumerate(names):
        if name in seen:
            raise InputError(
                f"duplicate {what} {name!r} (also in column {seen[name] + offset})",
                path=path,
                line=line,
                column=j + offset,
            )
        seen[name] = j
