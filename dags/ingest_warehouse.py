"""
### ingest_warehouse

Pulls every `warehouse` source in the feedstock configuration (a table or query behind an Airflow connection:
PostgreSQL, DuckDB, SQLite or anything SQLAlchemy reaches) into the lake, incrementally:

1. **extract**: one mapped task per source streams rows in bounded batches. With a `watermark` column it reads
   the rows with `last committed watermark < watermark <= data interval end`; without one it reads the table
   and detects deletions. Values that no longer fit the lake's column type are quarantined.
2. **validate**: checks the pandera contract (key present and unique, known operation).
3. **commit**: upserts changed rows by `key` into `bronze.warehouse.<source>` in one Delta MERGE, and emits
   its Asset.

Stats on every commit: `rows_read, rows_written, rows_quarantined, watermark, columns_added, columns_dropped`.
"""

from __future__ import annotations

from airflow.sdk import AssetAlias, dag, get_current_context, task

import feedstock_airflow as fa

WAREHOUSE = AssetAlias("bronze.warehouse")


@dag(
    schedule="@daily",
    start_date=fa.START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=fa.DEFAULT_ARGS,
    tags=["feedstock", "ingest", "warehouse"],
    doc_md=__doc__,
)
def ingest_warehouse():
    @task
    def sources() -> list[str]:
        return [source.name for source in fa.config().of_kind("warehouse")]

    @task(map_index_template="{{ task.op_kwargs['source'] }}")
    def extract(source: str) -> str:
        from feedstock import warehouse

        cfg, context = fa.config(), get_current_context()
        spec = cfg.source(source)
        with fa.one_line_errors():
            stats = warehouse.extract(
                spec, fa.sqlalchemy_url(spec.conn_id), fa.lake(cfg), fa.run_key(context), fa.as_of(context)
            )
        print(
            f"source {source}: read {stats['rows_read']} rows, quarantined {stats['rows_quarantined']}; "
            f"columns added {stats['columns_added']}, dropped {stats['columns_dropped']}"
        )
        return source

    @task(map_index_template="{{ task.op_kwargs['source'] }}")
    def validate(source: str) -> str:
        from feedstock import warehouse

        cfg, context = fa.config(), get_current_context()
        with fa.one_line_errors():
            warehouse.validate(
                cfg.source(source),
                fa.lake(cfg),
                fa.run_key(context),
                cfg.validation.max_failure_ratio,
                fa.as_of(context),
            )
        return source

    @task(outlets=[WAREHOUSE], map_index_template="{{ task.op_kwargs['source'] }}")
    def commit(source: str, *, outlet_events=None) -> dict:
        from feedstock import warehouse

        cfg, context = fa.config(), get_current_context()
        lake = fa.lake(cfg)
        stats = warehouse.commit(cfg.source(source), lake, fa.run_key(context), fa.produced_by(context))
        if stats["rows_written"]:
            outlet_events[WAREHOUSE].add(fa.asset(lake, warehouse.bronze_table(source)), extra=stats)
        print(f"source {source}: {stats}")
        return stats

    commit.expand(source=validate.expand(source=extract.expand(source=sources())))


ingest_warehouse()
