"""Worker process for training several models at once: ``python -m gexplain.models._worker DIR PID``.

Plain subprocesses (not :mod:`multiprocessing`) so that the caller's script
needs no ``if __name__ == "__main__"`` guard and no Polars/OpenMP thread pool is
ever forked. The parent writes the shared inputs as ``.npy`` files (each worker
memory-maps them: one copy in the page cache) and one ``jobs/NNN.json`` per
model. Each worker claims jobs with an exclusive lock file, appends one JSON
line per epoch to ``NNN.progress`` and writes ``NNN.npz`` (atomically) when done.
A worker whose parent (``PID``) has gone stops at the next epoch.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np


def _claim(job: Path) -> bool:
    try:
        fd = os.open(job.with_suffix(".claim"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def run_job(job: Path, cache: dict[str, Any], parent: int | None = None) -> None:
    """Train the model described by ``job`` and write its result beside it."""
    from ._torch import fit_module

    spec = json.loads(job.read_text())
    arrays = {}
    for key, path in spec["arrays"].items():
        if path not in cache:
            cache[path] = np.load(
                path, mmap_mode="c"
            )  # writable view, never written: torch-friendly
        arrays[key] = cache[path]
    y = np.load(spec["y"])
    progress = job.with_suffix(".progress")
    with progress.open("a") as log:

        def report(row: dict[str, float]) -> None:
            if parent is not None and os.getppid() != parent:
                raise SystemExit(3)  # the parent died: do not train on as an orphan
            log.write(json.dumps(row) + "\n")
            log.flush()

        y_test = np.asarray(arrays["y_test"])
        result = fit_module(
            spec["base"],
            arrays["x_train"],
            y,
            spec["n_classes"],
            seed=spec["seed"],
            x_test=arrays["x_test"] if len(y_test) else None,
            y_test=y_test if len(y_test) else None,
            on_epoch=report,
            **{k: tuple(v) if isinstance(v, list) else v for k, v in spec["kwargs"].items()},
        )
    payload = {f"param:{k}": v for k, v in result.params.items()}
    payload["pred_train"] = result.pred_train
    if result.pred_test is not None:
        payload["pred_test"] = result.pred_test
    payload["history"] = np.frombuffer(json.dumps(result.history).encode(), dtype=np.uint8)
    tmp = job.with_suffix(".npz.tmp")
    with tmp.open("wb") as fh:
        np.savez(fh, **payload)
    os.replace(tmp, job.with_suffix(".npz"))


def main(argv: list[str]) -> int:
    folder = Path(argv[0])
    parent = int(argv[1]) if len(argv) > 1 else None
    cache: dict[str, Any] = {}
    for job in sorted((folder / "jobs").glob("*.json")):
        if parent is not None and os.getppid() != parent:
            return 3
        if _claim(job):
            run_job(job, cache, parent)
    return 0


if __name__ == "__main__":  # pragma: no cover - run as a subprocess
    sys.exit(main(sys.argv[1:]))
