"""Sources are configuration: a user adds, renames, removes and breaks sources by editing the YAML file only.

Starts from the shipped configuration (the sample handbook, tickets and products warehouse, corpus), adds a local
folder, a folder on the S3 API (moto) and a second warehouse on the machine's PostgreSQL, runs every DAG, then
renames one source, removes another and breaks a third, and runs again.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from feedstock.catalog import catalog
from feedstock.config import DEFAULT_CONFIG, load_config
from feedstock.lake import Lake
from feedstock.pretrain import feed
from feedstock.rag import index
from tests.conftest import SAMPLE, run_dag, task_states
from tests.integration.test_ingest_warehouse import seed

pytestmark = pytest.mark.slow

ITDOCS = {
    "vpn.md": "# VPN\n\nTo reach the office network from home, install WireGuard and import the profile that "
    "the IT portal at it.example.com generates for your laptop. Profiles expire after ninety days.\n",
    "printers.md": "# Printers\n\nThe third-floor printer is called Heron. Add it from Settings > Printers; "
    "it prints double-sided by default and holds badge-released jobs for four hours.\n",
}
S3DOCS = {
    "lunch.md": "# Canteen\n\nThe canteen serves a vegetarian curry every Thursday and closes at 14:30. "
    "Menus for the week are posted on Monday mornings on the intranet.\n",
}
CRM_SQL = """
create table accounts (account_id integer primary key, company text, plan text, note text);
insert into accounts values
  (1, 'Acme Rockets', 'enterprise', 'Acme renewed their enterprise plan for three years with priority support.'),
  (2, 'Globex', 'starter', 'Globex asked about migrating their starter plan to annual billing.');
