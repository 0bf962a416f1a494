"""The long-frame contract every metric function returns.

A metric function returns a :class:`MetricResult`: ``scores`` (one row per
class, metric, variant, k and control) and ``curves`` (one row per point of a
curve). ``class`` is null on the row that averages the classes (unweighted
mean over classes, the paper's convention). :func:`gexplain.metrics.evaluate`
adds ``model``, ``seed`` and ``attributions`` columns and writes them to
``metrics.parquet`` and ``curves.parquet``; the report reads exactly these
names.

Metric names (``metric`` column) and their variants:

===================  =========================================================
metric               variant
===================  =========================================================
PGI, PGU             local, global-mean, global-ranksum, global-rankmedian
PGU_adjusted         same variants as PGU (PGU / (1 − f_c(baseline)))
PGR                  random (mean over the random orders)
openxai-PGI/-PGU     gaussian (``k`` column set); ``...-AUC`` rows: auc
FA                   local, global, diffused-local, diffused-global
precision@k,         abs (``k`` column set)
recall@k, AUPRC
openxai-FA/RA/SA/    vs-truth (``k`` column set)
SRA/RC/PRA
jaccard@k, spearman, across-seeds, across-models (mean over pairs)
kendall,
sign-agreement
jaccard@k, ...       per-sample (:func:`sample_stability`, two runs of the same rows)
rank-correlation     model-randomization:<layer> (cascading, top-down; ``none``:
(and ...-abs)        the unchanged model, 1 by construction), label-randomization
===================  =========================================================

``control`` is null for the score itself and names the control otherwise
(``random``: the same score for random attributions).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

SCORE_SCHEMA: dict[str, pl.DataType] = {
    "class": pl.String(),
    "metric": pl.String(),
    "variant": pl.String(),
    "k": pl.Int64(),
    "control": pl.String(),
    "value": pl.Float64(),
    "n": pl.Int64(),
}

CURVE_SCHEMA: dict[str, pl.DataType] = {
    "class": pl.String(),
    "curve": pl.String(),
    "variant": pl.String(),
    "x": pl.Float64(),
    "value": pl.Float64(),
    "sd": pl.Float64(),
}


def _conform(frame: pl.DataFrame | None, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    if frame is None or (frame.height == 0 and not frame.columns):
        return pl.DataFrame(schema=schema)
    missing = [c for c in schema if c not in frame.columns]
    frame = frame.with_columns(pl.lit(None, dtype=schema[c]).alias(c) for c in missing)
    return frame.select(pl.col(c).cast(t) for c, t in schema.items())


@dataclass
class MetricResult:
    """Scores and curves of one metric family, as long Polars frames.

    Attributes
    ----------
    scores
        Columns of :data:`SCORE_SCHEMA` (missing columns are added as nulls).
    curves
        Columns of :data:`CURVE_SCHEMA`.
    """

    scores: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=SCORE_SCHEMA))
    curves: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=CURVE_SCHEMA))

    def __post_init__(self) -> None:
        self.scores = _conform(self.scores, SCORE_SCHEMA)
        self.curves = _conform(self.curves, CURVE_SCHEMA)

    def __add__(self, other: MetricResult) -> MetricResult:
        return MetricResult(
            pl.concat([self.scores, other.scores]), pl.concat([self.curves, other.curves])
        )

    def score(
        self,
        metric: str,
        variant: str | None = None,
        cls: str | None = None,
        k: int | None = None,
        control: str | None = None,
    ) -> float:
        """One value: the row matching ``metric`` (and the optional filters; ``cls=None``
        is the class average, ``control=None`` the score itself)."""
        f = self.scores.filter(pl.col("metric") == metric)
        if variant is not None:
            f = f.filter(pl.col("variant") == variant)
        f = f.filter(pl.col("class").is_null() if cls is None else pl.col("class") == cls)
        f = f.filter(
            pl.col("control").is_null() if control is None else pl.col("control") == control
        )
        if k is not None:
            f = f.filter(pl.col("k") == k)
        if f.height != 1:
            raise KeyError(
                f"{f.height} rows match metric={metric!r} variant={variant!r} class={cls!r} "
                f"k={k!r} control={control!r}"
            )
        return float(f["value"][0])
