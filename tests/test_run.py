"""The experiment runner: TOML validation, manifest, skip / rerun / resume / force, CLI."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from run_helpers import MODELS, SEEDS, copy_run, tiny_experiment, tiny_run, to_toml

from gexplain.cli import main
from gexplain.errors import InputError
from gexplain.run import STAGES, load_experiment, read_manifest, run_experiment

EXPERIMENTS = Path(__file__).resolve().parents[1] / "data" / "experiments"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tiny_run(tmp_path_factory, evaluate=False)


def _doc(**sections):
    base = {"evaluate": {"enabled": False}, "report": {"enabled": False}}
    for name, table in sections.items():
        base[name] = {**base.get(name, {}), **table}
    return tiny_experiment(**base)


def _mtimes(folder: Path) -> dict[str, int]:
    return {
        str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()
    }


# --------------------------------------------------------------------------- schema
def test_shipped_experiments_validate():
    names = sorted(p.stem for p in EXPERIMENTS.glob("*.toml"))
    assert names == ["demo", "paper-simu1", "paper-simu2", "xena-template"]
    demo = load_experiment(EXPERIMENTS / "demo.toml")
    assert demo["cohort"]["simulate"]["preset"] == "demo"
    assert demo["experiment"]["out"] == "gexplain-demo"
    for preset in ("simu1", "simu2"):
        p = load_experiment(EXPERIMENTS / f"paper-{preset}.toml")
        assert p["cohort"]["simulate"]["preset"] == preset
        assert p["models"]["kinds"] == ["lr", "mlp", "diffuse-lr", "diffuse-mlp"]
        assert p["models"]["seeds"] == list(range(10))
        assert p["models"]["config"]["milestones"] == [12, 22]
        e = p["explain"]
        assert (e["method"], e["target"], e["output"], e["baseline"]) == (
            "exact",
            "label",
            "probability",
            "model-zero",
        )
        assert e["correct_only"] and e["normalize"] and e["split"] == "test"
        assert p["evaluate"]["metrics"] == ["pg", "fa", "stability", "keep-remove"]
    xena = load_experiment(EXPERIMENTS / "xena-template.toml")
    # paths are resolved against the TOML file's folder
    assert Path(xena["cohort"]["import"]["path"]).is_file()
    assert xena["cohort"]["preprocess"]["split"] == 0.4


def _error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "exp.toml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_experiment(path)
    return str(info.value)


def test_errors_name_the_key_and_line(tmp_path):
    head = '[experiment]\nname = "x"\n\n[cohort]\nsimulate = { preset = "demo" }\n\n'
    msg = _error(tmp_path, head + '[explain]\nmethod = "exact"\nnormalise = true\n')
    assert "[explain] normalise (line 9): unknown key" in msg
    assert "normalize" in msg  # the accepted keys are listed
    msg = _error(tmp_path, head + '[models]\nkinds = ["lr", "svm"]\n')
    assert "[models] kinds (line 8)" in msg and "svm" in msg
    msg = _error(tmp_path, head + '[models]\nseeds = "3-1"\n')
    assert "[models] seeds (line 8): empty range" in msg
    msg = _error(tmp_path, head + '[explain]\noutput = "prob"\n')
    assert "[explain] output (line 8)" in msg and "log_probability" in msg
    msg = _error(tmp_path, head.replace('"demo" }', '"demo", n_classes = 0 }'))
    assert "[cohort.simulate] n_classes (line 5)" in msg
    msg = _error(tmp_path, head + "[report]\ntop_genes = 0\n")
    assert "[report] top_genes (line 8): must be ≥ 1" in msg
    msg = _error(tmp_path, head + "[modles]\nkinds = []\n")
    assert "[modles]" in msg and "unknown section" in msg
    msg = _error(tmp_path, head + "[models\n")
    assert "not valid TOML" in msg and "line 7" in msg
    msg = _error(
        tmp_path,
        '[cohort]\nsimulate = { preset = "demo" }\nimport = { format = "xena", path = "x" }\n',
    )
    assert "exactly one of simulate" in msg
    msg = _error(tmp_path, '[cohort.import]\nformat = "xena"\npath = "missing.tsv"\n')
    assert "[cohort.import] path (line 3): file not found" in msg
    msg = _error(tmp_path, '[cohort.import]\nformat = "xena"\npath = "a"\nlabels = "x"\n')
    assert "[cohort.import] labels (line 4): unknown key" in msg and "label" in msg
    with pytest.raises(InputError, match="unknown stage 'train'"):
        run_experiment(_doc(), out=tmp_path / "r", force="train")


# --------------------------------------------------------------------------- runs
def test_first_run_layout_and_manifest(run_dir):
    m = read_manifest(run_dir)
    assert list(m["stages"]) == list(STAGES)
    st = {k: v["status"] for k, v in m["stages"].items()}
    assert st == {
        "cohort": "done",
        "preprocess": "done",
        "models": "done",
        "explain": "done",
        "evaluate": "disabled",
        "report": "disabled",
    }
    for name in ("cohort", "models", "explain"):
        assert m["stages"][name]["seconds"] > 0
        rss = m["stages"][name]["rss_mb"]
        assert 30 < rss["peak"] < 20_000  # an interpreter with numpy, in MB
        assert len(m["stages"][name]["key"]) == 64
    # each key chains the previous stage's key
    assert m["stages"]["models"]["inputs"]["upstream"] == m["stages"]["preprocess"]["key"]
    assert m["versions"]["gexplain"]
    assert m["versions"]["dependencies"]["numpy"] == np.__version__
    assert m["seeds"] == {"experiment": 0, "simulate": 0, "models": list(SEEDS)}
    assert m["parameters"] == json.loads(json.dumps(load_experiment(_doc())))
    stems = [f"{k}-seed{s}" for k in MODELS for s in SEEDS]
    assert sorted(p.name for p in (run_dir / "attributions").iterdir()) == sorted(stems)
    assert sorted(p.stem for p in (run_dir / "models").glob("*.onnx")) == sorted(stems)
    assert (run_dir / "cohort" / "truth").is_dir()
    # the explain stage explained the test split only, correct samples only, normalised
    from gexplain.explain import Attributions

    a = Attributions.load(run_dir / "attributions" / "mlp-seed0")
    test_ids = set(
        pl.read_parquet(run_dir / "cohort" / "samples.parquet")
        .filter(pl.col("split") == "test")["sample_id"]
        .to_list()
    )
    assert set(a.sample_ids) <= test_ids and a.rows["correct"].all()
    norms = np.linalg.norm(np.asarray(a.values, dtype=np.float64), axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)


def test_rerun_skips_and_a_change_reruns_that_stage_and_later(run_dir, tmp_path):
    run = copy_run(run_dir, tmp_path / "run")
    before = _mtimes(run)
    r = run_experiment(_doc(), out=run, quiet=True)
    assert r.ran == [] and r.skipped == list(STAGES)
    assert {k: v for k, v in _mtimes(run).items() if k != "manifest.json"} == {
        k: v for k, v in before.items() if k != "manifest.json"
    }
    # a threads change does not change results: still skipped
    r = run_experiment(_doc(models={"threads": 2}), out=run, quiet=True)
    assert r.ran == []
    # a changed explain parameter: explain runs again, the models are kept
    r = run_experiment(_doc(explain={"normalize": False}), out=run, quiet=True)
    assert r.ran == ["explain"]
    after = _mtimes(run)
    assert all(after[k] == v for k, v in before.items() if k.startswith(("models/", "cohort/")))
    meta = json.loads((run / "attributions" / "lr-seed0" / "attributions.json").read_text())
    assert meta["normalized"] is False
    # fewer seeds: models, explain (and the later, disabled stages) follow
    r = run_experiment(
        _doc(explain={"normalize": False}, models={"seeds": [0]}), out=run, quiet=True
    )
    assert r.ran == ["models", "explain"]
    assert sorted(p.name for p in (run / "attributions").iterdir()) == [
        f"{k}-seed0" for k in sorted(MODELS)
    ]


def test_force_redoes_a_stage_and_what_follows(run_dir, tmp_path):
    run = copy_run(run_dir, tmp_path / "run")
    before = _mtimes(run)
    r = run_experiment(_doc(), out=run, force=["explain"], quiet=True)
    assert r.ran == ["explain"]
    after = _mtimes(run)
    assert (
        after["attributions/lr-seed0/attributions.arrow"]
        != before["attributions/lr-seed0/attributions.arrow"]
    )
    assert after["models/lr-seed0.onnx"] == before["models/lr-seed0.onnx"]
    # the same attributions again (deterministic)
    new = np.asarray(
        __import__("gexplain.explain", fromlist=["Attributions"])
        .Attributions.load(run / "attributions" / "mlp-seed1")
        .values
    )
    old = np.asarray(
        __import__("gexplain.explain", fromlist=["Attributions"])
        .Attributions.load(run_dir / "attributions" / "mlp-seed1")
        .values
    )
    np.testing.assert_array_equal(new, old)


def test_deleted_outputs_are_redone_alone(run_dir, tmp_path):
    run = copy_run(run_dir, tmp_path / "run")
    (run / "models" / "mlp-seed1.onnx").unlink()
    before = _mtimes(run)
    r = run_experiment(_doc(), out=run, quiet=True)
    assert r.ran == ["models", "explain"]
    after = _mtimes(run)
    # the other models are not retrained; the deleted one is back, identical weights
    assert after["models/lr-seed0.onnx"] == before["models/lr-seed0.onnx"]
    assert (run / "models" / "mlp-seed1.onnx").read_bytes() == (
        run_dir / "models" / "mlp-seed1.onnx"
    ).read_bytes()
    # explain follows the models stage: every attribution folder is recomputed
    assert (
        after["attributions/lr-seed0/attributions.arrow"]
        != before["attributions/lr-seed0/attributions.arrow"]
    )


def test_interrupted_stage_resumes(run_dir, tmp_path, monkeypatch):
    import gexplain.explain as gex

    run = copy_run(run_dir, tmp_path / "run")
    real = gex.explain_cohort
    calls = []

    def flaky(model, *args, **kwargs):
        calls.append(Path(model).stem)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(model, *args, **kwargs)

    monkeypatch.setattr(gex, "explain_cohort", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(_doc(explain={"top_k": 5}), out=run, quiet=True)
    m = read_manifest(run)
    assert m["stages"]["explain"]["status"] == "interrupted"
    done = [s for s in calls[:2]]
    kept = {s: _mtimes(run / "attributions" / s) for s in done}
    assert not (run / "attributions" / calls[2]).exists()
    monkeypatch.setattr(gex, "explain_cohort", real)
    calls.clear()
    monkeypatch.setattr(
        gex,
        "explain_cohort",
        lambda model, *a, **k: calls.append(Path(model).stem) or real(model, *a, **k),
    )
    r = run_experiment(_doc(explain={"top_k": 5}), out=run, quiet=True)
    assert r.ran == ["explain"]
    # the two finished models were not explained again
    assert set(calls) == {f"{k}-seed{s}" for k in MODELS for s in SEEDS} - set(done)
    for s in done:
        assert _mtimes(run / "attributions" / s) == kept[s]
    assert read_manifest(run)["stages"]["explain"]["status"] == "done"
    assert all((run / "attributions" / s / "topk.parquet").is_file() for s in calls)


def test_import_inputs_are_hashed(tmp_path):
    rng = np.random.default_rng(0)
    n, g = 40, 30
    labels = np.array(["a", "b"] * (n // 2))
    x = rng.gamma(2.0, 2.0, size=(n, g))
    x[labels == "a", :5] += 6.0
    frame = pl.DataFrame({"sample": [f"s{i}" for i in range(n)], "label": labels}).with_columns(
        pl.Series(f"G{j}", x[:, j]) for j in range(g)
    )
    table = tmp_path / "data" / "table.csv"
    table.parent.mkdir()
    frame.write_csv(table)
    sets = tmp_path / "data" / "sets.tsv"
    sets.write_text("class\tgene_id\n" + "".join(f"a\tG{j}\n" for j in range(5)))
    doc = {
        "experiment": {"name": "imp"},
        "cohort": {
            "import": {"format": "table", "path": str(table), "label": "label"},
            "preprocess": {"log2": True, "split": 0.4, "gene_sets": str(sets)},
        },
        "models": {"kinds": ["lr"], "seeds": [0], "epochs": 3, "milestones": []},
        "evaluate": {"enabled": False},
        "report": {"enabled": False},
    }
    exp = tmp_path / "data" / "exp.toml"
    doc_rel = copy.deepcopy(doc)
    doc_rel["cohort"]["import"]["path"] = "table.csv"  # relative to the TOML file
    doc_rel["cohort"]["preprocess"]["gene_sets"] = "sets.tsv"
    exp.write_text(to_toml(doc_rel))
    run = tmp_path / "run"
    r = run_experiment(exp, out=run, quiet=True)
    assert r.ran == ["cohort", "preprocess", "models", "explain"]
    m = read_manifest(run)
    inp = m["stages"]["cohort"]["inputs"]["path"]
    assert inp["sha256"] == hashlib.sha256(table.read_bytes()).hexdigest()
    assert (run / "source" / "cohort.json").is_file() and (run / "cohort" / "cohort.json").is_file()
    assert m["stages"]["preprocess"]["info"]["steps"] == ["log2", "split", "gene_sets"]
    from gexplain.cohort import Cohort

    assert Cohort.load(run / "cohort").truth.biomarker_sets() == {"a": {f"G{j}" for j in range(5)}}
    assert Cohort.load(run / "source").truth is None
    gs = m["stages"]["preprocess"]["inputs"]["gene_sets"]["sha256"]
    assert gs == hashlib.sha256(sets.read_bytes()).hexdigest()
    assert run_experiment(exp, out=run, quiet=True).ran == []
    # other gene sets: the import is kept, the rest runs again
    sets.write_text("class\tgene_id\nb\tG7\n")
    assert run_experiment(exp, out=run, quiet=True).ran == ["preprocess", "models", "explain"]
    assert Cohort.load(run / "cohort").truth.biomarker_sets() == {"b": {"G7"}}
    # new content in the input file: everything runs again
    frame.with_columns(pl.col("G0") + 1.0).write_csv(table)
    r = run_experiment(exp, out=run, quiet=True)
    assert r.ran == ["cohort", "preprocess", "models", "explain"]
    assert read_manifest(run)["stages"]["cohort"]["inputs"]["path"]["sha256"] != inp["sha256"]


def test_one_run_per_folder_at_a_time(run_dir, tmp_path):
    import os
    import subprocess
    import sys

    run = copy_run(run_dir, tmp_path / "run")
    lock = run / ".gexplain.lock"
    lock.write_text(str(os.getppid()))  # a live process
    with pytest.raises(InputError, match="being written by another gexplain run"):
        run_experiment(_doc(), out=run, quiet=True)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    lock.write_text(gone)  # a stale lock: its process has exited
    assert run_experiment(_doc(), out=run, quiet=True).ran == []
    assert not lock.exists()


def test_refuses_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not a gexplain run folder"):
        run_experiment(_doc(), out=tmp_path / "busy", quiet=True)


# --------------------------------------------------------------------------- CLI
def test_cli_run_and_demo(run_dir, tmp_path, cli, monkeypatch):
    run = copy_run(run_dir, tmp_path / "run")
    toml = tmp_path / "tiny.toml"
    toml.write_text(to_toml(_doc(report={"enabled": True})))
    res = cli.invoke(main, ["run", str(toml), "--out", str(run), "--quiet"])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == f"report: {run / 'report' / 'report.html'}"
    assert read_manifest(run)["stages"]["report"]["status"] == "done"
    # gexplain demo runs the shipped demo.toml; point it at the tiny one
    import gexplain.cli.run as cli_run

    monkeypatch.setattr(cli_run, "demo_experiment", lambda: toml)
    res = cli.invoke(main, ["demo", "--out", str(run)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert f"report: {run / 'report' / 'report.html'}" in lines
    header = next(i for i, ln in enumerate(lines) if ln.startswith("model"))
    assert "bal. acc." in lines[header]
    rows = [ln.split()[0] for ln in lines[header + 2 : header + 2 + len(MODELS)]]
    assert rows == list(MODELS)
    res = cli.invoke(main, ["demo", "--show"])
    assert res.exit_code == 0 and 'preset = "demo"' in res.output
    bad = tmp_path / "bad.toml"
    bad.write_text('[cohort]\nsimulate = { preset = "demo" }\n[explain]\nsteps = 0\n')
    res = cli.invoke(main, ["run", str(bad), "--out", str(tmp_path / "x")])
    assert res.exit_code == 1
    assert "[explain] steps (line 4): must be ≥ 1" in res.output


def test_evaluate_options_are_checked_against_evaluate(tmp_path):
    head = '[cohort]\nsimulate = { preset = "demo" }\n\n'
    msg = _error(tmp_path, head + "[evaluate]\nn_perturbations = 10\n")
    assert "[evaluate] n_perturbations (line 5): unknown key" in msg and "n_perturb" in msg
    msg = _error(tmp_path, head + '[evaluate]\nmetrics = ["pg", "fidelity"]\n')
    assert "[evaluate] metrics (line 5)" in msg and "'fidelity'" in msg
    plan = load_experiment(
        {"cohort": {"simulate": {}}, "evaluate": {"metrics": "pg,fa", "n_perturb": 5}}
    )
    assert plan["evaluate"] == {
        "enabled": True,
        "metrics": ["pg", "fa"],
        "options": {"n_perturb": 5},
    }


def test_scheduler_and_evaluate_defaults_are_passed_through(run_dir, tmp_path, monkeypatch):
    import gexplain.explain as gex
    import gexplain.metrics as gm

    run = copy_run(run_dir, tmp_path / "run")
    seen = {}
    real = gex.explain_cohort

    def spy(model, *args, **kwargs):
        seen.setdefault("explain", kwargs.get("scheduler"))
        kwargs.pop("scheduler", None)
        return real(model, *args, **kwargs)

    def fake_evaluate(
        cohort,
        models,
        attributions,
        *,
        metrics=("pg",),
        out=None,
        seed=0,
        output="probability",
        split="test",
        n_perturb=100,
        keep_remove_draws=100,
        random_draws=30,
        fa_random_draws=10,
        quiet=True,
        overwrite=False,
    ):
        seen["evaluate"] = dict(
            metrics=metrics,
            seed=seed,
            output=output,
            split=split,
            n_perturb=n_perturb,
            keep_remove_draws=keep_remove_draws,
            out=Path(out).name,
            attributions=Path(attributions).name,
        )
        from run_helpers import write_metrics

        write_metrics(Path(out))

    monkeypatch.setattr(gex, "explain_cohort", spy)
    monkeypatch.setattr(gm, "evaluate", fake_evaluate, raising=False)
    doc = _doc(
        experiment={"scheduler": "local:1", "seed": 0},
        explain={"output": "logit", "top_k": 3},
        evaluate={"enabled": True, "n_perturb": 7},
    )
    r = run_experiment(doc, out=run, quiet=True)
    assert r.ran == ["explain", "evaluate"]
    assert seen["explain"] == "local:1"
    # the default metrics (all families), the explained output and split follow the experiment
    assert seen["evaluate"] == {
        "metrics": ("pg",),
        "seed": 0,
        "output": "logit",
        "split": "test",
        "n_perturb": 7,
        "keep_remove_draws": 5,  # from tiny_experiment
        "out": "metrics",
        "attributions": "attributions",
    }


def test_wheel_ships_the_experiments(tmp_path):
    import subprocess
    import sys
    import zipfile

    root = Path(__file__).resolve().parents[1]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(root),
        ],
        check=True,
        capture_output=True,
    )
    names = zipfile.ZipFile(next(tmp_path.glob("gexplain-*.whl"))).namelist()
    for name in ("demo", "paper-simu1", "paper-simu2", "xena-template"):
        assert f"gexplain/data/experiments/{name}.toml" in names
    for module in ("run/_runner.py", "run/_schema.py", "report/_render.py", "cli/run.py"):
        assert f"gexplain/{module}" in names


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="Linux only")
def test_memory_reading_follows_the_process():
    from gexplain.run._runner import memory_mb

    before = memory_mb()
    block = np.ones(40_000_000)  # 305 MB, touched
    during = memory_mb()
    del block
    after = memory_mb()
    assert during["current"] - before["current"] > 250
    assert during["peak"] >= during["current"]
    assert after["peak"] >= during["current"]  # the peak remembers the freed block
    assert after["current"] < during["current"] - 250
