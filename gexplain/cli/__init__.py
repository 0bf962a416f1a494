"""The ``gexplain`` command line.

Subcommands live in their own modules and are imported only when invoked, so
``gexplain --help`` and light commands start fast and never import torch.
Errors about user input (:class:`gexplain.GexplainError`) become a one-line
message on stderr and exit code 1; usage errors exit with 2 (click).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from .._version import __version__
from ..errors import GexplainError

# name -> "module:attribute"; the help line is taken from the command itself.
COMMANDS: dict[str, str] = {
    "evaluate": "gexplain.cli.evaluate:evaluate",
    "explain": "gexplain.cli.explain:explain",
    "info": "gexplain.cli.info:info",
    "preprocess": "gexplain.cli.preprocess:preprocess",
    "simulate": "gexplain.cli.simulate:simulate",
    "import": "gexplain.cli.io:import_group",
    "export": "gexplain.cli.io:export_group",
    "train": "gexplain.cli.train:train",
    "predict": "gexplain.cli.train:predict",
    "run": "gexplain.cli.run:run",
    "demo": "gexplain.cli.run:demo",
    "report": "gexplain.cli.run:report",
}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when it is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GexplainError as exc:
            raise click.ClickException(str(exc)) from exc
        except KeyboardInterrupt:
            click.echo(
                "interrupted: finished chunks are kept; rerun the command to resume", err=True
            )
            sys.exit(130)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "-V", "--version", prog_name="gexplain")
def main() -> None:
    """gexplain: Integrated Gradients for gene-expression classifiers, and whether to trust them.

    \b
    A study in five commands:
      gexplain simulate --preset demo --seed 0 --out cohort
      gexplain train cohort --model mlp --seeds 0-2 --out models
      gexplain explain cohort models/mlp-seed0.onnx --out attr
      gexplain evaluate cohort --models models --attributions attr --out metrics
      gexplain report run/ --out report.html
    Or all at once: gexplain demo
    """
