"""The feeds on a real CeleryExecutor deployment (PostgreSQL, Redis, api-server, scheduler, dag-processor and two
workers, started by :mod:`tests.celery_cluster`), with a worker lost in the middle of the pretraining feed.

Both ingestion DAGs, then ``rag_feed`` and ``pretrain_feed`` side by side, run on the sample data to success.
While a mapped ``process`` task of ``pretrain_feed`` runs, its worker is SIGKILLed with everything it started,
as a lost machine would be. The scheduler notices the task's missing heartbeats, and the retry runs on the other
worker. The release is byte-identical to the one ``airflow dags test`` (LocalExecutor, one task at a time)
publishes from the same configuration and data in a second, private lake and AIRFLOW_HOME, which runs in the
background meanwhile.

The deployment creates no run by itself (``use_job_schedule`` off): the test triggers each DAG once, so
``rag_feed`` runs once, after ingestion, instead of also on each ingestion's asset events.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from feedstock.lake import Lake
from feedstock.pretrain import feed
from feedstock.rag import index
from tests.celery_cluster import ROOT, SETTINGS, Cluster, base_env, celery_cluster, sample_project

DAY = "2026-11-20"
LOGICAL_DATE = f"{DAY}T00:00:00Z"
PRETRAIN = {"output_shards": 2, "dedup_partitions": 2}  # fewer mapped tasks than the shipped 4: a quicker run


def release_hashes(lake: str, release: int = 1) -> dict[str, str]:
    """sha256 of every token and text shard of a pretraining release."""
    folder = Path(feed.release_dir(Lake(lake), release))
    files = [p for p in sorted(folder.glob("shard-*")) if p.suffix in (".bin", ".idx", ".parquet")]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def start_reference(folder: Path) -> tuple[subprocess.Popen, Path, str]:
    """``airflow dags test`` of both ingestions and pretrain_feed in a private AIRFLOW_HOME (SQLite,
    LocalExecutor) and lake, in the background; returns the process, its log and its lake."""
    project_env = sample_project(folder, **PRETRAIN)
    env = {**base_env(folder / "airflow", project_env), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    airflow = f"{sys.executable} -m airflow"
    script = " && ".join(
        [f"{airflow} db migrate"]
        + [
            f"{airflow} dags test {dag_id} {DAY}"
            for dag_id in ("ingest_documents", "ingest_warehouse", "pretrain_feed")
        ]
    )
    log = folder / "reference.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            ["bash", "-c", script],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process, log, str(folder / "lake")


def running_process_task(cluster: Cluster, run_id: str, timeout: float = 600) -> tuple[int, str]:
    """The first mapped ``process`` task seen running, and the worker it runs on."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for ti in cluster.task_instances("pretrain_feed", run_id, "process"):
            if ti["state"] == "running" and (worker := cluster.worker_of(ti["pid"])):
                return ti["map_index"], worker
        state = cluster.run_state("pretrain_feed", run_id)
        assert state not in ("success", "failed"), (
            f"pretrain_feed {state} before a process task was seen running"
        )
        time.sleep(0.3)
    raise TimeoutError("no process task ran")


@pytest.mark.slow
def test_feeds_on_celery_survive_a_lost_worker(tmp_path):
    started = time.monotonic()
    reference, reference_log, reference_lake = start_reference(tmp_path / "reference")
    project_env = sample_project(tmp_path / "celery", **PRETRAIN)
    lake = str(tmp_path / "celery" / "lake")
    try:
        with celery_cluster(tmp_path / "cluster", project_env, workers=2) as cluster:
            print(f"deployment up after {time.monotonic() - started:.0f}s")
            ingestion = {
                dag_id: cluster.trigger(dag_id, LOGICAL_DATE)
                for dag_id in ("ingest_documents", "ingest_warehouse")
            }
            for dag_id, run_id in ingestion.items():
                cluster.wait_for_run(dag_id, run_id)
            # The ingestion tasks emitted their Assets from the workers (through the execution API).
            events = {
                "/".join(e["uri"].split("/")[-2:])
                for e in cluster.api("GET", "/assets/events?limit=100")["asset_events"]
            }
            assert {"documents/handbook", "warehouse/tickets", "warehouse/products"} <= events, events
            print(f"ingested after {time.monotonic() - started:.0f}s")

            pretrain = cluster.trigger("pretrain_feed", LOGICAL_DATE)
            rag = cluster.trigger("rag_feed", LOGICAL_DATE)
            map_index, lost = running_process_task(cluster, pretrain)
            cluster.kill_worker(lost)
            killed_at = time.monotonic()
            print(f"killed {lost} running process[{map_index}] after {killed_at - started:.0f}s")
            survivor = next(iter(cluster.workers()))
            cluster.wait_for_run("pretrain_feed", pretrain)
            cluster.wait_for_run("rag_feed", rag)
            print(f"feeds done after {time.monotonic() - started:.0f}s")

            # The lost try failed on its missing heartbeats, and the task's retry ran on the other worker.
            tries = cluster.tries("pretrain_feed", pretrain, "process", map_index)
            assert [t["state"] for t in tries][-1] == "success" and len(tries) >= 2, tries
            assert tries[0]["state"] in ("failed", "up_for_retry"), tries
            scheduler_log = cluster.processes["scheduler"].tail(chars=10**9)
            assert "Detected a task instance without a heartbeat" in scheduler_log
            attempt = re.compile(
                rf"task_id='process', dag_id='pretrain_feed', run_id='{re.escape(pretrain)}', "
                rf"try_number={tries[-1]['try_number']}, dag_version_id=UUID\('[^']*'\), map_index={map_index},"
            )
            ran_on = [
                name
                for name, p in cluster.processes.items()
                if "worker" in name and attempt.search(p.tail(chars=10**9))
            ]
            assert ran_on == [survivor], ran_on
            rag_stats = Lake(lake).last_commit(index.INDEX_TABLE)["stats"]
            assert rag_stats["chunks_total"] > 100 and rag_stats["recall_at_5"] >= 0.8, rag_stats
    except BaseException:
        os.killpg(reference.pid, signal.SIGKILL)
        reference.wait()
        raise
    reference.wait(timeout=900)
    assert reference.returncode == 0, reference_log.read_text()[-4000:]
    print(f"reference done after {time.monotonic() - started:.0f}s")

    stats = Lake(lake).last_commit(feed.RELEASE)["stats"]
    assert stats["docs_published"] > 40 and stats["shards_quarantined"], stats
    celery_release, local_release = release_hashes(lake), release_hashes(reference_lake)
    assert len(celery_release) == 3 * PRETRAIN["output_shards"], celery_release
    assert celery_release == local_release


def test_compose_uses_the_tested_settings():
    """docker-compose.yaml runs with the settings this test proves (hostnames aside)."""
    compose = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    env = compose["x-feedstock"]["environment"]
    assert {k: env.get(k) for k in SETTINGS} == SETTINGS
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].endswith(":8080/execution/")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql+psycopg2://")
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
    assert {"AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__FERNET_KEY"} <= set(env)
    assert "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE" not in env  # the test's own: production runs on schedules
