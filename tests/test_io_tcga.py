"""TCGA barcodes: parts, sample-type table, filters."""

from __future__ import annotations

import polars as pl
import pytest

from gexplain.io import tcga


def test_parse_full_aliquot_barcode():
    b = tcga.parse_barcode("TCGA-02-0001-01C-01D-0182-01")
    assert b == {
        "participant": "TCGA-02-0001",
        "tss": "02",
        "sample_type_code": "01",
        "sample_type": "Primary Solid Tumor",
        "vial": "C",
        "portion": "01",
        "analyte": "D",
        "plate": "0182",
        "center": "01",
        "sample": "TCGA-02-0001-01",
    }
    assert tcga.parse_barcode("TCGA-A2-A04P-11")["vial"] is None
    assert tcga.parse_barcode("TARGET-20-PADZCG-04A-01R")["participant"] == "TARGET-20-PADZCG"
    for bad in ("sample1", "TCGA-02-0001", "TCGA-02-0001-1A", "TCGA-02-0001-01AA", ""):
        assert tcga.parse_barcode(bad) is None


def test_sample_type_table_codes():
    assert tcga.SAMPLE_TYPES["03"] == ("Primary Blood Derived Cancer - Peripheral Blood", "TB")
    assert tcga.SAMPLE_TYPES["06"][0] == "Metastatic"
    assert tcga.SAMPLE_TYPES["11"] == ("Solid Tissue Normal", "NT")
    assert len(tcga.SAMPLE_TYPES) == 22
    assert "11" not in tcga.TUMOR_CODES and "06" in tcga.TUMOR_CODES


def test_barcode_table_agrees_with_parse_barcode():
    ids = [
        "TCGA-OR-A5J1-01A-11R-A29S-07",
        "TCGA-AB-2803-03",
        "not-a-barcode",
        "TCGA-A2-A0CM-06B",
        "TCGA-A2-A04P-99",
    ]
    table = tcga.barcode_table(ids)
    assert table.columns == list(tcga.BARCODE_COLUMNS)
    for i, s in enumerate(ids):
        parsed = tcga.parse_barcode(s)
        row = table.row(i, named=True)
        if parsed is None:
            assert all(v is None for v in row.values())
        else:
            assert row == {k: parsed[k] for k in tcga.BARCODE_COLUMNS}
    assert tcga.sample_barcode(ids).to_list() == [
        "TCGA-OR-A5J1-01",
        "TCGA-AB-2803-03",
        None,
        "TCGA-A2-A0CM-06",
        "TCGA-A2-A04P-99",
    ]
    assert not tcga.all_barcodes(ids) and tcga.all_barcodes(ids[:2])
    assert not tcga.all_barcodes(pl.Series([], dtype=pl.String))


def test_sample_type_filter_and_codes():
    ids = ["TCGA-02-0001-01", "TCGA-02-0001-11", "TCGA-02-0002-03A", "x"]
    assert tcga.sample_type_mask(ids, "1,3").to_list() == [True, False, True, False]
    assert tcga.sample_type_mask(ids, [11]).to_list() == [False, True, False, False]
    assert tcga.normalize_codes("01, 6") == ["01", "06"]
    assert tcga.normalize_codes(None) is None
    for bad in ("17", "abc", "", "001"):
        with pytest.raises(ValueError):
            tcga.normalize_codes(bad)
