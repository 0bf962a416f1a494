"""``gexplain evaluate``: score attributions (PG, OpenXAI, FA, stability, keep/remove, sanity)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ._common import overwrite_option, quiet_option, say
from ._scheduler import scheduler_option

_FAMILIES = "pg,openxai,fa,stability,keep-remove,sanity"


def _ks(value: str) -> list[int | float]:
    out: list[int | float] = []
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.append(float(part) if any(c in part for c in ".eE") else int(part))
        except ValueError:
            raise click.BadParameter(f"not a count or a fraction: {part!r}") from None
    if not out:
        raise click.BadParameter("no k given")
    return out


@click.command()
@click.argument("cohort", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--models",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="Folder of .onnx models (gexplain train) or one .onnx file.",
)
@click.option(
    "--attributions",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder of attributions folders named by model stem (ATTR/mlp-seed0/), or one "
    "attributions folder for a single model.",
)
@click.option(
    "--metrics",
    default=_FAMILIES,
    show_default=True,
    help="Comma-separated metric families (or 'all').",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Metrics folder to write (metrics.parquet, curves.parquet, stability.parquet, "
    "evaluate.json).",
)
@click.option("--split", default="test", show_default=True, help="Split whose samples are scored.")
@click.option(
    "--all-samples",
    is_flag=True,
    help="Score every attribution row (any split, correct or not) instead of the correctly "
    "classified --split samples explained for their label.",
)
@click.option("--block", type=int, default=10, show_default=True, help="PG: genes per step g.")
@click.option(
    "--random-draws", type=int, default=30, show_default=True, help="PG: random orders (PGR)."
)
@click.option(
    "--k",
    "k",
    default="0.001,0.01,0.1",
    show_default=True,
    help="OpenXAI top-k: counts and/or fractions of the genes, comma-separated (AUC over "
    "the grid when it has two or more).",
)
@click.option(
    "--n-perturb", type=int, default=100, show_default=True, help="OpenXAI: perturbations."
)
@click.option("--std", type=float, default=0.1, show_default=True, help="OpenXAI: noise sd.")
@click.option(
    "--keep-remove-draws",
    type=int,
    default=100,
    show_default=True,
    help="Keep/remove: random gene sets per k.",
)
@click.option(
    "--output",
    type=click.Choice(["probability", "logit", "log_probability"]),
    default="probability",
    show_default=True,
    help="Model output of PG/OpenXAI (softmax probability is the paper's).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every control.")
@click.option(
    "--chunk-size",
    type=int,
    default=None,
    help="Samples per kernel call (default: bounded memory, automatic).",
)
@click.option(
    "--label-control",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Model trained on permuted labels (gexplain train --permute-labels) for the "
    "label-randomisation check.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@scheduler_option
@quiet_option
@overwrite_option
def evaluate(
    cohort: Path,
    models: Path,
    attributions: Path,
    metrics: str,
    out: Path,
    split: str,
    all_samples: bool,
    block: int,
    random_draws: int,
    k: str,
    n_perturb: int,
    std: float,
    keep_remove_draws: int,
    output: str,
    seed: int,
    chunk_size: int | None,
    label_control: Path | None,
    as_json: bool,
    scheduler: str | None,
    quiet: bool,
    overwrite: bool,
) -> None:
    """Score the attributions of the models in MODELS on COHORT, written to --out.

    Scored rows (the paper's): samples of --split that the model classifies
    correctly, explained for their true label. Families: pg (paper's prediction
    gaps PGI/PGU/PGR, deletion curves), openxai (Gaussian PGI/PGU), fa (feature
    agreement and biomarker recovery against the cohort's ground truth; OpenXAI
    agreement for linear models), stability (across seeds and model kinds),
    keep-remove (balanced accuracy keeping/removing top genes), sanity (model
    and label randomisation). Resumable: finished (model, family) parts are kept
    and an interrupted run continues.

    \b
    Examples:
      gexplain evaluate cohort --models models --attributions attr --out metrics
      gexplain evaluate cohort --models models/mlp-seed0.onnx --attributions attr/mlp-seed0 \\
          --metrics pg,fa --out metrics-mlp
      gexplain evaluate cohort --models models --attributions attr --metrics pg \\
          --block 10 --random-draws 30 --json --quiet --out metrics
    """
    from ..metrics import evaluate as run

    res = run(
        cohort,
        models,
        attributions,
        metrics=metrics,
        out=out,
        split=split,
        all_samples=all_samples,
        block=block,
        random_draws=random_draws,
        openxai_k=_ks(k),
        n_perturb=n_perturb,
        std=std,
        keep_remove_draws=keep_remove_draws,
        seed=seed,
        output=output,
        chunk_size=chunk_size,
        label_control=label_control,
        overwrite=overwrite,
        quiet=True if quiet else None,
        scheduler=scheduler,
    )
    summary = res.summary()
    if as_json:
        rows = summary.filter(summary["control"].is_null()).drop("control").to_dicts()
        click.echo(json.dumps({"out": str(out), "summary": rows}, indent=2, default=str))
        return
    if not quiet:
        import polars as pl

        with pl.Config(tbl_rows=60, tbl_cols=10, fmt_str_lengths=30):
            click.echo(summary.filter(pl.col("control").is_null()).drop("control"))
        say(f"wrote {out}", quiet)
