"""Bad input: each case gives a located error, exit code 1, and leaves nothing behind."""

from __future__ import annotations

import gzip
import shutil

import pytest

from gexplain.cli import main
from gexplain.io import fixture_path

XENA = fixture_path("xena/HiSeqV2.tsv")
PHENO = fixture_path("xena/phenotype.tsv")


def _lines():
    return XENA.read_text().splitlines()


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def _fails(cli, tmp_path, args, *expected):
    """Run the CLI writing to tmp_path/out; check exit 1, the message, and no leftovers."""
    out = tmp_path / "out" / "cohort"
    before = sorted(p.name for p in tmp_path.iterdir() if p.name != "out")
    r = cli.invoke(main, [*map(str, args), "--out", str(out)])
    assert r.exit_code == 1, r.output
    for text in expected:
        assert text in r.output, r.output
    assert not out.exists()
    leftovers = (
        [p.name for p in (tmp_path / "out").iterdir()] if (tmp_path / "out").exists() else []
    )
    assert leftovers == []  # no temporary folder or decompressed copy
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "out") == before
    return r.output


def test_wrong_field_count(cli, tmp_path):
    lines = _lines()
    lines[4] = lines[4].rsplit("\t", 1)[0]  # line 5 loses its last value
    f = _write(tmp_path / "m.tsv", lines)
    _fails(
        cli,
        tmp_path,
        ["import", "xena", f],
        f"{f}, line 5, column 8:",
        "expected 9 fields (as in the header) but found 8",
    )
    lines = _lines()
    lines[6] += "\t1.0"
    f = _write(tmp_path / "m.tsv", lines)
    _fails(cli, tmp_path, ["import", "xena", f], "line 7, column 10", "found 10")


def test_non_numeric_value(cli, tmp_path):
    lines = _lines()
    fields = lines[2].split("\t")
    fields[3] = "4.1x"
    lines[2] = "\t".join(fields)
    f = _write(tmp_path / "m.tsv", lines)
    _fails(
        cli,
        tmp_path,
        ["import", "xena", f],
        f"{f}, line 3, column 4: not a number: '4.1x' ('TCGA-A2-A04P-11')",
    )


def test_nan_and_inf_are_located_then_dropped_or_filled(cli, tmp_path):
    lines = _lines()
    fields = lines[9].split("\t")
    fields[2], fields[5] = "NaN", "-inf"
    lines[9] = "\t".join(fields)
    f = _write(tmp_path / "m.tsv", lines)
    _fails(cli, tmp_path, ["import", "xena", f], "line 10, column 3: non-finite value", "--nan")
    r = cli.invoke(
        main, ["import", "xena", str(f), "--nan", "drop-genes", "--out", str(tmp_path / "d")]
    )
    assert r.exit_code == 0 and "2 non-finite values (NaN/inf/NA), 1 genes dropped" in r.output
    r = cli.invoke(
        main, ["import", "xena", str(f), "--nan", "fill=0", "--out", str(tmp_path / "z")]
    )
    assert r.exit_code == 0 and "2 non-finite values (NaN/inf/NA), filled" in r.output
    r = cli.invoke(main, ["import", "xena", str(f), "--nan", "maybe", "--out", "x"])
    assert r.exit_code == 2 and "NaN policy must be" in r.output


def test_duplicate_sample_ids(cli, tmp_path):
    lines = _lines()
    head = lines[0].split("\t")
    head[5] = head[2]
    lines[0] = "\t".join(head)
    f = _write(tmp_path / "m.tsv", lines)
    _fails(
        cli,
        tmp_path,
        ["import", "xena", f],
        f"{f}, line 1, column 6: duplicate sample id 'TCGA-A1-A0SD-01' (also in column 3)",
    )


