"""
### ingest_documents

Pulls every `documents` source in the feedstock configuration (local folders, `s3://` and any fsspec URL) into
the lake, incrementally:

1. **plan**: lists each source and compares it with the lake; unchanged files cost nothing, vanished files
   become tombstones; the files to read are split into batches.
2. **parse**: one mapped task per batch reads, hashes and parses the files (txt, md, html, pdf, docx,
   json/jsonl); files that cannot become text are quarantined with a reason.
3. **validate**: one mapped task per source checks the pandera contract of `bronze.documents`.
4. **commit**: one mapped task per source publishes `bronze.documents.<source>` and
   `quarantine.documents.<source>`, one Delta commit each, and emits their Assets.

Stats on every commit: `files_seen = ingested + unchanged + quarantined`, plus `deleted`.
"""

from __future__ import annotations

from airflow.sdk import AssetAlias, dag, get_current_context, task

import feedstock_airflow as fa

DOCUMENTS = AssetAlias("bronze.documents")


@dag(
    schedule="@daily",
    start_date=fa.START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=fa.DEFAULT_ARGS,
    tags=["feedstock", "ingest", "documents"],
    doc_md=__doc__,
)
def ingest_documents():
    @task
    def sources() -> list[str]:
        return [source.name for source in fa.config().of_kind("documents")]

    @task
    def plan(sources: list[str]) -> list[dict]:
        from feedstock.documents import ingest

        cfg, context = fa.config(), get_current_context()
        lake, batches = fa.lake(cfg), []
        for name in sources:
            with fa.one_line_errors():
                planned, summary = ingest.plan(cfg.source(name), lake, fa.run_key(context))
            print(
                f"source {name}: {summary['files_seen']} files, {summary['to_parse']} to read in "
                f"{len(planned)} batches, {len(summary['tombstones'])} deleted"
            )
            batches += [b.to_dict() for b in planned]
        return batches

    @task(map_index_template="{{ task.op_kwargs['batch']['source'] }}#{{ task.op_kwargs['batch']['index'] }}")
    def parse(batch: dict) -> dict:
        from feedstock.documents import ingest

        cfg = fa.config()
        source, when = cfg.source(batch["source"]), fa.as_of(get_current_context())
        return ingest.parse_batch(source, fa.lake(cfg), ingest.Batch(**batch), when)

    @task(trigger_rule="none_failed", map_index_template="{{ task.op_kwargs['source'] }}")
    def validate(source: str) -> dict:
        from feedstock.documents import ingest

        cfg, context = fa.config(), get_current_context()
        with fa.one_line_errors():
            return ingest.validate(
                cfg.source(source),
                fa.lake(cfg),
                fa.run_key(context),
                cfg.validation.max_failure_ratio,
                fa.as_of(context),
            )

    @task(
        trigger_rule="none_failed", outlets=[DOCUMENTS], map_index_template="{{ task.op_kwargs['source'] }}"
    )
    def commit(source: str, *, outlet_events=None) -> dict:
        from feedstock.documents import ingest

        cfg, context = fa.config(), get_current_context()
        lake = fa.lake(cfg)
        before = lake.version(ingest.documents_table(source))
        stats = ingest.commit(
            cfg.source(source), lake, fa.run_key(context), fa.produced_by(context), fa.as_of(context)
        )
        if lake.version(ingest.documents_table(source)) != before:
            outlet_events[DOCUMENTS].add(fa.asset(lake, ingest.documents_table(source)), extra=stats)
        print(f"source {source}: {stats}")
        return stats

    names = sources()
    parsed = parse.expand(batch=plan(names))
    parsed >> validate.expand(source=names) >> commit.expand(source=names)


ingest_documents()
