"""The generative model of a simulation: pathways, gene weights, class priors, and its truth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from .._rng import SeedLike, as_seed, generator
from ..cohort import GroundTruth
from ..errors import InputError
from ._params import SimulationParams, get_params

__all__ = ["SimulationModel", "build_model"]

_MAX_REDRAWS = 10_000


@dataclass(frozen=True)
class SimulationModel:
    """Everything fixed across samples: pathways, gene weights ``β`` and class priors ``α``.

    Attributes
    ----------
    params
        The parameters.
    seed
        The seed (as an int) the model was built from.
    path_ptr, path_genes, path_weights
        Pathways in CSR form: pathway ``p`` holds genes
        ``path_genes[path_ptr[p]:path_ptr[p+1]]`` (sorted) with weights ``β_p``
        (summing to 1) in ``path_weights``.
    alpha
        ``(C, P)`` Dirichlet prior of each class over pathways.
    informative
        ``(C, k)`` informative pathways of each class.
    """

    params: SimulationParams
    seed: int
    path_ptr: np.ndarray
    path_genes: np.ndarray
    path_weights: np.ndarray
    alpha: np.ndarray
    informative: np.ndarray

    # ------------------------------------------------------------------ shapes
    @property
    def n_pathways(self) -> int:
        """Number of pathways ``P``."""
        return self.path_ptr.shape[0] - 1

    @property
    def pathway_sizes(self) -> np.ndarray:
        """Number of genes of each pathway."""
        return np.diff(self.path_ptr)

    @property
    def pathway_of_entry(self) -> np.ndarray:
        """Pathway index of each CSR entry."""
        return np.repeat(np.arange(self.n_pathways), self.pathway_sizes)

    # ------------------------------------------------------------------ expectations
    def expected_fraction(self) -> np.ndarray:
        """``(C, G)`` expected share of reads of each gene in each class.

        ``E[x_g / R | c] = Σ_p E[θ_p | c] β_pg`` with ``E[θ_p | c] = α_cp / Σ_q α_cq``.
        """
        p = self.params
        mean_theta = self.alpha / self.alpha.sum(axis=1, keepdims=True)
        entry_path = self.pathway_of_entry
        out = np.empty((p.n_classes, p.n_genes), dtype=np.float64)
        for c in range(p.n_classes):
            out[c] = np.bincount(
                self.path_genes,
                weights=mean_theta[c, entry_path] * self.path_weights,
                minlength=p.n_genes,
            )
        return out

    def expected_expression(self) -> np.ndarray:
        """``(C, G)`` expected expression of each gene in each class, in the output units.

        Per-million: ``10**6 · E[x_g / R]`` (exact whatever the library sizes);
        counts: ``E[R] · E[x_g / R]`` with ``E[R] = reads · exp(σ² / 2)`` for
        log-normal libraries (the rounding of ``R`` to an integer is ignored).
        """
        p = self.params
        if p.units == "per-million":
            scale = 1e6
        else:
            scale = p.reads * float(np.exp(p.library_sigma**2 / 2.0))
        return scale * self.expected_fraction()

    def expected_log2fc(self, mean: np.ndarray | None = None) -> np.ndarray:
        """``(C, G)`` log2 of each class's expected mean over the mean of the other classes.

        NaN where undefined (genes in no pathway, or a single class).
        """
        mu = self.expected_expression() if mean is None else mean
        C = mu.shape[0]
        if C < 2:
            return np.full(mu.shape, np.nan)
        others = (mu.sum(axis=0, keepdims=True) - mu) / (C - 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            fc = np.log2(mu / others)
        fc[~np.isfinite(fc)] = np.nan
        return fc

    def biomarker_mask(self) -> np.ndarray:
        """``(C, G)`` boolean: gene ``g`` belongs to an informative pathway of class ``c``."""
        p = self.params
        mask = np.zeros((p.n_classes, p.n_genes), dtype=bool)
        for c in range(p.n_classes):
            for path in self.informative[c]:
                mask[c, self.path_genes[self.path_ptr[path] : self.path_ptr[path + 1]]] = True
        return mask

    # ------------------------------------------------------------------ truth
    def ground_truth(self) -> GroundTruth:
        """The :class:`~gexplain.cohort.GroundTruth` of this model (analytic, not estimated)."""
        p = self.params
        gene_ids = np.array(p.gene_ids)
        classes = p.class_names
        pathways = pl.DataFrame(
            {
                "pathway": pl.Series(self.pathway_of_entry, dtype=pl.Int64),
                "gene_id": gene_ids[self.path_genes],
                "weight": self.path_weights,
            }
        )
        class_pathways = pl.DataFrame(
            {
                "class": np.repeat(classes, self.informative.shape[1]),
                "pathway": pl.Series(self.informative.reshape(-1), dtype=pl.Int64),
            },
            schema={"class": pl.String, "pathway": pl.Int64},
        )
        mean = self.expected_expression()
        fc = self.expected_log2fc(mean)
        biomarkers = pl.DataFrame(
            {
                "class": np.repeat(classes, p.n_genes),
                "gene_id": np.tile(gene_ids, p.n_classes),
                "is_biomarker": self.biomarker_mask().reshape(-1),
                "expected_mean": mean.reshape(-1),
                "expected_log2fc": fc.reshape(-1),
            }
        ).with_columns(pl.col("expected_log2fc").fill_nan(None))
        return GroundTruth(
            pathways=pathways,
            class_pathways=class_pathways,
            biomarkers=biomarkers,
            params={
                "source": "gexplain.simulate",
                "seed": self.seed,
                "units": p.units,
                "simulation": p.to_dict(),
            },
        )

    # ------------------------------------------------------------------ kernel layout
    def kernel_layout(self) -> dict[str, np.ndarray]:
        """Position-major lanes of the gene-level conditional binomials (see ``kernels.simulate``)."""
        sizes = self.pathway_sizes
        P = self.n_pathways
        order = np.argsort(-sizes, kind="stable")
        rank_of = np.empty(P, dtype=np.int64)
        rank_of[order] = np.arange(P)
        sorted_sizes = sizes[order]
        n_pos = int(sorted_sizes[0]) - 1 if P else 0
        widths = np.array([(sorted_sizes >= j + 2).sum() for j in range(n_pos)], dtype=np.int64)
        pos_ptr = np.zeros(n_pos + 1, dtype=np.int64)
        np.cumsum(widths, out=pos_ptr[1:])
        n_lanes = int(pos_ptr[-1])
        lane_cond = np.empty(n_lanes, dtype=np.float64)
        lane_gene = np.empty(n_lanes, dtype=np.int64)
        last_gene = np.empty(P, dtype=np.int64)
        for r, path in enumerate(order):
            lo, hi = self.path_ptr[path], self.path_ptr[path + 1]
            w = self.path_weights[lo:hi]
            genes = self.path_genes[lo:hi]
            m = hi - lo
            last_gene[r] = genes[-1]
            if m < 2:
                continue
            suffix = np.cumsum(w[::-1])[::-1]
            cond = np.minimum(w[: m - 1] / suffix[: m - 1], 1.0)
            idx = pos_ptr[: m - 1] + r
            lane_cond[idx] = cond
            lane_gene[idx] = genes[: m - 1]
        return {
            "rank_of": rank_of,
            "pos_ptr": pos_ptr,
            "lane_cond": lane_cond,
            "lane_gene": lane_gene,
            "last_gene": last_gene,
        }


def _membership(
    params: SimulationParams, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    P, G = params.n_pathways, params.n_genes
    if params.membership == "disjoint":
        m = params.pathway_size
        ptr = np.arange(P + 1, dtype=np.int64) * m
        genes = np.arange(P * m, dtype=np.int64)
        return ptr, genes
    q = params.membership_probability
    # each gene joins each pathway with probability q, independently: the size
    # is Binomial(G, q) and, given the size, the member set is uniform; a
    # pathway is redrawn while empty (conditioning on non-empty pathways).
    sizes = rng.binomial(G, q, size=P)
    for _ in range(_MAX_REDRAWS):
        empty = np.flatnonzero(sizes == 0)
        if not empty.size:
            break
        sizes[empty] = rng.binomial(G, q, size=empty.size)
    else:  # pragma: no cover - needs q ~ 1e-7
        raise InputError("simulation parameter membership_prob: too small, pathways stay empty")
    ptr = np.zeros(P + 1, dtype=np.int64)
    np.cumsum(sizes, out=ptr[1:])
    genes = np.empty(int(ptr[-1]), dtype=np.int64)
    for p in range(P):
        genes[ptr[p] : ptr[p + 1]] = np.sort(rng.choice(G, size=int(sizes[p]), replace=False))
    return ptr, genes


def _weights(
    params: SimulationParams, ptr: np.ndarray, informative: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    sizes = np.diff(ptr)
    conc = params.gene_concentration

    def draw(paths: np.ndarray) -> list[np.ndarray]:
        return [
            rng.dirichlet(np.full(int(sizes[p]), conc)) if sizes[p] > 1 else np.ones(1)
            for p in paths
        ]

    weights = np.empty(int(ptr[-1]), dtype=np.float64)
    if sizes.size and (sizes == sizes[0]).all() and sizes[0] > 1:
        m = int(sizes[0])
        weights[:] = rng.dirichlet(np.full(m, conc), size=len(sizes)).reshape(-1)
    else:
        for p, w in enumerate(draw(np.arange(len(sizes)))):
            weights[ptr[p] : ptr[p + 1]] = w
    informative = np.unique(informative)
    too_big = informative[sizes[informative] * params.min_weight > 1.0 + 1e-12]
    if too_big.size:
        p = int(too_big[0])
        raise InputError(
            f"simulation parameter min_weight: informative pathway {p} has {sizes[p]} genes, "
            f"so its weights cannot all be >= {params.min_weight}"
        )
    for _ in range(_MAX_REDRAWS):
        lows = np.array(
            [p for p in informative if weights[ptr[p] : ptr[p + 1]].min() < params.min_weight],
            dtype=np.int64,
        )
        if not lows.size:
            return weights
        for p, w in zip(lows, draw(lows)):
            weights[ptr[p] : ptr[p + 1]] = w
    raise InputError(  # pragma: no cover - needs min_weight close to 1/size
        "simulation parameter min_weight: informative pathways keep a weight below "
        f"{params.min_weight} after {_MAX_REDRAWS} redraws; lower min_weight"
    )


def build_model(
    params: SimulationParams | str | None = "demo", seed: SeedLike = 0
) -> SimulationModel:
    """Draw the pathways, gene weights and class priors of a simulation.

    Parameters
    ----------
    params
        Parameters or a preset name.
    seed
        Seed (int or ``numpy.random.Generator``); the samples drawn later with the
        same seed use independent streams.

    Examples
    --------
    >>> from gexplain.simulate import build_model
    >>> m = build_model("simu1", seed=0)
    >>> m.n_pathways, int(m.pathway_sizes.max()), m.informative[1, :3].tolist()
    (1500, 10, [37, 38, 39])
    """
    if not isinstance(params, SimulationParams):
        params = get_params(params)
    s = as_seed(seed)
    C, P, k = params.n_classes, params.n_pathways, params.informative_pathways
    informative = (np.arange(C)[:, None] * k + np.arange(k)[None, :]).astype(np.int64)
    ptr, genes = _membership(params, generator(s, "simulate.pathways"))
    weights = _weights(params, ptr, informative, generator(s, "simulate.weights"))
    alpha = np.full((C, P), float(params.base_prior))
    for c in range(C):
        alpha[c, informative[c]] = params.class_prior
    return SimulationModel(
        params=params,
        seed=s,
        path_ptr=ptr,
        path_genes=genes,
        path_weights=weights,
        alpha=alpha,
        informative=informative,
    )
