"""Set up the Airflow instance feedstock runs in: ``airflow.cfg``, the metadata DB, pools and sample connection.

``make setup`` runs it for ``./airflow_home``; ``make run`` (``airflow standalone``), a shell with
``AIRFLOW_HOME=$PWD/airflow_home`` and ``tests/integration/test_shell.py`` (on a temporary home) then all see
the same DAG folder, plugins, pools, connections and settings, because they live in the instance, not in
environment variables.

It is idempotent: Airflow writes its default ``airflow.cfg`` (with a generated Fernet key and JWT secret) the
first time; each run then sets the options below in place, migrates the DB, sets the pools, creates the sample
connection unless a connection of that name already exists (an edited one is kept) and serializes the DAGs.

Usage::

    .venv/bin/python include/setup_airflow.py [AIRFLOW_HOME] [--warehouse PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_WAREHOUSE = ROOT / "data" / "warehouse.sqlite"
POOLS = {
    "feedstock_duckdb": "dbt tasks: one DuckDB writer at a time",
    "feedstock_pretrain_release": "pretraining releases: one at a time",
}


def cores() -> int:
    """The CPUs this process may use, as ``nproc`` counts them."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def lineage_transport(home: Path) -> dict[str, str]:
    """Where OpenLineage events go: Marquez (or any OpenLineage HTTP endpoint) when ``OPENLINEAGE_URL`` is set at
    set-up, else a JSON-lines file in the Airflow home."""
    if url := os.environ.get("OPENLINEAGE_URL"):
        return {"type": "http", "url": url}
    return {"type": "file", "log_file_path": str(home / "openlineage" / "events.jsonl"), "append": True}


def options(
    root: Path = ROOT, slots: int | None = None, home: Path | None = None
) -> dict[str, dict[str, str]]:
    """The ``airflow.cfg`` options feedstock sets, by section; task slots follow the machine's cores."""
    slots = slots or cores()
    home = home or Path(os.environ.get("AIRFLOW_HOME", root / "airflow_home"))
    return {
        "core": {
            "dags_folder": str(root / "dags"),
            "plugins_folder": str(root / "plugins"),
            "load_examples": "False",
            "executor": "LocalExecutor",
            # Tasks are CPU-bound (parsing, DuckDB, embedding): more at once than cores only adds memory.
            "parallelism": str(slots),
            "max_active_tasks_per_dag": str(slots),
            "default_pool_task_slot_count": str(slots),
            "dags_are_paused_at_creation": "False",
        },
        "usage_data_collection": {"enabled": "False"},
        "cosmos": {"enable_telemetry": "False"},
        # Every task that reads or writes the lake reports those tables (feedstock_airflow._report_lineage).
        "openlineage": {
            "transport": json.dumps(lineage_transport(home)),
            "namespace": "feedstock",
            "execute_in_thread": "True",  # not a fork of the task process per event (forks of it can hang)
        },
    }


def set_options(text: str, wanted: dict[str, dict[str, str]]) -> str:
    """Set options in an ini text in place, keeping its comments.

    An option is replaced where it is set, or where Airflow's template shows it commented out (``# key =``);
    otherwise it is added at the end of its section, and a missing section is added at the end of the file.
    """
    lines = text.splitlines()
    for section, values in wanted.items():
        header = f"[{section}]"
        if header not in (line.strip() for line in lines):
            lines += ["", header]
        start = next(i for i, line in enumerate(lines) if line.strip() == header) + 1
        end = next((i for i in range(start, len(lines)) if lines[i].startswith("[")), len(lines))
        for key, value in values.items():
            pattern = re.compile(rf"^(#\s*)?{re.escape(key)}\s*=")
            found = [i for i in range(start, end) if pattern.match(lines[i])]
            set_line = [i for i in found if not lines[i].startswith("#")]
            line = f"{key} = {value}"
            if set_line or found:
                lines[(set_line or found)[0]] = line
            else:
                # Before the blank lines that close the section.
                while end > start and not lines[end - 1].strip():
                    end -= 1
                lines.insert(end, line)
                end += 1
    return "\n".join(lines) + "\n"


def airflow(home: Path, *args: str) -> None:
    env = {**os.environ, "AIRFLOW_HOME": str(home)}
    env.pop("AIRFLOW_CONFIG", None)  # the instance's own airflow.cfg, whatever the shell had
    result = subprocess.run([sys.executable, "-m", "airflow", *args], env=env, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"airflow {' '.join(args)} failed:\n{result.stdout}{result.stderr}")


def set_up(home: Path, warehouse: Path = SAMPLE_WAREHOUSE) -> Path:
    """Configure, migrate and populate the Airflow instance at ``home``; return its ``airflow.cfg``."""
    home = home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "airflow.cfg"
    if not cfg.exists():
        airflow(home, "config", "get-value", "core", "executor")  # Airflow writes its default airflow.cfg
    (home / "openlineage").mkdir(exist_ok=True)
    cfg.write_text(set_options(cfg.read_text(), options(home=home)))
    airflow(home, "db", "migrate")
    with tempfile.TemporaryDirectory() as scratch:
        pools = Path(scratch, "pools.json")
        pools.write_text(
            json.dumps(
                {
                    "default_pool": {"slots": cores(), "description": "Default pool: one slot per core"},
                    **{name: {"slots": 1, "description": text} for name, text in POOLS.items()},
                }
            )
        )
        airflow(home, "pools", "import", str(pools))
        connections = Path(scratch, "connections.json")
        connections.write_text(json.dumps({"warehouse_default": f"sqlite:///{warehouse.resolve()}"}))
        airflow(home, "connections", "import", str(connections))  # skips one that exists
    # The DAGs into the metadata DB, so `dags list`, `dags trigger` and `backfill create` find them before any
    # dag-processor (`make run`) has parsed the folder. A DAG that fails to import is listed by
    # `airflow dags list-import-errors`, and does not fail the set-up.
    airflow(home, "dags", "reserialize")
    return cfg


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "home", nargs="?", default=os.environ.get("AIRFLOW_HOME") or ROOT / "airflow_home", type=Path
    )
    parser.add_argument(
        "--warehouse", type=Path, default=SAMPLE_WAREHOUSE, help="the SQLite file of warehouse_default"
    )
    args = parser.parse_args(argv)
    cfg = set_up(args.home, args.warehouse)
    print(f"Airflow instance ready: {cfg} ({cores()} task slots)")


if __name__ == "__main__":
    main()
