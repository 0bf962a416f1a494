"""GDC STAR-Counts: one ``*.rna_seq.augmented_star_gene_counts.tsv`` per sample + sample sheet."""

from __future__ import annotations

import os
import re
import tarfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from .._atomic import _check_target
from .._progress import progress
from ..cohort import Cohort
from ..errors import InputError
from ..kernels import parse as K
from . import tcga
from ._common import NanOption, NanPolicy, NanTally, Target, make_meta

PathLike = str | os.PathLike[str]

STAR_SUFFIX = ".rna_seq.augmented_star_gene_counts.tsv"
STAR_COLUMNS = (
    "gene_id",
    "gene_name",
    "gene_type",
    "unstranded",
    "stranded_first",
    "stranded_second",
    "tpm_unstranded",
    "fpkm_unstranded",
    "fpkm_uq_unstranded",
)
#: ``--counts`` column -> units recorded in the cohort.
COUNT_UNITS = {
    "unstranded": "counts",
    "stranded_first": "counts",
    "stranded_second": "counts",
    "tpm_unstranded": "TPM",
    "fpkm_unstranded": "FPKM",
    "fpkm_uq_unstranded": "FPKM-UQ",
}
#: STAR summary rows before the genes; kept as sample columns ``n_unmapped``, ...
QC_ROWS = ("N_unmapped", "N_multimapping", "N_noFeature", "N_ambiguous")


def _snake(name: str) -> str:
    return re.sub(r"[^0-9a-zA-Z]+", "_", name.strip()).strip("_").lower()


def unversioned(gene_ids: pl.Series) -> pl.Series:
    """Ensembl ids without the version: ``ENSG00000002586.20_PAR_Y`` -> ``ENSG00000002586_PAR_Y``.

    The ``_PAR_Y`` suffix (GENCODE's copy of a pseudo-autosomal gene on Y) is
    kept, so the unversioned ids stay unique like the versioned ones.
    """
    return gene_ids.str.replace(r"\.\d+(_PAR_Y)?$", "$1").alias("gene_id_unversioned")


# ---------------------------------------------------------------------------- sample sheet
def read_sample_sheet(
    path: PathLike, id_column: str = "Sample ID"
) -> tuple[pl.DataFrame, dict[str, str]]:
    """Read a GDC sample sheet; returns the frame (snake_case columns) and the name map.

    Both the older (``..., Sample ID, Sample Type``) and the newer (``..., Sample
    ID, Tissue Type, Tumor Descriptor, Specimen Type, Preservation Method``)
    layouts are accepted; columns are renamed to snake case (``File Name`` ->
    ``file_name``).
    """
    path = Path(path)
    if not path.exists():
        raise InputError("sample sheet not found", path=path)
    if path.stat().st_size == 0:
        raise InputError("empty file", path=path)
    try:
        sheet = pl.read_csv(path, separator="\t", infer_schema=False, quote_char=None)
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError) as exc:
        raise InputError(f"cannot read the sample sheet: {exc}", path=path) from exc
    names = {c: _snake(c) for c in sheet.columns}
    sheet = sheet.rename(names)
    for need in ("File Name", id_column):
        if _snake(need) not in sheet.columns:
            raise InputError(
                f"sample sheet has no {need!r} column; columns are {list(names)}",
                path=path,
                line=1,
            )
    if sheet.height == 0:
        raise InputError("sample sheet lists no files", path=path, line=2)
    fname = sheet["file_name"]
    dup = fname.is_duplicated().to_numpy()
    if dup.any():
        rows = np.flatnonzero(dup)
        raise InputError(
            f"file {fname[int(rows[0])]!r} is listed twice", path=path, line=int(rows[1]) + 2
        )
    return sheet, names


# ---------------------------------------------------------------------------- sources
def _iter_folder(folder: Path, wanted: set[str]) -> Iterator[tuple[str, str, bytes]]:
    """(basename, display path, bytes) of the wanted files under ``folder``."""
    found: dict[str, Path] = {}
    for p in sorted(folder.rglob("*")):
        if p.name in wanted and p.is_file():
            if p.name in found:
                raise InputError(f"file name found twice: {found[p.name]} and {p}", path=folder)
            found[p.name] = p
    for name, p in found.items():
        yield name, str(p), p.read_bytes()


