"""ingest_documents end to end with dag.test(): first load, rerun, change, delete, bad files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from deltalake import DeltaTable

from feedstock.lake import Lake
from tests.conftest import SAMPLE, run_dag, task_states

pytestmark = pytest.mark.slow


@pytest.fixture
def handbook(tmp_path, project):
    folder = tmp_path / "handbook"
    shutil.copytree(SAMPLE / "handbook", folder)
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7 truncated")
    (folder / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (folder / "blank.txt").write_text("   \n")
    project.configure(
        [{"name": "handbook", "kind": "documents", "uri": str(folder), "text_field": "body", "batch_size": 8}]
    )
    return folder


def stats(lake: Lake, name: str) -> dict:
    return lake.last_commit(name)["stats"]


def test_incremental_document_ingestion(project, handbook):
    lake = Lake(project.lake)
    docs, quarantine = "bronze.documents.handbook", "quarantine.documents.handbook"

    run = run_dag("ingest_documents", day=10)
    assert run.state == "success", task_states(run)
    first = stats(lake, docs)
    assert first["files_seen"] == 33
    assert first["ingested"] == 30 and first["quarantined"] == 3 and first["unchanged"] == 0
    assert first["files_seen"] == first["ingested"] + first["unchanged"] + first["quarantined"]
    assert sum(1 for key in task_states(run) if key.startswith("parse[")) == 5  # 33 files in batches of 8
    reasons = {r["doc_id"]: r["reason"] for r in lake.read(quarantine).to_pylist()}
    assert reasons == {
        "handbook/broken.pdf": "corrupt",
        "handbook/logo.png": "unsupported_type",
        "handbook/blank.txt": "empty",
    }
    table = lake.read(docs)
    assert table.num_rows == 30
    pdf = next(r for r in table.to_pylist() if r["doc_id"] == "handbook/product/relay_admin_guide.pdf")
    assert [p["page"] for p in pdf["pages"]] == [1, 2, 3, 4]
    assert pdf["ingested_at"].isoformat().startswith("2026-11-10")

    # The same interval again changes nothing: no new versions of either table.
    versions = (lake.version(docs), lake.version(quarantine))
    assert run_dag("ingest_documents", day=10).state == "success"
    assert (lake.version(docs), lake.version(quarantine)) == versions

    # One file changed, one deleted, one touched without a change.
    (handbook / "policies/pto_policy.md").write_text("# PTO\n\nEveryone now gets 30 days.\n")
    (handbook / "faq/relay_faq.jsonl").unlink()
    touched = handbook / "product/relay_overview.md"
    touched.write_bytes(touched.read_bytes())
    run = run_dag("ingest_documents", day=11)
    assert run.state == "success", task_states(run)
    second = stats(lake, docs)
    assert second == {
        **second,
        "files_seen": 32,
        "ingested": 1,
        "unchanged": 28,
        "quarantined": 3,
        "deleted": 1,
    }
    rows = lake.read(docs).to_pylist()
    pto = sorted(
        (r for r in rows if r["doc_id"] == "handbook/policies/pto_policy.md"), key=lambda r: r["doc_version"]
    )
    assert [r["doc_version"] for r in pto] == [1, 2] and "30 days" in pto[-1]["text"]
    gone = [r for r in rows if r["doc_id"] == "handbook/faq/relay_faq.jsonl"]
    assert sorted((r["doc_version"], r["is_deleted"]) for r in gone) == [(1, False), (2, True)]
    assert lake.read(docs).num_rows == 32

    # Rerunning the later interval adds no tombstone twice.
    before = lake.version(docs)
    assert run_dag("ingest_documents", day=11).state == "success"
    assert lake.version(docs) == before


def test_catalog_cli_lists_the_tables(project, handbook):
    assert run_dag("ingest_documents", day=10).state == "success"
    out = subprocess.run(
        [sys.executable, "-m", "feedstock.cli", "catalog", "--json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    entries = {e["name"]: e for e in json.loads(out)}
    assert set(entries) == {"bronze.documents.handbook", "quarantine.documents.handbook"}
    docs = entries["bronze.documents.handbook"]
    assert docs["rows"] == 30 and docs["format"] == "delta" and docs["version"] == 0
    assert docs["produced_by"]["dag_id"] == "ingest_documents" and docs["produced_by"]["task_id"] == "commit"
    assert docs["stats"]["ingested"] == 30 and docs["inputs"]
    assert DeltaTable(docs["uri"]).to_pyarrow_table().num_rows == 30
    table = subprocess.run(
        [sys.executable, "-m", "feedstock.cli", "catalog"], capture_output=True, text=True, check=True
    ).stdout
    assert "bronze.documents.handbook" in table.splitlines()[1] or "bronze.documents.handbook" in table


def test_a_broken_source_fails_only_its_own_tasks(project, tmp_path):
    """An unreachable URI fails that source's plan; the other source still ingests and commits."""
    good = tmp_path / "good"
    good.mkdir()
    (good / "a.md").write_text("# A\n\nSome text.\n")
    project.configure(
        [
            {"name": "missing", "kind": "documents", "uri": str(tmp_path / "nowhere")},
            {"name": "good", "kind": "documents", "uri": str(good)},
            {"name": "typo", "kind": "documents", "uri": str(good), "batch_size": 2.5},
        ]
    )
    run = run_dag("ingest_documents", day=10)
    states = task_states(run)
    assert run.state == "failed"
    assert states["plan[0]"] == states["plan[2]"] == "failed" and states["plan[1]"] == "success", states
    assert states["commit[0]"] == "success", states  # the only source that planned: good
    assert Lake(project.lake).read("bronze.documents.good").num_rows == 1
    assert Lake(project.lake).table("bronze.documents.missing") is None
