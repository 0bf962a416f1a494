"""Delimited-text parsing over raw bytes: line starts, numeric fields, id comparison.

The readers in :mod:`gexplain.io` hand these kernels a block of bytes made of
whole lines (every line ends with ``\\n``; a ``\\r`` before it is ignored) and
a *column map* saying what to do with each field of a line:

==============  ==========================================================
``colmap[f]``   field ``f`` is
==============  ==========================================================
``>= 0``        numeric: parsed into ``out[line, colmap[f]]`` (float32)
``-1``          skipped (only counted)
``<= -2``       text: its byte range is stored in ``text_start/text_end``
                ``[line, -2 - colmap[f]]``
==============  ==========================================================

Numbers are decimal floats (``12``, ``-3.5``, ``.5``, ``1e-3``, ``7.E2``).
Missing-value tokens (empty, ``NA``, ``NaN``, ``N/A``, ``null``, any case)
become NaN and infinities (``inf``, ``-Infinity``, any case) ±inf; both are
counted per line as *non-finite* so the reader can apply its NaN policy. Spaces
around a number are ignored. Other tokens are errors. A value whose digits fit
in 15 significant digits (mantissa ≤ 2**53) with a decimal exponent within ±22
(``12.3456``, ``-0.000123``, ``4.5e-7``) is converted with one correctly rounded
float64 operation, then rounded to float32: exactly ``numpy.float32(float(token))``.
Longer mantissas or larger exponents are within a few float64 ulps before the
float32 rounding (so at most one float32 ulp away).

Per-line status codes (``err``): :data:`OK`, :data:`TOO_FEW`, :data:`TOO_MANY`
(with the 0-based field count / index in ``err_field``), :data:`BAD_NUMBER`
(field index in ``err_field``), :data:`BLANK` (an empty line).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

OK = 0
TOO_FEW = 1
TOO_MANY = 2
BAD_NUMBER = 3
BLANK = 4

# status of one numeric field
_FINITE = 0
_NONFINITE = 1
_BAD = 2

_POW10 = np.array([10.0**k for k in range(23)], dtype=np.float64)
_MAX_EXACT = float(2**53)
_FAST_LIMIT = 10**17


@njit(cache=True)
def _count_newlines(a):
    # a loop over a whole (sliced) array vectorises; one with computed bounds does not
    c = 0
    for i in range(a.shape[0]):
        if a[i] == 10:
            c += 1
    return c


@njit(cache=True, nogil=True)
def find_line_starts(buf, n):
    """Start offsets of the lines in ``buf[:n]`` (which ends with ``\\n``).

    Serial on purpose: a plain count of ``\\n`` per 4 KiB chunk vectorises
    (several GB/s on one core, faster than a parallel loop here); only chunks
    holding a line end are scanned again to record the offsets.

    Parameters
    ----------
    buf : uint8[:]
        Bytes; ``buf[n - 1]`` must be ``\\n`` (``n == 0`` gives no lines).
    n : int
        Number of valid bytes.

    Returns
    -------
    int64[:]
        Offset of the first byte of every line, increasing.
    """
    if n <= 0:
        return np.empty(0, dtype=np.int64)
    chunk = 4096
    last = n - 1  # the final '\\n' ends the last line and starts none
    n_chunks = (last + chunk - 1) // chunk
    counts = np.zeros(max(n_chunks, 1), dtype=np.int64)
    total = 0
    for k in range(n_chunks):
        c = _count_newlines(buf[k * chunk : min((k + 1) * chunk, last)])
        counts[k] = c
        total += c
    starts = np.empty(total + 1, dtype=np.int64)
    starts[0] = 0
    j = 1
    for k in range(n_chunks):
        if counts[k] == 0:
            continue
        for i in range(k * chunk, min((k + 1) * chunk, last)):
            if buf[i] == 10:
                starts[j] = i + 1
                j += 1
    return starts


@njit(cache=True, inline="always")
def _lower(c):
    if 65 <= c <= 90:
        return c + 32
    return c


@njit(cache=True)
def _special(buf, p, e):
    """Classify the token ``buf[p:e]``: 0 not special, 1 missing (NaN), 2 +inf, 3 -inf."""
    n = e - p
    if n == 0:
        return 1
    c0 = _lower(buf[p])
    if n == 2 and c0 == 110 and _lower(buf[p + 1]) == 97:  # na
        return 1
    if n == 3 and c0 == 110:
        c1 = _lower(buf[p + 1])
        c2 = _lower(buf[p + 2])
        if c1 == 97 and c2 == 110:  # nan
            return 1
        if c1 == 47 and c2 == 97:  # n/a
            return 1
    if n == 4 and c0 == 110:  # null
        if _lower(buf[p + 1]) == 117 and _lower(buf[p + 2]) == 108 and _lower(buf[p + 3]) == 108:
            return 1
    sign = 2
    q = p
    if c0 == 45:  # '-'
        sign = 3
        q += 1
    elif c0 == 43:  # '+'
        q += 1
    m = e - q
    if m == 3 or m == 8:
        if _lower(buf[q]) == 105 and _lower(buf[q + 1]) == 110 and _lower(buf[q + 2]) == 102:
            if m == 3:
                return sign
            # "infinity"
            if (
                _lower(buf[q + 3]) == 105
                and _lower(buf[q + 4]) == 110
                and _lower(buf[q + 5]) == 105
                and _lower(buf[q + 6]) == 116
                and _lower(buf[q + 7]) == 121
            ):
                return sign
    return 0


@njit(cache=True, inline="always")
def _scale(mant, exp10):
    """``mant * 10**exp10`` in float64 (correctly rounded in the fast range)."""
    v = float(mant)
    if mant <= _MAX_EXACT:
        if 0 <= exp10 <= 22:
            return v * _POW10[exp10]
        if -22 <= exp10 < 0:
            return v / _POW10[-exp10]
    if exp10 > 308:
        return v * 1e308 * 10.0 ** (exp10 - 308)
    if exp10 < -300:
        return (v / 1e300) / 10.0 ** (-exp10 - 300)
    if exp10 >= 0:
        return v * 10.0**exp10
    return v / 10.0 ** (-exp10)


@njit(cache=True, inline="always")
def _parse_number(buf, p, lend, delim):
    """Parse the field starting at ``p``; returns (value, end, status).

    ``end`` is the offset of the delimiter that ends the field, or ``lend``.
    Plain decimals of at most 15 digits (``-12.345``, the bulk of expression
    files) take a short path; anything else goes to :func:`_parse_general`,
    which gives the same value for them.
    """
    i = p
    neg = buf[i] == 45
    if neg:
        i += 1
    mant = 0
    start = i
    while True:  # the line end (not a digit) stops the scans
        d = np.int64(buf[i]) - 48
        if d < 0 or d > 9:
            break
        if mant < _FAST_LIMIT:  # more digits go to the general path anyway
            mant = mant * 10 + d
        i += 1
    nint = i - start
    nfrac = 0
    if buf[i] == 46:  # '.'
        i += 1
        fs = i
        while True:
            d = np.int64(buf[i]) - 48
            if d < 0 or d > 9:
                break
            if mant < _FAST_LIMIT:
                mant = mant * 10 + d
            i += 1
        nfrac = i - fs
    nd = nint + nfrac
    if 0 < nd <= 15 and (i == lend or buf[i] == delim):
        v = float(mant) / _POW10[nfrac]
        return np.float32(-v if neg else v), i, _FINITE
    return _parse_general(buf, p, lend, delim)


@njit(cache=True, inline="always")
def _parse_general(buf, p, lend, delim):
    """Any number, NA/NaN/inf token or bad token; same contract as :func:`_parse_number`."""
    i = p
    while i < lend and buf[i] == 32 and delim != 32:  # leading spaces
        i += 1
    neg = False
    if i < lend:
        c = buf[i]
        if c == 45:
            neg = True
            i += 1
        elif c == 43:
            i += 1
    mant = np.uint64(0)
    nd = 0
    exp10 = 0
    digits = False
    while True:  # the line end (not a digit) stops the scan
        c = buf[i]
        if c < 48 or c > 57:
            break
        digits = True
        if nd < 19:
            mant = mant * np.uint64(10) + np.uint64(c - 48)
            if mant != 0:
                nd += 1
        else:
            exp10 += 1
        i += 1
    if i < lend and buf[i] == 46:  # '.'
        i += 1
        while True:
            c = buf[i]
            if c < 48 or c > 57:
                break
            digits = True
            if nd < 19:
                mant = mant * np.uint64(10) + np.uint64(c - 48)
                exp10 -= 1
                if mant != 0:
                    nd += 1
            i += 1
    if digits and i < lend and (buf[i] == 101 or buf[i] == 69):  # e / E
        j = i + 1
        eneg = False
        if j < lend and (buf[j] == 45 or buf[j] == 43):
            eneg = buf[j] == 45
            j += 1
        e = 0
        edigits = False
        while j < lend:
            c = buf[j]
            if c < 48 or c > 57:
                break
            edigits = True
            if e < 100000:
                e = e * 10 + (c - 48)
            j += 1
        if edigits:
            exp10 += -e if eneg else e
            i = j
        else:
            digits = False  # "1e" or "1e+" is not a number
    while digits and i < lend and buf[i] == 32 and delim != 32:  # trailing spaces
        i += 1
    if digits and (i == lend or buf[i] == delim):
        if mant == 0:
            v = 0.0
        else:
            v = _scale(mant, exp10)
        v32 = np.float32(-v if neg else v)
        if np.isfinite(v32):
            return v32, i, _FINITE
        return v32, i, _NONFINITE  # overflows float32
    # not a plain number: find the end of the token and look for NA/NaN/inf
    e = i
    while e < lend and buf[e] != delim:
        e += 1
    a = p
    b = e
    if delim != 32:
        while a < b and buf[a] == 32:
            a += 1
        while b > a and buf[b - 1] == 32:
            b -= 1
    kind = _special(buf, a, b)
    if kind == 1:
        return np.float32(np.nan), e, _NONFINITE
    if kind == 2:
        return np.float32(np.inf), e, _NONFINITE
    if kind == 3:
        return np.float32(-np.inf), e, _NONFINITE
    return np.float32(0.0), e, _BAD


@njit(cache=True, parallel=True, nogil=True)
def parse_lines(
    buf,
    starts,
    n,
    delim,
    colmap,
    out,
    text_start,
    text_end,
    err,
    err_field,
    nonfinite,
    first_nonfinite,
):
    """Parse the lines of ``buf[:n]`` (starting at ``starts``) by the column map.

    Parameters
    ----------
    buf : uint8[:]
        Bytes of whole lines; ``buf[n - 1]`` is ``\\n``.
    starts : int64[:]
        Line start offsets (from :func:`find_line_starts`).
    n : int
        Number of valid bytes.
    delim : int
        Field delimiter byte (9 for tab, 44 for comma).
    colmap : int64[:]
        What to do with each field (see the module docstring); its length is
        the expected number of fields per line.
    out : float32[:, :]
        Receives numeric fields, ``out[line, colmap[f]]``; untouched on errors.
    text_start, text_end : int64[:, :]
        Byte ranges of the text fields, per line.
    err, err_field : int8[:], int64[:]
        Per-line status and the field it refers to.
    nonfinite, first_nonfinite : int64[:], int64[:]
        Per-line count of NaN/inf numeric fields, and the first such field (-1).
    """
    n_lines = starts.shape[0]
    n_fields = colmap.shape[0]
    for li in prange(n_lines):
        p = starts[li]
        lend = (starts[li + 1] if li + 1 < n_lines else n) - 1  # the '\n'
        if lend > p and buf[lend - 1] == 13:
            lend -= 1
        err[li] = OK
        err_field[li] = -1
        nonfinite[li] = 0
        first_nonfinite[li] = -1
        if lend == p:
            err[li] = BLANK
            continue
        f = 0
        q = p
        while True:
            if f >= n_fields:
                err[li] = TOO_MANY
                err_field[li] = f
                break
            m = colmap[f]
            if m >= 0:
                v, e, st = _parse_number(buf, q, lend, delim)
                if st == _BAD:
                    err[li] = BAD_NUMBER
                    err_field[li] = f
                    break
                if st == _NONFINITE:
                    if nonfinite[li] == 0:
                        first_nonfinite[li] = f
                    nonfinite[li] += 1
                out[li, m] = v
            else:
                e = q
                while e < lend and buf[e] != delim:
                    e += 1
                if m <= -2:
                    text_start[li, -2 - m] = q
                    text_end[li, -2 - m] = e
            if e >= lend:
                if f + 1 < n_fields:
                    err[li] = TOO_FEW
                    err_field[li] = f + 1
                break
            q = e + 1
            f += 1


@njit(cache=True)
def first_id_mismatch(buf, starts, ends, ref, ref_offsets):
    """Index of the first id ``buf[starts[i]:ends[i]]`` differing from the reference, or -1.

    The reference ids are ``ref[ref_offsets[i]:ref_offsets[i + 1]]``. Returns
    ``min(len(starts), n_ref)`` when one list is a prefix of the other but the
    lengths differ.
    """
    n_ids = starts.shape[0]
    n_ref = ref_offsets.shape[0] - 1
    m = min(n_ids, n_ref)
    for i in range(m):
        a = starts[i]
        la = ends[i] - a
        b = ref_offsets[i]
        lb = ref_offsets[i + 1] - b
        if la != lb:
            return i
        for k in range(la):
            if buf[a + k] != ref[b + k]:
                return i
    if n_ids != n_ref:
        return m
    return -1


@njit(cache=True, nogil=True)
def count_byte(buf, n, byte):
    """Number of occurrences of ``byte`` in ``buf[:n]`` (vectorised serial loop)."""
    c = 0
    for i in range(n):
        if buf[i] == byte:
            c += 1
    return c
