"""Incremental warehouse ingestion: a table or query behind a SQLAlchemy URL into ``bronze.warehouse.<source>``.

Three steps, each one Airflow task:

1. :func:`extract` reads rows in bounded batches (a server-side cursor, ``batch_size`` rows at a time) and
   stages each batch as a Parquet file, so memory does not grow with the table. With a ``watermark`` column it
   reads only rows newer than the last committed watermark and no newer than the run's data interval end,
   plus every row whose watermark is NULL: such a row cannot be placed before or after the last run, so every
   run reads it, and it is written only when its row hash changed (counted as ``rows_null_watermark``).
   Each batch is cast to the lake table's existing schema: a value that cannot be cast quarantines its row
   (``type_mismatch``), a new column is added, a dropped column is reported.
2. :func:`validate` checks the staged rows against the contract (:mod:`feedstock.contracts`).
3. :func:`commit` keeps the newest staged row per key, drops rows identical to what the lake holds, and upserts
   the rest in one Delta MERGE. Without a watermark the whole table is read each run, so keys that are gone
   from the source become ``_op = 'delete'`` tombstones; a key that was read but quarantined still exists at
   the source and keeps its last good row. The commit is made with the run's Delta transaction id against the
   table version the extract read (:class:`feedstock.lake.Txn`): a retry returns the same stats without writing
   twice, and a run whose extract another run's commit made stale fails with one line
   (:class:`feedstock.errors.CommitConflict`).

Output ``bronze.warehouse.<source>``: the source columns plus ``_ingested_at``, ``_op`` (insert, update,
delete) and ``_row_hash``; one row per key. Output ``quarantine.warehouse.<source>``: ``key, reason, detail,
row`` (the offending row as JSON) and ``seen_at``. Stats: ``rows_read, rows_written, rows_quarantined,
rows_forgotten`` (rows a ``forget`` request removed, which the source still holds: not written again),
``rows_null_watermark, watermark`` plus ``columns_added`` and ``columns_dropped``; :func:`commit` also returns
``version`` and ``quarantine_version``, the table versions this run's commits made (None: nothing written there).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from feedstock import contracts
from feedstock.config import WarehouseSource
from feedstock.forget import forgotten_ids
from feedstock.lake import Commit, Lake, Txn

META_COLUMNS = ("_ingested_at", "_op", "_row_hash")
BATCH_ROWS = 50_000  # rows per Arrow batch streamed from DuckDB into a Delta commit
DUCKDB_MEMORY = "256MB"
TS = pa.timestamp("us", tz="UTC")
QUARANTINE_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("row", pa.string()),
        ("seen_at", TS),
    ]
)
_DRIVERS = {"postgres": "postgresql+psycopg2", "postgresql": "postgresql+psycopg2", "mysql": "mysql+pymysql"}


def bronze_table(source: str) -> str:
    return f"bronze.warehouse.{source}"


def quarantine_table(source: str) -> str:
    return f"quarantine.warehouse.{source}"


def staging_dir(lake: Lake, run_key: str, source: str) -> str:
    return lake.staging("ingest_warehouse", run_key, source)


def sqlalchemy_url(
    conn_type: str,
    host: str | None = None,
    schema: str | None = None,
    login: str | None = None,
    password: str | None = None,
    port: int | None = None,
    extra: dict[str, Any] | None = None,
) -> sa.URL | str:
    """The SQLAlchemy URL for an Airflow connection's fields.

    ``extra.sqlalchemy_url`` wins when present. For ``sqlite`` and ``duckdb`` connections the database file is
    the host (or the schema, which is where Airflow puts the path of ``sqlite:////abs/path.db``).
    """
    if extra and extra.get("sqlalchemy_url"):
        return str(extra["sqlalchemy_url"])
    if conn_type in ("sqlite", "duckdb"):
        return sa.URL.create(conn_type, database=host or schema or ":memory:")
    return sa.URL.create(
        _DRIVERS.get(conn_type, conn_type),
        username=login,
        password=password,
        host=host,
        port=port,
        database=schema,
    )


def _base_query(source: WarehouseSource) -> str:
    return (
        f"select * from {source.table}" if source.table else f"select * from ({source.query}) as feedstock_q"
    )


def _bound(value: Any, sample: Any) -> Any:
    """Turn a stored watermark or the interval end into the type of the column's own values."""
    if value is None:
        return None
    if isinstance(sample, datetime):
        value = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        if sample.tzinfo is None and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value
    if isinstance(sample, date):
        return value.date() if isinstance(value, datetime) else date.fromisoformat(str(value)[:10])
    if isinstance(sample, str):  # e.g. SQLite's text timestamps: compare in the same text shape
        if isinstance(value, datetime):
            value = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
            return value.isoformat(sep=" " if " " in sample else "T", timespec="seconds")
        return str(value)
    if isinstance(sample, (int, float, Decimal)):
        return None if isinstance(value, datetime) else type(sample)(value)
    return value


def previous_watermark(lake: Lake, source: WarehouseSource) -> Any:
    last = lake.last_commit(bronze_table(source.name))
    return (last or {}).get("stats", {}).get("watermark")


def extract(
    source: WarehouseSource, url: sa.URL | str, lake: Lake, run_key: str, as_of: datetime
) -> dict[str, Any]:
    """Stream the new rows of a source into staged Parquet batches; return the read statistics."""
    stage = staging_dir(lake, run_key, source.name)
    lake.clear(stage)
    target = lake.table(bronze_table(source.name))
    target_schema = pa.schema(target.schema()) if target is not None else None
    # The commit is made against exactly these versions: another run's commit in between refuses it.
    read_versions = {
        "bronze": None if target is None else target.version(),
        "quarantine": lake.version(quarantine_table(source.name)),
    }
    base, params = _base_query(source), {}
    low = previous_watermark(lake, source)
    blocked = pa.array(
        sorted(i.split("/", 1)[1] for i in forgotten_ids(lake) if i.startswith(f"{source.name}/"))
    )
    engine = sa.create_engine(url)
    stats: dict[str, Any] = {
        "rows_read": 0,
        "rows_quarantined": 0,
        "rows_forgotten": 0,
        "rows_null_watermark": 0,
        "watermark": low,
        "columns_added": [],
        "columns_dropped": [],
    }
    try:
        with engine.connect() as conn:
            sql = base
            if source.watermark:
                sample = conn.execute(
                    sa.text(f"select max({source.watermark}) from ({base}) as feedstock_m")
                ).scalar()
                clauses = []
                if _bound(low, sample) is not None:
                    clauses.append(f"{source.watermark} > :low")
                    params["low"] = _bound(low, sample)
                if _bound(as_of, sample) is not None:
                    clauses.append(f"{source.watermark} <= :high")
                    params["high"] = _bound(as_of, sample)
                sql = f"select * from ({base}) as feedstock_w"
                if clauses:  # a NULL watermark is neither old nor new: such rows are read by every run
                    sql += f" where ({' and '.join(clauses)}) or {source.watermark} is null"
            result = conn.execution_options(stream_results=True, yield_per=source.batch_size).execute(
                sa.text(sql), params
            )
            columns = list(result.keys())
            if source.key not in columns:
                raise ValueError(
                    f"source '{source.name}': field 'key': column {source.key!r} is not in the result"
                )
            if target_schema is not None:
                known = set(target_schema.names) - set(META_COLUMNS)
                stats["columns_added"] = [c for c in columns if c not in known]
                stats["columns_dropped"] = sorted(known - set(columns))
            for index, rows in enumerate(result.partitions(source.batch_size)):
                batch, bad = _to_arrow(rows, columns, target_schema, source.key, as_of)
                if len(
                    blocked
                ):  # rows a forget request removed: the source still holding them does not bring them back
                    keep = pc.invert(pc.is_in(pc.cast(batch[source.key], pa.string()), blocked))
                    stats["rows_forgotten"] += batch.num_rows - pc.sum(keep.cast(pa.int64())).as_py()
                    batch = batch.filter(keep)
                stats["rows_read"] += len(rows)
                stats["rows_quarantined"] += bad.num_rows
                if source.watermark:  # every row read counts, quarantined ones too: they are accounted for
                    position = columns.index(source.watermark)
                    seen = [row[position] for row in rows if row[position] is not None]
                    stats["rows_null_watermark"] += len(rows) - len(seen)
                    stats["watermark"] = _later(stats["watermark"], max(seen) if seen else None)
                lake.write_parquet(f"{stage}/rows/batch-{index:06d}.parquet", batch)
                if bad.num_rows:
                    lake.write_parquet(f"{stage}/quarantine/batch-{index:06d}.parquet", bad)
    finally:
        engine.dispose()
    lake.write_json(f"{stage}/extract.json", {**stats, "read_versions": read_versions})
    return stats


def _later(current: Any, candidate: Any) -> Any:
    if candidate is None:
        return current
    candidate = candidate.isoformat() if isinstance(candidate, (datetime, date)) else candidate
    if current is None:
        return candidate
    try:
        return max(current, candidate)
    except TypeError:
        return candidate


def _to_arrow(
    rows: list[Any], columns: list[str], target: pa.Schema | None, key: str, as_of: datetime
) -> tuple[pa.Table, pa.Table]:
    """One fetched batch as Arrow, cast to the lake's schema; rows whose values cannot be cast are split off."""
    arrays, bad_rows = {}, {}
    for position, name in enumerate(columns):
        values = [row[position] for row in rows]
        try:
            array = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types in one column: keep them as text
            array = pa.array([None if v is None else str(v) for v in values], pa.string())
        if pa.types.is_decimal(array.type):  # inferred precision varies by batch; keep the widest
            array = array.cast(pa.decimal128(38, array.type.scale))
        if pa.types.is_null(array.type):
            array = array.cast(target.field(name).type if target and name in target.names else pa.string())
        if target is not None and name in target.names and array.type != target.field(name).type:
            array, failures = _cast(array, target.field(name).type)
            for row_index, detail in failures.items():
                bad_rows.setdefault(row_index, f"column {name!r}: {detail}")
        arrays[name] = array
    table = pa.table(arrays)
    table = table.append_column("_ingested_at", pa.array([as_of] * table.num_rows, TS))
    table = table.append_column("_op", pa.array(["insert"] * table.num_rows, pa.string()))  # set at commit
    con = duckdb.connect()
    con.register("batch", table)
    values = ", ".join(f'coalesce(cast("{c}" as varchar), chr(0))' for c in columns)
    hashed = con.sql(f"select md5(concat_ws(chr(31), {values})) as h from batch").to_arrow_table()
    table = table.append_column("_row_hash", hashed.column("h"))
    if not bad_rows:
        return table, QUARANTINE_SCHEMA.empty_table()
    keep = pa.array([i not in bad_rows for i in range(table.num_rows)])
    quarantined = [
        {
            "key": None if rows[i][columns.index(key)] is None else str(rows[i][columns.index(key)]),
            "reason": "type_mismatch",
            "detail": detail,
            "row": json.dumps(dict(zip(columns, rows[i], strict=True)), default=str),
            "seen_at": as_of,
        }
        for i, detail in sorted(bad_rows.items())
    ]
    return table.filter(keep), pa.Table.from_pylist(quarantined, QUARANTINE_SCHEMA)


def _cast(array: pa.Array, to: pa.DataType) -> tuple[pa.Array, dict[int, str]]:
    """Cast safely; on failure, find the values that do not fit and null them out (their rows are quarantined)."""
    try:
        return array.cast(to, safe=True), {}
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        pass
    values, failures = [], {}
    for index, value in enumerate(array.to_pylist()):
        try:
            pa.array([value], array.type).cast(to, safe=True)
            values.append(value)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            failures[index] = f"{value!r} does not fit {to}"
            values.append(None)
    try:
        return pa.array(values, array.type).cast(to, safe=True), failures
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return pa.nulls(len(values), to), {
            i: f"{array.type} does not cast to {to}" for i in range(len(values))
        }


def validate(
    source: WarehouseSource, lake: Lake, run_key: str, max_failure_ratio: float, as_of: datetime
) -> dict:
    """Check each staged batch against the contract; move failing rows to the staged quarantine."""
    stage = staging_dir(lake, run_key, source.name)
    schema = contracts.bronze_warehouse(source.key)
    checked = failed = 0
    for path in lake.staged_files(f"{stage}/rows"):
        batch = lake.read_parquet(path)
        result = contracts.check(batch, schema)
        checked += result.checked
        if not result.failed_rows:
            continue
        failed += len(result.failed_rows)
        bad = batch.take(pa.array(result.failed_rows, pa.int64())).to_pylist()
        rows = [
            {
                "key": None if row[source.key] is None else str(row[source.key]),
                "reason": reason.split(":", 1)[0],
                "detail": reason,
                "row": json.dumps(row, default=str),
                "seen_at": as_of,
            }
            for row, reason in zip(bad, result.reasons, strict=True)
        ]
        name = path.rsplit("/", 1)[1]
        lake.write_parquet(
            f"{stage}/quarantine/contract-{name}", pa.Table.from_pylist(rows, QUARANTINE_SCHEMA)
        )
        lake.write_parquet(
            path,
            batch.take(pa.array(sorted(set(range(batch.num_rows)) - set(result.failed_rows)), pa.int64())),
        )
    lake.write_json(f"{stage}/validation.json", {"checked": checked, "failed": failed})
    contracts.enforce_ratio(bronze_table(source.name), failed, checked, max_failure_ratio)
    return {"checked": checked, "failed": failed}


def commit(source: WarehouseSource, lake: Lake, run_key: str, produced_by: dict[str, str]) -> dict[str, Any]:
    """Upsert the changed rows (and, for full reads, tombstones of vanished keys) in one commit.

    Idempotent: a retry skips the commits this run already made and, once the commit finished, returns its
    receipt. Exclusive: when another run committed to a table after this run's extract read it, raises
    :class:`~feedstock.errors.CommitConflict` (one line) and writes nothing more.
    """
    stage = staging_dir(lake, run_key, source.name)
    if (receipt := lake.read_receipt(stage)) is not None:
        return receipt
    stats = lake.read_json(f"{stage}/extract.json")
    read = stats.pop("read_versions")
    validation = lake.read_json(f"{stage}/validation.json")
    stats["rows_quarantined"] += validation["failed"]
    name = bronze_table(source.name)
    counts = {"insert": 0, "update": 0, "delete": 0}
    con = duckdb.connect()
    if lake.staged_files(f"{stage}/rows"):
        _define_changes(con, lake, source, stage, read["bronze"])
        for op, count in con.sql("select _op, count(*) from changes group by _op").fetchall():
            counts[op] = count
    stats.update(
        rows_written=sum(counts.values()),
        inserted=counts["insert"],
        updated=counts["update"],
        deleted=counts["delete"],
    )
    quarantined = _new_quarantine(
        lake, source, lake.read_staged(f"{stage}/quarantine", schema=QUARANTINE_SCHEMA), read["quarantine"]
    )
    app_id = f"feedstock:ingest_warehouse:{source.name}"
    result: dict[str, Any] = {**stats, "version": None, "quarantine_version": None}
    if stats["rows_written"]:  # streamed into the MERGE in batches: memory stays bounded
        reader = con.sql("select * from changes").to_arrow_reader(BATCH_ROWS)
        result["version"] = lake.upsert(
            name, reader, source.key, Commit(produced_by, (), stats, Txn(app_id, run_key, read["bronze"]))
        )
    if quarantined.num_rows:
        result["quarantine_version"] = lake.append(
            quarantine_table(source.name),
            quarantined,
            Commit(produced_by, (), stats, Txn(app_id, run_key, read["quarantine"])),
        )
    lake.write_receipt(stage, result)
    lake.clean_staging("ingest_warehouse", run_key)
    return result


def _new_quarantine(lake: Lake, source: WarehouseSource, rows: pa.Table, version: int | None) -> pa.Table:
    """Drop quarantine rows already recorded (a full re-read meets the same bad rows every run)."""
    held = None if version is None else lake.dataset(quarantine_table(source.name), version)
    if held is None or rows.num_rows == 0:
        return rows
    con = duckdb.connect()
    con.register("held", held)
    con.register("fresh", rows)
    return con.sql("select * from fresh anti join held using (key, reason, row)").to_arrow_table()


def _define_changes(
    con: duckdb.DuckDBPyConnection, lake: Lake, source: WarehouseSource, stage: str, version: int | None
) -> None:
    """Define the view ``changes``: staged rows that differ from the lake table at ``version`` (newest per key),
    plus tombstones."""
    name, key = bronze_table(source.name), source.key
    order = f'"{source.watermark}" desc' if source.watermark else "1"
    con.execute(f"set memory_limit = '{DUCKDB_MEMORY}'")  # past this DuckDB spills to disk instead of growing
    con.register("staged_raw", lake.staged_dataset(f"{stage}/rows"))
    repeated = con.execute(f'select count(*) - count(distinct "{key}") from staged_raw').fetchone()[0]
    if repeated:  # a key read twice (updated twice in the window): keep its newest row
        con.execute(
            "create view staged as select * from staged_raw "
            f'qualify row_number() over (partition by "{key}" order by {order}) = 1'
        )
    else:
        con.execute("create view staged as select * from staged_raw")
    if version is None:
        con.execute("create view changes as select * replace ('insert' as _op) from staged")
        return
    # Arrow tables, not datasets: DuckDB 2.0's filter pushdown into pyarrow datasets fails on string_view.
    con.register("target_keys", lake.read(name, columns=[key, "_row_hash", "_op"], version=version))
    sql = f"""select s.* replace (case when t."{key}" is null or t._op = 'delete' then 'insert' else 'update' end as _op)
              from staged s left join target_keys t on s."{key}" = t."{key}"
              where t."{key}" is null or t._row_hash <> s._row_hash or t._op = 'delete'"""
    if not source.watermark:  # a full read: keys missing from the source were deleted there
        con.register("target", lake.read(name, version=version))
        # A key read but quarantined (its values broke the types or the contract) still exists at the source.
        con.register(
            "held", lake.read_staged(f"{stage}/quarantine", schema=QUARANTINE_SCHEMA).select(["key"])
        )
        sql += f"""\n union all by name
              select t.* replace ('delete' as _op) from target t anti join staged s on t."{key}" = s."{key}"
              where t._op <> 'delete'
                and cast(t."{key}" as varchar) not in (select key from held where key is not null)"""
    con.execute(f"create view changes as {sql}")
