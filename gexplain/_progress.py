"""Progress bars: shown on a terminal, silent in pipelines or with ``quiet=True``."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def show_progress(quiet: bool | None) -> bool:
    """Whether to draw progress: ``quiet`` wins, else only when stderr is a terminal."""
    if quiet is None:
        return sys.stderr.isatty()
    return not quiet


def progress(
    iterable: Iterable[T] | None = None,
    *,
    total: int | None = None,
    desc: str | None = None,
    quiet: bool | None = None,
    unit: str = "it",
) -> tqdm:
    """A tqdm bar over ``iterable`` (or a manual bar with ``total``), hidden when quiet.

    Parameters
    ----------
    iterable
        What to iterate; ``None`` for a manual bar updated with ``.update(n)``.
    total
        Number of steps (defaults to ``len(iterable)``).
    desc
        Label shown before the bar.
    quiet
        ``True`` hides the bar, ``False`` forces it, ``None`` shows it on a terminal only.
    unit
        Unit name shown in the rate.
    """
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        disable=not show_progress(quiet),
        unit=unit,
        dynamic_ncols=True,
        leave=False,
        file=sys.stderr,
    )


def iterate(iterable: Iterable[T], **kwargs: object) -> Iterator[T]:
    """Iterate with a progress bar (see :func:`progress`)."""
    yield from progress(iterable, **kwargs)  # type: ignore[arg-type]
