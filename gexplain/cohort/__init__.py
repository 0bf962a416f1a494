"""Cohorts: the expression matrix, its sample and gene tables, and their storage."""

from ._cohort import Cohort, provenance_entry, read_cohort
from ._store import CohortWriter
from ._truth import GroundTruth

__all__ = ["Cohort", "CohortWriter", "GroundTruth", "provenance_entry", "read_cohort"]
