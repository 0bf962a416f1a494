"""``gexplain info``."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import echo_json


@click.command()
@click.argument("cohort", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option(
    "-q", "--quiet", is_flag=True, help="Accepted for symmetry; info prints only its summary."
)
def info(cohort: Path, as_json: bool, quiet: bool) -> None:
    """Summarise a cohort folder: sizes, classes, units, NaNs, provenance, ground truth.

    \b
    Examples:
      gexplain info cohort/
      gexplain info cohort/ --json | jq .classes
    """
    from ..cohort import Cohort

    summary = Cohort.load(cohort).info()
    if as_json:
        echo_json(summary)
        return
    click.echo(f"cohort      {cohort}")
    click.echo(f"samples     {summary['n_samples']}")
    click.echo(f"genes       {summary['n_genes']}")
    click.echo(f"units       {summary['units']}")
    click.echo(f"NaN values  {summary['n_nan']}")
    if "splits" in summary:
        click.echo("splits      " + ", ".join(f"{k}={v}" for k, v in summary["splits"].items()))
    if "classes" in summary:
        classes = summary["classes"]
        click.echo(f"classes     {len(classes)}")
        for name, count in classes.items():
            click.echo(f"  {name:<30} {count}")
    if summary["preprocessing"]:
        click.echo("preprocessing")
        for step in summary["preprocessing"]:
            params = {k: v for k, v in step.items() if k not in ("step", "transforms_values")}
            click.echo(f"  {step['step']} {params if params else ''}")
    if summary["provenance"]:
        click.echo("provenance")
        for entry in summary["provenance"]:
            click.echo(f"  {entry}")
    truth = summary.get("ground_truth")
    if truth:
        click.echo("ground truth")
        click.echo(f"  pathways                {truth['n_pathways']}")
        if truth["genes_per_pathway"]:
            g = truth["genes_per_pathway"]
            click.echo(f"  genes per pathway       {g['min']}..{g['max']} (mean {g['mean']:.1f})")
        click.echo(f"  informative per class   {truth['informative_pathways_per_class']}")
        sizes = sorted(set(truth["biomarkers_per_class"].values()))
        click.echo(f"  biomarkers per class    {', '.join(map(str, sizes[:10]))}")
        params = truth.get("params") or {}
        if params.get("source") == "gexplain.simulate":
            sim = params.get("simulation", {})
            click.echo(
                f"  simulated               seed {params.get('seed')}, "
                f"{sim.get('membership')} pathways, "
                f"priors {sim.get('base_prior')}/{sim.get('class_prior')}, "
                f"{sim.get('reads')} reads"
                + (
                    f" (log-normal sigma {sim['library_sigma']})"
                    if sim.get("library_sigma")
                    else ""
                )
            )
