"""Both ingestion DAGs against an S3 lake and an S3 document source, served by moto on localhost."""

from __future__ import annotations

import pytest
from deltalake import DeltaTable

from feedstock.lake import Lake, S3Settings
from tests.conftest import SAMPLE, run_dag, task_states

pytestmark = pytest.mark.slow


def test_s3_source_and_s3_lake(project, s3, tmp_path, monkeypatch):
    fs, bucket = s3
    fs.put(str(SAMPLE / "handbook"), f"{bucket}/docs", recursive=True)
    fs.pipe(f"{bucket}/docs/broken.docx", b"PK not a zip")
    url = f"sqlite:///{tmp_path / 'wh.sqlite'}"
    from tests.integration.test_ingest_warehouse import seed

    seed(url).dispose()
    monkeypatch.setenv(
        "AIRFLOW_CONN_WH", f'{{"conn_type": "generic", "extra": {{"sqlalchemy_url": "{url}"}}}}'
    )
    project.configure(
        [
            {"name": "handbook", "kind": "documents", "uri": f"s3://{bucket}/docs", "text_field": "body"},
            {
                "name": "tickets",
                "kind": "warehouse",
                "conn_id": "wh",
                "table": "tickets",
                "key": "ticket_id",
                "watermark": "updated_at",
            },
        ],
        lake=f"s3://{bucket}/lake",
    )
    lake = Lake(project.lake)

    run = run_dag("ingest_documents", day=10)
    assert run.state == "success", task_states(run)
    stats = lake.last_commit("bronze.documents.handbook")["stats"]
    assert (stats["files_seen"], stats["ingested"], stats["quarantined"]) == (31, 30, 1)
    assert fs.exists(f"{bucket}/lake/bronze/documents/handbook/_delta_log/00000000000000000000.json")
    uri = lake.read("bronze.documents.handbook", ["uri"]).column("uri").to_pylist()
    assert all(u.startswith(f"s3://{bucket}/docs/") for u in uri)

    assert run_dag("ingest_warehouse", day=21).state == "success"
    assert lake.read("bronze.warehouse.tickets").num_rows == 62
    # The catalog's URI opens with deltalake given the same S3 settings.
    table = DeltaTable(
        lake.uri("bronze.warehouse.tickets"), storage_options=S3Settings.from_env().delta_options()
    )
    assert table.to_pyarrow_table().num_rows == 62

    # Incremental on S3 too: a rerun changes nothing, a deleted object becomes a tombstone.
    versions = (lake.version("bronze.documents.handbook"), lake.version("bronze.warehouse.tickets"))
    assert run_dag("ingest_documents", day=10).state == "success"
    assert run_dag("ingest_warehouse", day=21).state == "success"
    assert (lake.version("bronze.documents.handbook"), lake.version("bronze.warehouse.tickets")) == versions
    fs.rm(f"{bucket}/docs/policies/pto_policy.md")
    assert run_dag("ingest_documents", day=11).state == "success"
    assert lake.last_commit("bronze.documents.handbook")["stats"]["deleted"] == 1
    assert not fs.exists(f"{bucket}/lake/_staging/ingest_documents")
