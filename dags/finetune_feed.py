"""
### finetune_feed

Builds a fine-tuning release: curated SFT conversations and preference pairs that trainers load as they are
(OpenAI, TRL, LLaMA-Factory, axolotl). Weekly (Monday 05:00 UTC); trigger it from the UI, where the `sources`
param limits a run to some sources.

1. **prepare**: numbers the release, pins the inputs (bronze versions of warehouse sources with a `finetune`
   template, dataset file versions) and lands the bronze ones in this run's own DuckDB file. When nothing changed
   since the last run, it says so and every later task is skipped.
2. **transform** (dbt via cosmos): the `finetune_conversations` mart, chat messages as typed structs.
3. **process** (one mapped task per source): reads the new records into one canonical chat form, then the
   format, PII, quality, length and decontamination stages and the contract. A corrupt file is quarantined with
   its reason; a broken source fails only its own task.
4. **curate**: exact and near-duplicate removal (also against earlier releases), optional Deita-style selection,
   and the train/validation split by near-duplicate group.
5. **release**: one file per split per format, `dataset_info.json`, the data card, and the tables
   `finetune.release`, `finetune.examples`, `finetune.rejects`, `finetune.files`.
"""

from __future__ import annotations

from airflow.sdk import Asset, CronTriggerTimetable, Param, dag, get_current_context, task

import feedstock_airflow as fa


@dag(
    schedule=CronTriggerTimetable("0 5 * * 1", timezone="UTC"),
    start_date=fa.START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=fa.DEFAULT_ARGS,
    tags=["feedstock", "feed", "finetune"],
    doc_md=__doc__,
    render_template_as_native_obj=True,
    params={"sources": Param([], type="array", description="Only these sources (empty: every source)")},
)
def finetune_feed():
    @task.short_circuit(ignore_downstream_trigger_rules=True)
    def prepare(**context) -> dict:
        feed, cfg, lake, _ = fa.finetune_run()
        with fa.one_line_errors():
            prepared = feed.prepare(cfg, lake, fa.dbt_run_file(context))
        fa.log.info(prepared["message"])
        return {**prepared, "env": fa.dbt_env(context)} if prepared["changed"] else {}

    transform = fa.dbt_transform(select=["+finetune_conversations"])

    @task
    def sources(prepared: dict) -> list[str]:
        return prepared["sources"]

    @task(map_index_template="{{ source_label }}")
    def process(name: str, prepared: dict) -> dict:
        feed, cfg, lake, run = fa.finetune_run()
        fa.source(cfg, name)
        with fa.one_line_errors():
            result = feed.process_source(cfg, lake, run, name, prepared["env"]["FEEDSTOCK_DUCKDB"])
        fa.log.info(
            "%s: %s in, %s staged, %s rejected",
            name,
            result["examples_in"],
            result["staged"],
            result["rejected"],
        )
        return result

    @task(trigger_rule="all_done")
    def curate(results) -> dict:
        feed, cfg, lake, run = fa.finetune_run()
        curated = feed.curate(cfg, lake, run, fa.values(results))
        fa.log.info("finetune curate: %s", curated["stats"])
        return curated

    @task(outlets=[Asset(name="finetune.release", uri="feedstock://finetune/release")])
    def release(prepared: dict, curated: dict) -> dict:
        feed, cfg, lake, run = fa.finetune_run()
        context = get_current_context()
        with fa.one_line_errors():
            stats = feed.release(cfg, lake, prepared, curated, fa.produced_by(context))
        feed.finish(lake, prepared, run, context["run_id"])
        fa.log.info("finetune release: %s", {k: v for k, v in stats.items() if k != "files"})
        return stats

    prepared = prepare()
    names = sources(prepared)
    prepared >> transform >> names
    results = process.partial(prepared=prepared).expand(name=names)
    done = release(prepared, curate(results))
    done >> fa.cleanup_run_file(prepared).as_teardown(setups=prepared)


finetune_feed()
