"""Exceptions raised by gexplain.

Every error caused by a user's input derives from :class:`GexplainError`; the
CLI turns these into a one-line message and a non-zero exit code. Errors about
a file carry the path and, where known, the line and column (1-based).
"""

from __future__ import annotations

import os


class GexplainError(Exception):
    """Base class of the errors gexplain raises about its inputs."""


class InputError(GexplainError, ValueError):
    """A problem in an input file or value, located as precisely as possible.

    Parameters
    ----------
    message
        What is wrong, in words a user can act on.
    path
        The file (or folder) at fault.
    line, column
        1-based location in a text file; ``column`` may also be a column name.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | os.PathLike[str] | None = None,
        line: int | None = None,
        column: int | str | None = None,
    ) -> None:
        self.message = message
        self.path = None if path is None else os.fspath(path)
        self.line = line
        self.column = column
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.path is not None:
            where.append(self.path)
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.column is not None:
            col = self.column
            where.append(f"column {col!r}" if isinstance(col, str) else f"column {col}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class ModelError(GexplainError, ValueError):
    """An ONNX model gexplain cannot use (unsupported op, wrong metadata, ...)."""


class AlignmentError(GexplainError, ValueError):
    """Cohort and model (or two tables) do not describe the same genes/samples."""
