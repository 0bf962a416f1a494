"""Benchmark the LDA simulator: full SIMU1 (9900 × 15000) against a straightforward numpy version.

Measures, in one run:

* ``gexplain simulate --preset simu1 --seed 0 --out DIR -q`` end to end (a
  fresh process: imports, model, sampling, ``expression.arrow`` written and
  flushed, tables, truth): once *cold* (empty Numba cache: compiles the
  kernels) and several times *warm* (cached kernels);
* the sampling alone, in memory (``Simulation.fill`` over all samples);
* the numpy anchor: the same model written plainly — a loop over samples
  drawing ``θ ~ Generator.dirichlet(α_c)``, ``q = θ·β`` (sparse product) and
  ``Generator.multinomial(R, q)`` — in memory, in the same process.

The paper's own code (a Python loop over samples × pathways) takes about 23
minutes for SIMU1 on this machine; it is quoted, not rerun.

Usage::

    python benchmarks/bench_simulate.py            # full SIMU1 (numpy anchor ~30 s)
    python benchmarks/bench_simulate.py --quick    # 990 samples, fewer repeats
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PAPER_SECONDS = 23 * 60
GEXPLAIN = shutil.which("gexplain") or str(Path(sys.executable).with_name("gexplain"))


def numpy_anchor(sim, n: int) -> tuple[float, np.ndarray]:
    """Straightforward numpy sampler of the same model for the first ``n`` samples."""
    m = sim.model
    p = sim.params
    rng = np.random.default_rng(0)
    entry_path = m.pathway_of_entry
    out = np.empty((n, p.n_genes), dtype=np.float32)
    t0 = time.perf_counter()
    for i in range(n):
        theta = rng.dirichlet(m.alpha[sim.classes[i]])
        q = np.bincount(
            m.path_genes, weights=theta[entry_path] * m.path_weights, minlength=p.n_genes
        )
        q /= q.sum()
        reads = int(sim.library_size[i])
        out[i] = rng.multinomial(reads, q) / (reads / 1e6)
    return time.perf_counter() - t0, out


def kernel_in_memory(sim, n: int, repeats: int) -> list[float]:
    out = np.empty((n, sim.params.n_genes), dtype=np.float32)
    sim.fill(0, out[: min(n, 4)])  # load the kernels
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sim.fill(0, out)
        times.append(time.perf_counter() - t0)
    return times


def cli_run(args: list[str], env: dict[str, str], out: Path) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one ``gexplain simulate`` process."""
    shutil.rmtree(out, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(
        [GEXPLAIN, "simulate", *args, "--out", str(out), "-q"],
        check=True,
        env=env,
    )
    dt = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    shutil.rmtree(out, ignore_errors=True)
    return dt, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="990 samples, fewer repeats")
    ap.add_argument("--preset", default="simu1", choices=["simu1", "simu2"])
    ap.add_argument("--repeats", type=int, default=None)
    opts = ap.parse_args()
    import numba

    from gexplain.simulate import Simulation, get_params

    overrides = {"samples_per_class": 30} if opts.quick else {}
    params = get_params(opts.preset, **overrides)
    repeats = opts.repeats or (3 if opts.quick else 5)
    sim = Simulation(params, seed=0)
    n = sim.n_samples
    print(
        f"{opts.preset}: {n} samples × {params.n_genes} genes, {params.n_pathways} pathways; "
        f"{numba.get_num_threads()} threads, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    cli_args = ["--preset", opts.preset, "--seed", "0"]
    for k, v in overrides.items():
        cli_args += [f"--{k.replace('_', '-')}", str(v)]
    work = Path(tempfile.mkdtemp(prefix="bench_simulate_"))
    try:
        env = dict(os.environ)
        cold_env = {**env, "NUMBA_CACHE_DIR": str(work / "numba-cache")}
        cold, cold_cpu = cli_run(cli_args, cold_env, work / "cohort")
        cli_run(cli_args, env, work / "cohort")  # make sure the normal cache is warm
        runs = [cli_run(cli_args, env, work / "cohort") for _ in range(repeats)]
        warm = [w for w, _ in runs]
        warm_cpu = [c for _, c in runs]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    c0 = time.process_time()
    kernel = kernel_in_memory(sim, n, repeats)
    k_cpu = (time.process_time() - c0) / (repeats + 1e-9)
    c0 = time.process_time()
    t_np, _ = numpy_anchor(sim, n)
    np_cpu = time.process_time() - c0
    k_med = statistics.median(kernel)
    w_med = statistics.median(warm)
    runs_txt = ", ".join(f"{t:.2f}" for t in warm)
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (other processes share the cores)")
    print(f"CLI cold (compiles kernels)   {cold:8.2f} s   (cpu {cold_cpu:.2f} s)")
    print(f"CLI warm, median of {repeats}       {w_med:8.2f} s   (runs: {runs_txt})")
    print(f"CLI warm, best run            {min(warm):8.2f} s   (the least disturbed by other load)")
    print(f"  its cpu time (user + sys)   {statistics.median(warm_cpu):8.2f} s")
    print(f"sampling in memory, best      {min(kernel):8.2f} s")
    print(
        f"sampling in memory, median    {k_med:8.2f} s   ({k_med / n * 1e6:.0f} us/sample; cpu {k_cpu:.2f} s)"
    )
    print(
        f"numpy anchor, in memory       {t_np:8.2f} s   ({t_np / n * 1e6:.0f} us/sample; cpu {np_cpu:.2f} s)"
    )
    print(
        f"ratio numpy / kernel (memory) {t_np / k_med:8.1f} x   (cpu time: {np_cpu / k_cpu:.1f} x)"
    )
    print(f"ratio numpy / CLI warm        {t_np / w_med:8.1f} x")
    if not opts.quick and opts.preset == "simu1":
        print(f"ratio paper code (~23 min) / CLI warm {PAPER_SECONDS / w_med:6.0f} x")


if __name__ == "__main__":
    main()
