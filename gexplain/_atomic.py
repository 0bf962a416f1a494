"""Atomic outputs: write into a hidden temporary path, rename when complete.

An interrupted command never leaves a half-written cohort, model or table at
the requested path. Long chunked jobs keep their finished chunks in a stable
``.NAME.partial`` folder next to the output so that a rerun resumes them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import GexplainError


def _tmp_sibling(path: Path, tag: str) -> Path:
    return path.with_name(f".{path.name}.{tag}-{uuid.uuid4().hex[:8]}")


def _check_target(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise GexplainError(f"{path} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)


def commit_dir(tmp: Path, path: Path, overwrite: bool = False) -> None:
    """Move the finished folder ``tmp`` to ``path`` (replacing it if ``overwrite``)."""
    _check_target(path, overwrite)
    if path.exists():
        trash = _tmp_sibling(path, "old")
        os.replace(path, trash)
        os.replace(tmp, path)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, path)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder that becomes ``path`` when the block succeeds.

    On any exception the temporary folder is removed and ``path`` is untouched.
    """
    path = Path(path)
    _check_target(path, overwrite)
    tmp = _tmp_sibling(path, "tmp")
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    commit_dir(tmp, path, overwrite=overwrite)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str], overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary file path that is renamed to ``path`` when the block succeeds."""
    path = Path(path)
    _check_target(path, overwrite)
    tmp = _tmp_sibling(path, "tmp")
    try:
        yield tmp
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    os.replace(tmp, path)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


class PartialDir:
    """A resumable work folder ``.NAME.partial`` beside the final output ``NAME``.

    Chunked commands write each finished chunk into this folder (atomically,
    one file per chunk) and record the run's parameters in ``params.json``. A
    rerun with the same parameters finds the finished chunks and skips them; a
    rerun with different parameters starts afresh. :meth:`commit` moves the
    assembled result to the final path.

    Parameters
    ----------
    path
        The final output folder.
    params
        JSON-serialisable description of everything the chunks depend on.
    overwrite
        Allow replacing an existing final output.
    """

    def __init__(
        self, path: str | os.PathLike[str], params: dict[str, Any], overwrite: bool = False
    ) -> None:
        self.path = Path(path)
        _check_target(self.path, overwrite)
        self.overwrite = overwrite
        self.dir = self.path.with_name(f".{self.path.name}.partial")
        self.params = json.loads(json.dumps(params, default=str))
        pfile = self.dir / "params.json"
        if self.dir.exists():
            try:
                same = json.loads(pfile.read_text()) == self.params
            except (OSError, ValueError):
                same = False
            if not same:
                shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        if not pfile.exists():
            write_json(pfile, self.params)

    def chunk_path(self, name: str) -> Path:
        """Path of a chunk file inside the partial folder."""
        return self.dir / name

    def is_done(self, name: str) -> bool:
        """Whether chunk ``name`` was finished by this or an earlier run."""
        return (self.dir / name).exists()

    def done(self) -> list[str]:
        """Names of the finished chunks."""
        return sorted(p.name for p in self.dir.iterdir() if p.name != "params.json")

    def commit(self, final_tmp: Path) -> Path:
        """Move the assembled output folder ``final_tmp`` into place and drop the partial folder."""
        commit_dir(final_tmp, self.path, overwrite=self.overwrite)
        shutil.rmtree(self.dir, ignore_errors=True)
        return self.path

    def new_output_dir(self) -> Path:
        """A fresh temporary folder, beside the output, to assemble the result in."""
        tmp = _tmp_sibling(self.path, "tmp")
        tmp.mkdir()
        return tmp
