"""The run manifest: versions, seeds, resolved parameters, input hashes, stage status and timings."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from .._atomic import write_json
from .._version import __version__

MANIFEST_FILE = "manifest.json"

#: Distributions whose versions are recorded (read from their metadata, never imported).
DEPENDENCIES: tuple[str, ...] = (
    "numpy",
    "polars",
    "pyarrow",
    "numba",
    "llvmlite",
    "onnx",
    "onnxruntime",
    "scikit-learn",
    "scipy",
    "torch",
    "matplotlib",
    "dask",
)


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def digest(obj: Any) -> str:
    """SHA-256 of the canonical JSON of ``obj`` (keys sorted)."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def versions() -> dict[str, Any]:
    """gexplain, Python, platform and installed dependency versions (``None``: not installed)."""
    deps: dict[str, str | None] = {}
    for name in DEPENDENCIES:
        try:
            deps[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            deps[name] = None
    return {
        "gexplain": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "dependencies": deps,
    }


def file_sha256(path: Path, cache: dict[str, Any] | None = None) -> str:
    """SHA-256 of a file's bytes, reusing ``cache[path]`` when size and mtime are unchanged."""
    st = path.stat()
    key = str(path)
    if cache is not None:
        hit = cache.get(key)
        if hit and hit.get("size") == st.st_size and hit.get("mtime_ns") == st.st_mtime_ns:
            return str(hit["sha256"])
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(8 * 2**20), b""):
            h.update(block)
    value = h.hexdigest()
    if cache is not None:
        cache[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": value}
    return value


def tree_sha256(path: Path, cache: dict[str, Any] | None = None) -> str:
    """SHA-256 of a file, or of a folder's files (relative names and contents), in name order."""
    if path.is_file():
        return file_sha256(path, cache)
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(path)).encode() + b"\0")
        h.update(file_sha256(p, cache).encode())
    return h.hexdigest()


def listing(paths: Iterable[Path], root: Path) -> list[list[Any]]:
    """``[relative name, size]`` of the files under ``paths`` (a cheap output fingerprint)."""
    out: list[list[Any]] = []
    for path in paths:
        files = [path] if path.is_file() else sorted(q for q in path.rglob("*") if q.is_file())
        for f in files:
            if any(part.startswith(".") for part in f.relative_to(root).parts):
                continue
            out.append([str(f.relative_to(root)), f.stat().st_size])
    return out


def read_manifest(run_dir: Path) -> dict[str, Any] | None:
    """The manifest of a run folder, or ``None`` when there is none (or it is unreadable)."""
    path = Path(run_dir) / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest atomically."""
    manifest["updated"] = now()
    write_json(Path(run_dir) / MANIFEST_FILE, manifest)
