"""The README's shell commands, in a shell that has only what the README's set-up step gives it.

The Airflow instance is a temporary one made by ``include/setup_airflow.py``, the script ``make setup`` runs.
Every command runs in a subprocess whose environment is what ``source .venv/bin/activate && export
AIRFLOW_HOME=...`` leaves (PATH with the venv first, VIRTUAL_ENV, HOME, AIRFLOW_HOME), plus FEEDSTOCK_LAKE and
FEEDSTOCK_CONFIG for a temporary lake: no AIRFLOW__* variable and no AIRFLOW_CONN_* connection.

``airflow backfill create`` only creates the runs (queued); a scheduler executes them, with an api-server for
its tasks' execution API: the two components of ``make run`` that matter here, started for the backfill and
stopped after it. They run without the DAGs' own schedules (``use_job_schedule`` off), so that only the
backfill runs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from feedstock.lake import Lake
from tests.conftest import ROOT, SAMPLE, _free_port

pytestmark = pytest.mark.slow
DAG_IDS = {path.stem for path in (ROOT / "dags").glob("*.py")}  # each DAG file is named after its DAG
BACKFILL = ["2026-11-01", "2026-11-03"]


@pytest.fixture(scope="module")
def shell(tmp_path_factory):
    """A fresh shell's environment, on a new Airflow instance, sample warehouse, lake and configuration."""
    tmp = tmp_path_factory.mktemp("shell")
    venv = ROOT / ".venv"
    env = {
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "VIRTUAL_ENV": str(venv),
        "HOME": os.environ["HOME"],
        "AIRFLOW_HOME": str(tmp / "airflow_home"),
        "FEEDSTOCK_LAKE": str(tmp / "lake"),
        "FEEDSTOCK_CONFIG": str(shutil.copy(ROOT / "include" / "config" / "feedstock.yaml", tmp)),
    }
    warehouse = tmp / "warehouse.sqlite"
    run(sys.executable, SAMPLE / "warehouse" / "build_seed.py", warehouse, env=env)
    run(
        sys.executable,
        ROOT / "include" / "setup_airflow.py",
        env["AIRFLOW_HOME"],
        "--warehouse",
        warehouse,
        env=env,
    )
    return env, warehouse


