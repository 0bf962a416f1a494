"""``gexplain import ...`` and ``gexplain export ...``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ._common import overwrite_option, quiet_option, say

F = TypeVar("F", bound=Callable[..., Any])


def _nan_callback(ctx: click.Context, param: click.Parameter, value: str) -> Any:
    from ..io import NanPolicy

    try:
        return NanPolicy.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _codes_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    from ..io import tcga

    if value is None:
        return None
    try:
        return tcga.normalize_codes(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def common_options(f: F) -> F:
    """``--out``, ``--nan``, ``--fill-value``, ``--overwrite``, ``--quiet``."""

    @functools.wraps(f)
    def wrapper(*args: Any, fill_value: float | None = None, **kwargs: Any) -> Any:
        from ..io import NanPolicy

        nan = kwargs["nan"]
        if fill_value is not None:
            if nan.mode not in ("fill", "error") or (nan.mode == "fill" and nan.value != 0.0):
                raise click.UsageError("--fill-value goes with --nan fill only")
            kwargs["nan"] = NanPolicy("fill", fill_value)
        return f(*args, **kwargs)

    g = quiet_option(wrapper)
    g = overwrite_option(g)
    g = click.option(
        "--fill-value",
        type=float,
        metavar="VALUE",
        help="Value for --nan fill (same as --nan fill=VALUE; default 0).",
    )(g)
    g = click.option(
        "--nan",
        "nan",
        default="error",
        show_default=True,
        callback=_nan_callback,
        metavar="error|drop-genes|fill[=VALUE]",
        help="NaN/inf/NA values: stop with their location, drop the genes holding them, "
        "or replace them (fill=0, or fill with --fill-value). The count is reported and "
        "recorded.",
    )(g)
    g = click.option(
        "-o",
        "--out",
        required=True,
        type=click.Path(path_type=Path),
        help="Cohort folder to write (created atomically).",
    )(g)
    return g  # type: ignore[return-value]


def sample_types_option(f: F) -> F:
    return click.option(
        "--sample-types",
        callback=_codes_callback,
        metavar="CODES",
        help="Keep TCGA sample type codes only, e.g. 01,03 (primary solid tumour, primary "
        "blood cancer); needs barcodes as sample ids.",
    )(f)


def _report(cohort: Any, out: Path, quiet: bool) -> None:
    prov = cohort.meta.get("provenance", [{}])[-1]
    parts = [f"wrote {out}: {cohort.n_samples} samples × {cohort.n_genes} genes"]
    if cohort.has_labels:
        parts.append(f"{len(cohort.classes)} classes")
    parts.append(f"units {cohort.meta.get('units')!r}")
    say(", ".join(parts), quiet)
    n_bad = prov.get("n_nonfinite", 0)
    if n_bad:
        extra = (
            f", {prov['n_genes_dropped']} genes dropped"
            if "n_genes_dropped" in prov
            else ", filled"
        )
        say(f"{n_bad} non-finite values (NaN/inf/NA){extra}", quiet)


@click.group("import")
def import_group() -> None:
    """Import a cohort from Xena, PanCanAtlas, GDC STAR-Counts, a wide table or an h5ad file.

    Every subcommand streams its input in bounded memory and writes the cohort
    folder atomically: on any error (reported with file, line and column)
    nothing is left at --out.

    \b
    Examples:
      gexplain import xena HiSeqV2.gz --phenotype BRCA_clinicalMatrix --label PAM50Call_RNAseq --out brca
      gexplain import pancan EB++AdjustPANCAN_IlluminaHiSeq_RNASeqV2.geneExp.tsv \\
          --phenotype TCGA_phenotype_denseDataOnlyDownload.tsv --sample-types 01,03 --out pancan
      gexplain import gdc gdc_download.tar.gz --sample-sheet gdc_sample_sheet.tsv --out gdc
      gexplain import table expression.csv --label subtype --out cohort
      gexplain import h5ad data.h5ad --label cell_type --layer counts --out cohort
    """


@import_group.command("xena")
@click.argument("matrix", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--phenotype",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Xena phenotype/clinical TSV, joined on sampleID (or sample).",
)
@click.option("--label", help="Phenotype column to use as the class label.")
@sample_types_option
@click.option(
    "--drop-unmatched",
    is_flag=True,
    help="Drop matrix samples missing from the phenotype (default: error).",
)
@click.option(
    "--units",
    default="log2(norm_count+1)",
    show_default=True,
    help="Units of the values; log2(...+1) records a log2p1 step done by the source.",
)
@common_options
def import_xena(
    matrix: Path,
    phenotype: Path | None,
    label: str | None,
    sample_types: list[str] | None,
    drop_unmatched: bool,
    units: str,
    out: Path,
    nan: Any,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Import a UCSC Xena genes × samples matrix (HiSeqV2-style TSV, optionally .gz).

    \b
    Examples:
      gexplain import xena HiSeqV2.gz --out brca
      gexplain import xena HiSeqV2.gz --phenotype BRCA_clinicalMatrix \\
          --label PAM50Call_RNAseq --sample-types 01 --drop-unmatched --out brca
    """
    from ..io import read_xena

    c = read_xena(
        matrix,
        phenotype,
        label=label,
        sample_types=sample_types,
        drop_unmatched=drop_unmatched,
        out=out,
        overwrite=overwrite,
        nan=nan,
        units=units,
        quiet=True if quiet else None,
    )
    _report(c, out, quiet)


