"""Deletion-curve kernel: the current tiled kernel against the previous per-point kernel.

Usage::

    python benchmarks/bench_pg_kernel.py --run RUN --model mlp-seed0 [--n 400] [--repeats 3]

``RUN`` is a ``gexplain run`` folder (cohort, models, attributions), e.g. the
paper-simu1 run. The anchor is the kernel as it was before the tiled head
(commit ``0adb39c``: one scalar head evaluation per curve point, merge-sorted
local orders, Mersenne-Twister permutations), loaded from git into a temporary
module and run in the same process on the same rows, with the paper's 38
curves per sample (local PGI/PGU, 6 shared orders, 30 random orders). Both
run on ``NUMBA_NUM_THREADS`` threads (2 by default). The curves of the
non-random orders must agree to 1e-12 (the random orders come from different
generators). Prints the median wall time of each and the ratio.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ANCHOR_COMMIT = "0adb39c"


def _load_anchor(repo: Path) -> object:
    src = subprocess.run(
        ["git", "-C", str(repo), "show", f"{ANCHOR_COMMIT}:kernels/pg.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    src = src.replace("from .head import", "from gexplain.kernels.head import")
    tmp = Path(tempfile.mkdtemp()) / "pg_anchor.py"
    tmp.write_text(src)
    spec = importlib.util.spec_from_file_location("pg_anchor", tmp)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def _matrix(path: Path) -> np.ndarray:
    import pyarrow.ipc as ipc

    col = ipc.open_file(path).read_all().column(0).combine_chunks()
    return col.values.to_numpy().reshape(len(col), -1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--model", default="mlp-seed0")
    ap.add_argument("--n", type=int, default=400, help="samples (rows of the attributions)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from gexplain.kernels import pg

    from gexplain.metrics._pg import load_model

    _, a = load_model(args.run / "models" / f"{args.model}.onnx", "probability")
    attr = _matrix(args.run / "attributions" / args.model / "attributions.arrow")[: args.n]
    X = _matrix(args.run / "cohort" / "expression.arrow")[: attr.shape[0]]
    n, G = X.shape
    rng = np.random.default_rng(0)
    orders = np.stack([rng.permutation(G) for _ in range(6)]).astype(np.int64)
    oidx = np.tile(np.arange(6, dtype=np.int64), (n, 1))
    t = np.argmax(X @ a.weight + a.bias, axis=1).astype(np.int64) % a.model_zero.shape[0]
    B = a.model_zero[None, :]
    bidx = np.zeros(n, dtype=np.int64)
    seeds = np.arange(n, dtype=np.uint32)
    anchor = _load_anchor(Path(__file__).resolve().parents[1])

    def call(mod: object) -> tuple[float, np.ndarray]:
        t0 = time.perf_counter()
        out = mod.deletion_curves(  # type: ignore[attr-defined]
            X, a.weight, a.bias, a.layers, a.params, a.n_acts, B, bidx, t, a.mode, 10,
            attr, orders, oidx, seeds, 30,
        )  # fmt: skip
        return time.perf_counter() - t0, out

    results = {}
    for name, mod in (("anchor", anchor), ("gexplain", pg)):
        call(mod)  # compile / load the cache
        runs = [call(mod) for _ in range(args.repeats)]
        results[name] = (float(np.median([r[0] for r in runs])), runs[-1][1])
    diff = float(np.max(np.abs(results["anchor"][1][:, :8] - results["gexplain"][1][:, :8])))
    pgr = [float(np.mean(results[k][1][:, 8:, :1] - results[k][1][:, 8:, 1:])) for k in results]
    ta, tg = results["anchor"][0], results["gexplain"][0]
    print(
        "RESULT "
        + json.dumps(
            {
                "samples": n,
                "genes": G,
                "curves_per_sample": 38,
                "anchor_s": round(ta, 3),
                "gexplain_s": round(tg, 3),
                "speedup": round(ta / tg, 2),
                "ms_per_sample": round(1e3 * tg / n, 3),
                "max_abs_diff_non_random_curves": diff,
                "mean_random_drop_anchor_vs_gexplain": pgr,
            }
        )
    )
    if diff > 1e-12:
        sys.exit("curves differ")


if __name__ == "__main__":
    main()
