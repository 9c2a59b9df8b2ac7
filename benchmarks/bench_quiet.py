"""Quiet runs are cheap: a feed run with nothing new against a run with one document changed.

``airflow dags test <feed>`` on the shipped configuration (private AIRFLOW_HOME, lake and copies of the sample
data), as a user runs it from the shell: after a first full build, one handbook document is edited and ingested,
and the feed's run with that one change is timed; then the feed runs again with nothing changed. Wall time of the
whole command (interpreter start, Airflow's CLI and in-process API server, DAG parse and the run), and the run's
own span (first task start to last task end, from the metadata DB: what a scheduled run costs, where the
interpreter and the API server are already up), each feed in the same benchmark run.

Targets (issue 8): a no-change run under 15 s and under 10% of the one-document-changed run.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml

from benchmarks.airflow_home import dags_test_env

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "include" / "sample_data"


def _dags_test(env: dict[str, str], dag_id: str, day: str) -> tuple[float, float]:
    """Wall time of ``airflow dags test`` and the span of the run's task instances, in seconds."""
    start = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "test", dag_id, day],
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if run.returncode != 0 or "state=failed" in run.stdout + run.stderr:
        raise RuntimeError(f"{dag_id} failed: {run.stdout[-1500:]} {run.stderr[-1500:]}")
    db = sqlite3.connect(Path(env["AIRFLOW_HOME"]) / "airflow.db")
    try:
        first, last = db.execute(
            """select min(start_date), max(end_date) from task_instance where run_id = (
                   select run_id from dag_run where dag_id = ? order by id desc limit 1) and dag_id = ?""",
            (dag_id, dag_id),
        ).fetchone()
    finally:
        db.close()
    span = (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds()
    return seconds, span


def run() -> dict:
    results = {}
    with tempfile.TemporaryDirectory(prefix="feedstock-quiet-") as tmp:
        home = Path(tmp)
        shutil.copytree(SAMPLE / "handbook", home / "handbook")
        subprocess.run(
            [sys.executable, str(SAMPLE / "warehouse" / "build_seed.py"), str(home / "warehouse.sqlite")],
            check=True,
            capture_output=True,
        )
        raw = yaml.safe_load((ROOT / "include" / "config" / "feedstock.yaml").read_text())
        raw["lake"] = str(home / "lake")
        next(s for s in raw["sources"] if s["name"] == "handbook")["uri"] = str(home / "handbook")
        (home / "feedstock.yaml").write_text(yaml.safe_dump(raw))
        env = dags_test_env(home, f"sqlite:///{home / 'warehouse.sqlite'}")
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True
        )
        for dag_id in ("ingest_documents", "ingest_warehouse"):
            _dags_test(env, dag_id, "2026-11-20")
        edited = home / "handbook" / "policies" / "pto_policy.md"
        for number, feed in enumerate(("rag_feed", "pretrain_feed")):
            full, _ = _dags_test(env, feed, "2026-11-20")
            edited.write_text(
                edited.read_text() + f"\n\nEdit {number}: carry-over days expire on 31 March.\n"
            )
            _dags_test(env, "ingest_documents", f"2026-11-2{1 + number}")
            changed, changed_span = _dags_test(env, feed, f"2026-11-2{1 + number}")
            quiet, quiet_span = _dags_test(env, feed, f"2026-11-2{1 + number}")
            results[feed] = {
                "first_build_command_s": round(full, 1),
                "one_document_changed_command_s": round(changed, 1),
                "no_change_command_s": round(quiet, 1),
                "no_change_vs_one_changed_command": round(quiet / changed, 3),
                "one_document_changed_run_s": round(changed_span, 1),
                "no_change_run_s": round(quiet_span, 1),
                "no_change_vs_one_changed_run": round(quiet_span / changed_span, 3),
            }
    return results


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
