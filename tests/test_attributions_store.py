from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from gexplain.errors import InputError
from gexplain.explain import Attributions


def _attr(n: int = 4, g: int = 5) -> Attributions:
    r = np.random.default_rng(0)
    rows = pl.DataFrame(
        {
            "sample_id": [f"s{i}" for i in range(n)],
            "target": ["A", "B"] * (n // 2),
            "target_index": [0, 1] * (n // 2),
            "f_x": r.random(n),
            "f_baseline": np.zeros(n),
            "delta": [1e-9, -2e-9, 0.0, 3e-10][:n],
            "correct": [True, False, True, True][:n],
        }
    )
    return Attributions(
        r.normal(size=(n, g)), rows, [f"g{j}" for j in range(g)], {"method": "exact"}
    )


def test_roundtrip_and_mmap(tmp_path):
    a = _attr()
    a.save(tmp_path / "a")
    b = Attributions.load(tmp_path / "a")
    np.testing.assert_array_equal(b.values, a.values)
    assert not b.values.flags.writeable
    assert b.rows.equals(a.rows)
    assert b.gene_ids == a.gene_ids
    assert b.meta["method"] == "exact"
    assert float(np.abs(b.delta).max()) == pytest.approx(2e-9)


def test_normalized_rows_have_unit_norm():
    a = _attr()
    n = a.normalized()
    np.testing.assert_allclose(np.linalg.norm(n.values.astype(np.float64), axis=1), 1.0, rtol=1e-6)
    assert n.meta["normalized"] is True
    z = Attributions(np.zeros((1, 3)), a.rows[:1], ["a", "b", "c"]).normalized()
    assert not np.isnan(z.values).any()


def test_select_by_expression():
    a = _attr()
    c = a.select(pl.col("correct"))
    assert c.sample_ids == ["s0", "s2", "s3"]
    np.testing.assert_array_equal(c.values, a.values[[0, 2, 3]])


def test_load_rejects_non_attribution_folder(tmp_path):
    with pytest.raises(InputError, match=r"attributions\.arrow is missing"):
        Attributions.load(tmp_path)
