"""Benchmark ``gexplain import xena`` against ``pandas.read_csv(...).T``; time ``Cohort.load``.

Generates a UCSC Xena ``HiSeqV2``-style matrix (genes × samples, values like
``7.4312`` with 4 decimals and ~10 % zeros, TCGA-like sample ids) into
``benchmarks/out/`` (gitignored), then runs, each in its own process so that
peak memory is measured per command (``RUSAGE_CHILDREN`` of a wrapper):

* ``gexplain import xena MATRIX --out COHORT --quiet`` (end to end, wall clock,
  including interpreter start-up),
* ``pandas.read_csv(MATRIX, sep="\\t", index_col=0).T`` (timed inside its
  process, so pandas' import and start-up are *not* counted),

and prints medians, the speed ratio and peak RSS relative to the float32
matrix. Finally it times ``Cohort.load`` of the stored cohort and checks that
the loaded matrix is a memory map (no copy) equal to pandas' values.

With ``--gdc N`` it also writes N GDC STAR-Counts files (60,660 genes each, a
folder plus sample sheet) and times ``gexplain import gdc`` on them.

Usage::

    python benchmarks/bench_import.py            # 20,000 genes × 11,000 samples
    python benchmarks/bench_import.py --quick    # 20,000 genes × 2,000 samples
    python benchmarks/bench_import.py --quick --gdc 500
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"

_WRAP = """
import json, resource, subprocess, sys, time
t = time.perf_counter()
r = subprocess.run(sys.argv[1:])
wall = time.perf_counter() - t
u = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": r.returncode, "wall": wall, "maxrss_kb": u.ru_maxrss,
                  "cpu": u.ru_utime + u.ru_stime}))
"""

_PANDAS = """
import sys, time
import pandas as pd
t = time.perf_counter()
df = pd.read_csv(sys.argv[1], sep="\\t", index_col=0).T
print(time.perf_counter() - t, df.shape[0], df.shape[1])
"""


_OURS_INNER = """
import sys, time
from gexplain.io import fixture_path, read_xena
read_xena(fixture_path("xena/HiSeqV2.tsv"))  # load the cached kernels first
t = time.perf_counter()
c = read_xena(sys.argv[1], out=sys.argv[2], overwrite=True)
print(time.perf_counter() - t, c.n_samples, c.n_genes)
"""


# ---------------------------------------------------------------------------- data
def _token_table(scale: int = 10_000, top: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Byte table of the tokens ``"0"`` and ``f"{k / scale:.4f}"`` for k < top * scale."""
    n = top * scale
    tab = np.zeros((n, 8), dtype=np.uint8)
    lens = np.zeros(n, dtype=np.int64)
    for k in range(n):
        t = b"0" if k == 0 else f"{k / scale:.4f}".encode()
        tab[k, : len(t)] = np.frombuffer(t, dtype=np.uint8)
        lens[k] = len(t)
    return tab, lens


def _lines(names: list[str], K: np.ndarray, tab: np.ndarray, lens: np.ndarray) -> bytes:
    """``name\\tv\\tv...\\n`` for each row of token indices ``K`` (vectorised)."""
    tok_len = lens[K] + 1  # token plus the separator before it
    name_b = [s.encode() for s in names]
    name_len = np.array([len(b) for b in name_b])
    row_len = name_len + tok_len.sum(axis=1) + 1
    row_start = np.concatenate([[0], np.cumsum(row_len)[:-1]])
    out = np.empty(int(row_len.sum()), dtype=np.uint8)
    for i, b in enumerate(name_b):
        out[row_start[i] : row_start[i] + len(b)] = np.frombuffer(b, dtype=np.uint8)
    sep = row_start[:, None] + name_len[:, None] + np.cumsum(tok_len, axis=1) - tok_len
    out[sep] = 9
    out[row_start + row_len - 1] = 10
    first = sep + 1
    L = lens[K]
    for p in range(tab.shape[1]):
        m = L > p
        if not m.any():
            break
        out[first[m] + p] = tab[K[m], p]
    return out.tobytes()


