"""Import cohorts from public formats, and export them.

=====================  =========================================================
:func:`read_xena`      UCSC Xena genes × samples matrix (``HiSeqV2``) + phenotype
:func:`read_pancan`    PanCanAtlas ``EB++AdjustPANCAN_...geneExp.tsv`` + phenotype
:func:`read_gdc`       GDC STAR-Counts files (folder or ``.tar.gz``) + sample sheet
:func:`read_table`     wide CSV / TSV / Parquet (samples or genes as rows)
:func:`read_h5ad`      AnnData ``.h5ad`` (``X``, a layer, or ``raw``)
:func:`write_h5ad`     a cohort as ``.h5ad``
:mod:`.tcga`           TCGA barcodes: participant, sample type, vial
=====================  =========================================================

Every reader streams its input in blocks (delimited text is parsed by the
Numba kernels of :mod:`gexplain.kernels.parse`) and writes into a cohort folder
with bounded memory when ``out`` is given (atomically: an error leaves nothing
behind), or returns an in-memory :class:`~gexplain.Cohort` when ``out`` is
``None``. Errors name the file, line and column. NaN/inf values are an error by
default; ``nan="drop-genes"`` or ``nan="fill=VALUE"`` accept them, and the count
is recorded in the cohort's provenance.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from . import tcga
from ._common import NanPolicy
from ._gdc import read_gdc, read_sample_sheet
from ._h5ad import read_h5ad, write_h5ad
from ._table import read_table
from ._xena import read_pancan, read_xena


def fixture_path(name: str) -> Path:
    """Path of a small real-format example file shipped in ``gexplain.data/fixtures``.

    Examples
    --------
    >>> fixture_path("xena/HiSeqV2.tsv").name
    'HiSeqV2.tsv'
    """
    return Path(str(resources.files("gexplain.data").joinpath("fixtures", name)))


__all__ = [
    "NanPolicy",
    "fixture_path",
    "read_gdc",
    "read_h5ad",
    "read_pancan",
    "read_sample_sheet",
    "read_table",
    "read_xena",
    "tcga",
    "write_h5ad",
]
