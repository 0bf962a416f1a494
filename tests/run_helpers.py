"""Shared by test_run.py and test_report.py: a tiny experiment, a synthetic metrics folder
following the evaluator's schema, and a strict PNG decoder (no PIL needed)."""

from __future__ import annotations

import copy
import math
import shutil
import struct
import tomllib
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from gexplain.cli.run import demo_experiment

MODELS = ("lr", "mlp", "diffuse-lr")
SEEDS = (0, 1)
CLASSES = ("C00", "C01", "C02")


def tiny_experiment(**sections: Any) -> dict[str, Any]:
    """The shipped demo.toml shrunk to seconds: 3 classes × 30 samples × 200 genes, 3 models × 2 seeds."""
    doc = tomllib.loads(demo_experiment().read_text())
    doc["experiment"]["name"] = "tiny"
    doc["experiment"].pop("out", None)
    doc["cohort"]["simulate"].update(
        n_classes=3, samples_per_class=30, n_genes=200, n_pathways=20, informative_pathways=3
    )
    doc["models"].update(kinds=list(MODELS), seeds=list(SEEDS), epochs=8, milestones=[6], threads=1)
    doc["evaluate"].update(n_perturb=5, keep_remove_draws=5, random_draws=5, fa_random_draws=3)
    for name, table in sections.items():
        doc.setdefault(name, {}).update(table)
    return doc


_CACHE: dict[str, Path] = {}


def tiny_run(tmp_path_factory: Any, evaluate: bool) -> Path:
    """A finished run of :func:`tiny_experiment` (made once per session and flavour).

    With ``evaluate=False`` the evaluate stage is disabled and the synthetic metrics of
    :func:`write_metrics` are put in its place; callers that modify the run copy it first.
    """
    from gexplain.run import run_experiment

    if "base" not in _CACHE:
        out = tmp_path_factory.mktemp("run") / "tiny"
        doc = tiny_experiment(evaluate={"enabled": False}, report={"enabled": False})
        run_experiment(doc, out=out, quiet=True)
        write_metrics(out / "metrics")
        _CACHE["base"] = out
    if not evaluate:
        return _CACHE["base"]
    if "evaluated" not in _CACHE:
        # the same run with the evaluate stage on: only that stage runs
        out = copy_run(_CACHE["base"], tmp_path_factory.mktemp("run") / "tiny")
        shutil.rmtree(out / "metrics")
        doc = tiny_experiment(report={"enabled": False})
        ran = run_experiment(doc, out=out, quiet=True).ran
        assert ran == ["evaluate"], ran
        _CACHE["evaluated"] = out
    return _CACHE["evaluated"]


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# --------------------------------------------------------------------------- synthetic metrics
def pgi_value(model: str, seed: int) -> float:
    """PGI local of the synthetic metrics: distinct, hand-checkable values."""
    return 0.1 * (MODELS.index(model) + 1) + 0.02 * seed


def fa_value(model: str, seed: int, variant: str, control: str | None) -> float:
    base = {"local": 0.6, "global": 0.8, "diffused-local": 0.5, "diffused-global": 0.7}[variant]
    if control == "random":
        return 0.15
    return base - 0.1 * MODELS.index(model) + 0.01 * seed


