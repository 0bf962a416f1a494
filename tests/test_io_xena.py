"""UCSC Xena and PanCanAtlas matrices: values, ids, phenotype join, barcodes, gz, blocks, CLI."""

from __future__ import annotations

import gzip
import json

import numpy as np
import polars as pl
import pytest
from naive import read_matrix_tsv

from gexplain.cli import main
from gexplain.cohort import Cohort
from gexplain.errors import InputError
from gexplain.io import _text, fixture_path, read_pancan, read_xena

XENA = fixture_path("xena/HiSeqV2.tsv")
XENA_PHENO = fixture_path("xena/phenotype.tsv")
PANCAN = fixture_path("pancan/EB++AdjustPANCAN_IlluminaHiSeq_RNASeqV2.geneExp.tsv")
PANCAN_PHENO = fixture_path("pancan/TCGA_phenotype_denseDataOnlyDownload.tsv")


def test_xena_matrix_is_transposed_exactly():
    samples, genes, values = read_matrix_tsv(XENA)
    c = read_xena(XENA)
    assert c.sample_ids == samples and c.gene_ids == genes
    np.testing.assert_array_equal(c.expression, values.T)
    # hand-read from the file: RNF17 is 0.5763 in TCGA-05-4244-01 only
    assert c.expression[3, 2] == np.float32(0.5763)
    assert c.expression[:, 2].sum() == np.float32(0.5763)
    assert c.meta["units"] == "log2(norm_count+1)"
    assert c.value_transforms == ["log2p1"]
    assert c.meta["preprocessing"] == [
        {"step": "log2p1", "transforms_values": True, "by": "source"}
    ]
    prov = c.meta["provenance"][0]
    assert prov["source"] == "xena" and prov["n_samples"] == 8 and prov["n_nonfinite"] == 0


def test_xena_barcode_columns_and_sample_types():
    c = read_xena(XENA)
    s = c.samples
    assert s["sample_type_code"].to_list() == ["01", "01", "11", "01", "01", "03", "06", "01"]
    assert s["participant"][2] == "TCGA-A2-A04P"
    assert s["sample_type"][5] == "Primary Blood Derived Cancer - Peripheral Blood"
    assert s["vial"].null_count() == 8  # Xena ids stop at the sample type
    sub = read_xena(XENA, sample_types="01,03")
    assert sub.sample_ids == [
        "TCGA-A1-A0SB-01",
        "TCGA-A1-A0SD-01",
        "TCGA-05-4244-01",
        "TCGA-05-4249-01",
        "TCGA-AB-2803-03",
        "TCGA-05-4250-01",
    ]
    np.testing.assert_array_equal(sub.expression, c.expression[[0, 1, 3, 4, 5, 7]])


def test_xena_phenotype_join_and_label():
    c = read_xena(XENA, XENA_PHENO, label="_primary_disease")
    lab = dict(zip(c.sample_ids, c.labels.to_list()))
    assert lab["TCGA-05-4244-01"] == "lung adenocarcinoma"
    assert lab["TCGA-AB-2803-03"] == "acute myeloid leukemia"
    assert lab["TCGA-A2-A0CM-06"] == "breast invasive carcinoma"
    assert c.info()["classes"] == {
        "acute myeloid leukemia": 1,
        "breast invasive carcinoma": 4,
        "lung adenocarcinoma": 3,
    }
    # numeric phenotype columns are numbers, empty cells null; a clash gets a suffix
    age = dict(zip(c.sample_ids, c.samples["age_at_initial_pathologic_diagnosis"].to_list()))
    assert age["TCGA-05-4250-01"] == 79 and age["TCGA-A2-A04P-11"] is None
    assert c.samples["sample_type_phenotype"][2] == "Solid Tissue Normal"


def test_xena_missing_phenotype_rows_error_or_drop(tmp_path):
    pheno = tmp_path / "pheno.tsv"
    lines = XENA_PHENO.read_text().splitlines()
    pheno.write_text("\n".join(ln for ln in lines if "4249" not in ln and "A0SD" not in ln) + "\n")
    with pytest.raises(InputError, match=r"2 of 8 samples are not in the phenotype table") as e:
        read_xena(XENA, pheno, label="_primary_disease")
    assert str(pheno) in str(e.value)
    c = read_xena(XENA, pheno, label="_primary_disease", drop_unmatched=True)
    assert c.n_samples == 6 and "TCGA-05-4249-01" not in c.sample_ids
    np.testing.assert_array_equal(
        c.expression, read_xena(XENA).select(samples=c.sample_ids).expression
    )


def test_xena_gz_folder_and_small_blocks_agree(tmp_path, monkeypatch):
    ref = read_xena(XENA)
    gz = tmp_path / "HiSeqV2.gz"
    gz.write_bytes(gzip.compress(XENA.read_bytes()))
    out = tmp_path / "out" / "cohort"
    c = read_xena(gz, out=out)
    assert isinstance(c, Cohort) and c.expression.flags.writeable is False  # loaded memmap
    np.testing.assert_array_equal(c.expression, ref.expression)
    assert sorted(p.name for p in out.parent.iterdir()) == ["cohort"]  # no temp left
    # tiny blocks: lines split across reads, lines longer than the buffer
    for size in (16, 97, 300):
        monkeypatch.setattr(_text, "BLOCK_BYTES", size)
        small = read_xena(XENA)
        np.testing.assert_array_equal(small.expression, ref.expression)
        assert small.gene_ids == ref.gene_ids


