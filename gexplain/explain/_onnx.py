"""Compile an ONNX classifier into ``logits = head(x @ weight + bias)``.

The compiler walks the graph symbolically. Every tensor on the data path is
kept as an affine function of the output ``u`` of the last nonlinearity seen so
far (``u = x`` before the first one)::

    value = u @ F1 @ F2 @ ... @ Fk + c

with the factors ``F`` kept apart (a 1-D factor is a diagonal), so that a long
chain such as z-scoring, a diffusion matrix and a linear layer is multiplied
out right to left only once, when the next nonlinearity needs it. The first
nonlinearity fixes ``weight`` and ``bias`` (every affine op before it folded
in); later affine runs become AFFINE/SCALE layers of a
:class:`~gexplain.head.HeadProgram`; ReLU, LeakyReLU, Sigmoid and Tanh become
its nonlinear layers. A final Softmax/LogSoftmax is stripped (its input are the
logits); a single-output Sigmoid ``σ(l)`` becomes the two logits ``[0, l]``
(softmax gives ``[1 − σ, σ]``), also when written as skl2onnx does
(``Concat(1 − σ, σ)``).

Nodes whose inputs are all constant are evaluated with
:class:`onnx.reference.ReferenceEvaluator` (shape arithmetic, transposed
weights, Constant nodes, ...); ``Shape`` of the batch layout is symbolic.
Only nodes that the chosen output depends on are compiled, so label branches
(ArgMax, ArrayFeatureExtractor, Cast to int, ZipMap) are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import ModelError
from ..head import HeadBuilder, HeadProgram

#: Ops the compiler understands on the data path (constant subgraphs may use any op).
SUPPORTED_OPS: tuple[str, ...] = (
    "Add",
    "BatchNormalization",
    "Cast",
    "Concat",
    "Constant",
    "Div",
    "Dropout",
    "Flatten",
    "Gemm",
    "Identity",
    "LeakyRelu",
    "LinearClassifier",
    "LogSoftmax",
    "MatMul",
    "Mul",
    "Neg",
    "Normalizer",
    "PRelu",
    "Relu",
    "Reshape",
    "Scaler",
    "Shape",
    "Sigmoid",
    "Softmax",
    "Squeeze",
    "Sub",
    "Tanh",
    "Unsqueeze",
    "ZipMap",
)

#: Stand-in for the (unknown) batch size inside shape tensors.
BATCH = -987_654_321

_FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16)


# ----------------------------------------------------------------------------- symbolic values


@dataclass
class _Lin:
    """``u @ F1 @ ... @ Fk + c`` for the output ``u`` (width ``n_u``) of stage ``stage``."""

    stage: int
    n_u: int
    factors: list[np.ndarray]
    c: np.ndarray
    ps: tuple[int, ...]
    prefix: tuple[np.ndarray, np.ndarray] | None = None  # stage 0: elementwise input prefix

    @property
    def n(self) -> int:
        return int(self.c.size)

    def copy(self, **kw: Any) -> _Lin:
        d = {
            "stage": self.stage,
            "n_u": self.n_u,
            "factors": list(self.factors),
            "c": self.c,
            "ps": self.ps,
            "prefix": self.prefix,
        }
        d.update(kw)
        return _Lin(**d)

    def all_diagonal(self) -> bool:
        return all(f.ndim == 1 for f in self.factors)


@dataclass
class _Sig:
    """``σ(sign · l)`` for a single logit ``l`` (a _Lin of width 1)."""

    logit: _Lin
    sign: float
    tensor: str  # graph tensor holding ``l``


@dataclass
class _Term:
    """Class probabilities (or log-probabilities) ``softmax(logits)``: the end of the path."""

    logits: _Lin
    activation: str  # "softmax", "log_softmax" or "sigmoid"
    tensor: str  # graph tensor the reference logits are read from
    recipe: str  # how to turn that tensor into logits: "identity" or "binary"
    sign: float = 1.0  # for "binary": logits = [0, sign * t]
    patch: dict[str, Any] = field(default_factory=dict)  # node edits for the reference graph


@dataclass
class Compiled:
    """What :func:`compile_graph` returns (wrapped by :class:`CompiledModel`)."""

    weight: np.ndarray
    bias: np.ndarray
    head: HeadProgram
    model_zero: np.ndarray
    output_activation: str | None
    input_name: str
    logit_tensor: str
    logit_recipe: str
    logit_sign: float
    patch: dict[str, Any]
    class_labels: list[str] | None
    z_tensor: str | None = None  # graph tensor equal to z = x @ weight + bias (same columns)


# ----------------------------------------------------------------------------- helpers


def _node_desc(node: onnx.NodeProto) -> str:
    name = node.name or (node.output[0] if node.output else "?")
    return f"node {name!r} (op {node.op_type})"


def _unsupported(node: onnx.NodeProto, why: str = "") -> ModelError:
    detail = f": {why}" if why else ""
    return ModelError(
        f"unsupported ONNX {_node_desc(node)}{detail}. gexplain compiles feed-forward "
        f"classifiers built from {', '.join(SUPPORTED_OPS)} (constant subgraphs may use any op)"
    )


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _materialize(v: _Lin) -> tuple[np.ndarray, bool]:
    """The matrix ``F1 @ ... @ Fk`` (``n_u × n``), or its diagonal and ``True``."""
    if not v.factors:
        return np.ones(v.n_u), True
    r = v.factors[-1]
    diag = r.ndim == 1
    for f in reversed(v.factors[:-1]):
        if f.ndim == 1 and diag:
            r = f * r
        elif f.ndim == 1:
            r = f[:, None] * r
        elif diag:
            r = f * r[None, :]
            diag = False
        else:
            r = f @ r
    return np.asarray(r, dtype=np.float64), diag


def _broadcast_const(k: np.ndarray, v: _Lin, node: onnx.NodeProto) -> np.ndarray:
    """A constant operand of an elementwise op, as a per-unit vector of length ``v.n``."""
    k = np.asarray(k, dtype=np.float64)
    rank = 1 + len(v.ps)
    if k.ndim > rank:
        raise _unsupported(node, f"constant of shape {k.shape} broadcasts over the batch")
    if k.ndim == rank:
        if k.shape[0] != 1:
            raise _unsupported(node, f"constant of shape {k.shape} varies along the batch axis")
        k = k[0]
    try:
        return np.ascontiguousarray(np.broadcast_to(k, v.ps), dtype=np.float64).reshape(-1)
    except ValueError:
        raise _unsupported(
            node, f"constant of shape {k.shape} does not broadcast to the tensor's {v.ps}"
        ) from None


def _scale(v: _Lin, a: np.ndarray) -> _Lin:
    """``v ⊙ a``."""
    return v.copy(factors=[*v.factors, a], c=v.c * a)


def _matmul(v: _Lin, w: np.ndarray, b: np.ndarray | None) -> _Lin:
    """``v @ w + b``: records the elementwise input prefix on the first dense factor."""
    prefix = v.prefix
    if v.stage == 0 and prefix is None and v.all_diagonal():
        a, _ = _materialize(v)
        prefix = (a, v.c.copy())
    c = v.c @ w
    if b is not None:
        c = c + b
    return v.copy(
        factors=[*v.factors, w], c=np.asarray(c, dtype=np.float64), ps=(w.shape[1],), prefix=prefix
    )


def _add_lin(a: _Lin, b: _Lin, sign: float, node: onnx.NodeProto) -> _Lin:
    if a.stage != b.stage:
        raise _unsupported(node, "it combines tensors from different layers (a skip connection)")
    if a.n != b.n:
        raise _unsupported(node, f"operand widths differ ({a.n} and {b.n})")
    ma, da = _materialize(a)
    mb, db = _materialize(b)
    if da and db:
        m = ma + sign * mb
    else:
        ma = np.diag(ma) if da else ma
        mb = np.diag(mb) if db else mb
        m = ma + sign * mb
    return a.copy(factors=[m], c=a.c + sign * b.c, prefix=a.prefix or b.prefix)


# ----------------------------------------------------------------------------- the compiler


class _Compiler:
    def __init__(self, model: onnx.ModelProto, output: str | None) -> None:
        self.model = model
        g = model.graph
        self.opsets = {o.domain or "": o.version for o in model.opset_import}
        self.consts: dict[str, np.ndarray] = {}
        for init in g.initializer:
            self.consts[init.name] = numpy_helper.to_array(init)
        for sp in g.sparse_initializer:  # pragma: no cover - rare
            self.consts[sp.values.name] = numpy_helper.to_array(sp)
        inputs = [i for i in g.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise ModelError(
                f"the model must have exactly one data input, found {len(inputs)}: "
                f"{[i.name for i in inputs]}"
            )
        inp = inputs[0]
        self.input_name = inp.name
        tt = inp.type.tensor_type
        if not inp.type.HasField("tensor_type") or tt.elem_type not in _FLOAT_TYPES:
            raise ModelError(f"the model input {inp.name!r} must be a float tensor")
        dims = list(tt.shape.dim)
        if len(dims) != 2 or not dims[1].HasField("dim_value"):
            raise ModelError(
                f"the model input {inp.name!r} must have shape [batch, n_genes] with a fixed "
                f"gene count, got {[d.dim_value if d.HasField('dim_value') else d.dim_param for d in dims]}"
            )
        self.n_genes = int(dims[1].dim_value)
        self.output = self._pick_output(output)
        self.vals: dict[str, Any] = {}
        self.stage = 0
        self.weight: np.ndarray | None = None
        self.bias: np.ndarray | None = None
        self.prefix: tuple[np.ndarray, np.ndarray] | None = None
        self.builder: HeadBuilder | None = None
        self.class_labels: list[str] | None = None
        self.z_tensor: str | None = None

    # -------------------------------------------------------------- output choice
    def _pick_output(self, output: str | None) -> str:
        g = self.model.graph
        producers = {o: n for n in g.node for o in n.output}
        names = [o.name for o in g.output]
        if output is not None:
            if output not in names and output not in producers:
                raise ModelError(f"the model has no output or tensor named {output!r}")
            return self._through_zipmap(output, producers)
        cands = []
        for o in g.output:
            name = self._through_zipmap(o.name, producers)
            if name != o.name:
                cands.append(name)
                continue
            t = o.type
            if t.HasField("tensor_type") and t.tensor_type.elem_type in _FLOAT_TYPES:
                cands.append(name)
        if not cands:
            raise ModelError(f"the model has no float output among {names}")
        for want in ("logits",):
            if want in cands:
                return want
        for c in cands:
            if "prob" in c.lower():
                return c
        return cands[0]

    def _through_zipmap(self, name: str, producers: dict[str, onnx.NodeProto]) -> str:
        node = producers.get(name)
        if node is not None and node.op_type == "ZipMap":
            a = _attrs(node)
            labels = a.get("classlabels_strings") or a.get("classlabels_int64s")
            if labels:
                self._zip_labels = [x.decode() if isinstance(x, bytes) else str(x) for x in labels]
            return node.input[0]
        return name

    # -------------------------------------------------------------- driver
    def run(self) -> Compiled:
        g = self.model.graph
        needed = self._ancestors(self.output)
        v0 = _Lin(0, self.n_genes, [], np.zeros(self.n_genes), (self.n_genes,))
        self.vals[self.input_name] = v0
        for node in g.node:
            if not any(o in needed for o in node.output):
                continue
            self._eval(node)
        if self.output in self.consts:
            raise ModelError(f"the model output {self.output!r} does not depend on the input")
        out = self.vals.get(self.output)
        if out is None:
            raise ModelError(f"could not compute the model output {self.output!r}")
        return self._finish(out)

    def _ancestors(self, name: str) -> set[str]:
        producers = {o: n for n in self.model.graph.node for o in n.output}
        need: set[str] = set()
        stack = [name]
        while stack:
            t = stack.pop()
            if t in need:
                continue
            need.add(t)
            node = producers.get(t)
            if node is not None:
                stack.extend(i for i in node.input if i)
        return need

    def _get(self, name: str, node: onnx.NodeProto) -> Any:
        if name in self.consts:
            return self.consts[name]
        if name in self.vals:
            v = self.vals[name]
            if v is None:
                raise _unsupported(node, f"input {name!r} is not a float tensor of the data path")
            return v
        raise ModelError(f"{_node_desc(node)} reads {name!r}, which nothing produces")

    def _is_const(self, name: str) -> bool:
        return name == "" or name in self.consts

    # -------------------------------------------------------------- nodes
    def _eval(self, node: onnx.NodeProto) -> None:
        if all(self._is_const(i) for i in node.input) and node.op_type not in ("Shape",):
            self._fold(node)
            return
        op = node.op_type
        handler = getattr(self, f"_op_{op}", None)
        if handler is None or node.domain not in ("", "ai.onnx", "ai.onnx.ml"):
            raise _unsupported(node)
        outs = handler(node)
        if not isinstance(outs, (list, tuple)):
            outs = [outs]
        for name, v in zip(node.output, outs):
            if name:
                self.vals[name] = v
        for name in node.output[len(outs) :]:
            if name:
                self.vals[name] = None

    def _fold(self, node: onnx.NodeProto) -> None:
        from onnx.reference import ReferenceEvaluator

        feeds = {i: self.consts[i] for i in node.input if i}
        try:
            ev = ReferenceEvaluator(node, opsets=self.opsets)
            res = ev.run(None, feeds)
        except Exception as exc:
            raise ModelError(f"could not evaluate constant {_node_desc(node)}: {exc}") from exc
        for name, val in zip(node.output, res):
            if name:
                self.consts[name] = np.asarray(val)

    def _lin(self, name: str, node: onnx.NodeProto) -> _Lin:
        v = self._get(name, node)
        if not isinstance(v, _Lin):
            raise _unsupported(node, "it is applied after the output activation")
        if v.stage != self.stage:
            raise _unsupported(
                node, "the graph is not a chain of layers (branching after a nonlinearity)"
            )
        return v

    # identity-like ---------------------------------------------------------
    def _passthrough(self, node: onnx.NodeProto) -> Any:
        v = self._get(node.input[0], node)
        if isinstance(v, np.ndarray):  # pragma: no cover - folded earlier
            raise _unsupported(node)
        return v

    def _op_Identity(self, node: onnx.NodeProto) -> Any:
        return self._passthrough(node)

    def _op_Dropout(self, node: onnx.NodeProto) -> Any:
        if len(node.input) >= 3 and node.input[2]:
            tm = self.consts.get(node.input[2])
            if tm is None or bool(np.asarray(tm)):
                raise _unsupported(node, "dropout in training mode")
        if _attrs(node).get("is_test", 1) == 0 and self.opsets.get("", 0) < 7:
            raise _unsupported(node, "dropout in training mode")
        return [self._passthrough(node), None]

    def _op_Cast(self, node: onnx.NodeProto) -> Any:
        to = _attrs(node).get("to")
        if to not in _FLOAT_TYPES:
            raise _unsupported(node, "cast of the data path to a non-float type")
        return self._passthrough(node)

    def _op_Normalizer(self, node: onnx.NodeProto) -> Any:
        v = self._get(node.input[0], node)
        norm = _attrs(node).get("norm", b"MAX")
        norm = norm.decode() if isinstance(norm, bytes) else norm
        if isinstance(v, _Term) and v.activation == "softmax" and norm == "L1":
            return v  # probabilities already sum to one
        raise _unsupported(node, f"{norm} normalisation is only supported on class probabilities")

    # layout ------------------------------------------------------------------
    def _op_Flatten(self, node: onnx.NodeProto) -> Any:
        v = self._get(node.input[0], node)
        axis = _attrs(node).get("axis", 1)
        if axis != 1:
            raise _unsupported(node, "flatten that mixes the batch axis")
        if isinstance(v, _Lin):
            return v.copy(ps=(v.n,))
        return v

    def _op_Reshape(self, node: onnx.NodeProto) -> Any:
        v = self._get(node.input[0], node)
        shape = [int(s) for s in np.asarray(self._const(node.input[1], node)).reshape(-1)]
        n = v.n if isinstance(v, _Lin) else v.logits.n if isinstance(v, _Term) else 1
        if not shape or shape[0] not in (BATCH, -1, 0):
            raise _unsupported(node, f"reshape to {shape} changes the batch axis")
        rest = [BATCH if s == BATCH else s for s in shape[1:]]
        if shape[0] == -1 and (-1 in rest or BATCH in rest):
            raise _unsupported(node, f"reshape to {shape} is ambiguous")
        if BATCH in rest:
            raise _unsupported(node, f"reshape to {shape} moves the batch axis")
        if rest.count(-1) > 1:
            raise _unsupported(node, f"reshape to {shape} is ambiguous")
        known = int(np.prod([s for s in rest if s != -1])) if rest else 1
        if -1 in rest:
            if known == 0 or n % known:
                raise _unsupported(node, f"cannot reshape {n} values per sample to {shape}")
            rest = [n // known if s == -1 else s for s in rest]
        elif int(np.prod(rest)) != n:
            raise _unsupported(node, f"cannot reshape {n} values per sample to {shape}")
        if isinstance(v, _Lin):
            return v.copy(ps=tuple(rest))
        if len(rest) != 1:
            raise _unsupported(node, "reshape of the output to a non-matrix shape")
        return v

    def _axes(self, node: onnx.NodeProto) -> list[int] | None:
        if len(node.input) >= 2 and node.input[1]:
            return [int(a) for a in np.asarray(self._const(node.input[1], node)).reshape(-1)]
        axes = _attrs(node).get("axes")
        return None if axes is None else [int(a) for a in axes]

    def _op_Squeeze(self, node: onnx.NodeProto) -> Any:
        v = self._lin(node.input[0], node)
        rank = 1 + len(v.ps)
        axes = self._axes(node)
        full = [1, *v.ps]
        if axes is None:
            keep = [d for d in v.ps if d != 1]
        else:
            axes = [a % rank for a in axes]
            if 0 in axes:
                raise _unsupported(node, "squeeze of the batch axis")
            if any(full[a] != 1 for a in axes):
                raise _unsupported(node, "squeeze of a non-unit axis")
            keep = [d for i, d in enumerate(v.ps, start=1) if i not in axes]
        return v.copy(ps=tuple(keep) if keep else (1,) if v.n == 1 else ())

    def _op_Unsqueeze(self, node: onnx.NodeProto) -> Any:
        v = self._lin(node.input[0], node)
        axes = self._axes(node) or []
        rank = 1 + len(v.ps) + len(axes)
        axes = sorted(a % rank for a in axes)
        if 0 in axes:
            raise _unsupported(node, "unsqueeze before the batch axis")
        shape = [BATCH, *v.ps]
        for a in axes:
            shape.insert(a, 1)
        return v.copy(ps=tuple(shape[1:]))

    def _op_Shape(self, node: onnx.NodeProto) -> Any:
        v = self._get(node.input[0], node)
        if isinstance(v, np.ndarray):  # pragma: no cover - constant input
            shape = np.array(v.shape, dtype=np.int64)
        elif isinstance(v, _Lin):
            shape = np.array([BATCH, *v.ps], dtype=np.int64)
        else:
            raise _unsupported(node, "shape of the output")
        a = _attrs(node)
        start, end = a.get("start", 0), a.get("end", None)
        self.consts[node.output[0]] = shape[start:end]
        return []

    def _const(self, name: str, node: onnx.NodeProto) -> np.ndarray:
        if name not in self.consts:
            raise _unsupported(node, f"input {name!r} must be a constant")
        return self.consts[name]

    # elementwise ------------------------------------------------------------
    def _binary(self, node: onnx.NodeProto) -> tuple[Any, Any]:
        a = self._get(node.input[0], node)
        b = self._get(node.input[1], node)
        for x in (a, b):
            if isinstance(x, _Lin) and x.stage != self.stage:
                raise _unsupported(node, "the graph is not a chain of layers")
        return a, b

    def _op_Add(self, node: onnx.NodeProto) -> Any:
        a, b = self._binary(node)
        if isinstance(a, _Lin) and isinstance(b, _Lin):
            return _add_lin(a, b, 1.0, node)
        if isinstance(b, _Lin):
            a, b = b, a
        if not isinstance(a, _Lin):
            raise _unsupported(node, "addition after the output activation")
        return a.copy(c=a.c + _broadcast_const(b, a, node))

    def _op_Sub(self, node: onnx.NodeProto) -> Any:
        a, b = self._binary(node)
        if isinstance(a, _Lin) and isinstance(b, _Lin):
            return _add_lin(a, b, -1.0, node)
        if isinstance(a, _Lin):
            return a.copy(c=a.c - _broadcast_const(b, a, node))
        if isinstance(b, _Lin):
            k = _broadcast_const(a, b, node)
            neg = _scale(b, -np.ones(b.n))
            return neg.copy(c=neg.c + k)
        if isinstance(b, _Sig) and isinstance(a, np.ndarray) and np.all(np.asarray(a) == 1):
            return _Sig(b.logit, -b.sign, b.tensor)  # 1 − σ(l) = σ(−l)
        raise _unsupported(node, "subtraction after the output activation")

    def _op_Neg(self, node: onnx.NodeProto) -> Any:
        v = self._lin(node.input[0], node)
        return _scale(v, -np.ones(v.n))

    def _op_Mul(self, node: onnx.NodeProto) -> Any:
        a, b = self._binary(node)
        if isinstance(b, _Lin):
            a, b = b, a
        if not isinstance(a, _Lin) or not isinstance(b, np.ndarray):
            raise _unsupported(node, "product of two data-dependent tensors")
        return _scale(a, _broadcast_const(b, a, node))

    def _op_Div(self, node: onnx.NodeProto) -> Any:
        a, b = self._binary(node)
        if not isinstance(a, _Lin) or not isinstance(b, np.ndarray):
            raise _unsupported(node, "division by a data-dependent tensor")
        k = _broadcast_const(b, a, node)
        if np.any(k == 0):
            raise _unsupported(node, "division by zero")
        return _scale(a, 1.0 / k)

    def _op_Scaler(self, node: onnx.NodeProto) -> Any:
        v = self._lin(node.input[0], node)
        at = _attrs(node)
        off = _broadcast_const(np.asarray(at.get("offset", [0.0]), dtype=np.float64), v, node)
        sc = _broadcast_const(np.asarray(at.get("scale", [1.0]), dtype=np.float64), v, node)
        v = v.copy(c=v.c - off)
        return _scale(v, sc)

    # linear layers ------------------------------------------------------------
    def _matrix_input(self, node: onnx.NodeProto) -> _Lin:
        v = self._lin(node.input[0], node)
        if len(v.ps) != 1:
            raise _unsupported(node, f"input of per-sample shape {v.ps} (expected a matrix)")
        return v

    def _op_Gemm(self, node: onnx.NodeProto) -> Any:
        if node.input[0] not in self.vals or node.input[1] not in self.consts:
            raise _unsupported(node, "only data @ constant weight is supported")
        v = self._matrix_input(node)
        at = _attrs(node)
        if at.get("transA", 0):
            raise _unsupported(node, "transA=1 on the data input")
        w = np.asarray(self.consts[node.input[1]], dtype=np.float64)
        if at.get("transB", 0):
            w = w.T
        w = w * float(at.get("alpha", 1.0))
        if w.ndim != 2 or w.shape[0] != v.n:
            raise _unsupported(node, f"weight of shape {w.shape} for an input of width {v.n}")
        b = None
        if len(node.input) >= 3 and node.input[2]:
            cst = np.asarray(self._const(node.input[2], node), dtype=np.float64)
            cst = cst * float(at.get("beta", 1.0))
            if cst.ndim == 2:
                if cst.shape[0] != 1:
                    raise _unsupported(node, "bias varies along the batch axis")
                cst = cst[0]
            b = np.broadcast_to(cst, (w.shape[1],)).astype(np.float64)
        return _matmul(v, np.ascontiguousarray(w), b)

    def _op_MatMul(self, node: onnx.NodeProto) -> Any:
        if node.input[0] not in self.vals or node.input[1] not in self.consts:
            raise _unsupported(node, "only data @ constant weight is supported")
        v = self._matrix_input(node)
        w = np.asarray(self.consts[node.input[1]], dtype=np.float64)
        if w.ndim != 2 or w.shape[0] != v.n:
            raise _unsupported(node, f"weight of shape {w.shape} for an input of width {v.n}")
        return _matmul(v, np.ascontiguousarray(w), None)

    def _op_BatchNormalization(self, node: onnx.NodeProto) -> Any:
        v = self._matrix_input(node)
        at = _attrs(node)
        if at.get("training_mode", 0):
            raise _unsupported(node, "batch normalisation in training mode")
        scale, bias, mean, var = (
            np.asarray(self._const(i, node), dtype=np.float64).reshape(-1) for i in node.input[1:5]
        )
        eps = float(at.get("epsilon", 1e-5))
        a = scale / np.sqrt(var + eps)
        a = np.broadcast_to(a, (v.n,)).astype(np.float64)
        shift = np.broadcast_to(bias - mean * a, (v.n,))
        out = _scale(v, a)
        return [out.copy(c=out.c + shift)] + [None] * (len(node.output) - 1)

    # nonlinearities -----------------------------------------------------------
    def _close_stage(self, v: _Lin) -> None:
        """Emit everything affine up to ``v`` (the input of a nonlinearity or the logits)."""
        m, diag = _materialize(v)
        if v.stage == 0:
            w = np.diag(m) if diag else m
            self.weight = np.ascontiguousarray(w, dtype=np.float64)
            self.bias = np.ascontiguousarray(v.c, dtype=np.float64)
            self.prefix = v.prefix if v.prefix is not None else ((m, v.c) if diag else None)
            self.builder = HeadProgram.builder(v.n)
            return
        assert self.builder is not None
        if diag:
            if not (np.all(m == 1.0) and np.all(v.c == 0.0)):
                self.builder.scale(m, v.c)
        else:
            self.builder.affine(m.T, v.c)

    def _nonlinear(self, node: onnx.NodeProto, kind: str, alpha: float = 0.0) -> _Lin:
        v = self._lin(node.input[0], node)
        if v.stage == 0 and len(v.ps) == 1:
            self.z_tensor = node.input[0]
        self._close_stage(v)
        assert self.builder is not None
        if kind == "relu":
            self.builder.relu()
        elif kind == "leaky":
            self.builder.leaky_relu(alpha)
        elif kind == "sigmoid":
            self.builder.sigmoid()
        else:
            self.builder.tanh()
        self.stage += 1
        return _Lin(self.stage, v.n, [], np.zeros(v.n), v.ps)

    def _is_final(self, node: onnx.NodeProto) -> bool:
        """Whether ``node``'s output reaches the chosen output through no other nonlinearity."""
        consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in self.model.graph.node:
            for i in n.input:
                consumers.setdefault(i, []).append(n)
        need = self._ancestors(self.output)
        passive = {
            "Identity",
            "Cast",
            "Sub",
            "Concat",
            "Normalizer",
            "Reshape",
            "Flatten",
            "ZipMap",
        }
        stack = [node.output[0]]
        seen = set()
        while stack:
            t = stack.pop()
            if t in seen:
                continue
            seen.add(t)
            for n in consumers.get(t, []):
                if not any(o in need for o in n.output):
                    continue
                if n.op_type not in passive:
                    return False
                stack.extend(n.output)
        return True

    def _op_Relu(self, node: onnx.NodeProto) -> Any:
        return self._nonlinear(node, "relu")

    def _op_LeakyRelu(self, node: onnx.NodeProto) -> Any:
        return self._nonlinear(node, "leaky", float(_attrs(node).get("alpha", 0.01)))

    def _op_PRelu(self, node: onnx.NodeProto) -> Any:
        slope = np.asarray(self._const(node.input[1], node), dtype=np.float64).reshape(-1)
        if slope.size == 0 or not np.all(slope == slope[0]):
            raise _unsupported(node, "PRelu with per-channel slopes")
        return self._nonlinear(node, "leaky", float(slope[0]))

    def _op_Tanh(self, node: onnx.NodeProto) -> Any:
        return self._nonlinear(node, "tanh")

    def _op_Sigmoid(self, node: onnx.NodeProto) -> Any:
        v = self._lin(node.input[0], node)
        if self._is_final(node):
            if v.n != 1:
                raise _unsupported(
                    node,
                    f"a final sigmoid over {v.n} outputs (multi-label); gexplain explains "
                    "single-label classifiers (softmax over classes, or one sigmoid logit)",
                )
            return _Sig(v, 1.0, node.input[0])
        return self._nonlinear(node, "sigmoid")

    def _softmax_axis_ok(self, node: onnx.NodeProto, v: _Lin) -> bool:
        axis = _attrs(node).get("axis", -1 if self.opsets.get("", 13) >= 13 else 1)
        return len(v.ps) == 1 and axis in (1, -1)

    def _op_Softmax(self, node: onnx.NodeProto) -> Any:
        return self._final_softmax(node, "softmax")

    def _op_LogSoftmax(self, node: onnx.NodeProto) -> Any:
        return self._final_softmax(node, "log_softmax")

    def _final_softmax(self, node: onnx.NodeProto, kind: str) -> Any:
        v = self._lin(node.input[0], node)
        if not self._softmax_axis_ok(node, v):
            raise _unsupported(node, "softmax over an axis other than the classes")
        if not self._is_final(node):
            raise _unsupported(node, f"{node.op_type} inside the network (only as the output)")
        return _Term(v, kind, node.input[0], "identity")

    def _op_Concat(self, node: onnx.NodeProto) -> Any:
        parts = [self._get(i, node) for i in node.input]
        axis = _attrs(node).get("axis")
        if (
            len(parts) == 2
            and all(isinstance(p, _Sig) for p in parts)
            and parts[0].logit is parts[1].logit
            and parts[0].sign == -parts[1].sign
            and axis in (1, -1)
        ):
            s2 = parts[1].sign
            return self._binary_term(parts[1].logit, s2, parts[1].tensor)
        raise _unsupported(node, "concatenation on the data path")

    def _binary_term(self, logit: _Lin, sign: float, tensor: str) -> _Term:
        """Two logits ``[0, sign · l]`` for a single sigmoid logit ``l``."""
        p = np.array([[0.0, sign]])
        two = logit.copy(factors=[*logit.factors, p], c=logit.c @ p, ps=(2,))
        return _Term(two, "sigmoid", tensor, "binary", sign)

    def _op_LinearClassifier(self, node: onnx.NodeProto) -> Any:
        v = self._matrix_input(node)
        at = _attrs(node)
        coef = np.asarray(at["coefficients"], dtype=np.float64)
        labels = at.get("classlabels_strings") or at.get("classlabels_ints")
        n_labels = len(labels) if labels is not None else None
        rows = coef.size // v.n
        if rows * v.n != coef.size:
            raise _unsupported(node, f"{coef.size} coefficients for {v.n} inputs")
        coef = coef.reshape(rows, v.n)
        icpt = np.asarray(at.get("intercepts", [0.0] * rows), dtype=np.float64)
        post = at.get("post_transform", b"NONE")
        post = post.decode() if isinstance(post, bytes) else post
        if labels is not None:
            self.class_labels = [x.decode() if isinstance(x, bytes) else str(x) for x in labels]
        scores = _matmul(v, np.ascontiguousarray(coef.T), icpt)
        patch = {"node": node.output[1], "post_transform": b"NONE"}
        if post == "SOFTMAX":
            return [None, _Term(scores, "softmax", node.output[1], "identity", patch=patch)]
        if post == "NONE":
            return [None, scores]
        if post == "LOGISTIC":
            binary = n_labels == 2 and (
                rows == 1
                or (rows == 2 and np.allclose(coef[0], -coef[1]) and np.isclose(icpt[0], -icpt[1]))
            )
            if binary:
                one = _matmul(v, np.ascontiguousarray(coef[-1:].T), icpt[-1:])
                t = self._binary_term(one, 1.0, node.output[1])
                t.recipe = "binary_last"
                t.patch = patch
                return [None, t]
            raise _unsupported(
                node,
                "one-vs-rest logistic scores (LOGISTIC post-transform over several classes) "
                "are not a softmax model; refit LogisticRegression (multinomial) instead",
            )
        raise _unsupported(node, f"post_transform {post!r}")

    def _op_ZipMap(self, node: onnx.NodeProto) -> Any:  # pragma: no cover - traced through
        return self._passthrough(node)

    def _afe_labels(self) -> list[str] | None:
        """Class labels skl2onnx stores for ``ArrayFeatureExtractor(classes, ArgMax(probs))``."""
        g = self.model.graph
        argmax = {
            n.output[0] for n in g.node if n.op_type == "ArgMax" and n.input[0] == self.output
        }
        for n in g.node:
            if n.op_type == "ArrayFeatureExtractor" and n.input[1] in argmax:
                labels = self.consts.get(n.input[0])
                if labels is None:
                    for init in g.initializer:
                        if init.name == n.input[0]:
                            labels = numpy_helper.to_array(init)
                if labels is not None:
                    return [x.decode() if isinstance(x, bytes) else str(x) for x in labels.ravel()]
        return None

    # -------------------------------------------------------------- finish
    def _finish(self, out: Any) -> Compiled:
        if isinstance(out, _Sig):
            out = self._binary_term(out.logit, out.sign, out.tensor)
        if isinstance(out, _Term):
            logits, activation = out.logits, out.activation
            tensor, recipe, sign, patch = out.tensor, out.recipe, out.sign, out.patch
        elif isinstance(out, _Lin):
            logits, activation = out, None
            tensor, recipe, sign, patch = self.output, "identity", 1.0, {}
        else:
            raise ModelError(f"the model output {self.output!r} is not a float tensor")
        if logits.stage != self.stage:
            raise ModelError("the logits do not come from the last layer (non-sequential graph)")
        if len(logits.ps) != 1:
            raise ModelError(f"the logits have per-sample shape {logits.ps}, expected a vector")
        if logits.stage == 0 and recipe == "identity" and not patch:
            self.z_tensor = tensor  # a linear model: z are the logits
        self._close_stage(logits)
        assert self.weight is not None and self.bias is not None and self.builder is not None
        head = self.builder.build()
        if self.prefix is not None:
            a, c = self.prefix
            a = np.broadcast_to(a, (self.n_genes,))
            c = np.broadcast_to(c, (self.n_genes,))
            zero = np.zeros(self.n_genes)
            nz = a != 0
            zero[nz] = -c[nz] / a[nz]
        else:
            zero = np.zeros(self.n_genes)
        labels = self.class_labels or getattr(self, "_zip_labels", None) or self._afe_labels()
        return Compiled(
            weight=self.weight,
            bias=self.bias,
            head=head,
            model_zero=np.ascontiguousarray(zero, dtype=np.float64),
            output_activation=activation,
            input_name=self.input_name,
            logit_tensor=tensor,
            logit_recipe=recipe,
            logit_sign=sign,
            patch=patch,
            class_labels=labels,
            z_tensor=self.z_tensor,
        )


