"""Python side of the head program run by :mod:`gexplain.kernels.head`.

A :class:`HeadProgram` is what follows the first linear map of a compiled
model. Build one layer by layer (the ONNX compiler does, tests do by hand)::

    >>> import numpy as np
    >>> from gexplain.head import HeadProgram
    >>> h = HeadProgram.builder(3).affine(np.ones((2, 3)), np.zeros(2)).relu().build()
    >>> h.forward(np.array([[1.0, -2.0, 0.5]]))
    array([[0., 0.]])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from .kernels import head as _k

Output = Literal["logit", "probability", "log_probability"]
OUTPUT_MODES: dict[str, int] = {
    "logit": _k.OUT_LOGIT,
    "probability": _k.OUT_PROB,
    "log_probability": _k.OUT_LOGPROB,
}
_OP_NAMES = {
    _k.OP_AFFINE: "affine",
    _k.OP_SCALE: "scale",
    _k.OP_RELU: "relu",
    _k.OP_LEAKY: "leaky_relu",
    _k.OP_SIGMOID: "sigmoid",
    _k.OP_TANH: "tanh",
}


def output_mode(output: str) -> int:
    """Kernel code of an output quantity name (``logit``, ``probability``, ``log_probability``)."""
    try:
        return OUTPUT_MODES[output]
    except KeyError:
        raise ValueError(f"output must be one of {sorted(OUTPUT_MODES)}, got {output!r}") from None


@dataclass(frozen=True)
class HeadProgram:
    """Layers after the first linear map, as arrays the kernels interpret.

    Attributes
    ----------
    layers
        ``(L, 4)`` int64: op code, input width, output width, parameter offset.
    params
        float64 parameters of all layers.
    """

    layers: np.ndarray
    params: np.ndarray

    @property
    def n_in(self) -> int:
        """Width of the head's input (the first linear map's output, H)."""
        return int(self.layers[0, 1])

    @property
    def n_out(self) -> int:
        """Number of logits (classes)."""
        return int(self.layers[-1, 2])

    @property
    def n_acts(self) -> int:
        """Scratch size the kernels need for one sample's activations."""
        return int(self.layers[0, 1] + self.layers[:, 2].sum())

    @property
    def width(self) -> int:
        """Widest layer input/output."""
        return int(max(self.layers[:, 1].max(), self.layers[:, 2].max()))

    @property
    def ops(self) -> list[str]:
        """Layer op names, in order."""
        return [_OP_NAMES[int(o)] for o in self.layers[:, 0]]

    @property
    def is_piecewise_linear(self) -> bool:
        """True when every nonlinearity is ReLU/LeakyReLU (exact IG applies)."""
        return all(
            int(o) in (_k.OP_AFFINE, _k.OP_SCALE, _k.OP_RELU, _k.OP_LEAKY)
            for o in self.layers[:, 0]
        )

    @property
    def is_affine(self) -> bool:
        """True when the head has no nonlinearity (a linear model: logits affine in x)."""
        return all(int(o) in (_k.OP_AFFINE, _k.OP_SCALE) for o in self.layers[:, 0])

    @staticmethod
    def builder(n_in: int) -> HeadBuilder:
        """Start a head whose input has ``n_in`` units."""
        return HeadBuilder(n_in)

    def forward(self, Z: np.ndarray) -> np.ndarray:
        """Logits for each row of ``Z`` (n × n_in)."""
        Z = np.ascontiguousarray(Z, dtype=np.float64)
        return _k.head_forward_batch(self.layers, self.params, Z, self.n_acts)

    def value_and_grad(
        self, Z: np.ndarray, targets: np.ndarray, output: str = "logit"
    ) -> tuple[np.ndarray, np.ndarray]:
        """Explained value per row and its gradient w.r.t. the head input."""
        Z = np.ascontiguousarray(Z, dtype=np.float64)
        t = np.ascontiguousarray(
            np.broadcast_to(np.asarray(targets, dtype=np.int64), (Z.shape[0],))
        )
        return _k.head_value_grad_batch(
            self.layers, self.params, Z, t, output_mode(output), self.n_acts, self.width
        )


class HeadBuilder:
    """Accumulates layers for a :class:`HeadProgram` (see :meth:`HeadProgram.builder`)."""

    def __init__(self, n_in: int) -> None:
        self._rows: list[tuple[int, int, int, int]] = []
        self._params: list[np.ndarray] = []
        self._size = 0
        self._width = int(n_in)

    def _add(self, op: int, n_out: int, *params: np.ndarray) -> HeadBuilder:
        flat = [np.asarray(p, dtype=np.float64).reshape(-1) for p in params]
        self._rows.append((op, self._width, int(n_out), self._size))
        for p in flat:
            self._params.append(p)
            self._size += p.size
        self._width = int(n_out)
        return self

    def affine(self, M: np.ndarray, c: np.ndarray | None = None) -> HeadBuilder:
        """``y = M x + c`` with ``M`` of shape (n_out, n_in)."""
        M = np.asarray(M, dtype=np.float64)
        if M.ndim != 2 or M.shape[1] != self._width:
            raise ValueError(f"affine weight must be (n_out, {self._width}), got {M.shape}")
        c = np.zeros(M.shape[0]) if c is None else np.asarray(c, dtype=np.float64)
        return self._add(_k.OP_AFFINE, M.shape[0], M, c)

    def scale(self, a: np.ndarray, c: np.ndarray) -> HeadBuilder:
        """``y = a ⊙ x + c`` (elementwise; BatchNorm in inference mode)."""
        a = np.broadcast_to(np.asarray(a, dtype=np.float64), (self._width,))
        c = np.broadcast_to(np.asarray(c, dtype=np.float64), (self._width,))
        return self._add(_k.OP_SCALE, self._width, a, c)

    def relu(self) -> HeadBuilder:
        """ReLU."""
        return self._add(_k.OP_RELU, self._width)

    def leaky_relu(self, alpha: float) -> HeadBuilder:
        """LeakyReLU with slope ``alpha`` for negative inputs."""
        return self._add(_k.OP_LEAKY, self._width, np.array([alpha]))

    def sigmoid(self) -> HeadBuilder:
        """Logistic sigmoid."""
        return self._add(_k.OP_SIGMOID, self._width)

    def tanh(self) -> HeadBuilder:
        """Hyperbolic tangent."""
        return self._add(_k.OP_TANH, self._width)

    def build(self) -> HeadProgram:
        """The finished program (an empty head becomes an identity SCALE layer)."""
        if not self._rows:
            self.scale(np.ones(self._width), np.zeros(self._width))
        layers = np.array(self._rows, dtype=np.int64).reshape(-1, 4)
        params = np.concatenate(self._params) if self._params else np.zeros(0)
        return HeadProgram(layers, np.ascontiguousarray(params))
