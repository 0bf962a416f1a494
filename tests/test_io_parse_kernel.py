"""The delimited-text kernels against their naive twins, precision, threads, error codes."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest
from gexplain.kernels import parse as K
from naive import count_byte as naive_count_byte
from naive import parse_lines as naive_parse


def _run(data: bytes, delim: str, colmap: np.ndarray) -> dict:
    buf = np.frombuffer(data, dtype=np.uint8)
    starts = K.find_line_starts(buf, len(buf))
    n = len(starts)
    n_out = int(colmap.max(initial=-1)) + 1
    n_text = int((-2 - colmap[colmap <= -2]).max(initial=-1)) + 1
    out = np.full((n, n_out), np.nan, dtype=np.float32)
    ts = np.zeros((n, n_text), dtype=np.int64)
    te = np.zeros((n, n_text), dtype=np.int64)
    err = np.zeros(n, dtype=np.int8)
    err_field = np.zeros(n, dtype=np.int64)
    nonfinite = np.zeros(n, dtype=np.int64)
    first_nf = np.zeros(n, dtype=np.int64)
    K.parse_lines(
        buf, starts, len(buf), ord(delim), colmap, out, ts, te, err, err_field, nonfinite, first_nf
    )
    texts = [{k: data[ts[i, k] : te[i, k]].decode() for k in range(n_text)} for i in range(n)]
    return {
        "starts": starts,
        "values": out,
        "texts": texts,
        "err": err,
        "err_field": err_field,
        "nonfinite": nonfinite,
        "first_nf": first_nf,
    }


def _compare(data: bytes, delim: str, colmap: np.ndarray) -> dict:
    got = _run(data, delim, colmap)
    ref = naive_parse(data, delim, colmap)
    np.testing.assert_array_equal(got["err"], ref["err"])
    np.testing.assert_array_equal(got["err_field"], ref["err_field"])
    np.testing.assert_array_equal(got["nonfinite"], ref["nonfinite"])
    np.testing.assert_array_equal(got["first_nf"], ref["first_nf"])
    ok = got["err"] == 0
    if ok.any():
        np.testing.assert_array_equal(got["values"][ok], np.array(ref["values"])[ok])
        for i in np.flatnonzero(ok):
            assert got["texts"][i] == ref["texts"][i]
    return got


TOKENS = [
    "0",
    "1",
    "-1",
    "+2.5",
    "3.",
    ".5",
    "-.25",
    "1e3",
    "1E-3",
    "2.5e+10",
    "7.E2",
    "0.000123",
    "123456.789",
    "1e39",
    "-1e39",
    "1e-50",
    "NA",
    "nan",
    "NaN",
    "N/A",
    "null",
    "",
    "inf",
    "-Inf",
    "+INFINITY",
    " 4.5",
    "6 ",
    "  ",
]
BAD = ["x", "1.2.3", "1e", "--1", "1_0", "0x10", "e5", ".", "-", "1,5", "nan5", "+nan", "1 2"]


def _random_text(rng, n_lines, n_fields, delim, bad_rate=0.0, crlf=False, ragged=0.0):
    lines = []
    for _ in range(n_lines):
        k = n_fields
        if ragged and rng.random() < ragged:
            k += int(rng.choice([-1, 1])) if n_fields > 1 else 1
        fields = [f"id{rng.integers(1e6)}"]
        for _ in range(k - 1):
            r = rng.random()
            if r < bad_rate:
                fields.append(str(rng.choice(BAD)))
            elif r < 0.3:
                fields.append(str(rng.choice(TOKENS)))
            elif r < 0.6:
                fields.append(f"{rng.normal(0, 10):.4f}")
            else:
                fields.append(repr(float(rng.gamma(2.0, 3.0))))
        lines.append(delim.join(fields))
    end = "\r\n" if crlf else "\n"
    return (end.join(lines) + end).encode()


@pytest.mark.parametrize(
    "n_lines,n_fields,delim,crlf",
    [
        (1, 1, "\t", False),
        (1, 2, "\t", False),
        (5, 1, ",", True),
        (37, 9, "\t", False),
        (64, 13, ",", True),
    ],
)
def test_matches_naive_on_random_lines(n_lines, n_fields, delim, crlf):
    rng = np.random.default_rng(n_lines * 31 + n_fields)
    data = _random_text(rng, n_lines, n_fields, delim, crlf=crlf)
    colmap = np.arange(-2, n_fields - 2, dtype=np.int64)  # field 0 text, the rest numeric
    colmap[1:] = np.arange(n_fields - 1)
    got = _compare(data, delim, colmap)
    assert (got["err"] == 0).all()


def test_matches_naive_with_errors_skips_and_text_slots():
    rng = np.random.default_rng(3)
    data = _random_text(rng, 80, 8, "\t", bad_rate=0.03, ragged=0.05)
    data += b"\n" + b"x\t1\t2\t3\t4\t5\t6\t7\n"  # a blank line, then a good one
    colmap = np.array([-2, 0, -1, 1, -3, 2, 3, -1], dtype=np.int64)
    got = _compare(data, "\t", colmap)
    assert {1, 2, 3, 4} <= set(got["err"].tolist())  # every error kind occurred


@pytest.mark.parametrize("line_len", [1, 5, 4095, 4096, 4097, 9000])
def test_line_starts_match_naive_across_chunk_edges(line_len):
    rng = np.random.default_rng(line_len)
    lines = [b"x" * int(rng.integers(0, line_len + 1)) for _ in range(30)]
    data = b"\n".join(lines) + b"\n"
    buf = np.frombuffer(data, dtype=np.uint8)
    ref = np.array([0] + [i + 1 for i, c in enumerate(data[:-1]) if c == 10])
    np.testing.assert_array_equal(K.find_line_starts(buf, len(buf)), ref)
    # a prefix that ends at a line end
    cut = int(ref[len(ref) // 2])
    np.testing.assert_array_equal(K.find_line_starts(buf, cut), ref[: len(ref) // 2])


def test_line_starts_edge_cases():
    assert len(K.find_line_starts(np.zeros(0, dtype=np.uint8), 0)) == 0
    one = np.frombuffer(b"\n", dtype=np.uint8)
    np.testing.assert_array_equal(K.find_line_starts(one, 1), [0])
    two = np.frombuffer(b"\n\n", dtype=np.uint8)
    np.testing.assert_array_equal(K.find_line_starts(two, 2), [0, 1])


def test_values_equal_float_then_float32_for_short_mantissas():
    """≤ 15 significant digits, exponent within ±22: exactly numpy.float32(float(token))."""
    rng = np.random.default_rng(11)
    toks = []
    for _ in range(3000):
        digits = int(rng.integers(1, 16))
        mant = int(rng.integers(10 ** (digits - 1), 10**digits))
        point = int(rng.integers(0, digits + 1))
        s = str(mant)
        s = s[:point] + "." + s[point:] if point < digits else s
        if rng.random() < 0.3:
            s += f"e{int(rng.integers(-6, 7))}"
        toks.append(("-" if rng.random() < 0.5 else "") + s)
    data = ("\t".join(toks) + "\n").encode()
    colmap = np.arange(len(toks), dtype=np.int64)
    got = _run(data, "\t", colmap)
    ref = np.array([np.float32(float(t)) for t in toks])
    assert got["err"][0] == 0
    np.testing.assert_array_equal(got["values"][0], ref)


def test_long_mantissas_within_one_float32_ulp():
    rng = np.random.default_rng(12)
    toks = [
        f"{rng.integers(1, 10)}.{''.join(map(str, rng.integers(0, 10, 25)))}e{rng.integers(-40, 30)}"
        for _ in range(2000)
    ]
    data = ("\t".join(toks) + "\n").encode()
    got = _run(data, "\t", np.arange(len(toks), dtype=np.int64))
    ref = np.array([np.float32(float(t)) for t in toks])
    ulps = np.abs(got["values"][0].view(np.int32) - ref.view(np.int32))
    assert ulps.max() <= 1


def test_hand_computed_line():
    data = b"g1\t1.5\t-2e3\tNA\t inf \n"
    got = _run(data, "\t", np.array([-2, 0, 1, 2, 3], dtype=np.int64))
    assert got["texts"][0] == {0: "g1"}
    np.testing.assert_array_equal(got["values"][0], [1.5, -2000.0, np.nan, np.inf])
    assert got["nonfinite"][0] == 2 and got["first_nf"][0] == 3


def test_same_result_on_one_and_two_threads():
    rng = np.random.default_rng(8)
    data = _random_text(rng, 300, 20, "\t", bad_rate=0.001)
    colmap = np.arange(-2, 18, dtype=np.int64)
    colmap[1:] = np.arange(19)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = _run(data, "\t", colmap)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = _run(data, "\t", colmap)
    finally:
        numba.set_num_threads(before)
    for key in ("starts", "err", "err_field", "nonfinite", "first_nf"):
        np.testing.assert_array_equal(one[key], two[key])
    ok = one["err"] == 0
    np.testing.assert_array_equal(one["values"][ok], two["values"][ok])


def test_first_id_mismatch():
    ref_ids = ["ENSG1.1", "ENSG2.3", "ENSG2.3_PAR_Y"]
    ref = np.frombuffer("".join(ref_ids).encode(), dtype=np.uint8)
    offsets = np.array([0, 7, 14, 27], dtype=np.int64)

    def check(ids):
        text = "\t".join(ids).encode()
        buf = np.frombuffer(text, dtype=np.uint8)
        starts, ends, pos = [], [], 0
        for s in ids:
            starts.append(pos)
            ends.append(pos + len(s))
            pos += len(s) + 1
        return K.first_id_mismatch(
            buf, np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64), ref, offsets
        )

    assert check(ref_ids) == -1
    assert check(["ENSG1.1", "ENSG2.4", "ENSG2.3_PAR_Y"]) == 1
    assert check(["ENSG1.1", "ENSG2.3"]) == 2  # shorter list
    assert check([*ref_ids, "ENSG9.1"]) == 3  # longer list
    assert check(["ENSG1.1", "ENSG2.3", "ENSG2.3_PAR_X"]) == 2


def test_kernels_load_from_the_cache_in_a_new_process():
    """After a first run, a fresh process loads every kernel from cache (no compilation)."""
    code = textwrap.dedent(
        """
        import numpy as np
        from gexplain.kernels import parse as K
        buf = np.frombuffer(b"g\\t1.5\\n", dtype=np.uint8)
        st = K.find_line_starts(buf, 5)
        z = np.zeros((1, 1), np.int64)
        o = np.zeros((1, 1), np.float32)
        e = np.zeros(1, np.int8)
        i = np.zeros(1, np.int64)
        K.parse_lines(buf, st, 5, 9, np.array([-2, 0]), o, z, z.copy(), e, i, i.copy(), i.copy())
        K.first_id_mismatch(buf, i, i.copy(), buf, np.zeros(2, np.int64))
        K.count_byte(buf, 5, 10)
        for f in (K.find_line_starts, K.parse_lines, K.first_id_mismatch,
                  K.count_byte):
            print(f.__name__, sum(f.stats.cache_hits.values()), sum(f.stats.cache_misses.values()))
        """
    )
    for _ in range(2):  # the first run may have to write the cache for these signatures
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
    for line in out.stdout.split("\n")[:-1]:
        _name, hits, misses = line.split()
        assert int(hits) >= 1 and int(misses) == 0, line


def test_count_byte_matches_naive():
    rng = np.random.default_rng(4)
    buf = rng.integers(0, 20, size=10_001).astype(np.uint8)
    for n in (0, 1, 17, 10_001):
        for byte in (10, 0, 19, 255):
            assert K.count_byte(buf, n, byte) == naive_count_byte(buf, n, byte)