"""


def states_of(run) -> dict[str, str]:
    return task_states(run)


def first_hit(question: str, **filters) -> dict | None:
    config = load_config()
    hits = index.search(config, Lake(config.lake), question, k=1, **filters)
    return hits[0] if hits else None


@pytest.fixture
def user_project(project, tmp_path, monkeypatch, s3, postgres_db):
    fs, bucket = s3
    handbook, itdocs = tmp_path / "handbook", tmp_path / "itdocs"
    shutil.copytree(SAMPLE / "handbook", handbook)
    itdocs.mkdir()
    for name, text in ITDOCS.items():
        (itdocs / name).write_text(text)
    for name, text in S3DOCS.items():
        fs.pipe(f"{bucket}/docs/{name}", text.encode())
    url = f"sqlite:///{tmp_path / 'wh.sqlite'}"
    seed(url).dispose()
    engine = sa.create_engine(postgres_db)
    with engine.begin() as con:
        for statement in CRM_SQL.split(";"):
            if statement.strip():
                con.exec_driver_sql(statement)
    engine.dispose()
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAREHOUSE_DEFAULT",
        f'{{"conn_type": "generic", "extra": {{"sqlalchemy_url": "{url}"}}}}',
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_CRM", f'{{"conn_type": "generic", "extra": {{"sqlalchemy_url": "{postgres_db}"}}}}'
    )
    monkeypatch.setenv("FEEDSTOCK_DBT_DIR", str(tmp_path / "dbt"))
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["lake"] = project.lake
    raw["sources"][0]["uri"] = str(handbook)
    raw["sources"] = [s for s in raw["sources"] if s["kind"] != "corpus"]  # the corpus is not what this tests
    raw["sources"] += [
        {"name": "itdocs", "kind": "documents", "uri": str(itdocs), "access_tags": ["it"]},
        {"name": "s3docs", "kind": "documents", "uri": f"s3://{bucket}/docs"},
        {
            "name": "crm",
            "kind": "warehouse",
            "conn_id": "crm",
            "table": "accounts",
            "key": "account_id",
            "document": {"title": "Account {company}", "text": "{company} ({plan} plan): {note}"},
        },
    ]
    raw["rag"]["golden_set"] = str(DEFAULT_CONFIG.parent / "golden" / "handbook.yaml")
    # The new documents are short: the quality rules (made for web text) would drop them.
    quality_off = {"gopher_repetition": False, "gopher_quality": False, "c4": False, "fineweb": False}
    raw["pretrain"].update(output_shards=1, dedup_partitions=1, quality=quality_off)
    project.raw = raw
    project.save = lambda: project.config.write_text(yaml.safe_dump(project.raw))
    project.save()
    return project


def run_all(day: int) -> dict[str, object]:
    return {dag_id: run_dag(dag_id, day=day) for dag_id in DAGS}


DAGS = ("ingest_documents", "ingest_warehouse", "rag_feed", "pretrain_feed")


def test_sources_are_configuration(user_project):
    lake = Lake(user_project.lake)

    # 0. First boot: a feed that runs before ingestion committed anything waits for it (nothing released).
    early = run_dag("rag_feed", day=9)
    assert early.state == "success" and states_of(early)["plan[-1]"] == "skipped", states_of(early)
    assert index.read_pointer(lake) is None and lake.table(index.INDEX_TABLE) is None

    # 1. Three new sources next to the sample ones: every DAG succeeds, search finds every source, and the
    # release's inputs are exactly the bronze versions the run read.
    runs = run_all(10)
    for dag_id, run in runs.items():
        assert run.state == "success", (dag_id, states_of(run))
    assert (
        first_hit("How do I connect to the office network from home?", source="itdocs")["doc_id"]
        == "itdocs/vpn.md"
    )
    assert first_hit("When does the canteen close?", source="s3docs")["doc_id"] == "s3docs/lunch.md"
    assert first_hit("Which customer renewed for three years?", source="crm")["doc_id"] == "crm/1"
    assert first_hit("printer", source="itdocs", tags=["it"]) is not None
    inputs = lake.last_commit(index.INDEX_TABLE)["inputs"]
    for name in ("handbook", "itdocs", "s3docs"):
        assert f"bronze.documents.{name}@0" in inputs
    assert "bronze.warehouse.crm@0" in inputs
    first = lake.last_commit(feed.RELEASE)["stats"]
    assert {"itdocs", "s3docs", "crm", "handbook"} <= set(first["tokens_by_source"]), first

    # 2. A quiet rerun of the feeds: nothing changed, so nothing runs after prepare and nothing is published.
    versions = lake.version(index.INDEX_TABLE), lake.version(feed.RELEASE)
    for dag_id in ("rag_feed", "pretrain_feed"):
        run = run_dag(dag_id, day=10)
        states = states_of(run)
        assert run.state == "success" and states["prepare[-1]"] == "success", states
        assert states["plan[-1]"] == "skipped" and states["release[-1]"] == "skipped", states
    assert (lake.version(index.INDEX_TABLE), lake.version(feed.RELEASE)) == versions

    # 3. Rename itdocs to kb, remove s3docs, break crm (a typo'd field); add a document to kb.
    sources = {s["name"]: s for s in user_project.raw["sources"]}
    sources["itdocs"]["name"] = "kb"
    del sources["s3docs"]
    sources["crm"]["batch_size"] = 2.5
    user_project.raw["sources"] = list(sources.values())
    user_project.save()
    kb_folder = sources["itdocs"]["uri"]
    with open(f"{kb_folder}/badges.md", "w") as handle:
        handle.write(
            "# Badges\n\nA lost badge is replaced at the front desk of building B within one hour.\n"
        )

    runs = run_all(11)
    warehouse = states_of(runs["ingest_warehouse"])
    assert runs["ingest_warehouse"].state == "failed"
    assert warehouse["source.extract[2]"] == "failed", warehouse  # crm, the third warehouse source
    assert warehouse["source.commit[0]"] == warehouse["source.commit[1]"] == "success", warehouse
    for dag_id in ("ingest_documents", "rag_feed", "pretrain_feed"):
        assert runs[dag_id].state == "success", (dag_id, states_of(runs[dag_id]))

    assert first_hit("When does the canteen close?", source="s3docs") is None  # removed: gone from search
    assert first_hit("Where do I replace a lost badge?", source="kb")["doc_id"] == "kb/badges.md"
    assert first_hit("How do I connect to the office network from home?", source="itdocs") is None
    # The broken source is frozen: what it committed stays searchable until its configuration is fixed.
    assert first_hit("Which customer renewed for three years?", source="crm")["doc_id"] == "crm/1"
    second = lake.last_commit(feed.RELEASE)["stats"]
    assert second["release"] == first["release"] + 1
    assert "s3docs" not in second["tokens_by_source"] and "itdocs" not in second["tokens_by_source"]
    assert "kb" in second["tokens_by_source"]

    # The removed and renamed sources' bronze tables stay in the lake, listed as detached.
    configured = {s.name for s in load_config().sources} | {b.name for b in load_config().broken}
    detached = {e.name for e in catalog(lake, configured) if e.detached}
    assert {"bronze.documents.s3docs", "bronze.documents.itdocs"} <= detached
    assert "bronze.documents.kb" not in detached and "bronze.warehouse.crm" not in detached

    # The Assets page holds the lake's tables and the feeds' releases, not one asset per run per dbt model.
    db = sqlite3.connect(Path(os.environ["AIRFLOW_HOME"]) / "airflow.db")
    uris = [uri for (uri,) in db.execute("select uri from asset")]
    db.close()
    assert uris and not [uri for uri in uris if "duckdb" in uri or "/dbt/" in uri], uris
