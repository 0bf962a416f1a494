"""Scores for attributions: is a gene ranking a set of biomarkers?

Every function returns a :class:`MetricResult` of long Polars frames (see
:mod:`gexplain.metrics._result` for the metric names). Torch-free.
"""

from ._result import CURVE_SCHEMA, SCORE_SCHEMA, MetricResult

__all__ = ["CURVE_SCHEMA", "SCORE_SCHEMA", "MetricResult"]
