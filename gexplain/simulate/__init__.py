"""Simulated cohorts with known biomarkers: the paper's hierarchical LDA model.

Samples are documents, pathways are topics, genes are words. For a sample of
class ``c`` with library size ``R``:

1. pathway proportions ``θ ~ Dirichlet(α_c)``, where ``α_c`` is ``class_prior``
   on the class's informative pathways and ``base_prior`` elsewhere;
2. pathway reads ``(n_1..n_P) ~ Multinomial(R, θ)``;
3. inside each pathway, gene reads ``~ Multinomial(n_p, β_p)`` with gene
   weights ``β_p ~ Dirichlet(gene_concentration)`` fixed for the cohort; a gene's
   count is the sum over the pathways that hold it;
4. output in reads per million (``counts / (R / 10**6)``) or raw counts.

The biomarkers of class ``c`` are the genes of its informative pathways. The
ground truth (pathways, class pathways, and the expected expression and log2
fold change of every gene in every class, computed from the parameters) is
attached to the cohort and saved in ``COHORT/truth/``.

Sampling is exact (library sizes are preserved) and runs in Numba kernels
(:mod:`gexplain.kernels.simulate`), parallel over samples with a per-sample
counter-based random stream: output is bit-identical for a seed whatever the
thread count or chunk size.

Examples
--------
>>> import gexplain as gx
>>> cohort = gx.simulate.simulate("demo", seed=0)
>>> cohort
Cohort: 600 samples × 1000 genes, 6 classes, split train=360 test=240, units 'per-million', with ground truth
>>> params = gx.simulate.get_params("simu2", n_classes=4)
>>> params.membership, params.n_pathways
('random', 3000)
"""

from ._model import SimulationModel, build_model
from ._params import PRESETS, SimulationParams, get_params
from ._simulate import Simulation, sample_keys, simulate, simulate_to_disk

__all__ = [
    "PRESETS",
    "Simulation",
    "SimulationModel",
    "SimulationParams",
    "build_model",
    "get_params",
    "sample_keys",
    "simulate",
    "simulate_to_disk",
]
