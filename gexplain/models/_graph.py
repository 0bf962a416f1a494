"""The gene–gene diffusion graph of the paper's "diffused" models (torch-free).

``A`` is the Pearson correlation between genes on the training samples with the
diagonal removed, keeping only entries ``> threshold`` (default 0.5) — a
weighted, symmetric, sparse matrix. The diffusion operator is the normalised
``S = D^{-1/2} (A + I) D^{-1/2}`` with ``D`` the degree (row sums) of ``A + I``.
A diffused model sees ``S z`` instead of the z-scored sample ``z``; ``S`` is
folded into its first layer at export (``W' = W S``).

The correlation is computed in blocks of genes (standardise the columns once,
then ``Z[:, block]ᵀ Z[:, block:] / n`` for each block and keep the entries
above the threshold), so no dense G × G matrix is ever formed. Each pair of
genes is computed once (upper triangle) and mirrored.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from .._atomic import atomic_file
from ..errors import AlignmentError, InputError

__all__ = [
    "correlation_graph",
    "diffusion_operator",
    "graph_sha256",
    "read_graph",
    "write_graph",
]

GRAPH_FILE = "graph.parquet"
_META_KEY = b"gexplain.graph"


def _standardise(x: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Columns of ``x`` centred and scaled to unit norm / sqrt(n) (float64); constant → 0."""
    n, g = x.shape
    z = np.empty((n, g), dtype=np.float64)
    for a in range(0, n, chunk):
        z[a : a + chunk] = x[a : a + chunk]
    if not np.isfinite(z).all():
        raise InputError("the training matrix holds NaN or infinite values; filter them first")
    z -= z.mean(axis=0)
    std = np.sqrt((z * z).mean(axis=0))
    with np.errstate(divide="ignore"):
        inv = np.where(std > 0, 1.0 / std, 0.0)
    z *= inv
    return z


def correlation_graph(
    x: np.ndarray, threshold: float = 0.5, *, block_size: int = 1024
) -> sp.csr_matrix:
    """Thresholded gene–gene Pearson correlation as a symmetric sparse matrix.

    Parameters
    ----------
    x
        Samples × genes matrix (the training samples), any float dtype.
    threshold
        Keep correlations strictly greater than this (the paper: 0.5).
    block_size
        Genes per block; memory is ``n × G`` float64 for the standardised
        matrix plus ``block_size × G`` for one block of correlations.

    Returns
    -------
    scipy.sparse.csr_matrix
        ``A`` (G × G, float64): ``A[i, j] = corr(i, j)`` where it exceeds the
        threshold and ``i != j``, else 0. Constant genes have no edges.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[0.0, 0.1, 5.0], [1.0, 1.2, 4.0], [2.0, 1.9, 6.0]])
    >>> a = correlation_graph(x, 0.5)
    >>> a.nnz, round(float(a[0, 1]), 4), float(a[0, 2])
    (2, 0.9919, 0.0)
    """
    if x.ndim != 2:
        raise ValueError("x must be 2-D (samples × genes)")
    n, g = x.shape
    if n < 2:
        raise InputError("the correlation graph needs at least 2 training samples")
    z = _standardise(x)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    for a in range(0, g, block_size):
        b = min(a + block_size, g)
        c = z[:, a:b].T @ z[:, a:]
        c /= n
        # keep j > i only (upper triangle, diagonal removed)
        c[np.tril_indices(b - a, k=0, m=g - a)] = -np.inf
        i, j = np.nonzero(c > threshold)
        rows.append(i + a)
        cols.append(j + a)
        vals.append(c[i, j])
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c_ = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    v = np.concatenate(vals) if vals else np.zeros(0)
    upper = sp.coo_matrix((v, (r, c_)), shape=(g, g))
    out = (upper + upper.T).tocsr()
    out.sort_indices()
    return out


def diffusion_operator(adjacency: sp.spmatrix) -> sp.csr_matrix:
    """``S = D^{-1/2} (A + I) D^{-1/2}`` with ``D`` the row sums of ``A + I``.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> s = diffusion_operator(sp.csr_matrix(np.array([[0.0, 1.0], [1.0, 0.0]])))
    >>> s.toarray()
    array([[0.5, 0.5],
           [0.5, 0.5]])
    """
    a = sp.csr_matrix(adjacency, dtype=np.float64)
    g = a.shape[0]
    a_hat = (a + sp.identity(g, dtype=np.float64, format="csr")).tocsr()
    deg = np.asarray(a_hat.sum(axis=1)).ravel()
    if (deg <= 0).any():
        raise ValueError("A + I has a row with a non-positive degree (negative weights?)")
    d = sp.diags(1.0 / np.sqrt(deg))
    s = (d @ a_hat @ d).tocsr()
    s.sort_indices()
    return s


