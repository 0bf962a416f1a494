"""The :class:`Cohort`: an expression matrix with its sample and gene tables."""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import pyarrow as pa

from .._atomic import atomic_dir
from .._version import __version__
from ..errors import AlignmentError, InputError
from . import _store

if TYPE_CHECKING:  # pragma: no cover
    import anndata

    from ._truth import GroundTruth

Selector = (
    None | slice | Sequence[int] | Sequence[str] | Sequence[bool] | np.ndarray | pl.Expr | pl.Series
)


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


class Cohort:
    """Gene-expression cohort: a samples × genes float32 matrix plus tables.

    Parameters
    ----------
    expression
        2-D array, samples × genes. Stored as float32 C-contiguous (converted,
        copying only when needed; a read-only memory-mapped array is kept as is).
    samples
        Sample table with a unique string column ``sample_id`` (optional columns
        ``label``, ``split`` and any covariates), one row per matrix row.
        ``None`` numbers the samples ``S0, S1, ...``.
    genes
        Gene table with a unique string column ``gene_id`` (optional ``gene_name``,
        ``gene_type``, ...), one row per matrix column, or a list of gene ids.
        ``None`` numbers the genes ``G0, G1, ...``.
    meta
        Free-form metadata; gexplain uses ``units`` (e.g. ``"counts"``,
        ``"per-million"``, ``"log2(x+1)"``), ``provenance`` (list of dicts) and
        ``preprocessing`` (list of steps, see :mod:`gexplain.preprocess`).
    truth
        Ground truth (simulated cohorts), carried along by :meth:`select`.

    Attributes
    ----------
    offset : int
        Index of the first sample in the stored cohort this one was cut from by
        :meth:`iter_chunks` (0 otherwise). Kernels derive per-sample random seeds
        from ``offset + row``, which makes results independent of chunk size.

    Examples
    --------
    >>> import numpy as np, gexplain as gx
    >>> c = gx.Cohort(np.eye(3), genes=["TP53", "EGFR", "MYC"])
    >>> c
    Cohort: 3 samples × 3 genes, units 'unknown'
    >>> c.select(genes=["MYC", "TP53"]).expression
    array([[0., 1.],
           [0., 0.],
           [1., 0.]], dtype=float32)
    """

    def __init__(
        self,
        expression: np.ndarray | Sequence[Sequence[float]],
        samples: pl.DataFrame | dict[str, Any] | None = None,
        genes: pl.DataFrame | Sequence[str] | None = None,
        meta: dict[str, Any] | None = None,
        *,
        truth: GroundTruth | None = None,
    ) -> None:
        x = np.asarray(expression)
        if x.ndim != 2:
            raise ValueError(f"expression must be 2-D (samples × genes), got shape {x.shape}")
        if x.dtype != np.float32 or not x.flags.c_contiguous:
            x = np.ascontiguousarray(x, dtype=np.float32)
        n, g = x.shape
        if samples is None:
            samples = pl.DataFrame({"sample_id": [f"S{i}" for i in range(n)]})
        elif isinstance(samples, dict):
            samples = pl.DataFrame(samples)
        if genes is None:
            genes = pl.DataFrame({"gene_id": [f"G{j}" for j in range(g)]})
        elif not isinstance(genes, pl.DataFrame):
            genes = pl.DataFrame({"gene_id": [str(v) for v in genes]})
        self._samples, self._genes = self._validate_tables(samples, genes, n, g)
        self._x = x
        self.meta: dict[str, Any] = self._complete_meta(meta or {})
        self.truth = truth
        self.offset = 0

    # ------------------------------------------------------------------ validation
    @staticmethod
    def _validate_tables(
        samples: pl.DataFrame, genes: pl.DataFrame, n: int, g: int
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        for name, table, key, size in (
            ("samples", samples, "sample_id", n),
            ("genes", genes, "gene_id", g),
        ):
            if key not in table.columns:
                raise InputError(f"{name} table has no {key!r} column")
            if table.height != size:
                raise InputError(
                    f"{name} table has {table.height} rows but the matrix has {size} {name}"
                )
            if table[key].null_count():
                raise InputError(f"{name} table has missing {key} values")
            dup = table[key].is_duplicated()
            if dup.any():
                first = table.filter(dup)[key][0]
                raise InputError(
                    f"duplicate {key} {first!r} ({int(dup.sum())} rows share an id); ids must be unique"
                )
        samples = samples.with_columns(pl.col("sample_id").cast(pl.String))
        genes = genes.with_columns(pl.col("gene_id").cast(pl.String))
        samples = samples.select("sample_id", pl.exclude("sample_id"))
        genes = genes.select("gene_id", pl.exclude("gene_id"))
        return samples, genes

    @staticmethod
    def _complete_meta(meta: dict[str, Any]) -> dict[str, Any]:
        out = dict(meta)
        out.setdefault("format_version", _store.FORMAT_VERSION)
        out.setdefault("units", "unknown")
        out.setdefault("provenance", [])
        out.setdefault("preprocessing", [])
        out["gexplain_version"] = __version__
        return out

    # ------------------------------------------------------------------ accessors
    @property
    def expression(self) -> np.ndarray:
        """The samples × genes float32 C-contiguous matrix (read-only when memory-mapped)."""
        return self._x

    @property
    def samples(self) -> pl.DataFrame:
        """Sample table (``sample_id`` first)."""
        return self._samples

    @property
    def genes(self) -> pl.DataFrame:
        """Gene table (``gene_id`` first)."""
        return self._genes

    @property
    def n_samples(self) -> int:
        """Number of samples (rows)."""
        return self._x.shape[0]

    @property
    def n_genes(self) -> int:
        """Number of genes (columns)."""
        return self._x.shape[1]

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_samples, n_genes)``."""
        return self._x.shape  # type: ignore[return-value]

    @property
    def sample_ids(self) -> list[str]:
        """Sample ids in row order."""
        return self._samples["sample_id"].to_list()

    @property
    def gene_ids(self) -> list[str]:
        """Gene ids in column order."""
        return self._genes["gene_id"].to_list()

    @property
    def has_labels(self) -> bool:
        """Whether the sample table has a ``label`` column."""
        return "label" in self._samples.columns

    @property
    def labels(self) -> pl.Series:
        """The ``label`` column (raises if the cohort has none)."""
        if not self.has_labels:
            raise InputError("cohort has no 'label' column (import with --label COLUMN)")
        return self._samples["label"]

    @property
    def classes(self) -> list[str]:
        """Sorted distinct labels (as strings)."""
        return sorted(str(v) for v in self.labels.drop_nulls().unique().to_list())

    @property
    def value_transforms(self) -> list[str]:
        """Names of the recorded preprocessing steps that changed values (e.g. ``log2p1``).

        Models record this list; later stages refuse a cohort whose list differs.
        """
        return [s["step"] for s in self.meta.get("preprocessing", []) if s.get("transforms_values")]

    def __len__(self) -> int:
        return self.n_samples

    def __repr__(self) -> str:
        parts = [f"Cohort: {self.n_samples} samples × {self.n_genes} genes"]
        if self.has_labels:
            parts.append(f"{len(self.classes)} classes")
        if "split" in self._samples.columns:
            counts = self._samples["split"].value_counts(sort=True)
            parts.append(
                "split " + " ".join(f"{k}={v}" for k, v in zip(counts["split"], counts["count"]))
            )
        parts.append(f"units {self.meta.get('units', 'unknown')!r}")
        if self.truth is not None:
            parts.append("with ground truth")
        return ", ".join(parts)

    # ------------------------------------------------------------------ arrow / polars
    def to_arrow(self) -> pa.Table:
        """Samples as an Arrow table: sample columns plus ``expression`` (fixed-size list).

        The expression column is a zero-copy view of :attr:`expression`.
        """
        table = self._samples.to_arrow()
        return table.append_column("expression", _store.fixed_size_list(self._x))

    def to_polars(self) -> pl.DataFrame:
        """Samples as a Polars frame with an ``expression`` Array column (zero-copy)."""
        return pl.from_arrow(self.to_arrow(), rechunk=False)  # type: ignore[return-value]

    @classmethod
    def from_polars(
        cls,
        frame: pl.DataFrame,
        genes: pl.DataFrame | Sequence[str],
        *,
        column: str = "expression",
        meta: dict[str, Any] | None = None,
    ) -> Cohort:
        """Build a cohort from a frame with an Array (or List) expression column."""
        s = frame[column]
        x = np.asarray(s.to_numpy(), dtype=np.float32)
        if x.ndim != 2:
            x = np.stack(s.to_list()).astype(np.float32)
        return cls(x, frame.drop(column), genes, meta)

    # ------------------------------------------------------------------ selection
    @staticmethod
    def _indexer(sel: Selector, table: pl.DataFrame, key: str, what: str) -> slice | np.ndarray:
        n = table.height
        if sel is None:
            return slice(None)
        if isinstance(sel, slice):
            return sel
        if isinstance(sel, pl.Expr):
            mask = table.select(sel.alias("_m"))["_m"]
            if mask.dtype != pl.Boolean:
                raise TypeError(f"{what} expression must evaluate to booleans")
            return np.flatnonzero(mask.fill_null(False).to_numpy())
        arr = sel.to_numpy() if isinstance(sel, pl.Series) else np.asarray(sel)
        if arr.dtype == bool:
            if arr.shape != (n,):
                raise IndexError(f"boolean {what} mask has length {arr.size}, expected {n}")
            return np.flatnonzero(arr)
        if arr.size == 0:
            return np.zeros(0, dtype=np.int64)
        if np.issubdtype(arr.dtype, np.integer):
            if arr.min() < -n or arr.max() >= n:
                raise IndexError(f"{what} index out of range for {n} {what}s")
            return arr.astype(np.int64) % n
        ids = [str(v) for v in arr.tolist()]
        lookup = dict(zip(table[key].to_list(), range(n)))
        missing = [v for v in ids if v not in lookup]
        if missing:
            raise AlignmentError(f"{len(missing)} {key}s not in the cohort, e.g. {missing[:5]}")
        return np.fromiter((lookup[v] for v in ids), dtype=np.int64, count=len(ids))

    def select(self, samples: Selector = None, genes: Selector = None) -> Cohort:
        """Subset (and reorder) samples and/or genes.

        Parameters
        ----------
        samples, genes
            ``None`` (all), a slice, integer positions, a boolean mask, a list of
            ids, or a Polars expression evaluated on the sample/gene table
            (e.g. ``pl.col("split") == "train"``).

        Returns
        -------
        Cohort
            A new cohort; slices share memory with this one, other selections copy.
        """
        si = self._indexer(samples, self._samples, "sample_id", "sample")
        gi = self._indexer(genes, self._genes, "gene_id", "gene")
        x = self._x
        if isinstance(si, slice) and isinstance(gi, slice):
            x = x[si, gi]
        elif isinstance(gi, slice):
            x = x[si][:, gi]
        elif isinstance(si, slice):
            x = x[si][:, gi]
        else:
            x = x[np.ix_(si, gi)]
        s_tab = self._samples[si] if isinstance(si, slice) else self._samples[si.tolist()]
        g_tab = self._genes[gi] if isinstance(gi, slice) else self._genes[gi.tolist()]
        out = Cohort(x, s_tab, g_tab, dict(self.meta), truth=self.truth)
        return out

    def split(self, name: str) -> Cohort:
        """The samples whose ``split`` column equals ``name`` (e.g. ``"train"``)."""
        if "split" not in self._samples.columns:
            raise InputError(
                "cohort has no 'split' column; create one with gexplain.preprocess.split"
            )
        return self.select(samples=pl.col("split") == name)

    def align_genes(self, gene_ids: Sequence[str], fill: float | None = None) -> Cohort:
        """Reorder the genes to ``gene_ids`` (matching by id, never by position).

        Parameters
        ----------
        gene_ids
            The wanted gene order (e.g. a model's input genes).
        fill
            Value for genes the cohort lacks. ``None`` (default) makes a missing
            gene an error.

        Returns
        -------
        Cohort
            ``self`` when the genes already match exactly, else a new cohort.

        Raises
        ------
        AlignmentError
            If genes are missing and ``fill`` is ``None``.
        """
        wanted = [str(v) for v in gene_ids]
        if wanted == self.gene_ids:
            return self
        if len(set(wanted)) != len(wanted):
            raise AlignmentError("the requested gene ids contain duplicates")
        lookup = dict(zip(self.gene_ids, range(self.n_genes)))
        pos = np.fromiter((lookup.get(v, -1) for v in wanted), dtype=np.int64, count=len(wanted))
        missing = pos < 0
        n_missing = int(missing.sum())
        if n_missing and fill is None:
            examples = [wanted[i] for i in np.flatnonzero(missing)[:5]]
            raise AlignmentError(
                f"{n_missing} of {len(wanted)} genes are missing from the cohort "
                f"(e.g. {examples}); pass fill=VALUE (CLI: --fill-missing VALUE) to fill them"
            )
        x = np.empty((self.n_samples, len(wanted)), dtype=np.float32)
        present = np.flatnonzero(~missing)
        x[:, present] = self._x[:, pos[present]]
        if n_missing:
            x[:, missing] = np.float32(fill)
        genes = pl.DataFrame({"gene_id": wanted}).join(
            self._genes, on="gene_id", how="left", maintain_order="left"
        )
        meta = dict(self.meta)
        meta["provenance"] = [
            *meta.get("provenance", []),
            {"step": "align_genes", "n_genes": len(wanted), "n_filled": n_missing, "fill": fill},
        ]
        return Cohort(x, self._samples, genes, meta, truth=self.truth)

    # ------------------------------------------------------------------ storage
    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the cohort folder atomically (temporary folder, then rename).

        Returns the folder path.
        """
        with atomic_dir(path, overwrite=overwrite) as tmp:
            _store.write_expression(tmp / _store.EXPRESSION_FILE, self._x)
            _store.write_tables(tmp, self._samples, self._genes, self.meta)
            if self.truth is not None:
                self.truth.save(tmp / _store.TRUTH_DIR)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, mmap: bool = True) -> Cohort:
        """Open a cohort folder.

        With ``mmap=True`` (default) the matrix is a read-only, zero-copy
        memory-mapped view of ``expression.arrow``: loading takes milliseconds and
        no memory, whatever the size. Files written by other tools in several
        record batches are concatenated (one copy).
        """
        from ._truth import GroundTruth

        folder = Path(path)
        if not folder.is_dir():
            raise InputError("cohort folder not found", path=folder)
        samples, genes, meta = _store.read_tables(folder)
        parts = _store.read_expression(folder / _store.EXPRESSION_FILE, mmap=mmap)
        x = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
        if x.shape != (samples.height, genes.height):
            raise InputError(
                f"expression.arrow is {x.shape[0]} × {x.shape[1]} but the tables describe "
                f"{samples.height} samples × {genes.height} genes",
                path=folder,
            )
        truth = (
            GroundTruth.load(folder / _store.TRUTH_DIR)
            if (folder / _store.TRUTH_DIR).is_dir()
            else None
        )
        cohort = cls.__new__(cls)
        cohort._samples, cohort._genes = cls._validate_tables(samples, genes, *x.shape)
        cohort._x = x
        cohort.meta = meta
        cohort.truth = truth
        cohort.offset = 0
        cohort._path = folder
        return cohort

    def iter_chunks(self, n: int) -> Iterator[Cohort]:
        """Iterate over consecutive sample chunks of at most ``n`` samples.

        Each chunk is a :class:`Cohort` sharing memory with this one (for a loaded
        cohort: a view of the memory-mapped file, so memory stays bounded by the
        chunk) and with :attr:`offset` set to the index of its first sample.
        """
        if n <= 0:
            raise ValueError("chunk size must be positive")
        for start in range(0, self.n_samples, n):
            stop = min(start + n, self.n_samples)
            chunk = Cohort.__new__(Cohort)
            chunk._x = self._x[start:stop]
            chunk._samples = self._samples.slice(start, stop - start)
            chunk._genes = self._genes
            chunk.meta = self.meta
            chunk.truth = self.truth
            chunk.offset = self.offset + start
            yield chunk

    # ------------------------------------------------------------------ interop
    def to_anndata(self) -> anndata.AnnData:
        """An :class:`anndata.AnnData` (``obs`` = samples, ``var`` = genes; needs the ``h5ad`` extra).

        ``X`` is a float32 copy of the matrix. The cohort meta (units, provenance,
        preprocessing) travels as a JSON string in ``uns["gexplain_meta"]``, which
        h5ad files can store (nested lists of dicts they cannot), and which
        :func:`gexplain.io.read_h5ad` restores.
        """
        import json

        try:
            import anndata as ad
        except ImportError as exc:  # pragma: no cover - depends on the extra
            raise ImportError("to_anndata needs anndata: pip install 'gexplain[h5ad]'") from exc
        obs = self._samples.to_pandas().set_index("sample_id")
        var = self._genes.to_pandas().set_index("gene_id")
        obs.index = obs.index.astype(str)
        var.index = var.index.astype(str)
        meta = json.dumps(_jsonable(self.meta))
        return ad.AnnData(X=np.array(self._x), obs=obs, var=var, uns={"gexplain_meta": meta})

    def info(self) -> dict[str, Any]:
        """Summary used by ``gexplain info``: sizes, classes, units, NaN count, provenance."""
        n_nan = 0
        step = max(1, 2**24 // max(1, self.n_genes))
        for start in range(0, self.n_samples, step):
            n_nan += int(np.isnan(self._x[start : start + step]).sum())
        out: dict[str, Any] = {
            "n_samples": self.n_samples,
            "n_genes": self.n_genes,
            "units": self.meta.get("units", "unknown"),
            "n_nan": n_nan,
        }
        if self.has_labels:
            counts = self.labels.drop_nulls().value_counts().sort("label")
            out["classes"] = {str(k): int(v) for k, v in zip(counts["label"], counts["count"])}
            out["n_unlabelled"] = int(self.labels.null_count())
        if "split" in self._samples.columns:
            counts = self._samples["split"].value_counts().sort("split")
            out["splits"] = {str(k): int(v) for k, v in zip(counts["split"], counts["count"])}
        out["sample_columns"] = self._samples.columns
        out["gene_columns"] = self._genes.columns
        out["preprocessing"] = self.meta.get("preprocessing", [])
        out["provenance"] = self.meta.get("provenance", [])
        if self.truth is not None:
            out["ground_truth"] = self.truth.summary()
        return out


def _jsonable(obj: Any) -> Any:
    import json

    return json.loads(json.dumps(obj, default=str))


def read_cohort(path: str | os.PathLike[str], *, mmap: bool = True) -> Cohort:
    """Open a cohort folder (alias of :meth:`Cohort.load`)."""
    return Cohort.load(path, mmap=mmap)


def provenance_entry(source: str, **fields: Any) -> dict[str, Any]:
    """A provenance record: ``source`` plus fields, stamped with time and version."""
    return {"source": source, "time": _now(), "gexplain_version": __version__, **fields}
