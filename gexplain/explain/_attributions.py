"""The :class:`Attributions` container and its on-disk form.

One row per explained (sample, target) pair: ``values[r]`` holds the per-gene
attributions of row ``r`` and ``rows[r]`` its description. On disk an
attributions folder mirrors a cohort folder::

    attributions.arrow     Arrow IPC, fixed_size_list<float32>[n_genes] per row
    attributions.parquet   sample_id, target, target_index, f_x, f_baseline,
                           delta, method, steps, ... (one row per matrix row)
    genes.parquet          gene_id (+ gene_name when known), in column order
    attributions.json      meta: model, method, output, baseline, normalisation
    topk.parquet           optional long frame (sample_id, target, rank, gene_id,
                           attribution)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from .._atomic import atomic_dir, write_json
from .._version import __version__
from ..errors import InputError

VALUES_FILE = "attributions.arrow"
ROWS_FILE = "attributions.parquet"
GENES_FILE = "genes.parquet"
META_FILE = "attributions.json"
TOPK_FILE = "topk.parquet"

ROW_COLUMNS = {
    "sample_id": pl.String,
    "target": pl.String,
    "target_index": pl.Int64,
    "f_x": pl.Float64,
    "f_baseline": pl.Float64,
    "delta": pl.Float64,
}


class Attributions:
    """Per-gene attributions of explained (sample, target) pairs.

    Parameters
    ----------
    values
        ``(n_rows, n_genes)`` attributions (stored float32; sums for completeness
        are computed in float64 before the cast).
    rows
        One row per matrix row with at least ``sample_id``, ``target`` (class
        name), ``target_index``, ``f_x``, ``f_baseline`` and ``delta``
        (``Σ attributions − (f_x − f_baseline)``); typically also ``label``,
        ``predicted``, ``correct``, ``method``, ``steps``, ``baseline``.
    gene_ids
        Gene ids of the columns (the model's input order).
    meta
        Run description: ``model`` (path), ``model_kind``, ``seed``,
        ``class_names``, ``output``, ``method``, ``steps``, ``baseline``,
        ``normalized`` (L2 per row), ``gexplain_version``.
    topk
        Optional long frame ``sample_id, target, rank, gene_id, attribution``.
    """

    def __init__(
        self,
        values: np.ndarray,
        rows: pl.DataFrame,
        gene_ids: Sequence[str],
        meta: dict[str, Any] | None = None,
        *,
        topk: pl.DataFrame | None = None,
    ) -> None:
        v = np.asarray(values)
        if v.ndim != 2:
            raise ValueError(f"values must be 2-D, got shape {v.shape}")
        if v.dtype != np.float32 or not v.flags.c_contiguous:
            v = np.ascontiguousarray(v, dtype=np.float32)
        missing = [c for c in ROW_COLUMNS if c not in rows.columns]
        if missing:
            raise ValueError(f"rows lack columns {missing}")
        if rows.height != v.shape[0]:
            raise ValueError(f"rows has {rows.height} rows, values has {v.shape[0]}")
        if len(gene_ids) != v.shape[1]:
            raise ValueError(f"{len(gene_ids)} gene ids for {v.shape[1]} columns")
        self.values = v
        self.rows = rows.with_columns([pl.col(c).cast(t) for c, t in ROW_COLUMNS.items()])
        self.gene_ids = [str(g) for g in gene_ids]
        self.meta: dict[str, Any] = {"gexplain_version": __version__, **(meta or {})}
        self.topk = topk

    # ------------------------------------------------------------------ accessors
    @property
    def n_rows(self) -> int:
        """Number of explained (sample, target) pairs."""
        return self.values.shape[0]

    @property
    def n_genes(self) -> int:
        """Number of genes (columns)."""
        return self.values.shape[1]

    @property
    def sample_ids(self) -> list[str]:
        """Sample id of each row."""
        return self.rows["sample_id"].to_list()

    @property
    def delta(self) -> np.ndarray:
        """Completeness error of each row: ``Σ attr − (f_x − f_baseline)``."""
        return self.rows["delta"].to_numpy()

    def __len__(self) -> int:
        return self.n_rows

    def __repr__(self) -> str:
        m = self.meta
        return (
            f"Attributions: {self.n_rows} rows × {self.n_genes} genes, "
            f"method {m.get('method')!r}, output {m.get('output')!r}, "
            f"baseline {m.get('baseline')!r}, max |delta| "
            f"{float(np.abs(self.delta).max()) if self.n_rows else 0.0:.3g}"
        )

    def select(self, mask: np.ndarray | pl.Expr) -> Attributions:
        """Rows where ``mask`` (boolean array, or Polars expression on :attr:`rows`) holds."""
        if isinstance(mask, pl.Expr):
            mask = self.rows.select(mask.alias("_m"))["_m"].fill_null(False).to_numpy()
        idx = np.flatnonzero(np.asarray(mask, dtype=bool))
        topk = None
        if self.topk is not None:
            keep = self.rows[idx.tolist()].select("sample_id", "target")
            topk = self.topk.join(keep, on=["sample_id", "target"], how="semi")
        return Attributions(
            self.values[idx], self.rows[idx.tolist()], self.gene_ids, dict(self.meta), topk=topk
        )

    def normalized(self) -> Attributions:
        """A copy with each row scaled to unit L2 norm (zero rows stay zero), as in the paper."""
        v = self.values.astype(np.float64)
        norm = np.sqrt((v * v).sum(axis=1, keepdims=True))
        norm[norm == 0] = 1.0
        meta = {**self.meta, "normalized": True}
        return Attributions(
            (v / norm).astype(np.float32), self.rows, self.gene_ids, meta, topk=None
        )

    def to_polars(self) -> pl.DataFrame:
        """Rows with an ``attribution`` Array column (zero-copy)."""
        from ..cohort._store import fixed_size_list

        table = self.rows.to_arrow().append_column("attribution", fixed_size_list(self.values))
        return pl.from_arrow(table, rechunk=False)  # type: ignore[return-value]

    # ------------------------------------------------------------------ storage
    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the attributions folder atomically."""
        with atomic_dir(path, overwrite=overwrite) as tmp:
            self.write_into(tmp)
        return Path(path)

    def write_into(self, folder: Path) -> None:
        """Write the files into an existing (temporary) folder."""
        from ..cohort._store import write_expression

        write_expression(folder / VALUES_FILE, self.values)
        self.rows.write_parquet(folder / ROWS_FILE)
        pl.DataFrame({"gene_id": self.gene_ids}).write_parquet(folder / GENES_FILE)
        write_json(folder / META_FILE, self.meta)
        if self.topk is not None:
            self.topk.write_parquet(folder / TOPK_FILE)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, mmap: bool = True) -> Attributions:
        """Open an attributions folder (values memory-mapped, zero-copy)."""
        import json

        from ..cohort._store import read_expression

        folder = Path(path)
        for name in (VALUES_FILE, ROWS_FILE, GENES_FILE, META_FILE):
            if not (folder / name).exists():
                raise InputError(f"not an attributions folder: {name} is missing", path=folder)
        parts = read_expression(folder / VALUES_FILE, mmap=mmap)
        values = parts[0] if len(parts) == 1 else np.concatenate(parts)
        rows = pl.read_parquet(folder / ROWS_FILE)
        genes = pl.read_parquet(folder / GENES_FILE)["gene_id"].to_list()
        meta = json.loads((folder / META_FILE).read_text())
        topk = pl.read_parquet(folder / TOPK_FILE) if (folder / TOPK_FILE).exists() else None
        out = cls.__new__(cls)
        out.values, out.rows, out.gene_ids, out.meta, out.topk = values, rows, genes, meta, topk
        if rows.height != values.shape[0] or len(genes) != values.shape[1]:
            raise InputError(
                f"attributions.arrow is {values.shape} but the tables describe "
                f"{rows.height} rows × {len(genes)} genes",
                path=folder,
            )
        return out
