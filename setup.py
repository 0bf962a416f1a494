"""Package layout: ``kernels/`` ships as ``gexplain.kernels``, ``data/`` as ``gexplain.data``.

Everything else (metadata, dependencies, extras) lives in ``pyproject.toml``.
"""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["gexplain", "gexplain.*"]),
        "gexplain.kernels",
        "gexplain.data",
    ],
    package_dir={"gexplain.kernels": "kernels", "gexplain.data": "data"},
)
