"""
### rag_feed

Keeps the RAG index fresh without re-embedding what did not change. Runs nightly and whenever an ingestion DAG
commits new bronze data.

1. **prepare**: checks the config and the generated dbt sources, and pins the bronze versions this run reads.
2. **transform** (dbt via cosmos, one task per model and test): staging, intermediate and the `rag_documents`
   mart, built in this run's own DuckDB file.
3. **plan**: re-chunks only documents whose content changed; stages the chunks not yet in the index.
4. **embed**: one mapped task per batch of new chunks.
5. **validate**: the embeddings' contract (dimension, finite vectors, non-empty text).
6. **build**: applies the changes to the model's LanceDB table as a new, unreleased version.
7. **evaluate**: recall@k and MRR on the golden set; fails (or warns) below `rag.min_recall`.
8. **release**: records `rag.index` in the lake and switches search to the new version, atomically.

Stats: `chunks_total, embedded, reused, removed, recall_at_k, mrr`.
"""

from __future__ import annotations

from airflow.sdk import (
    Asset,
    AssetAlias,
    AssetOrTimeSchedule,
    CronTriggerTimetable,
    dag,
    get_current_context,
    task,
)

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
    @task
    def prepare() -> dict:
        cfg, context = fa.config(), get_current_context()
        fa.check_dbt_sources(cfg)
        lake = fa.lake(cfg)
        inputs = [lake.pinned(name) for name in lake.tables() if name.startswith("bronze.")]
        return {"env": fa.dbt_env(cfg, context), "inputs": inputs}

    transform = fa.dbt_transform(select=["+rag_documents"])

    @task
    def plan(prepared: dict) -> list[str]:
        from feedstock.rag import index

        cfg, context = fa.config(), get_current_context()
        planned = index.plan(cfg, fa.lake(cfg), prepared["env"]["FEEDSTOCK_DUCKDB"], fa.run_key(context))
        print(f"rag plan: {planned.stats}")
        return planned.batches

    @task(map_index_template="{{ task.op_kwargs['batch'].rsplit('/', 1)[-1] }}")
    def embed(batch: str) -> int:
        from feedstock.rag import index

        cfg = fa.config()
        with fa.one_line_errors():
            return index.embed_batch(cfg, fa.lake(cfg), batch)

    @task(trigger_rule="none_failed")
    def validate() -> dict:
        from feedstock.rag import index

        cfg = fa.config()
        with fa.one_line_errors():
            return index.validate(cfg, fa.lake(cfg), fa.run_key(get_current_context()))

    @task
    def build() -> dict:
        from feedstock.rag import index

        cfg = fa.config()
        return index.build(cfg, fa.lake(cfg), fa.run_key(get_current_context()))

    @task
    def evaluate(built: dict) -> dict:
        from feedstock.rag import index

        cfg = fa.config()
        scores = index.evaluate(cfg, fa.lake(cfg), built)
        recall = scores.get(f"recall_at_{cfg.rag.k}")
        print(f"golden set: {scores}")
        if recall is not None and recall < cfg.rag.min_recall:
            message = (
                f"recall@{cfg.rag.k} {recall:.3f} is below rag.min_recall {cfg.rag.min_recall}; not released"
            )
            if cfg.rag.on_low_recall == "fail":
                with fa.one_line_errors():
                    raise index.contracts.ContractViolation(message)
            print(f"WARNING: {message}")
        return scores

    @task(outlets=[Asset(name="rag.index", uri="feedstock://rag/index")])
    def release(prepared: dict, built: dict, scores: dict) -> dict:
        from feedstock.rag import index

        cfg, context = fa.config(), get_current_context()
        stats = index.release(
            cfg, fa.lake(cfg), fa.run_key(context), built, fa.produced_by(context), prepared["inputs"], scores
        )
        print(f"rag release: {stats}")
        return stats

    prepared = prepare()
    batches = plan(prepared)
    prepared >> transform >> batches
    built = build()
    embed.expand(batch=batches) >> validate() >> built
    done = release(prepared, built, evaluate(built))
    # A teardown: runs whatever happened, and does not decide the run's state.
    done >> fa.cleanup_run_file(prepared).as_teardown(setups=prepared)


rag_feed()