def write_metrics(folder: Path) -> None:
    """metrics.parquet, curves.parquet and stability.parquet with the evaluator's columns."""
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    curves: list[dict[str, Any]] = []

    def score(model, seed, cls, metric, variant, k, control, value):
        rows.append(
            {
                "model": model,
                "seed": seed,
                "model_file": f"{model}-seed{seed}.onnx",
                "class": cls,
                "metric": metric,
                "variant": variant,
                "k": k,
                "control": control,
                "value": value,
                "n": 10,
            }
        )

    def curve(model, seed, cls, name, variant, x, value):
        curves.append(
            {
                "model": model,
                "seed": seed,
                "model_file": f"{model}-seed{seed}.onnx",
                "class": cls,
                "curve": name,
                "variant": variant,
                "x": float(x),
                "value": float(value),
                "sd": 0.01,
            }
        )

    for model in MODELS:
        for seed in SEEDS:
            p = pgi_value(model, seed)
            for cls in (None, *CLASSES):
                score(model, seed, cls, "PGI", "local", None, None, p)
                score(model, seed, cls, "PGU", "local", None, None, p / 10)
                score(model, seed, cls, "PGU_adjusted", "local", None, None, p / 5)
                score(model, seed, cls, "PGI", "global-mean", None, None, p * 0.9)
                score(model, seed, cls, "PGU", "global-mean", None, None, p / 8)
                score(model, seed, cls, "PGR", "random", None, None, p / 2)
                for variant in ("local", "global", "diffused-local", "diffused-global"):
                    score(
                        model,
                        seed,
                        cls,
                        "FA",
                        variant,
                        None,
                        None,
                        fa_value(model, seed, variant, None),
                    )
                    score(
                        model,
                        seed,
                        cls,
                        "FA",
                        variant,
                        None,
                        "random",
                        fa_value(model, seed, variant, "random"),
                    )
                score(model, seed, cls, "precision@k", "abs", 10, None, 0.5)
            score(model, seed, None, "jaccard@k", "across-seeds", 10, None, 0.4)
            for x in np.linspace(0, 1, 11):
                # f_y after removing a fraction x of the genes, from 0.9 down to 0.4
                curve(model, seed, None, "PGI", "local", x, 0.9 - 0.5 * (1 - (1 - x) ** 3))
                curve(model, seed, None, "PGU", "local", x, 0.9 - 0.5 * x**3)
                curve(model, seed, None, "PGR", "random", x, 0.9 - 0.5 * x)
            for k in (1, 2, 5, 10, 20, 50, 100, 200):
                frac = math.log(k) / math.log(200)
                curve(model, seed, None, "keep", "abs", k, 0.33 + 0.6 * frac)
                curve(model, seed, None, "keep-random", "abs", k, 0.33 + 0.5 * frac)
                curve(model, seed, None, "remove", "abs", k, 0.95 - 0.3 * frac)
                curve(model, seed, None, "remove-random", "abs", k, 0.95 - 0.05 * frac)
    items = [(m, s) for m in MODELS for s in SEEDS]
    stab = []
    for i, (ma, sa) in enumerate(items):
        for mb, sb in items[i + 1 :]:
            for k in (10, 50):
                stab.append(
                    {
                        "model_a": ma,
                        "seed_a": sa,
                        "model_b": mb,
                        "seed_b": sb,
                        "class": None,
                        "metric": "jaccard@k",
                        "k": k,
                        "value": jaccard_value(ma, mb, k),
                    }
                )
    score_schema = {
        "model": pl.String,
        "seed": pl.Int64,
        "model_file": pl.String,
        "class": pl.String,
        "metric": pl.String,
        "variant": pl.String,
        "k": pl.Int64,
        "control": pl.String,
        "value": pl.Float64,
        "n": pl.Int64,
    }
    curve_schema = {
        "model": pl.String,
        "seed": pl.Int64,
        "model_file": pl.String,
        "class": pl.String,
        "curve": pl.String,
        "variant": pl.String,
        "x": pl.Float64,
        "value": pl.Float64,
        "sd": pl.Float64,
    }
    stab_schema = {
        "model_a": pl.String,
        "seed_a": pl.Int64,
        "model_b": pl.String,
        "seed_b": pl.Int64,
        "class": pl.String,
        "metric": pl.String,
        "k": pl.Int64,
        "value": pl.Float64,
    }
    pl.DataFrame(rows, schema=score_schema).write_parquet(folder / "metrics.parquet")
    pl.DataFrame(curves, schema=curve_schema).write_parquet(folder / "curves.parquet")
    pl.DataFrame(stab, schema=stab_schema).write_parquet(folder / "stability.parquet")


def jaccard_value(model_a: str, model_b: str, k: int) -> float:
    return (0.8 if model_a == model_b else 0.3) + (0.1 if k == 50 else 0.0)


def without(doc: dict[str, Any], section: str, key: str) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    out[section].pop(key, None)
    return out


# --------------------------------------------------------------------------- PNG
def decode_png(data: bytes) -> tuple[int, int, int]:
    """Check a PNG completely (signature, chunk CRCs, IHDR, inflated IDAT size, IEND);
    return ``(width, height, channels)``. Raises AssertionError on any defect."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    pos = 8
    ihdr = None
    idat = b""
    seen_end = False
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(ctype + body) & 0xFFFFFFFF == crc, f"bad CRC in {ctype!r}"
        if ctype == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif ctype == b"IDAT":
            idat += body
        elif ctype == b"IEND":
            seen_end = True
        pos += 12 + length
    assert ihdr is not None and seen_end, "missing IHDR or IEND"
    width, height, depth, color, _, _, interlace = ihdr
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color]
    assert interlace == 0
    raw = zlib.decompress(idat)
    stride = 1 + math.ceil(width * channels * depth / 8)
    assert len(raw) == height * stride, "inflated image data has the wrong size"
    assert width > 50 and height > 50
    return width, height, channels


def to_toml(doc: dict[str, Any]) -> str:
    """A minimal TOML writer for experiment dicts (tables of scalars, lists, inline tables)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        raise TypeError(v)

    lines = []
    for section, table in doc.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {value(v)}" for k, v in table.items() if v is not None]
        lines.append("")
    return "\n".join(lines)