def _iter_tar(path: Path, wanted: set[str]) -> Iterator[tuple[str, str, bytes]]:
    try:
        with tarfile.open(path, "r:*") as tar:
            seen: set[str] = set()
            for member in tar:
                name = member.name.rsplit("/", 1)[-1]
                if not member.isfile() or name not in wanted:
                    continue
                if name in seen:
                    raise InputError(f"file name found twice in the archive: {name}", path=path)
                seen.add(name)
                f = tar.extractfile(member)
                if f is None:  # pragma: no cover - isfile() members always have data
                    continue
                yield name, f"{path}:{member.name}", f.read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        if isinstance(exc, InputError):  # pragma: no cover
            raise
        raise InputError(f"truncated or corrupt archive ({exc})", path=path) from exc


# ---------------------------------------------------------------------------- one file
class _StarFile:
    """Parse STAR gene-count files, all checked against the first one's gene list."""

    def __init__(self, counts: str) -> None:
        self.counts = counts
        self.gene_model: str | None = None
        self.ref_ids: np.ndarray | None = None
        self.ref_offsets: np.ndarray | None = None
        self.genes: pl.DataFrame | None = None
        self.ref_name: str | None = None
        self.ref_lines: np.ndarray | None = None

    def parse(
        self, data: bytes, where: str
    ) -> tuple[np.ndarray, dict[str, float | None], int, np.ndarray, np.ndarray]:
        """Counts column, QC values, first gene line (1-based), per-line NaN count and field."""
        if not data:
            raise InputError("empty file", path=where)
        if data.startswith(b"\x1f\x8b"):
            try:
                data = zlib.decompress(data, 16 + zlib.MAX_WBITS)
            except zlib.error as exc:
                raise InputError(f"truncated or corrupt gzip file ({exc})", path=where) from exc
        pos = 0
        line_no = 0
        gene_model = None
        header: list[str] | None = None
        qc: dict[str, float | None] = {}
        while pos < len(data):
            end = data.find(b"\n", pos)
            end = len(data) if end < 0 else end
            raw = data[pos:end].rstrip(b"\r").decode("utf-8", errors="replace")
            line_no += 1
            if raw.startswith("#"):
                if "gene-model:" in raw:
                    gene_model = raw.split("gene-model:", 1)[1].strip()
            elif header is None:
                header = raw.split("\t")
                if header[0] != "gene_id" or self.counts not in header:
                    raise InputError(
                        f"not a STAR gene-count header (need gene_id and {self.counts!r}); "
                        f"got {header[:4]}",
                        path=where,
                        line=line_no,
                    )
            elif raw.startswith("N_"):
                fields = raw.split("\t")
                col = header.index(self.counts)
                value = fields[col] if col < len(fields) else ""
                try:
                    qc[f"n_{_snake(fields[0][2:])}"] = float(value) if value else None
                except ValueError:
                    raise InputError(
                        f"not a number: {value!r}", path=where, line=line_no, column=col + 1
                    ) from None
            else:
                break
            pos = end + 1
        if header is None:
            raise InputError("no header line", path=where)
        line_no_first = line_no if pos < len(data) else line_no + 1
        end = len(data)  # drop trailing line ends without copying the 4 MB body
        while end > pos and data[end - 1] in (10, 13):
            end -= 1
        if end <= pos:
            raise InputError("no gene lines", path=where, line=line_no_first)
        nl = data.find(b"\n", end)
        if nl < 0:  # no final line end: add one (copy)
            body = np.frombuffer(data[pos:end] + b"\n", dtype=np.uint8)
        else:
            body = np.frombuffer(data, dtype=np.uint8)[pos : nl + 1]
        n = len(body)
        starts = K.find_line_starts(body, n)
        m = len(starts)
        colmap = np.full(len(header), -1, dtype=np.int64)
        colmap[0] = -2
        colmap[header.index(self.counts)] = 0
        first = self.genes is None
        if first:
            for slot, name in enumerate(("gene_name", "gene_type"), start=1):
                if name in header:
                    colmap[header.index(name)] = -2 - slot
        n_text = int((-2 - colmap[colmap <= -2]).max()) + 1
        out = np.empty((m, 1), dtype=np.float32)
        ts = np.zeros((m, n_text), dtype=np.int64)
        te = np.zeros((m, n_text), dtype=np.int64)
        err = np.zeros(m, dtype=np.int8)
        err_field = np.zeros(m, dtype=np.int64)
        nonfinite = np.zeros(m, dtype=np.int64)
        first_nf = np.zeros(m, dtype=np.int64)
        K.parse_lines(body, starts, n, 9, colmap, out, ts, te, err, err_field, nonfinite, first_nf)
        bad = np.flatnonzero(err)
        if bad.size:
            i = int(bad[0])
            line = line_no_first + i
            raw = bytes(body[starts[i] : (starts[i + 1] if i + 1 < m else n)]).decode(
                "utf-8", errors="replace"
            )
            code = int(err[i])
            if code == K.BLANK:
                raise InputError("blank line inside the data", path=where, line=line)
            if code in (K.TOO_FEW, K.TOO_MANY):
                found = raw.rstrip("\r\n").count("\t") + 1
                raise InputError(
                    f"expected {len(header)} fields (as in the header) but found {found}",
                    path=where,
                    line=line,
                )
            f = int(err_field[i])
            token = raw.rstrip("\r\n").split("\t")[f]
            raise InputError(
                f"not a number: {token[:40]!r} ({header[f]!r})", path=where, line=line, column=f + 1
            )
        if first:
            self._set_reference(body, ts, te, where, line_no_first)
            self.gene_model = gene_model
        else:
            assert self.ref_ids is not None and self.ref_offsets is not None
            i = int(
                K.first_id_mismatch(
                    body, ts[:, 0].copy(), te[:, 0].copy(), self.ref_ids, self.ref_offsets
                )
            )
            if i >= 0:
                n_ref = len(self.ref_offsets) - 1
                ref = self._ref_id(i) if i < n_ref else "(end of file)"
                got = (
                    bytes(body[ts[i, 0] : te[i, 0]]).decode("utf-8", errors="replace")
                    if i < m
                    else "(end of file)"
                )
                raise InputError(
                    f"gene list differs from {self.ref_name}: gene {i + 1} is {got!r} here but "
                    f"{ref!r} there ({m} vs {n_ref} genes); all files must share one gene list",
                    path=where,
                    line=line_no_first + min(i, m),
                    column=1,
                )
        x = out[:, 0]
        return x, qc, line_no_first, nonfinite, first_nf

    def _ref_id(self, i: int) -> str:
        assert self.ref_ids is not None and self.ref_offsets is not None
        a, b = self.ref_offsets[i], self.ref_offsets[i + 1]
        return bytes(self.ref_ids[a:b]).decode("utf-8", errors="replace")

    def _set_reference(
        self, body: np.ndarray, ts: np.ndarray, te: np.ndarray, where: str, first_line: int
    ) -> None:
        mv = memoryview(body)
        cols = [
            [bytes(mv[a:b]).decode("utf-8", errors="replace") for a, b in zip(ts[:, k], te[:, k])]
            for k in range(ts.shape[1])
        ]
        ids = cols[0]
        lengths = te[:, 0] - ts[:, 0]
        offsets = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        self.ref_ids = np.frombuffer("".join(ids).encode("utf-8"), dtype=np.uint8).copy()
        if len(self.ref_ids) != offsets[-1]:  # non-ASCII ids: recompute byte offsets
            enc = [s.encode("utf-8") for s in ids]
            offsets[1:] = np.cumsum([len(e) for e in enc])
            self.ref_ids = np.frombuffer(b"".join(enc), dtype=np.uint8).copy()
        self.ref_offsets = offsets
        self.ref_name = where
        gid = pl.Series("gene_id", ids, dtype=pl.String)
        genes = pl.DataFrame({"gene_id": gid})
        genes = genes.with_columns(unversioned(gid))
        for k, name in enumerate(("gene_name", "gene_type"), start=1):
            if k < len(cols):
                genes = genes.with_columns(
                    pl.Series(name, cols[k], dtype=pl.String).replace("", None)
                )
        dup = gid.is_duplicated().to_numpy()
        if dup.any():
            rows = np.flatnonzero(dup)
            first = gid[int(rows[0])]
            same = np.flatnonzero((gid == first).to_numpy())
            raise InputError(
                f"duplicate gene id {first!r} (also on line {first_line + int(same[0])})",
                path=where,
                line=first_line + int(same[1]),
                column=1,
            )
        self.genes = genes


