"""A real CeleryExecutor deployment of feedstock on this machine, without Docker, for tests and benchmarks.

:func:`celery_cluster` starts what ``docker-compose.yaml`` runs, as local processes: ``airflow api-server``,
``scheduler``, ``dag-processor`` and N ``airflow celery worker`` processes (``--concurrency 1`` each, distinct
``--celery-hostname``), on a PostgreSQL metadata DB of its own (created, then dropped) and a Redis broker db of
its own (claimed among 8-15, emptied, flushed on exit), in a private AIRFLOW_HOME, with the repo's ``dags/`` and ``plugins/``. It
waits until the api-server, the scheduler, the dag-processor and every worker answer and the DAGs are parsed,
and on exit stops every process group (SIGTERM, then SIGKILL), printing the tail of each process's log when
the block failed.

:data:`SETTINGS` are the deployment's ``AIRFLOW__*`` settings; ``docker-compose.yaml`` uses the same names and
values (with its own hostnames). :func:`sample_project` writes the private lake, configuration and copies of
the sample data that a deployment runs on.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "include" / "sample_data"
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
REDIS = ("127.0.0.1", 6379)
TERMINAL = {"success", "failed"}
FEED_DAGS = ("ingest_documents", "ingest_warehouse", "rag_feed", "pretrain_feed")

# The settings the Celery test proves; docker-compose.yaml sets the same (hostnames aside).
SETTINGS = {
    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
    "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
    # One task per worker slot at a time; a worker holds no message it is not running (acks_late with a
    # prefetch of 1), so a lost worker loses only the tasks it was running.
    "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
    "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
    "AIRFLOW__CELERY__TASK_ACKS_LATE": "True",
    # A message a worker took and never acknowledged (the worker died) is redelivered after this long; by then
    # the scheduler has long retried the task (below), and the stale message's try is refused by the API. It
    # must exceed the longest task, or a running task's message is delivered a second time.
    "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "86400",
    # A task whose worker is gone stops heartbeating (every 5 s, [workers] min_heartbeat_interval): after 30 s
    # (default 300) the scheduler fails that try and queues the retry, checking every 5 s (default 10).
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    # rag_feed and pretrain_feed run `dbt ls` (cosmos) when parsed: 10-35 s on a busy 2-core machine, past the
    # default 30 s import timeout (the DAGs then vanish with an import error). Parsing every 5 min instead of
    # every 30 s also keeps the dag-processor from taking a core away from the workers.
    "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
    "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "180",
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "300",
    "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
    "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
}
TELEMETRY_OFF = {
    "SCARF_ANALYTICS": "false",
    "DO_NOT_TRACK": "1",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}
POOLS = {
    "feedstock_duckdb": "dbt tasks: one DuckDB writer at a time",
    "feedstock_pretrain_release": "pretraining releases: one at a time",
}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sample_project(folder: Path, corpus: Path | None = None, **pretrain: Any) -> dict[str, str]:
    """A private lake and configuration (the shipped one) on copies of the sample data; returns its env.

    ``corpus`` replaces the sample corpus (used as is, not copied); ``pretrain`` overrides pretrain settings.
    """
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "data"
    if not data.exists():
        shutil.copytree(SAMPLE / "handbook", data / "handbook")
        shutil.copytree(SAMPLE / "corpus", data / "corpus", ignore=shutil.ignore_patterns("*.py"))
        subprocess.run(
            [sys.executable, str(SAMPLE / "warehouse" / "build_seed.py"), str(data / "warehouse.sqlite")],
            check=True,
            capture_output=True,
        )
    raw = yaml.safe_load((ROOT / "include" / "config" / "feedstock.yaml").read_text())
    raw["lake"] = str(folder / "lake")
    by_name = {s["name"]: s for s in raw["sources"]}
    by_name["handbook"]["uri"] = str(data / "handbook")
    by_name["crawl"]["uri"] = str(corpus or data / "corpus")
    raw["rag"]["golden_set"] = str(ROOT / raw["rag"]["golden_set"])
    raw["pretrain"].update(pretrain)
    config = folder / "feedstock.yaml"
    config.write_text(yaml.safe_dump(raw))
    return {
        "FEEDSTOCK_CONFIG": str(config),
        "FEEDSTOCK_DBT_DIR": str(folder / "dbt"),  # the per-run DuckDB files: storage every worker shares
        "AIRFLOW_CONN_WAREHOUSE_DEFAULT": f"sqlite:///{data / 'warehouse.sqlite'}",
    }


def base_env(home: Path, project_env: dict[str, str]) -> dict[str, str]:
    """This machine's environment without any Airflow or feedstock setting, plus the project's."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "FEEDSTOCK_", "AWS_", "PYTEST_")) and k != "VIRTUAL_ENV"
    }
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"  # dbt, as the tasks find it
    return {
        **env,
        **TELEMETRY_OFF,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "FEEDSTOCK_RETRY_DELAY_S": "0",
        **project_env,
    }