@import_group.command("pancan")
@click.argument("matrix", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--phenotype",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TCGA_phenotype_denseDataOnlyDownload.tsv (sample, sample_type_id, _primary_disease).",
)
@click.option(
    "--label",
    default="_primary_disease",
    show_default=True,
    help="Phenotype column to use as the class label ('' for none).",
)
@sample_types_option
@click.option(
    "--drop-unmatched",
    is_flag=True,
    help="Drop matrix samples missing from the phenotype (default: error).",
)
@common_options
def import_pancan(
    matrix: Path,
    phenotype: Path,
    label: str,
    sample_types: list[str] | None,
    drop_unmatched: bool,
    out: Path,
    nan: Any,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Import the PanCanAtlas EB++ matrix (gene ids SYMBOL|ENTREZ, aliquot barcodes).

    Gene ids become the Entrez id (unique) with the symbol as gene_name
    (none for '?'); the phenotype is joined on the sample barcode.

    \b
    Examples:
      gexplain import pancan EB++AdjustPANCAN_IlluminaHiSeq_RNASeqV2.geneExp.tsv \\
          --phenotype TCGA_phenotype_denseDataOnlyDownload.tsv --sample-types 01,03 \\
          --nan drop-genes --out pancan
    """
    from ..io import read_pancan

    c = read_pancan(
        matrix,
        phenotype,
        label=label or None,
        sample_types=sample_types,
        drop_unmatched=drop_unmatched,
        out=out,
        overwrite=overwrite,
        nan=nan,
        quiet=True if quiet else None,
    )
    _report(c, out, quiet)


@import_group.command("gdc")
@click.argument("source", type=click.Path(exists=True, path_type=Path), metavar="FOLDER_OR_TAR")
@click.option(
    "--sample-sheet",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="GDC sample sheet TSV (File ID, File Name, ..., Sample ID, ...).",
)
@click.option(
    "--counts",
    default="unstranded",
    show_default=True,
    type=click.Choice(
        [
            "unstranded",
            "stranded_first",
            "stranded_second",
            "tpm_unstranded",
            "fpkm_unstranded",
            "fpkm_uq_unstranded",
        ]
    ),
    help="Column of the STAR files to import.",
)
@click.option(
    "--label",
    default="Project ID",
    show_default=True,
    help="Sample-sheet column to use as the class label ('' for none).",
)
@click.option(
    "--id-column",
    default="Sample ID",
    show_default=True,
    help="Sample-sheet column to use as sample_id ('File ID' if a sample has several files).",
)
@sample_types_option
@common_options
def import_gdc(
    source: Path,
    sample_sheet: Path,
    counts: str,
    label: str,
    id_column: str,
    sample_types: list[str] | None,
    out: Path,
    nan: Any,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Import GDC STAR-Counts files (a folder or a .tar.gz) listed in a GDC sample sheet.

    Gene ids stay versioned (ENSG00000000003.15; PAR copies keep their
    _PAR_Y suffix) with an unversioned column; all files must share one gene
    list. The STAR N_* summary rows become sample columns.

    \b
    Examples:
      gexplain import gdc gdc_download.tar.gz --sample-sheet gdc_sample_sheet.tsv --out gdc
      gexplain import gdc star_counts/ --sample-sheet sheet.tsv --counts tpm_unstranded \\
          --sample-types 01,11 --out gdc-tpm
    """
    from ..io import read_gdc

    c = read_gdc(
        source,
        sample_sheet,
        counts=counts,
        label=label or None,
        id_column=id_column,
        sample_types=sample_types,
        out=out,
        overwrite=overwrite,
        nan=nan,
        quiet=True if quiet else None,
    )
    _report(c, out, quiet)


@import_group.command("table")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--sample-column", help="Column of sample ids (default: the first column).")
@click.option("--label", help="Column to use as the class label.")
@click.option("--transpose", is_flag=True, help="Genes are rows and samples are columns.")
@click.option("--meta-columns", help="Comma-separated columns to keep as sample covariates.")
@click.option(
    "--phenotype",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Optional TSV joined on sample_id / sample / sampleID.",
)
@click.option("--drop-unmatched", is_flag=True, help="Drop samples missing from --phenotype.")
@click.option("--sep", help="Field delimiter (default: from the extension, or sniffed).")
@click.option("--units", default="unknown", show_default=True, help="Units of the values.")
@common_options
def import_table(
    file: Path,
    sample_column: str | None,
    label: str | None,
    transpose: bool,
    meta_columns: str | None,
    phenotype: Path | None,
    drop_unmatched: bool,
    sep: str | None,
    units: str,
    out: Path,
    nan: Any,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Import a wide CSV / TSV / Parquet table (samples as rows, or genes with --transpose).

    Columns whose first value is not a number (and --meta-columns) become
    sample columns; every other column is a gene.

    \b
    Examples:
      gexplain import table expression.csv --label subtype --out cohort
      gexplain import table counts.tsv.gz --transpose --phenotype samples.tsv \\
          --label condition --out cohort
      gexplain import table expression.parquet --sample-column barcode --out cohort
    """
    from ..io import read_table

    c = read_table(
        file,
        sample_column=sample_column,
        label=label,
        transpose=transpose,
        meta_columns=[m.strip() for m in meta_columns.split(",")] if meta_columns else None,
        phenotype=phenotype,
        drop_unmatched=drop_unmatched,
        sep=sep,
        out=out,
        overwrite=overwrite,
        nan=nan,
        units=units,
        quiet=True if quiet else None,
    )
    _report(c, out, quiet)


@import_group.command("h5ad")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--label", metavar="OBS_KEY", help="obs column to use as the class label.")
@click.option("--layer", metavar="NAME", help="Read this layer instead of X.")
@click.option("--raw", is_flag=True, help="Read raw.X (and raw.var) instead of X.")
@click.option(
    "--units", help="Units of the values (default: as exported by gexplain, or 'unknown')."
)
@common_options
def import_h5ad(
    file: Path,
    label: str | None,
    layer: str | None,
    raw: bool,
    units: str | None,
    out: Path,
    nan: Any,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Import an AnnData .h5ad file (obs = samples, var = genes; X, a layer or raw).

    \b
    Examples:
      gexplain import h5ad data.h5ad --label cell_type --out cohort
      gexplain import h5ad data.h5ad --label condition --layer counts --units counts --out cohort
    """
    from ..io import read_h5ad

    if layer is not None and raw:
        raise click.UsageError("give --layer or --raw, not both")
    c = read_h5ad(
        file,
        label=label,
        layer=layer,
        raw=raw,
        out=out,
        overwrite=overwrite,
        nan=nan,
        units=units,
        quiet=True if quiet else None,
    )
    _report(c, out, quiet)


@click.group("export")
def export_group() -> None:
    """Export a cohort to another format.

    \b
    Examples:
      gexplain export h5ad cohort/ --out cohort.h5ad
    """


@export_group.command("h5ad")
@click.argument("cohort", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "-o",
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The .h5ad file to write (atomically).",
)
@click.option("--compression", type=click.Choice(["gzip", "lzf"]), help="HDF5 compression.")
@overwrite_option
@quiet_option
def export_h5ad(
    cohort: Path, out: Path, compression: str | None, overwrite: bool, quiet: bool
) -> None:
    """Write a cohort as an AnnData .h5ad file (obs = samples, var = genes, meta in uns).

    \b
    Examples:
      gexplain export h5ad cohort/ --out cohort.h5ad
      gexplain export h5ad cohort/ --out cohort.h5ad --compression gzip --overwrite
    """
    from ..cohort import Cohort
    from ..io import write_h5ad

    c = Cohort.load(cohort)
    write_h5ad(c, out, overwrite=overwrite, compression=compression)
    say(f"wrote {out}: {c.n_samples} samples × {c.n_genes} genes", quiet)
