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
        # telemetry off however the benchmark is started (`make bench` exports the rest, `python -m` does not)
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
        "SCARF_ANALYTICS": "false",
        "DO_NOT_TRACK": "1",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
