"""AnnData ``.h5ad`` files: import (obs -> samples, var -> genes) and export."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from .._atomic import _check_target, atomic_file
from .._progress import progress
from ..cohort import Cohort, provenance_entry
from ..errors import InputError
from ._common import LOG2_STEP, NanOption, NanPolicy, NanTally, Target

PathLike = str | os.PathLike[str]


def _need_anndata() -> Any:
    try:
        import anndata
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise ImportError("h5ad support needs anndata: pip install 'gexplain[h5ad]'") from exc
    return anndata


def _frame(df: Any, key: str) -> pl.DataFrame:
    """pandas obs/var frame -> Polars, index first as ``key``; categoricals become strings."""
    df = df.copy()
    for c in df.columns:
        if str(df[c].dtype) == "category":
            df[c] = df[c].astype(str).where(df[c].notna(), None)
    index = [str(v) for v in df.index]
    cols = [c for c in df.columns if str(c) != key]
    out = pl.from_pandas(df[cols].reset_index(drop=True)) if cols else pl.DataFrame()
    out = out.rename({c: str(c) for c in out.columns})
    return pl.concat([pl.DataFrame({key: index}, schema={key: pl.String}), out], how="horizontal")


def read_h5ad(
    path: PathLike,
    *,
    label: str | None = None,
    layer: str | None = None,
    raw: bool = False,
    out: PathLike | None = None,
    overwrite: bool = False,
    nan: NanOption | NanPolicy = "error",
    units: str | None = None,
    log2_source: bool | None = None,
    chunk: int = 1024,
    quiet: bool | None = True,
) -> Cohort:
    """Import an AnnData ``.h5ad`` file (needs the ``h5ad`` extra).

    ``obs`` becomes the sample table (``sample_id`` = obs names), ``var`` the
    gene table (``gene_id`` = var names). The matrix is ``X`` (dense or sparse
    CSR/CSC), a layer, or ``raw.X`` (with ``raw.var``); it is read in row chunks
    straight from the HDF5 file, so memory stays bounded by a chunk when
    ``out`` is given.

    Parameters
    ----------
    path
        The ``.h5ad`` file.
    label
        ``obs`` column copied into ``label``.
    layer
        Read ``layers[layer]`` instead of ``X``.
    raw
        Read ``raw.X`` (and ``raw.var``) instead of ``X``.
    out, overwrite, nan, quiet
        As in :func:`read_xena`.
    units
        Units to record. Default: those stored by :func:`write_h5ad` (files
        exported by gexplain keep their units and preprocessing), else
        ``"unknown"``.
    log2_source
        Record a ``log2p1`` step by source (``None``: infer from ``units``).
    chunk
        Rows per read.

    Examples
    --------
    >>> import numpy as np, tempfile, os, gexplain as gx
    >>> from gexplain.io import read_h5ad, write_h5ad
    >>> c = gx.Cohort(np.arange(6.0).reshape(2, 3), {"sample_id": ["a", "b"], "label": ["x", "y"]})
    >>> f = os.path.join(tempfile.mkdtemp(), "c.h5ad")
    >>> _ = write_h5ad(c, f)
    >>> read_h5ad(f, label="label").expression[1].tolist()
    [3.0, 4.0, 5.0]
    """
    _need_anndata()
    import h5py
    from anndata.io import read_elem, sparse_dataset

    src = Path(path)
    policy = NanPolicy.parse(nan)
    if layer is not None and raw:
        raise ValueError("give layer or raw, not both")
    if out is not None:
        _check_target(Path(out), overwrite)
    if not src.exists():
        raise InputError("file not found", path=src)
    try:
        f = h5py.File(src, "r")
    except OSError as exc:
        raise InputError(f"not an HDF5/h5ad file ({exc})", path=src) from exc
    target: Target | None = None
    try:
        with f:
            if "obs" not in f or "var" not in f:
                raise InputError("not an AnnData file: no obs/var groups", path=src)
            samples = _frame(read_elem(f["obs"]), "sample_id")
            if raw:
                if "raw" not in f or "X" not in f["raw"]:
                    raise InputError("the file has no raw.X", path=src)
                elem, genes = f["raw"]["X"], _frame(read_elem(f["raw"]["var"]), "gene_id")
                where = "raw.X"
            elif layer is not None:
                if "layers" not in f or layer not in f["layers"]:
                    have = list(f["layers"].keys()) if "layers" in f else []
                    raise InputError(f"no layer {layer!r}; layers are {have}", path=src)
                elem, genes = f["layers"][layer], _frame(read_elem(f["var"]), "gene_id")
                where = f"layers[{layer!r}]"
            else:
                if "X" not in f:
                    raise InputError("the file has no X matrix (use layer= or raw=)", path=src)
                elem, genes = f["X"], _frame(read_elem(f["var"]), "gene_id")
                where = "X"
            if isinstance(elem, h5py.Dataset):
                matrix: Any = elem
                shape = elem.shape
            else:
                enc = elem.attrs.get("encoding-type", "")
                if enc not in ("csr_matrix", "csc_matrix"):
                    raise InputError(f"{where} has unsupported encoding {enc!r}", path=src)
                matrix = sparse_dataset(elem)
                shape = matrix.shape
            n, g = int(shape[0]), int(shape[1])
            if (n, g) != (samples.height, genes.height):
                raise InputError(
                    f"{where} is {n} × {g} but obs/var describe {samples.height} × {genes.height}",
                    path=src,
                )
            for key, table in (("sample_id", samples), ("gene_id", genes)):
                dup = table[key].is_duplicated()
                if dup.any():
                    first = table.filter(dup)[key][0]
                    what = "obs name" if key == "sample_id" else "var name"
                    raise InputError(f"duplicate {what} {first!r}", path=src)
            if label is not None:
                if label not in samples.columns:
                    raise InputError(
                        f"no obs column {label!r}; obs columns are {samples.columns[1:]}",
                        path=src,
                    )
                samples = samples.with_columns(pl.col(label).cast(pl.String).alias("label"))
            stored = _stored_meta(f, read_elem)
            tally = NanTally(policy)
            target = Target(out, n, g, overwrite)
            bad = np.zeros(g, dtype=bool)
            starts = range(0, n, max(1, chunk))
            for start in progress(starts, desc="import h5ad", quiet=quiet, unit="chunk"):
                stop = min(start + chunk, n)
                rows = matrix[start:stop]
                if hasattr(rows, "toarray"):
                    rows = rows.toarray()
                block = np.asarray(rows, dtype=np.float32)
                finite = np.isfinite(block)
                if not finite.all():
                    tally.add(int((~finite).sum()))
                    if policy.mode == "error":
                        r, k = np.argwhere(~finite)[0]
                        sid = samples["sample_id"][start + int(r)]
                        raise InputError(
                            f"non-finite value in {where} at sample {sid!r}"
                            f", gene {genes['gene_id'][int(k)]!r}; pass nan='drop-genes' or "
                            "nan='fill=VALUE' (CLI: --nan ...) to accept them",
                            path=src,
                        )
                    if policy.mode == "fill":
                        tally.fill(block)
                    else:
                        bad |= ~finite.all(axis=0)
                target.expression[start:stop] = block
        if bad.any():
            if bad.all():
                raise InputError("every gene has a NaN/inf value; nothing left", path=src)
            tally.bad_genes.update(int(j) for j in np.flatnonzero(bad))
            target.keep_genes(~bad)
            genes = genes.filter(pl.Series(~bad))
        meta = _meta(
            stored, units, log2_source, src, where, label, samples.height, genes.height, tally
        )
        return target.commit(samples, genes, meta)
    except BaseException:
        if target is not None:
            target.abort()
        raise


def _stored_meta(f: Any, read_elem: Any) -> dict[str, Any] | None:
    if "uns" in f and "gexplain_meta" in f["uns"]:
        try:
            value = read_elem(f["uns"]["gexplain_meta"])
            return json.loads(value if isinstance(value, str) else str(value))
        except (ValueError, TypeError):
            return None
    return None


def _meta(
    stored: dict[str, Any] | None,
    units: str | None,
    log2_source: bool | None,
    src: Path,
    where: str,
    label: str | None,
    n: int,
    g: int,
    tally: NanTally,
) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if stored is not None:
        meta = {k: v for k, v in stored.items() if k not in ("gexplain_version", "format_version")}
    if units is not None:
        meta["units"] = units
    meta.setdefault("units", "unknown")
    steps = list(meta.get("preprocessing", []))
    if log2_source is None and units is not None:
        u = units.replace(" ", "").lower()
        log2_source = u.startswith("log2(") and u.endswith("+1)")
    if log2_source and "log2p1" not in [s.get("step") for s in steps]:
        steps.append(dict(LOG2_STEP))
    meta["preprocessing"] = steps
    entry = provenance_entry(
        "h5ad", path=str(src), matrix=where, label=label, n_samples=n, n_genes=g, **tally.summary()
    )
    meta["provenance"] = [*meta.get("provenance", []), entry]
    return meta


def write_h5ad(
    cohort: Cohort, path: PathLike, *, overwrite: bool = False, compression: str | None = None
) -> Path:
    """Write ``cohort`` as an AnnData ``.h5ad`` file, atomically (needs the ``h5ad`` extra).

    ``obs`` = the sample table (index ``sample_id``), ``var`` = the gene table
    (index ``gene_id``), ``X`` = the float32 matrix, and the cohort meta as JSON
    in ``uns["gexplain_meta"]`` (restored by :func:`read_h5ad`).

    Examples
    --------
    >>> import numpy as np, tempfile, os, anndata, gexplain as gx
    >>> from gexplain.io import write_h5ad
    >>> f = write_h5ad(gx.Cohort(np.eye(2), genes=["TP53", "EGFR"]),
    ...                os.path.join(tempfile.mkdtemp(), "c.h5ad"))
    >>> anndata.read_h5ad(f).var_names.tolist()
    ['TP53', 'EGFR']
    """
    _need_anndata()
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"{path} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    adata = cohort.to_anndata()
    with atomic_file(path, overwrite=True) as tmp:
        adata.write_h5ad(tmp, compression=compression)
    return path
