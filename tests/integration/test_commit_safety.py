"""Commits under retries, kills and overlapping runs, against a real lake, SQLite, PostgreSQL and LanceDB.

Each test drives the library's task functions the way the DAGs call them (plan, parse, validate, commit;
extract, validate, commit; plan, embed, build, release), with a kill or a second run put where it hurts.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest
import sqlalchemy as sa

from feedstock import warehouse
from feedstock.config import Config, DocumentSource, WarehouseSource
from feedstock.documents import ingest
from feedstock.errors import CommitConflict
from feedstock.lake import Lake
from feedstock.rag import index
from tests.conftest import SAMPLE

DOCS, HELD = "bronze.documents.handbook", "quarantine.documents.handbook"


class Killed(BaseException):
    """The worker died here (not an exception the code under test could handle)."""


def when(day: int) -> datetime:
    return datetime(2026, 11, day, tzinfo=UTC)


def made_by(dag_id: str, run_key: str) -> dict[str, str]:
    return {"dag_id": dag_id, "task_id": "commit", "run_id": run_key}


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert message and "\n" not in message
    return message


@pytest.fixture
def lake(tmp_path) -> Lake:
    return Lake(str(tmp_path / "lake"))


# ---- documents ----------------------------------------------------------------------------------------


@pytest.fixture
def handbook(tmp_path) -> DocumentSource:
    folder = tmp_path / "handbook"
    shutil.copytree(SAMPLE / "handbook", folder)
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7 truncated")  # one quarantine row per run that reads it
    return DocumentSource(name="handbook", uri=str(folder), text_field="body", batch_size=8)


def stage_documents(source: DocumentSource, lake: Lake, run_key: str, day: int) -> None:
    """plan, parse and validate: everything before the commit."""
    batches, _ = ingest.plan(source, lake, run_key)
    for batch in batches:
        ingest.parse_batch(source, lake, batch, when(day))
    ingest.validate(source, lake, run_key, 0.5, when(day))


def commit_documents(source: DocumentSource, lake: Lake, run_key: str, day: int) -> dict:
    return ingest.commit(source, lake, run_key, made_by("ingest_documents", run_key), when(day))


def test_a_document_commit_killed_after_the_bronze_append_is_retried_without_duplicates(
    lake, handbook, monkeypatch
):
    stage_documents(handbook, lake, "run1", 10)
    append = Lake.append

    def killed_before_quarantine(self, name, data, commit):
        if name == HELD:
            raise Killed
        return append(self, name, data, commit)

    monkeypatch.setattr(Lake, "append", killed_before_quarantine)
    with pytest.raises(Killed):
        commit_documents(handbook, lake, "run1", 10)
    assert lake.read(DOCS).num_rows == 30 and lake.table(HELD) is None
    monkeypatch.setattr(Lake, "append", append)

    retried = commit_documents(handbook, lake, "run1", 10)
    assert lake.read(DOCS).num_rows == 30  # not 60: the bronze append is not made twice
    assert lake.version(DOCS) == 0 and lake.read(HELD).num_rows == 1
    assert retried["ingested"] == 30 and retried["quarantined"] == 1
    assert retried["version"] == 0 and retried["quarantine_version"] == 0

    # A retry of the finished commit (staging already cleared) is a no-op that returns the same stats.
    assert commit_documents(handbook, lake, "run1", 10) == retried
    assert (lake.version(DOCS), lake.version(HELD)) == (0, 0)

    # A later run with nothing new says that no commit of its own exists.
    stage_documents(handbook, lake, "run2", 11)
    later = commit_documents(handbook, lake, "run2", 11)
    assert later["version"] is None and later["unchanged"] == 30 and lake.version(DOCS) == 0


def test_two_runs_planned_from_the_same_version_do_not_both_append(lake, handbook):
    stage_documents(handbook, lake, "scheduled__2026-11-11", 11)
    # An overlapping run, planned before the first one committed:
    stage_documents(handbook, lake, "backfill__2026-11-12", 12)
    first = commit_documents(handbook, lake, "scheduled__2026-11-11", 11)
    with pytest.raises(CommitConflict) as refused:
        commit_documents(handbook, lake, "backfill__2026-11-12", 12)
    assert DOCS in one_line(refused)
    assert first["ingested"] == 30 and first["version"] == 0

    table = lake.read(DOCS)
    versions = [(r["doc_id"], r["doc_version"]) for r in table.to_pylist()]
    assert len(versions) == len(set(versions)) == 30  # every version once
    assert lake.read(HELD).num_rows == 1

    # The refused run, planned again, finds nothing to publish.
    stage_documents(handbook, lake, "backfill__2026-11-12", 12)
    again = commit_documents(handbook, lake, "backfill__2026-11-12", 12)
    assert again["ingested"] == 0 and again["version"] is None and lake.read(DOCS).num_rows == 30


def test_a_failed_runs_staging_is_removed_by_a_later_commit(lake, handbook):
    ingest.plan(handbook, lake, "dead_run")  # then the run failed: its manifests stay behind
    dead = lake.staging("ingest_documents", "dead_run")
    a_week_ago = time.time() - 8 * 86400
    for folder, subfolders, files in os.walk(dead):
        for name in [*subfolders, *files]:
            os.utime(os.path.join(folder, name), (a_week_ago, a_week_ago))
    os.utime(dead, (a_week_ago, a_week_ago))
    ingest.plan(handbook, lake, "live_run")  # an overlapping run still in flight: kept
    stage_documents(handbook, lake, "run", 10)

    commit_documents(handbook, lake, "run", 10)
    assert not os.path.exists(dead)
    assert os.path.exists(lake.staging("ingest_documents", "live_run", "handbook", "plan.json"))
    assert not os.path.exists(lake.staging("ingest_documents", "run", "handbook"))  # only its receipt stays
    assert lake.read_receipt(lake.staging("ingest_documents", "run", "handbook"))["ingested"] == 30


# ---- warehouse ----------------------------------------------------------------------------------------


def sqlite_table(tmp_path, rows: list[tuple], name: str = "wh") -> str:
    url = f"sqlite:///{tmp_path / (name + '.sqlite')}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("create table items (id integer, body text, updated_at text)")
        conn.exec_driver_sql("insert into items values (?, ?, ?)", rows)
    engine.dispose()
    return url


def run_warehouse(source: WarehouseSource, url: str, lake: Lake, run_key: str, day: int) -> dict:
    stage_warehouse(source, url, lake, run_key, day)
    return warehouse.commit(source, lake, run_key, made_by("ingest_warehouse", run_key))


def stage_warehouse(source: WarehouseSource, url: str, lake: Lake, run_key: str, day: int) -> None:
    warehouse.extract(source, url, lake, run_key, when(day))
    warehouse.validate(source, lake, run_key, 0.5, when(day))


def test_a_retried_warehouse_commit_returns_its_stats_without_writing_again(lake, tmp_path):
    url = sqlite_table(tmp_path, [(i, f"body {i}", "2026-11-01 10:00:00") for i in range(20)])
    source = WarehouseSource(name="items", conn_id="wh", table="items", key="id", watermark="updated_at")
    first = run_warehouse(source, url, lake, "run1", 10)
    again = warehouse.commit(source, lake, "run1", made_by("ingest_warehouse", "run1"))
    assert again == first and lake.version("bronze.warehouse.items") == 0
    assert first["rows_written"] == 20 and first["version"] == 0


def test_a_warehouse_run_whose_extract_went_stale_fails_in_one_line(lake, tmp_path):
    url = sqlite_table(tmp_path, [(i, f"body {i}", "2026-11-01 10:00:00") for i in range(20)])
    source = WarehouseSource(name="items", conn_id="wh", table="items", key="id")  # a full read
    run_warehouse(source, url, lake, "run0", 9)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("update items set body = 'older' where id = 1")
    stage_warehouse(source, url, lake, "backfill", 10)  # reads the source as it is now...
    with engine.begin() as conn:
        conn.exec_driver_sql("update items set body = 'newer' where id = 1")
        conn.exec_driver_sql("insert into items values (99, 'new row', '2026-11-11 10:00:00')")
    engine.dispose()
    newer = run_warehouse(source, url, lake, "scheduled", 11)  # ...then a later run commits first
    assert newer["updated"] == 1 and newer["inserted"] == 1
    with pytest.raises(CommitConflict) as refused:
        warehouse.commit(source, lake, "backfill", made_by("ingest_warehouse", "backfill"))
    assert "bronze.warehouse.items" in one_line(refused)
    rows = {r["id"]: r for r in lake.read("bronze.warehouse.items").to_pylist()}
    assert rows[1]["body"] == "newer" and rows[99]["_op"] == "insert"  # not rolled back by the stale run


def test_two_warehouse_commits_racing_one_wins_and_one_fails_in_one_line(lake, tmp_path):
    url = sqlite_table(tmp_path, [(i, f"body {i}", "2026-11-01 10:00:00") for i in range(200)])
    source = WarehouseSource(name="items", conn_id="wh", table="items", key="id")
    run_warehouse(source, url, lake, "run0", 9)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("update items set body = body || ' edited'")
    engine.dispose()
    for run_key in ("a", "b"):
        stage_warehouse(source, url, lake, run_key, 10)
    start, outcomes = threading.Barrier(2), {}

    def commit(run_key: str) -> None:
        start.wait()
        try:
            outcomes[run_key] = warehouse.commit(source, lake, run_key, made_by("ingest_warehouse", run_key))
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test checks
            outcomes[run_key] = exc

    threads = [threading.Thread(target=commit, args=(k,)) for k in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    failed = [o for o in outcomes.values() if isinstance(o, Exception)]
    won = [o for o in outcomes.values() if isinstance(o, dict)]
    assert len(won) == 1 and won[0]["updated"] == 200, outcomes
    assert len(failed) == 1 and isinstance(failed[0], CommitConflict), outcomes
    assert "\n" not in str(failed[0])
    assert lake.version("bronze.warehouse.items") == 1


@pytest.fixture
def postgres(postgres_db) -> sa.Engine:
    engine = sa.create_engine(postgres_db)
    yield engine
    engine.dispose()


def test_a_column_type_change_quarantines_rows_but_does_not_delete_them(lake, postgres):
    with postgres.begin() as conn:
        conn.exec_driver_sql("create table things (id integer primary key, v integer)")
        conn.exec_driver_sql("insert into things select i, i * 10 from generate_series(1, 1000) as i")
    source = WarehouseSource(name="things", conn_id="pg", table="things", key="id", batch_size=300)
    url = postgres.url.render_as_string(hide_password=False)
    assert run_warehouse(source, url, lake, "run1", 10)["rows_written"] == 1000

    with postgres.begin() as conn:  # a migration: v becomes text, and 250 values no longer fit the lake's int
        conn.exec_driver_sql("alter table things alter column v type text using v::text")
        conn.exec_driver_sql("update things set v = 'n/a' where id <= 250")
    stats = run_warehouse(source, url, lake, "run2", 11)
    assert stats["rows_read"] == 1000 and stats["rows_quarantined"] == 250
    assert stats["deleted"] == 0 and stats["rows_written"] == 0
    bronze = lake.read("bronze.warehouse.things").to_pylist()
    assert len(bronze) == 1000 and {r["_op"] for r in bronze} == {"insert"}  # still live, as in PostgreSQL
    held = lake.read("quarantine.warehouse.things").to_pylist()
    assert len(held) == 250 and {r["reason"] for r in held} == {"type_mismatch"}

    with postgres.begin() as conn:  # a row really deleted at the source still becomes a tombstone
        conn.exec_driver_sql("delete from things where id in (1, 999)")
    stats = run_warehouse(source, url, lake, "run3", 12)
    assert stats["deleted"] == 2 and stats["rows_quarantined"] == 249
    ops = {r["id"]: r["_op"] for r in lake.read("bronze.warehouse.things").to_pylist()}
    assert ops[1] == ops[999] == "delete" and ops[2] == "insert"


def test_rows_with_a_null_watermark_are_ingested_and_counted(lake, postgres):
    with postgres.begin() as conn:
        conn.exec_driver_sql("create table events (id integer primary key, body text, updated_at timestamp)")
        conn.exec_driver_sql(
            "insert into events select i, 'body ' || i, "
            "case when mod(i, 5) = 0 then null else timestamp '2026-11-01' + i * interval '1 minute' end "
            "from generate_series(1, 1000) as i"
        )
    source = WarehouseSource(
        name="events", conn_id="pg", table="events", key="id", watermark="updated_at", batch_size=300
    )
    url = postgres.url.render_as_string(hide_password=False)
    first = run_warehouse(source, url, lake, "run1", 10)
    assert first["rows_read"] == first["rows_written"] == 1000
    assert first["rows_null_watermark"] == 200 and first["rows_quarantined"] == 0
    assert lake.read("bronze.warehouse.events").num_rows == 1000

    with postgres.begin() as conn:
        conn.exec_driver_sql("update events set body = 'edited' where id in (5, 10)")  # still NULL
        conn.exec_driver_sql(
            "update events set body = 'edited', updated_at = timestamp '2026-11-11' where id = 7"
        )
    second = run_warehouse(source, url, lake, "run2", 12)
    assert second["rows_read"] == 201 and second["rows_null_watermark"] == 200
    assert second["rows_written"] == second["updated"] == 3  # the unchanged NULL rows are not rewritten
    bodies = {r["id"]: r["body"] for r in lake.read("bronze.warehouse.events").to_pylist()}
    assert bodies[5] == bodies[10] == bodies[7] == "edited" and len(bodies) == 1000


# ---- rag release --------------------------------------------------------------------------------------


class FakeEmbedder:
    """Deterministic 8-dimensional vectors from a text hash: the release logic does not need a real model."""

    def embed(self, texts: list[str]) -> np.ndarray:
        rows = [np.frombuffer(hashlib.sha256(t.encode()).digest()[:32], np.uint8)[:8] for t in texts]
        return (np.array(rows, np.float32) + 1.0) / 256.0 if rows else np.zeros((0, 8), np.float32)


def documents(texts: dict[str, str]) -> pa.Table:
    rows = [
        {
            "doc_id": f"kb/{name}",
            "source": "kb",
            "uri": f"/kb/{name}",
            "title": name,
            "text": text,
            "content_hash": hashlib.sha256(text.encode()).hexdigest(),
            "is_deleted": False,
            "pages": None,
            "access_tags": [],
        }
        for name, text in texts.items()
    ]
    return pa.Table.from_pylist(rows)


def build(config: Config, lake: Lake, docs: pa.Table, run_key: str) -> dict:
    planned = index.plan(config, lake, docs, run_key)
    for batch in planned.batches:
        index.embed_batch(config, lake, batch, model=FakeEmbedder())
    index.validate(config, lake, run_key)
    return index.build(config, lake, run_key)


def release(config: Config, lake: Lake, run_key: str, built: dict) -> dict:
    return index.release(config, lake, run_key, built, made_by("rag_feed", run_key), [], {})


def served(lake: Lake) -> set[str]:
    """The chunk texts search serves: the LanceDB version the pointer names."""
    pointer = index.read_pointer(lake)
    table = index._connect(lake).open_table(pointer["table"])
    table.checkout(pointer["version"])
    return set(table.to_arrow().column("text").to_pylist())


def recorded(lake: Lake) -> set[str]:
    return set(lake.read(index.INDEX_TABLE).column("text").to_pylist())


@pytest.fixture
def rag(lake) -> tuple[Config, dict[str, str]]:
    config = Config(lake=lake.root, sources=())
    texts = {f"doc{i}.md": f"# Doc {i}\n\nThe original passage number {i} about topic {i}." for i in range(5)}
    built = build(config, lake, documents(texts), "r1")
    release(config, lake, "r1", built)
    assert served(lake) == recorded(lake) and len(served(lake)) == 5
    texts["doc2.md"] = "# Doc 2\n\nThe edited passage: refunds now take three days."
    return config, texts


def kill_pointer_switch(monkeypatch) -> None:
    write_json = Lake.write_json

    def killed(self, uri, value):
        if uri.endswith("CURRENT.json"):
            raise Killed
        return write_json(self, uri, value)

    monkeypatch.setattr(Lake, "write_json", killed)


def test_a_release_killed_before_the_pointer_switch_is_finished_by_its_retry(lake, rag, monkeypatch):
    config, texts = rag
    built = build(config, lake, documents(texts), "r2")
    kill_pointer_switch(monkeypatch)
    with pytest.raises(Killed):
        release(config, lake, "r2", built)
    monkeypatch.undo()
    version = lake.version(index.INDEX_TABLE)

    stats = release(config, lake, "r2", built)
    assert stats["embedded"] == 1 and stats["removed"] == 1
    assert lake.version(index.INDEX_TABLE) == version  # the retry did not record it again
    assert index.read_pointer(lake)["index_version"] == version
    assert "The edited passage: refunds now take three days." in served(lake)
    assert served(lake) == recorded(lake)
    assert release(config, lake, "r2", built) == stats  # and a retry after the switch is a no-op


def test_a_release_killed_before_the_pointer_switch_is_repaired_by_the_next_runs(lake, rag, monkeypatch):
    config, texts = rag
    before = served(lake)
    built = build(config, lake, documents(texts), "r2")
    kill_pointer_switch(monkeypatch)
    with pytest.raises(Killed):
        release(config, lake, "r2", built)  # the run dies: no retry
    monkeypatch.undo()
    assert recorded(lake) != served(lake) == before  # rag.index is ahead of what search serves

    # The next run planned from the unreleased rag.index: it must not release, and it puts rag.index back.
    built = build(config, lake, documents(texts), "r3")
    assert built["embedded"] == 0
    with pytest.raises(CommitConflict) as refused:
        release(config, lake, "r3", built)
    assert "rag.index" in one_line(refused)
    assert recorded(lake) == served(lake) == before
    version = lake.version(index.INDEX_TABLE)
    with pytest.raises(CommitConflict):
        release(config, lake, "r3", built)  # its retry fails the same way and changes nothing
    assert lake.version(index.INDEX_TABLE) == version

    # The run after plans from the restored index: the edited document is embedded and served.
    built = build(config, lake, documents(texts), "r4")
    assert built["embedded"] == 1 and built["removed"] == 1
    release(config, lake, "r4", built)
    assert "The edited passage: refunds now take three days." in served(lake)
    assert served(lake) == recorded(lake) and len(served(lake)) == 5
