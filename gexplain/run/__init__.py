"""Experiments: one TOML file → a reproducible run folder (cohort to report).

:func:`run_experiment` runs the stages of :data:`STAGES` — ``cohort``
(simulate or import), ``preprocess``, ``models`` (train), ``explain`` (IG),
``evaluate`` (metrics) and ``report`` — into one folder::

    RUN/
      cohort/                 the cohort (ground truth in cohort/truth/ when simulated)
      source/                 the imported/simulated cohort, when preprocessing applies
      models/                 <kind>-seed<k>.onnx, training.parquet, confusion-*.parquet
      attributions/<stem>/    one attributions folder per model file
      metrics/                metrics.parquet, curves.parquet, stability.parquet
      report/                 report.html, *.png, summary.json
      manifest.json           versions, seeds, resolved parameters, input hashes,
                              stage status and timings

A rerun skips the stages whose parameters and inputs hash the same, redoes a
changed stage and everything after it, and resumes an interrupted stage.

Examples
--------
>>> from gexplain.run import load_experiment, STAGES
>>> STAGES
('cohort', 'preprocess', 'models', 'explain', 'evaluate', 'report')
>>> plan = load_experiment({"cohort": {"simulate": {"preset": "demo"}}})
>>> plan["models"]["kinds"], plan["explain"]["target"]
(['mlp'], 'label')
"""

from ._manifest import MANIFEST_FILE, read_manifest
from ._runner import RunResult, run_experiment, run_paths
from ._schema import IMPORT_FORMATS, STAGES, load_experiment, resolve_experiment

__all__ = [
    "IMPORT_FORMATS",
    "MANIFEST_FILE",
    "STAGES",
    "RunResult",
    "load_experiment",
    "read_manifest",
    "resolve_experiment",
    "run_experiment",
    "run_paths",
]
