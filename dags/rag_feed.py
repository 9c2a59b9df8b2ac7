"""
### rag_feed

Keeps the RAG index fresh without re-embedding what did not change. Runs nightly and whenever an ingestion DAG
commits new bronze data.

1. **prepare**: pins the bronze version of every configured source and lands exactly those versions in this
   run's own DuckDB file. When nothing changed since the last run (same bronze versions, same configuration),
   it says so and every later task is skipped.
2. **transform** (dbt via cosmos, one task per model and test): staging, intermediate and the `rag_documents`
   mart.
3. **plan**: re-chunks only documents whose content changed; stages the chunks not yet in the index.
4. **embed**: one mapped task per batch of new chunks.
5. **validate**: the embeddings' contract (dimension, finite vectors, non-empty text).
6. **build**: applies the changes to the model's LanceDB table as a new, unreleased version.
7. **evaluate**: recall@k and MRR on the golden set; fails (or warns) below `rag.min_recall`.
8. **release**: records `rag.index` in the lake and switches search to the new version, atomically.
9. **dbt_docs**: dbt's documentation site, generated from this run's models when the dbt project changed (the
   Feeds page serves it as "dbt docs").
10. **refresh_cache**: deletes every semantic-cache entry grounded on a document that changed or was deleted
   (`feedstock serve` also checks each hit against the released index), and with `serve.cache.warm` loads past
   answers (e.g. resolved tickets) into the cache, each grounded on its own released document.

Stats: `chunks_total, embedded, reused, removed, recall_at_k, mrr`.
"""

from __future__ import annotations

from airflow.sdk import Asset, AssetAlias, AssetOrTimeSchedule, CronTriggerTimetable, dag, task

import feedstock_airflow as fa


@dag(
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 3 * * *", timezone="UTC"),
        assets=AssetAlias("bronze.documents") | AssetAlias("bronze.warehouse"),
    ),
    start_date=fa.START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=fa.DEFAULT_ARGS,
    tags=["feedstock", "feed", "rag"],
    doc_md=__doc__,
    render_template_as_native_obj=True,
)
def rag_feed():
    @task.short_circuit(ignore_downstream_trigger_rules=True)
    def prepare(**context) -> dict:
        from feedstock.rag import index

        cfg = fa.config()
        with fa.one_line_errors():
            prepared = index.prepare(cfg, fa.lake(cfg), fa.dbt_run_file(context))
        fa.log.info(prepared["message"])
        return {**prepared, "env": fa.dbt_env(context)} if prepared["changed"] else {}

    transform = fa.dbt_transform(select=["+rag_documents"])

    @task
    def plan(prepared: dict, **context) -> list[str]:
        from feedstock.rag import index

        cfg = fa.config()
        planned = index.plan(cfg, fa.lake(cfg), prepared["env"]["FEEDSTOCK_DUCKDB"], fa.run_key(context))
        fa.log.info("rag plan: %s", planned.stats)
        return planned.batches

    @task(pool=fa.DBT_POOL)
    def dbt_docs(prepared: dict) -> dict:
        from feedstock.dbt_docs import generate

        cfg = fa.config()
        with fa.one_line_errors():
            done = generate(
                fa.lake(cfg), fa.DBT_PROJECT, prepared["env"]["FEEDSTOCK_DUCKDB"], fa.dbt_executable()
            )
        fa.log.info("dbt docs: %s", done)
        return done

    @task(map_index_template="{{ task.op_kwargs['batch'].rsplit('/', 1)[-1] }}")
    def embed(batch: str) -> int:
        from feedstock.rag import index

        cfg = fa.config()
        with fa.one_line_errors():
            return index.embed_batch(cfg, fa.lake(cfg), batch)

    @task(trigger_rule="none_failed")
    def validate(**context) -> dict:
        from feedstock.rag import index

        cfg = fa.config()
        with fa.one_line_errors():
            return index.validate(cfg, fa.lake(cfg), fa.run_key(context))

    @task
    def build(**context) -> dict:
        from feedstock.rag import index

        cfg = fa.config()
        return index.build(cfg, fa.lake(cfg), fa.run_key(context))

    @task
    def evaluate(built: dict) -> dict:
        from feedstock.rag import index

        cfg = fa.config()
        scores = index.evaluate(cfg, fa.lake(cfg), built)
        fa.log.info("golden set: %s", scores)
        with fa.one_line_errors():
            if warning := index.recall_gate(cfg, scores):
                fa.log.warning(warning)
        return scores

    @task(outlets=[Asset(name="rag.index", uri="feedstock://rag/index")])
    def release(prepared: dict, built: dict, scores: dict, **context) -> dict:
        from feedstock.rag import index

        cfg = fa.config()
        lake = fa.lake(cfg)
        with fa.one_line_errors():
            stats = index.release(
                cfg, lake, fa.run_key(context), built, fa.produced_by(context), prepared["inputs"], scores
            )
        index.finish(lake, prepared, context["run_id"])
        fa.log.info("rag release: %s", stats)
        return stats

    @task
    def refresh_cache(released: dict) -> dict:
        """The semantic cache follows the release: stale entries out, `serve.cache.warm`'s past answers in."""
        from feedstock.serving import cache

        cfg = fa.config()
        with fa.one_line_errors():
            stats = cache.refresh(cfg, fa.lake(cfg))
        fa.log.info("semantic cache: %s", stats)
        return stats

    prepared = prepare()
    batches = plan(prepared)
    prepared >> transform >> batches
    docs = dbt_docs(prepared)
    batches >> docs  # after the last reader of the run's DuckDB file: dbt opens it for writing
    built = build()
    embed.expand(batch=batches) >> validate() >> built
    done = release(prepared, built, evaluate(built))
    refresh_cache(done)
    # A teardown: runs whatever happened, and does not decide the run's state.
    [done, docs] >> fa.cleanup_run_file(prepared).as_teardown(setups=prepared)


rag_feed()
