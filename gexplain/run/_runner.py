"""Run an experiment stage by stage into a run folder, skipping what is already done.

Stages (:data:`~gexplain.run.STAGES`): ``cohort`` (simulate or import),
``preprocess``, ``models`` (train), ``explain`` (IG per model), ``evaluate``
(metrics) and ``report``. Each stage has a key: the hash of its parameters and
of its inputs (the key of the stage before it, the files it imports). A stage
whose key and outputs are unchanged is skipped; a stage whose key changed runs
again from scratch, and so does every stage after it. A stage that was
interrupted resumes (the simulator, training, explain and evaluate keep their
finished chunks, models and parts).
"""

from __future__ import annotations

import inspect
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import GexplainError, InputError
from ._manifest import (
    MANIFEST_FILE,
    digest,
    listing,
    now,
    read_manifest,
    tree_sha256,
    versions,
    write_manifest,
)
from ._schema import IMPORT_FORMATS, STAGES, load_experiment, preprocess_steps

__all__ = ["RunResult", "run_experiment", "run_paths"]

#: Parameters that never change a stage's result (excluded from its key).
_NOT_HASHED = {
    "models": {"threads"},
    "explain": {"chunk_size"},
}


@dataclass
class RunResult:
    """What :func:`run_experiment` did.

    Attributes
    ----------
    path
        The run folder.
    manifest
        The manifest as written to ``path/manifest.json``.
    ran, skipped
        Stages executed and stages skipped (already up to date, or disabled).
    """

    path: Path
    manifest: dict[str, Any]
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def report(self) -> Path | None:
        """The HTML report, when the report stage produced one."""
        p = self.path / "report" / "report.html"
        done = (self.manifest.get("stages") or {}).get("report", {}).get("status") == "done"
        return p if done and p.is_file() else None

    @property
    def summary(self) -> dict[str, Any] | None:
        """The report's ``summary.json`` (headline numbers), when present."""
        import json

        p = self.path / "report" / "summary.json"
        return json.loads(p.read_text()) if self.report is not None and p.is_file() else None


def run_paths(run_dir: Path, plan: Mapping[str, Any]) -> dict[str, Path]:
    """Folders of a run: ``source`` (raw import/simulation when preprocessing applies),
    ``cohort``, ``models``, ``attributions``, ``metrics``, ``report``."""
    run_dir = Path(run_dir)
    steps = preprocess_steps(plan["cohort"]["preprocess"])
    return {
        "source": run_dir / ("source" if steps else "cohort"),
        "cohort": run_dir / "cohort",
        "models": run_dir / "models",
        "attributions": run_dir / "attributions",
        "metrics": run_dir / "metrics",
        "report": run_dir / "report",
    }


def memory_mb() -> dict[str, float]:
    """Resident memory in MB: ``peak`` (this process since it started), ``current``
    (now; Linux only) and ``children`` (the largest finished child process).

    Read at the end of each stage, the stage where ``peak`` jumps is the one that
    needed the memory. Nothing is reset, so outside tools (``/usr/bin/time``)
    still see the true peak.
    """
    out: dict[str, float] = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("VmHWM:", "VmRSS:")):
                    key = "peak" if line.startswith("VmHWM") else "current"
                    out[key] = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # Windows
        return out
    unit = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KB elsewhere
    if "peak" not in out:
        out["peak"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit / 2**20, 1)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * unit / 2**20
    if kids > 0:
        out["children"] = round(kids, 1)
    return out


def _say(message: str, quiet: bool | None) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def _accepts(func: Callable[..., Any], **kwargs: Any) -> dict[str, Any]:
    """The keyword arguments ``func`` accepts (others are dropped)."""
    params = inspect.signature(func).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


