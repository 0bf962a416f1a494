"""``gexplain explain``: Integrated Gradients of an ONNX model over a cohort."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import overwrite_option, quiet_option, say
from ._scheduler import retries_option, scheduler_option

_METHODS = [
    "auto",
    "exact",
    "gausslegendre",
    "riemann_left",
    "riemann_right",
    "riemann_middle",
    "riemann_trapezoid",
    "trapezoid",
]


def _steps(value: str | None) -> int | str | None:
    if value is None or value == "auto":
        return value
    try:
        n = int(value)
    except ValueError:
        raise click.BadParameter(f"expected a positive integer or 'auto', got {value!r}") from None
    if n < 1:
        raise click.BadParameter("steps must be positive")
    return n


@click.command()
@click.argument("cohort", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--method",
    type=click.Choice(_METHODS),
    default="auto",
    show_default=True,
    help="exact (ReLU heads and linear models: breakpoints + Gauss–Legendre to machine "
    "precision), or a quadrature rule (Captum's definitions; riemann_trapezoid is Captum's, "
    "whose weights sum to (n-1)/n; trapezoid is the correct rule). auto = exact when possible.",
)
@click.option(
    "--steps",
    default=None,
    help="Quadrature steps (default 50), or 'auto' to double them per sample until "
    "completeness holds to --tolerance.",
)
@click.option(
    "--tolerance",
    type=float,
    default=1e-3,
    show_default=True,
    help="Completeness tolerance of --steps auto: |delta| <= tol * max(1, |f_x - f_baseline|).",
)
@click.option(
    "--baseline",
    "baselines",
    multiple=True,
    help="model-zero (default; the training mean when z-scoring is folded), zeros, train-mean, "
    "class-mean, a .npy/.tsv/.csv/.parquet vector (gene_id,value) or a cohort folder. "
    "Repeat (or comma-separate) to average several baselines.",
)
@click.option(
    "--target",
    default=None,
    help="label (default with labels), predicted (default without), all, or a class "
    "name/index (comma-separated for several).",
)
@click.option(
    "--output",
    "output",
    type=click.Choice(["probability", "logit", "log_probability"]),
    default="probability",
    show_default=True,
    help="Explained quantity: softmax probability (the paper's), logit or log-probability.",
)
@click.option("--correct-only", is_flag=True, help="Explain only correctly classified samples.")
@click.option("--normalize", is_flag=True, help="Scale each attribution row to unit L2 norm.")
@click.option(
    "--top-k", type=int, default=None, help="Also write topk.parquet: each row's K top genes."
)
@click.option(
    "--chunk-size",
    type=int,
    default=None,
    help="Samples per chunk (default: sized to ~256 MB of work memory).",
)
@click.option(
    "--fill-missing",
    type=float,
    default=None,
    help="Value for model genes absent from the cohort (default: refuse).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Attributions folder to write.",
)
@scheduler_option
@retries_option
@quiet_option
@overwrite_option
def explain(
    cohort: Path,
    model: Path,
    method: str,
    steps: str | None,
    tolerance: float,
    baselines: tuple[str, ...],
    target: str | None,
    output: str,
    correct_only: bool,
    normalize: bool,
    top_k: int | None,
    chunk_size: int | None,
    fill_missing: float | None,
    out: Path,
    scheduler: str | None,
    retries: int,
    quiet: bool,
    overwrite: bool,
) -> None:
    """Integrated Gradients of MODEL (ONNX) for the samples of COHORT, written to --out.

    Runs torch-free on the CPU, in chunks of bounded memory; an interrupted run
    resumes where it stopped. Writes attributions.arrow (rows × genes float32),
    attributions.parquet (sample_id, target, f_x, f_baseline, delta, method,
    steps, ...), genes.parquet, attributions.json and, with --top-k, topk.parquet.

    \b
    Examples:
      gexplain explain cohort/ models/mlp-seed0.onnx --out attr/
      gexplain explain cohort/ mlp.onnx --correct-only --normalize --top-k 100 --out attr/
      gexplain explain cohort/ lr.onnx --target all --output logit --out attr-all/
      gexplain explain cohort/ model.onnx --method gausslegendre --steps auto --out attr/
      gexplain explain cohort/ model.onnx --baseline zeros --baseline train-mean --out attr/
      gexplain explain cohort/ mlp.onnx --scheduler local:2 --out attr/
      gexplain explain cohort/ mlp.onnx --scheduler tcp://10.0.0.5:8786 --out attr/
    """
    from ..explain import explain_cohort

    spec: list[str] = [s.strip() for b in baselines for s in b.split(",") if s.strip()]
    baseline: object = spec[0] if len(spec) == 1 else (spec or "model-zero")
    path = explain_cohort(
        model,
        cohort,
        out,
        baseline=baseline,
        target=target,
        method=None if method == "auto" else method,
        steps=_steps(steps),
        output=output,
        tolerance=tolerance,
        correct_only=correct_only,
        normalize=normalize,
        top_k=top_k,
        fill=fill_missing,
        chunk_size=chunk_size,
        overwrite=overwrite,
        quiet=True if quiet else None,
        scheduler=scheduler,
        retries=retries,
    )
    if not quiet:
        from ..explain import Attributions

        attr = Attributions.load(path)
        say(f"wrote {path}: {attr}", quiet)
