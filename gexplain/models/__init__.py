"""Models: LR, MLP and diffused variants — torch training, ONNX export, onnxruntime predictions.

The paper's architectures (Bontonou et al. 2023):

- ``lr``: Dropout(0.2) → Linear(G, C)
- ``mlp``: Linear(G, 20) → BatchNorm1d → ReLU → Linear(20, C)
- ``diffuse-lr`` / ``diffuse-mlp``: the same on ``S z``, with ``S`` the
  normalised gene–gene correlation graph of the training split
  (:func:`correlation_graph`, :func:`diffusion_operator`)

trained with cross-entropy and SGD (lr 0.1, momentum 0.9, weight decay 1e-4,
batch 32, 25 epochs, MultiStepLR γ 0.1 at epochs 12 and 22) on inputs z-scored
with training statistics. The z-score (and ``S``) are folded into the exported
ONNX graph, so every later stage feeds the cohort's stored values.

This package imports without torch; :func:`fit` and :func:`train_models`
import it when they train. Prediction (:func:`predict`) uses onnxruntime.

Examples
--------
>>> import gexplain as gx
>>> summary = gx.models.train_models("cohort/", ["lr", "mlp"], range(3), "models/")  # doctest: +SKIP
>>> frame = gx.models.predict("models/mlp-seed0.onnx", "cohort/", split="test")  # doctest: +SKIP
"""

from ._export import INPUT_NAME, OPSET, OUTPUT_NAME, build_onnx
from ._graph import (
    GRAPH_FILE,
    correlation_graph,
    diffusion_operator,
    graph_info,
    graph_sha256,
    read_graph,
    write_graph,
)
from ._model import KINDS, TrainedModel, model_name, model_stem, training_record
from ._predict import (
    LoadedModel,
    balanced_accuracy,
    confusion_counts,
    load_model,
    predict,
    summarize,
)
from ._sklearn import export_sklearn
from ._train import (
    Graph,
    TrainConfig,
    TrainingData,
    fit,
    parse_kinds,
    train_models,
    write_tables,
)

__all__ = [
    "GRAPH_FILE",
    "INPUT_NAME",
    "KINDS",
    "OPSET",
    "OUTPUT_NAME",
    "Graph",
    "LoadedModel",
    "TrainConfig",
    "TrainedModel",
    "TrainingData",
    "balanced_accuracy",
    "build_onnx",
    "confusion_counts",
    "correlation_graph",
    "diffusion_operator",
    "export_sklearn",
    "fit",
    "graph_info",
    "graph_sha256",
    "load_model",
    "model_name",
    "model_stem",
    "parse_kinds",
    "predict",
    "read_graph",
    "summarize",
    "train_models",
    "training_record",
    "write_graph",
    "write_tables",
]
