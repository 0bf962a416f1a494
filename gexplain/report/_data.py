"""Read a run folder into the tables the report shows (Polars, small; no plotting here)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ..errors import InputError

#: Headline numbers per model: (key in summary.json, metric, variant, control).
HEADLINE: tuple[tuple[str, str, str, str | None], ...] = (
    ("PGI_local", "PGI", "local", None),
    ("PGU_local", "PGU", "local", None),
    ("PGR", "PGR", "random", None),
    ("PGI_global", "PGI", "global-mean", None),
    ("PGU_global", "PGU", "global-mean", None),
    ("FA_local", "FA", "local", None),
    ("FA_local_random", "FA", "local", "random"),
    ("FA_global", "FA", "global", None),
    ("FA_global_random", "FA", "global", "random"),
    ("FA_diffused_local", "FA", "diffused-local", None),
    ("FA_diffused_local_random", "FA", "diffused-local", "random"),
    ("FA_diffused_global", "FA", "diffused-global", None),
    ("FA_diffused_global_random", "FA", "diffused-global", "random"),
)


@dataclass
class RunData:
    """Everything the report needs from a run folder (missing parts are ``None``)."""

    path: Path
    manifest: dict[str, Any] | None
    training: pl.DataFrame | None
    metrics: pl.DataFrame | None
    curves: pl.DataFrame | None
    stability: pl.DataFrame | None
    evaluate_info: dict[str, Any] | None
    attribution_dirs: dict[str, Path] = field(default_factory=dict)
    truth: Any = None
    cohort_info: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        if self.manifest and self.manifest.get("name"):
            return str(self.manifest["name"])
        return self.path.resolve().name

    def model_order(self) -> list[str]:
        """Model names in the experiment's order (kinds, then permuted controls), then others."""
        names: list[str] = []
        params = (self.manifest or {}).get("parameters", {}).get("models", {})
        for kind in params.get("kinds", []):
            names.append(kind)
        if params.get("permuted"):
            names += [f"{k}-permuted" for k in params.get("kinds", [])]
        seen: set[str] = set(names)
        for frame in (self.training, self.metrics, self.curves):
            if frame is not None and "model" in frame.columns:
                for m in frame["model"].unique(maintain_order=True).to_list():
                    if m is not None and m not in seen:
                        seen.add(m)
                        names.append(m)
        present: set[str] = set()
        for frame in (self.training, self.metrics, self.curves):
            if frame is not None and "model" in frame.columns:
                present.update(m for m in frame["model"].unique().to_list() if m is not None)
        for stem in self.attribution_dirs:
            present.add(_stem_model(stem)[0])
        return [n for n in names if n in present]


def _stem_model(stem: str) -> tuple[str, int | None]:
    """``"diffuse-mlp-seed3"`` → ``("diffuse-mlp", 3)``."""
    head, sep, tail = stem.rpartition("-seed")
    if sep and tail.isdigit():
        return head, int(tail)
    return stem, None


def _read_parquet(path: Path) -> pl.DataFrame | None:
    if not path.is_file():
        return None
    try:
        return pl.read_parquet(path)
    except Exception as exc:  # a corrupt table is reported, not fatal
        raise InputError(f"cannot read {path}: {exc}") from None


