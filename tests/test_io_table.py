"""Wide tables: CSV/TSV/Parquet, samples or genes as rows, covariates, phenotype, CLI."""

from __future__ import annotations

import csv
import gzip

import numpy as np
import polars as pl
import pytest

from gexplain.cli import main
from gexplain.cohort import Cohort
from gexplain.errors import InputError
from gexplain.io import fixture_path, read_table

WIDE = fixture_path("table/wide.csv")


def _reference():
    with open(WIDE, newline="") as f:
        rows = list(csv.reader(f))
    genes = rows[0][3:]
    x = np.array([[float(v) for v in r[3:]] for r in rows[1:]], dtype=np.float32)
    return [r[0] for r in rows[1:]], [r[1] for r in rows[1:]], genes, x


def _transposed_tsv(path, gz=False):
    ids, _, genes, x = _reference()
    lines = ["gene_id\tgene_name\t" + "\t".join(ids)]
    for j, g in enumerate(genes):
        lines.append(f"{g}\tNAME{j}\t" + "\t".join(repr(float(v)) for v in x[:, j]))
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def test_csv_samples_as_rows():
    ids, labels, genes, x = _reference()
    c = read_table(WIDE, label="label")
    assert c.sample_ids == ids and c.gene_ids == genes
    np.testing.assert_array_equal(c.expression, x)
    assert c.labels.to_list() == labels
    assert c.samples.columns == ["sample_id", "label", "batch"]  # 'batch' is text -> covariate
    assert c.expression[0, 0] == np.float32(1.814)  # hand-read: P1, ENSG00000141510
    assert c.meta["units"] == "unknown" and c.meta["provenance"][0]["source"] == "table"


def test_sample_column_and_numeric_meta_columns(tmp_path):
    f = tmp_path / "t.tsv"
    f.write_text("g1\tid\tage\tg2\n1.5\ts1\t40\t2\n-3\ts2\t51\t4e-1\n")
    c = read_table(f, sample_column="id", meta_columns=["age"], units="log2(x+1)")
    assert c.sample_ids == ["s1", "s2"] and c.gene_ids == ["g1", "g2"]
    assert c.samples["age"].to_list() == [40, 51]
    np.testing.assert_array_equal(c.expression, np.array([[1.5, 2.0], [-3.0, 0.4]], np.float32))
    assert c.value_transforms == ["log2p1"]


@pytest.mark.parametrize("gz", [False, True])
def test_transposed_tsv_equals_samples_as_rows(tmp_path, gz):
    f = _transposed_tsv(tmp_path / ("t.tsv.gz" if gz else "t.tsv"), gz=gz)
    c = read_table(f, transpose=True)
    ref = read_table(WIDE)
    assert c.sample_ids == ref.sample_ids and c.gene_ids == ref.gene_ids
    np.testing.assert_array_equal(c.expression, ref.expression)
    assert c.genes["gene_name"].to_list() == [f"NAME{j}" for j in range(5)]


def test_transposed_with_phenotype_labels(tmp_path):
    f = _transposed_tsv(tmp_path / "t.tsv")
    pheno = tmp_path / "p.tsv"
    pheno.write_text("sample\tsubtype\nP1\tA\nP2\tB\nP3\tA\nP4\tB\nP6\tA\n")
    with pytest.raises(InputError, match="1 of 6 samples are not in the phenotype"):
        read_table(f, transpose=True, phenotype=pheno, label="subtype")
    c = read_table(f, transpose=True, phenotype=pheno, label="subtype", drop_unmatched=True)
    assert c.sample_ids == ["P1", "P2", "P3", "P4", "P6"]
    assert c.labels.to_list() == ["A", "B", "A", "B", "A"]
    np.testing.assert_array_equal(c.expression, _reference()[3][[0, 1, 2, 3, 5]])
    with pytest.raises(InputError, match="label comes from a phenotype"):
        read_table(f, transpose=True, label="subtype")


def test_parquet_both_orientations(tmp_path):
    ids, labels, genes, x = _reference()
    frame = pl.DataFrame(
        {"sample": ids, "label": labels, **{g: x[:, j] for j, g in enumerate(genes)}}
    )
    frame.write_parquet(tmp_path / "w.parquet")
    c = read_table(tmp_path / "w.parquet", label="label")
    assert c.sample_ids == ids and c.gene_ids == genes
    np.testing.assert_array_equal(c.expression, x)
    assert c.labels.to_list() == labels
    long = pl.DataFrame({"gene_id": genes, **{s: x[i] for i, s in enumerate(ids)}})
    long.write_parquet(tmp_path / "t.parquet", row_group_size=2)
    t = read_table(tmp_path / "t.parquet", transpose=True)
    assert t.sample_ids == ids and t.gene_ids == genes
    np.testing.assert_array_equal(t.expression, x)


def test_parquet_nulls_follow_the_nan_policy(tmp_path):
    pl.DataFrame({"s": ["a", "b"], "g1": [1.0, None], "g2": [2.0, 3.0]}).write_parquet(
        tmp_path / "n.parquet"
    )
    with pytest.raises(InputError, match=r"column 'g1': non-finite value .* at row 2"):
        read_table(tmp_path / "n.parquet")
    c = read_table(tmp_path / "n.parquet", nan="drop-genes")
    assert c.gene_ids == ["g2"] and c.expression[:, 0].tolist() == [2.0, 3.0]
    c = read_table(tmp_path / "n.parquet", nan="fill=-1")
    assert c.expression[:, 0].tolist() == [1.0, -1.0]


def test_csv_nan_policies(tmp_path):
    f = tmp_path / "n.csv"
    f.write_text("s,g1,g2,g3\na,1,NA,3\nb,4,5,inf\nc,7,8,9\n")
    with pytest.raises(InputError) as e:
        read_table(f)
    assert f"{f}, line 2, column 3" in str(e.value) and "'g2'" in str(e.value)
    c = read_table(f, nan="drop-genes")
    assert c.gene_ids == ["g1"] and c.expression[:, 0].tolist() == [1.0, 4.0, 7.0]
    assert c.meta["provenance"][0]["n_nonfinite"] == 2
    c = read_table(f, nan=0.5)
    np.testing.assert_array_equal(c.expression, [[1, 0.5, 3], [4, 5, 0.5], [7, 8, 9]])


def test_cli_import_table(cli, tmp_path):
    out = tmp_path / "c"
    r = cli.invoke(main, ["import", "table", str(WIDE), "--label", "label", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "6 samples × 5 genes, 3 classes" in r.output
    np.testing.assert_array_equal(Cohort.load(out).expression, _reference()[3])
    f = _transposed_tsv(tmp_path / "t.txt")
    r = cli.invoke(
        main, ["import", "table", str(f), "--transpose", "--out", str(tmp_path / "t"), "-q"]
    )
    assert r.exit_code == 0 and r.output == ""
    assert Cohort.load(tmp_path / "t").gene_ids == _reference()[2]


@pytest.mark.parametrize(
    "text",
    [",g1,g2\nS1,1,2\nS2,3,4\n", '"","g1","g2"\n"S1",1,2\n"S2",3,4\n'],
    ids=["pandas-to_csv", "R-write.csv"],
)
def test_csv_written_by_pandas_or_r(tmp_path, text):
    f = tmp_path / "x.csv"
    f.write_text(text)
    c = read_table(f)
    assert c.sample_ids == ["S1", "S2"] and c.gene_ids == ["g1", "g2"]
    np.testing.assert_array_equal(c.expression, [[1, 2], [3, 4]])