def graph_sha256(s: sp.spmatrix) -> str:
    """SHA-256 of a sparse matrix's canonical CSR form (shape, indptr, indices, data)."""
    m = sp.csr_matrix(s, dtype=np.float64)
    m.sum_duplicates()
    m.sort_indices()
    h = hashlib.sha256()
    h.update(np.asarray(m.shape, dtype=np.int64).tobytes())
    h.update(m.indptr.astype(np.int64).tobytes())
    h.update(m.indices.astype(np.int64).tobytes())
    h.update(m.data.tobytes())
    return h.hexdigest()


def write_graph(
    path: str | os.PathLike[str],
    s: sp.spmatrix,
    gene_ids: Sequence[str],
    *,
    adjacency: sp.spmatrix | None = None,
    params: dict[str, Any] | None = None,
) -> str:
    """Write ``S`` as ``graph.parquet`` (long form: ``gene_i, gene_j, weight[, correlation]``).

    Every stored entry of the symmetric ``S`` is one row (both directions and
    the diagonal). ``correlation`` is the thresholded ``A`` entry (0 on the
    diagonal). ``params`` (JSON) and the graph's hash go into the Parquet file's
    key-value metadata. The file is written atomically.

    Returns
    -------
    str
        :func:`graph_sha256` of ``S``.
    """
    m = sp.coo_matrix(sp.csr_matrix(s, dtype=np.float64))
    ids = np.asarray([str(v) for v in gene_ids], dtype=object)
    if len(ids) != m.shape[0]:
        raise ValueError("gene_ids must have one id per row of S")
    order = np.lexsort((m.col, m.row))
    row, col, val = m.row[order], m.col[order], m.data[order]
    columns: dict[str, Any] = {
        "gene_i": pa.array(ids[row], type=pa.string()),
        "gene_j": pa.array(ids[col], type=pa.string()),
        "weight": pa.array(val, type=pa.float64()),
    }
    if adjacency is not None:
        a = sp.csr_matrix(adjacency, dtype=np.float64)
        columns["correlation"] = pa.array(np.asarray(a[row, col]).ravel(), type=pa.float64())
    digest = graph_sha256(s)
    info = {**(params or {}), "n_genes": int(m.shape[0]), "sha256": digest}
    table = pa.table(columns).replace_schema_metadata({_META_KEY: json.dumps(info).encode()})
    with atomic_file(path) as tmp:
        pq.write_table(table, tmp)
    return digest


def graph_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The parameters stored with a ``graph.parquet`` (threshold, hashes, ...)."""
    meta = pq.read_schema(path).metadata or {}
    if _META_KEY not in meta:
        return {}
    return json.loads(meta[_META_KEY])


def read_graph(
    path: str | os.PathLike[str], gene_ids: Sequence[str] | None = None
) -> tuple[sp.csr_matrix, list[str]]:
    """Read a ``graph.parquet`` into a sparse ``S`` ordered like ``gene_ids``.

    Parameters
    ----------
    path
        The graph file (``MODELS/graph.parquet``).
    gene_ids
        Gene order wanted (e.g. a model's input genes); every gene of the graph
        must be among them. ``None`` uses the order of first appearance.

    Returns
    -------
    (S, gene_ids)
        ``S`` as CSR float64 and the gene ids indexing it.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("graph file not found", path=path)
    t = pq.read_table(path)
    for col in ("gene_i", "gene_j", "weight"):
        if col not in t.column_names:
            raise InputError(f"not a gexplain graph: no {col!r} column", path=path, column=col)
    gi = np.asarray(t["gene_i"].to_pylist(), dtype=object)
    gj = np.asarray(t["gene_j"].to_pylist(), dtype=object)
    w = t["weight"].to_numpy()
    if gene_ids is None:
        seen: dict[str, int] = {}
        for v in gi:
            seen.setdefault(v, len(seen))
        ids = list(seen)
        n_declared = graph_info(path).get("n_genes")
        if n_declared is not None and n_declared != len(ids):
            raise InputError(
                f"the graph has {n_declared} genes but only {len(ids)} appear; "
                "pass the model's gene_ids to read it",
                path=path,
            )
    else:
        ids = [str(v) for v in gene_ids]
    lookup = dict(zip(ids, range(len(ids))))
    try:
        r = np.fromiter((lookup[v] for v in gi), dtype=np.int64, count=len(gi))
        c = np.fromiter((lookup[v] for v in gj), dtype=np.int64, count=len(gj))
    except KeyError as exc:
        raise AlignmentError(
            f"gene {exc.args[0]!r} of the graph is not among the given gene ids"
        ) from None
    s = sp.csr_matrix((w, (r, c)), shape=(len(ids), len(ids)))
    s.sort_indices()
    return s, ids
