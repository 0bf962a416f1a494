"""Scores for attributions: is a gene ranking a set of biomarkers?

Every metric function returns a :class:`MetricResult` of long Polars frames
(see :mod:`gexplain.metrics._result` for the metric names); :func:`evaluate`
runs them over a cohort, models and attributions and writes a metrics folder.
Torch-free.

Public names are imported from their private modules on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._result import CURVE_SCHEMA, SCORE_SCHEMA, MetricResult

# public name -> private module (imported lazily)
_NAMES: dict[str, str] = {
    # aggregation of per-sample attributions into per-class rankings
    "AGGREGATIONS": "_aggregate",
    "class_scores": "_aggregate",
    "descending_ranks": "_aggregate",
    "l2_normalize": "_aggregate",
    # prediction gaps (paper) and OpenXAI perturbation gaps
    "prediction_gaps": "_pg",
    "deletion_curves": "_pg",
    "openxai_prediction_gaps": "_openxai_pg",
    # agreement with the ground truth
    "feature_agreement": "_agreement",
    "biomarker_recovery": "_agreement",
    "openxai_agreement": "_openxai_agreement",
    "linear_reference_attribution": "_openxai_agreement",
    # stability across seeds, models, runs
    "stability": "_stability",
    "sample_stability": "_stability",
    # keep/remove accuracy curves
    "keep_remove_curves": "_keep_remove",
    # sanity checks
    "randomize_model": "_sanity",
    "model_randomization": "_sanity",
    "label_randomization": "_sanity",
    # the whole evaluation over stored cohorts, models and attributions
    "evaluate": "_evaluate",
    "EVALUATE_METRICS": "_evaluate",
}

__all__ = ["CURVE_SCHEMA", "SCORE_SCHEMA", "MetricResult", *sorted(_NAMES)]


def __getattr__(name: str) -> Any:
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'gexplain.metrics' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted(__all__)