def compile_graph(model: onnx.ModelProto, output: str | None = None) -> Compiled:
    """Compile ``model`` (already loaded and checked) into weight, bias and head.

    Parameters
    ----------
    model
        The ONNX model.
    output
        Name of the graph output (or tensor) to explain; by default ``logits``,
        else the output whose name contains ``prob``, else the first float output.

    Raises
    ------
    ModelError
        On an op (or op use) outside :data:`SUPPORTED_OPS`, naming the node.
    """
    return _Compiler(model, output).run()


# ----------------------------------------------------------------------------- reference graph


def reference_graph(
    model: onnx.ModelProto, compiled: Compiled, double: bool, with_z: bool = False
) -> onnx.ModelProto:
    """The model cut at its logits tensor (for onnxruntime), optionally in float64.

    The returned graph's first output is the tensor the logits are read from
    (with ``with_z``, a second output holds the first pre-activation ``z``);
    ``double=True`` converts every float initializer, constant, cast and the
    input to float64 so onnxruntime's forward pass is exact to ~1e-15.
    """
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    target = compiled.logit_tensor
    producers = {o: n for n in g.node for o in n.output}
    need: set[str] = set()
    stack = [target]
    while stack:
        t = stack.pop()
        if t in need:
            continue
        need.add(t)
        node = producers.get(t)
        if node is not None:
            stack.extend(i for i in node.input if i)
    keep = [n for n in g.node if any(o in need for o in n.output)]
    patch = compiled.patch
    for n in keep:
        if patch and patch.get("node") in n.output:
            for a in n.attribute:
                if a.name == "post_transform":
                    a.s = patch["post_transform"]
    del g.node[:]
    g.node.extend(keep)
    del g.output[:]
    del g.value_info[:]
    elem = TensorProto.DOUBLE if double else TensorProto.FLOAT
    if double:
        _to_double(g)
    inputs = [i for i in g.input if i.name == compiled.input_name]
    others = [i for i in g.input if i.name != compiled.input_name and i.name in need]
    del g.input[:]
    g.input.extend(inputs + others)
    g.input[0].type.tensor_type.elem_type = elem
    inits = [i for i in g.initializer if i.name in need]
    del g.initializer[:]
    g.initializer.extend(inits)
    ml_out = any(n.domain == "ai.onnx.ml" and target in n.output for n in keep)
    g.output.append(
        helper.make_tensor_value_info(target, TensorProto.FLOAT if ml_out else elem, None)
    )
    z = compiled.z_tensor
    if with_z and z is not None and z != target and z in need:
        g.output.append(helper.make_tensor_value_info(z, elem, None))
    return m


def _to_double(g: onnx.GraphProto) -> None:
    for i, init in enumerate(g.initializer):
        if init.data_type == TensorProto.FLOAT:
            arr = numpy_helper.to_array(init).astype(np.float64)
            g.initializer[i].CopyFrom(numpy_helper.from_array(arr, init.name))
    for n in g.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == TensorProto.FLOAT:
                arr = numpy_helper.to_array(a.t).astype(np.float64)
                a.t.CopyFrom(numpy_helper.from_array(arr, a.t.name))
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name in ("value_float", "value_floats"):
                    vals = np.asarray(helper.get_attribute_value(a), dtype=np.float64)
                    n.ClearField("attribute")
                    n.attribute.append(
                        helper.make_attribute("value", numpy_helper.from_array(vals))
                    )
                    break
        if n.op_type == "Cast":
            for a in n.attribute:
                if a.name == "to" and a.i in (TensorProto.FLOAT, TensorProto.FLOAT16):
                    a.i = TensorProto.DOUBLE
