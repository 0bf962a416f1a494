"""Output targets of the readers: sparse preallocation, column drops, abort."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from gexplain.cohort import Cohort
from gexplain.cohort._store import EXPRESSION_FILE, preallocate_expression
from gexplain.io._common import Target


def test_preallocated_matrix_is_a_sparse_valid_ipc_file(tmp_path):
    path = tmp_path / "e.arrow"
    x = preallocate_expression(path, 300, 2000)  # 2.4 MB of zeros
    assert path.stat().st_blocks * 512 < 200_000  # a hole, not written zeros
    x[7, 11] = 3.5
    x.flush()
    del x
    table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
    values = np.asarray(table.column(0).combine_chunks().flatten()).reshape(300, 2000)
    assert values[7, 11] == 3.5 and np.count_nonzero(values) == 1


def test_target_keep_genes_and_commit(tmp_path):
    t = Target(tmp_path / "c", 4, 5, overwrite=False)
    t.expression[:] = np.arange(20, dtype=np.float32).reshape(4, 5)
    t.keep_genes(np.array([True, False, True, True, False]))
    c = t.commit(
        pl.DataFrame({"sample_id": list("abcd")}),
        pl.DataFrame({"gene_id": ["g0", "g2", "g3"]}),
        {"units": "counts"},
    )
    np.testing.assert_array_equal(c.expression, np.arange(20).reshape(4, 5)[:, [0, 2, 3]])
    assert Cohort.load(tmp_path / "c").gene_ids == ["g0", "g2", "g3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]
    assert (tmp_path / "c" / EXPRESSION_FILE).exists()


def test_target_abort_leaves_nothing(tmp_path):
    t = Target(tmp_path / "c", 3, 2, overwrite=False)
    t.keep_genes(np.array([True, False]))
    t.abort()
    assert list(tmp_path.iterdir()) == []
    m = Target(None, 2, 3, overwrite=False)
    m.expression[1] = 1
    m.keep_genes(np.array([False, True, True]))
    c = m.commit(pl.DataFrame({"sample_id": ["a", "b"]}), pl.DataFrame({"gene_id": ["x", "y"]}), {})
    assert c.expression.tolist() == [[0, 0], [1, 1]]
