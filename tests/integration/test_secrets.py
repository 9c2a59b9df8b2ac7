"""No secret reaches a task log, an XCom, the Airflow metadata DB, the lake or the catalog.

Plants unique secrets (AWS keys for an S3 lake on moto, an API key, a PostgreSQL password in the warehouse
connection), runs every DAG, then greps everything the runs wrote: the captured task logs, the metadata DB file
(XComs, rendered template fields, task instances) and every file of the lake (Parquet files decoded, so a
compressed column cannot hide a value).
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from feedstock.config import DEFAULT_CONFIG
from tests.conftest import SAMPLE, run_dag, task_states
from tests.integration.test_ingest_warehouse import seed

pytestmark = pytest.mark.slow

DAGS = ("ingest_documents", "ingest_warehouse", "rag_feed", "pretrain_feed")


def _lake_text(fs, root: str) -> str:
    """Every file under the lake as text; Parquet decoded row by row."""
    out = []
    for path in fs.find(root):
        with fs.open(path, "rb") as handle:
            data = handle.read()
        out.append(data.decode("latin-1"))
        if path.endswith(".parquet"):
            with fs.open(path, "rb") as handle:
                out.append(str(pq.read_table(handle).to_pylist()))
    return "\n".join(out)


def test_no_secret_is_logged_or_stored(
    project, tmp_path, monkeypatch, s3, postgres_db, s3_server, capfd, caplog
):
    caplog.set_level(
        logging.INFO
    )  # Airflow's task log level; in a full session task logs reach pytest's log capture, not stdout
    fs, bucket = s3
    secrets = {
        "aws_secret": f"awsSECRET{uuid.uuid4().hex}",
        "aws_key": f"AKIA{uuid.uuid4().hex[:16].upper()}",
        "api_key": f"sk-{uuid.uuid4().hex}",
        "db_password": f"pw{uuid.uuid4().hex}",
    }
    # moto accepts any keys; PostgreSQL here trusts local connections, so the password is carried, not checked.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", secrets["aws_key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secrets["aws_secret"])
    monkeypatch.setenv("OPENAI_API_KEY", secrets["api_key"])
    user, rest = postgres_db.split("://", 1)[1].split("@", 1)
    url = f"postgresql+psycopg2://{user}:{secrets['db_password']}@{rest}"
    seed(postgres_db).dispose()
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAREHOUSE_DEFAULT",
        f'{{"conn_type": "generic", "extra": {{"sqlalchemy_url": "{url}"}}}}',
    )
    monkeypatch.setenv("FEEDSTOCK_DBT_DIR", str(tmp_path / "dbt"))
    handbook = tmp_path / "handbook"
    shutil.copytree(SAMPLE / "handbook" / "policies", handbook)
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["lake"] = f"s3://{bucket}/lake"
    raw["sources"] = [s for s in raw["sources"] if s["kind"] != "corpus"]
    raw["sources"][0]["uri"] = str(handbook)
    raw["rag"].update(golden_set=None, min_recall=0.0)
    raw["pretrain"].update(output_shards=1, dedup_partitions=1)
    project.config.write_text(yaml.safe_dump(raw))

    for dag_id in DAGS:
        run = run_dag(dag_id, day=10)
        assert run.state == "success", (dag_id, task_states(run))

    logs = capfd.readouterr()
    places = {
        "task logs": logs.out + logs.err + caplog.text,
        "metadata DB": Path(os.environ["AIRFLOW_HOME"], "airflow.db").read_bytes().decode("latin-1"),
        "lake": _lake_text(fs, f"{bucket}/lake"),
    }
    assert (
        "rag.index" in places["task logs"] or "rag release" in places["task logs"]
    )  # the logs were captured
    assert len(places["lake"]) > 10_000
    from feedstock.cli import main

    assert main(["catalog", "--json"]) == 0
    places["catalog"] = capfd.readouterr().out
    leaks = [
        (name, where) for name, value in secrets.items() for where, text in places.items() if value in text
    ]
    assert leaks == []
