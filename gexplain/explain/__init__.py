"""Integrated Gradients straight from ONNX files (torch-free).

``CompiledModel`` turns an ONNX classifier into ``head(x @ weight + bias)``;
``integrated_gradients`` attributes its output to the input genes.
"""

from ._attributions import Attributions
from ._compiled import CompiledModel, compile_model, output_values
from ._onnx import SUPPORTED_OPS

__all__ = [
    "SUPPORTED_OPS",
    "Attributions",
    "CompiledModel",
    "compile_model",
    "output_values",
]
