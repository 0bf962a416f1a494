"""Integrated Gradients straight from ONNX files (torch-free).

- :class:`CompiledModel` turns an ONNX classifier into ``head(x @ weight + bias)``
  (every affine op before the first nonlinearity folded into ``weight``/``bias``).
- :func:`integrated_gradients` attributes a model output to the input genes
  (exact IG for ReLU heads and linear models, Captum's quadrature rules otherwise)
  and returns :class:`Attributions`.
- :func:`explain_cohort` does the same over a stored cohort in bounded memory,
  resumably, into an attributions folder.
"""

from ._attributions import Attributions
from ._baselines import BASELINE_NAMES, Baseline, resolve_baselines
from ._compiled import CompiledModel, compile_model, log_softmax, output_values, softmax
from ._ig import METHODS, OUTPUTS, integrate, quadrature
from ._onnx import SUPPORTED_OPS
from ._run import explain_cohort, integrated_gradients

__all__ = [
    "BASELINE_NAMES",
    "METHODS",
    "OUTPUTS",
    "SUPPORTED_OPS",
    "Attributions",
    "Baseline",
    "CompiledModel",
    "compile_model",
    "explain_cohort",
    "integrate",
    "integrated_gradients",
    "log_softmax",
    "output_values",
    "quadrature",
    "resolve_baselines",
    "softmax",
]