def read_gdc(
    source: PathLike,
    sample_sheet: PathLike,
    *,
    counts: str = "unstranded",
    label: str | None = "Project ID",
    id_column: str = "Sample ID",
    sample_types: Sequence[str | int] | str | None = None,
    out: PathLike | None = None,
    overwrite: bool = False,
    nan: NanOption | NanPolicy = "error",
    units: str | None = None,
    quiet: bool | None = True,
) -> Cohort:
    """Import GDC STAR-Counts files (a folder or a ``.tar.gz``) listed in a GDC sample sheet.

    Each ``*.rna_seq.augmented_star_gene_counts.tsv`` (``# gene-model: GENCODE
    v36``, a header ``gene_id gene_name gene_type unstranded stranded_first
    stranded_second tpm_unstranded fpkm_unstranded fpkm_uq_unstranded``, the
    ``N_unmapped``, ``N_multimapping``, ``N_noFeature``, ``N_ambiguous`` rows,
    then one line per gene) becomes one sample row. The files are read one at a
    time and written into the cohort in place (bounded memory); the number of
    samples is the number of sheet rows.

    Parameters
    ----------
    source
        Folder (searched recursively, e.g. ``FILE_ID/FILE_NAME`` as gdc-client
        writes it) or tar archive (``.tar.gz`` from the GDC cart) holding the
        files named in the sheet's ``File Name`` column. Files the sheet does not
        list are ignored; listed files that are missing are an error.
    sample_sheet
        GDC sample sheet TSV (older ``Sample Type`` or newer ``Tissue Type,
        Tumor Descriptor, ...`` layout). Its columns become sample columns in
        snake case (``project_id``, ``case_id``, ``tissue_type``, ...).
    counts
        Column to import: ``unstranded`` (default), ``stranded_first``,
        ``stranded_second``, ``tpm_unstranded``, ``fpkm_unstranded`` or
        ``fpkm_uq_unstranded``. Units are recorded accordingly (``counts``,
        ``TPM``, ``FPKM``, ``FPKM-UQ``).
    label
        Sheet column copied into ``label`` (default ``Project ID``, e.g.
        ``TCGA-BRCA``); ``None`` for no label.
    id_column
        Sheet column used as ``sample_id`` (default ``Sample ID``). Use ``File
        ID`` when a sample has several files.
    sample_types
        Keep only these TCGA sample type codes (from the ``Sample ID`` barcodes).
    out, overwrite, nan, quiet
        As in :func:`read_xena`.
    units
        Override the recorded units.

    Returns
    -------
    Cohort
        Genes: ``gene_id`` (versioned Ensembl id, as in the files, e.g.
        ``ENSG00000000003.15`` and ``ENSG00000002586.20_PAR_Y``),
        ``gene_id_unversioned`` (``ENSG00000000003``; the ``_PAR_Y`` suffix is
        kept so PAR copies stay distinct: ``ENSG00000002586_PAR_Y``),
        ``gene_name``, ``gene_type``. Samples: the sheet columns, barcode
        columns, ``label`` and the STAR summary counts ``n_unmapped``,
        ``n_multimapping``, ``n_nofeature``, ``n_ambiguous``.

    Examples
    --------
    >>> from gexplain.io import read_gdc, fixture_path
    >>> c = read_gdc(fixture_path("gdc/star.tar.gz"), fixture_path("gdc/gdc_sample_sheet.tsv"))
    >>> c.shape, c.classes, c.meta["units"]
    ((3, 12), ['TCGA-BRCA', 'TCGA-LUAD'], 'counts')
    """
    src = Path(source)
    sheet_path = Path(sample_sheet)
    if counts not in COUNT_UNITS:
        raise ValueError(f"counts must be one of {sorted(COUNT_UNITS)}, not {counts!r}")
    policy = NanPolicy.parse(nan)
    if out is not None:
        _check_target(Path(out), overwrite)
    if not src.exists():
        raise InputError("not found", path=src)
    sheet, names = read_sample_sheet(sheet_path, id_column)
    id_col = _snake(id_column)
    samples = sheet
    if id_col != "sample_id":
        # keyed by another column (e.g. File ID): the sheet's Sample ID stays as gdc_sample_id
        if "sample_id" in samples.columns:
            samples = samples.rename({"sample_id": "gdc_sample_id"})
        samples = samples.with_columns(pl.col(id_col).alias("sample_id")).select(
            "sample_id", pl.exclude("sample_id")
        )
    sid = samples["sample_id"]
    barcode_ids = samples["gdc_sample_id" if "gdc_sample_id" in samples.columns else "sample_id"]
    if sid.null_count():
        line = int(np.flatnonzero(sid.is_null().to_numpy())[0]) + 2
        raise InputError(f"empty {id_column!r}", path=sheet_path, line=line)
    dup = sid.is_duplicated().to_numpy()
    if dup.any():
        rows = np.flatnonzero(dup)
        raise InputError(
            f"duplicate sample id {sid[int(rows[0])]!r} in {id_column!r} (several files for one "
            "sample?); pass id_column='File ID' (CLI: --id-column 'File ID') to key by file",
            path=sheet_path,
            line=int(rows[1]) + 2,
        )
    if tcga.all_barcodes(barcode_ids):
        bar = tcga.barcode_table(barcode_ids)
        samples = pl.concat(
            [samples, bar.select([c for c in bar.columns if c not in samples.columns])],
            how="horizontal",
        )
    codes = tcga.normalize_codes(sample_types)
    if codes is not None:
        if "sample_type_code" not in samples.columns:
            raise InputError("sample_types needs TCGA barcodes in 'Sample ID'", path=sheet_path)
        samples = samples.filter(pl.col("sample_type_code").is_in(codes))
        if samples.height == 0:
            raise InputError("no sample of the requested sample types", path=sheet_path)
    if label is not None:
        lab = _snake(label)
        if lab not in samples.columns and label not in samples.columns:
            raise InputError(
                f"label column {label!r} not in the sample sheet; columns are {list(names)}",
                path=sheet_path,
                line=1,
            )
        samples = samples.with_columns(
            pl.col(lab if lab in samples.columns else label).alias("label")
        )
    row_of = {name: i for i, name in enumerate(samples["file_name"].to_list())}
    wanted = set(row_of)
    n = samples.height
    target: Target | None = None
    star = _StarFile(counts)
    tally = NanTally(policy)
    written = np.zeros(n, dtype=bool)
    qc_rows: list[dict[str, float | None]] = [{} for _ in range(n)]
    bad_genes = None
    try:
        files = _iter_folder(src, wanted) if src.is_dir() else _iter_tar(src, wanted)
        for name, where, data in progress(
            files, total=n, desc="import gdc", quiet=quiet, unit="file"
        ):
            x, qc, first_line, nonfinite, first_nf = star.parse(data, where)
            if target is None:
                assert star.genes is not None
                target = Target(out, n, star.genes.height, overwrite)
                bad_genes = np.zeros(star.genes.height, dtype=bool)
            if nonfinite.any():
                tally.add(nonfinite.sum())
                if policy.mode == "error":
                    r = int(np.flatnonzero(nonfinite)[0])
                    raise tally.error(Path(where), first_line + r, int(first_nf[r]) + 1, counts)
                if policy.mode == "fill":
                    tally.fill(x)
                else:
                    bad_genes |= ~np.isfinite(x)
            i = row_of[name]
            target.expression[i] = x
            written[i] = True
            qc_rows[i] = qc
        if not written.all():
            missing = samples.filter(pl.Series(~written))["file_name"].to_list()
            raise InputError(
                f"{len(missing)} of {n} files of the sample sheet are missing from the "
                f"{'folder' if src.is_dir() else 'archive'} (e.g. {missing[:2]})",
                path=src,
            )
        assert target is not None and star.genes is not None and bad_genes is not None
        genes = star.genes
        if bad_genes.any():
            tally.bad_genes.update(int(j) for j in np.flatnonzero(bad_genes))
            target.keep_genes(~bad_genes)
            genes = genes.filter(pl.Series(~bad_genes))
        qc_frame = pl.DataFrame(qc_rows, schema={f"n_{_snake(q[2:])}": pl.Float64 for q in QC_ROWS})
        samples = pl.concat([samples, qc_frame], how="horizontal")
        meta = make_meta(
            units or COUNT_UNITS[counts],
            "gdc-star-counts",
            False,
            path=str(src),
            sample_sheet=str(sheet_path),
            counts=counts,
            gene_model=star.gene_model,
            label=label,
            sample_types=codes,
            n_samples=n,
            n_genes=genes.height,
            **tally.summary(),
        )
        return target.commit(samples, genes, meta)
    except BaseException:
        if target is not None:
            target.abort()
        raise
