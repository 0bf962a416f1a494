"""Integrated Gradients straight from ONNX files (torch-free)."""

from ._attributions import Attributions

__all__ = ["Attributions"]
