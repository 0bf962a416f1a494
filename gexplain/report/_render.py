"""Assemble the report: one self-contained HTML file, its PNG figures and ``summary.json``."""

from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from .._atomic import atomic_file, write_json
from ._data import (
    RunData,
    accuracy_table,
    completeness,
    fmt,
    fmt_ms,
    headline,
    load_run,
    mean_sd,
    score_values,
)
from ._data import top_genes as _top_gene_tables

#: Report sections in order: (anchor id, title).
SECTIONS: tuple[tuple[str, str], ...] = (
    ("overview", "Overview"),
    ("accuracy", "Model accuracy"),
    ("prediction-gaps", "Prediction gaps: PGI, PGU, PGR"),
    ("feature-agreement", "Feature agreement with the true biomarkers"),
    ("stability", "Rank stability across seeds"),
    ("keep-remove", "Keep / remove accuracy curves"),
    ("top-genes", "Top genes per class"),
    ("completeness", "Completeness of Integrated Gradients"),
    ("all-scores", "All scores"),
    ("provenance", "Provenance"),
)

_CSS = """
:root { --fg:#1d2329; --muted:#5b6570; --line:#d9dee3; --bg:#ffffff; --band:#f4f6f8;
        --good:#1a7f37; --bad:#b42318; --accent:#0072B2; }
* { box-sizing: border-box; }
body { font: 15px/1.5 -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       color: var(--fg); background: var(--bg); margin: 0; }
header { background: var(--band); border-bottom: 1px solid var(--line); padding: 18px 32px; }
header h1 { margin: 0 0 4px; font-size: 24px; }
header p { margin: 0; color: var(--muted); }
nav { padding: 8px 32px; border-bottom: 1px solid var(--line); position: sticky; top: 0;
      background: var(--bg); z-index: 1; font-size: 13px; }
nav a { margin-right: 14px; color: var(--accent); text-decoration: none; white-space: nowrap; }
main { max-width: 1180px; padding: 8px 32px 48px; }
section { border-bottom: 1px solid var(--line); padding: 10px 0 18px; }
h2 { font-size: 19px; margin: 18px 0 6px; }
h3 { font-size: 15px; margin: 14px 0 4px; }
p.note, .note { color: var(--muted); font-size: 13.5px; max-width: 900px; }
p.missing { color: var(--bad); background: #fff4f2; border-left: 3px solid var(--bad);
            padding: 6px 10px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13.5px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: right;
         vertical-align: top; }
th { background: var(--band); font-weight: 600; }
td.l, th.l { text-align: left; }
tbody tr:hover { background: #fafbfc; }
img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px;
      margin: 6px 0; }
.gene { display: inline-block; margin: 1px 3px 1px 0; padding: 0 6px; border-radius: 10px;
        font: 12px/1.7 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
        background: var(--band); border: 1px solid var(--line); white-space: nowrap; }
.gene.yes { background: #e6f4ea; border-color: #9fd3ae; }
.gene.no { background: #fdecea; border-color: #f1b0a8; }
.gene small { color: var(--muted); }
details { margin: 6px 0; }
summary { cursor: pointer; color: var(--accent); }
pre { background: var(--band); padding: 10px; overflow-x: auto; font-size: 12px;
      border-radius: 4px; }
.good { color: var(--good); } .bad { color: var(--bad); }
"""


def _esc(x: Any) -> str:
    return html.escape(str(x))


