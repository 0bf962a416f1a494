"""TCGA (and TARGET) barcodes: parse ``TCGA-02-0001-01C-01D-0182-01`` into its parts.

A barcode reads ``PROJECT-TSS-PARTICIPANT-SAMPLE[VIAL]-PORTION[ANALYTE]-PLATE-CENTER``:

===============  =========  ===================================================
part             example    meaning
===============  =========  ===================================================
participant      TCGA-02-0001  the patient (project, tissue source site, id)
tss              02         tissue source site
sample type      01         see :data:`SAMPLE_TYPES` (01 primary solid tumour,
                            03 primary blood cancer, 06 metastatic, 11 solid
                            tissue normal, ...)
vial             C          order of the sample in a sequence of vials
portion/analyte  01D        portion number and analyte (R = RNA, D = DNA)
plate, center    0182, 01   plate and sequencing centre
===============  =========  ===================================================

UCSC Xena matrices use sample-level barcodes (``TCGA-02-0001-01``), GDC sample
sheets add the vial (``TCGA-02-0001-01C``) and PanCanAtlas matrices use full
aliquot barcodes. :func:`barcode_table` parses any of these.

Examples
--------
>>> from gexplain.io.tcga import parse_barcode
>>> b = parse_barcode("TCGA-OR-A5J1-01A-11R-A29S-07")
>>> b["participant"], b["sample_type_code"], b["sample_type"], b["vial"]
('TCGA-OR-A5J1', '01', 'Primary Solid Tumor', 'A')
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import polars as pl

#: Sample type codes: code -> (definition, short letter code), as in the GDC code tables.
SAMPLE_TYPES: dict[str, tuple[str, str]] = {
    "01": ("Primary Solid Tumor", "TP"),
    "02": ("Recurrent Solid Tumor", "TR"),
    "03": ("Primary Blood Derived Cancer - Peripheral Blood", "TB"),
    "04": ("Recurrent Blood Derived Cancer - Bone Marrow", "TRBM"),
    "05": ("Additional - New Primary", "TAP"),
    "06": ("Metastatic", "TM"),
    "07": ("Additional Metastatic", "TAM"),
    "08": ("Human Tumor Original Cells", "THOC"),
    "09": ("Primary Blood Derived Cancer - Bone Marrow", "TBM"),
    "10": ("Blood Derived Normal", "NB"),
    "11": ("Solid Tissue Normal", "NT"),
    "12": ("Buccal Cell Normal", "NBC"),
    "13": ("EBV Immortalized Normal", "NEBV"),
    "14": ("Bone Marrow Normal", "NBM"),
    "15": ("sample type 15", "15SH"),
    "16": ("sample type 16", "16SH"),
    "20": ("Control Analyte", "CELLC"),
    "40": ("Recurrent Blood Derived Cancer - Peripheral Blood", "TRB"),
    "50": ("Cell Lines", "CELL"),
    "60": ("Primary Xenograft Tissue", "XP"),
    "61": ("Cell Line Derived Xenograft Tissue", "XCL"),
    "99": ("sample type 99", "99SH"),
}

#: Sample types of tumour material (codes 01-09 and 40); 10-14 are normals.
TUMOR_CODES = frozenset({"01", "02", "03", "04", "05", "06", "07", "08", "09", "40"})

_PATTERN = (
    r"^(?P<participant>(?P<project>TCGA|TARGET)-(?P<tss>[A-Z0-9]{2})-[A-Z0-9]{4,6})"
    r"-(?P<code>\d{2})(?P<vial>[A-Z])?"
    r"(?:-(?P<portion>\d{2})(?P<analyte>[A-Z])?(?:-(?P<plate>[A-Z0-9]{4})(?:-(?P<center>\d{2}))?)?)?$"
)
_RE = re.compile(_PATTERN)

#: Columns added to a sample table by :func:`barcode_table`.
BARCODE_COLUMNS = ("participant", "tss", "sample_type_code", "sample_type", "vial")


def parse_barcode(barcode: str) -> dict[str, Any] | None:
    """Parse one barcode; ``None`` if it is not a TCGA/TARGET barcode.

    Returns a dict with ``participant``, ``tss``, ``sample_type_code``,
    ``sample_type`` (definition, ``None`` for an unknown code), ``vial``
    (``None`` if absent), ``portion``, ``analyte``, ``plate``, ``center`` and
    ``sample`` (the sample-level barcode, e.g. ``TCGA-02-0001-01``).
    """
    m = _RE.match(barcode.strip())
    if m is None:
        return None
    code = m.group("code")
    return {
        "participant": m.group("participant"),
        "tss": m.group("tss"),
        "sample_type_code": code,
        "sample_type": SAMPLE_TYPES.get(code, (None, None))[0],
        "vial": m.group("vial"),
        "portion": m.group("portion"),
        "analyte": m.group("analyte"),
        "plate": m.group("plate"),
        "center": m.group("center"),
        "sample": f"{m.group('participant')}-{code}",
    }


def is_barcode(ids: pl.Series | Sequence[str]) -> pl.Series:
    """Boolean series: which ids are TCGA/TARGET barcodes."""
    s = ids if isinstance(ids, pl.Series) else pl.Series(list(ids), dtype=pl.String)
    return s.cast(pl.String).str.contains(_PATTERN).fill_null(False)


def sample_barcode(ids: pl.Series | Sequence[str]) -> pl.Series:
    """Sample-level barcode (``TCGA-XX-XXXX-NN``) of each id; null where not a barcode."""
    s = ids if isinstance(ids, pl.Series) else pl.Series(list(ids), dtype=pl.String)
    s = s.cast(pl.String)
    parts = s.str.extract_groups(_PATTERN)
    out = pl.select(
        pl.when(parts.struct.field("participant").is_not_null())
        .then(
            pl.concat_str(
                [parts.struct.field("participant"), parts.struct.field("code")], separator="-"
            )
        )
        .otherwise(None)
        .alias("sample")
    )
    return out["sample"]


def barcode_table(ids: pl.Series | Sequence[str]) -> pl.DataFrame:
    """Barcode parts of each id as columns :data:`BARCODE_COLUMNS` (null where not a barcode).

    Examples
    --------
    >>> barcode_table(["TCGA-02-0001-01", "TCGA-02-0001-11B"]).row(1)
    ('TCGA-02-0001', '02', '11', 'Solid Tissue Normal', 'B')
    """
    s = ids if isinstance(ids, pl.Series) else pl.Series(list(ids), dtype=pl.String)
    parts = s.cast(pl.String).str.strip_chars().str.extract_groups(_PATTERN)
    names = pl.DataFrame(
        {
            "sample_type_code": list(SAMPLE_TYPES),
            "sample_type": [v[0] for v in SAMPLE_TYPES.values()],
        }
    )
    frame = pl.DataFrame(
        {
            "participant": parts.struct.field("participant"),
            "tss": parts.struct.field("tss"),
            "sample_type_code": parts.struct.field("code"),
            "vial": parts.struct.field("vial"),
        }
    )
    frame = frame.join(names, on="sample_type_code", how="left", maintain_order="left")
    return frame.select(BARCODE_COLUMNS)


def all_barcodes(ids: pl.Series | Sequence[str]) -> bool:
    """Whether every id is a TCGA/TARGET barcode (and there is at least one)."""
    flags = is_barcode(ids)
    return len(flags) > 0 and bool(flags.all())


def normalize_codes(codes: Iterable[str | int] | str | None) -> list[str] | None:
    """``"01,3"`` / ``[1, "03"]`` -> ``["01", "03"]``; checks each code is known."""
    if codes is None:
        return None
    items = codes.split(",") if isinstance(codes, str) else list(codes)
    out: list[str] = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        if not text.isdigit() or len(text) > 2:
            raise ValueError(f"sample type code must be a number like 01 or 11, not {item!r}")
        code = text.zfill(2)
        if code not in SAMPLE_TYPES:
            raise ValueError(
                f"unknown TCGA sample type code {code!r}; known: {sorted(SAMPLE_TYPES)}"
            )
        out.append(code)
    if not out:
        raise ValueError("no sample type codes given")
    return out


def sample_type_mask(ids: pl.Series | Sequence[str], codes: Iterable[str | int] | str) -> pl.Series:
    """Boolean series: ids that are barcodes of one of the sample type ``codes``.

    Examples
    --------
    >>> sample_type_mask(["TCGA-02-0001-01", "TCGA-02-0001-11", "TCGA-02-0002-03"], "01,03").to_list()
    [True, False, True]
    """
    wanted = normalize_codes(codes) or []
    table = barcode_table(ids)
    return table["sample_type_code"].is_in(wanted).fill_null(False)
