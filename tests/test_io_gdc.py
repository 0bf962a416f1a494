"""GDC STAR-Counts: folder vs tar, both sample-sheet layouts, counts column, PAR_Y, checks."""

from __future__ import annotations

import csv
import shutil
import tarfile

import numpy as np
import polars as pl
import pytest

from gexplain.cli import main
from gexplain.cohort import Cohort
from gexplain.errors import InputError
from gexplain.io import fixture_path, read_gdc
from gexplain.io._gdc import unversioned

STAR = fixture_path("gdc/star")
TAR = fixture_path("gdc/star.tar.gz")
SHEET = fixture_path("gdc/gdc_sample_sheet.tsv")
SHEET_NEW = fixture_path("gdc/gdc_sample_sheet_new.tsv")


def _reference(column: str) -> tuple[dict[str, np.ndarray], list[str]]:
    """Per file name, the column's values read with the csv module (N_ rows dropped)."""
    out, ids = {}, []
    for path in sorted(STAR.rglob("*.tsv")):
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f, delimiter="\t") if not r[0].startswith("#")]
        head, body = rows[0], [r for r in rows[1:] if not r[0].startswith("N_")]
        j = head.index(column)
        out[path.name] = np.array([float(r[j]) for r in body], dtype=np.float32)
        ids = [r[0] for r in body]
    return out, ids


def _sheet_order(sheet) -> list[str]:
    with open(sheet, newline="") as f:
        return [r["File Name"] for r in csv.DictReader(f, delimiter="\t")]


@pytest.mark.parametrize("source", [STAR, TAR], ids=["folder", "tar.gz"])
@pytest.mark.parametrize("sheet", [SHEET, SHEET_NEW], ids=["old-sheet", "new-sheet"])
def test_values_follow_the_sheet_order(source, sheet):
    ref, ids = _reference("unstranded")
    c = read_gdc(source, sheet)
    assert c.gene_ids == ids
    expected = np.stack([ref[name] for name in _sheet_order(sheet)])
    np.testing.assert_array_equal(c.expression, expected)
    assert c.samples["file_name"].to_list() == _sheet_order(sheet)
    assert c.meta["units"] == "counts" and c.value_transforms == []
    assert c.meta["provenance"][0]["gene_model"] == "GENCODE v36"


def test_sample_table_from_both_layouts():
    old = read_gdc(STAR, SHEET)
    new = read_gdc(STAR, SHEET_NEW)
    assert old.sample_ids == ["TCGA-A1-A0SB-01A", "TCGA-A2-A04P-11A", "TCGA-05-4244-01A"]
    assert old.samples["sample_type"].to_list() == [
        "Primary Tumor",
        "Solid Tissue Normal",
        "Primary Tumor",
    ]  # the sheet's column wins over the barcode's
    assert old.labels.to_list() == ["TCGA-BRCA", "TCGA-BRCA", "TCGA-LUAD"]
    assert new.samples["tissue_type"].to_list() == ["Tumor", "Normal", "Tumor"]
    assert new.samples["tumor_descriptor"][1] == "Not Applicable"
    assert new.samples["sample_type"][1] == "Solid Tissue Normal"  # from the barcode
    assert new.samples["vial"].to_list() == ["A", "A", "A"]
    assert {"file_id", "case_id", "project_id", "sample_type_code"} <= set(new.samples.columns)
    # STAR summary rows become sample columns (values of the chosen column)
    first = STAR / "3c2d6a1e-9a5b-4f0e-8d9b-2f6f4b1c7a01"
    lines = next(first.iterdir()).read_text().splitlines()
    n_unmapped = float(lines[2].split("\t")[3])
    assert old.samples["n_unmapped"][0] == n_unmapped
    assert old.samples["n_nofeature"].null_count() == 0


def test_counts_column_and_units():
    ref, _ = _reference("tpm_unstranded")
    c = read_gdc(TAR, SHEET, counts="tpm_unstranded")
    np.testing.assert_array_equal(c.expression, np.stack([ref[n] for n in _sheet_order(SHEET)]))
    assert c.meta["units"] == "TPM"
    assert c.samples["n_unmapped"].null_count() == 3  # empty in the TPM column
    with pytest.raises(ValueError, match="counts must be one of"):
        read_gdc(TAR, SHEET, counts="raw")


def test_par_y_ids_stay_distinct():
    g = read_gdc(STAR, SHEET).genes
    par = g.filter(pl.col("gene_name") == "CD99")
    assert par["gene_id"].to_list() == ["ENSG00000002586.20", "ENSG00000002586.20_PAR_Y"]
    assert par["gene_id_unversioned"].to_list() == ["ENSG00000002586", "ENSG00000002586_PAR_Y"]
    assert g["gene_id_unversioned"].is_unique().all()
    assert g["gene_type"][-1] == "lncRNA"
    s = pl.Series(["ENSG00000000003.15", "ENSG1", "ENSG2.1_PAR_Y", "AL139246.4"])
    assert unversioned(s).to_list() == ["ENSG00000000003", "ENSG1", "ENSG2_PAR_Y", "AL139246"]