def make_matrix(path: Path, n_genes: int, n_samples: int, seed: int = 0) -> None:
    """Write the Xena-style matrix (skipped when it exists with the right size)."""
    if path.exists():
        return
    rng = np.random.default_rng(seed)
    tab, lens = _token_table()
    types = np.where(rng.random(n_samples) < 0.9, "01", "11")
    samples = [f"TCGA-{i % 97:02d}-{i:04X}-{t}" for i, t in zip(range(n_samples), types)]
    tmp = path.with_suffix(".part")
    with open(tmp, "wb") as f:
        f.write(("sample\t" + "\t".join(samples) + "\n").encode())
        step = max(1, 2_000_000 // n_samples)
        for g0 in range(0, n_genes, step):
            g1 = min(g0 + step, n_genes)
            K = rng.integers(1, len(lens), size=(g1 - g0, n_samples))
            K[rng.random(K.shape) < 0.1] = 0
            f.write(_lines([f"GENE{g}" for g in range(g0, g1)], K, tab, lens))
    os.replace(tmp, path)


def make_gdc(folder: Path, n_files: int, n_genes: int = 60_660, seed: int = 1) -> Path:
    """N STAR-Counts files under ``folder/FILE_ID/`` and a sample sheet; returns the sheet."""
    sheet = folder / "gdc_sample_sheet.tsv"
    if sheet.exists():
        return sheet
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ids = [f"ENSG{j:011d}.{j % 20 + 1}" for j in range(n_genes)]
    head = (
        "# gene-model: GENCODE v36\n"
        + "\t".join(
            [
                "gene_id",
                "gene_name",
                "gene_type",
                "unstranded",
                "stranded_first",
                "stranded_second",
                "tpm_unstranded",
                "fpkm_unstranded",
                "fpkm_uq_unstranded",
            ]
        )
        + "\n"
        + "".join(
            f"{q}\t\t\t{k}\t{k}\t{k}\t\t\t\n"
            for k, q in enumerate(["N_unmapped", "N_multimapping", "N_noFeature", "N_ambiguous"])
        )
    )
    rows = [
        "File ID\tFile Name\tData Category\tData Type\tProject ID\tCase ID\tSample ID\tSample Type"
    ]
    for i in range(n_files):
        counts = rng.negative_binomial(2, 0.01, size=n_genes)
        body = "".join(
            f"{g}\tG{j}\tprotein_coding\t{c}\t{c // 2}\t{c - c // 2}\t1.0\t1.0\t1.0\n"
            for j, (g, c) in enumerate(zip(ids, counts))
        )
        fid = f"{i:08x}-0000-4000-8000-000000000000"
        name = f"{i:08x}.rna_seq.augmented_star_gene_counts.tsv"
        (folder / fid).mkdir(exist_ok=True)
        (folder / fid / name).write_text(head + body)
        rows.append(
            f"{fid}\t{name}\tTranscriptome Profiling\tGene Expression Quantification\t"
            f"TCGA-P{i % 5}\tTCGA-AA-{i:04X}\tTCGA-AA-{i:04X}-01A\tPrimary Tumor"
        )
    sheet.write_text("\n".join(rows) + "\n")
    return sheet


# ---------------------------------------------------------------------------- runs
def _measure(cmd: list[str]) -> dict:
    r = subprocess.run(
        [sys.executable, "-c", _WRAP, *cmd], capture_output=True, text=True, check=True
    )
    lines = r.stdout.strip().splitlines()
    res = json.loads(lines[-1])
    res["stdout"] = lines[:-1]
    if res["rc"] != 0:
        raise RuntimeError(f"{cmd} failed: {r.stderr}")
    return res


def _warm(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(64 * 2**20):
            pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2,000 samples instead of 11,000")
    ap.add_argument("--genes", type=int, default=20_000)
    ap.add_argument("--samples", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None, help="runs per tool (median)")
    ap.add_argument("--no-pandas", action="store_true", help="skip the pandas anchor")
    ap.add_argument("--gdc", type=int, default=0, metavar="N", help="also time N GDC files")
    args = ap.parse_args()
    n_samples = args.samples or (2_000 if args.quick else 11_000)
    repeats = args.repeats or (3 if args.quick else 1)
    OUT.mkdir(exist_ok=True)
    matrix = OUT / f"xena_{args.genes}x{n_samples}.tsv"
    t = time.perf_counter()
    make_matrix(matrix, args.genes, n_samples)
    size_mb = matrix.stat().st_size / 1e6
    f32_mb = args.genes * n_samples * 4 / 1e6
    print(
        f"matrix {matrix.name}: {args.genes} genes × {n_samples} samples, {size_mb:.0f} MB "
        f"text, float32 {f32_mb:.0f} MB (ready in {time.perf_counter() - t:.1f} s)"
    )
    _warm(matrix)
    cohort = OUT / f"cohort_{args.genes}x{n_samples}"
    script = Path(sys.executable).with_name("gexplain")
    gexplain = [str(script)] if script.exists() else ["gexplain"]
    ours, theirs = [], []
    for _ in range(repeats):
        ours.append(
            _measure(
                [
                    *gexplain,
                    "import",
                    "xena",
                    str(matrix),
                    "--out",
                    str(cohort),
                    "--overwrite",
                    "--quiet",
                ]
            )
        )
        inner = _measure([sys.executable, "-c", _OURS_INNER, str(matrix), str(cohort)])
        ours[-1]["inner"] = float(inner["stdout"][-1].split()[0])
        if not args.no_pandas:
            res = _measure([sys.executable, "-c", _PANDAS, str(matrix)])
            res["inner"] = float(res["stdout"][-1].split()[0])
            theirs.append(res)
    t_ours = statistics.median(r["wall"] for r in ours)
    t_inner = statistics.median(r["inner"] for r in ours)
    cpu_ours = statistics.median(r["cpu"] for r in ours)
    rss_ours = max(r["maxrss_kb"] for r in ours) / 1e3
    print(
        f"gexplain import xena   {t_ours:8.2f} s   peak RSS {rss_ours:7.0f} MB "
        f"({rss_ours / f32_mb:.2f}× the float32 matrix), CPU {cpu_ours:.1f} s"
    )
    print(f"  read_xena in-process {t_inner:8.2f} s   (start-up and imports excluded, like pandas)")
    result = {
        "genes": args.genes,
        "samples": n_samples,
        "text_mb": round(size_mb),
        "float32_mb": round(f32_mb),
        "repeats": repeats,
        "gexplain_s": round(t_ours, 2),
        "gexplain_cpu_s": round(cpu_ours, 1),
        "read_xena_inner_s": round(t_inner, 2),
        "gexplain_peak_rss_mb": round(rss_ours),
        "gexplain_rss_over_matrix": round(rss_ours / f32_mb, 2),
    }
    if theirs:
        t_pd = statistics.median(r["inner"] for r in theirs)
        cpu_pd = statistics.median(r["cpu"] for r in theirs)
        rss_pd = max(r["maxrss_kb"] for r in theirs) / 1e3
        print(
            f"pandas.read_csv(...).T {t_pd:8.2f} s   peak RSS {rss_pd:7.0f} MB "
            f"({rss_pd / f32_mb:.2f}× the float32 matrix), CPU {cpu_pd:.1f} s (whole process)"
        )
        print(f"speed-up               {t_pd / t_ours:8.1f}×  (goal ≥ 5×; CLI wall vs pandas)")
        print(f"  in-process speed-up  {t_pd / t_inner:8.1f}×")
        result.update(
            pandas_s=round(t_pd, 2),
            pandas_cpu_s=round(cpu_pd, 1),
            pandas_peak_rss_mb=round(rss_pd),
            speedup=round(t_pd / t_ours, 1),
            speedup_inner=round(t_pd / t_inner, 1),
        )
    # Cohort.load: milliseconds, no copy
    from gexplain.cohort import Cohort

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(21):
        t = time.perf_counter()
        c = Cohort.load(cohort)
        times.append(time.perf_counter() - t)
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1e3
    x = c.expression
    mapped = not x.flags.owndata and not x.flags.writeable
    t_load = statistics.median(times) * 1e3
    print(
        f"Cohort.load            {t_load:8.2f} ms  (median of 21; memory-mapped: {mapped}, "
        f"peak RSS grew {grown:.0f} MB)"
    )
    result.update(load_ms=round(t_load, 2), load_is_mmap=mapped)
    # correctness: the first 40 genes against pandas
    import pandas as pd

    ref = pd.read_csv(matrix, sep="\t", index_col=0, nrows=40).T
    assert list(ref.index) == c.sample_ids[: len(ref.index)]
    np.testing.assert_array_equal(x[:, :40], ref.to_numpy(dtype=np.float32))
    print("values equal pandas' (first 40 genes, all samples)")
    if args.gdc:
        folder = OUT / f"gdc_{args.gdc}"
        t = time.perf_counter()
        sheet = make_gdc(folder, args.gdc)
        print(f"{args.gdc} GDC STAR files ready in {time.perf_counter() - t:.1f} s")
        runs = [
            _measure(
                [
                    *gexplain,
                    "import",
                    "gdc",
                    str(folder),
                    "--sample-sheet",
                    str(sheet),
                    "--out",
                    str(OUT / "cohort_gdc"),
                    "--overwrite",
                    "--quiet",
                ]
            )
            for _ in range(repeats)
        ]
        t_gdc = statistics.median(r["wall"] for r in runs)
        rss_gdc = max(r["maxrss_kb"] for r in runs) / 1e3
        print(
            f"gexplain import gdc    {t_gdc:8.2f} s   ({t_gdc / args.gdc * 1e3:.1f} ms per file, "
            f"peak RSS {rss_gdc:.0f} MB)"
        )
        result.update(gdc_files=args.gdc, gdc_s=round(t_gdc, 2), gdc_peak_rss_mb=round(rss_gdc))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
