"""Ground truth of a cohort: the genes that really drive each class.

Simulated cohorts carry the full generative truth (pathways, their gene
weights, which pathways each class favours, and the resulting per-class
expected expression). For real cohorts a user may supply gene sets per class
(:meth:`GroundTruth.from_gene_sets`), which the agreement metrics use the same way.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from .._atomic import write_json
from ..errors import InputError

PATHWAYS_SCHEMA = {"pathway": pl.Int64, "gene_id": pl.String, "weight": pl.Float64}
CLASS_PATHWAYS_SCHEMA = {"class": pl.String, "pathway": pl.Int64}
BIOMARKERS_SCHEMA = {
    "class": pl.String,
    "gene_id": pl.String,
    "is_biomarker": pl.Boolean,
    "expected_mean": pl.Float64,
    "expected_log2fc": pl.Float64,
}


@dataclass
class GroundTruth:
    """Known biomarkers of a cohort.

    Attributes
    ----------
    pathways
        ``pathway`` (int), ``gene_id``, ``weight`` (gene's probability within the pathway).
    class_pathways
        ``class``, ``pathway``: the informative pathways of each class.
    biomarkers
        ``class``, ``gene_id``, ``is_biomarker``, ``expected_mean`` (expected
        expression of the gene in the class, in the cohort's units) and
        ``expected_log2fc`` (log2 of the class mean over the mean of the other
        classes). Simulated cohorts list every (class, gene); user gene sets list
        only the biomarkers (expected columns null).
    params
        The parameters that generated the truth (simulation), if any.
    """

    pathways: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=PATHWAYS_SCHEMA))
    class_pathways: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(schema=CLASS_PATHWAYS_SCHEMA)
    )
    biomarkers: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=BIOMARKERS_SCHEMA))
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, frame, schema in (
            ("pathways", self.pathways, PATHWAYS_SCHEMA),
            ("class_pathways", self.class_pathways, CLASS_PATHWAYS_SCHEMA),
            ("biomarkers", self.biomarkers, BIOMARKERS_SCHEMA),
        ):
            missing = [c for c in schema if c not in frame.columns]
            if missing:
                raise InputError(f"ground truth table {name} lacks columns {missing}")
            setattr(
                self,
                name,
                frame.with_columns([pl.col(c).cast(t) for c, t in schema.items()]),
            )

    @classmethod
    def from_gene_sets(cls, sets: Mapping[str, Sequence[str]] | pl.DataFrame) -> GroundTruth:
        """Truth from user gene sets: a mapping class → gene ids, or a frame (class, gene_id)."""
        if isinstance(sets, pl.DataFrame):
            frame = sets.select(pl.col("class").cast(pl.String), pl.col("gene_id").cast(pl.String))
        else:
            frame = pl.DataFrame(
                {
                    "class": [str(c) for c, genes in sets.items() for _ in genes],
                    "gene_id": [str(g) for genes in sets.values() for g in genes],
                }
            )
        frame = frame.unique(maintain_order=True).with_columns(
            is_biomarker=pl.lit(True),
            expected_mean=pl.lit(None, dtype=pl.Float64),
            expected_log2fc=pl.lit(None, dtype=pl.Float64),
        )
        return cls(biomarkers=frame, params={"source": "gene sets"})

    @classmethod
    def read_gene_sets(cls, path: str | os.PathLike[str]) -> GroundTruth:
        """Read gene sets from a CSV/TSV/Parquet file with columns ``class`` and ``gene_id``."""
        p = Path(path)
        if p.suffix == ".parquet":
            frame = pl.read_parquet(p)
        else:
            frame = pl.read_csv(p, separator="\t" if p.suffix in (".tsv", ".txt") else ",")
        for col in ("class", "gene_id"):
            if col not in frame.columns:
                raise InputError(f"gene-set table needs a {col!r} column", path=p, column=col)
        return cls.from_gene_sets(frame)

    def biomarker_sets(self) -> dict[str, set[str]]:
        """Mapping class → set of its true biomarker gene ids."""
        b = self.biomarkers.filter(pl.col("is_biomarker"))
        out: dict[str, set[str]] = {}
        for cls_name, gene in zip(b["class"].to_list(), b["gene_id"].to_list()):
            out.setdefault(cls_name, set()).add(gene)
        return out

    def summary(self) -> dict[str, Any]:
        """Counts for ``gexplain info``: pathways, genes per pathway, biomarkers per class."""
        per_class = (
            self.biomarkers.filter(pl.col("is_biomarker")).group_by("class").len().sort("class")
        )
        sizes = self.pathways.group_by("pathway").len()["len"] if self.pathways.height else None
        return {
            "n_pathways": int(self.pathways["pathway"].n_unique()) if self.pathways.height else 0,
            "genes_per_pathway": (
                {"min": int(sizes.min()), "max": int(sizes.max()), "mean": float(sizes.mean())}
                if sizes is not None
                else None
            ),
            "informative_pathways_per_class": (
                int(self.class_pathways.group_by("class").len()["len"].max())
                if self.class_pathways.height
                else 0
            ),
            "biomarkers_per_class": dict(zip(per_class["class"], per_class["len"])),
            "params": self.params,
        }

    def save(self, folder: str | os.PathLike[str]) -> None:
        """Write ``pathways.parquet``, ``class_pathways.parquet``, ``biomarkers.parquet``, ``truth.json``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.pathways.write_parquet(folder / "pathways.parquet")
        self.class_pathways.write_parquet(folder / "class_pathways.parquet")
        self.biomarkers.write_parquet(folder / "biomarkers.parquet")
        write_json(folder / "truth.json", {"params": self.params})

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> GroundTruth:
        """Read a ground-truth folder written by :meth:`save`."""
        import json

        folder = Path(folder)
        try:
            params = json.loads((folder / "truth.json").read_text()).get("params", {})
            return cls(
                pathways=pl.read_parquet(folder / "pathways.parquet"),
                class_pathways=pl.read_parquet(folder / "class_pathways.parquet"),
                biomarkers=pl.read_parquet(folder / "biomarkers.parquet"),
                params=params,
            )
        except (OSError, ValueError) as exc:
            raise InputError(f"unreadable ground truth: {exc}", path=folder) from exc
