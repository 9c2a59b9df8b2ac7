"""
### ingest_warehouse

Pulls every `warehouse` source in the feedstock configuration (a table or query behind an Airflow connection:
PostgreSQL, DuckDB, SQLite or anything SQLAlchemy reaches) into the lake, incrementally:

Each source is a mapped task group (extract, validate, commit), labelled by the source: a broken source (a bad
field, a failing connection) fails only its own tasks, with one line, and the others commit.

1. **extract**: streams rows in bounded batches. With a `watermark` column it reads
   the rows with `last committed watermark < watermark <= data interval end`; without one it reads the table
   and detects deletions. Values that no longer fit the lake's column type are quarantined.
2. **validate**: checks the pandera contract (key present and unique, known operation).
3. **commit**: upserts changed rows by `key` into `bronze.warehouse.<source>` in one Delta MERGE, and emits
   its Asset.

Stats on every commit: `rows_read, rows_written, rows_quarantined, watermark, columns_added, columns_dropped`.
"""

from __future__ import annotations

from airflow.sdk import AssetAlias, dag, task, task_group

import feedstock_airflow as fa

WAREHOUSE = AssetAlias("bronze.warehouse")
LABEL = "{{ source_label }}"  # a mapped task group's tasks are labelled by their source (set by fa.source)


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
        return fa.config().source_names("warehouse")

    @task_group
    def source(name: str):
        """One source's extract, validate and commit: a broken source fails only its own tasks."""

        @task(map_index_template=LABEL)
        def extract(source: str, **context) -> str:
            from feedstock import warehouse

            cfg = fa.config()
            spec = fa.source(cfg, source)
            with fa.one_line_errors():
                stats = warehouse.extract(
                    spec,
                    fa.sqlalchemy_url(spec.conn_id),
                    fa.lake(cfg),
                    fa.run_key(context),
                    fa.as_of(context),
                )
            fa.log.info(
                "source %s: read %s rows, quarantined %s; columns added %s, dropped %s",
                source,
                stats["rows_read"],
                stats["rows_quarantined"],
                stats["columns_added"],
                stats["columns_dropped"],
            )
            return source

        @task(map_index_template=LABEL)
        def validate(source: str, **context) -> str:
            from feedstock import warehouse

            cfg = fa.config()
            with fa.one_line_errors():
                warehouse.validate(
                    fa.source(cfg, source),
                    fa.lake(cfg),
                    fa.run_key(context),
                    cfg.validation.max_failure_ratio,
                    fa.as_of(context),
                )
            return source

        @task(outlets=[WAREHOUSE], map_index_template=LABEL)
        def commit(source: str, *, outlet_events=None, **context) -> dict:
            from feedstock import warehouse

            cfg = fa.config()
            lake = fa.lake(cfg)
            with fa.one_line_errors():
                stats = warehouse.commit(
                    fa.source(cfg, source), lake, fa.run_key(context), fa.produced_by(context)
                )
            if stats["version"] is not None:  # this run's commit (also on a retry of a finished one)
                outlet_events[WAREHOUSE].add(fa.asset(lake, warehouse.bronze_table(source)), extra=stats)
            fa.log.info("source %s: %s", source, stats)
            return stats

        commit(validate(extract(name)))

    source.expand(name=sources())


ingest_warehouse()