def test_duplicate_gene_ids(cli, tmp_path):
    lines = _lines()
    lines[7] = "HIF3A\t" + lines[7].split("\t", 1)[1]
    f = _write(tmp_path / "m.tsv", lines)
    _fails(
        cli,
        tmp_path,
        ["import", "xena", f],
        f"{f}, line 8, column 1: duplicate gene id 'HIF3A' (also on line 3)",
    )
    c = tmp_path / "t.csv"
    c.write_text("s,g1,g2\na,1,2\nb,3,4\na,5,6\n")
    _fails(cli, tmp_path, ["import", "table", c], "line 4, column 1: duplicate sample id 'a'")


def test_empty_files(cli, tmp_path):
    f = tmp_path / "empty.tsv"
    f.write_text("")
    _fails(cli, tmp_path, ["import", "xena", f], f"{f}: empty file")
    _fails(cli, tmp_path, ["import", "table", f], f"{f}: empty file")
    h = _write(tmp_path / "header.tsv", _lines()[:1])
    _fails(cli, tmp_path, ["import", "xena", h], "line 2: no data lines after the header")
    g = tmp_path / "empty.tsv.gz"
    g.write_bytes(gzip.compress(b""))
    _fails(cli, tmp_path, ["import", "xena", g], "empty file")


def test_phenotype_without_the_label_column_or_samples(cli, tmp_path):
    _fails(
        cli,
        tmp_path,
        ["import", "xena", XENA, "--phenotype", PHENO, "--label", "PAM50"],
        f"{PHENO}, line 1: label column 'PAM50' not in the phenotype table",
    )
    lines = PHENO.read_text().splitlines()
    p = _write(tmp_path / "p.tsv", [ln for ln in lines if "A04P" not in ln])
    _fails(
        cli,
        tmp_path,
        ["import", "xena", XENA, "--phenotype", p, "--label", "_primary_disease"],
        "1 of 8 samples are not in the phenotype table (e.g. ['TCGA-A2-A04P-11'])",
        "--drop-unmatched",
    )
    dup = _write(tmp_path / "dup.tsv", [*lines, lines[3]])
    _fails(
        cli,
        tmp_path,
        ["import", "xena", XENA, "--phenotype", dup],
        f"{dup}, line {len(lines) + 1}: duplicate sample id",
    )


def test_mixed_gene_lists_across_gdc_files(cli, tmp_path):
    folder = tmp_path / "star"
    shutil.copytree(fixture_path("gdc/star"), folder)
    files = sorted(folder.rglob("*.tsv"))
    text = files[2].read_text().replace("ENSG00000000419.13\tDPM1", "ENSG00000000419.12\tDPM1")
    files[2].write_text(text)
    sheet = fixture_path("gdc/gdc_sample_sheet.tsv")
    _fails(
        cli,
        tmp_path,
        ["import", "gdc", folder, "--sample-sheet", sheet],
        f"{files[2]}, line 9, column 1: gene list differs from",
        "gene 3 is 'ENSG00000000419.12' here but 'ENSG00000000419.13' there",
    )


def test_bad_value_in_a_gdc_file(cli, tmp_path):
    folder = tmp_path / "star"
    shutil.copytree(fixture_path("gdc/star"), folder)
    f = sorted(folder.rglob("*.tsv"))[0]
    lines = f.read_text().splitlines()
    fields = lines[8].split("\t")
    fields[3] = "12a"
    lines[8] = "\t".join(fields)
    _write(f, lines)
    _fails(
        cli,
        tmp_path,
        ["import", "gdc", folder, "--sample-sheet", fixture_path("gdc/gdc_sample_sheet.tsv")],
        f"{f}, line 9, column 4: not a number: '12a' ('unstranded')",
    )


@pytest.mark.parametrize("cut", [0.3, 0.9])
def test_truncated_gz(cli, tmp_path, cut):
    data = gzip.compress(XENA.read_bytes() * 3)
    f = tmp_path / "m.tsv.gz"
    f.write_bytes(data[: int(len(data) * cut)])
    _fails(cli, tmp_path, ["import", "xena", f], f"{f}: truncated or corrupt gzip file")


def test_malformed_csv_row(cli, tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("s,g1,g2\na,1,2\nb,3\n")
    _fails(cli, tmp_path, ["import", "table", f], f"{f}, line 3, column 2: expected 3 fields")
