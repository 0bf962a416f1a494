"""Options and helpers shared by the subcommands."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def quiet_option(f: F) -> F:
    """``-q/--quiet``: no progress bars and no chatter (errors still go to stderr)."""
    return click.option(
        "-q", "--quiet", is_flag=True, default=False, help="No progress bars or messages."
    )(f)


def overwrite_option(f: F) -> F:
    """``--overwrite``: replace an existing output."""
    return click.option(
        "--overwrite", is_flag=True, default=False, help="Replace the output if it exists."
    )(f)


def say(message: str, quiet: bool) -> None:
    """Print a message to stderr unless quiet."""
    if not quiet:
        click.echo(message, err=True)


def parse_int_list(text: str) -> list[int]:
    """Parse ``"0-9"``, ``"1,3,5"`` or ``"0-2,7"`` into a list of ints."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            try:
                a, b = int(lo), int(hi)
            except ValueError:
                raise click.BadParameter(f"not a range of integers: {part!r}") from None
            if b < a:
                raise click.BadParameter(f"empty range {part!r}")
            out.extend(range(a, b + 1))
        else:
            try:
                out.append(int(part))
            except ValueError:
                raise click.BadParameter(f"not an integer: {part!r}") from None
    if not out:
        raise click.BadParameter("no values given")
    return out


def echo_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout (for pipelines)."""
    click.echo(json.dumps(obj, indent=2, default=str))
