"""Wide tables: CSV / TSV / Parquet with samples as rows (or genes as rows, ``transpose``)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from .._atomic import _check_target
from .._progress import progress
from ..cohort import Cohort
from ..errors import InputError
from ._common import (
    NanOption,
    NanPolicy,
    NanTally,
    Target,
    _cast_numeric,
    join_phenotype,
    make_meta,
    read_phenotype,
)
from ._rows import stream_gene_rows, stream_sample_rows
from ._text import PlainText, check_unique, count_data_lines, read_head, split_header

PathLike = str | os.PathLike[str]

_NUMBER = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$")
_MISSING = {"", "na", "nan", "n/a", "null", "inf", "+inf", "-inf", "infinity", "-infinity"}
_PARQUET = (".parquet", ".pq")


def _is_numeric_token(tok: str) -> bool:
    t = tok.strip()
    return bool(_NUMBER.match(t)) or t.lower() in _MISSING


def _unquote(s: str) -> str:
    return s[1:-1] if len(s) >= 2 and s[0] == s[-1] == '"' else s


def _delimiter(path: Path, header: str, sep: str | None) -> str:
    if sep is not None:
        return "\t" if sep in ("\\t", "tab") else sep
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.endswith(".csv"):
        return ","
    if name.endswith((".tsv", ".tab", ".txt")):
        return "\t"
    return "\t" if "\t" in header else ","


def read_table(
    path: PathLike,
    *,
    sample_column: str | None = None,
    label: str | None = None,
    transpose: bool = False,
    meta_columns: Sequence[str] | None = None,
    phenotype: PathLike | None = None,
    drop_unmatched: bool = False,
    sep: str | None = None,
    out: PathLike | None = None,
    overwrite: bool = False,
    nan: NanOption | NanPolicy = "error",
    units: str = "unknown",
    log2_source: bool | None = None,
    quiet: bool | None = True,
) -> Cohort:
    """Import a wide table: CSV, TSV (optionally gzipped) or Parquet.

    Samples as rows (default): one column holds the sample ids
    (``sample_column``, default the first), ``label`` names the class column,
    and every other column is a gene, except ``meta_columns`` and columns whose
    first value is not a number (they become sample columns). With
    ``transpose=True`` genes are rows: the first column holds gene ids, text
    columns (e.g. ``gene_name``) go to the gene table and the other columns are
    samples; labels then come from a ``phenotype`` table.

    Parameters
    ----------
    path
        ``.csv``, ``.tsv``/``.txt``/``.tab`` (``.gz`` allowed) or ``.parquet``.
    sample_column
        Column of sample ids (samples as rows).
    label
        Column copied into ``label`` (from the table, or from ``phenotype``).
    transpose
        Genes as rows, samples as columns.
    meta_columns
        Extra columns to keep as sample covariates instead of genes.
    phenotype
        Optional TSV joined on ``sample_id`` / ``sample`` / ``sampleID``.
    drop_unmatched
        Drop samples missing from ``phenotype``.
    sep
        Field delimiter (default: from the extension, else sniffed from the header).
    out, overwrite, nan, units, log2_source, quiet
        As in :func:`read_xena` (``units`` defaults to ``"unknown"``).

    Examples
    --------
    >>> from gexplain.io import read_table, fixture_path
    >>> c = read_table(fixture_path("table/wide.csv"), label="label")
    >>> c.shape, c.classes, c.samples.columns
    ((6, 5), ['basal', 'her2', 'luminal'], ['sample_id', 'label', 'batch'])
    """
    src = Path(path)
    policy = NanPolicy.parse(nan)
    if out is not None:
        _check_target(Path(out), overwrite)
    if not src.exists():
        raise InputError("file not found", path=src)
    if src.suffix.lower() in _PARQUET:
        cohort_parts = _parquet(
            src, sample_column, label, transpose, meta_columns, policy, out, overwrite, quiet
        )
    else:
        cohort_parts = _text(
            src, sample_column, label, transpose, meta_columns, sep, policy, out, overwrite, quiet
        )
    target, samples, genes, tally = cohort_parts
    try:
        if phenotype is not None:
            pheno, key = read_phenotype(phenotype, ("sample_id", "sample", "sampleID"))
            plabel = (
                label
                if transpose or (label is not None and "label" not in samples.columns)
                else None
            )
            samples = join_phenotype(samples, pheno, key, Path(phenotype), plabel, drop_unmatched)
            keep = samples["_matched"].to_numpy()
            samples = samples.drop("_matched")
            if not keep.all():
                target = _keep_samples(target, keep, genes)
                samples = samples.filter(pl.Series(keep))
        elif transpose and label is not None:
            raise InputError(
                "with transpose=True the label comes from a phenotype table (CLI: --phenotype)",
                path=src,
            )
        meta = make_meta(
            units,
            "table",
            log2_source,
            path=str(src),
            transpose=transpose,
            label=label,
            phenotype=None if phenotype is None else str(phenotype),
            n_samples=samples.height,
            n_genes=genes.height,
            **tally.summary(),
        )
        return target.commit(samples, genes, meta)
    except BaseException:
        target.abort()
        raise


def _keep_samples(target: Target, keep: np.ndarray, genes: pl.DataFrame) -> Target:
    """A new target holding only the kept rows (phenotype drop)."""
    idx = np.flatnonzero(keep)
    new = Target(target.out, idx.size, target.n_genes, target.overwrite)
    try:
        for start in range(0, idx.size, 1024):
            part = idx[start : start + 1024]
            new.expression[start : start + part.size] = target.expression[part]
    except BaseException:
        new.abort()
        raise
    target.abort()
    return new


def _finish_genes(target: Target, tally: NanTally, genes: pl.DataFrame, src: Path) -> pl.DataFrame:
    if not tally.bad_genes:
        return genes
    keep = np.ones(genes.height, dtype=bool)
    keep[sorted(tally.bad_genes)] = False
    if not keep.any():
        raise InputError("every gene has a NaN/inf value; nothing left", path=src)
    target.keep_genes(keep)
    return genes.filter(pl.Series(keep))


def _check_ids(ids: pl.Series, lines: np.ndarray, what: str, src: Path, column: int) -> None:
    empty = (ids == "").fill_null(True).to_numpy()
    if empty.any():
        r = int(np.flatnonzero(empty)[0])
        raise InputError(f"empty {what}", path=src, line=int(lines[r]), column=column)
    dup = ids.is_duplicated().to_numpy()
    if dup.any():
        first = ids[int(np.flatnonzero(dup)[0])]
        same = np.flatnonzero((ids == first).to_numpy())
        raise InputError(
            f"duplicate {what} {first!r} (also on line {int(lines[same[0]])})",
            path=src,
            line=int(lines[same[1]]),
            column=column,
        )


# ---------------------------------------------------------------------------- text
def _text(
    src: Path,
    sample_column: str | None,
    label: str | None,
    transpose: bool,
    meta_columns: Sequence[str] | None,
    sep: str | None,
    policy: NanPolicy,
    out: PathLike | None,
    overwrite: bool,
    quiet: bool | None,
) -> tuple[Target, pl.DataFrame, pl.DataFrame, NanTally]:
    workdir = None if out is None else Path(out).absolute().parent
    with PlainText(src, workdir=workdir, quiet=quiet) as plain:
        if plain.path.stat().st_size == 0:
            raise InputError("empty file", path=src)
        head = read_head(plain.path, 2, source=src)
        delim = _delimiter(src, head.lines[0], sep)
        names = split_header(head.lines[0], delim)
        if len(head.lines) < 2 or not head.lines[1].strip():
            raise InputError("no data lines after the header", path=src, line=2)
        first = head.lines[1].split(delim)
        check_unique(names, "column name", src, line=1)
        explicit = [c for c in [sample_column, *(meta_columns or [])] if c is not None]
        if not transpose and label is not None:
            explicit.append(label)
        for c in explicit:
            if c not in names:
                raise InputError(
                    f"no column {c!r}; columns are {names[:8]}{' ...' if len(names) > 8 else ''}",
                    path=src,
                    line=1,
                )
        id_col = sample_column if (sample_column and not transpose) else names[0]
        text_cols = [id_col] + [
            c
            for j, c in enumerate(names)
            if c != id_col
            and (c in explicit or (j < len(first) and not _is_numeric_token(first[j])))
        ]
        num_cols = [c for c in names if c not in text_cols]
        if not num_cols:
            raise InputError("no numeric columns", path=src, line=2)
        colmap = np.full(len(names), -1, dtype=np.int64)
        slot = {c: k for k, c in enumerate(text_cols)}
        pos = {c: k for k, c in enumerate(num_cols)}
        for j, c in enumerate(names):
            colmap[j] = pos[c] if c in pos else -2 - slot[c]
        n_lines = count_data_lines(plain.path, head.offsets[1])
        tally = NanTally(policy)
        if transpose:
            samples = pl.DataFrame({"sample_id": num_cols})
            target = Target(out, len(num_cols), n_lines, overwrite)
            stream = stream_gene_rows
        else:
            target = Target(out, n_lines, len(num_cols), overwrite)
            stream = stream_sample_rows
        try:
            res = stream(
                plain.path,
                src,
                start=head.offsets[1],
                first_line=2,
                n_lines=n_lines,
                colmap=colmap,
                delim=delim,
                field_names=names,
                target=target,
                tally=tally,
                quiet=quiet,
                desc="import table",
            )
            cols = {
                c: pl.Series(c, [_unquote(v) for v in res.texts[k]], dtype=pl.String)
                for k, c in enumerate(text_cols)
            }
            ids = cols.pop(id_col)
            what = "gene id" if transpose else "sample id"
            _check_ids(ids, res.lines, what, src, names.index(id_col) + 1)
            rest = _cast_numeric(pl.DataFrame(list(cols.values())), exclude={label or ""})
            if transpose:
                extra = rest.select([c for c in rest.columns if c != "gene_id"])
                genes = pl.concat([pl.DataFrame({"gene_id": ids}), extra], how="horizontal")
            else:
                genes = pl.DataFrame({"gene_id": num_cols})
                extra = rest.select([c for c in rest.columns if c != "sample_id"])
                samples = pl.concat([pl.DataFrame({"sample_id": ids}), extra], how="horizontal")
                if label is not None:
                    samples = samples.with_columns(pl.col(label).cast(pl.String).alias("label"))
                    if label != "label":
                        samples = samples.select(
                            "sample_id", "label", pl.exclude("sample_id", "label")
                        )
            genes = _finish_genes(target, tally, genes, src)
        except BaseException:
            target.abort()
            raise
    return target, samples, genes, tally


# ---------------------------------------------------------------------------- parquet
def _parquet(
    src: Path,
    sample_column: str | None,
    label: str | None,
    transpose: bool,
    meta_columns: Sequence[str] | None,
    policy: NanPolicy,
    out: PathLike | None,
    overwrite: bool,
    quiet: bool | None,
) -> tuple[Target, pl.DataFrame, pl.DataFrame, NanTally]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(src)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"not a Parquet file ({exc})", path=src) from exc
    schema = pf.schema_arrow
    names = schema.names
    check_unique(names, "column name", src, line=None)
    explicit = [c for c in [sample_column, *(meta_columns or [])] if c is not None]
    if not transpose and label is not None:
        explicit.append(label)
    for c in explicit:
        if c not in names:
            raise InputError(f"no column {c!r}; columns are {names[:8]}", path=src)

    def numeric(t: pa.DataType) -> bool:
        return pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_decimal(t)

    id_col = sample_column if (sample_column and not transpose) else names[0]
    text_cols = [id_col] + [
        c for c in names if c != id_col and (c in explicit or not numeric(schema.field(c).type))
    ]
    num_cols = [c for c in names if c not in text_cols]
    if not num_cols:
        raise InputError("no numeric columns", path=src)
    n_rows = pf.metadata.num_rows
    if n_rows == 0:
        raise InputError("no rows", path=src)
    tally = NanTally(policy)
    target = (
        Target(out, len(num_cols), n_rows, overwrite)
        if transpose
        else Target(out, n_rows, len(num_cols), overwrite)
    )
    texts: dict[str, list] = {c: [] for c in text_cols}
    bad_cols = np.zeros(len(num_cols), dtype=bool)
    i = 0
    try:
        batches = pf.iter_batches(batch_size=max(1, min(4096, 2**24 // max(1, len(num_cols)))))
        for batch in progress(batches, desc="import table", quiet=quiet, unit="batch"):
            b = batch.num_rows
            block = np.empty((b, len(num_cols)), dtype=np.float32)
            for k, c in enumerate(num_cols):
                col = batch.column(c)
                if pa.types.is_decimal(col.type):
                    col = col.cast(pa.float64())
                block[:, k] = col.to_numpy(zero_copy_only=False)
            for c in text_cols:
                texts[c].extend(batch.column(c).to_pylist())
            finite = np.isfinite(block)
            if not finite.all():
                tally.add(int((~finite).sum()))
                if policy.mode == "error":
                    r, k = np.argwhere(~finite)[0]
                    raise InputError(
                        f"non-finite value (NaN/inf/null) at row {i + int(r) + 1}; pass "
                        "nan='drop-genes' or nan='fill=VALUE' (CLI: --nan ...) to accept them",
                        path=src,
                        column=num_cols[k],
                    )
                if policy.mode == "fill":
                    tally.fill(block)
                elif transpose:
                    tally.bad_genes.update(i + int(r) for r in np.flatnonzero(~finite.all(axis=1)))
                else:
                    bad_cols |= ~finite.all(axis=0)
            if transpose:
                target.expression[:, i : i + b] = block.T
            else:
                target.expression[i : i + b] = block
            i += b
        tally.bad_genes.update(int(j) for j in np.flatnonzero(bad_cols))
        rows = np.arange(2, n_rows + 2)
        raw_ids = texts.pop(id_col)
        ids = pl.Series(id_col, [None if v is None else str(v) for v in raw_ids], dtype=pl.String)
        what = "gene id" if transpose else "sample id"
        _check_ids(ids, rows - 1, what, src, names.index(id_col) + 1)
        rest = pl.DataFrame({c: pl.Series(c, v) for c, v in texts.items()})
        if transpose:
            samples = pl.DataFrame({"sample_id": num_cols})
            genes = pl.concat([pl.DataFrame({"gene_id": ids}), rest], how="horizontal")
        else:
            genes = pl.DataFrame({"gene_id": num_cols})
            samples = pl.concat([pl.DataFrame({"sample_id": ids}), rest], how="horizontal")
            if label is not None:
                samples = samples.with_columns(pl.col(label).cast(pl.String).alias("label"))
        genes = _finish_genes(target, tally, genes, src)
    except BaseException:
        target.abort()
        raise
    return target, samples, genes, tally
