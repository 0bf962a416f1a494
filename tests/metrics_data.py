"""A small simulated cohort with a trained MLP, its attributions, shared by the metric tests.

Built once per test session (``functools.cache``): the ``demo`` preset shrunk to
4 classes × 300 genes, an MLP trained for a few epochs (a few seconds).
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import gexplain as gx


@dataclass
class Demo:
    cohort: object
    test: object
    model_path: Path
    model: object
    values: np.ndarray
    classes: np.ndarray
    gene_ids: list[str]
    x_correct: np.ndarray
    targets: np.ndarray


@functools.cache
def demo(kind: str = "mlp", permute_labels: bool = False) -> Demo:
    from gexplain.explain import CompiledModel, integrated_gradients
    from gexplain.models import TrainConfig, fit

    cohort = gx.simulate.simulate(
        "demo",
        seed=0,
        n_classes=4,
        n_pathways=30,
        n_genes=300,
        samples_per_class=60,
        informative_pathways=5,
    )
    folder = Path(tempfile.mkdtemp(prefix="gexplain-metrics-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    m = fit(
        cohort,
        kind,
        seed=0,
        config=TrainConfig(epochs=6, milestones=(4,)),
        permute_labels=permute_labels,
    )
    path = folder / f"{kind}{'-permuted' if permute_labels else ''}-seed0.onnx"
    m.save(path)
    cm = CompiledModel.load(path)
    test = cohort.split("test")
    attr = integrated_gradients(cm, test, correct_only=True)
    rows = attr.rows
    x = cm.prepare(test).expression
    lookup = {s: i for i, s in enumerate(test.sample_ids)}
    pos = np.array([lookup[s] for s in rows["sample_id"].to_list()])
    return Demo(
        cohort=cohort,
        test=test,
        model_path=path,
        model=cm,
        values=attr.values.astype(np.float64),
        classes=rows["target"].to_numpy(),
        gene_ids=attr.gene_ids,
        x_correct=np.asarray(x[pos], dtype=np.float64),
        targets=rows["target_index"].to_numpy(),
    )
