"""The vector index is sized by its table, and search through it finds what exact search finds."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from feedstock.rag.index import Ann, build_ann, search_table

DIM = 64


@pytest.mark.parametrize("rows", [5_000, 100_000, 1_000_000, 20_000_000])
def test_parameters_follow_the_table_size(rows):
    ann = Ann(rows)
    assert ann.partitions == max(1, round(rows / Ann.ROWS_PER_PARTITION))
    assert 1 <= ann.nprobes <= ann.partitions
    assert ann.nprobes >= ann.partitions * Ann.PROBE_SHARE
    assert Ann(rows * 4).partitions >= ann.partitions and Ann(rows * 4).nprobes >= ann.nprobes


def test_the_built_index_is_used_and_agrees_with_exact_search(tmp_path):
    import lancedb

    rng = np.random.default_rng(3)
    centers = rng.normal(size=(50, DIM)).astype(np.float32)
    vectors = centers[rng.integers(0, 50, 20_000)] + 0.5 * rng.normal(size=(20_000, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    table = lancedb.connect(str(tmp_path)).create_table(
        "chunks",
        pa.table(
            {
                "chunk_id": [f"c{i}" for i in range(len(vectors))],
                "text": ["chunk"] * len(vectors),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), DIM),
            }
        ),
    )
    ann = build_ann(table)
    assert [(i.columns, i.index_type) for i in table.list_indices()] == [(["vector"], "IvfHnswSq")]
    assert ann == Ann(20_000)

    queries = vectors[rng.choice(len(vectors), 30, replace=False)]
    recall = []
    for q in queries:
        found = search_table(table, lambda _texts, q=q: [q], "query", 10, None, "vector")
        exact = {f"c{i}" for i in np.argsort(-(vectors @ q))[:10]}
        recall.append(len(exact & {r["chunk_id"] for r in found}) / 10)
        assert found[0]["score"] == pytest.approx(1.0, abs=0.01)  # the query's own chunk comes first
    assert np.mean(recall) >= 0.9
