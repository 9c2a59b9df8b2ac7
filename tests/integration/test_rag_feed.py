"""rag_feed end to end with dag.test(): dbt through cosmos, incremental embeddings, deletions, search, scores."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from feedstock import dbt_docs, forget
from feedstock.config import DEFAULT_CONFIG, Rerank, load_config
from feedstock.lake import Lake
from feedstock.rag import index
from tests.conftest import SAMPLE, run_dag, task_states
from tests.integration.test_forget import EMAIL, NAME, PHONE, PROSE, lake_holds
from tests.integration.test_ingest_warehouse import seed

pytestmark = pytest.mark.slow


@pytest.fixture
def rag_project(project, tmp_path, monkeypatch):
    """The shipped configuration, pointed at private copies of the sample data and a private lake."""
    folder = tmp_path / "handbook"
    shutil.copytree(SAMPLE / "handbook", folder)
    url = f"sqlite:///{tmp_path / 'wh.sqlite'}"
    seed(url).dispose()
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAREHOUSE_DEFAULT",
        f'{{"conn_type": "generic", "extra": {{"sqlalchemy_url": "{url}"}}}}',
    )
    monkeypatch.setenv("FEEDSTOCK_DBT_DIR", str(tmp_path / "dbt"))
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["lake"] = project.lake
    raw["sources"][0]["uri"] = str(folder)
    raw["rag"]["golden_set"] = str(DEFAULT_CONFIG.parent / "golden" / "handbook.yaml")
    project.config.write_text(yaml.safe_dump(raw))
    project.handbook = folder
    return project


def ingest_and_refresh(day: int):
    for dag_id in ("ingest_documents", "ingest_warehouse", "rag_feed"):
        run = run_dag(dag_id, day=day)
        assert run.state == "success", (dag_id, task_states(run))
    return run


def release_stats(lake: Lake) -> dict:
    return lake.last_commit(index.INDEX_TABLE)["stats"]


def test_incremental_rag_feed(rag_project, openai_server):
    lake = Lake(rag_project.lake)
    config = load_config()

    run = ingest_and_refresh(10)
    states = task_states(run)
    assert any(key.startswith("transform.rag_documents") for key in states), states  # dbt models are tasks
    first = release_stats(lake)
    assert first["embedded"] == first["chunks_total"] > 100 and first["reused"] == 0
    assert first["recall_at_5"] >= 0.8
    inputs = lake.last_commit(index.INDEX_TABLE)["inputs"]
    assert "bronze.documents.handbook@0" in inputs
    top = index.search(config, lake, "How many days of PTO do new employees get?", k=3)
    assert top[0]["doc_id"] == "handbook/policies/pto_policy.md"
    assert set(top[0]) == {"chunk_id", "doc_id", "uri", "title", "section", "page", "text", "score"}
    # With a reranker configured (over real HTTP), search returns the reranker's top k of its candidates.
    question = "How many days of PTO do new employees get?"
    spec = Rerank(endpoint=openai_server("ok"), model="rerank-test", candidates=10)
    reranked = index.search(replace(config, rag=replace(config.rag, rerank=spec)), lake, question, k=3)
    candidates = {r["chunk_id"]: r["score"] for r in index.search(config, lake, question, k=10)}
    assert len(reranked) == 3 and all(r["reranked"] for r in reranked)
    assert [r["score"] for r in reranked] == sorted((r["score"] for r in reranked), reverse=True)
    assert all(candidates[r["chunk_id"]] == r["retrieval_score"] for r in reranked)

    # dbt's docs site, with the catalog of the models this run built (their columns' types).
    assert states["dbt_docs[-1]"] == "success"
    page = dbt_docs.read_page(lake).decode()
    assert "model.feedstock.rag_documents" in page and "content_hash" in page and "VARCHAR" in page.upper()
    docs_file = Path(rag_project.lake) / dbt_docs.PAGE
    written = docs_file.stat().st_mtime_ns

    # Nothing changed: nothing embedded, no new release.
    version = lake.version(index.INDEX_TABLE)
    assert run_dag("rag_feed", day=10).state == "success"
    assert lake.version(index.INDEX_TABLE) == version

    # One document changed: only its new chunks are embedded; one deleted: its chunks leave search.
    pto = rag_project.handbook / "policies/pto_policy.md"
    pto.write_text(
        pto.read_text()
        + "\n\n## Sabbatical\n\nAfter five years, employees may take a four-week paid sabbatical.\n"
    )
    (rag_project.handbook / "policies/remote_work_policy.md").unlink()
    ingest_and_refresh(11)
    second = release_stats(lake)
    assert 0 < second["embedded"] <= 3, second
    assert docs_file.stat().st_mtime_ns == written  # the dbt project did not change: the docs are not rebuilt
    assert second["removed"] >= 1 and second["reused"] > 100
    assert second["chunks_total"] == first["chunks_total"] - second["removed"] + second["embedded"]
    hits = index.search(config, lake, "home office stipend for remote employees", k=10)
    assert all(h["doc_id"] != "handbook/policies/remote_work_policy.md" for h in hits)
    sabbatical = index.search(config, lake, "paid sabbatical after five years", k=1, mode="hybrid")
    assert sabbatical[0]["doc_id"] == "handbook/policies/pto_policy.md"
    filtered = index.search(config, lake, "refund for a billing error", k=5, source="tickets")
    assert filtered and all(h["doc_id"].startswith("tickets/") for h in filtered)


def test_search_before_the_first_run(rag_project):
    with pytest.raises(index.IndexNotReady, match="run the rag_feed DAG first"):
        index.search(load_config(), Lake(rag_project.lake), "anything")


def switch_model(project, **embedding) -> None:
    raw = yaml.safe_load(project.config.read_text())
    raw["rag"]["embedding"] = {**raw["rag"]["embedding"], **embedding}
    project.config.write_text(yaml.safe_dump(raw))


def test_model_switch_is_blue_green_and_a_failing_provider_publishes_nothing(rag_project, openai_server):
    lake = Lake(rag_project.lake)
    ingest_and_refresh(10)
    blue = index.read_pointer(lake)
    question = "How many days of PTO do new employees get?"

    # A provider that keeps failing: the run fails with a clear message and search still serves the old index.
    switch_model(
        rag_project,
        provider="openai",
        model="minilm-remote",
        endpoint=openai_server("error"),
        retries=1,
        timeout_s=2,
    )
    run = run_dag("rag_feed", day=11)
    assert run.state == "failed" and task_states(run)["embed[0]"] == "failed"
    assert index.read_pointer(lake) == blue
    assert index.search(load_config(), lake, question, k=1)[0]["doc_id"] == "handbook/policies/pto_policy.md"

    # The same switch against a healthy endpoint builds a new table beside the old one, then switches over.
    switch_model(rag_project, endpoint=openai_server("ok"), timeout_s=120)
    config = load_config()
    planned = index.plan(config, lake, _mart(), "manual-switch")
    assert planned.stats["full_rebuild"] == 1 and planned.stats["reused"] == 0
    for batch in planned.batches:
        index.embed_batch(config, lake, batch)
    built = index.build(config, lake, "manual-switch")
    assert built["table"] != blue["table"]
    assert index.read_pointer(lake) == blue  # built, not released: search still reads the old table
    index.release(config, lake, "manual-switch", built, {"dag_id": "test"}, [], {})
    green = index.read_pointer(lake)
    assert green["table"] == built["table"] and green["provider"] == "openai"
    assert index.search(config, lake, question, k=1)[0]["doc_id"] == "handbook/policies/pto_policy.md"
    assert lake.last_commit(index.INDEX_TABLE)["stats"]["full_rebuild"] == 1


def _mart() -> pa.Table:
    """The documents the last rag_feed run saw, rebuilt from the lake the same way the mart does."""
    import duckdb

    lake = Lake(load_config().lake)
    con = duckdb.connect()
    con.register("docs", lake.read("bronze.documents.handbook"))
    return con.sql(
        """select doc_id, source, uri, coalesce(title, doc_id) as title, text, mime_type, content_hash, is_deleted,
                  pages, ['internal'] as access_tags
           from docs qualify row_number() over (partition by doc_id order by doc_version desc) = 1"""
    ).to_arrow_table()


def test_rag_feed_on_an_s3_lake(rag_project, s3):
    """The whole chain on an S3 lake (moto): bronze, bronze landed in the run's DuckDB file, LanceDB, search."""
    fs, bucket = s3
    (rag_project.handbook / "people").mkdir(exist_ok=True)
    (rag_project.handbook / "people" / "payroll.md").write_text(
        "# Payroll\n\n" + PROSE.format(name=NAME, email=EMAIL, phone=PHONE) + "\n"
    )
    raw = yaml.safe_load(rag_project.config.read_text())
    raw["lake"] = f"s3://{bucket}/lake"
    rag_project.config.write_text(yaml.safe_dump(raw))
    lake = Lake(f"s3://{bucket}/lake")
    config = load_config()

    ingest_and_refresh(10)
    first = release_stats(lake)
    assert first["embedded"] == first["chunks_total"] > 100 and first["recall_at_5"] >= 0.8
    assert fs.exists(f"{bucket}/lake/rag/CURRENT.json")
    version = lake.version(index.INDEX_TABLE)
    assert run_dag("rag_feed", day=10).state == "success"
    assert lake.version(index.INDEX_TABLE) == version  # nothing changed: nothing embedded, no release

    (rag_project.handbook / "policies/remote_work_policy.md").unlink()
    ingest_and_refresh(11)
    second = release_stats(lake)
    assert second["embedded"] == 0 and second["removed"] >= 1
    hits = index.search(config, lake, "home office stipend for remote employees", k=10)
    assert hits and all(h["doc_id"] != "handbook/policies/remote_work_policy.md" for h in hits)

    # Forgetting on an S3 lake: the person planted in one page leaves every object in the bucket.
    assert lake_holds(f"{bucket}/lake", EMAIL, fs)
    run = (
        __import__("forget")
        .forget()
        .test(
            logical_date=datetime(2026, 11, 12, tzinfo=UTC), run_conf={"contains": [EMAIL], "verify": [NAME]}
        )
    )
    assert run.state == "success", task_states(run)
    receipt = lake.read(forget.RECEIPTS).to_pylist()[-1]
    assert receipt["verified"] and receipt["found"] == 0 and receipt["records"] == 1
    fs.invalidate_cache()
    assert lake_holds(f"{bucket}/lake", EMAIL, fs) == [] and lake_holds(f"{bucket}/lake", NAME, fs) == []
    assert index.search(config, lake, "How many days of PTO do new employees get?", k=3)[0]["doc_id"] == (
        "handbook/policies/pto_policy.md"
    )
