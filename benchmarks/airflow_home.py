"""The environment of a private Airflow instance for the benchmarks that run ``airflow dags test``."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def dags_test_env(home: Path, warehouse_url: str) -> dict[str, str]:
    """This process's environment plus a private AIRFLOW_HOME, config and dbt folder under ``home``."""
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home / "airflow"),
        "FEEDSTOCK_CONFIG": str(home / "feedstock.yaml"),
        "FEEDSTOCK_DBT_DIR": str(home / "dbt"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRFLOW_CONN_WAREHOUSE_DEFAULT": warehouse_url,
    }
