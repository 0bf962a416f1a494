"""Export fitted scikit-learn classifiers to ONNX with gexplain's metadata (torch-free).

skl2onnx writes ``LinearClassifier`` (+ ``Normalizer``) for ``LogisticRegression``
and ``MatMul``/``Add``/``Relu``/``Softmax`` for ``MLPClassifier``; with
``zipmap=False`` the outputs are ``label`` and ``probabilities`` [batch, C].
The input is named ``expression`` [batch, G] float32 like gexplain's models.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from .._atomic import atomic_file
from ..errors import ModelError
from ..modelmeta import ModelMetadata, write_metadata
from ._export import INPUT_NAME, OPSET

__all__ = ["export_sklearn"]


def _final_estimator(estimator: Any) -> Any:
    steps = getattr(estimator, "steps", None)
    return steps[-1][1] if steps else estimator


def export_sklearn(
    estimator: Any,
    gene_ids: Sequence[str],
    path: str | os.PathLike[str] | None = None,
    *,
    class_names: Sequence[str] | None = None,
    preprocessing: Sequence[str] = (),
    model_kind: str | None = None,
    seed: int | None = None,
    training_data_sha256: str | None = None,
    input_scaling: dict[str, Any] | None = None,
) -> onnx.ModelProto:
    """Convert a fitted scikit-learn classifier to ONNX and attach gexplain's metadata.

    Parameters
    ----------
    estimator
        A fitted ``LogisticRegression``, ``MLPClassifier`` (or a ``Pipeline``
        ending in one, if skl2onnx converts its steps).
    gene_ids
        The input genes, in the column order the estimator was fitted on.
    path
        Where to write the ``.onnx`` file (atomically); ``None`` only returns it.
    class_names
        Output class names; default ``estimator.classes_`` as strings.
    preprocessing
        The cohort's value transforms at training time (``cohort.value_transforms``).
    model_kind
        Default ``sklearn-lr`` / ``sklearn-mlp`` / ``sklearn``.
    seed, training_data_sha256, input_scaling
        Recorded as given.

    Returns
    -------
    onnx.ModelProto
        Input ``expression`` [batch, G]; outputs ``label`` and ``probabilities``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> x = np.array([[0.0, 1.0], [1.0, 0.0], [0.1, 0.9], [0.9, 0.2]])
    >>> clf = LogisticRegression().fit(x, ["a", "b", "a", "b"])
    >>> m = export_sklearn(clf, ["G1", "G2"])
    >>> [o.name for o in m.graph.output]
    ['label', 'probabilities']
    """
    try:
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise ImportError("export_sklearn needs skl2onnx: pip install 'gexplain[sklearn]'") from exc
    final = _final_estimator(estimator)
    if not hasattr(final, "classes_"):
        raise ModelError("the estimator is not a fitted classifier (no classes_)")
    ids = [str(g) for g in gene_ids]
    n_features = getattr(estimator, "n_features_in_", None)
    if n_features is not None and n_features != len(ids):
        raise ModelError(
            f"the estimator was fitted on {n_features} features but {len(ids)} gene ids were given"
        )
    names = [str(c) for c in (class_names if class_names is not None else final.classes_)]
    if len(names) != len(final.classes_):
        raise ModelError(f"{len(names)} class names for {len(final.classes_)} classes")
    model = convert_sklearn(
        estimator,
        initial_types=[(INPUT_NAME, FloatTensorType([None, len(ids)]))],
        options={id(final): {"zipmap": False}},
        target_opset={"": OPSET, "ai.onnx.ml": 3},
    )
    if model_kind is None:
        cls = type(final).__name__
        model_kind = {"LogisticRegression": "sklearn-lr", "MLPClassifier": "sklearn-mlp"}.get(
            cls, "sklearn"
        )
    meta = ModelMetadata(
        model_kind=model_kind,
        seed=seed,
        class_names=names,
        gene_ids=ids,
        preprocessing=list(preprocessing),
        input_scaling=input_scaling,
        training_data_sha256=training_data_sha256,
    )
    write_metadata(model, meta, path)
    onnx.checker.check_model(model)
    if path is not None:
        with atomic_file(Path(path)) as tmp:
            onnx.save_model(model, tmp)
    return model


def _probabilities_of(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """Run a model's ``probabilities`` output with onnxruntime (test helper)."""
    import onnxruntime as ort

    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(["probabilities"], {INPUT_NAME: x.astype(np.float32)})[0]
