"""The experiment file: TOML sections, defaults, validation with errors naming the key.

An experiment is a TOML file (or an equivalent dict) with the sections
``[experiment]``, ``[cohort]``, ``[models]``, ``[explain]``, ``[evaluate]``
and ``[report]``; :func:`load_experiment` checks every key and returns the
fully resolved parameters (defaults filled in, relative paths made absolute)
that the runner hashes and records in the manifest.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = ["IMPORT_FORMATS", "STAGES", "load_experiment", "resolve_experiment"]

#: Stages in execution order; each depends on every stage before it.
STAGES: tuple[str, ...] = ("cohort", "preprocess", "models", "explain", "evaluate", "report")

#: ``[cohort.import] format`` → reader in :mod:`gexplain.io` and the name of its first argument.
IMPORT_FORMATS: dict[str, tuple[str, str]] = {
    "xena": ("read_xena", "matrix"),
    "pancan": ("read_pancan", "matrix"),
    "gdc": ("read_gdc", "source"),
    "table": ("read_table", "path"),
    "h5ad": ("read_h5ad", "path"),
}
# reader arguments that name files (resolved against the experiment file's folder)
_PATH_KEYS = {"path", "phenotype", "sample_sheet"}
# reader arguments the runner sets itself
_RUNNER_KEYS = {"out", "overwrite", "quiet"}

_PREPROCESS_DEFAULTS: dict[str, Any] = {
    "cpm": False,
    "tpm": False,
    "log2": False,
    "filter_genes": False,
    "split": None,  # test fraction of a new stratified split
    "stratify": "label",
    "seed": None,  # default: [experiment] seed
    "min_variance": None,
    "top_variance": None,
    "zscore": False,
    "gene_sets": None,  # CSV/TSV/Parquet (class, gene_id): ground truth for real cohorts
}

_EXPLAIN_DEFAULTS: dict[str, Any] = {
    "method": "exact",
    "steps": None,
    "tolerance": 1e-3,
    "baseline": "model-zero",
    "target": "label",
    "output": "probability",
    "normalize": True,
    "correct_only": True,
    "split": "test",
    "top_k": None,
    "chunk_size": None,
    "fill": None,
    "models": "all",  # or a list of model file stems
}
_EXPLAIN_METHODS = (
    "auto",
    "exact",
    "gausslegendre",
    "riemann_left",
    "riemann_right",
    "riemann_middle",
    "riemann_trapezoid",
    "trapezoid",
)
_OUTPUTS = ("probability", "logit", "log_probability")

_REPORT_DEFAULTS: dict[str, Any] = {
    "title": None,  # default: the experiment name
    "top_genes": 10,  # genes listed per class
    "max_classes": 12,  # classes shown in the top-gene table
    "jaccard_k": None,  # k of the stability heatmap (default: the smallest k stored)
}


class _Where:
    """Locates ``[section] key`` in the TOML text so that errors can give a line number."""

    def __init__(self, source: str | None, text: str | None) -> None:
        self.source = source or "experiment"
        self.lines = text.splitlines() if text else []

    def line(self, section: str, key: str | None = None) -> int | None:
        parts = section.split(".")
        header = re.compile(r"^\s*\[\s*" + r"\s*\.\s*".join(map(re.escape, parts)) + r"\s*\]")
        top = re.compile(r"^\s*\[\s*" + re.escape(parts[0]) + r"\s*\]")
        any_header = re.compile(r"^\s*\[")
        start = None
        for i, ln in enumerate(self.lines):
            if header.match(ln):
                start = i
                break
        if start is None and len(parts) > 1:
            # inline table: `sub = { ... }` inside the parent section
            for i, ln in enumerate(self.lines):
                if top.match(ln):
                    for j in range(i + 1, len(self.lines)):
                        if any_header.match(self.lines[j]):
                            break
                        if re.match(r"^\s*" + re.escape(parts[-1]) + r"\s*=", self.lines[j]):
                            if key is None or re.search(
                                r"\b" + re.escape(key) + r"\s*=", self.lines[j]
                            ):
                                return j + 1
                    return i + 1
            return None
        if start is None:
            return None
        if key is None:
            return start + 1
        pat = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
        for j in range(start + 1, len(self.lines)):
            if any_header.match(self.lines[j]):
                break
            if pat.match(self.lines[j]):
                return j + 1
        return start + 1

    def error(self, section: str, key: str | None, why: str) -> InputError:
        name = f"[{section}]" + (f" {key}" if key else "")
        line = self.line(section, key)
        at = f" (line {line})" if line else ""
        return InputError(f"{self.source}: {name}{at}: {why}")


def _check_keys(
    where: _Where, section: str, table: Mapping[str, Any], allowed: set[str] | Mapping[str, Any]
) -> None:
    for key in table:
        if key not in allowed:
            raise where.error(
                section, key, f"unknown key; expected one of {', '.join(sorted(allowed))}"
            )


def _table(where: _Where, doc: Mapping[str, Any], section: str) -> dict[str, Any]:
    value = doc.get(section, {})
    if not isinstance(value, Mapping):
        raise where.error(section, None, f"must be a table, got {type(value).__name__}")
    return dict(value)


def _typed(where: _Where, section: str, key: str, value: Any, kind: Any, what: str) -> Any:
    ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        raise where.error(section, key, f"expected {what}, got {value!r}")
    return value


def _int_list(where: _Where, section: str, key: str, value: Any) -> list[int]:
    """``[0, 1, 2]``, ``3`` (one seed) or ``"0-9"`` / ``"0,3,7"``."""
    if isinstance(value, bool):
        raise where.error(section, key, f"expected integers, got {value!r}")
    if isinstance(value, int):
        return [value]
    if isinstance(value, list) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        if not value:
            raise where.error(section, key, "empty list")
        return list(value)
    if isinstance(value, str):
        out: list[int] = []
        for part in value.split(","):
            part = part.strip()
            m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
            if m:
                a, b = int(m.group(1)), int(m.group(2))
                if b < a:
                    raise where.error(section, key, f"empty range {part!r}")
                out.extend(range(a, b + 1))
            elif part.isdigit():
                out.append(int(part))
            elif part:
                raise where.error(section, key, f"not an integer or range: {part!r}")
        if out:
            return out
    raise where.error(
        section, key, f"expected a list of integers or a range like '0-9', got {value!r}"
    )


def _resolve_path(base: Path, value: Any, where: _Where, section: str, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise where.error(section, key, f"expected a file path, got {value!r}")
    p = Path(os.path.expanduser(value))
    return str(p if p.is_absolute() else (base / p).resolve())


def _experiment(where: _Where, doc: Mapping[str, Any]) -> dict[str, Any]:
    t = _table(where, doc, "experiment")
    _check_keys(where, "experiment", t, {"name", "out", "seed", "scheduler", "description"})
    name = _typed(where, "experiment", "name", t.get("name", "experiment"), str, "a string")
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise where.error("experiment", "name", "use letters, digits, '.', '_' and '-' only")
    seed = _typed(where, "experiment", "seed", t.get("seed", 0), int, "a non-negative integer")
    if seed < 0:
        raise where.error("experiment", "seed", "must be ≥ 0")
    out = t.get("out")
    if out is not None:
        _typed(where, "experiment", "out", out, str, "a folder path")
    scheduler = t.get("scheduler")
    if scheduler is not None:
        _typed(where, "experiment", "scheduler", scheduler, str, "a scheduler address or name")
        scheduler = scheduler or None
    description = t.get("description")
    if description is not None:
        _typed(where, "experiment", "description", description, str, "a string")
    return {
        "name": name,
        "out": out,
        "seed": seed,
        "scheduler": scheduler,
        "description": description,
    }


def _simulate(where: _Where, spec: Any, seed: int) -> dict[str, Any]:
    from ..simulate._params import PRESETS, SimulationParams

    section = "cohort.simulate"
    if not isinstance(spec, Mapping):
        raise where.error(section, None, 'must be a table, e.g. { preset = "demo" }')
    spec = dict(spec)
    fields = {f.name for f in dataclasses.fields(SimulationParams)}
    _check_keys(where, section, spec, {"preset", "seed", *fields})
    preset = spec.pop("preset", "demo")
    if preset not in PRESETS:
        raise where.error(
            section, "preset", f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}"
        )
    sim_seed = _typed(where, section, "seed", spec.pop("seed", seed), int, "an integer")
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}
    try:
        PRESETS[preset].replace(**overrides)
    except (InputError, ValueError, TypeError) as exc:
        bad = next((k for k in overrides if k in str(exc)), None)
        raise where.error(section, bad, str(exc)) from None
    return {
        "preset": preset,
        "seed": sim_seed,
        "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
    }


def _import(where: _Where, spec: Any, base: Path) -> dict[str, Any]:
    from .. import io as gio

    section = "cohort.import"
    if not isinstance(spec, Mapping):
        raise where.error(section, None, 'must be a table, e.g. { format = "xena", path = "..." }')
    spec = dict(spec)
    fmt = spec.pop("format", None)
    if fmt not in IMPORT_FORMATS:
        raise where.error(
            section, "format", f"expected one of {', '.join(IMPORT_FORMATS)}, got {fmt!r}"
        )
    func_name, first = IMPORT_FORMATS[fmt]
    params = inspect.signature(getattr(gio, func_name)).parameters
    accepted = {"path"} | {
        n for n in params if n not in _RUNNER_KEYS and n != first and n != "matrix"
    }
    _check_keys(where, section, spec, accepted | {"format"})
    if "path" not in spec:
        raise where.error(section, "path", f"missing: the {fmt} input file or folder")
    out: dict[str, Any] = {"format": fmt}
    for key, value in spec.items():
        if key in _PATH_KEYS:
            out[key] = _resolve_path(base, value, where, section, key)
            if not Path(out[key]).exists():
                raise where.error(section, key, f"file not found: {out[key]}")
        else:
            out[key] = value
    return out


def _preprocess(where: _Where, spec: Any, seed: int, base: Path) -> dict[str, Any]:
    section = "cohort.preprocess"
    if not isinstance(spec, Mapping):
        raise where.error(section, None, "must be a table, e.g. { log2 = true, split = 0.4 }")
    _check_keys(where, section, spec, _PREPROCESS_DEFAULTS)
    out = {**_PREPROCESS_DEFAULTS, **spec}
    for flag in ("cpm", "tpm", "log2", "filter_genes", "zscore"):
        _typed(where, section, flag, out[flag], bool, "true or false")
    if out["cpm"] and out["tpm"]:
        raise where.error(section, "tpm", "choose one of cpm and tpm")
    if out["gene_sets"] is not None:
        out["gene_sets"] = _resolve_path(base, out["gene_sets"], where, section, "gene_sets")
        if not Path(out["gene_sets"]).is_file():
            raise where.error(section, "gene_sets", f"file not found: {out['gene_sets']}")
    if out["split"] is not None:
        v = _typed(where, section, "split", out["split"], float, "a test fraction in (0, 1)")
        if not 0 < v < 1:
            raise where.error(section, "split", f"expected a test fraction in (0, 1), got {v}")
        out["split"] = v
    if out["seed"] is None:
        out["seed"] = seed
    _typed(where, section, "seed", out["seed"], int, "an integer")
    if out["stratify"] is not None:
        _typed(where, section, "stratify", out["stratify"], str, "a sample column name")
    if out["min_variance"] is not None:
        out["min_variance"] = _typed(
            where, section, "min_variance", out["min_variance"], float, "a number"
        )
    if out["top_variance"] is not None:
        n = _typed(where, section, "top_variance", out["top_variance"], int, "a positive integer")
        if n < 1:
            raise where.error(section, "top_variance", "must be ≥ 1")
    return out


def preprocess_steps(pre: Mapping[str, Any]) -> bool:
    """Whether the resolved ``[cohort.preprocess]`` table asks for any step."""
    return bool(
        pre["cpm"]
        or pre["tpm"]
        or pre["log2"]
        or pre["filter_genes"]
        or pre["split"] is not None
        or pre["min_variance"] is not None
        or pre["top_variance"] is not None
        or pre["zscore"]
        or pre.get("gene_sets") is not None
    )


def _cohort(where: _Where, doc: Mapping[str, Any], seed: int, base: Path) -> dict[str, Any]:
    t = _table(where, doc, "cohort")
    _check_keys(where, "cohort", t, {"simulate", "import", "preprocess"})
    if ("simulate" in t) == ("import" in t):
        raise where.error("cohort", None, "give exactly one of simulate = {...} and import = {...}")
    out: dict[str, Any] = {}
    if "simulate" in t:
        out["simulate"] = _simulate(where, t["simulate"], seed)
    else:
        out["import"] = _import(where, t["import"], base)
    out["preprocess"] = _preprocess(where, t.get("preprocess", {}), seed, base)
    return out


def _models(where: _Where, doc: Mapping[str, Any]) -> dict[str, Any]:
    from ..models import TrainConfig, parse_kinds

    section = "models"
    t = _table(where, doc, section)
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    _check_keys(where, section, t, {"kinds", "seeds", "threads", "permuted", *fields})
    kinds = t.get("kinds", ["mlp"])
    try:
        kinds = parse_kinds(kinds if isinstance(kinds, (str, list)) else [kinds])
    except (ValueError, InputError) as exc:
        raise where.error(section, "kinds", str(exc)) from None
    seeds = _int_list(where, section, "seeds", t.get("seeds", [0]))
    threads = _typed(where, section, "threads", t.get("threads", 1), int, "a positive integer")
    permuted = _typed(where, section, "permuted", t.get("permuted", False), bool, "true or false")
    config: dict[str, Any] = {}
    defaults = TrainConfig()
    for name in fields:
        value = t.get(name, getattr(defaults, name))
        if isinstance(value, tuple):
            value = list(value)
        if name == "milestones":
            value = [] if value == [] else _int_list(where, section, name, value)
        elif isinstance(getattr(defaults, name), float):
            value = _typed(where, section, name, value, float, "a number")
        elif isinstance(getattr(defaults, name), int):
            value = _typed(where, section, name, value, int, "an integer")
        elif isinstance(getattr(defaults, name), str):
            value = _typed(where, section, name, value, str, "a string")
        config[name] = value
    try:
        TrainConfig(**config)
    except ValueError as exc:
        bad = next((k for k in config if k in str(exc)), None)
        raise where.error(section, bad, str(exc)) from None
    return {
        "kinds": kinds,
        "seeds": seeds,
        "threads": max(1, threads),
        "permuted": permuted,
        "config": config,
    }


def _explain(where: _Where, doc: Mapping[str, Any]) -> dict[str, Any]:
    section = "explain"
    t = _table(where, doc, section)
    _check_keys(where, section, t, _EXPLAIN_DEFAULTS)
    out = {**_EXPLAIN_DEFAULTS, **t}
    if out["method"] not in _EXPLAIN_METHODS:
        raise where.error(
            section,
            "method",
            f"expected one of {', '.join(_EXPLAIN_METHODS)}, got {out['method']!r}",
        )
    if out["output"] not in _OUTPUTS:
        raise where.error(
            section, "output", f"expected one of {', '.join(_OUTPUTS)}, got {out['output']!r}"
        )
    for flag in ("normalize", "correct_only"):
        _typed(where, section, flag, out[flag], bool, "true or false")
    steps = out["steps"]
    if steps is not None and steps != "auto":
        if _typed(where, section, "steps", steps, int, "a positive integer or 'auto'") < 1:
            raise where.error(section, "steps", "must be ≥ 1")
    out["tolerance"] = _typed(where, section, "tolerance", out["tolerance"], float, "a number")
    for key in ("top_k", "chunk_size"):
        if (
            out[key] is not None
            and _typed(where, section, key, out[key], int, "a positive integer") < 1
        ):
            raise where.error(section, key, "must be ≥ 1")
    if out["split"] is not None:
        _typed(where, section, "split", out["split"], str, 'a split name such as "test"')
        out["split"] = out["split"] or None
    base = out["baseline"]
    if not (
        isinstance(base, str) or (isinstance(base, list) and all(isinstance(b, str) for b in base))
    ):
        raise where.error(
            section, "baseline", f"expected a baseline name or a list of them, got {base!r}"
        )
    target = out["target"]
    if target is not None and not isinstance(target, (str, int)):
        raise where.error(
            section, "target", f"expected label, predicted, all or a class, got {target!r}"
        )
    models = out["models"]
    if models != "all" and not (
        isinstance(models, list) and models and all(isinstance(m, str) for m in models)
    ):
        raise where.error(
            section, "models", f'expected "all" or a list of model file stems, got {models!r}'
        )
    if out["fill"] is not None:
        out["fill"] = _typed(where, section, "fill", out["fill"], float, "a number")
    return out


def _evaluate(where: _Where, doc: Mapping[str, Any]) -> dict[str, Any]:
    section = "evaluate"
    t = _table(where, doc, section)
    metrics = t.get("metrics", "all")
    if not (
        metrics == "all"
        or isinstance(metrics, str)
        or (isinstance(metrics, list) and all(isinstance(m, str) for m in metrics))
    ):
        raise where.error(
            section, "metrics", f'expected "all" or a list of metric names, got {metrics!r}'
        )
    if isinstance(metrics, str) and metrics != "all":
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    knobs = {k: v for k, v in t.items() if k != "metrics"}
    enabled = _typed(where, section, "enabled", knobs.pop("enabled", True), bool, "true or false")
    accepted = _evaluate_options()
    if accepted is not None:
        _check_keys(where, section, knobs, accepted | {"metrics", "enabled"})
        if metrics != "all":
            from ..metrics import EVALUATE_METRICS

            bad = [m for m in metrics if m != "all" and m not in EVALUATE_METRICS]
            if bad or not metrics:
                raise where.error(
                    section,
                    "metrics",
                    f"unknown metric family {bad[0] if bad else ''!r}; choose from "
                    f"all, {', '.join(EVALUATE_METRICS)}",
                )
    return {"enabled": enabled, "metrics": metrics, "options": knobs}


def _evaluate_options() -> set[str] | None:
    """Keyword options of :func:`gexplain.metrics.evaluate` that an experiment may set."""
    try:
        from ..metrics import evaluate
    except (ImportError, AttributeError):
        return None
    params = inspect.signature(evaluate).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return {
        n
        for n, p in params.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and n not in ("out", "quiet", "overwrite")
    }


def _report(where: _Where, doc: Mapping[str, Any]) -> dict[str, Any]:
    section = "report"
    t = _table(where, doc, section)
    _check_keys(where, section, t, {*_REPORT_DEFAULTS, "enabled"})
    out = {**_REPORT_DEFAULTS, **t}
    out["enabled"] = _typed(
        where, section, "enabled", out.get("enabled", True), bool, "true or false"
    )
    for key in ("top_genes", "max_classes"):
        if _typed(where, section, key, out[key], int, "a positive integer") < 1:
            raise where.error(section, key, "must be ≥ 1")
    if out["jaccard_k"] is not None:
        _typed(where, section, "jaccard_k", out["jaccard_k"], int, "a positive integer")
    if out["title"] is not None:
        _typed(where, section, "title", out["title"], str, "a string")
    return out


def resolve_experiment(
    doc: Mapping[str, Any],
    *,
    source: str | None = None,
    text: str | None = None,
    base: Path | None = None,
) -> dict[str, Any]:
    """Validate an experiment mapping and fill in every default.

    Parameters
    ----------
    doc
        The parsed TOML document.
    source, text
        File name and TOML text, to name the file and line in errors.
    base
        Folder that relative paths are resolved against (the TOML file's folder;
        default: the working directory).

    Returns
    -------
    dict
        ``experiment``, ``cohort``, ``models``, ``explain``, ``evaluate`` and
        ``report`` tables with every default filled in.
    """
    where = _Where(source, text)
    doc = copy.deepcopy(dict(doc))
    allowed = {"experiment", "cohort", "models", "explain", "evaluate", "report"}
    for key in doc:
        if key not in allowed:
            raise where.error(key, None, f"unknown section; expected {', '.join(sorted(allowed))}")
    base = Path(base) if base is not None else Path.cwd()
    exp = _experiment(where, doc)
    if "cohort" not in doc:
        raise where.error(
            "cohort", None, "missing section: give simulate = {...} or import = {...}"
        )
    return {
        "experiment": exp,
        "cohort": _cohort(where, doc, exp["seed"], base),
        "models": _models(where, doc),
        "explain": _explain(where, doc),
        "evaluate": _evaluate(where, doc),
        "report": _report(where, doc),
    }


def load_experiment(source: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    """Read and validate an experiment (a TOML file or a dict) into resolved parameters.

    Errors name the file, the section and key, and the line of the TOML file.

    Examples
    --------
    >>> from gexplain.run import load_experiment
    >>> plan = load_experiment({"cohort": {"simulate": {"preset": "demo"}},
    ...                         "models": {"kinds": ["lr"], "seeds": "0-1"}})
    >>> plan["models"]["seeds"], plan["explain"]["method"], plan["cohort"]["simulate"]["seed"]
    ([0, 1], 'exact', 0)
    >>> load_experiment({"cohort": {"simulate": {"preset": "demo"}}, "models": {"kinds": "svm"}})
    Traceback (most recent call last):
    ...
    gexplain.errors.InputError: experiment: [models] kinds: unknown model kind 'svm'; ...
    """
    if isinstance(source, Mapping):
        return resolve_experiment(source)
    path = Path(source)
    if not path.is_file():
        raise InputError(f"experiment file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML: {exc}") from None
    return resolve_experiment(doc, source=str(path), text=text, base=path.parent.resolve())
