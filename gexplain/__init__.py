"""gexplain: test whether the genes an Integrated-Gradients ranking puts first are biomarkers.

Short public namespaces, scanpy style::

    import gexplain as gx
    cohort = gx.Cohort.load("cohort/")
    gx.simulate, gx.models, gx.explain, gx.metrics, gx.io, gx.preprocess, gx.report

Submodules are imported on first use so that ``import gexplain`` stays fast and
never imports torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import GexplainError, InputError

if TYPE_CHECKING:  # pragma: no cover
    from .cohort import Cohort, GroundTruth

__all__ = [
    "Cohort",
    "GexplainError",
    "GroundTruth",
    "InputError",
    "__version__",
    "read_cohort",
]

_SUBMODULES = {
    "cohort",
    "io",
    "preprocess",
    "simulate",
    "models",
    "explain",
    "metrics",
    "report",
    "run",
    "kernels",
    "distributed",
}
_LAZY_ATTRS = {
    "Cohort": ("gexplain.cohort", "Cohort"),
    "GroundTruth": ("gexplain.cohort", "GroundTruth"),
    "read_cohort": ("gexplain.cohort", "read_cohort"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY_ATTRS:
        module, attr = _LAZY_ATTRS[name]
        return getattr(importlib.import_module(module), attr)
    if name in _SUBMODULES:
        return importlib.import_module(f"gexplain.{name}")
    raise AttributeError(f"module 'gexplain' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(__all__) | _SUBMODULES)
