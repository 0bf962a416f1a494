"""Pieces shared by the readers: NaN policy, output target, phenotype tables, meta."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ..cohort import Cohort, CohortWriter, provenance_entry
from ..errors import InputError
from . import tcga

#: What the readers do with NaN/inf values: ``"error"`` (default), ``"drop-genes"``,
#: or ``"fill=VALUE"`` (a float also means fill with that value).
NanOption = str | float


@dataclass(frozen=True)
class NanPolicy:
    """How to treat NaN/inf values met while reading.

    ``mode`` is ``"error"`` (stop at the first one, naming its file, line and
    column), ``"drop-genes"`` (drop every gene with at least one) or ``"fill"``
    (replace them by ``value``).
    """

    mode: str = "error"
    value: float = 0.0

    @classmethod
    def parse(cls, spec: NanOption | NanPolicy) -> NanPolicy:
        """Read ``"error"``, ``"drop-genes"``, ``"fill"`` (with 0), ``"fill=VALUE"`` (also
        ``fill:VALUE``, ``fill VALUE``) or a float (fill with it)."""
        if isinstance(spec, NanPolicy):
            return spec
        if isinstance(spec, (int, float)) and not isinstance(spec, bool):
            return cls("fill", float(spec))
        text = str(spec).strip().lower()
        if text in ("error", "drop-genes"):
            return cls(text)
        if text == "fill":
            return cls("fill", 0.0)
        for sep in ("=", ":", " "):
            if text.startswith("fill" + sep):
                try:
                    return cls("fill", float(text[5:]))
                except ValueError:
                    break
        raise ValueError(f"NaN policy must be 'error', 'drop-genes' or 'fill=VALUE', not {spec!r}")

    def describe(self) -> str:
        """Short text, as in the CLI option."""
        return f"fill={self.value:g}" if self.mode == "fill" else self.mode


@dataclass
class NanTally:
    """Counts non-finite values and, for ``drop-genes``, which genes hold them."""

    policy: NanPolicy
    n_genes: int | None = None
    count: int = 0
    bad_genes: set[int] = field(default_factory=set)

    def add(self, n: int) -> None:
        self.count += int(n)

    def error(self, path: Path, line: int, column: int, what: str) -> InputError:
        return InputError(
            f"non-finite value (NaN/inf/NA) for {what}; pass nan='drop-genes' or "
            "nan='fill=VALUE' (CLI: --nan drop-genes | --nan fill=VALUE) to accept them",
            path=path,
            line=line,
            column=column,
        )

    def fill(self, block: np.ndarray) -> None:
        """Replace non-finite values of ``block`` in place."""
        block[~np.isfinite(block)] = np.float32(self.policy.value)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n_nonfinite": self.count, "nan": self.policy.describe()}
        if self.policy.mode == "drop-genes":
            out["n_genes_dropped"] = len(self.bad_genes)
        return out


class Target:
    """Where a reader writes its matrix: a cohort folder (chunked) or memory.

    Parameters
    ----------
    out
        Cohort folder to write (through :class:`CohortWriter`), or ``None`` for an
        in-memory cohort.
    n_samples, n_genes
        Matrix size (the gene table may be set later with :attr:`genes`).
    overwrite
        Replace ``out`` if it exists.
    """

    def __init__(
        self, out: str | os.PathLike[str] | None, n_samples: int, n_genes: int, overwrite: bool
    ) -> None:
        self.out = None if out is None else Path(out)
        placeholder = pl.DataFrame({"gene_id": [f"_{j}" for j in range(n_genes)]})
        self.genes = placeholder
        self.n_samples = n_samples
        self.n_genes = n_genes
        self.overwrite = overwrite
        if self.out is None:
            self.writer: CohortWriter | None = None
            self.expression = np.zeros((n_samples, n_genes), dtype=np.float32)
        else:
            self.writer = CohortWriter(self.out, n_samples, placeholder, overwrite=overwrite)
            self.expression = self.writer.expression

    @property
    def workdir(self) -> Path | None:
        """A folder beside the output for temporary files (None: system temp)."""
        return None if self.writer is None else self.writer.dir

    def keep_genes(self, keep: np.ndarray, chunk: int = 1024) -> None:
        """Drop genes (columns): keep those where ``keep`` is True, in bounded memory."""
        idx = np.flatnonzero(keep)
        if idx.size == self.n_genes:
            return
        if self.writer is None:
            self.expression = np.ascontiguousarray(self.expression[:, idx])
        else:
            old = self.writer
            new = CohortWriter(
                self.out,  # type: ignore[arg-type]
                self.n_samples,
                pl.DataFrame({"gene_id": [f"_{j}" for j in range(idx.size)]}),
                overwrite=self.overwrite,
            )
            for start in range(0, self.n_samples, chunk):
                stop = min(start + chunk, self.n_samples)
                new.expression[start:stop] = old.expression[start:stop][:, idx]
            old.abort()
            self.writer = new
            self.expression = new.expression
        self.n_genes = idx.size

    def abort(self) -> None:
        """Remove everything written so far."""
        if self.writer is not None:
            self.writer.abort()
            self.writer = None
        self.expression = None  # type: ignore[assignment]

    def commit(self, samples: pl.DataFrame, genes: pl.DataFrame, meta: dict[str, Any]) -> Cohort:
        """Finish: the cohort (loaded from ``out`` when writing a folder)."""
        if genes.height != self.n_genes:
            raise AssertionError("gene table does not match the matrix")
        if self.writer is None:
            return Cohort(self.expression, samples, genes, meta)
        self.writer.genes = genes
        self.writer.n_genes = genes.height
        self.expression = None  # type: ignore[assignment]
        path = self.writer.commit(samples, meta)
        self.writer = None
        return Cohort.load(path)


# ---------------------------------------------------------------------------- phenotypes
def read_phenotype(path: str | os.PathLike[str], keys: tuple[str, ...]) -> tuple[pl.DataFrame, str]:
    """Read a phenotype/clinical TSV as strings; returns the frame and its id column.

    The id column is the first of ``keys`` present (e.g. ``sampleID``, ``sample``),
    else the first column. Numeric-looking columns are cast to numbers.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("phenotype file not found", path=path)
    if path.stat().st_size == 0:
        raise InputError("empty file", path=path)
    from ._text import PlainText

    with PlainText(path) as plain:
        try:
            frame = pl.read_csv(
                plain.path,
                separator="\t",
                infer_schema=False,
                quote_char=None,
                null_values=["", "NA"],
                truncate_ragged_lines=False,
            )
        except (pl.exceptions.ComputeError, pl.exceptions.NoDataError) as exc:
            raise InputError(f"cannot read the phenotype table: {exc}", path=path) from exc
    if frame.width == 0 or not frame.columns[0]:
        raise InputError("phenotype table has no header", path=path, line=1)
    key = next((k for k in keys if k in frame.columns), frame.columns[0])
    ids = frame[key]
    if ids.null_count():
        line = int(ids.is_null().arg_max()) + 2  # type: ignore[operator]
        raise InputError(f"missing sample id in column {key!r}", path=path, line=line)
    dup = ids.is_duplicated()
    if dup.any():
        rows = np.flatnonzero(dup.to_numpy())
        raise InputError(
            f"duplicate sample id {ids[int(rows[0])]!r} in column {key!r}",
            path=path,
            line=int(rows[1]) + 2,
        )
    return _cast_numeric(frame, exclude={key}), key


