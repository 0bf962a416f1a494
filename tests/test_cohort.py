from __future__ import annotations

import os
import resource
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
from conftest import make_cohort

import gexplain as gx
from gexplain.cohort import Cohort, CohortWriter, GroundTruth, _store
from gexplain.errors import AlignmentError, GexplainError, InputError


def test_roundtrip_is_exact_and_memory_mapped(tmp_path, small_cohort):
    small_cohort.save(tmp_path / "c")
    loaded = Cohort.load(tmp_path / "c")
    np.testing.assert_array_equal(loaded.expression, small_cohort.expression)
    assert loaded.expression.dtype == np.float32
    assert loaded.expression.flags.c_contiguous
    assert not loaded.expression.flags.writeable  # a view of the mapped file
    assert loaded.samples.equals(small_cohort.samples)
    assert loaded.genes.equals(small_cohort.genes)
    assert loaded.meta["units"] == "counts"
    assert sorted(os.listdir(tmp_path / "c")) == [
        "cohort.json",
        "expression.arrow",
        "genes.parquet",
        "samples.parquet",
    ]


def test_load_does_not_copy_the_matrix(tmp_path):
    # 4000 x 5000 float32 = 80 MB; loading must not grow the resident set by that.
    code = f"""
import numpy as np, sys
from gexplain.cohort import Cohort
x = np.ones((4000, 5000), np.float32)
Cohort(x).save({str(tmp_path / "big")!r})
del x
def rss():
    return int(open('/proc/self/statm').read().split()[1]) * 4096
before = rss()
c = Cohort.load({str(tmp_path / "big")!r})
after = rss()
assert c.expression.shape == (4000, 5000)
print(after - before)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    grown = int(out.stdout.strip().splitlines()[-1])
    assert grown < 20 * 2**20, f"loading grew RSS by {grown / 2**20:.1f} MiB"


def test_zero_copy_arrow_and_polars(small_cohort):
    table = small_cohort.to_arrow()
    assert table.column_names == ["sample_id", "label", "split", "expression"]
    values = table.column("expression").chunk(0).flatten()
    assert values.buffers()[1].address == small_cohort.expression.ctypes.data
    frame = small_cohort.to_polars()
    assert frame.schema["expression"] == pl.Array(pl.Float32, 7)
    arr = frame["expression"].to_numpy()
    assert np.shares_memory(arr, small_cohort.expression)
    back = Cohort.from_polars(frame, small_cohort.genes)
    np.testing.assert_array_equal(back.expression, small_cohort.expression)


def test_select_by_ids_positions_masks_and_expressions(small_cohort):
    c = small_cohort
    sub = c.select(samples=["S003", "S001"], genes=["ENSG00004", "ENSG00000"])
    np.testing.assert_array_equal(sub.expression, c.expression[np.ix_([3, 1], [4, 0])])
    assert sub.sample_ids == ["S003", "S001"]
    assert sub.gene_ids == ["ENSG00004", "ENSG00000"]
    train = c.select(samples=pl.col("split") == "train")
    assert train.n_samples == 8 and set(train.samples["split"]) == {"train"}
    assert c.split("test").n_samples == 4
    mask = np.zeros(c.n_genes, bool)
    mask[[1, 5]] = True
    assert c.select(genes=mask).gene_ids == ["ENSG00001", "ENSG00005"]
    view = c.select(samples=slice(2, 5))
    assert np.shares_memory(view.expression, c.expression)
    with pytest.raises(AlignmentError, match="not in the cohort"):
        c.select(genes=["nope"])


def test_align_genes_reorders_by_id_and_refuses_missing(small_cohort):
    c = small_cohort
    order = list(reversed(c.gene_ids))
    a = c.align_genes(order)
    np.testing.assert_array_equal(a.expression, c.expression[:, ::-1])
    assert a.genes["gene_name"].to_list() == list(reversed(c.genes["gene_name"].to_list()))
    assert c.align_genes(c.gene_ids) is c
    with pytest.raises(AlignmentError, match="1 of 3 genes are missing"):
        c.align_genes(["ENSG00001", "XYZ", "ENSG00002"])
    filled = c.align_genes(["ENSG00001", "XYZ"], fill=-1.5)
    np.testing.assert_array_equal(filled.expression[:, 1], np.full(c.n_samples, -1.5, np.float32))
    np.testing.assert_array_equal(filled.expression[:, 0], c.expression[:, 1])
    assert filled.meta["provenance"][-1]["n_filled"] == 1


def test_duplicate_ids_and_shape_mismatch_are_refused():
    x = np.zeros((2, 2))
    with pytest.raises(InputError, match="duplicate sample_id 'a'"):
        Cohort(x, {"sample_id": ["a", "a"]})
    with pytest.raises(InputError, match="duplicate gene_id 'g'"):
        Cohort(x, genes=["g", "g"])
    with pytest.raises(InputError, match="3 rows but the matrix has 2"):
        Cohort(x, {"sample_id": ["a", "b", "c"]})
    with pytest.raises(ValueError, match="2-D"):
        Cohort(np.zeros(3))


def test_iter_chunks_views_with_offsets(tmp_path, small_cohort):
    small_cohort.save(tmp_path / "c")
    c = Cohort.load(tmp_path / "c")
    chunks = list(c.iter_chunks(5))
    assert [ch.offset for ch in chunks] == [0, 5, 10]
    assert [ch.n_samples for ch in chunks] == [5, 5, 2]
    np.testing.assert_array_equal(np.vstack([ch.expression for ch in chunks]), c.expression)
    assert all(np.shares_memory(ch.expression, c.expression) for ch in chunks)
    assert chunks[2].sample_ids == ["S010", "S011"]


def test_atomic_save_leaves_nothing_on_failure(tmp_path, small_cohort, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(_store, "write_tables", boom)
    with pytest.raises(RuntimeError):
        small_cohort.save(tmp_path / "c")
    assert os.listdir(tmp_path) == []


def test_save_refuses_existing_unless_overwrite(tmp_path, small_cohort):
    small_cohort.save(tmp_path / "c")
    with pytest.raises(GexplainError, match="exists"):
        small_cohort.save(tmp_path / "c")
    other = small_cohort.select(samples=slice(0, 3))
    other.save(tmp_path / "c", overwrite=True)
    assert Cohort.load(tmp_path / "c").n_samples == 3
    assert os.listdir(tmp_path) == ["c"]


def test_writer_chunks_equal_one_shot_and_resume(tmp_path, small_cohort):
    c = small_cohort
    w = CohortWriter(tmp_path / "w", c.n_samples, c.genes, resume_params={"job": 1})
    w.write(0, c.expression[:5])
    w.mark_done("0")
    del w  # "interrupted": the partial folder stays
    assert not (tmp_path / "w").exists()
    w = CohortWriter(tmp_path / "w", c.n_samples, c.genes, resume_params={"job": 1})
    assert w.is_done("0") and not w.is_done("1")
    w.write(5, c.expression[5:])
    w.mark_done("1")
    w.commit(c.samples, c.meta)
    loaded = Cohort.load(tmp_path / "w")
    np.testing.assert_array_equal(loaded.expression, c.expression)
    assert sorted(os.listdir(tmp_path)) == ["w"]
    # different parameters start afresh
    w = CohortWriter(tmp_path / "w2", c.n_samples, c.genes, resume_params={"job": 1})
    w.mark_done("0")
    w = CohortWriter(tmp_path / "w2", c.n_samples, c.genes, resume_params={"job": 2})
    assert not w.is_done("0")


def test_multi_batch_files_from_other_tools_load(tmp_path, small_cohort):
    import pyarrow as pa

    small_cohort.save(tmp_path / "c")
    x = small_cohort.expression
    schema = _store.expression_schema(x.shape[1])
    with (
        pa.OSFile(str(tmp_path / "c" / "expression.arrow"), "wb") as sink,
        pa.ipc.new_file(sink, schema) as writer,
    ):
        for part in (x[:5], x[5:]):
            writer.write_batch(
                pa.record_batch([_store.fixed_size_list(np.ascontiguousarray(part))], schema=schema)
            )
    np.testing.assert_array_equal(Cohort.load(tmp_path / "c").expression, x)


def test_ground_truth_roundtrip_and_gene_sets(tmp_path, small_cohort):
    truth = GroundTruth.from_gene_sets({"C0": ["ENSG00000", "ENSG00001"], "C1": ["ENSG00002"]})
    assert truth.biomarker_sets() == {"C0": {"ENSG00000", "ENSG00001"}, "C1": {"ENSG00002"}}
    c = Cohort(small_cohort.expression, small_cohort.samples, small_cohort.genes, truth=truth)
    c.save(tmp_path / "c")
    back = Cohort.load(tmp_path / "c")
    assert back.truth is not None
    assert back.truth.biomarker_sets() == truth.biomarker_sets()
    assert back.info()["ground_truth"]["biomarkers_per_class"] == {"C0": 2, "C1": 1}


def test_info_counts_classes_and_nans(small_cohort):
    x = np.array(small_cohort.expression)
    x[0, 0] = np.nan
    x[3, 2] = np.nan
    c = Cohort(x, small_cohort.samples, small_cohort.genes)
    info = c.info()
    assert info["n_nan"] == 2
    assert info["classes"] == {"C0": 4, "C1": 4, "C2": 4}
    assert info["splits"] == {"test": 4, "train": 8}


def test_value_transforms_and_lazy_namespace():
    c = make_cohort()
    c.meta["preprocessing"] = [
        {"step": "filter_genes", "transforms_values": False},
        {"step": "log2p1", "transforms_values": True},
    ]
    assert c.value_transforms == ["log2p1"]
    assert gx.Cohort is Cohort
    with pytest.raises(AttributeError):
        gx.not_a_module  # noqa: B018


def test_rss_helper_is_meaningful():
    # guards the RSS-based test above: touching 80 MB must show up.
    assert resource.getpagesize() == 4096


def test_info_does_not_count_missing_labels_as_a_class():
    c = Cohort(np.zeros((3, 1)), {"sample_id": ["a", "b", "c"], "label": ["x", None, "x"]})
    info = c.info()
    assert info["classes"] == {"x": 2}
    assert info["n_unlabelled"] == 1