def _table(
    header: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1, raw: bool = False
) -> str:
    """An HTML table; the first ``left`` columns are left-aligned; cells are escaped unless raw."""
    cell = (lambda v: str(v)) if raw else _esc
    th = "".join(
        f'<th class="{"l" if i < left else ""}">{_esc(h)}</th>' for i, h in enumerate(header)
    )
    body = "".join(
        "<tr>"
        + "".join(f'<td class="{"l" if i < left else ""}">{cell(v)}</td>' for i, v in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _missing(why: str) -> str:
    return f'<p class="missing">Not available: {_esc(why)}</p>'


class _Figures:
    """Collects PNGs: written next to the HTML and embedded as base64."""

    def __init__(self, folder: Path, prefix: str) -> None:
        self.folder = folder
        self.prefix = prefix
        self.files: list[str] = []

    def add(self, name: str, png: bytes | None, alt: str) -> str:
        if png is None:
            return ""
        fname = f"{self.prefix}{name}.png"
        with atomic_file(self.folder / fname) as tmp:
            tmp.write_bytes(png)
        self.files.append(fname)
        b64 = base64.b64encode(png).decode("ascii")
        return f'<img src="data:image/png;base64,{b64}" alt="{_esc(alt)}" title="{_esc(fname)}">'


def _metric_missing(data: RunData, what: str) -> str:
    if data.metrics is None and data.curves is None:
        stage = ((data.manifest or {}).get("stages") or {}).get("evaluate", {})
        status = stage.get("status")
        if status == "disabled":
            return f"{what}: the evaluate stage is disabled in this experiment"
        if status == "failed":
            return f"{what}: the evaluate stage failed ({stage.get('error', 'see manifest')})"
        return f"{what}: no metrics/ folder in this run (the evaluate stage did not run)"
    return f"{what}: this metric was not computed in this run"


# --------------------------------------------------------------------------- sections
def _overview(data: RunData, ctx: dict[str, Any]) -> tuple[str, str]:
    parts = []
    c = data.cohort_info
    if c:
        splits = ", ".join(f"{k} {v}" for k, v in c["splits"].items())
        truth = (
            "simulated, with ground truth (true biomarkers known)"
            if data.truth is not None
            else "no ground truth (real data): agreement with biomarkers cannot be scored"
        )
        parts.append(
            f"<p>Cohort: <b>{c['n_samples']}</b> samples × <b>{c['n_genes']}</b> genes, "
            f"{len(c['classes'])} classes ({_esc(splits) or 'no split'}), units "
            f"{_esc(c['units'])}; {truth}.</p>"
        )
    expl = ((data.manifest or {}).get("parameters") or {}).get("explain")
    if expl:
        parts.append(
            "<p>Integrated Gradients: method <b>{m}</b>, target <b>{t}</b> ({o}), baseline "
            "<b>{b}</b>, {c}{n}, split {s}.</p>".format(
                m=_esc(expl.get("method")),
                t=_esc(expl.get("target")),
                o=_esc(expl.get("output")),
                b=_esc(expl.get("baseline")),
                c="correctly classified samples only"
                if expl.get("correct_only")
                else "all samples",
                n=", attributions L2-normalised per sample" if expl.get("normalize") else "",
                s=_esc(expl.get("split") or "all"),
            )
        )
    head = ctx["headline"]
    if head:
        cols = [
            ("balanced_accuracy", "balanced accuracy"),
            ("PGI_local", "PGI local ↑"),
            ("PGU_local", "PGU local ↓"),
            ("PGR", "PGR"),
            ("FA_local", "FA local"),
            ("FA_local_random", "FA local, random"),
            ("FA_global", "FA global"),
            ("FA_global_random", "FA global, random"),
        ]
        cols = [c for c in cols if any(c[0] in r for r in head.values())]
        rows = [[m, *(fmt_ms(r.get(k)) for k, _ in cols)] for m, r in head.items()]
        parts.append("<h3>Headline numbers (mean ± sd over seeds)</h3>")
        parts.append(_table(["model", *(t for _, t in cols)], rows))
        parts.append(
            '<p class="note">A good explanation has PGI well above PGR and PGU well below it, '
            "and feature agreement (FA) well above the random control. A high accuracy alone "
            "says nothing about the genes: see <a href='#feature-agreement'>feature "
            "agreement</a> and <a href='#keep-remove'>keep/remove curves</a>.</p>"
        )
    if not parts:
        return _missing("the run has no cohort, models or metrics yet"), "missing"
    return "".join(parts), "ok"


def _accuracy(data: RunData, ctx: dict[str, Any]) -> tuple[str, str]:
    t = accuracy_table(data)
    if t is None:
        return _missing(
            "models/training.parquet not found (the models stage did not run)"
        ), "missing"
    rows = [
        [
            r["model"],
            r["seeds"],
            r["epochs"],
            fmt(r["train_mean"]),
            fmt_ms({"mean": r["test_mean"], "sd": r["test_sd"]}),
            fmt(r["test_min"]),
            fmt(r["test_max"]),
        ]
        for r in t.iter_rows(named=True)
    ]
    body = _table(
        ["model", "seeds", "epochs", "train bal. acc.", "test bal. acc. (mean ± sd)", "min", "max"],
        rows,
    )
    note = (
        '<p class="note">Balanced accuracy (mean of per-class recalls) at the last epoch, on '
        "the training and test splits. Attributions are only meaningful for models that "
        "predict well; the paper's models reach ≥ 0.99 on its simulated cohorts.</p>"
    )
    return body + note, "ok"


def _prediction_gaps(data: RunData, ctx: dict[str, Any]) -> tuple[str, str]:
    from ._plots import prediction_gap_curves

    models = ctx["models"]
    parts = []
    img = ""
    if data.curves is not None:
        img = ctx["figures"].add(
            "prediction-gaps",
            prediction_gap_curves(data.curves, models),
            "PGI, PGU and PGR deletion curves per model",
        )
    cols = [
        ("PGI", "local"),
        ("PGU", "local"),
        ("PGU_adjusted", "local"),
        ("PGR", "random"),
        ("PGI", "global-mean"),
        ("PGU", "global-mean"),
        ("PGI", "global-ranksum"),
        ("PGU", "global-ranksum"),
        ("PGI", "global-rankmedian"),
        ("PGU", "global-rankmedian"),
    ]
    table_rows = []
    present = []
    for metric, variant in cols:
        if any(score_values(data.metrics, m, metric, variant, None) for m in models):
            present.append((metric, variant))
    for m in models:
        table_rows.append(
            [m, *(fmt_ms(mean_sd(score_values(data.metrics, m, mt, v, None))) for mt, v in present)]
        )
    if not img and not present:
        return _missing(_metric_missing(data, "prediction gaps (PG)")), "missing"
    parts.append(img)
    if present:
        parts.append(_table(["model", *(f"{mt} {v}" for mt, v in present)], table_rows))
    parts.append(
        '<p class="note">Genes are set to the baseline in blocks of 10, in the order of the '
        "attribution: most important first (<b>PGI</b>, higher is better: removing the top "
        "genes should hurt the prediction), least important first (<b>PGU</b>, lower is "
        "better: removing unimportant genes should not), or random (<b>PGR</b>, the "
        "reference). The curves show the explained output f<sub>y</sub> (mean over the "
        "class's samples, then over classes; band: ± sd over seeds) as genes are removed; "
        "the score is the mean drop of f<sub>y</sub> along the curve. <i>local</i>: each sample's own ranking; <i>global</i>: one ranking "
        "per class (mean, rank-sum or rank-median of the normalised attributions). "
        "PGU adjusted divides by 1 − f<sub>y</sub>(baseline).</p>"
    )
    return "".join(parts), "ok"


def _feature_agreement(data: RunData, ctx: dict[str, Any]) -> tuple[str, str]:
    from ._plots import agreement_bars

    if data.truth is None and data.cohort_info is not None:
        return (
            _missing(
                "feature agreement needs ground truth (a simulated cohort or gene sets); "
                "this cohort has none"
            ),
            "missing",
        )
    if data.metrics is None or data.metrics.filter(pl.col("metric") == "FA").height == 0:
        return _missing(_metric_missing(data, "feature agreement (FA)")), "missing"
    models = ctx["models"]
    img = ctx["figures"].add(
        "feature-agreement",
        agreement_bars(data.metrics, models),
        "feature agreement per model vs random attributions",
    )
    variants = ["local", "global", "diffused-local", "diffused-global"]
    rows = []
    for m in models:
        row = [m]
        for v in variants:
            s = mean_sd(score_values(data.metrics, m, "FA", v, None))
            r = mean_sd(score_values(data.metrics, m, "FA", v, "random"))
            row.append(f"{fmt_ms(s)} (random {fmt(r['mean'])})" if s["n"] else "–")
        rows.append(row)
    extra = []
    for metric in ("precision@k", "recall@k", "AUPRC"):
        vals = {m: mean_sd(score_values(data.metrics, m, metric, None, None)) for m in models}
        if any(v["n"] for v in vals.values()):
            extra.append((metric, vals))
    body = img + _table(["model", *(f"FA {v}" for v in variants)], rows)
    if extra:
        body += _table(
            ["model", *(e[0] for e in extra)],
            [[m, *(fmt_ms(e[1][m]) for e in extra)] for m in models],
        )
    body += (
        '<p class="note"><b>Feature agreement</b>: for each class c with k<sub>c</sub> true '
        "biomarkers, the fraction of the top-k<sub>c</sub> genes (signed IG) that are true "
        "biomarkers. <i>local</i>: per sample, pooled per class; <i>global</i>: the "
        "k<sub>c</sub> genes most often in the samples' top-k<sub>c</sub>; <i>diffused</i>: "
        "the same on attributions diffused over the gene–gene correlation graph. Black marks: "
        "the same score for random attributions (the chance level). Bars far above the marks "
        "mean the ranking finds biomarkers; an accurate model with FA near chance is the "
        "paper's warning case.</p>"
    )
    return body, "ok"


def _stability(data: RunData, ctx: dict[str, Any]) -> tuple[str, str]:
    from ._plots import jaccard_heatmap

    if data.stability is None or data.stability.height == 0:
        return _missing(_metric_missing(data, "rank stability (stability.parquet)")), "missing"
    png, k = jaccard_heatmap(data.stability, ctx["models"], ctx["options"].get("jaccard_k"))
    if png is None:
        return _missing("no jaccard@k rows in metrics/stability.parquet"), "missing"
    img = ctx["figures"].add("stability", png, "pairwise Jaccard@k of top-k gene sets")
    rows = []
    if data.metrics is not None:
        for m in ctx["models"]:
            row = [m]
            for metric in ("jaccard@k", "spearman", "kendall", "sign-agreement"):
                row.append(
                    fmt_ms(mean_sd(score_values(data.metrics, m, metric, "across-seeds", None)))
                )
            rows.append(row)
    body = img
    if rows and any(any(c != "–" for c in r[1:]) for r in rows):
        body += _table(["model", "Jaccard@k", "Spearman", "Kendall", "sign agreement"], rows)
    body += (
        f'<p class="note">Jaccard index of the top-{k} gene sets (class-average ranking) '
        "between every pair of trained models, averaged over classes. Seeds of the same "
        "model should agree (bright blocks on the diagonal); a ranking that changes with the "
        "seed is a property of the training run, not of the biology. Blank cells: pairs "
        "the evaluation did not compare.</p>"
    )
    return body, "ok"


def _keep_remove(data: RunData, ctx: dict[str, Any]) -> tuple[str, str]:
    from ._plots import keep_remove_curves

    png = None
    if data.curves is not None:
        png = keep_remove_curves(data.curves, ctx["models"])
    if png is None:
        return _missing(_metric_missing(data, "keep/remove curves")), "missing"
    img = ctx["figures"].add("keep-remove", png, "keep/remove balanced accuracy curves")
    return (
        img + '<p class="note">Balanced accuracy of the model when only the top-k genes of '
        "the class ranking are kept (the others set to the baseline), or when they are "
        "removed, against k random genes (dotted) and k random genes drawn outside the top "
        "set (dash-dot); for class c the set is class c's top-k, applied to the samples of "
        "class c (the mean of the class recalls is the balanced accuracy). When a few random genes already give a high "
        "accuracy and removing the top genes barely hurts, the signal is spread over many "
        "redundant genes: the top of the ranking is <i>sufficient</i> for the prediction "
        "without being <i>the</i> biomarkers (the paper's motivating figure).</p>",
        "ok",
    )


def _top_genes(data: RunData, ctx: dict[str, Any]) -> tuple[str, str]:
    tops = ctx["top_genes"]
    if not tops:
        return _missing("no attributions in this run (the explain stage did not run)"), "missing"
    n_top = ctx["options"]["top_genes"]
    max_classes = ctx["options"]["max_classes"]
    has_truth = data.truth is not None
    parts = []
    for i, model in enumerate(m for m in ctx["models"] if m in tops):
        tables = tops[model]
        rows = []
        for t in tables[:max_classes]:
            chips = []
            for g in t["genes"]:
                cls = "" if g["biomarker"] is None else (" yes" if g["biomarker"] else " no")
                mark = "" if g["biomarker"] is None else (" ✓" if g["biomarker"] else " ✗")
                chips.append(
                    f'<span class="gene{cls}" title="mean normalised IG {g["score"]:.3g}">'
                    f"{_esc(g['gene'])}{mark} <small>{g['seeds']}/{t['n_seeds']}</small></span>"
                )
            row = [_esc(t["class"]), "".join(chips)]
            if has_truth:
                hits = sum(bool(g["biomarker"]) for g in t["genes"])
                row.append(f"{hits}/{len(t['genes'])}")
            rows.append(row)
        header = ["class", f"top {n_top} genes (seeds with the gene in their own top {n_top})"]
        if has_truth:
            header.append("true biomarkers")
        more = (
            f'<p class="note">{len(tables) - max_classes} more classes in summary.json.</p>'
            if len(tables) > max_classes
            else ""
        )
        parts.append(
            f"<details{' open' if i == 0 else ''}><summary>{_esc(model)}</summary>"
            + _table(header, rows, left=2, raw=True)
            + more
            + "</details>"
        )
    legend = (
        "Green ✓: a true biomarker of the class; red ✗: not one. "
        if has_truth
        else "No ground truth: whether these genes are biomarkers is not known. "
    )
    parts.append(
        f'<p class="note">Genes ranked by the mean L2-normalised IG over the class\'s '
        f"explained samples, averaged over seeds. {legend}The fraction after each gene is "
        f"how many seeds put it in their own top {n_top}: a gene that appears for one seed "
        "only is not a stable finding. A ranking is a hypothesis, not a biomarker list.</p>"
    )
    return "".join(parts), "ok"


def _completeness(data: RunData, ctx: dict[str, Any]) -> tuple[str, str]:
    from ._plots import completeness_histogram

    d = ctx["deltas"]
    if d is None or d.height == 0:
        return _missing("no attributions in this run (the explain stage did not run)"), "missing"
    img = ctx["figures"].add(
        "completeness", completeness_histogram(d, ctx["models"]), "IG completeness error"
    )
    stats = (
        d.with_columns(pl.col("delta").abs().alias("a"))
        .group_by("model")
        .agg(
            pl.len().alias("rows"),
            pl.col("a").median().alias("median"),
            pl.col("a").quantile(0.99).alias("p99"),
            pl.col("a").max().alias("max"),
        )
    )
    order = {m: i for i, m in enumerate(ctx["models"])}
    stats = stats.sort(pl.col("model").replace_strict(order, default=len(order)))
    rows = [
        [r["model"], r["rows"], fmt(r["median"]), fmt(r["p99"]), fmt(r["max"])]
        for r in stats.iter_rows(named=True)
    ]
    body = img + _table(["model", "explained rows", "median |δ|", "99th pct |δ|", "max |δ|"], rows)
    body += (
        '<p class="note">Completeness: IG attributions sum to f(x) − f(baseline). '
        "δ is the gap, per explained sample; exact IG keeps it at rounding level "
        "(~1e-12), a 50-step quadrature leaves ~1e-2. The paper raised the number of "
        "steps until |δ| ≤ 1 % of the output difference.</p>"
    )
    return body, "ok"


def _all_scores(data: RunData, ctx: dict[str, Any]) -> tuple[str, str]:
    if data.metrics is None or data.metrics.height == 0:
        return _missing(_metric_missing(data, "scores (metrics.parquet)")), "missing"
    models = ctx["models"]
    f = data.metrics.filter(pl.col("class").is_null())
    g = (
        f.group_by("metric", "variant", "k", "control", "model")
        .agg(pl.col("value").mean().alias("m"), pl.col("value").std().alias("s"))
        .sort("metric", "variant", "k", "control", nulls_last=False)
    )
    keys = g.select("metric", "variant", "k", "control").unique(maintain_order=True)
    lookup = {
        (r["metric"], r["variant"], r["k"], r["control"], r["model"]): (r["m"], r["s"])
        for r in g.iter_rows(named=True)
    }
    rows = []
    for r in keys.iter_rows(named=True):
        key = (r["metric"], r["variant"], r["k"], r["control"])
        cells = []
        for m in models:
            v = lookup.get((*key, m))
            cells.append("–" if v is None else fmt_ms({"mean": v[0], "sd": v[1]}))
        rows.append(
            [
                r["metric"],
                r["variant"] or "",
                "" if r["k"] is None else r["k"],
                r["control"] or "",
                *cells,
            ]
        )
    body = (
        f"<details><summary>{len(rows)} scores (class average, mean ± sd over seeds)</summary>"
        + _table(["metric", "variant", "k", "control", *models], rows, left=4)
        + "</details>"
        + '<p class="note">Every class-averaged score in metrics/metrics.parquet. Per-class '
        "values, the curves and the pairwise stability are in the same folder (Parquet).</p>"
    )
    return body, "ok"


def _provenance(data: RunData, ctx: dict[str, Any]) -> tuple[str, str]:
    m = data.manifest
    if not m:
        return _missing("no manifest.json in this folder (not made by gexplain run)"), "missing"
    v = m.get("versions", {})
    deps = v.get("dependencies", {})
    vrows = [
        ["gexplain", v.get("gexplain")],
        ["python", v.get("python")],
        ["platform", v.get("platform")],
    ]
    vrows += [[k, val] for k, val in deps.items() if val]
    stage_rows = []
    for name, s in (m.get("stages") or {}).items():
        secs = s.get("seconds")
        rss = (s.get("rss_mb") or {}).get("peak")
        stage_rows.append(
            [
                name,
                s.get("status"),
                "" if secs is None else f"{secs:.1f}",
                "" if rss is None else f"{rss:,.0f}",
                s.get("started", ""),
                (s.get("key") or "")[:12],
            ]
        )
    inputs = []
    for name, s in (m.get("stages") or {}).items():
        for key, val in (s.get("inputs") or {}).items():
            if isinstance(val, dict) and "sha256" in val:
                inputs.append([name, key, val.get("path", ""), val["sha256"][:16]])
    body = (
        f"<p>Run <b>{_esc(m.get('name'))}</b>, created {_esc(m.get('created'))}, updated "
        f"{_esc(m.get('updated'))}; experiment file {_esc(m.get('experiment_file') or '(dict)')}"
        f"; seeds {_esc(json.dumps(m.get('seeds', {})))}.</p>"
        + "<h3>Stages</h3>"
        + _table(
            ["stage", "status", "seconds", "peak RSS so far (MB)", "started (UTC)", "key"],
            stage_rows,
        )
        + (
            "<h3>Input files</h3>" + _table(["stage", "input", "path", "sha256"], inputs)
            if inputs
            else ""
        )
        + "<h3>Versions</h3>"
        + _table(["package", "version"], vrows)
        + "<details><summary>Resolved parameters</summary><pre>"
        + _esc(json.dumps(m.get("parameters", {}), indent=2))
        + "</pre></details>"
    )
    return body, "ok"


_BUILDERS: dict[str, Callable[[RunData, dict[str, Any]], tuple[str, str]]] = {
    "overview": _overview,
    "accuracy": _accuracy,
    "prediction-gaps": _prediction_gaps,
    "feature-agreement": _feature_agreement,
    "stability": _stability,
    "keep-remove": _keep_remove,
    "top-genes": _top_genes,
    "completeness": _completeness,
    "all-scores": _all_scores,
    "provenance": _provenance,
}


def render(
    run_dir: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    title: str | None = None,
    top_genes: int = 10,
    max_classes: int = 12,
    jaccard_k: int | None = None,
    quiet: bool | None = None,
) -> Path:
    """Write the HTML report of a run folder, its PNG figures and ``summary.json``.

    The HTML file is self-contained (figures embedded as base64 PNG, a small
    embedded style sheet) and opens in any browser without a server. Sections
    whose inputs are missing (a metric that was not run, a cohort without
    ground truth) say so instead of failing.

    Parameters
    ----------
    run_dir
        A run folder made by :func:`gexplain.run.run_experiment` (or any folder
        with the same layout: ``cohort/``, ``models/``, ``attributions/<stem>/``,
        ``metrics/``, ``manifest.json``).
    out
        The HTML file (default ``RUN/report/report.html``). The figures
        (``fig-*.png``) and ``summary.json`` are written beside it.
    title
        Page title (default: the run's name).
    top_genes
        Genes listed per class in the top-gene table.
    max_classes
        Classes shown per model in the top-gene table (all are in summary.json).
    jaccard_k
        ``k`` of the stability heatmap (default: the most common ``k`` stored).
    quiet
        Accepted for symmetry with the other stages (rendering prints nothing).

    Returns
    -------
    pathlib.Path
        The HTML file.

    Examples
    --------
    >>> import gexplain as gx
    >>> gx.report.render("gexplain-demo")  # doctest: +SKIP
    PosixPath('gexplain-demo/report/report.html')
    """
    data = load_run(run_dir)
    out_path = Path(out) if out is not None else data.path / "report" / "report.html"
    folder = out_path.parent
    folder.mkdir(parents=True, exist_ok=True)
    ctx: dict[str, Any] = {
        "models": data.model_order(),
        "figures": _Figures(folder, "fig-"),
        "headline": headline(data),
        "deltas": completeness(data),
        "top_genes": _top_gene_tables(data, top_genes),
        "options": {"top_genes": top_genes, "max_classes": max_classes, "jaccard_k": jaccard_k},
    }
    bodies = []
    status: dict[str, str] = {}
    for sid, stitle in SECTIONS:
        body, st = _BUILDERS[sid](data, ctx)
        status[sid] = st
        bodies.append(f'<section id="{sid}"><h2>{_esc(stitle)}</h2>{body}</section>')
    name = title or f"gexplain report: {data.name}"
    nav = "".join(f'<a href="#{sid}">{_esc(t)}</a>' for sid, t in SECTIONS)
    created = (data.manifest or {}).get("updated", "")
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(name)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{_esc(name)}</h1><p>Can the genes ranked by Integrated Gradients be "
        "trusted as biomarkers? Sufficiency, necessity, agreement with the truth, stability "
        f"and controls, in one page. Run folder: {_esc(data.path)}"
        + (f"; last updated {_esc(created)}" if created else "")
        + f"</p></header><nav>{nav}</nav><main>"
        + "".join(bodies)
        + '<p class="note">Made by gexplain '
        + _esc(((data.manifest or {}).get("versions") or {}).get("gexplain", ""))
        + ": https://arxiv.org/abs/2303.11336 (Bontonou et al. 2023) for the method.</p>"
        "</main></body></html>\n"
    )
    summary = {
        "name": data.name,
        "report": out_path.name,
        "run": str(data.path),
        "cohort": data.cohort_info,
        "ground_truth": data.truth is not None,
        "models": ctx["headline"],
        "sections": status,
        "figures": ctx["figures"].files,
        "top_genes": ctx["top_genes"],
    }
    for stale in folder.glob("fig-*.png"):
        if stale.name not in ctx["figures"].files:
            stale.unlink()
    write_json(folder / "summary.json", summary)
    with atomic_file(out_path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out_path
