"""The HTML report: every section, decodable embedded figures, headline numbers, missing parts."""

from __future__ import annotations

import base64
import json
import re
import shutil

import numpy as np
import polars as pl
import pytest
from run_helpers import (
    CLASSES,
    MODELS,
    SEEDS,
    copy_run,
    decode_png,
    fa_value,
    pgi_value,
    tiny_run,
)

from gexplain.cli import main
from gexplain.report import SECTIONS, render

pytest.importorskip("matplotlib")

_IMG = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """The tiny run with synthetic metrics, its manifest saying they were evaluated."""
    run = copy_run(tiny_run(tmp_path_factory, evaluate=False), tmp_path_factory.mktemp("r") / "t")
    _set_evaluate_status(run, "done")
    return run


def _set_evaluate_status(run, status):
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["stages"]["evaluate"]["status"] = status
    (run / "manifest.json").write_text(json.dumps(manifest))


def _sections(page: str) -> dict[str, str]:
    """Section id → its HTML."""
    out = {}
    for m in re.finditer(r'<section id="([^"]+)">(.*?)</section>', page, flags=re.S):
        out[m.group(1)] = m.group(2)
    return out


@pytest.fixture(scope="module")
def rendered(run_dir, tmp_path_factory):
    """The report of the tiny run with the synthetic metrics (rendered once)."""
    return render(run_dir, tmp_path_factory.mktemp("report") / "r" / "report.html")


def test_report_has_every_section_and_every_image_decodes(rendered):
    out = rendered
    page = out.read_text()
    summary = json.loads((out.parent / "summary.json").read_text())
    sections = _sections(page)
    assert list(sections) == [sid for sid, _ in SECTIONS]
    assert summary["sections"] == {sid: "ok" for sid, _ in SECTIONS}
    assert "Not available" not in page
    images = [base64.b64decode(b) for b in _IMG.findall(page)]
    # accuracy has no figure; PG, FA, stability, keep/remove, completeness have one each
    assert len(images) == 5
    files = sorted(p.name for p in out.parent.glob("*.png"))
    assert files == sorted(summary["figures"])
    assert sorted(p.read_bytes() for p in out.parent.glob("*.png")) == sorted(images)
    for png in images:
        _w, _h, channels = decode_png(png)
        assert channels in (3, 4)
    for sid in ("prediction-gaps", "feature-agreement", "stability", "keep-remove", "completeness"):
        assert "data:image/png" in sections[sid], sid
    # a self-contained page: no external resource
    assert not re.search(r'(src|href)="(https?:)?//', page)


def test_headline_numbers_are_the_seed_means(run_dir, rendered):
    models = json.loads((rendered.parent / "summary.json").read_text())["models"]
    assert list(models) == list(MODELS)
    for m in MODELS:
        pgi = [pgi_value(m, s) for s in SEEDS]
        assert models[m]["PGI_local"]["mean"] == pytest.approx(np.mean(pgi))
        assert models[m]["PGI_local"]["sd"] == pytest.approx(np.std(pgi, ddof=1))
        assert models[m]["PGR"]["mean"] == pytest.approx(np.mean(pgi) / 2)
        for variant, key in (("local", "FA_local"), ("diffused-global", "FA_diffused_global")):
            fa = [fa_value(m, s, variant, None) for s in SEEDS]
            assert models[m][key]["mean"] == pytest.approx(np.mean(fa))
        assert models[m]["FA_global_random"]["mean"] == pytest.approx(0.15)
    t = pl.read_parquet(run_dir / "models" / "training.parquet")
    last = t.filter(pl.col("epoch") == t["epoch"].max())
    for m in MODELS:
        acc = last.filter(pl.col("model") == m)["test_balanced_accuracy"].to_numpy()
        assert models[m]["balanced_accuracy"]["mean"] == pytest.approx(acc.mean())
        assert models[m]["balanced_accuracy"]["n"] == len(SEEDS)


@pytest.mark.parametrize("case", ["no metrics folder", "evaluate disabled"])
def test_missing_metrics_are_reported_not_fatal(run_dir, tmp_path, case):
    run = copy_run(run_dir, tmp_path / "run")
    if case == "no metrics folder":
        shutil.rmtree(run / "metrics")
        why = "no metrics/ folder in this run"
    else:
        # metrics left by an earlier run of an experiment whose evaluate stage is now off
        _set_evaluate_status(run, "disabled")
        why = "the evaluate stage is disabled"
    out = render(run)
    page = out.read_text()
    summary = json.loads((out.parent / "summary.json").read_text())
    st = summary["sections"]
    for sid in ("prediction-gaps", "feature-agreement", "stability", "keep-remove", "all-scores"):
        assert st[sid] == "missing"
        assert "Not available" in _sections(page)[sid]
        assert why in _sections(page)[sid]
    for sid in ("overview", "accuracy", "top-genes", "completeness", "provenance"):
        assert st[sid] == "ok"
    assert "FA_local" not in summary["models"]["lr"]
    assert len(_IMG.findall(page)) == 1  # completeness only
    # an empty folder: every section says what is missing
    empty = tmp_path / "empty"
    empty.mkdir()
    st = json.loads((render(empty).parent / "summary.json").read_text())["sections"]
    assert set(st.values()) == {"missing"}


