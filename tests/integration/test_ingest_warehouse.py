"""ingest_warehouse end to end with dag.test() on PostgreSQL, DuckDB and SQLite: watermarks, upserts, drift."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from feedstock.lake import Lake
from tests.conftest import SAMPLE, run_dag, task_states

pytestmark = pytest.mark.slow
SEED = (SAMPLE / "warehouse" / "seed.sql").read_text()


def seed(url: str) -> sa.Engine:
    engine = sa.create_engine(url)
    raw = engine.raw_connection()  # the driver's own cursor: the seed is plain SQL, '%' and all
    cursor = raw.cursor()
    for statement in SEED.split(";"):
        if statement.strip():
            cursor.execute(statement)
    raw.commit()
    raw.close()
    return engine


@pytest.fixture(params=["postgres", "duckdb", "sqlite"])
def warehouse(request, tmp_path, monkeypatch):
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_db")
    else:
        url = f"{request.param}:///{tmp_path / ('wh.' + request.param)}"
    engine = seed(url)
    monkeypatch.setenv(
        "AIRFLOW_CONN_WH", f'{{"conn_type": "generic", "extra": {{"sqlalchemy_url": "{url}"}}}}'
    )
    yield engine
    engine.dispose()


def configure(project, **tickets):
    project.configure(
        [
            {
                "name": "tickets",
                "kind": "warehouse",
                "conn_id": "wh",
                "table": "tickets",
                "key": "ticket_id",
                "watermark": "updated_at",
                "batch_size": 10,
                **tickets,
            },
            {
                "name": "products",
                "kind": "warehouse",
                "conn_id": "wh",
                "key": "product_id",
                "query": "select product_id, sku, name, price_usd, updated_at from products",
            },
        ]
    )


def test_incremental_upserts_and_drift(project, warehouse):
    configure(project)
    lake = Lake(project.lake)
    tickets, products = "bronze.warehouse.tickets", "bronze.warehouse.products"
    with warehouse.connect() as conn:
        total = conn.exec_driver_sql("select count(*) from tickets").scalar()
        before_oct = conn.exec_driver_sql(
            "select count(*) from tickets where updated_at <= '2026-10-01'"
        ).scalar()

    # The interval ending 2026-10-01 reads only what was updated by then.
    run = run_dag("ingest_warehouse", day=1, month=10)
    assert run.state == "success", task_states(run)
    first = lake.last_commit(tickets)["stats"]
    assert first["rows_read"] == first["rows_written"] == before_oct > 0
    assert str(first["watermark"]).startswith("2026-09")

    # The next interval reads the rest; rerunning it reads nothing and commits nothing.
    assert run_dag("ingest_warehouse", day=21).state == "success"
    assert lake.last_commit(tickets)["stats"]["rows_read"] == total - before_oct
    assert lake.read(tickets).num_rows == total
    assert lake.read(products).num_rows == 16
    versions = (lake.version(tickets), lake.version(products))
    assert run_dag("ingest_warehouse", day=21).state == "success"
    assert (lake.version(tickets), lake.version(products)) == versions

    # New rows after the watermark, an update, a new column, a value that no longer fits, a deleted product.
    with warehouse.begin() as conn:
        conn.exec_driver_sql("alter table tickets add column priority varchar(16)")
        conn.exec_driver_sql(
            "update tickets set answer = 'Updated answer', priority = 'high', updated_at = '2026-11-22 09:00:00' "
            "where ticket_id = 1001"
        )
        conn.exec_driver_sql(
            "insert into tickets (ticket_id, product_id, category, question, answer, rating, status, created_at,"
            " updated_at) values (9001, 1, 'billing', 'New question?', 'New answer.', 5, 'resolved',"
            " '2026-11-22 10:00:00', '2026-11-22 10:00:00')"
        )
        conn.exec_driver_sql("delete from products where product_id = 16")
    run = run_dag("ingest_warehouse", day=23)
    assert run.state == "success", task_states(run)
    stats = lake.last_commit(tickets)["stats"]
    assert stats["rows_read"] == 2 and stats["inserted"] == 1 and stats["updated"] == 1
    assert stats["columns_added"] == ["priority"]
    rows = {r["ticket_id"]: r for r in lake.read(tickets).to_pylist()}
    assert (
        rows[1001]["answer"] == "Updated answer"
        and rows[1001]["priority"] == "high"
        and rows[1001]["_op"] == "update"
    )
    assert rows[9001]["_op"] == "insert" and len(rows) == total + 1
    gone = {r["product_id"]: r["_op"] for r in lake.read(products).to_pylist()}
    assert gone[16] == "delete" and lake.last_commit(products)["stats"]["deleted"] == 1


def test_type_change_quarantines_rows_and_dropped_column_is_reported(project, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'drift.sqlite'}"
    engine = seed(url)
    monkeypatch.setenv(
        "AIRFLOW_CONN_WH", f'{{"conn_type": "generic", "extra": {{"sqlalchemy_url": "{url}"}}}}'
    )
    configure(project)
    lake = Lake(project.lake)
    assert run_dag("ingest_warehouse", day=21).state == "success"
    with engine.begin() as conn:  # SQLite lets a column change type under our feet, as a migration might
        conn.exec_driver_sql(
            "update tickets set rating = 'five', updated_at = '2026-11-22 01:00:00' where ticket_id = 1002"
        )
        conn.exec_driver_sql(
            "update tickets set rating = '4', updated_at = '2026-11-22 02:00:00' where ticket_id = 1003"
        )
        conn.exec_driver_sql("alter table tickets drop column status")
    run = run_dag("ingest_warehouse", day=23)
    assert run.state == "success", task_states(run)
    stats = lake.last_commit("bronze.warehouse.tickets")["stats"]
    assert stats["rows_read"] == 2 and stats["rows_written"] == 1 and stats["rows_quarantined"] == 1
    assert stats["columns_dropped"] == ["status"]
    bad = lake.read("quarantine.warehouse.tickets").to_pylist()
    assert [(r["key"], r["reason"]) for r in bad] == [("1002", "type_mismatch")] and "rating" in bad[0][
        "detail"
    ]
    assert {r["ticket_id"]: r["rating"] for r in lake.read("bronze.warehouse.tickets").to_pylist()}[1003] == 4
    engine.dispose()


def test_contract_failures_past_the_ratio_fail_the_run(project, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'nulls.sqlite'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("create table tickets (ticket_id integer, question text, updated_at text)")
        conn.exec_driver_sql(
            "insert into tickets values (1, 'a', '2026-11-01'), (null, 'b', '2026-11-01'), (null, 'c', '2026-11-01')"
        )
    monkeypatch.setenv(
        "AIRFLOW_CONN_WH", f'{{"conn_type": "generic", "extra": {{"sqlalchemy_url": "{url}"}}}}'
    )
    project.configure(
        [{"name": "tickets", "kind": "warehouse", "conn_id": "wh", "table": "tickets", "key": "ticket_id"}],
        validation={"max_failure_ratio": 0.5},
    )
    run = run_dag("ingest_warehouse", day=21)
    assert run.state == "failed"
    assert task_states(run)["source.validate[0]"] == "failed"
    assert Lake(project.lake).table("bronze.warehouse.tickets") is None  # nothing half-published

    project.configure(
        [{"name": "tickets", "kind": "warehouse", "conn_id": "wh", "table": "tickets", "key": "ticket_id"}],
        validation={"max_failure_ratio": 0.9},
    )
    assert run_dag("ingest_warehouse", day=21).state == "success"
    lake = Lake(project.lake)
    assert lake.read("bronze.warehouse.tickets").column("ticket_id").to_pylist() == [1]
    reasons = {r["detail"] for r in lake.read("quarantine.warehouse.tickets").to_pylist()}
    assert reasons == {"contract:ticket_id:not_nullable"}
    engine.dispose()
