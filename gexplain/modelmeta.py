"""The metadata gexplain stores in an ONNX model's ``metadata_props``.

Training writes it, every later stage reads it (explain, evaluate, predict) to
align cohort genes by id and to check the cohort was preprocessed the same way.
ONNX files from elsewhere (a user's ``torch.onnx.export``, skl2onnx) have none of
these keys; then gene alignment is by the user's word (numpy input) and class
names default to ``"0", "1", ...``.

Keys (all strings; lists and dicts are JSON):

=============================  ==============================================
``gexplain.version``           gexplain version that wrote the model
``gexplain.model_kind``        ``lr``, ``mlp``, ``diffuse-lr``, ``diffuse-mlp``, ...
``gexplain.seed``              training seed
``gexplain.class_names``       JSON list, in output order
``gexplain.gene_ids``          JSON list of input gene ids, in input order
                               (omitted above 200,000 genes: then a sidecar
                               ``MODEL.genes.txt``, one id per line)
``gexplain.gene_ids_sha256``   SHA-256 of the ids joined by newlines
``gexplain.preprocessing``     JSON list of the cohort value transforms the
                               model expects (e.g. ``["log2p1"]``)
``gexplain.input_scaling``     JSON ``{"kind": "zscore", "folded": true}``
                               describing the affine input transform folded
                               into the graph (its zero is the "model-zero"
                               baseline)
``gexplain.training_data_sha256``  hash of the training matrix and labels
``gexplain.graph``             file name of the diffusion graph beside the
                               model (diffused models)
=============================  ==============================================
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from ._version import __version__

PREFIX = "gexplain."
MAX_INLINE_GENES = 200_000


def gene_ids_hash(gene_ids: Sequence[str]) -> str:
    """SHA-256 hex digest of gene ids joined by newlines."""
    return hashlib.sha256("\n".join(gene_ids).encode()).hexdigest()


@dataclass
class ModelMetadata:
    """gexplain's view of an ONNX model's metadata (all optional for foreign models)."""

    model_kind: str | None = None
    seed: int | None = None
    class_names: list[str] | None = None
    gene_ids: list[str] | None = None
    gene_ids_sha256: str | None = None
    preprocessing: list[str] = field(default_factory=list)
    input_scaling: dict[str, Any] | None = None
    training_data_sha256: str | None = None
    graph: str | None = None
    version: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def is_gexplain(self) -> bool:
        """Whether the model was written by gexplain (has our version key)."""
        return self.version is not None


def write_metadata(
    model: onnx.ModelProto, meta: ModelMetadata, path: str | os.PathLike[str] | None = None
) -> None:
    """Set gexplain's ``metadata_props`` on ``model`` (in place).

    If there are more than :data:`MAX_INLINE_GENES` gene ids and ``path`` (the
    model's future file path) is given, the ids go to a sidecar ``.genes.txt``.
    """
    props: dict[str, str] = {"version": __version__}
    if meta.model_kind is not None:
        props["model_kind"] = meta.model_kind
    if meta.seed is not None:
        props["seed"] = str(meta.seed)
    if meta.class_names is not None:
        props["class_names"] = json.dumps([str(c) for c in meta.class_names])
    if meta.gene_ids is not None:
        ids = [str(g) for g in meta.gene_ids]
        props["gene_ids_sha256"] = gene_ids_hash(ids)
        if len(ids) <= MAX_INLINE_GENES or path is None:
            props["gene_ids"] = json.dumps(ids)
        else:
            Path(str(path) + ".genes.txt").write_text("\n".join(ids) + "\n")
    props["preprocessing"] = json.dumps(list(meta.preprocessing))
    if meta.input_scaling is not None:
        props["input_scaling"] = json.dumps(meta.input_scaling)
    if meta.training_data_sha256 is not None:
        props["training_data_sha256"] = meta.training_data_sha256
    if meta.graph is not None:
        props["graph"] = meta.graph
    for k, v in meta.extra.items():
        props[k] = v
    keep = [p for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for k, v in props.items():
        entry = model.metadata_props.add()
        entry.key = PREFIX + k
        entry.value = v


def read_metadata(
    model: onnx.ModelProto, path: str | os.PathLike[str] | None = None
) -> ModelMetadata:
    """Read gexplain's metadata from ``model`` (and a ``.genes.txt`` sidecar beside ``path``)."""
    props = {
        p.key[len(PREFIX) :]: p.value for p in model.metadata_props if p.key.startswith(PREFIX)
    }
    known = {
        "version",
        "model_kind",
        "seed",
        "class_names",
        "gene_ids",
        "gene_ids_sha256",
        "preprocessing",
        "input_scaling",
        "training_data_sha256",
        "graph",
    }
    gene_ids = json.loads(props["gene_ids"]) if "gene_ids" in props else None
    if gene_ids is None and path is not None and "gene_ids_sha256" in props:
        side = Path(str(path) + ".genes.txt")
        if side.exists():
            gene_ids = side.read_text().split("\n")[:-1]
    return ModelMetadata(
        model_kind=props.get("model_kind"),
        seed=int(props["seed"]) if "seed" in props else None,
        class_names=json.loads(props["class_names"]) if "class_names" in props else None,
        gene_ids=gene_ids,
        gene_ids_sha256=props.get("gene_ids_sha256"),
        preprocessing=json.loads(props.get("preprocessing", "[]")),
        input_scaling=json.loads(props["input_scaling"]) if "input_scaling" in props else None,
        training_data_sha256=props.get("training_data_sha256"),
        graph=props.get("graph"),
        version=props.get("version"),
        extra={k: v for k, v in props.items() if k not in known},
    )


def prepare_cohort(cohort: Any, meta: ModelMetadata, *, fill: float | None = None) -> Any:
    """Check a cohort against a model and align its genes to the model's inputs.

    Every stage that feeds a cohort to a model goes through this function.

    Parameters
    ----------
    cohort
        A :class:`gexplain.Cohort`.
    meta
        The model's metadata (:func:`read_metadata`).
    fill
        Value for model genes missing from the cohort; ``None`` refuses them.

    Returns
    -------
    Cohort
        The cohort with genes in the model's input order (``cohort`` itself if
        they already match).

    Raises
    ------
    AlignmentError
        If the preprocessing recorded in the cohort differs from the model's,
        if genes are missing (and ``fill`` is None), or if the model has no gene
        ids and the cohort's width differs from the model's.
    """
    from .errors import AlignmentError

    if meta.is_gexplain:
        have = list(cohort.value_transforms)
        want = list(meta.preprocessing)
        if have != want:
            raise AlignmentError(
                f"the model was trained on values transformed by {want or 'nothing'} "
                f"but the cohort's recorded transforms are {have or 'none'}; apply the same "
                "preprocessing (gexplain.preprocess) before using this model"
            )
    if meta.gene_ids is None:
        return cohort
    if meta.gene_ids_sha256 is not None and gene_ids_hash(meta.gene_ids) != meta.gene_ids_sha256:
        raise AlignmentError("the model's gene ids do not match their recorded hash")
    return cohort.align_genes(meta.gene_ids, fill=fill)
