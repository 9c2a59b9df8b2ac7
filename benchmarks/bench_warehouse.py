"""Warehouse ingestion: rows/s and peak memory at two table sizes, against the raw client doing the same read.

A PostgreSQL table on the machine's server is filled with ``generate_series`` at 250k and 1M rows. Each
measurement runs in a fresh process so its peak RSS is its own:

- feed: feedstock's extract, validate and commit into a new Delta table (batches of 50k rows);
- raw: SQLAlchemy with a server-side cursor fetching the same batches into Arrow, and nothing else;
- raw_all: ``pandas.read_sql`` of the whole table, for the memory a naive load takes.

Target: the feed's peak memory does not grow with the table size.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime

import psycopg2

SIZES = (250_000, 1_000_000, 2_000_000)
BATCH = 50_000


def _create(name: str, rows: int) -> str:
    admin = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    admin.autocommit = True
    admin.cursor().execute(f"create database {name}")
    admin.close()
    conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname=name)
    with conn, conn.cursor() as cur:
        cur.execute(
            f"""create table events as
                select i as event_id, 'customer ' || (i % 9973) as customer, (i % 5) + 1 as rating,
                       (i * 0.37)::numeric(12, 2) as amount,
                       'event text for row ' || i || ' with a little more detail to read' as body,
                       timestamp '2026-01-01' + (i || ' seconds')::interval as updated_at
                from generate_series(1, {rows}) as i"""
        )
    conn.close()
    return f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"


def _drop(name: str) -> None:
    admin = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    admin.autocommit = True
    admin.cursor().execute(f"drop database if exists {name} with (force)")
    admin.close()


def _feed(url: str, lake_root: str) -> tuple[float, float, int]:
    from feedstock import warehouse
    from feedstock.config import WarehouseSource
    from feedstock.lake import Lake

    source = WarehouseSource(
        name="events", conn_id="-", table="events", key="event_id", watermark="updated_at", batch_size=BATCH
    )
    lake, when = Lake(lake_root), datetime(2027, 1, 1, tzinfo=UTC)
    start = time.perf_counter()
    warehouse.extract(source, url, lake, "bench", when)
    warehouse.validate(source, lake, "bench", 0.0, when)
    stats = warehouse.commit(
        source, lake, "bench", {"dag_id": "bench", "task_id": "bench", "run_id": "bench"}
    )
    return (
        time.perf_counter() - start,
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        stats["rows_written"],
    )


def _raw(url: str, _lake_root: str) -> tuple[float, float, int]:
    import pyarrow as pa
    import sqlalchemy as sa

    start, rows = time.perf_counter(), 0
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=BATCH).execute(
            sa.text("select * from events")
        )
        columns = list(result.keys())
        for part in result.partitions(BATCH):
            table = pa.table({c: pa.array([r[i] for r in part]) for i, c in enumerate(columns)})
            rows += table.num_rows
    return (time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, rows)


def _raw_all(url: str, _lake_root: str) -> tuple[float, float, int]:
    import pandas as pd
    import sqlalchemy as sa

    start = time.perf_counter()
    frame = pd.read_sql("select * from events", sa.create_engine(url))
    return (
        time.perf_counter() - start,
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        len(frame),
    )


def _measure(step: str, url: str, lake_root: str) -> tuple[float, float, int]:
    """Run one step in a fresh interpreter, so its peak RSS is its own."""
    code = f"import json, benchmarks.bench_warehouse as b; print(json.dumps(b.{step}({url!r}, {lake_root!r})), flush=True)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if not done.stdout.strip():
        raise RuntimeError(f"{step} failed with exit code {done.returncode}: {done.stderr[-2000:]}")
    return tuple(json.loads(done.stdout.strip().splitlines()[-1]))


def run() -> dict:
    results = {}
    for rows in SIZES:
        name = f"feedstock_bench_{uuid.uuid4().hex[:8]}"
        work = tempfile.mkdtemp(prefix="feedstock-bench-wh-")
        try:
            url = _create(name, rows)
            entry = {}
            for label, step in (("feed", "_feed"), ("raw", "_raw"), ("raw_all", "_raw_all")):
                seconds, peak_mb, count = _measure(step, url, f"{work}/{label}")
                entry[label] = {
                    "seconds": round(seconds, 2),
                    "rows_per_s": round(count / seconds),
                    "peak_rss_mb": round(peak_mb),
                    "rows": count,
                }
            entry["feed_vs_raw_time"] = round(entry["feed"]["seconds"] / entry["raw"]["seconds"], 2)
            results[f"{rows}_rows"] = entry
        finally:
            _drop(name)
            shutil.rmtree(work, ignore_errors=True)
    small, large = (results[f"{n}_rows"]["feed"]["peak_rss_mb"] for n in (SIZES[0], SIZES[-1]))
    results[f"feed_peak_growth_{SIZES[-1] // SIZES[0]}x_rows"] = round(large / small, 2)
    return results


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