def load_run(run_dir: str | Path) -> RunData:
    """Read the manifest, training table, metrics tables and attribution folders of a run."""
    run = Path(run_dir)
    if not run.is_dir():
        raise InputError(f"run folder not found: {run}")
    manifest = None
    mpath = run / "manifest.json"
    if mpath.is_file():
        try:
            manifest = json.loads(mpath.read_text())
        except ValueError as exc:
            raise InputError(f"{mpath} is not valid JSON: {exc}") from None
    metrics_dir = run / "metrics"
    info = None
    if (metrics_dir / "evaluate.json").is_file():
        try:
            info = json.loads((metrics_dir / "evaluate.json").read_text())
        except ValueError:
            info = None
    attr_root = run / "attributions"
    dirs: dict[str, Path] = {}
    if attr_root.is_dir():
        for d in sorted(attr_root.iterdir()):
            if d.is_dir() and (d / "attributions.parquet").is_file():
                dirs[d.name] = d
    truth = None
    cohort_info = None
    cohort_dir = run / "cohort"
    if (cohort_dir / "cohort.json").is_file():
        from ..cohort import Cohort

        c = Cohort.load(cohort_dir)
        truth = c.truth
        cohort_info = {
            "n_samples": c.n_samples,
            "n_genes": c.n_genes,
            "classes": c.classes if c.has_labels else [],
            "units": c.meta.get("units"),
            "splits": (
                dict(c.samples.group_by("split").len().sort("split").iter_rows())
                if "split" in c.samples.columns
                else {}
            ),
        }
    # metrics left from an earlier run do not describe an experiment whose evaluate
    # stage is now disabled (the files are kept, the report ignores them)
    ev_status = ((manifest or {}).get("stages") or {}).get("evaluate", {}).get("status")
    use_metrics = ev_status != "disabled"
    return RunData(
        path=run,
        manifest=manifest,
        training=_read_parquet(run / "models" / "training.parquet"),
        metrics=_read_parquet(metrics_dir / "metrics.parquet") if use_metrics else None,
        curves=_read_parquet(metrics_dir / "curves.parquet") if use_metrics else None,
        stability=_read_parquet(metrics_dir / "stability.parquet") if use_metrics else None,
        evaluate_info=info,
        attribution_dirs=dirs,
        truth=truth,
        cohort_info=cohort_info,
    )


