"""The RAG plan on real chunks, vectors and tables: boilerplate dropped before chunking, and only what changed is
re-chunked, re-embedded or updated when a document's text, its source's tags or the feed's settings change."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pyarrow as pa
import pytest

from feedstock.config import Boilerplate, Config
from feedstock.lake import Lake
from feedstock.rag import index
from feedstock.rag.embedders import embedder

FOOTER = "Copyright 2026 Example Corp. All rights reserved. Privacy policy."
EDIT = "Edit this page on our documentation repository"
TOPICS = [
    "refund windows",
    "password resets",
    "shipping times",
    "invoice disputes",
    "account closure",
    "API keys",
]


def page(i: int, topic: str, footer: bool = True) -> str:
    body = (
        f"# {topic.title()}\n\n## Overview\n\nThis page explains {topic} for customers, case {i}. "
        f"Our agents follow the {topic} procedure step by step.\n\n## See also\n\nThe {topic} checklist."
    )
    return body + (f"\n\n{EDIT}\n\n{FOOTER}" if footer else "")


def documents(texts: dict[str, str], tags: list[str] | None = None) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "doc_id": f"site/{name}",
                "source": "site",
                "uri": f"/site/{name}",
                "title": name,
                "text": text,
                "content_hash": hashlib.sha256(text.encode()).hexdigest(),
                "is_deleted": False,
                "pages": None,
                "access_tags": tags or [],
            }
            for name, text in texts.items()
        ]
    )


@pytest.fixture(scope="module")
def model():
    return embedder(Config(lake="unused", sources=()).rag.embedding)


def refresh(config: Config, lake: Lake, docs: pa.Table, run_key: str, model) -> dict:
    planned = index.plan(config, lake, docs, run_key)
    for batch in planned.batches:
        index.embed_batch(config, lake, batch, model=model)
    index.validate(config, lake, run_key)
    built = index.build(config, lake, run_key)
    return index.release(config, lake, run_key, built, {"dag_id": "test", "run_id": run_key}, [], {})


def served(lake: Lake) -> list[dict]:
    pointer = index.read_pointer(lake)
    table = index._connect(lake).open_table(pointer["table"])
    table.checkout(pointer["version"])
    return (
        table.to_arrow()
        .select(["chunk_id", "doc_id", "section", "text", "access_tags", "doc_hash"])
        .to_pylist()
    )


def test_boilerplate_tags_and_settings_reach_only_what_they_change(tmp_path, model):
    lake = Lake(str(tmp_path / "lake"))
    config = Config(lake=lake.root, sources=())
    texts = {f"{t.replace(' ', '_')}.md": page(i, t) for i, t in enumerate(TOPICS)}
    texts["about.md"] = page(9, "company history", footer=False)

    first = refresh(config, lake, documents(texts), "r1", model)
    assert index.search(config, lake, "how long is the refund window", k=3, tags=["support"]) == []
    chunks = served(lake)
    assert first["boilerplate_found"] == 2 and first["boilerplate_lines"] == 2 * len(TOPICS)
    assert not any(FOOTER in c["text"] or EDIT in c["text"] for c in chunks)
    # A heading in every page is the pages' own structure, not boilerplate.
    assert sum(c["section"].endswith("See also") for c in chunks) == len(texts)
    assert first["embedded"] == first["chunks_total"] == len(chunks)

    # Nothing changed: nothing chunked, embedded or recorded.
    version = lake.version(index.INDEX_TABLE)
    again = index.plan(config, lake, documents(texts), "r2")
    assert again.stats["documents_changed"] == again.stats["embedded"] == again.stats["updated"] == 0
    assert not again.batches
    index.release(config, lake, "r2", index.build(config, lake, "r2"), {"dag_id": "test"}, [], {})
    assert lake.version(index.INDEX_TABLE) == version

    # The source gains an access tag: every chunk takes it (in LanceDB and in rag.index), nothing is re-embedded.
    tagged = refresh(config, lake, documents(texts, ["support"]), "r3", model)
    assert tagged["embedded"] == 0 and tagged["updated"] == tagged["chunks_total"] == len(chunks)
    assert tagged["documents_changed"] == len(texts) and tagged["documents_reembedded"] == 0
    assert all(c["access_tags"] == ["support"] for c in served(lake))
    assert all(r["access_tags"] == ["support"] for r in lake.read(index.INDEX_TABLE).to_pylist())
    assert {c["chunk_id"] for c in served(lake)} == {c["chunk_id"] for c in chunks}
    before = {c["chunk_id"]: c["doc_hash"] for c in chunks}
    assert all(before[c["chunk_id"]] != c["doc_hash"] for c in served(lake))  # cache entries on them go stale
    hits = index.search(config, lake, "how long is the refund window", k=3, tags=["support"])
    assert hits and hits[0]["doc_id"] == "site/refund_windows.md"

    # Boilerplate removal switched off: the pages with the footer get it back; the page without is untouched.
    off = replace(config, rag=replace(config.rag, boilerplate=Boilerplate(min_docs=0)))
    plain = refresh(off, lake, documents(texts, ["support"]), "r4", model)
    assert plain["documents_changed"] == plain["documents_reembedded"] == len(TOPICS)
    assert plain["embedded"] == plain["removed"] and plain["boilerplate_lines"] == 0
    assert sum(FOOTER in c["text"] for c in served(lake)) == len(TOPICS)
    assert served(lake) and {c["doc_id"] for c in served(lake)} == {f"site/{n}" for n in texts}
    rows = lake.read(index.INDEX_TABLE)
    assert rows.num_rows == len(served(lake)) and set(rows["chunk_id"].to_pylist()) == {
        c["chunk_id"] for c in served(lake)
    }


ARTICLE = """<!DOCTYPE html><html><head><title>{title}</title></head><body>
<header><a href="/">Example Docs</a> <a href="/search">Search the documentation site</a></header>
<nav><ul><li><a href="a.html">Previous topic: the one before this page</a></li>
<li><a href="c.html">Next topic: the one after this page</a></li></ul></nav>
<main><h1>{title}</h1><p>{body}</p><p>Details about {title} follow in this paragraph.</p></main>
<aside class="sidebar"><h3>Table of Contents</h3><ul><li>Chapter one of the manual</li></ul></aside>
</body></html>"""


def ingest_folder(source, lake: Lake, run_key: str) -> dict:
    from datetime import UTC, datetime

    from feedstock.documents import ingest

    now = datetime(2026, 11, 26, tzinfo=UTC)
    batches, _ = ingest.plan(source, lake, run_key)
    for batch in batches:
        ingest.parse_batch(source, lake, batch, now)
    ingest.validate(source, lake, run_key, 0.5, now)
    return ingest.commit(source, lake, run_key, {"dag_id": "ingest_documents", "run_id": run_key}, now)


def mart(lake: Lake, source: str) -> pa.Table:
    import duckdb

    con = duckdb.connect()
    con.register("docs", lake.read(f"bronze.documents.{source}"))
    return con.sql(
        """select doc_id, source, uri, coalesce(title, doc_id) as title, text, content_hash, is_deleted, pages,
                  []::varchar[] as access_tags
           from docs qualify row_number() over (partition by doc_id order by doc_version desc) = 1"""
    ).to_arrow_table()


def test_an_extractor_change_reparses_the_source_and_reembeds_only_the_pages_whose_text_changed(
    tmp_path, model
):
    from feedstock.config import DocumentSource

    folder = tmp_path / "docs"
    folder.mkdir()
    for name, body in [("alpha", "Alpha configures the cache."), ("beta", "Beta rotates the logs nightly.")]:
        (folder / f"{name}.html").write_text(ARTICLE.format(title=name.title(), body=body))
    (folder / "notes.md").write_text("# Notes\n\nPlain notes about the release process and its checklist.")
    lake = Lake(str(tmp_path / "lake"))
    config = Config(lake=lake.root, sources=())

    whole = DocumentSource(name="docs", uri=str(folder), html_extraction="page")
    assert ingest_folder(whole, lake, "i1")["ingested"] == 3
    refresh(config, lake, mart(lake, "docs"), "r1", model)
    assert any("Chapter one of the manual" in c["text"] for c in served(lake))

    content = replace(whole, html_extraction="content")
    second = ingest_folder(content, lake, "i2")
    assert second["reparsed"] == 3 and second["ingested"] == 2 and second["unchanged"] == 1
    stats = refresh(config, lake, mart(lake, "docs"), "r2", model)
    # The two pages are chunked again; their article chunks are the same text (kept, not re-embedded) and the
    # chrome's chunks leave. The Markdown page is not touched.
    assert stats["documents_changed"] == 2 and stats["embedded"] == 0 and stats["removed"] >= 2
    assert not any("Chapter one" in c["text"] or "Table of Contents" in c["section"] for c in served(lake))

    third = ingest_folder(content, lake, "i3")  # settings recorded: nothing parsed again
    assert third["reparsed"] == 0 and third["unchanged"] == 3 and third["version"] is None
