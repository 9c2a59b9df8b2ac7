"""
### ingest_documents

Pulls every `documents` source in the feedstock configuration (local folders, `s3://` and any fsspec URL) into
the lake, incrementally:

1. **plan** (one mapped task per source): lists the source and compares it with the lake; unchanged files cost
   nothing, vanished files become tombstones; the files to read are split into batches. A broken source (a bad
   field, an unreachable URI) fails its own task with one line, and the other sources go on.
2. **parse**: one mapped task per batch reads, hashes and parses the files (txt, md, html, pdf, docx,
   json/jsonl); files that cannot become text are quarantined with a reason.
3. **validate**: one mapped task per source checks the pandera contract of `bronze.documents`.
4. **commit**: one mapped task per source publishes `bronze.documents.<source>` and
   `quarantine.documents.<source>`, one Delta commit each, and emits their Assets.

Stats on every commit: `files_seen = ingested + unchanged + quarantined`, plus `deleted`.
"""

from __future__ import annotations

from airflow.sdk import AssetAlias, dag, task
from airflow.sdk.exceptions import AirflowFailException

import feedstock_airflow as fa

DOCUMENTS = AssetAlias("bronze.documents")


def _succeeded(plans) -> list[dict]:
    return [plan for plan in fa.values(plans) if plan]  # a failed source's plan has no value


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
        return fa.config().source_names("documents")

    @task(map_index_template="{{ task.op_kwargs['source'] }}")
    def plan(source: str, **context) -> dict:
        from feedstock.documents import ingest

        cfg = fa.config()
        spec = fa.source(cfg, source)
        with fa.one_line_errors():
            planned, summary = ingest.plan(spec, fa.lake(cfg), fa.run_key(context))
        fa.log.info(
            "source %s: %s files, %s to read in %s batches, %s deleted",
            source,
            summary["files_seen"],
            summary["to_parse"],
            len(planned),
            len(summary["tombstones"]),
        )
        return {"source": source, "batches": [b.to_dict() for b in planned]}

    @task(trigger_rule="all_done")
    def batches(plans) -> list[dict]:
        """The batches of every source that planned; a source whose plan failed stays out of the run."""
        return [batch for p in _succeeded(plans) for batch in p["batches"]]

    @task(trigger_rule="all_done")
    def planned(plans) -> list[str]:
        return [p["source"] for p in _succeeded(plans)]

    @task(map_index_template="{{ task.op_kwargs['batch']['source'] }}#{{ task.op_kwargs['batch']['index'] }}")
    def parse(batch: dict, **context) -> dict:
        from feedstock.documents import ingest

        cfg = fa.config()
        spec = fa.source(cfg, batch["source"])
        return ingest.parse_batch(spec, fa.lake(cfg), ingest.Batch(**batch), fa.as_of(context))

    @task(trigger_rule="none_failed", map_index_template="{{ task.op_kwargs['source'] }}")
    def validate(source: str, **context) -> dict:
        from feedstock.documents import ingest

        cfg = fa.config()
        with fa.one_line_errors():
            return ingest.validate(
                fa.source(cfg, source),
                fa.lake(cfg),
                fa.run_key(context),
                cfg.validation.max_failure_ratio,
                fa.as_of(context),
            )

    @task(
        trigger_rule="none_failed", outlets=[DOCUMENTS], map_index_template="{{ task.op_kwargs['source'] }}"
    )
    def commit(source: str, *, outlet_events=None, **context) -> dict:
        from feedstock.documents import ingest

        cfg = fa.config()
        lake = fa.lake(cfg)
        with fa.one_line_errors():
            stats = ingest.commit(
                fa.source(cfg, source), lake, fa.run_key(context), fa.produced_by(context), fa.as_of(context)
            )
        if stats["version"] is not None:  # this run's commit (also on a retry of a finished one)
            outlet_events[DOCUMENTS].add(fa.asset(lake, ingest.documents_table(source)), extra=stats)
        fa.log.info("source %s: %s", source, stats)
        return stats

    @task(trigger_rule="all_done")
    def report(names: list[str], ready: list[str]) -> None:
        """Fail the run, after the others committed, when a source could not be planned (its task says why)."""
        if failed := [name for name in names if name not in ready]:
            raise AirflowFailException(
                f"sources that did not ingest: {', '.join(failed)} (see their plan tasks)"
            )

    names = sources()
    plans = plan.expand(source=names)
    ready = planned(plans)
    parsed = parse.expand(batch=batches(plans))
    committed = commit.expand(source=ready)
    parsed >> validate.expand(source=ready) >> committed >> report(names, ready)


ingest_documents()
