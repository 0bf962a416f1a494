"""``gexplain simulate``."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

# The parameter options are generated from SimulationParams' fields; the import
# of gexplain.simulate is cheap (numba kernels load only when sampling).
from ..simulate._params import PRESETS, SimulationParams
from ._common import echo_json, overwrite_option, quiet_option, say
from ._scheduler import retries_option, scheduler_option

_HELP = {
    "n_classes": "Number of classes C.",
    "samples_per_class": "Samples per class (balanced cohorts).",
    "class_proportions": "Relative class sizes, comma-separated (imbalanced cohorts).",
    "n_samples": "Total samples with --class-proportions.",
    "n_genes": "Number of genes G.",
    "n_pathways": "Number of pathways P.",
    "membership": "disjoint blocks of --pathway-size genes (SIMU1) or random overlapping (SIMU2).",
    "pathway_size": "Genes per disjoint pathway; expected size of random ones.",
    "membership_prob": "Probability q that a gene joins a pathway (random; default size/G).",
    "gene_concentration": "Dirichlet concentration of gene weights inside a pathway.",
    "min_weight": "Informative pathways are redrawn until every gene weight is >= this.",
    "informative_pathways": "Informative pathways per class (class c: k*c .. k*c+k-1).",
    "base_prior": "Dirichlet prior on non-informative pathways.",
    "class_prior": "Dirichlet prior on the class's informative pathways.",
    "reads": "Reads per sample (median if --library-sigma > 0).",
    "library_sigma": "Log-normal sigma of library sizes (0: fixed).",
    "units": "Output units.",
    "test_size": "Test fraction of the stratified split.",
}


def _floats(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got {value!r}") from None


def _param_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for fld in reversed(dataclasses.fields(SimulationParams)):
        name = "--" + fld.name.replace("_", "-")
        kwargs: dict[str, Any] = {"default": None, "help": _HELP.get(fld.name, "")}
        default = fld.default
        if fld.name == "class_proportions":
            kwargs["callback"] = _floats
            kwargs["metavar"] = "P1,P2,..."
        elif fld.name == "membership":
            kwargs["type"] = click.Choice(["disjoint", "random"])
        elif fld.name == "units":
            kwargs["type"] = click.Choice(["per-million", "counts"])
        elif fld.name in ("n_samples",) or isinstance(default, int):
            kwargs["type"] = click.IntRange(min=0)
        else:
            kwargs["type"] = float
        f = click.option(name, fld.name, **kwargs)(f)
    return f


@click.command()
@click.option(
    "--preset",
    type=click.Choice(sorted(PRESETS)),
    default="demo",
    show_default=True,
    help="Starting parameters: the paper's simu1/simu2 (9900 × 15000) or a small demo.",
)
@_param_options
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed.")
@click.option(
    "--out", "-o", type=click.Path(path_type=Path), default=None, help="Output cohort folder."
)
@click.option(
    "--chunk-size",
    type=click.IntRange(min=1),
    default=None,
    help="Samples per chunk (default ~32 MB); does not change the output.",
)
@click.option("--show-params", is_flag=True, help="Print the resolved parameters as JSON and exit.")
@scheduler_option
@retries_option
@overwrite_option
@quiet_option
def simulate(
    preset: str,
    seed: int,
    out: Path | None,
    chunk_size: int | None,
    show_params: bool,
    scheduler: str | None,
    retries: int,
    overwrite: bool,
    quiet: bool,
    **overrides: Any,
) -> None:
    """Simulate a cohort with known biomarkers (hierarchical LDA: pathways = topics).

    Each sample of class c draws pathway proportions theta ~ Dirichlet(alpha_c),
    pathway reads ~ Multinomial(R, theta) and gene reads inside each pathway
    ~ Multinomial(n_p, beta_p). The class's biomarkers are the genes of its
    informative pathways. The cohort gets labels, a stratified 60/40 split and
    its ground truth (COHORT/truth/). Any parameter of the preset can be
    overridden with --PARAM VALUE. Output is identical for a seed whatever the
    thread count or chunk size; an interrupted run resumes when rerun.

    \b
    Examples:
      gexplain simulate --preset demo --seed 0 --out demo/
      gexplain simulate --preset simu1 --seed 0 --out simu1/
      gexplain simulate --preset simu2 --n-classes 10 --units counts --seed 1 --out s2/
      gexplain simulate --preset demo --class-proportions 5,1,1,1,1,1 --n-samples 1000 -o imb/
      gexplain simulate --preset simu1 --show-params
      gexplain simulate --preset simu1 --scheduler local:2 --out simu1/
    """
    from ..simulate import get_params, simulate_to_disk

    overrides = {k: v for k, v in overrides.items() if v is not None}
    params = get_params(preset, **overrides)
    if show_params:
        echo_json({"preset": preset, "seed": seed, **params.to_dict()})
        return
    if out is None:
        raise click.UsageError("missing option --out (the cohort folder to write)")
    t0 = time.perf_counter()
    path = simulate_to_disk(
        out,
        preset,
        seed=seed,
        chunk_size=chunk_size,
        overwrite=overwrite,
        quiet=True if quiet else None,
        scheduler=scheduler,
        retries=retries,
        **overrides,
    )
    say(
        f"wrote {path}: {params.total_samples} samples × {params.n_genes} genes, "
        f"{params.n_classes} classes, units {params.units} ({time.perf_counter() - t0:.1f} s)",
        quiet,
    )
