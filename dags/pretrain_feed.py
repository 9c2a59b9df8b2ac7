"""
### pretrain_feed

Builds a continued-pretraining release: cleaned, filtered, PII-redacted, deduplicated (exact and MinHash, also
against earlier releases) and tokenized text shards. Weekly (Sunday 04:00 UTC); trigger it from the UI, where the
`sources` param limits a run to some sources.

1. **prepare**: numbers the release, pins the bronze inputs, checks the tokenizer and the dbt sources.
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
from cosmos import DbtTaskGroup, ExecutionConfig, ProjectConfig, RenderConfig
from cosmos.constants import InvocationMode, LoadMode

import feedstock_airflow as fa

DBT_ENV = "{{ ti.xcom_pull(task_ids='prepare')['env'] }}"
SHARD_LABEL = "{{ task.op_kwargs['shard']['source'] }}/{{ task.op_kwargs['shard']['relative'] }}"


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
    @task
    def prepare() -> dict:
        from feedstock.pretrain import feed

        cfg, context = fa.pretrain_config(), get_current_context()
        fa.check_dbt_sources(cfg)
        with fa.one_line_errors():
            prepared = feed.prepare(cfg, fa.lake(cfg))
        env = {
            "FEEDSTOCK_LAKE": cfg.lake,
            "FEEDSTOCK_DUCKDB": fa.dbt_run_file(context),
            **fa.lake(cfg).s3.delta_options(),
        }
        return {**prepared, "env": env}

    transform = DbtTaskGroup(
        group_id="transform",
        project_config=ProjectConfig(fa.DBT_PROJECT),
        profile_config=fa.dbt_profile(),
        execution_config=ExecutionConfig(
            dbt_executable_path=fa.dbt_executable(), invocation_mode=InvocationMode.SUBPROCESS
        ),
        render_config=RenderConfig(
            load_method=LoadMode.DBT_LS,
            select=["+pretrain_documents"],
            should_detach_multiple_parents_tests=True,
        ),
        operator_args={"env": DBT_ENV, "append_env": True, "install_deps": False, "pool": fa.DBT_POOL},
        default_args={**fa.DEFAULT_ARGS, "pool": fa.DBT_POOL},
    )

    @task(multiple_outputs=True)
    def plan(prepared: dict) -> dict:
        from feedstock.pretrain import feed

        cfg = fa.pretrain_config()
        with fa.one_line_errors():
            planned = feed.plan(
                cfg, fa.lake(cfg), fa.run_key(get_current_context()), prepared["env"]["FEEDSTOCK_DUCKDB"]
            )
        print(f"pretrain plan: {planned['stats']}")
        return {**planned, **feed.partitions(cfg)}

    @task(
        map_index_template="{{ task.op_kwargs['shard']['source'] }}/{{ task.op_kwargs['shard']['relative'] }}"
    )
    def process(shard: dict) -> dict:
        from feedstock.pretrain import feed

        cfg = fa.pretrain_config()
        result = feed.process_shard(cfg, fa.lake(cfg), shard)
        print(f"{result['label']}: {result['status']} {result['reason'] or ''} {result['stats']}")
        return result

    @task(trigger_rule="none_failed")
    def exact_dedup(results, partition: int) -> int:
        from feedstock.pretrain import feed

        cfg = fa.pretrain_config()
        return feed.exact_dedup(
            cfg, fa.lake(cfg), fa.run_key(get_current_context()), list(results or []), partition
        )

    @task(trigger_rule="none_failed")
    def lsh(results, group: int) -> int:
        from feedstock.pretrain import feed

        cfg = fa.pretrain_config()
        return feed.lsh(cfg, fa.lake(cfg), fa.run_key(get_current_context()), list(results or []), group)

    @task(trigger_rule="none_failed")
    def clusters(results) -> dict:
        from feedstock.pretrain import feed

        cfg = fa.pretrain_config()
        return feed.clusters(cfg, fa.lake(cfg), fa.run_key(get_current_context()), list(results or []))

    @task(trigger_rule="none_failed")
    def write_shard(prepared: dict, results, shard: int) -> dict:
        from feedstock.pretrain import feed

        cfg, key = fa.pretrain_config(), fa.run_key(get_current_context())
        return feed.write_shard(cfg, fa.lake(cfg), key, prepared["release"], list(results or []), shard)

    @task(
        trigger_rule="none_failed",
        outlets=[Asset(name="pretrain.release", uri="feedstock://pretrain/release")],
    )
    def release(prepared: dict, planned_stats: dict, results, dedup_stats: dict, shards) -> dict:
        from feedstock.pretrain import feed

        cfg, context = fa.pretrain_config(), get_current_context()
        stats = feed.release(
            cfg,
            fa.lake(cfg),
            fa.run_key(context),
            prepared,
            {"stats": planned_stats},
            list(results or []),
            dedup_stats,
            list(shards or []),
            fa.produced_by(context),
        )
        print(f"pretrain release: {stats}")
        return stats

    prepared = prepare()
    planned = plan(prepared)
    prepared >> transform >> planned
    lines = boilerplate(scan.expand(shard=planned["shards"]))
    results = process.expand(shard=planned["shards"])
    lines >> results
    exact = exact_dedup.partial(results=results).expand(partition=planned["exact_partitions"])
    candidates = lsh.partial(results=results).expand(group=planned["band_groups"])
    exact >> candidates
    dedup_stats = clusters(results)
    candidates >> dedup_stats
    shards = write_shard.partial(prepared=prepared, results=results).expand(shard=planned["output_shards"])
    dedup_stats >> shards
    done = release(prepared, planned["stats"], results, dedup_stats, shards)
    done >> fa.cleanup_run_file(prepared).as_teardown(setups=prepared)


pretrain_feed()