def test_xena_crlf_and_no_final_newline(tmp_path):
    text = XENA.read_text()
    f = tmp_path / "crlf.tsv"
    f.write_bytes(text.rstrip("\n").replace("\n", "\r\n").encode())
    c = read_xena(f)
    np.testing.assert_array_equal(c.expression, read_xena(XENA).expression)
    f.write_text(text + "\n\n")  # trailing blank lines are ignored
    assert read_xena(f).n_genes == 12


def test_xena_units_override():
    c = read_xena(XENA, units="counts")
    assert c.meta["units"] == "counts" and c.value_transforms == []


def test_pancan_ids_names_and_join():
    c = read_pancan(PANCAN, PANCAN_PHENO, nan="fill=0")
    assert c.gene_ids == [
        "100130426",
        "100133144",
        "100134869",
        "1",
        "29974",
        "728661",
        "9906",
        "7157",
        "1956",
        "2099",
    ]
    names = c.genes["gene_name"].to_list()
    assert names[:3] == [None, None, None] and names[5:7] == ["SLC35E2", "SLC35E2"]
    lab = dict(zip(c.sample_ids, c.labels.to_list()))
    assert lab["TCGA-OR-A5J1-01A-11R-A29S-07"] == "adrenocortical cancer"
    assert lab["TCGA-A2-A0CM-11A-12R-A034-07"] == "breast invasive carcinoma"
    assert c.samples["sample_type_id"].to_list() == [1, 3, 11, 1, 1, 6]
    assert c.samples["vial"].to_list() == ["A"] * 6
    _, _, values = read_matrix_tsv(PANCAN)
    expected = np.nan_to_num(values.T, nan=0.0)
    np.testing.assert_array_equal(c.expression, expected)
    assert c.expression[1, 2] == 0.0  # the NA of ?|100134869 in the AML sample, filled
    assert c.meta["units"] == "norm_count (RSEM, EB++ batch-adjusted)"
    assert c.value_transforms == []
    assert c.meta["provenance"][0]["n_nonfinite"] == 1


def test_pancan_nan_policies():
    with pytest.raises(InputError) as e:
        read_pancan(PANCAN, PANCAN_PHENO)
    msg = str(e.value)
    assert "line 4, column 3" in msg and "TCGA-AB-2803-03A-01T-0734-13" in msg
    c = read_pancan(PANCAN, PANCAN_PHENO, nan="drop-genes", sample_types=[1, 3])
    assert "100134869" not in c.gene_ids and c.n_genes == 9
    assert c.meta["provenance"][0]["n_genes_dropped"] == 1
    assert c.samples["sample_type_code"].to_list() == ["01", "03", "01", "01"]


def test_cli_import_xena_and_pancan(cli, tmp_path):
    out = tmp_path / "brca"
    r = cli.invoke(
        main,
        [
            "import",
            "xena",
            str(XENA),
            "--phenotype",
            str(XENA_PHENO),
            "--label",
            "_primary_disease",
            "--sample-types",
            "01,06",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "6 samples × 12 genes, 2 classes" in r.output
    info = json.loads(cli.invoke(main, ["info", str(out), "--json"]).output)
    assert info["classes"] == {"breast invasive carcinoma": 3, "lung adenocarcinoma": 3}
    # existing output: refused without --overwrite, accepted with it (quietly)
    r = cli.invoke(main, ["import", "xena", str(XENA), "--out", str(out)])
    assert r.exit_code == 1 and "exists" in r.output
    r = cli.invoke(main, ["import", "xena", str(XENA), "--out", str(out), "--overwrite", "-q"])
    assert r.exit_code == 0 and r.output == ""
    assert Cohort.load(out).n_samples == 8
    r = cli.invoke(
        main,
        [
            "import",
            "pancan",
            str(PANCAN),
            "--phenotype",
            str(PANCAN_PHENO),
            "--nan",
            "fill",
            "--fill-value",
            "-1",
            "--out",
            str(tmp_path / "pc"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "1 non-finite values" in r.output
    assert Cohort.load(tmp_path / "pc").expression[1, 2] == -1.0
    r = cli.invoke(main, ["import", "xena", str(XENA), "--sample-types", "1x", "--out", "z"])
    assert r.exit_code == 2 and "sample type code" in r.output


def test_label_without_phenotype_is_an_error():
    with pytest.raises(InputError, match="needs a phenotype"):
        read_xena(XENA, label="_primary_disease")


def test_sample_types_need_barcodes(tmp_path):
    f = tmp_path / "m.tsv"
    f.write_text("sample\tA\tB\ng1\t1\t2\n")
    assert read_xena(f).expression.tolist() == [[1.0], [2.0]]
    with pytest.raises(InputError, match="needs TCGA barcodes"):
        read_xena(f, sample_types="01")


def test_phenotype_frame_types():
    c = read_xena(XENA, XENA_PHENO)
    assert c.samples.schema["age_at_initial_pathologic_diagnosis"] == pl.Int64
    assert not c.has_labels
