"""Landing the configured sources in a run's DuckDB file: any number of sources, pinned versions, typed values."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from feedstock.config import ConfigError, parse_config
from feedstock.documents.ingest import DOCUMENTS_SCHEMA
from feedstock.lake import Commit, Lake
from feedstock.transform import fingerprint, inputs, land, render_template

NOW = pa.array([None], pa.timestamp("us", "UTC"))
BY = Commit({"dag_id": "test", "task_id": "test", "run_id": "test"})


def documents(source: str, *texts: str, version: int = 1) -> pa.Table:
    rows = [
        {
            "doc_id": f"{source}/{n}.md",
            "source": source,
            "uri": f"/x/{n}.md",
            "title": f"Doc {n}",
            "text": text,
            "mime_type": "text/markdown",
            "content_hash": str(hash(text)),
            "size_bytes": len(text),
            "is_deleted": False,
            "doc_version": version,
            "pages": [{"page": 1, "start": 0, "end": len(text)}],
        }
        for n, text in enumerate(texts)
    ]
    return pa.Table.from_pylist(rows, DOCUMENTS_SCHEMA)


@pytest.fixture
def lake(tmp_path) -> Lake:
    return Lake(str(tmp_path / "lake"))


def config(lake: Lake, *sources: dict):
    return parse_config({"lake": lake.root, "sources": list(sources)})


def landed(path: str, sql: str) -> list[tuple]:
    con = duckdb.connect(path, read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_no_source_lands_empty_tables(lake, tmp_path):
    cfg = config(lake)
    path = str(tmp_path / "run.duckdb")
    assert inputs(cfg, lake) == [] and land(cfg, lake, path, []) == {}
    assert landed(path, "select count(*) from bronze.documents") == [(0,)]
    assert landed(path, "select count(*) from bronze.warehouse_documents") == [(0,)]


def test_many_document_sources_land_at_their_pinned_versions_with_typed_tags_and_pages(lake, tmp_path):
    lake.append("bronze.documents.handbook", documents("handbook", "a", "b"), BY)
    lake.append("bronze.documents.itdocs", documents("itdocs", "c"), BY)
    cfg = config(
        lake,
        {"name": "handbook", "kind": "documents", "uri": str(tmp_path), "access_tags": ["internal", "hr"]},
        {"name": "itdocs", "kind": "documents", "uri": str(tmp_path)},
        {"name": "never_ingested", "kind": "documents", "uri": str(tmp_path)},
    )
    pins = inputs(cfg, lake)
    assert pins == ["bronze.documents.handbook@0", "bronze.documents.itdocs@0"]
    lake.append("bronze.documents.itdocs", documents("itdocs", "c2", version=2), BY)  # after the pin
    path = str(tmp_path / "run.duckdb")
    assert land(cfg, lake, path, pins) == {"handbook": 2, "itdocs": 1}
    rows = landed(path, "select doc_id, access_tags, pages[1].page from bronze.documents order by doc_id")
    assert rows == [
        ("handbook/0.md", ["internal", "hr"], 1),
        ("handbook/1.md", ["internal", "hr"], 1),
        ("itdocs/0.md", [], 1),
    ]


def test_warehouse_templates_render_per_source_with_where_and_deletes_as_tombstones(lake, tmp_path):
    # Two sources share the column name "v" with different types: each renders over its own columns.
    lake.append(
        "bronze.warehouse.tickets",
        pa.table(
            {
                "id": [1, 2, 3],
                "v": [10, 20, 30],
                "status": ["resolved", "open", "resolved"],
                "q": ["Why?", "How?", None],
                "_ingested_at": pa.array([None] * 3, pa.timestamp("us", "UTC")),
                "_op": ["insert", "insert", "delete"],
            }
        ),
        BY,
    )
    lake.append(
        "bronze.warehouse.notes",
        pa.table({"key": ["k"], "v": ["it's text"], "_ingested_at": NOW, "_op": ["insert"]}),
        BY,
    )
    cfg = config(
        lake,
        {
            "name": "tickets",
            "kind": "warehouse",
            "conn_id": "wh",
            "table": "t",
            "key": "id",
            "access_tags": ["support"],
            "document": {
                "title": "Ticket {id}",
                "text": "Q: {q} ({v})",
                "where": "status = 'resolved' and v > 5",
            },
        },
        {
            "name": "notes",
            "kind": "warehouse",
            "conn_id": "wh",
            "table": "n",
            "key": "key",
            "document": {"text": "{v}"},
        },
        {
            "name": "raw",
            "kind": "warehouse",
            "conn_id": "wh",
            "table": "r",
            "key": "id",
        },  # no template: not a feed
    )
    path = str(tmp_path / "run.duckdb")
    assert land(cfg, lake, path, inputs(cfg, lake)) == {"tickets": 3, "notes": 1}
    rows = landed(
        path,
        "select doc_id, title, text, is_deleted, access_tags from bronze.warehouse_documents order by doc_id",
    )
    assert rows == [
        ("notes/k", None, "it's text", False, []),
        ("tickets/1", "Ticket 1", "Q: Why? (10)", False, ["support"]),
        ("tickets/2", "Ticket 2", "Q: How? (20)", True, ["support"]),  # outside `where`: a tombstone
        ("tickets/3", "Ticket 3", "Q:  (30)", True, ["support"]),  # deleted at the source
    ]


def test_a_template_naming_a_missing_column_is_one_line_naming_the_source(lake, tmp_path):
    lake.append("bronze.warehouse.tickets", pa.table({"id": [1], "_ingested_at": NOW, "_op": ["insert"]}), BY)
    cfg = config(
        lake,
        {
            "name": "tickets",
            "kind": "warehouse",
            "conn_id": "wh",
            "table": "t",
            "key": "id",
            "document": {"text": "{nope}"},
        },
    )
    with pytest.raises(ConfigError, match=r"^source 'tickets': field 'document': .*nope") as info:
        land(cfg, lake, str(tmp_path / "run.duckdb"), inputs(cfg, lake))
    assert "\n" not in str(info.value)


def test_render_template_quotes_literals_and_identifiers():
    assert render_template("it's {a}") == "'it''s ' || coalesce(cast(\"a\" as varchar), '')"
    assert render_template("") == "''"


def test_fingerprint_is_stable_and_sensitive():
    assert fingerprint(["a@1"], {"x": 1}) == fingerprint(["a@1"], {"x": 1})
    assert fingerprint(["a@1"], {"x": 1}) != fingerprint(["a@2"], {"x": 1})
