"""UCSC Xena and PanCanAtlas gene × sample matrices."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from .._atomic import _check_target
from ..cohort import Cohort
from ..errors import InputError
from . import tcga
from ._common import (
    NanOption,
    NanPolicy,
    NanTally,
    Target,
    join_phenotype,
    make_meta,
    read_phenotype,
)
from ._rows import stream_gene_rows
from ._text import PlainText, check_unique, count_data_lines, read_head

PathLike = str | os.PathLike[str]

#: Units of a Xena ``HiSeqV2`` matrix (RSEM normalized counts, log2(x+1)).
XENA_UNITS = "log2(norm_count+1)"
#: Units of the PanCanAtlas ``EB++AdjustPANCAN_IlluminaHiSeq_RNASeqV2.geneExp.tsv`` matrix.
PANCAN_UNITS = "norm_count (RSEM, EB++ batch-adjusted)"


def _workdir(out: PathLike | None) -> Path | None:
    return None if out is None else Path(out).absolute().parent


def _sample_table(
    ids: list[str],
    *,
    matrix: Path,
    phenotype: PathLike | None,
    phenotype_keys: tuple[str, ...],
    label: str | None,
    sample_types: Iterable[str | int] | str | None,
    drop_unmatched: bool,
) -> tuple[pl.DataFrame, np.ndarray]:
    """Sample table of the selected columns, and the boolean selection over ``ids``."""
    samples = pl.DataFrame({"sample_id": ids}, schema={"sample_id": pl.String})
    barcodes = tcga.all_barcodes(samples["sample_id"])
    if barcodes:
        samples = pl.concat([samples, tcga.barcode_table(samples["sample_id"])], how="horizontal")
    keep = np.ones(len(ids), dtype=bool)
    codes = tcga.normalize_codes(sample_types)
    if codes is not None:
        if not barcodes:
            bad = samples.filter(~tcga.is_barcode(samples["sample_id"]))["sample_id"][0]
            raise InputError(
                f"sample_types needs TCGA barcodes as sample ids, but {bad!r} is not one",
                path=matrix,
                line=1,
            )
        keep &= samples["sample_type_code"].is_in(codes).to_numpy()
    if phenotype is not None:
        pheno, key = read_phenotype(phenotype, phenotype_keys)
        samples = join_phenotype(samples, pheno, key, Path(phenotype), label, drop_unmatched)
        keep &= samples["_matched"].to_numpy()
        samples = samples.drop("_matched")
    elif label is not None:
        raise InputError(
            f"label {label!r} needs a phenotype table (CLI: --phenotype TSV)", path=matrix
        )
    if not keep.any():
        raise InputError("no sample left after the sample-type / phenotype selection", path=matrix)
    return samples.filter(pl.Series(keep)), keep


def _import_gene_matrix(
    matrix: PathLike,
    *,
    source_kind: str,
    phenotype: PathLike | None,
    phenotype_keys: tuple[str, ...],
    label: str | None,
    sample_types: Iterable[str | int] | str | None,
    drop_unmatched: bool,
    out: PathLike | None,
    overwrite: bool,
    nan: NanOption | NanPolicy,
    units: str,
    log2_source: bool | None,
    split_ids: bool,
    quiet: bool | None,
) -> Cohort:
    path = Path(matrix)
    policy = NanPolicy.parse(nan)
    if out is not None:
        _check_target(Path(out), overwrite)  # before any long work
    target: Target | None = None
    with PlainText(path, workdir=_workdir(out), quiet=quiet) as plain:
        try:
            if plain.path.stat().st_size == 0:
                raise InputError("empty file", path=path)
            head = read_head(plain.path, 1, source=path)
            header = head.lines[0].split("\t")
            if len(header) < 2:
                raise InputError(
                    "header has no sample columns (expected tab-separated: sample, S1, S2, ...)",
                    path=path,
                    line=1,
                )
            ids = header[1:]
            if any(not s for s in ids):
                j = ids.index("")
                raise InputError("empty sample id in the header", path=path, line=1, column=j + 2)
            check_unique(header[1:], "sample id", path, line=1, offset=2)
            samples, keep = _sample_table(
                ids,
                matrix=path,
                phenotype=phenotype,
                phenotype_keys=phenotype_keys,
                label=label,
                sample_types=sample_types,
                drop_unmatched=drop_unmatched,
            )
            n_genes = count_data_lines(plain.path, head.end_offset)
            if n_genes == 0:
                raise InputError("no data lines after the header", path=path, line=2)
            colmap = np.full(len(header), -1, dtype=np.int64)
            colmap[0] = -2
            colmap[1:][keep] = np.arange(int(keep.sum()))
            target = Target(out, samples.height, n_genes, overwrite)
            tally = NanTally(policy)
            res = stream_gene_rows(
                plain.path,
                path,
                start=head.end_offset,
                first_line=2,
                n_lines=n_genes,
                colmap=colmap,
                delim="\t",
                field_names=header,
                target=target,
                tally=tally,
                quiet=quiet,
                desc=f"import {source_kind}",
            )
            genes = _gene_table(res.texts[0], res.lines, path, split_ids)
            if tally.bad_genes:
                keep_g = np.ones(genes.height, dtype=bool)
                keep_g[sorted(tally.bad_genes)] = False
                if not keep_g.any():
                    raise InputError("every gene has a NaN/inf value; nothing left", path=path)
                target.keep_genes(keep_g)
                genes = genes.filter(pl.Series(keep_g))
            meta = make_meta(
                units,
                source_kind,
                log2_source,
                path=str(path),
                phenotype=None if phenotype is None else str(phenotype),
                label=label,
                sample_types=tcga.normalize_codes(sample_types),
                n_samples=samples.height,
                n_genes=genes.height,
                n_samples_in_file=len(ids),
                **tally.summary(),
            )
            return target.commit(samples, genes, meta)
        except BaseException:
            if target is not None:
                target.abort()
            raise


def _gene_table(ids: list[str], lines: np.ndarray, path: Path, split_ids: bool) -> pl.DataFrame:
    """Gene table from the first column; ``SYMBOL|ENTREZ`` split when ``split_ids``."""
    raw = pl.Series("raw", ids, dtype=pl.String)
    if split_ids:
        parts = raw.str.split_exact("|", 1)
        name = parts.struct.field("field_0")
        gid = parts.struct.field("field_1")
        has_bar = raw.str.contains("|", literal=True)
        genes = pl.DataFrame(
            {
                "gene_id": pl.select(pl.when(has_bar).then(gid).otherwise(raw)).to_series(),
                "gene_name": pl.select(
                    pl.when(has_bar & (name != "?") & (name != "")).then(name).otherwise(None)
                ).to_series(),
            }
        )
    else:
        genes = pl.DataFrame({"gene_id": raw})
    gid = genes["gene_id"]
    empty = (gid == "").to_numpy() | gid.is_null().to_numpy()
    if empty.any():
        r = int(np.flatnonzero(empty)[0])
        raise InputError("empty gene id", path=path, line=int(lines[r]), column=1)
    dup = gid.is_duplicated().to_numpy()
    if dup.any():
        rows = np.flatnonzero(dup)
        first = gid[int(rows[0])]
        same = np.flatnonzero((gid == first).to_numpy())
        raise InputError(
            f"duplicate gene id {first!r} (also on line {int(lines[same[0]])}); "
            "gene ids must be unique",
            path=path,
            line=int(lines[same[1]]),
            column=1,
        )
    return genes


def read_xena(
    matrix: PathLike,
    phenotype: PathLike | None = None,
    *,
    label: str | None = None,
    sample_types: Sequence[str | int] | str | None = None,
    drop_unmatched: bool = False,
    out: PathLike | None = None,
    overwrite: bool = False,
    nan: NanOption | NanPolicy = "error",
    units: str = XENA_UNITS,
    log2_source: bool | None = None,
    quiet: bool | None = True,
) -> Cohort:
    """Import a UCSC Xena genes × samples matrix (``HiSeqV2``-style TSV, optionally gzipped).

    The matrix is streamed in blocks of lines and transposed on the fly into a
    samples × genes float32 cohort; memory stays bounded by one block (plus the
    output matrix when ``out`` is ``None``).

    Parameters
    ----------
    matrix
        TSV (or ``.gz``): first line ``sample<TAB>S1<TAB>S2...``, then one line
        per gene ``GENE<TAB>v1<TAB>v2...``.
    phenotype
        Xena phenotype/clinical TSV joined on ``sampleID`` (or ``sample``, else
        its first column); every column becomes a sample column. A matrix
        sample missing from it is an error unless ``drop_unmatched``.
    label
        Phenotype column copied into ``label`` (the class).
    sample_types
        Keep only these TCGA sample type codes (e.g. ``"01,03"``); needs
        barcodes as sample ids.
    drop_unmatched
        Drop matrix samples that have no phenotype row.
    out
        Cohort folder to write (chunked, atomic); ``None`` returns an in-memory
        cohort.
    overwrite
        Replace ``out`` if it exists.
    nan
        ``"error"`` (default: the first NaN/inf/NA is an error naming its line
        and column), ``"drop-genes"`` or ``"fill=VALUE"``.
    units
        Units recorded in the cohort meta. The default is the ``HiSeqV2``
        convention, ``log2(norm_count+1)``.
    log2_source
        Whether the values are already ``log2(x+1)``; ``None`` infers it from
        ``units``. When true, a ``log2p1`` preprocessing step ``by: source`` is
        recorded so models trained on the cohort carry the transform.
    quiet
        Hide the progress bar (``None``: show it on a terminal).

    Returns
    -------
    Cohort
        ``sample_id`` = matrix column names; TCGA barcode columns
        (``participant``, ``tss``, ``sample_type_code``, ``sample_type``,
        ``vial``) when every id is a barcode; phenotype columns; ``label``.

    Examples
    --------
    >>> from gexplain.io import read_xena, fixture_path
    >>> c = read_xena(fixture_path("xena/HiSeqV2.tsv"), fixture_path("xena/phenotype.tsv"),
    ...               label="_primary_disease", sample_types="01")
    >>> c.shape, c.classes
    ((5, 12), ['breast invasive carcinoma', 'lung adenocarcinoma'])
    >>> c.value_transforms
    ['log2p1']
    """
    return _import_gene_matrix(
        matrix,
        source_kind="xena",
        phenotype=phenotype,
        phenotype_keys=("sampleID", "sample"),
        label=label,
        sample_types=sample_types,
        drop_unmatched=drop_unmatched,
        out=out,
        overwrite=overwrite,
        nan=nan,
        units=units,
        log2_source=log2_source,
        split_ids=False,
        quiet=quiet,
    )


def read_pancan(
    matrix: PathLike,
    phenotype: PathLike,
    *,
    label: str | None = "_primary_disease",
    sample_types: Sequence[str | int] | str | None = None,
    drop_unmatched: bool = False,
    out: PathLike | None = None,
    overwrite: bool = False,
    nan: NanOption | NanPolicy = "error",
    units: str = PANCAN_UNITS,
    log2_source: bool | None = None,
    quiet: bool | None = True,
) -> Cohort:
    """Import the PanCanAtlas ``EB++AdjustPANCAN_IlluminaHiSeq_RNASeqV2.geneExp.tsv`` matrix.

    Like :func:`read_xena`, but the first column holds ``SYMBOL|ENTREZ`` ids
    (``gene_id`` header): they are split into ``gene_name`` (``None`` for
    ``?``) and ``gene_id`` = the Entrez id, which is unique (``?|100130426``
    and ``?|10357`` are different genes). The sample ids are aliquot barcodes;
    the phenotype (``TCGA_phenotype_denseDataOnlyDownload.tsv``: ``sample``,
    ``sample_type_id``, ``sample_type``, ``_primary_disease``) is joined on the
    sample-level barcode. The default label is ``_primary_disease``.

    Examples
    --------
    >>> from gexplain.io import read_pancan, fixture_path
    >>> c = read_pancan(fixture_path("pancan/EB++AdjustPANCAN_IlluminaHiSeq_RNASeqV2.geneExp.tsv"),
    ...                 fixture_path("pancan/TCGA_phenotype_denseDataOnlyDownload.tsv"),
    ...                 sample_types="01,03", nan="drop-genes")
    >>> c.genes.filter(c.genes["gene_name"].is_null())["gene_id"].to_list()
    ['100130426', '100133144']
    """
    return _import_gene_matrix(
        matrix,
        source_kind="pancan",
        phenotype=phenotype,
        phenotype_keys=("sample", "sampleID"),
        label=label,
        sample_types=sample_types,
        drop_unmatched=drop_unmatched,
        out=out,
        overwrite=overwrite,
        nan=nan,
        units=units,
        log2_source=log2_source,
        split_ids=True,
        quiet=quiet,
    )