def test_top_genes_agree_with_ground_truth(run_dir, rendered):
    from gexplain.cohort import Cohort

    tops = json.loads((rendered.parent / "summary.json").read_text())["top_genes"]
    truth = Cohort.load(run_dir / "cohort").truth.biomarker_sets()
    assert set(tops) == set(MODELS)
    for tables in tops.values():
        assert [t["class"] for t in tables] == list(CLASSES)
        for t in tables:
            assert t["n_seeds"] == len(SEEDS)
            assert len(t["genes"]) == 10
            scores = [g["score"] for g in t["genes"]]
            assert scores == sorted(scores, reverse=True)
            for g in t["genes"]:
                assert g["biomarker"] == (g["gene"] in truth[t["class"]])
                assert 0 <= g["seeds"] <= len(SEEDS)
    # the accurate tiny models find true biomarkers at the top
    hits = [g["biomarker"] for t in tops["lr"] for g in t["genes"]]
    assert np.mean(hits) > 0.5


def test_top_genes_hand_computed(tmp_path):
    from gexplain.explain import Attributions

    genes = ["g0", "g1", "g2", "g3", "g4"]

    def save(seed, values):
        rows = pl.DataFrame(
            {
                "sample_id": ["s0"],
                "target": ["a"],
                "target_index": [0],
                "f_x": [0.9],
                "f_baseline": [0.1],
                "delta": [1e-3 * (seed + 1)],
            }
        )
        Attributions(np.array([values], dtype=np.float32), rows, genes).save(
            tmp_path / "attributions" / f"lr-seed{seed}"
        )

    save(0, [5.0, 1.0, 0.0, 0.0, 0.0])
    save(1, [4.0, 0.0, 2.0, 0.0, 0.0])
    out = render(tmp_path, top_genes=2)
    summary = json.loads((out.parent / "summary.json").read_text())
    table = summary["top_genes"]["lr"]
    assert len(table) == 1 and table[0]["class"] == "a" and table[0]["n_seeds"] == 2
    g = table[0]["genes"]
    # normalised rows: seed 0 (0.981, 0.196, 0, ...), seed 1 (0.894, 0, 0.447, ...)
    assert [x["gene"] for x in g] == ["g0", "g2"]
    assert [x["seeds"] for x in g] == [2, 1]
    assert g[0]["score"] == pytest.approx((5 / np.sqrt(26) + 4 / np.sqrt(20)) / 2)
    assert g[1]["score"] == pytest.approx((2 / np.sqrt(20)) / 2)
    assert all(x["biomarker"] is None for x in g)  # no cohort, no ground truth
    page = out.read_text()
    assert "whether these genes are biomarkers is not known" in page
    # completeness table: median |delta| of the two rows of model lr
    comp = _sections(page)["completeness"]
    assert "1.50e-03" in comp or "0.002" in comp


def test_stability_heatmap_k(run_dir, rendered):
    from gexplain.report._plots import jaccard_heatmap

    page = rendered.read_text()
    assert "top-10 gene sets" in _sections(page)["stability"]  # both k equally common: smallest
    stab = pl.read_parquet(run_dir / "metrics" / "stability.parquet")
    png, k = jaccard_heatmap(stab, list(MODELS), 50)
    assert k == 50
    decode_png(png)
    # per-class rows only (no class-average rows): averaged over classes, same picture
    per_class = pl.concat([stab.with_columns(pl.lit(c).alias("class")) for c in CLASSES])
    assert jaccard_heatmap(per_class, list(MODELS), 50)[0] == png
    assert jaccard_heatmap(stab.filter(pl.col("metric") == "spearman"), list(MODELS)) == (
        None,
        None,
    )


def test_cli_report(run_dir, tmp_path, cli):
    out = tmp_path / "out" / "my.html"
    res = cli.invoke(main, ["report", str(run_dir), "--out", str(out), "--top-genes", "3"])
    assert res.exit_code == 0, res.output
    assert out.is_file() and (out.parent / "summary.json").is_file()
    assert len(list(out.parent.glob("fig-*.png"))) == 5
    summary = json.loads((out.parent / "summary.json").read_text())
    assert all(len(t["genes"]) == 3 for t in summary["top_genes"]["mlp"])
    res = cli.invoke(main, ["report", str(tmp_path / "nope")])
    assert res.exit_code == 2


def test_report_of_a_real_evaluation(tmp_path_factory, tmp_path):
    """The tiny demo run end to end with gexplain.metrics.evaluate: every section filled."""
    run = tiny_run(tmp_path_factory, evaluate=True)
    out = render(run, tmp_path / "report.html")
    page = out.read_text()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["sections"] == {sid: "ok" for sid, _ in SECTIONS}
    images = [base64.b64decode(b) for b in _IMG.findall(page)]
    assert len(images) == 5
    for png in images:
        decode_png(png)
    metrics = pl.read_parquet(run / "metrics" / "metrics.parquet")
    for model in MODELS:
        for key, metric, variant, control in (
            ("PGI_local", "PGI", "local", None),
            ("PGR", "PGR", "random", None),
            ("FA_global_random", "FA", "global", "random"),
        ):
            rows = metrics.filter(
                pl.col("class").is_null()
                & (pl.col("model") == model)
                & (pl.col("metric") == metric)
                & (pl.col("variant") == variant)
                & (pl.col("control").is_null() if control is None else pl.col("control") == control)
            )
            assert rows.height == len(SEEDS)
            assert summary["models"][model][key]["mean"] == pytest.approx(rows["value"].mean())
        h = summary["models"][model]
        # accurate models on a simulated cohort: IG finds biomarkers far above chance,
        # and removing the top genes first hurts more than a random order
        assert h["FA_local"]["mean"] > h["FA_local_random"]["mean"] + 0.2
        assert h["PGI_local"]["mean"] > h["PGR"]["mean"] > h["PGU_local"]["mean"]
