"""Slow, obviously correct twins of the Numba kernels (stumpy style).

Each kernel in ``kernels/`` has a reference here written with plain numpy
loops; tests compare the two on random inputs of awkward sizes. Sections are
kept per area.
"""

from __future__ import annotations

import numpy as np

# ----------------------------------------------------------------------------- head


def head_forward(layers: list[tuple], z: np.ndarray) -> np.ndarray:
    """Reference head: ``layers`` is a list of ("affine", M, c) / ("relu",) / ... tuples."""
    x = np.asarray(z, dtype=np.float64)
    for layer in layers:
        kind = layer[0]
        if kind == "affine":
            x = layer[1] @ x + layer[2]
        elif kind == "scale":
            x = layer[1] * x + layer[2]
        elif kind == "relu":
            x = np.maximum(x, 0.0)
        elif kind == "leaky_relu":
            x = np.where(x > 0, x, layer[1] * x)
        elif kind == "sigmoid":
            x = 1.0 / (1.0 + np.exp(-x))
        elif kind == "tanh":
            x = np.tanh(x)
        else:
            raise ValueError(kind)
    return x


# ----------------------------------------------------------------------------- simulate


# ----------------------------------------------------------------------------- explain (IG)


# ----------------------------------------------------------------------------- metrics


# ----------------------------------------------------------------------------- io


_NUMBER_RE = None


def _naive_number(token: str) -> tuple[float, int]:
    """(float32 value, status) of one numeric field: 0 finite, 1 NaN/inf, 2 not a number."""
    import re

    global _NUMBER_RE
    if _NUMBER_RE is None:
        _NUMBER_RE = re.compile(r"^ *[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)? *$")
    if _NUMBER_RE.match(token):
        with np.errstate(over="ignore"):
            v = np.float64(float(token)).astype(np.float32)
        return v, 0 if np.isfinite(v) else 1
    t = token.strip(" ").lower()
    if t in ("", "na", "nan", "n/a", "null"):
        return np.float32(np.nan), 1
    sign = -1.0 if t.startswith("-") else 1.0
    if t.lstrip("+-") in ("inf", "infinity") and len(t) - len(t.lstrip("+-")) <= 1:
        return np.float32(sign * np.inf), 1
    return np.float32(0.0), 2


def parse_lines(data: bytes, delim: str, colmap: np.ndarray) -> dict:
    """Reference for ``kernels.parse.find_line_starts`` + ``parse_lines``.

    ``data`` is whole lines ending with ``\\n``. Returns per-line ``values``
    (rows of float32, NaN where not written), ``texts`` (list of text-field
    strings per line), ``err``, ``err_field``, ``nonfinite``, ``first_nonfinite``
    with the kernel's codes (0 ok, 1 too few, 2 too many, 3 bad number, 4 blank).
    """
    lines = data.split(b"\n")[:-1]
    n_out = int(colmap.max(initial=-1)) + 1
    n_fields = len(colmap)
    res: dict = {k: [] for k in ("values", "texts", "err", "err_field", "nonfinite", "first_nf")}
    for raw in lines:
        line = raw[:-1] if raw.endswith(b"\r") else raw
        values = np.full(n_out, np.nan, dtype=np.float32)
        texts: dict[int, str] = {}
        err, err_field, nonfinite, first_nf = 0, -1, 0, -1
        if not line:
            err = 4
        else:
            fields = line.decode("utf-8", errors="replace").split(delim)
            for f, tok in enumerate(fields):
                if f >= n_fields:
                    err, err_field = 2, f
                    break
                m = colmap[f]
                if m >= 0:
                    v, st = _naive_number(tok)
                    if st == 2:
                        err, err_field = 3, f
                        break
                    if st == 1:
                        if nonfinite == 0:
                            first_nf = f
                        nonfinite += 1
                    values[m] = v
                elif m <= -2:
                    texts[-2 - m] = tok
            if err == 0 and len(fields) < n_fields:
                err, err_field = 1, len(fields)
        res["values"].append(values)
        res["texts"].append(texts)
        res["err"].append(err)
        res["err_field"].append(err_field)
        res["nonfinite"].append(nonfinite)
        res["first_nf"].append(first_nf)
    return res


def read_matrix_tsv(path, delim: str = "\t") -> tuple[list[str], list[str], np.ndarray]:
    """Reference reader of a genes × samples text matrix: (sample ids, gene ids, genes × samples)."""
    import csv

    with open(path, newline="") as f:
        rows = list(csv.reader(f, delimiter=delim))
    samples = rows[0][1:]
    genes = [r[0] for r in rows[1:]]
    values = np.array(
        [[np.nan if v in ("NA", "") else float(v) for v in r[1:]] for r in rows[1:]],
        dtype=np.float64,
    )
    return samples, genes, values.astype(np.float32)


def count_byte(buf: np.ndarray, n: int, byte: int) -> int:
    """Reference for ``kernels.parse.count_byte``."""
    return bytes(buf[:n]).count(bytes([byte]))
