"""``gexplain preprocess``."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import overwrite_option, quiet_option, say


@click.command()
@click.argument("cohort", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out", "-o", required=True, type=click.Path(path_type=Path), help="Output cohort folder."
)
@click.option("--cpm", is_flag=True, help="Counts per million (from raw counts).")
@click.option("--tpm", is_flag=True, help="Transcripts per million (needs a gene 'length' column).")
@click.option("--log2", "log2", is_flag=True, help="log2(x + 1).")
@click.option(
    "--filter-genes/--no-filter-genes",
    default=False,
    help="Drop genes with any NaN or max <= 0 (the paper's filter).",
)
@click.option(
    "--min-variance", type=float, default=None, help="Drop genes with a lower training variance."
)
@click.option(
    "--top-variance",
    type=int,
    default=None,
    help="Keep the N most variable genes (training split).",
)
@click.option(
    "--split",
    "test_size",
    type=float,
    default=None,
    help="Make a stratified train/test split with this test fraction (paper: 0.4).",
)
@click.option(
    "--stratify", default="label", show_default=True, help="Column to stratify the split on."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split.")
@click.option(
    "--zscore",
    is_flag=True,
    help="Standardise genes with training statistics (training folds this itself).",
)
@click.option(
    "--force", is_flag=True, help="Allow applying a value transform the cohort already has."
)
@overwrite_option
@quiet_option
def preprocess(
    cohort: Path,
    out: Path,
    cpm: bool,
    tpm: bool,
    log2: bool,
    filter_genes: bool,
    min_variance: float | None,
    top_variance: int | None,
    test_size: float | None,
    stratify: str,
    seed: int,
    zscore: bool,
    force: bool,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Apply preprocessing steps in this order: cpm/tpm, log2, filter-genes, split, variance, zscore.

    Each step is recorded in cohort.json; models remember the value transforms
    they were trained on and later stages refuse a cohort transformed otherwise.

    \b
    Examples:
      # the paper's recipe for real data (z-scoring is folded into the models)
      gexplain preprocess raw/ --log2 --filter-genes --split 0.4 --seed 0 --out ready/
      gexplain preprocess counts/ --cpm --log2 --top-variance 5000 --split 0.4 --out ready/
    """
    from .. import preprocess as pp
    from ..cohort import Cohort

    c = Cohort.load(cohort)
    if cpm and tpm:
        raise click.UsageError("choose one of --cpm and --tpm")
    if cpm:
        c = pp.cpm(c, force=force)
    if tpm:
        c = pp.tpm(c, force=force)
    if log2:
        c = pp.log2p1(c, force=force)
    if filter_genes:
        c = pp.filter_genes(c)
    if test_size is not None:
        c = pp.split(c, test_size=test_size, seed=seed, stratify=stratify or None)
    if min_variance is not None or top_variance is not None:
        c = pp.filter_variance(c, min_variance=min_variance, top_n=top_variance)
    if zscore:
        c = pp.zscore(c, force=force)
    c.save(out, overwrite=overwrite)
    say(f"wrote {out}: {c}", quiet)
