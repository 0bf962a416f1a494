"""The :class:`CompiledModel`: an ONNX classifier as ``head(x @ weight + bias)``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..errors import InputError, ModelError
from ..head import HeadProgram, output_mode
from ..modelmeta import ModelMetadata, prepare_cohort, read_metadata
from ._onnx import Compiled, compile_graph, reference_graph

#: Rows per onnxruntime run.
_ORT_ROWS = 64


def _threads() -> int:
    import numba

    return int(numba.get_num_threads())


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax (float64)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax (float64)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def output_values(logits: np.ndarray, targets: np.ndarray, output: str) -> np.ndarray:
    """The explained scalar for each row of ``logits`` and each target column.

    Parameters
    ----------
    logits
        ``(n, C)`` logits.
    targets
        ``(n,)`` or ``(n, T)`` class indices.
    output
        ``logit``, ``probability`` or ``log_probability``.

    Returns
    -------
    numpy.ndarray
        Same shape as ``targets`` (float64).
    """
    output_mode(output)
    t = np.asarray(targets, dtype=np.int64)
    squeeze = t.ndim == 1
    t2 = t[:, None] if squeeze else t
    lg = np.asarray(logits, dtype=np.float64)
    if output == "logit":
        q = lg
    elif output == "probability":
        q = softmax(lg)
    else:
        q = log_softmax(lg)
    out = np.take_along_axis(q, t2, axis=1)
    return out[:, 0] if squeeze else out


class CompiledModel:
    """An ONNX classifier compiled into the normal form ``logits = head(x @ weight + bias)``.

    Build one with :meth:`load` (or :func:`compile_model`). The first linear map
    has every affine op before the first nonlinearity folded in (input
    z-scoring, a diffusion matrix, BatchNorm after the first layer, ...);
    ``head`` is the rest, up to the logits (a final Softmax/LogSoftmax is
    stripped and recorded in :attr:`output_activation`; a single sigmoid logit
    ``l`` becomes the two logits ``[0, l]``).

    Attributes
    ----------
    weight : numpy.ndarray
        ``(n_genes, n_hidden)`` float64, C-contiguous.
    bias : numpy.ndarray
        ``(n_hidden,)`` float64.
    head : HeadProgram
        From the first pre-activation ``z`` to the logits.
    model_zero : numpy.ndarray
        ``(n_genes,)``: the input mapped to zero by the model's elementwise input
        prefix (the training mean when z-scoring is folded; zeros without prefix).
    output_activation : str or None
        ``softmax``, ``log_softmax``, ``sigmoid`` or ``None`` (the graph ends at logits).
    class_names : list of str
    gene_ids : list of str or None
    metadata : ModelMetadata
    path : pathlib.Path or None

    Examples
    --------
    >>> from gexplain.explain import CompiledModel
    >>> model = CompiledModel.load("models/mlp-seed0.onnx")  # doctest: +SKIP
    >>> model.logits(X)  # doctest: +SKIP
    """

    def __init__(
        self,
        proto: onnx.ModelProto,
        compiled: Compiled,
        metadata: ModelMetadata,
        path: Path | None = None,
    ) -> None:
        self._proto = proto
        self._compiled = compiled
        self.weight = compiled.weight
        self.bias = compiled.bias
        self.head: HeadProgram = compiled.head
        self.model_zero = compiled.model_zero
        self.output_activation = compiled.output_activation
        self.metadata = metadata
        self.path = path
        n_classes = self.head.n_out
        if metadata.class_names is not None:
            names = [str(c) for c in metadata.class_names]
        elif compiled.class_labels is not None:
            names = list(compiled.class_labels)
        else:
            names = [str(i) for i in range(n_classes)]
        if len(names) != n_classes:
            raise ModelError(
                f"the model metadata lists {len(names)} class names but the model has "
                f"{n_classes} outputs"
            )
        self.class_names: list[str] = names
        if metadata.gene_ids is not None and len(metadata.gene_ids) != self.n_genes:
            raise ModelError(
                f"the model metadata lists {len(metadata.gene_ids)} gene ids but the model "
                f"input has {self.n_genes} columns"
            )
        self.gene_ids: list[str] | None = (
            None if metadata.gene_ids is None else [str(g) for g in metadata.gene_ids]
        )
        self._session: Any = None
        self.ort_precision: str | None = None
        self._weight32_t: np.ndarray | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(
        cls,
        source: str | os.PathLike[str] | onnx.ModelProto | CompiledModel,
        *,
        check: bool = True,
        output: str | None = None,
    ) -> CompiledModel:
        """Load and compile an ONNX model.

        Parameters
        ----------
        source
            Path of an ``.onnx`` file, an :class:`onnx.ModelProto`, or a
            CompiledModel (returned as is).
        check
            Run :func:`onnx.checker.check_model` first.
        output
            Graph output to explain (default: ``logits``, else a ``prob...``
            output, else the first float output).

        Raises
        ------
        ModelError
            If the file is not a valid ONNX model or uses an unsupported op.
        """
        if isinstance(source, CompiledModel):
            return source
        path: Path | None = None
        if isinstance(source, onnx.ModelProto):
            proto = source
        else:
            path = Path(source)
            if not path.is_file():
                raise InputError("model file not found", path=path)
            try:
                proto = onnx.load(str(path))
            except Exception as exc:
                raise InputError(f"not an ONNX model: {exc}", path=path) from exc
        if check:
            try:
                onnx.checker.check_model(proto)
            except onnx.checker.ValidationError as exc:
                where = f"{path}: " if path else ""
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise ModelError(f"{where}invalid ONNX model: {first}") from exc
        try:
            compiled = compile_graph(proto, output)
        except ModelError as exc:
            if path is not None:
                raise ModelError(f"{path}: {exc}") from exc
            raise
        meta = read_metadata(proto, path)
        return cls(proto, compiled, meta, path)

    # ------------------------------------------------------------------ sizes
    @property
    def n_genes(self) -> int:
        """Number of model inputs (genes), G."""
        return int(self.weight.shape[0])

    @property
    def n_hidden(self) -> int:
        """Width H of the first pre-activation ``z`` (the number of classes for a linear model)."""
        return int(self.weight.shape[1])

    @property
    def n_classes(self) -> int:
        """Number of logits, C."""
        return self.head.n_out

    @property
    def is_linear(self) -> bool:
        """Whether the logits are affine in the input (logistic regression)."""
        return self.head.is_affine

    @property
    def is_piecewise_linear(self) -> bool:
        """Whether every hidden nonlinearity is ReLU/LeakyReLU (exact IG applies)."""
        return self.head.is_piecewise_linear

    @property
    def weight32_t(self) -> np.ndarray:
        """``weightᵀ`` rounded to float32, C-contiguous ``(H, G)`` (made once).

        The pull-back's operand: BLAS packs a row-major ``(H, G)`` matrix about
        twice as fast as the transposed view of ``weight`` when the product has
        few rows.
        """
        if self._weight32_t is None:
            self._weight32_t = np.ascontiguousarray(self.weight.T, dtype=np.float32)
        return self._weight32_t

    @property
    def proto(self) -> onnx.ModelProto:
        """The ONNX model this was compiled from."""
        return self._proto

    def __repr__(self) -> str:
        ops = " → ".join(self.head.ops)
        return (
            f"CompiledModel: {self.n_genes} genes → {self.n_hidden} → [{ops}] → "
            f"{self.n_classes} classes"
            + (f" ({self.output_activation} stripped)" if self.output_activation else "")
        )

    # ------------------------------------------------------------------ inputs
    def _matrix(self, X: Any) -> np.ndarray:
        from ..cohort import Cohort

        if isinstance(X, Cohort):
            X = self.prepare(X).expression
        x = np.asarray(X)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2:
            raise InputError(f"expected a 2-D samples × genes array, got shape {x.shape}")
        if x.shape[1] != self.n_genes:
            raise InputError(
                f"the input has {x.shape[1]} columns but the model expects {self.n_genes} genes"
            )
        return x

    def prepare(self, cohort: Any, fill: float | None = None) -> Any:
        """Check ``cohort`` against the model and align its genes to the model's (by id).

        Parameters
        ----------
        cohort
            A :class:`gexplain.Cohort`.
        fill
            Value for model genes the cohort lacks (``None`` refuses them).
        """
        out = prepare_cohort(cohort, self.metadata, fill=fill)
        if out.n_genes != self.n_genes:
            from ..errors import AlignmentError

            raise AlignmentError(
                f"the cohort has {out.n_genes} genes but the model expects {self.n_genes} "
                "(and records no gene ids to align them by)"
            )
        return out

    # ------------------------------------------------------------------ forward
    def first_layer(self, X: Any) -> np.ndarray:
        """The first pre-activation ``z = x @ weight + bias`` (float64, n × H).

        Computed by :func:`~gexplain.explain._linalg.matmul_rows`: a row's value
        does not depend on the thread count or on the other rows.
        """
        from ._linalg import matmul_rows

        z = matmul_rows(self._matrix(X), self.weight)
        z += self.bias
        return z

    def logits(self, X: Any) -> np.ndarray:
        """Logits (pre-softmax scores), float64 ``(n, n_classes)``, from the compiled form."""
        return self.head.forward(self.first_layer(X))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (softmax of the logits)."""
        return softmax(self.logits(X))

    def predict(self, X: Any) -> np.ndarray:
        """Predicted class *index* per row (``class_names[i]`` is its name)."""
        return np.argmax(self.logits(X), axis=1)

    # ------------------------------------------------------------------ reference
    def _ort(self) -> Any:
        if self._session is None:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            # one thread per run: a row's result then does not depend on the other
            # rows of the batch; rows are spread over threads by ort_forward instead
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            for double in (True, False):
                ref = reference_graph(self._proto, self._compiled, double, with_z=double)
                try:
                    self._session = ort.InferenceSession(
                        ref.SerializeToString(), opts, providers=["CPUExecutionProvider"]
                    )
                except Exception:
                    if not double:
                        raise
                    continue
                ml_out = any(
                    n.domain == "ai.onnx.ml" and self._compiled.logit_tensor in n.output
                    for n in ref.graph.node
                )
                self.ort_precision = "float64" if double and not ml_out else "float32"
                self._ort_dtype = np.float64 if double else np.float32
                outs = [o.name for o in self._session.get_outputs()]
                z = self._compiled.z_tensor
                self._z_index = (
                    None
                    if self.ort_precision != "float64" or z is None
                    else (outs.index(z) if z in outs else 0)
                )
                break
        return self._session

    def ort_forward(self, X: Any, *, with_z: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits from onnxruntime and, if asked and available, the first pre-activation.

        The graph is cut at its logits tensor and, where onnxruntime supports it,
        converted to float64 (:attr:`ort_precision` tells which ran). Runs are
        single-threaded on blocks of rows spread over a thread pool, so every
        row's result is the same whatever the batch and thread count.

        Returns
        -------
        logits : numpy.ndarray
            ``(n, C)`` float64.
        z : numpy.ndarray or None
            ``(n, H)`` float64 value of the graph tensor equal to
            ``x @ weight + bias`` (``None`` unless ``with_z`` and the graph has
            such a tensor computed in float64).
        """
        from concurrent.futures import ThreadPoolExecutor

        x = self._matrix(X)
        sess = self._ort()
        name = self._compiled.input_name
        n = x.shape[0]
        zi = self._z_index if with_z else None
        logits_raw: list[Any] = [None] * max(1, -(-n // _ORT_ROWS))
        zs: list[Any] = [None] * len(logits_raw)

        def work(i: int) -> None:
            blk = np.ascontiguousarray(
                x[i * _ORT_ROWS : (i + 1) * _ORT_ROWS], dtype=self._ort_dtype
            )
            res = sess.run(None, {name: blk})
            logits_raw[i] = np.asarray(res[0], dtype=np.float64)
            if zi is not None:
                zs[i] = np.asarray(res[zi], dtype=np.float64)

        blocks = range(len(logits_raw))
        threads = min(_threads(), len(logits_raw))
        if threads <= 1:
            for i in blocks:
                work(i)
        else:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(work, blocks))
        t = np.concatenate(logits_raw).reshape(n, -1)
        z = None if zi is None else np.concatenate(zs).reshape(n, -1)
        recipe = self._compiled.logit_recipe
        if recipe != "identity":
            col = t[:, -1] if recipe == "binary_last" else t[:, 0]
            t = np.stack([np.zeros_like(col), self._compiled.logit_sign * col], axis=1)
        return t, z

    def ort_logits(self, X: Any) -> np.ndarray:
        """Logits from onnxruntime (the reference forward pass), float64 ``(n, C)``."""
        return self.ort_forward(X)[0]

    def ort_predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities from onnxruntime logits."""
        return softmax(self.ort_logits(X))


def compile_model(
    source: str | os.PathLike[str] | onnx.ModelProto | CompiledModel,
    *,
    check: bool = True,
    output: str | None = None,
) -> CompiledModel:
    """Load and compile an ONNX model (same as :meth:`CompiledModel.load`)."""
    return CompiledModel.load(source, check=check, output=output)