# --------------------------------------------------------------------------- tables
def mean_sd(values: Sequence[float]) -> dict[str, Any]:
    """``{"mean", "sd", "n"}`` of the finite values (sd with ddof 1; ``None`` when undefined)."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"mean": None, "sd": None, "n": 0}
    return {
        "mean": float(v.mean()),
        "sd": float(v.std(ddof=1)) if v.size > 1 else None,
        "n": int(v.size),
    }


def accuracy_table(data: RunData) -> pl.DataFrame | None:
    """Last-epoch balanced accuracies: one row per model with mean, sd, min, max over seeds."""
    t = data.training
    if t is None or t.height == 0:
        return None
    last = t.sort("epoch").group_by("model", "seed", maintain_order=True).last()
    order = {m: i for i, m in enumerate(data.model_order())}
    out = (
        last.group_by("model")
        .agg(
            pl.len().alias("seeds"),
            pl.col("test_balanced_accuracy").mean().alias("test_mean"),
            pl.col("test_balanced_accuracy").std().alias("test_sd"),
            pl.col("test_balanced_accuracy").min().alias("test_min"),
            pl.col("test_balanced_accuracy").max().alias("test_max"),
            pl.col("train_balanced_accuracy").mean().alias("train_mean"),
            pl.col("epoch").max().alias("epochs"),
        )
        .with_columns(pl.col("model").replace_strict(order, default=len(order)).alias("_o"))
        .sort("_o", "model")
        .drop("_o")
    )
    return out


def class_mean_scores(metrics: pl.DataFrame) -> pl.DataFrame:
    """Rows of the class average (``class`` null), one per model, seed, metric, variant, k, control."""
    return metrics.filter(pl.col("class").is_null())


def score_values(
    metrics: pl.DataFrame | None,
    model: str,
    metric: str,
    variant: str | None,
    control: str | None,
    k: int | None = None,
) -> list[float]:
    """Per-seed values of one score (class average) for one model; the smallest ``k`` if several."""
    if metrics is None or metrics.height == 0:
        return []
    f = metrics.filter(
        pl.col("class").is_null() & (pl.col("model") == model) & (pl.col("metric") == metric)
    )
    if variant is not None:
        f = f.filter(pl.col("variant") == variant)
    f = f.filter(pl.col("control").is_null() if control is None else pl.col("control") == control)
    if f.height == 0:
        return []
    if k is not None:
        f = f.filter(pl.col("k") == k)
    elif f["k"].null_count() < f.height:
        ks = f["k"].drop_nulls()
        f = f.filter(pl.col("k").is_null() | (pl.col("k") == ks.min())) if ks.len() else f
        if f["k"].null_count():
            f = f.filter(pl.col("k").is_null())
    return [float(v) for v in f.sort("seed")["value"].to_list() if v is not None]


def headline(data: RunData) -> dict[str, dict[str, Any]]:
    """Headline numbers per model: balanced accuracy and the main scores, mean ± sd over seeds."""
    out: dict[str, dict[str, Any]] = {}
    last = None
    if data.training is not None and data.training.height:
        last = data.training.sort("epoch").group_by("model", "seed", maintain_order=True).last()
    for model in data.model_order():
        row: dict[str, Any] = {}
        if last is not None:
            vals = last.filter(pl.col("model") == model)["test_balanced_accuracy"].to_list()
            row["balanced_accuracy"] = mean_sd(vals)
        for key, metric, variant, control in HEADLINE:
            vals = score_values(data.metrics, model, metric, variant, control)
            if vals:
                row[key] = mean_sd(vals)
        out[model] = row
    return out


def completeness(data: RunData) -> pl.DataFrame | None:
    """``model, seed, delta`` (IG completeness error per explained row) over every attributions folder."""
    frames = []
    for stem, d in data.attribution_dirs.items():
        rows = pl.read_parquet(d / "attributions.parquet", columns=["delta"])
        model, seed = _stem_model(stem)
        frames.append(
            rows.select(
                pl.lit(model).alias("model"),
                pl.lit(seed, dtype=pl.Int64).alias("seed"),
                pl.col("delta").cast(pl.Float64),
            )
        )
    if not frames:
        return None
    return pl.concat(frames)


def top_genes(data: RunData, n_top: int) -> dict[str, Any] | None:
    """Per model and class: the top genes of the seed-averaged class ranking, how many seeds
    put each in their own top ``n_top``, and whether it is a true biomarker (simulated data).

    Rankings use the mean of L2-normalised signed attributions over the class's
    explained rows (:func:`gexplain.metrics.class_scores`, the paper's global order).
    """
    if not data.attribution_dirs:
        return None
    from ..explain import Attributions
    from ..metrics import class_scores

    truth_sets = data.truth.biomarker_sets() if data.truth is not None else None
    by_model: dict[str, list[tuple[int | None, list[str], np.ndarray, list[str]]]] = {}
    for stem, d in data.attribution_dirs.items():
        model, seed = _stem_model(stem)
        attr = Attributions.load(d)
        targets = attr.rows["target"].cast(pl.String).to_list()
        if attr.n_rows == 0:
            continue
        names, scores = class_scores(np.asarray(attr.values), targets, "mean", normalize=True)
        genes = [str(g) for g in attr.gene_ids]
        by_model.setdefault(model, []).append((seed, names, scores, genes))
    result: dict[str, Any] = {}
    for model, runs in by_model.items():
        genes = runs[0][3]
        classes = sorted({c for r in runs for c in r[1]})
        tables = []
        for cls in classes:
            per_seed = []
            for _seed, names, scores, g in runs:
                if cls not in names or g != genes:
                    continue
                row = scores[names.index(cls)]
                if np.all(np.isnan(row)):
                    continue
                per_seed.append(row)
            if not per_seed:
                continue
            stack = np.vstack(per_seed)
            consensus = np.nanmean(stack, axis=0)
            k = min(n_top, consensus.size)
            order = np.argsort(-consensus, kind="stable")[:k]
            tops = [set(np.argsort(-s, kind="stable")[:k].tolist()) for s in stack]
            entries = []
            for j in order.tolist():
                entries.append(
                    {
                        "gene": genes[j],
                        "score": float(consensus[j]),
                        "seeds": sum(j in t for t in tops),
                        "biomarker": (
                            None if truth_sets is None else genes[j] in truth_sets.get(cls, set())
                        ),
                    }
                )
            tables.append({"class": cls, "n_seeds": len(per_seed), "genes": entries})
        result[model] = tables
    return result


def fmt(x: Any, digits: int = 3) -> str:
    """A number for a table cell (``–`` when missing)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, float):
        if x != 0 and (abs(x) < 10 ** (-digits) or abs(x) >= 1e5):
            return f"{x:.2e}"
        return f"{x:.{digits}f}"
    return str(x)


def fmt_ms(s: dict[str, Any] | None, digits: int = 3) -> str:
    """``mean ± sd`` of a :func:`mean_sd` dict."""
    if not s or s.get("mean") is None:
        return "–"
    mean, sd = s["mean"], s.get("sd")
    if mean == 0 or 10 ** (-digits) <= abs(mean) < 1e5:
        # the sd with the mean's precision: 0.955 ± 0.001, never 0.955 ± 8.60e-04
        return f"{mean:.{digits}f}" + ("" if sd is None else f" ± {sd:.{digits}f}")
    return fmt(mean, digits) + ("" if sd is None else f" ± {sd:.1e}")
