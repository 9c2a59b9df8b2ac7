"""Search filters are values, not SQL: hostile ``--source``/``--tag`` strings against a real LanceDB table.

The table is built directly in a tmp lake with the index's own chunk schema and pointer; only the query
embedding is a stand-in (the filters are what is under test, and the vector search over a few rows returns
every row that passes the filter).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from feedstock.config import SEARCH_MODES, Config, Embedding
from feedstock.lake import Lake
from feedstock.rag import index
from feedstock.rag.index import SearchFilterError, search, search_filter, where_clause

DIM = 8
ROWS = [  # (source, access_tags)
    ("handbook", ["internal"]),
    ("handbook", ["internal"]),
    ("handbook", ["internal"]),
    ("tickets", ["support"]),
    ("tickets", ["support"]),
    ("hr", ["internal", "hr"]),
    ("hr", ["internal", "hr"]),
    # Values no configuration would allow, to show that a literal matches exactly itself.
    ("O'Brien", ["a'b"]),
    ("back\\", ["x\\"]),
    ("x\\' OR true --", ["\\' OR true --"]),
]

HOSTILE = [
    "x' OR 1=1 --",
    "nosuch']) OR true OR array_has_any(access_tags, ['x",
    "O'Brien",
    "handbook' OR source = 'tickets",
    "handbook'--",
    "handbook' /* comment */ OR '1'='1",
    "handbook\\' OR true OR source = \\'",  # a backslash escapes nothing in DataFusion SQL
    "back\\",
    "x\\",
    "x\\' OR true --",  # a quote after a backslash: lancedb.expr's SQL renderer leaves it undoubled
    "\\' OR true --",
    "handbook\x00' OR true --",
    "handbook\u2019 OR true OR source = \u2019tickets",  # right single quotation mark
    "handbook\uff07 OR 1=1 --",  # fullwidth apostrophe
    "internal\u02bc]) OR true --",  # modifier letter apostrophe
    "handbook\n",  # a regex `$` would accept the trailing newline
    "internal\nOR true",
    "handbook; DROP TABLE chunks",
    "handbook OR true",
    "internal') OR ('1'='1",
    "'",
    "''",
    "",
    "%",
    "*",
    "HANDBOOK",
    "handbook\u200b",  # zero-width space
    "a" * 100_000,
    "handbook" + "'" * 10_000,
]


class StandInEmbedder:
    """The same unit vector for every query: with k above the row count, search returns every filtered row."""

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.tile(np.linspace(1.0, 2.0, DIM, dtype=np.float32), (len(texts), 1))


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Lake:
    lake = Lake(str(tmp_path_factory.mktemp("search") / "lake"))
    rng = np.random.default_rng(7)
    rows = [
        {
            "chunk_id": f"c{number}",
            "doc_id": f"{source}/doc{number}.md",
            "source": source,
            "uri": f"/docs/{number}.md",
            "title": f"Document {number}",
            "section": "Policy",
            "page": None,
            "text": f"chunk {number} about the travel policy of {source}",
            "n_tokens": 9,
            "access_tags": tags,
            "content_hash": f"h{number}",
            "doc_hash": f"d{number}",
            "vector": rng.random(DIM, dtype=np.float32).tolist(),
        }
        for number, (source, tags) in enumerate(ROWS)
    ]
    schema = index.CHUNKS_SCHEMA.append(pa.field("vector", pa.list_(pa.float32(), DIM)))
    table = index._connect(lake).create_table("chunks_test", pa.Table.from_pylist(rows, schema))
    table.create_fts_index("text", replace=True)
    lake.write_json(
        index.pointer_uri(lake),
        {"table": "chunks_test", "version": table.version, "embedding": dict(Embedding().__dict__)},
    )
    return lake


@pytest.fixture(autouse=True)
def stand_in_embedder(monkeypatch):
    monkeypatch.setattr(index, "query_embedder", lambda spec: StandInEmbedder())


def chunks(**wanted) -> set[str]:
    """The chunk ids that legitimately match: their source equals ``source``, they carry every tag of ``tags``."""
    return {
        f"c{number}"
        for number, (source, tags) in enumerate(ROWS)
        if wanted.get("source", source) == source and set(wanted.get("tags", [])) <= set(tags)
    }


def found(lake: Lake, mode: str = "vector", **filters) -> set[str]:
    config = Config(lake=lake.root, sources=())
    return {hit["chunk_id"] for hit in search(config, lake, "travel policy", k=50, mode=mode, **filters)}


@pytest.mark.parametrize("mode", ["vector", "fts", "hybrid"])
def test_plain_filters_select_their_rows(lake, mode):
    assert found(lake, mode) == chunks()
    assert found(lake, mode, source="tickets") == chunks(source="tickets") == {"c3", "c4"}
    assert found(lake, mode, tags=["hr"]) == chunks(tags=["hr"]) == {"c5", "c6"}
    assert found(lake, mode, source="handbook", tags=["internal"]) == {"c0", "c1", "c2"}
    assert found(lake, mode, tags=["internal", "hr"]) == {"c5", "c6"}
    assert found(lake, mode, source="hand_ook") == set()  # a valid name that is not there matches nothing
    assert found(lake, mode, tags=["team-a.b:c/d"]) == set()


@pytest.mark.parametrize("mode", ["vector", "fts", "hybrid"])
@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: repr(v)[:40])
@pytest.mark.parametrize("kind", ["source", "tags"])
def test_a_hostile_filter_matches_only_itself_or_is_refused(lake, kind, value, mode):
    filters = {"source": value} if kind == "source" else {"tags": ["internal", value]}
    try:
        hits = found(lake, mode, **filters)
    except SearchFilterError as refused:
        message = str(refused)
        assert "\n" not in message and len(message) < 300
        assert message.startswith(f"search filter {'source' if kind == 'source' else 'tag'}=")
        assert isinstance(refused, ValueError)  # the CLI prints a ValueError as one line
        return
    assert hits <= chunks(**filters)  # never rows of another source or tag


def test_the_rules_refuse_every_hostile_value_but_a_plain_name():
    refused = 0
    for value in HOSTILE:
        try:
            search_filter(source=value)
        except SearchFilterError:
            refused += 1
    assert refused == len(HOSTILE) - 1  # "a" * 100_000 is a lower_snake_case name (of no source)
    with pytest.raises(SearchFilterError, match="search filter tag='aaaa"):
        search_filter(tags=["a" * 65])
    assert search_filter(tags="internal") == search_filter(tags=["internal"])  # one bare tag is one tag


@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: repr(v)[:40])
def test_below_the_rule_a_value_is_a_literal_that_matches_only_itself(lake, value):
    """The second line of defence: even a value the rules would refuse cannot change the filter's meaning."""
    table = index._connect(lake).open_table("chunks_test")
    vector = StandInEmbedder().embed(["q"])[0]
    for filters in ({"source": value}, {"tags": [value]}):
        query = table.search(vector, vector_column_name="vector").where(
            where_clause(**filters), prefilter=True
        )
        hits = {row["chunk_id"] for row in query.limit(50).to_list()}
        assert hits == chunks(**filters)
    # The odd rows are found by their own values: the literal is exact, not merely harmless.
    assert chunks(source="O'Brien") == {"c7"} and chunks(tags=["x\\"]) == {"c8"}
    assert chunks(source="x\\' OR true --") == {"c9"}


def test_each_mode_says_what_its_score_is(lake):
    config = Config(lake=lake.root, sources=())
    vector, fts, hybrid = (
        search(config, lake, "travel policy of tickets", k=3, mode=m) for m in SEARCH_MODES
    )
    assert all(-1.0 <= h["score"] <= 1.0 and "explain" not in h for h in vector)  # cosine similarity
    assert all(h["score"] > 0 for h in fts)  # BM25
    # Hybrid: reciprocal rank fusion scaled so that 1.0 is first in both lists, with each part shown.
    assert all(0 < h["score"] <= 1.0 for h in hybrid)
    assert all(set(h["explain"]) == {"vector_similarity", "bm25", "fusion"} for h in hybrid)
    assert [h["score"] for h in hybrid] == sorted((h["score"] for h in hybrid), reverse=True)
    assert Config(lake=lake.root, sources=()).rag.search_mode == "vector"  # the measured best (make bench)
