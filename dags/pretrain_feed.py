"""
### pretrain_feed

Builds a continued-pretraining release: cleaned, filtered, PII-redacted, deduplicated (exact and MinHash, also
against earlier releases) and tokenized text shards. Weekly (Sunday 04:00 UTC); trigger it from the UI, where the
`sources` param limits a run to some sources.

1. **prepare**: numbers the release, pins the inputs (bronze versions, corpus file versions) and lands the bronze
   ones in this run's own DuckDB file. When nothing changed since the last run, it says so and every later task
   is skipped.
2. **transform** (dbt via cosmos): the `pretrain_documents` mart, in this run's own DuckDB file.
3. **plan**: the corpus shards (files, or parts of large files) and mart documents no release has processed yet.
4. **process** (one mapped task per shard): normalize, language ID, quality filters, PII redaction,
   decontamination, exact hashes and MinHash signatures. Finished shards are skipped on rerun; a corrupt shard
   is quarantined and the rest goes on.
5. **exact_dedup** (per hash partition), **lsh** (per band group), **clusters**: global deduplication.
6. **write_shard** (one mapped task per output shard): source weights, seeded shuffle, tokenization, `.bin`/`.idx`
   token files and Parquet text shards.
7. **release**: `pretrain.release`, `pretrain.rejects` and the dedup state in the lake; a data card beside the
   shards.
"""

from __future__ import annotations

from airflow.sdk import Asset, CronTriggerTimetable, Param, dag, get_current_context, task

import feedstock_airflow as fa

SHARD = "{{ task.op_kwargs['shard']['source'] }}/{{ task.op_kwargs['shard']['relative'] }}"
FAN_OUTS = ("exact_partitions", "band_groups", "output_shards")  # how wide each global stage maps
AFTER = "none_failed"  # the global stages run even when a mapped stage had nothing to do


@dag(
    schedule=CronTriggerTimetable("0 4 * * 0", timezone="UTC"),
    start_date=fa.START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=fa.DEFAULT_ARGS,
    tags=["feedstock", "feed", "pretrain"],
    doc_md=__doc__,
    render_template_as_native_obj=True,
    params={"sources": Param([], type="array", description="Only these sources (empty: every source)")},
)
def pretrain_feed():
    @task.short_circuit(ignore_downstream_trigger_rules=True)
    def prepare(**context) -> dict:
        feed, cfg, lake, _ = fa.pretrain_run()
        with fa.one_line_errors():
            prepared = feed.prepare(cfg, lake, fa.dbt_run_file(context))
        fa.log.info(prepared["message"])
        return {**prepared, "env": fa.dbt_env(context)} if prepared["changed"] else {}

    # The RAG mart's tests touch shared models, but need the RAG mart: not this feed's.
    transform = fa.dbt_transform(select=["+pretrain_documents"], exclude=["rag_documents+"])

    @task
    def plan(prepared: dict) -> list[dict]:
        feed, cfg, lake, run = fa.pretrain_run()
        with fa.one_line_errors():
            planned = feed.plan(cfg, lake, run, prepared["env"]["FEEDSTOCK_DUCKDB"])
        fa.log.info("pretrain plan: %s", planned["stats"])
        return planned["shards"]

    @task
    def fan_out(kind: str) -> list[int]:
        feed, cfg, _, _ = fa.pretrain_run()
        return feed.partitions(cfg)[kind]

    @task(map_index_template=SHARD)
    def scan(shard: dict) -> dict:
        feed, cfg, lake, _ = fa.pretrain_run()
        return feed.scan_shard(cfg, lake, shard)

    @task(trigger_rule=AFTER)
    def boilerplate(scans) -> dict:
        feed, cfg, lake, run = fa.pretrain_run()
        return feed.boilerplate(cfg, lake, run, fa.values(scans))

    @task(map_index_template=SHARD, trigger_rule=AFTER)
    def process(shard: dict) -> dict:
        feed, cfg, lake, run = fa.pretrain_run()
        result = feed.process_shard(cfg, lake, shard, run)
        fa.log.info(
            "%s: %s %s %s", result["label"], result["status"], result["reason"] or "", result["stats"]
        )
        return result

    @task(trigger_rule=AFTER)
    def exact_dedup(results, partition: int) -> int:
        feed, cfg, lake, run = fa.pretrain_run()
        return feed.exact_dedup(cfg, lake, run, fa.values(results), partition)

    @task(trigger_rule=AFTER)
    def lsh(results, group: int) -> int:
        feed, cfg, lake, run = fa.pretrain_run()
        return feed.lsh(cfg, lake, run, fa.values(results), group)

    @task(trigger_rule=AFTER)
    def clusters(results) -> dict:
        feed, cfg, lake, run = fa.pretrain_run()
        return feed.clusters(cfg, lake, run, fa.values(results))

    @task
    def write_shard(results, shard: int) -> dict:
        feed, cfg, lake, run = fa.pretrain_run()
        return feed.write_shard(cfg, lake, run, fa.values(results), shard)

    @task(pool=fa.RELEASE_POOL, outlets=[Asset(name="pretrain.release", uri="feedstock://pretrain/release")])
    def release(prepared: dict, results, dedup_stats: dict, shards) -> dict:
        feed, cfg, lake, run = fa.pretrain_run()
        by = fa.produced_by(get_current_context())
        with fa.one_line_errors():
            stats = feed.release(
                cfg, lake, run, prepared, fa.values(results), dedup_stats, fa.values(shards), by
            )
        feed.finish(lake, prepared, get_current_context()["run_id"])
        fa.log.info("pretrain release: %s", stats)
        return stats

    prepared = prepare()
    planned = plan(prepared)
    prepared >> transform >> planned
    results = process.expand(shard=planned)
    boilerplate(scan.expand(shard=planned)) >> results
    partitions, groups, outputs = (fan_out.override(task_id=k)(k) for k in FAN_OUTS)
    exact = exact_dedup.partial(results=results).expand(partition=partitions)
    candidates = lsh.partial(results=results).expand(group=groups)
    dedup_stats = clusters(results)
    exact >> candidates >> dedup_stats
    shards = write_shard.partial(results=results).expand(shard=outputs)
    dedup_stats >> shards
    done = release(prepared, results, dedup_stats, shards)
    done >> fa.cleanup_run_file(prepared).as_teardown(setups=prepared)


pretrain_feed()
