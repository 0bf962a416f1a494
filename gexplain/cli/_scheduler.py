"""``--scheduler`` and ``--retries``: run a chunked command on a Dask cluster."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def scheduler_option(f: F) -> F:
    """``--scheduler ADDRESS|local:N`` (see :mod:`gexplain.distributed`)."""
    return click.option(
        "--scheduler",
        default=None,
        metavar="ADDRESS|local:N",
        help="Run the chunks on a Dask cluster (needs the dask extra): local:N starts a "
        "LocalCluster of N single-threaded workers for this run; tcp://HOST:PORT or a "
        "scheduler .json file joins a running one (e.g. dask-jobqueue on SLURM). The output "
        "folders must be on storage every worker sees. Same bytes as a local run.",
    )(f)


def retries_option(f: F) -> F:
    """``--retries N``: reruns of a chunk that raised on a worker."""
    return click.option(
        "--retries",
        type=click.IntRange(min=0),
        default=2,
        show_default=True,
        help="With --scheduler: reruns of a chunk that failed (chunks lost with a dead worker "
        "are rerun by Dask regardless).",
    )(f)
