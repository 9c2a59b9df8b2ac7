"""Test environment: a private AIRFLOW_HOME with a migrated metadata DB, telemetry off, nothing downloaded.

Fixtures give each test its own lake and configuration, a real S3 API (moto's threaded server on localhost), and
real databases (the machine's PostgreSQL, DuckDB and SQLite files) that the test creates and drops.
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
_HOME = tempfile.mkdtemp(prefix="feedstock-airflow-")
(Path(_HOME) / "openlineage").mkdir()
os.environ.update(
    AIRFLOW_HOME=_HOME,
    AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
    AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"),
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    AIRFLOW__CORE__UNIT_TEST_MODE="False",
    AIRFLOW__USAGE_DATA_COLLECTION__ENABLED="False",
    AIRFLOW__COSMOS__ENABLE_TELEMETRY="False",
    SCARF_ANALYTICS="false",
    DO_NOT_TRACK="1",
    DBT_SEND_ANONYMOUS_USAGE_STATS="False",
    HF_HUB_OFFLINE="1",
    TRANSFORMERS_OFFLINE="1",
    FEEDSTOCK_RETRY_DELAY_S="0",
    # OpenLineage events of every run, to a file the lineage tests read (as `make run` configures it).
    AIRFLOW__OPENLINEAGE__TRANSPORT=json.dumps(
        {"type": "file", "log_file_path": str(Path(_HOME) / "openlineage" / "events.jsonl"), "append": True}
    ),
    AIRFLOW__OPENLINEAGE__NAMESPACE="feedstock",
    # Emit from a thread, not a forked child: a fork of this many-threaded process can hang (its lingering
    # children held up the failing-run tests for minutes at a time).
    AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD="True",
    # No DAG-run events: in dag.test() the provider sends them through a ProcessPoolExecutor forked from this
    # process, whose workers hang, and every task's end then waits 30 s for the pool to shut down. The tests
    # read the task events, which carry the datasets.
    AIRFLOW__OPENLINEAGE__EMISSION_POLICY=json.dumps([{"scope": {}, "controls": {"emit_dag_events": False}}]),
)
for folder in ("dags", "plugins"):
    if str(ROOT / folder) not in sys.path:
        sys.path.insert(0, str(ROOT / folder))

SAMPLE = ROOT / "include" / "sample_data"


@pytest.fixture(autouse=True)
def restore_environment():
    """dag.test runs cosmos' dbt tasks in the test process, and they leave their env (lake, AWS) behind."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session", autouse=True)
def airflow_db():
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    yield


def write_config(path: Path, lake: str, sources: list[dict], **extra) -> Path:
    path.write_text(yaml.safe_dump({"lake": lake, "sources": sources, **extra}))
    return path


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A private lake and config file; returns a helper to (re)write the sources."""

    class Project:
        lake = str(tmp_path / "lake")
        config = tmp_path / "feedstock.yaml"

        def configure(self, sources: list[dict], lake: str | None = None, **extra) -> None:
            if lake:
                self.lake = lake
            write_config(self.config, self.lake, sources, **extra)

    monkeypatch.setenv("FEEDSTOCK_CONFIG", str(Project.config))
    monkeypatch.delenv("FEEDSTOCK_LAKE", raising=False)
    return Project()


def run_dag(dag_id: str, day: int = 20, month: int = 11):
    """Run a DAG end to end with ``dag.test()`` for the interval ending at the given 2026 date."""
    module = importlib.import_module(dag_id)
    dag = getattr(module, dag_id)()
    return dag.test(logical_date=datetime(2026, month, day, tzinfo=UTC))


def task_states(dag_run) -> dict[str, str]:
    return {f"{ti.task_id}[{ti.map_index}]": ti.state for ti in dag_run.get_task_instances()}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on localhost, reached through s3fs and delta-rs exactly as a real endpoint would be.

    It runs in its own process: delta-rs holds the GIL in some calls, which would starve an in-process
    (threaded) server of the same interpreter and deadlock the request.
    """
    import time
    import urllib.request

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    yield endpoint
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture
def s3(s3_server, monkeypatch):
    """A fresh bucket on the moto server; AWS_* variables point every client at it."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem(endpoint_url=s3_server, key="testing", secret="testing")
    bucket = f"feedstock-{uuid.uuid4().hex[:8]}"
    fs.mkdir(bucket)
    yield fs, bucket


@pytest.fixture
def postgres_db():
    """A PostgreSQL database on the machine's server, created for the test and dropped after it."""
    import psycopg2

    name = f"feedstock_test_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    admin.autocommit = True
    admin.cursor().execute(f"create database {name}")
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.cursor().execute(f"drop database if exists {name} with (force)")
        admin.close()


@pytest.fixture
def openai_server():
    """Start our OpenAI-compatible embeddings server in a given mode; yields a function returning its URL."""
    import time
    import urllib.request

    servers = []

    def start(mode: str = "ok") -> str:
        port = _free_port()
        servers.append(
            subprocess.Popen([sys.executable, "-m", "tests.openai_server", str(port), mode], cwd=ROOT)
        )
        url = f"http://127.0.0.1:{port}"
        for _ in range(1200):  # loading the model takes a few seconds, longer on a busy machine
            try:
                urllib.request.urlopen(url, timeout=1)
                return f"{url}/v1"
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("embedding server did not start")

    yield start
    for server in servers:
        server.terminate()
        server.wait(timeout=10)
