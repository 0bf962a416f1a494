"""``gexplain train`` and ``gexplain predict``."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import echo_json, overwrite_option, parse_int_list, quiet_option, say


def _kinds(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[str]:
    from ..models import parse_kinds

    try:
        return parse_kinds(values or ("mlp",))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _ints(ctx: click.Context, param: click.Parameter, value: str) -> list[int]:
    return parse_int_list(value)


@click.command()
@click.argument("cohort", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--model",
    "-m",
    "models",
    multiple=True,
    callback=_kinds,
    help="lr, mlp, diffuse-lr, diffuse-mlp (repeat or comma-separate; default mlp).",
)
@click.option(
    "--seeds", default="0", show_default=True, callback=_ints, help="Seeds, e.g. 0-9 or 0,3,7."
)
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path), help="Models folder.")
@click.option("--hidden", type=int, default=20, show_default=True, help="MLP hidden width.")
@click.option("--epochs", type=int, default=25, show_default=True)
@click.option("--lr", type=float, default=0.1, show_default=True, help="SGD learning rate.")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--weight-decay", type=float, default=1e-4, show_default=True)
@click.option(
    "--milestones",
    default="12,22",
    show_default=True,
    help="Epochs where MultiStepLR multiplies the learning rate by --gamma ('' for none).",
)
@click.option("--gamma", type=float, default=0.1, show_default=True)
@click.option("--dropout", type=float, default=0.2, show_default=True, help="LR input dropout.")
@click.option("--momentum", type=float, default=0.9, show_default=True)
@click.option(
    "--graph-threshold",
    type=float,
    default=0.5,
    show_default=True,
    help="Diffused models: keep gene correlations above this.",
)
@click.option(
    "--split-column", default="split", show_default=True, help="Sample column with train/test."
)
@click.option(
    "--permute-labels",
    is_flag=True,
    help="Train on randomly permuted labels (sanity control; files <kind>-permuted-seed<k>.onnx).",
)
@click.option(
    "--threads",
    type=int,
    default=1,
    show_default=True,
    help="Models trained at once (one process and one torch thread each; results do not depend on it).",
)
@overwrite_option
@quiet_option
def train(
    cohort: Path,
    models: list[str],
    seeds: list[int],
    out: Path,
    hidden: int,
    epochs: int,
    lr: float,
    batch_size: int,
    weight_decay: float,
    milestones: str,
    gamma: float,
    dropout: float,
    momentum: float,
    graph_threshold: float,
    split_column: str,
    permute_labels: bool,
    threads: int,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Train LR / MLP / diffused classifiers on the training split and export them to ONNX.

    Writes MODELS/<kind>-seed<k>.onnx per (model, seed), training.parquet (loss and
    balanced accuracies per epoch), confusion-<kind>.parquet and, for diffused
    models, graph.parquet. The per-gene z-score (training statistics) and the
    diffusion S are folded into each ONNX graph. Defaults are the paper's recipe.
    Rerunning skips models already trained with the same parameters.

    \b
    Examples:
      gexplain train cohort/ --model lr,mlp --seeds 0-9 --out models/
      gexplain train cohort/ -m diffuse-lr -m diffuse-mlp --seeds 0-9 --out models/ --threads 2
      gexplain train cohort/ --model mlp --seeds 0-2 --permute-labels --out models/
    """
    from ..models import TrainConfig, train_models

    try:
        ms = tuple(parse_int_list(milestones)) if milestones.strip() else ()
        config = TrainConfig(
            hidden=hidden,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            weight_decay=weight_decay,
            milestones=ms,
            gamma=gamma,
            dropout=dropout,
            momentum=momentum,
            graph_threshold=graph_threshold,
            split_column=split_column,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    summary = train_models(
        cohort,
        models,
        seeds,
        out,
        config=config,
        permute_labels=permute_labels,
        threads=threads,
        quiet=True if quiet else None,
        overwrite=overwrite,
    )
    if not quiet:
        import polars as pl

        agg = (
            summary.group_by("model", maintain_order=True)
            .agg(
                pl.len().alias("n"),
                (pl.col("status") == "skipped").sum().alias("skipped"),
                pl.col("test_balanced_accuracy").mean().alias("mean"),
                pl.col("test_balanced_accuracy").std().alias("sd"),
            )
            .rows(named=True)
        )
        for r in agg:
            sd = "" if r["sd"] is None else f" ± {r['sd']:.4f}"
            mean = "n/a" if r["mean"] is None else f"{r['mean']:.4f}{sd}"
            skipped = f", {r['skipped']} already trained" if r["skipped"] else ""
            say(f"{r['model']}: {r['n']} seeds{skipped}; balanced test accuracy {mean}", quiet)
        say(f"wrote {out}", quiet)


@click.command()
@click.argument("cohort", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--split", default=None, help="Only samples of this split (e.g. test).")
@click.option("--split-column", default="split", show_default=True)
@click.option(
    "--out", "-o", type=click.Path(path_type=Path), default=None, help="Write predictions.parquet."
)
@click.option(
    "--fill-missing",
    type=float,
    default=None,
    help="Value for model genes missing from the cohort (default: refuse).",
)
@click.option("--threads", type=int, default=None, help="onnxruntime threads.")
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON on stdout.")
@overwrite_option
@quiet_option
def predict(
    cohort: Path,
    model: Path,
    split: str | None,
    split_column: str,
    out: Path | None,
    fill_missing: float | None,
    threads: int | None,
    as_json: bool,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Predict classes and probabilities with an ONNX model (onnxruntime, no torch).

    Cohort genes are aligned to the model by id; a cohort whose recorded value
    transforms differ from the model's is refused. Prints balanced accuracy
    (overall and per split) when the cohort has labels.

    \b
    Examples:
      gexplain predict cohort/ models/mlp-seed0.onnx --split test
      gexplain predict cohort/ model.onnx --out predictions.parquet --json
    """
    from .._atomic import atomic_file
    from ..errors import GexplainError
    from ..models import predict as run_predict
    from ..models import summarize

    if out is not None and out.exists() and not overwrite:
        raise GexplainError(f"{out} exists; pass --overwrite to replace it")
    frame = run_predict(
        model, cohort, split=split, split_column=split_column, fill=fill_missing, threads=threads
    )
    scores = {"model": str(model), "cohort": str(cohort), **summarize(frame, split_column)}
    if out is not None:
        with atomic_file(out) as tmp:
            frame.write_parquet(tmp)
        scores["predictions"] = str(out)
    if as_json:
        echo_json(scores)
        return
    if quiet:
        return
    lines = [f"{model.name}: {scores['n_samples']} samples"]
    if "balanced_accuracy" in scores:
        lines.append(
            f"  all: balanced accuracy {scores['balanced_accuracy']:.4f}, "
            f"accuracy {scores['accuracy']:.4f}"
        )
        for s, v in scores.get("splits", {}).items():
            lines.append(
                f"  {s}: balanced accuracy {v['balanced_accuracy']:.4f}, "
                f"accuracy {v['accuracy']:.4f} ({v['n_samples']} samples)"
            )
    if out is not None:
        lines.append(f"wrote {out}")
    click.echo("\n".join(lines))
