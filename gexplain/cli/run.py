"""``gexplain run``, ``gexplain demo`` and ``gexplain report``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import click

from ._common import quiet_option, say

_STAGES = ("cohort", "preprocess", "models", "explain", "evaluate", "report", "all")


def demo_experiment() -> Path:
    """Path of the shipped ``demo.toml`` (in ``gexplain.data/experiments``)."""
    return Path(str(resources.files("gexplain.data").joinpath("experiments", "demo.toml")))


def headline_table(summary: dict[str, Any]) -> str:
    """The headline numbers of a report's ``summary.json`` as a plain-text table."""
    from ..report._data import fmt_ms

    cols = [
        ("balanced_accuracy", "bal. acc."),
        ("PGI_local", "PGI local"),
        ("PGU_local", "PGU local"),
        ("PGR", "PGR"),
        ("FA_local", "FA local"),
        ("FA_local_random", "(random)"),
        ("FA_global", "FA global"),
        ("FA_global_random", "(random)"),
    ]
    models = summary.get("models") or {}
    cols = [c for c in cols if any(c[0] in r for r in models.values())]
    if not models or not cols:
        return "(no headline numbers: see the report)"
    header = ["model", *(t for _, t in cols)]
    rows = [[m, *(fmt_ms(r.get(k)) for k, _ in cols)] for m, r in models.items()]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def _finish(result: Any, quiet: bool) -> None:
    summary = result.summary
    if result.report is not None:
        click.echo(f"report: {result.report}")
    if summary is not None and not quiet:
        click.echo(headline_table(summary))
        missing = [s for s, st in (summary.get("sections") or {}).items() if st != "ok"]
        if missing:
            click.echo(f"sections not available: {', '.join(missing)} (see the report)")


@click.command("run")
@click.argument("experiment", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Run folder (default: [experiment] out, else runs/<name>).",
)
@click.option(
    "--force",
    "force",
    multiple=True,
    type=click.Choice(_STAGES),
    help="Redo this stage (and every stage after it) even if up to date. Repeatable.",
)
@quiet_option
def run(experiment: Path, out: Path | None, force: tuple[str, ...], quiet: bool) -> None:
    """Run an experiment TOML: cohort → preprocess → models → explain → evaluate → report.

    Every stage writes into one run folder with a manifest.json (versions, seeds,
    resolved parameters, input hashes, stage status and timings). Rerunning skips
    the stages whose parameters and inputs did not change, redoes a changed stage
    and those after it, and resumes an interrupted stage.

    \b
    Examples:
      gexplain run data/experiments/demo.toml --out demo-run/
      gexplain run paper-simu1.toml --out runs/simu1
      gexplain run paper-simu1.toml --out runs/simu1 --force explain
      gexplain run my-xena.toml --quiet
    """
    from ..run import run_experiment

    result = run_experiment(experiment, out=out, force=force, quiet=True if quiet else None)
    if not quiet:
        say(
            f"stages run: {', '.join(result.ran) or 'none'}; "
            f"up to date: {', '.join(result.skipped) or 'none'}",
            quiet,
        )
    _finish(result, quiet)


@click.command("demo")
@click.option(
    "--out",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("gexplain-demo"),
    show_default=True,
    help="Run folder.",
)
@click.option(
    "--force",
    "force",
    multiple=True,
    type=click.Choice(_STAGES),
    help="Redo this stage (and those after it). Repeatable.",
)
@click.option("--show", is_flag=True, help="Print the demo experiment (TOML) and exit.")
@quiet_option
def demo(out: Path, force: tuple[str, ...], show: bool, quiet: bool) -> None:
    """The whole study on built-in simulated data, in a few minutes.

    Simulates 6 classes × 100 samples × 1000 genes with known biomarkers, trains
    LR, MLP and their diffused variants (3 seeds each), explains them with exact
    IG, scores the attributions and writes an HTML report. Ends by printing where
    the report is and the headline numbers. Rerunning reuses what is done.

    \b
    Examples:
      gexplain demo
      gexplain demo --out /tmp/demo --quiet
      gexplain demo --show > my-experiment.toml
    """
    path = demo_experiment()
    if show:
        click.echo(path.read_text(), nl=False)
        return
    from ..run import run_experiment

    result = run_experiment(path, out=out, force=force, quiet=True if quiet else None)
    _finish(result, quiet)


@click.command("report")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="HTML file (default RUN/report/report.html); figures and summary.json go beside it.",
)
@click.option("--title", default=None, help="Page title.")
@click.option("--top-genes", type=click.IntRange(min=1), default=10, show_default=True)
@click.option(
    "--max-classes",
    type=click.IntRange(min=1),
    default=12,
    show_default=True,
    help="Classes shown per model in the top-gene table.",
)
@click.option("--jaccard-k", type=click.IntRange(min=1), default=None, help="k of the heatmap.")
@quiet_option
def report(
    run_dir: Path,
    out: Path | None,
    title: str | None,
    top_genes: int,
    max_classes: int,
    jaccard_k: int | None,
    quiet: bool,
) -> None:
    """Write the HTML report of a run folder (self-contained: figures embedded).

    Sections: model accuracies, PGI/PGU/PGR deletion curves, feature agreement vs
    random, rank stability across seeds, keep/remove accuracy curves, top genes
    per class (true biomarkers marked on simulated data), IG completeness error,
    all scores, provenance. Sections whose metric was not run say so. The PNGs
    and summary.json (headline numbers) are written beside the HTML file.

    \b
    Examples:
      gexplain report gexplain-demo/
      gexplain report runs/simu1 --out simu1.html --top-genes 20
    """
    from ..report import render

    path = render(
        run_dir,
        out,
        title=title,
        top_genes=top_genes,
        max_classes=max_classes,
        jaccard_k=jaccard_k,
    )
    say(f"wrote {path}", quiet)