def _cast_numeric(frame: pl.DataFrame, exclude: set[str]) -> pl.DataFrame:
    """Cast string columns whose every non-null value is a number."""
    casts = []
    for name in frame.columns:
        if name in exclude or frame[name].dtype != pl.String:
            continue
        s = frame[name]
        as_int = s.cast(pl.Int64, strict=False)
        if as_int.null_count() == s.null_count() and s.null_count() < len(s):
            casts.append(as_int.alias(name))
            continue
        as_float = s.cast(pl.Float64, strict=False)
        if as_float.null_count() == s.null_count() and s.null_count() < len(s):
            casts.append(as_float.alias(name))
    return frame.with_columns(casts) if casts else frame


def join_phenotype(
    samples: pl.DataFrame,
    pheno: pl.DataFrame,
    key: str,
    path: Path,
    label: str | None,
    drop_unmatched: bool,
) -> pl.DataFrame:
    """Left-join phenotype columns onto ``samples`` (by ``sample_id``).

    A sample id missing from the phenotype is looked up by its TCGA sample
    barcode (``TCGA-XX-XXXX-01``) too, so aliquot-level matrix columns find
    sample-level phenotype rows. Adds ``label`` (string) when ``label`` is given.
    Returns the joined frame with a boolean column ``_matched``.
    """
    if label is not None and label not in pheno.columns:
        raise InputError(
            f"label column {label!r} not in the phenotype table; columns are "
            f"{_preview(pheno.columns)}",
            path=path,
            line=1,
        )
    index = pheno.select(
        pl.col(key).cast(pl.String).alias("_key"), pl.int_range(pl.len()).alias("_r")
    )
    rows = (
        samples.select("sample_id", tcga.sample_barcode(samples["sample_id"]).alias("_s15"))
        .join(
            index.rename({"_key": "sample_id", "_r": "_r1"}),
            on="sample_id",
            how="left",
            maintain_order="left",
        )
        .join(
            index.rename({"_key": "_s15", "_r": "_r2"}),
            on="_s15",
            how="left",
            maintain_order="left",
        )
        .select(pl.coalesce("_r1", "_r2").cast(pl.Int64).alias("_row"))
    )["_row"]
    matched = rows.is_not_null().alias("_matched")
    if not drop_unmatched and not matched.all():
        missing = samples.filter(~matched)["sample_id"]
        raise InputError(
            f"{len(missing)} of {samples.height} samples are not in the phenotype table "
            f"(e.g. {missing.head(3).to_list()}); pass drop_unmatched=True (CLI: --drop-unmatched) "
            "to drop them",
            path=path,
        )
    take = rows.fill_null(-1)
    extra = pheno.drop(key)
    rename = {c: f"{c}_phenotype" for c in extra.columns if c in samples.columns}
    extra = extra.rename(rename)
    gathered = extra.with_row_index("_row").with_columns(pl.col("_row").cast(pl.Int64))
    joined = (
        samples.with_columns(take, matched)
        .join(gathered, on="_row", how="left", maintain_order="left")
        .drop("_row")
    )
    if label is not None:
        lab = rename.get(label, label)
        joined = joined.with_columns(pl.col(lab).cast(pl.String).alias("label"))
    return joined


def _preview(items: list[str], n: int = 8) -> str:
    head = ", ".join(repr(c) for c in items[:n])
    return f"[{head}{', ...' if len(items) > n else ''}]"


# ---------------------------------------------------------------------------- meta
LOG2_STEP = {"step": "log2p1", "transforms_values": True, "by": "source"}


def make_meta(units: str, source: str, log2_source: bool | None, **prov: Any) -> dict[str, Any]:
    """Cohort meta: ``units``, one provenance entry, and the source's log2 step.

    ``log2_source=None`` infers it from ``units`` (``"log2(...+1)"``).
    """
    if log2_source is None:
        u = units.replace(" ", "").lower()
        log2_source = u.startswith("log2(") and u.endswith("+1)")
    meta: dict[str, Any] = {
        "units": units,
        "provenance": [provenance_entry(source, **{k: v for k, v in prov.items()})],
        "preprocessing": [dict(LOG2_STEP)] if log2_source else [],
    }
    return meta
