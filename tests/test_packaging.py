"""Packaging: gexplain.kernels ships inside gexplain; attribution runs without torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Modules that must import (and run) with torch unavailable. Extended as the
# attribution and metrics stages land.
TORCH_FREE_MODULES = [
    "gexplain",
    "gexplain.cohort",
    "gexplain.head",
    "gexplain.kernels.head",
    "gexplain.modelmeta",
    "gexplain.preprocess",
    "gexplain.simulate",
    "gexplain.kernels.simulate",
    "gexplain.explain",
    "gexplain.cli",
    "gexplain.explain._onnx",
    "gexplain.explain._compiled",
    "gexplain.explain._baselines",
    "gexplain.explain._ig",
    "gexplain.explain._run",
    "gexplain.explain._linalg",
    "gexplain.kernels.ig",
    "gexplain.cli.explain",
    "gexplain.cli.io",
    "gexplain.io",
    "gexplain.io.tcga",
    "gexplain.kernels.parse",
    "gexplain.cli.train",
    "gexplain.models",
    "gexplain.models._graph",
    "gexplain.models._predict",
    "gexplain.models._export",
    "gexplain.models._sklearn",
]


def test_kernels_are_a_subpackage_of_gexplain():
    import gexplain.kernels
    import gexplain.kernels.head as head

    assert Path(head.__file__).resolve().parent == (ROOT / "kernels").resolve()
    assert gexplain.kernels.__name__ == "gexplain.kernels"


def test_torch_free_imports_and_head_kernel():
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None  # any 'import torch' now raises ImportError
        import importlib
        for name in {TORCH_FREE_MODULES!r}:
            importlib.import_module(name)
        import numpy as np
        from gexplain.head import HeadProgram
        h = HeadProgram.builder(2).affine(np.eye(2)).relu().build()
        assert h.forward(np.array([[1.0, -1.0]])).tolist() == [[1.0, 0.0]]
        assert "torch" not in [m for m in sys.modules if sys.modules[m] is not None]
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.slow
def test_wheel_ships_gexplain_kernels_not_top_level_kernels(tmp_path):
    """Build the wheel, install it into a fresh venv, import gexplain.kernels from it."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next((tmp_path / "dist").glob("gexplain-*.whl"))
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "gexplain/kernels/head.py" in names
    assert not any(n.startswith("kernels/") for n in names)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    # dependencies come from this environment's site-packages (no network needed)
    deps = [p for p in sys.path if p.rstrip("/").endswith("site-packages") and Path(p).is_dir()]
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "deps.pth").write_text("\n".join(deps) + "\n")
    subprocess.run(
        [str(py), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
    )
    probe = (
        "import gexplain.kernels.head as h, gexplain, sys; "
        "print(h.__file__); print(gexplain.__file__)"
    )
    out = subprocess.run(
        [str(py), "-c", probe], check=True, capture_output=True, text=True, cwd=tmp_path
    ).stdout.split()
    assert out[0].startswith(site) and out[0].endswith("gexplain/kernels/head.py")
    assert out[1].startswith(site)