@dataclass
class Process:
    name: str
    command: list[str]
    log: Path
    popen: subprocess.Popen | None = None

    def tail(self, chars: int = 3000) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return text[-chars:]


@dataclass
class Cluster:
    """A running deployment: its environment, REST API and processes."""

    env: dict[str, str]
    api_url: str
    broker_url: str
    home: Path
    processes: dict[str, Process] = field(default_factory=dict)
    _token: str | None = None

    # ---- commands and the REST API ----

    def airflow(self, *args: str, timeout: float = 300) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode:
            raise RuntimeError(
                f"airflow {' '.join(args)} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
            )
        return result.stdout

    def token(self) -> str:
        if self._token is None:
            # The password the simple auth manager generated for SIMPLE_AUTH_MANAGER_USERS=admin:admin.
            password = json.loads((self.home / "simple_auth_manager_passwords.json.generated").read_text())
            body = json.dumps({"username": "admin", "password": password["admin"]}).encode()
            self._token = self._request("POST", "/auth/token", body, auth=False)["access_token"]
        return self._token

    def api(self, method: str, path: str, body: dict | None = None) -> Any:
        return self._request(
            method, f"/api/v2{path}", json.dumps(body).encode() if body is not None else None
        )

    def _request(self, method: str, path: str, data: bytes | None, auth: bool = True) -> Any:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        request = urllib.request.Request(self.api_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{method} {path}: {exc.code} {exc.read()[:2000]!r}") from None

    def pause(self, dag_id: str, paused: bool = True) -> None:
        self.api("PATCH", f"/dags/{dag_id}", {"is_paused": paused})

    def trigger(self, dag_id: str, logical_date: str, conf: dict | None = None) -> str:
        """Trigger a run for ``logical_date`` (its data interval as ``airflow dags test`` infers it)."""
        run = self.api(
            "POST",
            f"/dags/{dag_id}/dagRuns",
            {"logical_date": logical_date, "run_after": logical_date, "conf": conf or {}},
        )
        return run["dag_run_id"]

    def runs(self, dag_id: str) -> list[dict]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns?limit=100")["dag_runs"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}")["state"]

    def task_instances(self, dag_id: str, run_id: str, task_id: str | None = None) -> list[dict]:
        query = "?limit=1000" + (f"&task_id={task_id}" if task_id else "")
        path = f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances{query}"
        return self.api("GET", path)["task_instances"]

    def tries(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> list[dict]:
        path = f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/{task_id}"
        return self.api("GET", f"{path}/{map_index}/tries")["task_instances"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 900) -> str:
        """Poll until the run is in a terminal state; a failed run raises with its task states."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.run_state(dag_id, run_id)
            if state in TERMINAL:
                if state != "success":
                    raise RuntimeError(f"{dag_id} {run_id} {state}: {self.describe(dag_id, run_id)}")
                return state
            self.check_alive()
            time.sleep(2)
        raise TimeoutError(
            f"{dag_id} {run_id} still running after {timeout}s: {self.describe(dag_id, run_id)}"
        )

    def describe(self, dag_id: str, run_id: str) -> dict[str, str]:
        return {
            f"{t['task_id']}[{t['map_index']}]": f"{t['state']} (try {t['try_number']})"
            for t in self.task_instances(dag_id, run_id)
        }

    # ---- processes ----

    def check_alive(self) -> None:
        for process in self.processes.values():
            if process.popen and process.popen.poll() is not None and not process.name.startswith("killed:"):
                raise RuntimeError(
                    f"{process.name} exited with {process.popen.returncode}:\n{process.tail()}"
                )

    def workers(self) -> dict[str, Process]:
        return {name: p for name, p in self.processes.items() if name.startswith("worker")}

    def worker_of(self, pid: int | None) -> str | None:
        """The worker a task process (by pid) runs under, or None."""
        import psutil

        try:
            ancestors = {p.pid for p in psutil.Process(pid).parents()} if pid else set()
        except psutil.Error:
            return None
        return next((n for n, p in self.workers().items() if p.popen and p.popen.pid in ancestors), None)

    def kill_worker(self, name: str) -> None:
        """SIGKILL a worker as a lost machine: its process group and the process group of every descendant.

        The task supervisor starts each task process in a process group of its own, so killing only the
        worker's group would leave that task running, unsupervised.
        """
        process = self.processes.pop(name)
        process.name = f"killed:{name}"
        self.processes[process.name] = process
        _kill_tree(process.popen.pid, signal.SIGKILL)
        process.popen.wait(timeout=30)


def _descendant_groups(pid: int) -> set[int]:
    import psutil

    groups = set()
    try:
        for child in psutil.Process(pid).children(recursive=True):
            try:
                groups.add(os.getpgid(child.pid))
            except ProcessLookupError:
                pass
    except psutil.Error:
        pass
    groups.discard(os.getpgrp())  # never this process's own
    return groups


def _kill_tree(pid: int, sig: int) -> None:
    for group in {pid, *_descendant_groups(pid)}:
        try:
            os.killpg(group, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _wait(what: str, check, timeout: float, cluster: Cluster) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        cluster.check_alive()
        try:
            value = check()
            if value:
                return value
        except AssertionError:
            raise
        except Exception as exc:  # noqa: BLE001 - not up yet: ask again
            last = exc
        time.sleep(1)
    raise TimeoutError(f"{what} not ready after {timeout}s (last error: {last!r})")


def _create_database(name: str) -> None:
    import psycopg2

    admin = psycopg2.connect(dbname="postgres", **PG)
    admin.autocommit = True
    admin.cursor().execute(f"create database {name}")
    admin.close()


def _drop_database(name: str) -> None:
    import psycopg2

    admin = psycopg2.connect(dbname="postgres", **PG)
    admin.autocommit = True
    admin.cursor().execute(f"drop database if exists {name} with (force)")
    admin.close()


CLAIM = "feedstock:celery_cluster:owner"  # the key that marks a Redis db as one running deployment's


def _claim_redis_db(owner: str, first: int = 8, last: int = 15) -> int:
    """A Redis db number no other deployment holds (a CI run and a developer's run may share the server),
    claimed by a key and emptied of everything else. A claim left by a killed run expires after 4 hours."""
    import redis

    for db in range(first, last + 1):
        client = redis.Redis(host=REDIS[0], port=REDIS[1], db=db)
        try:
            if client.set(CLAIM, owner, nx=True, ex=4 * 3600):
                for key in client.scan_iter():
                    if key != CLAIM.encode():
                        client.delete(key)
                return db
        finally:
            client.close()
    raise RuntimeError(f"Redis dbs {first}-{last} are all claimed by other deployments ({CLAIM})")


def _flush_redis(db: int) -> None:
    import redis

    client = redis.Redis(host=REDIS[0], port=REDIS[1], db=db)
    client.flushdb()
    client.close()


def _ping_workers(broker_url: str, names: list[str]) -> bool:
    from celery import Celery

    app = Celery(broker=broker_url)
    try:
        replies = app.control.ping(timeout=1.0)
    finally:
        app.close()
    answered = {host.split("@")[0] for reply in replies for host in reply}
    return set(names) <= answered


@contextmanager
def celery_cluster(
    folder: Path,
    project_env: dict[str, str],
    *,
    workers: int = 2,
    dag_ids: tuple[str, ...] = FEED_DAGS,
    schedules: bool = False,
    startup_timeout: float = 600,
) -> Iterator[Cluster]:
    """Start the deployment under ``folder`` (AIRFLOW_HOME and logs) and yield it; stop and remove it on exit.

    The broker is a Redis db number of the deployment's own (claimed, emptied, and flushed on exit).
    Without ``schedules`` (the default) the scheduler creates no run by itself, neither from a DAG's timetable
    nor from asset events (``[scheduler] use_job_schedule = False``): a test runs exactly what it triggers.
    Unpaused, a DAG's cron timetable would otherwise start a run for its latest past cron time at once.
    """
    folder.mkdir(parents=True, exist_ok=True)
    home, logs = folder / "airflow", folder / "logs"
    logs.mkdir(exist_ok=True)
    database = f"feedstock_celery_{uuid.uuid4().hex[:8]}"
    redis_db = _claim_redis_db(database)
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    broker_url = f"redis://{REDIS[0]}:{REDIS[1]}/{redis_db}"
    pg = f"postgres@{PG['host']}:{PG['port']}/{database}"
    env = {
        **base_env(home, project_env),
        **SETTINGS,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{pg}",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql+psycopg2://{pg}",
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__CORE__FERNET_KEY": _fernet_key(),
    }
    if not schedules:
        env["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] = "False"
    cluster = Cluster(env=env, api_url=api_url, broker_url=broker_url, home=home)
    failed = True
    try:
        _create_database(database)
        cluster.airflow("db", "migrate", timeout=600)
        worker_names = [f"worker{i + 1}" for i in range(workers)]
        commands = {
            "api-server": ["api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            "scheduler": ["scheduler"],
            "dag-processor": ["dag-processor"],
            **{
                name: ["celery", "worker", "--concurrency", "1", "--celery-hostname", f"{name}@%h"]
                for name in worker_names
            },
        }
        for name, command in commands.items():
            process = Process(name, [sys.executable, "-m", "airflow", *command], logs / f"{name}.log")
            # Each process serves its task logs on a port of its own (the default 8793 is one per machine).
            process_env = {**env, "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())}
            with process.log.open("w") as log:
                process.popen = subprocess.Popen(
                    process.command,
                    env=process_env,
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # a process group of its own, to stop (or kill) as a whole
                )
            cluster.processes[name] = process

        # No task is queued before the DAGs are parsed and triggered, so everything starts at once.
        _wait("api-server", lambda: _get(f"{api_url}/execution/health") is not None, startup_timeout, cluster)
        for pool, description in POOLS.items():
            cluster.api("POST", "/pools", {"name": pool, "slots": 1, "description": description})

        def healthy() -> bool:
            health = _get(f"{api_url}/api/v2/monitor/health")
            return all(
                (health.get(part) or {}).get("status") == "healthy" for part in ("scheduler", "dag_processor")
            )

        _wait("scheduler and dag-processor", healthy, startup_timeout, cluster)
        _wait("workers", lambda: _ping_workers(broker_url, worker_names), startup_timeout, cluster)

        def parsed() -> bool:
            errors = cluster.api("GET", "/importErrors")["import_errors"]
            if errors:
                raise AssertionError(f"DAG import errors: {errors}")
            found = {d["dag_id"] for d in cluster.api("GET", "/dags?limit=100")["dags"]}
            return set(dag_ids) <= found

        _wait("DAGs", parsed, startup_timeout, cluster)
        yield cluster
        failed = False
    finally:
        if failed:
            for process in cluster.processes.values():
                print(f"\n===== {process.name} ({process.log}) =====\n{process.tail()}", file=sys.stderr)
        _stop(cluster)
        _drop_database(database)
        _flush_redis(redis_db)


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read() or b"null")


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def _stop(cluster: Cluster) -> None:
    """SIGTERM every process group (and its tasks' groups), then SIGKILL what is left after 30 s."""
    running = [p.popen for p in cluster.processes.values() if p.popen and p.popen.poll() is None]
    groups = {pid: _descendant_groups(pid) for pid in (p.pid for p in running)}
    for popen in running:
        try:
            os.killpg(popen.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 30
    for popen in running:
        try:
            popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for popen in running:
        for group in {popen.pid, *groups[popen.pid]}:
            try:
                os.killpg(group, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        popen.wait()