def test_sample_types_filter_and_id_column():
    c = read_gdc(STAR, SHEET, sample_types="11")
    assert c.sample_ids == ["TCGA-A2-A04P-11A"]
    c = read_gdc(STAR, SHEET, id_column="File ID", label=None)
    assert c.sample_ids[0] == "3c2d6a1e-9a5b-4f0e-8d9b-2f6f4b1c7a01" and not c.has_labels


def test_written_folder_matches_memory(tmp_path):
    c = read_gdc(TAR, SHEET, out=tmp_path / "gdc")
    np.testing.assert_array_equal(c.expression, read_gdc(STAR, SHEET).expression)
    assert Cohort.load(tmp_path / "gdc").genes.columns == [
        "gene_id",
        "gene_id_unversioned",
        "gene_name",
        "gene_type",
    ]


def test_extra_files_are_ignored_missing_files_are_errors(tmp_path):
    lines = SHEET.read_text().splitlines()
    sub = tmp_path / "two.tsv"
    sub.write_text("\n".join(lines[:3]) + "\n")
    assert read_gdc(STAR, sub).n_samples == 2
    folder = tmp_path / "star"
    shutil.copytree(STAR, folder)
    victim = next((folder / "7b1f0e52-1c3d-4e8a-9f21-6d0c5a8e3b02").iterdir())
    victim.unlink()
    with pytest.raises(InputError, match=r"1 of 3 files of the sample sheet are missing"):
        read_gdc(folder, SHEET, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_mixed_gene_lists_name_the_first_differing_file(tmp_path):
    folder = tmp_path / "star"
    shutil.copytree(STAR, folder)
    order = sorted(p for p in folder.rglob("*.tsv"))
    bad = order[1]
    text = bad.read_text().replace("ENSG00000141510.18\tTP53", "ENSG00000141510.17\tTP53")
    bad.write_text(text)
    with pytest.raises(InputError) as e:
        read_gdc(folder, SHEET, out=tmp_path / "out")
    msg = str(e.value)
    assert str(bad) in msg and "ENSG00000141510.17" in msg and "ENSG00000141510.18" in msg
    assert "line 16" in msg  # 1 comment + header + 4 N_ rows + 10th gene
    assert not (tmp_path / "out").exists()
    # a file with a gene missing at the end
    bad.write_text("\n".join(text.splitlines()[:-1]) + "\n")
    with pytest.raises(InputError, match=r"12 vs 11 genes|11 vs 12 genes"):
        read_gdc(folder, SHEET)


def test_duplicate_sample_ids_in_sheet(tmp_path):
    lines = SHEET.read_text().splitlines()
    fields = lines[2].split("\t")
    fields[6] = lines[1].split("\t")[6]
    sheet = tmp_path / "dup.tsv"
    sheet.write_text("\n".join([lines[0], lines[1], "\t".join(fields), lines[3]]) + "\n")
    with pytest.raises(InputError, match=r"line 3: duplicate sample id 'TCGA-A1-A0SB-01A'"):
        read_gdc(STAR, sheet)
    assert read_gdc(STAR, sheet, id_column="File ID").n_samples == 3


def test_truncated_tar(tmp_path):
    data = TAR.read_bytes()
    bad = tmp_path / "cut.tar.gz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated or corrupt archive"):
        read_gdc(bad, SHEET, out=tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.tar.gz"]


def test_cli_import_gdc(cli, tmp_path):
    out = tmp_path / "gdc"
    r = cli.invoke(
        main,
        [
            "import",
            "gdc",
            str(TAR),
            "--sample-sheet",
            str(SHEET_NEW),
            "--counts",
            "fpkm_unstranded",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "3 samples × 12 genes, 2 classes, units 'FPKM'" in r.output
    c = Cohort.load(out)
    ref, _ = _reference("fpkm_unstranded")
    np.testing.assert_array_equal(c.expression[0], ref[_sheet_order(SHEET_NEW)[0]])


def test_plain_tar_without_gzip(tmp_path):
    plain = tmp_path / "star.tar"
    with tarfile.open(plain, "w") as tar:
        tar.add(STAR, arcname="star")
    np.testing.assert_array_equal(
        read_gdc(plain, SHEET).expression, read_gdc(STAR, SHEET).expression
    )


def test_cli_gdc_without_label(cli, tmp_path):
    r = cli.invoke(
        main,
        [
            "import",
            "gdc",
            str(STAR),
            "--sample-sheet",
            str(SHEET),
            "--label",
            "",
            "--out",
            str(tmp_path / "g"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert not Cohort.load(tmp_path / "g").has_labels
    r = cli.invoke(
        main,
        [
            "import",
            "gdc",
            str(STAR),
            "--sample-sheet",
            str(SHEET),
            "--nan",
            "drop-genes",
            "--fill-value",
            "1",
            "--out",
            str(tmp_path / "h"),
        ],
    )
    assert r.exit_code == 2 and "--fill-value goes with --nan fill" in r.output