def run(*command, env: dict[str, str], timeout: float = 900) -> str:
    result = subprocess.run(
        [str(part) for part in command], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"{command} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout


def json_output(stdout: str):
    """The JSON a command printed, after any warning the CLI printed before it."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(("[", "{")))
    return json.loads("\n".join(lines[start:]))


def updated_by(warehouse: Path, day: str) -> int:
    """Tickets whose ``updated_at`` is at or before midnight (UTC) starting ``day``."""
    with sqlite3.connect(warehouse) as con:
        return con.execute(
            "select count(*) from tickets where updated_at <= ?", (f"{day} 00:00:00",)
        ).fetchone()[0]


def empty_staging_folders(lake: str) -> list[str]:
    staging = Path(lake) / "_staging"
    folders = [staging, *staging.rglob("*")] if staging.exists() else []
    return [str(f) for f in folders if f.is_dir() and not any(f.iterdir())]


@contextmanager
def scheduler(env: dict[str, str], logs: Path):
    """``make run``'s scheduler and api-server (the tasks' execution API) on free ports, stopped on exit."""
    port = _free_port()
    env = {
        **env,
        "AIRFLOW__API__BASE_URL": f"http://localhost:{port}",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
    }
    processes = []
    try:
        for name, command in (
            ("api-server", ["api-server", "--port", str(port)]),
            ("scheduler", ["scheduler"]),
        ):
            with open(logs / f"{name}.log", "w") as log:
                processes.append(
                    subprocess.Popen(
                        ["airflow", *command],
                        env=env,
                        cwd=ROOT,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
            if name == "api-server":  # tasks started before it answers would fail to reach it
                deadline = time.monotonic() + 300
                while True:
                    try:
                        urllib.request.urlopen(f"http://localhost:{port}/execution/health", timeout=2)
                        break
                    except OSError:
                        assert time.monotonic() < deadline, (logs / "api-server.log").read_text()[-4000:]
                        time.sleep(1)
        yield
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def backfill_runs(env: dict[str, str]) -> dict[str, str]:
    """State of each backfill run of ingest_warehouse, by logical date."""
    runs = json_output(run("airflow", "dags", "list-runs", "ingest_warehouse", "-o", "json", env=env))
    return {r["logical_date"][:10]: r["state"] for r in runs if r["run_id"].startswith("backfill__")}


def wait_for_backfill(env: dict[str, str], logs: Path, timeout: float = 900) -> dict[str, str]:
    """Poll the metadata DB (read only, cheap) until every backfill run has finished."""
    db = f"file:{env['AIRFLOW_HOME']}/airflow.db?mode=ro"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(5)
        try:
            with sqlite3.connect(db, uri=True, timeout=10) as con:
                states = con.execute(
                    "select state from dag_run where dag_id = 'ingest_warehouse' and run_type = 'backfill'"
                ).fetchall()
        except sqlite3.OperationalError:  # the scheduler holds the write lock: ask again
            continue
        if states and all(state in ("success", "failed") for (state,) in states):
            return backfill_runs(env)
    raise AssertionError(f"backfill did not finish:\n{(logs / 'scheduler.log').read_text()[-4000:]}")


def test_readme_commands_in_a_fresh_shell(shell, tmp_path):
    env, warehouse = shell
    lake = Lake(env["FEEDSTOCK_LAKE"])
    tickets = "bronze.warehouse.tickets"
    by_backfill_end, by_nov_20 = updated_by(warehouse, BACKFILL[1]), updated_by(warehouse, "2026-11-20")

    dags = json_output(run("airflow", "dags", "list", "-o", "json", env=env))
    assert {d["dag_id"] for d in dags} == DAG_IDS, "every feedstock DAG, and no example DAG"

    # A backfill creates its runs (dates inclusive), one active at a time; without a scheduler they only wait.
    backfill = "--dag-id ingest_warehouse --from-date {} --to-date {} --max-active-runs 1".format(*BACKFILL)
    run("airflow", "backfill", "create", *backfill.split(), env=env)
    days = ["2026-11-01", "2026-11-02", "2026-11-03"]
    assert backfill_runs(env) == dict.fromkeys(days, "queued")
    with scheduler(env, tmp_path):
        assert wait_for_backfill(env, tmp_path) == dict.fromkeys(days, "success")

    # Interval by interval: the first run read what was updated by its interval end, each later run only what
    # changed after the last committed watermark and by its own end.
    commits = [c for c in reversed(lake.history(tickets)) if "produced_by" in c]
    assert commits[0]["produced_by"]["run_id"] == "backfill__2026-11-01T00:00:00+00:00"
    assert commits[0]["stats"]["rows_read"] == updated_by(warehouse, "2026-11-01") > 0
    for commit in commits:
        assert str(commit["stats"]["watermark"]) <= f"{commit['produced_by']['run_id'][10:20]} 00:00:00"
    assert lake.read(tickets).num_rows == by_backfill_end
    assert not empty_staging_folders(env["FEEDSTOCK_LAKE"])

    # One run in the foreground: what was updated after the backfill, by 2026-11-20 00:00 and not later.
    run("airflow", "dags", "test", "ingest_warehouse", "2026-11-20", env=env)
    assert lake.last_commit(tickets)["stats"]["rows_read"] == by_nov_20 - by_backfill_end
    assert not empty_staging_folders(env["FEEDSTOCK_LAKE"])

    catalog = {entry["name"]: entry for entry in json_output(run("feedstock", "catalog", "--json", env=env))}
    assert catalog[tickets]["rows"] == by_nov_20 < updated_by(warehouse, "2026-11-21")
    assert catalog[tickets]["uri"].startswith(env["FEEDSTOCK_LAKE"])