def _rm(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    # resumable work folders of the stage go too
    partial = path.with_name(f".{path.name}.partial")
    if partial.is_dir():
        shutil.rmtree(partial)


# --------------------------------------------------------------------------- stages
class _Context:
    def __init__(
        self, run_dir: Path, plan: dict[str, Any], manifest: dict[str, Any], quiet: bool | None
    ) -> None:
        self.run_dir = run_dir
        self.plan = plan
        self.manifest = manifest
        self.quiet = quiet
        self.paths = run_paths(run_dir, plan)
        self.scheduler = plan["experiment"]["scheduler"]
        self.hash_cache: dict[str, Any] = manifest.setdefault("file_hashes", {})

    def model_stems(self) -> list[str]:
        from ..models import model_stem

        m = self.plan["models"]
        stems = [model_stem(k, s) for k in m["kinds"] for s in m["seeds"]]
        return stems + self.control_stems()

    def control_stems(self) -> list[str]:
        """Label-permuted controls: one per kind, first seed (``[models] permuted``)."""
        from ..models import model_stem

        m = self.plan["models"]
        if not m["permuted"]:
            return []
        return [model_stem(k, m["seeds"][0], True) for k in m["kinds"]]

    def explained_stems(self) -> list[str]:
        chosen = self.plan["explain"]["models"]
        stems = self.model_stems()
        if chosen == "all":
            controls = set(self.control_stems())
            return [s for s in stems if s not in controls]
        missing = [s for s in chosen if s not in stems]
        if missing:
            raise InputError(
                f"[explain] models: {', '.join(missing)} not trained by [models]; "
                f"trained: {', '.join(stems)}"
            )
        return list(chosen)


def _stage_params(ctx: _Context, stage: str) -> dict[str, Any]:
    plan = ctx.plan
    if stage == "cohort":
        c = plan["cohort"]
        spec = {"simulate": c["simulate"]} if "simulate" in c else {"import": c["import"]}
        return {**spec, "dir": ctx.paths["source"].name}
    if stage == "preprocess":
        return dict(plan["cohort"]["preprocess"])
    if stage == "models":
        return {k: v for k, v in plan["models"].items() if k not in _NOT_HASHED["models"]}
    if stage == "explain":
        e = {k: v for k, v in plan["explain"].items() if k not in _NOT_HASHED["explain"]}
        return {**e, "models": ctx.explained_stems()}
    if stage == "evaluate":
        return dict(plan["evaluate"])
    return dict(plan["report"])


def _stage_inputs(ctx: _Context, stage: str, upstream_key: str | None) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    if upstream_key is not None:
        inputs["upstream"] = upstream_key
    gene_sets = ctx.plan["cohort"]["preprocess"].get("gene_sets")
    if stage == "preprocess" and gene_sets:
        p = Path(gene_sets)
        if not p.is_file():
            raise InputError(f"[cohort.preprocess] gene_sets: file not found: {p}")
        inputs["gene_sets"] = {"path": str(p), "sha256": tree_sha256(p, ctx.hash_cache)}
    if stage == "cohort" and "import" in ctx.plan["cohort"]:
        spec = ctx.plan["cohort"]["import"]
        for key in ("path", "phenotype", "sample_sheet"):
            if spec.get(key):
                p = Path(spec[key])
                if not p.exists():
                    raise InputError(f"[cohort.import] {key}: file not found: {p}")
                inputs[key] = {"path": str(p), "sha256": tree_sha256(p, ctx.hash_cache)}
    return inputs


def _outputs(ctx: _Context, stage: str) -> list[Path]:
    p = ctx.paths
    if stage == "cohort":
        return [p["source"] / "cohort.json"]
    if stage == "preprocess":
        return [p["cohort"] / "cohort.json"]
    if stage == "models":
        return [p["models"] / f"{s}.onnx" for s in ctx.model_stems()] + [
            p["models"] / "training.parquet"
        ]
    if stage == "explain":
        return [p["attributions"] / s / "attributions.json" for s in ctx.explained_stems()]
    if stage == "evaluate":
        return [p["metrics"] / "metrics.parquet"]
    return [p["report"] / "report.html", p["report"] / "summary.json"]


def _clear(ctx: _Context, stage: str) -> None:
    p = ctx.paths
    if stage in ("cohort", "preprocess", "explain"):
        for stored in ctx.run_dir.glob(".cohort-*"):
            _rm(stored)  # split copies made for Dask workers
    if stage == "cohort":
        _rm(p["source"])
        if p["source"] == p["cohort"]:
            _rm(ctx.run_dir / "source")  # left by an earlier run that preprocessed
    elif stage == "preprocess":
        if p["cohort"] != p["source"]:
            _rm(p["cohort"])
    else:
        _rm(p[{"explain": "attributions", "evaluate": "metrics"}.get(stage, stage)])


def _run_cohort(ctx: _Context, resume: bool) -> dict[str, Any]:
    c = ctx.plan["cohort"]
    out = ctx.paths["source"]
    quiet = True if ctx.quiet else None
    if "simulate" in c:
        from ..simulate import simulate_to_disk

        s = c["simulate"]
        kwargs = _accepts(simulate_to_disk, scheduler=ctx.scheduler) if ctx.scheduler else {}
        simulate_to_disk(out, s["preset"], seed=s["seed"], quiet=quiet, **kwargs, **s["overrides"])
    else:
        from .. import io as gio

        spec = dict(c["import"])
        fmt = spec.pop("format")
        func_name, _first = IMPORT_FORMATS[fmt]
        func = getattr(gio, func_name)
        path = spec.pop("path")
        try:
            func(path, out=out, quiet=quiet, **spec)
        except TypeError as exc:
            raise InputError(f"[cohort.import]: {exc}") from None
    from ..cohort import Cohort

    cohort = Cohort.load(out)
    return {
        "n_samples": cohort.n_samples,
        "n_genes": cohort.n_genes,
        "classes": cohort.classes if cohort.has_labels else None,
        "ground_truth": cohort.truth is not None,
    }


def _run_preprocess(ctx: _Context, resume: bool) -> dict[str, Any]:
    pre = ctx.plan["cohort"]["preprocess"]
    if not preprocess_steps(pre):
        return {"steps": []}
    from .. import preprocess as pp
    from ..cohort import Cohort

    c = Cohort.load(ctx.paths["source"])
    steps = []
    if pre["cpm"]:
        c = pp.cpm(c)
        steps.append("cpm")
    if pre["tpm"]:
        c = pp.tpm(c)
        steps.append("tpm")
    if pre["log2"]:
        c = pp.log2p1(c)
        steps.append("log2")
    if pre["filter_genes"]:
        c = pp.filter_genes(c)
        steps.append("filter_genes")
    if pre["split"] is not None:
        c = pp.split(c, test_size=pre["split"], seed=pre["seed"], stratify=pre["stratify"])
        steps.append("split")
    if pre["min_variance"] is not None or pre["top_variance"] is not None:
        c = pp.filter_variance(c, min_variance=pre["min_variance"], top_n=pre["top_variance"])
        steps.append("filter_variance")
    if pre["zscore"]:
        c = pp.zscore(c)
        steps.append("zscore")
    if pre.get("gene_sets"):
        from ..cohort import GroundTruth

        truth = GroundTruth.read_gene_sets(pre["gene_sets"])
        known = set(c.gene_ids)
        sets = truth.biomarker_sets()
        if not any(g in known for genes in sets.values() for g in genes):
            raise InputError(
                "[cohort.preprocess] gene_sets: no gene of the gene sets is in the cohort "
                f"(gene ids such as {', '.join(sorted(known)[:3])})"
            )
        c.truth = truth
        steps.append("gene_sets")
    c.save(ctx.paths["cohort"], overwrite=True)
    return {"steps": steps, "n_samples": c.n_samples, "n_genes": c.n_genes}


def _run_models(ctx: _Context, resume: bool) -> dict[str, Any]:
    from ..models import TrainConfig, train_models

    m = ctx.plan["models"]
    config = TrainConfig(**{**m["config"], "milestones": tuple(m["config"]["milestones"])})
    quiet = True if ctx.quiet else None
    rows = []
    for permuted in (False, True) if m["permuted"] else (False,):
        summary = train_models(
            ctx.paths["cohort"],
            m["kinds"],
            m["seeds"][:1] if permuted else m["seeds"],
            ctx.paths["models"],
            config=config,
            permute_labels=permuted,
            threads=m["threads"],
            quiet=quiet,
        )
        rows.extend(summary.drop("path").rows(named=True))
    return {"models": rows}


def _run_explain(ctx: _Context, resume: bool) -> dict[str, Any]:
    from ..cohort import Cohort
    from ..explain import explain_cohort

    e = ctx.plan["explain"]
    cohort = Cohort.load(ctx.paths["cohort"])
    if e["split"] is not None:
        cohort = cohort.split(e["split"])
        if cohort.n_samples == 0:
            raise InputError(f"[explain] split: no sample of the cohort is in split {e['split']!r}")
        if ctx.scheduler:
            # Dask workers read their chunks from storage: store the split once for all models
            stored = ctx.run_dir / f".cohort-{e['split']}"
            if not (stored / "cohort.json").is_file():
                _rm(stored)
                cohort.save(stored)
            cohort = Cohort.load(stored)
    root = ctx.paths["attributions"]
    root.mkdir(parents=True, exist_ok=True)
    done: list[str] = []
    stems = ctx.explained_stems()
    extra = _accepts(explain_cohort, scheduler=ctx.scheduler) if ctx.scheduler else {}
    for i, stem in enumerate(stems):
        out = root / stem
        if (out / "attributions.json").is_file():
            done.append(stem)
            continue
        if out.exists():
            _rm(out)
        _say(f"  explain {stem} ({i + 1}/{len(stems)})", ctx.quiet)
        explain_cohort(
            ctx.paths["models"] / f"{stem}.onnx",
            cohort,
            out,
            baseline=e["baseline"],
            target=e["target"],
            method=None if e["method"] == "auto" else e["method"],
            steps=e["steps"],
            output=e["output"],
            tolerance=e["tolerance"],
            correct_only=e["correct_only"],
            normalize=e["normalize"],
            top_k=e["top_k"],
            fill=e["fill"],
            chunk_size=e["chunk_size"],
            quiet=True if ctx.quiet else None,
            **extra,
        )
        done.append(stem)
    for stored in ctx.run_dir.glob(".cohort-*"):
        _rm(stored)  # the split copy for Dask workers is no longer needed
    return {"explained": done}


def _evaluate_function() -> Callable[..., Any]:
    try:
        from ..metrics import evaluate
    except (ImportError, AttributeError) as exc:
        raise GexplainError(
            f"the evaluate stage needs gexplain.metrics.evaluate, which is not available ({exc})"
        ) from None
    return evaluate  # type: ignore[no-any-return]


def _run_evaluate(ctx: _Context, resume: bool) -> dict[str, Any]:
    ev = ctx.plan["evaluate"]
    evaluate = _evaluate_function()
    options = dict(ev["options"])
    params = inspect.signature(evaluate).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [k for k in options if k not in params and not takes_any]
    if unknown:
        accepted = sorted(
            n
            for n, p in params.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and n not in ("out", "quiet", "metrics")
        )
        raise InputError(
            f"[evaluate] {unknown[0]}: unknown option; gexplain.metrics.evaluate accepts "
            f"{', '.join(accepted)}"
        )
    metrics = ev["metrics"]
    # defaults that follow the rest of the experiment
    explain = ctx.plan["explain"]
    defaults: dict[str, Any] = {"seed": ctx.plan["experiment"]["seed"], "output": explain["output"]}
    if explain["split"] is not None:
        defaults["split"] = explain["split"]
    controls = ctx.control_stems()
    if controls:
        defaults["label_control"] = controls[0]
    for key, value in defaults.items():
        if key in params and key not in options:
            options[key] = value
    if isinstance(options.get("label_control"), str) and not options["label_control"].endswith(
        ".onnx"
    ):
        options["label_control"] = ctx.paths["models"] / f"{options['label_control']}.onnx"
    kwargs: dict[str, Any] = {**options, "out": ctx.paths["metrics"]}
    if metrics != "all" or "metrics" in params:
        kwargs["metrics"] = metrics if metrics != "all" else _all_metrics(evaluate)
    kwargs.update(_accepts(evaluate, quiet=True if ctx.quiet else None))
    if ctx.scheduler:
        kwargs.update(_accepts(evaluate, scheduler=ctx.scheduler))
    if "overwrite" in params:
        kwargs["overwrite"] = True
    evaluate(ctx.paths["cohort"], ctx.paths["models"], ctx.paths["attributions"], **kwargs)
    return {"metrics": metrics}


def _all_metrics(evaluate: Callable[..., Any]) -> Any:
    """The default of ``evaluate(metrics=...)`` (all metric families)."""
    default = inspect.signature(evaluate).parameters["metrics"].default
    if default is inspect.Parameter.empty or default is None:
        from ..metrics import EVALUATE_METRICS

        return tuple(EVALUATE_METRICS)
    return default


def _run_report(ctx: _Context, resume: bool) -> dict[str, Any]:
    from ..report import render

    r = ctx.plan["report"]
    opts = {k: v for k, v in r.items() if k != "enabled"}
    path = render(ctx.run_dir, ctx.paths["report"] / "report.html", quiet=ctx.quiet, **opts)
    return {"report": str(path.relative_to(ctx.run_dir))}


_RUNNERS: dict[str, Callable[[_Context, bool], dict[str, Any]]] = {
    "cohort": _run_cohort,
    "preprocess": _run_preprocess,
    "models": _run_models,
    "explain": _run_explain,
    "evaluate": _run_evaluate,
    "report": _run_report,
}


def _enabled(plan: Mapping[str, Any], stage: str) -> bool:
    if stage == "evaluate":
        return bool(plan["evaluate"]["enabled"])
    if stage == "report":
        return bool(plan["report"]["enabled"])
    return True


# --------------------------------------------------------------------------- driver
def _parse_force(force: str | Iterable[str] | None) -> set[str]:
    if force is None:
        return set()
    items = [force] if isinstance(force, str) else list(force)
    out: set[str] = set()
    for item in items:
        for name in str(item).split(","):
            name = name.strip()
            if not name:
                continue
            if name == "all":
                out.update(STAGES)
            elif name not in STAGES:
                raise InputError(
                    f"unknown stage {name!r} to force; choose from {', '.join(STAGES)} or all"
                )
            else:
                out.add(name)
    return out


def _resolve_out(out: str | os.PathLike[str] | None, plan: Mapping[str, Any]) -> Path:
    if out is not None:
        return Path(out)
    configured = plan["experiment"]["out"]
    if configured:
        return Path(os.path.expanduser(configured))
    return Path("runs") / plan["experiment"]["name"]


def _new_manifest(plan: dict[str, Any], source: str | None) -> dict[str, Any]:
    return {
        "format": "gexplain-run/1",
        "name": plan["experiment"]["name"],
        "created": now(),
        "updated": now(),
        "experiment_file": source,
        "versions": versions(),
        "seeds": {},
        "parameters": plan,
        "stages": {},
    }


def _seeds(plan: Mapping[str, Any]) -> dict[str, Any]:
    c = plan["cohort"]
    seeds: dict[str, Any] = {"experiment": plan["experiment"]["seed"]}
    if "simulate" in c:
        seeds["simulate"] = c["simulate"]["seed"]
    if c["preprocess"]["split"] is not None:
        seeds["split"] = c["preprocess"]["seed"]
    seeds["models"] = plan["models"]["seeds"]
    return seeds


def run_experiment(
    experiment: str | os.PathLike[str] | Mapping[str, Any],
    out: str | os.PathLike[str] | None = None,
    force: str | Iterable[str] | None = (),
    quiet: bool | None = None,
) -> RunResult:
    """Run an experiment (TOML file or dict) into a run folder, resuming or skipping stages.

    Parameters
    ----------
    experiment
        Path of an experiment TOML file, or the equivalent mapping (sections
        ``experiment``, ``cohort``, ``models``, ``explain``, ``evaluate``,
        ``report``; see the README's ``gexplain run`` reference).
    out
        The run folder (default: ``[experiment] out``, else ``runs/<name>``).
    force
        Stages to redo even when up to date (names from :data:`STAGES`, or
        ``"all"``); the stages after them run again too.
    quiet
        ``True``: no progress bars or messages; ``None``: progress bars on a
        terminal only and one line per stage.

    Returns
    -------
    RunResult
        The run folder, its manifest and which stages ran or were skipped.

    Examples
    --------
    >>> import gexplain as gx
    >>> result = gx.run.run_experiment("data/experiments/demo.toml", out="demo-run")  # doctest: +SKIP
    >>> result.report  # doctest: +SKIP
    PosixPath('demo-run/report/report.html')
    """
    source = None if isinstance(experiment, Mapping) else str(experiment)
    plan = load_experiment(experiment)
    forced = _parse_force(force)
    run_dir = _resolve_out(out, plan)
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError(f"the run folder {run_dir} exists and is not a folder")
    visible = run_dir.is_dir() and any(not p.name.startswith(".") for p in run_dir.iterdir())
    if visible and read_manifest(run_dir) is None:
        raise InputError(
            f"{run_dir} exists and is not a gexplain run folder (no {MANIFEST_FILE}); "
            "choose another --out"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    with _RunLock(run_dir):
        return _execute(run_dir, plan, source, forced, quiet)


class _RunLock:
    """``RUN/.gexplain.lock`` holding the pid: one ``run_experiment`` per folder at a time."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / ".gexplain.lock"

    def __enter__(self) -> _RunLock:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    pid = int(self.path.read_text().strip() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid and pid != os.getpid() and _alive(pid):
                    raise InputError(
                        f"{self.path.parent} is being written by another gexplain run "
                        f"(pid {pid}); wait for it or remove {self.path} if it is gone"
                    ) from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(str(os.getpid()))
            return self
        raise InputError(f"cannot lock {self.path.parent}")  # pragma: no cover

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _execute(
    run_dir: Path,
    plan: dict[str, Any],
    source: str | None,
    forced: set[str],
    quiet: bool | None,
) -> RunResult:
    manifest = read_manifest(run_dir) or _new_manifest(plan, source)
    manifest.update(
        experiment_file=source,
        versions=versions(),
        parameters=plan,
        seeds=_seeds(plan),
        name=plan["experiment"]["name"],
    )
    stages: dict[str, Any] = manifest.setdefault("stages", {})
    ctx = _Context(run_dir, plan, manifest, quiet)
    result = RunResult(run_dir, manifest)
    rerun_rest = False  # an earlier stage ran: every later stage runs again
    upstream: str | None = None
    t_run = time.perf_counter()
    _say(f"run {plan['experiment']['name']} -> {run_dir}", quiet)
    for stage in STAGES:
        params = _stage_params(ctx, stage)
        inputs = _stage_inputs(ctx, stage, upstream)
        key = digest({"stage": stage, "params": params, "inputs": inputs})
        upstream = key
        prev = stages.get(stage) or {}
        if not _enabled(plan, stage):
            stages[stage] = {"status": "disabled", "key": key, "params": params}
            result.skipped.append(stage)
            _say(f"[{stage}] disabled", quiet)
            continue
        outputs_ok = all(p.exists() for p in _outputs(ctx, stage))
        same = prev.get("key") == key
        if (
            same
            and prev.get("status") == "done"
            and outputs_ok
            and not rerun_rest
            and stage not in forced
        ):
            result.skipped.append(stage)
            _say(f"[{stage}] up to date, skipped", quiet)
            continue
        resume = same and prev.get("status") in ("running", "interrupted", "failed")
        # a done stage with files deleted: models and explain redo only the missing ones
        repair = same and prev.get("status") == "done" and stage in ("models", "explain")
        resume = (resume or repair) and not rerun_rest and stage not in forced
        if not resume:
            _clear(ctx, stage)
        why = (
            "forced"
            if stage in forced
            else "redoing missing outputs"
            if resume and repair
            else "resuming"
            if resume
            else "parameters or inputs changed"
            if prev.get("key") and not same
            else "an earlier stage ran"
            if rerun_rest and prev
            else "outputs missing"
            if prev
            else "first run"
        )
        _say(f"[{stage}] running ({why})", quiet)
        record = {
            "status": "running",
            "key": key,
            "params": params,
            "inputs": inputs,
            "started": now(),
        }
        stages[stage] = record
        write_manifest(run_dir, manifest)
        t0 = time.perf_counter()
        try:
            info = _RUNNERS[stage](ctx, resume)
        except KeyboardInterrupt:
            record.update(status="interrupted", seconds=round(time.perf_counter() - t0, 3))
            write_manifest(run_dir, manifest)
            raise
        except BaseException as exc:
            record.update(
                status="failed",
                seconds=round(time.perf_counter() - t0, 3),
                error=f"{type(exc).__name__}: {exc}",
            )
            if not isinstance(exc, GexplainError):
                record["traceback"] = traceback.format_exc(limit=8)
            write_manifest(run_dir, manifest)
            raise
        seconds = time.perf_counter() - t0
        record.update(
            status="done",
            finished=now(),
            seconds=round(seconds, 3),
            rss_mb=memory_mb(),
            info=info,
            outputs=listing([p for p in _outputs(ctx, stage) if p.exists()], run_dir),
        )
        write_manifest(run_dir, manifest)
        result.ran.append(stage)
        rerun_rest = True
        _say(f"[{stage}] done in {seconds:.1f} s", quiet)
    manifest["seconds_last_run"] = round(time.perf_counter() - t_run, 3)
    write_manifest(run_dir, manifest)
    return result
