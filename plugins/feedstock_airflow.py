"""The thin layer between Airflow and the ``feedstock`` library, shared by every DAG.

It turns a task's context into the plain arguments the library takes (the configuration, the lake, the run's
``as_of`` time, ``produced_by``) and library errors into one-line task failures. The library itself never
imports Airflow.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import sys
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, BaseHook, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from feedstock.config import Config, load_config
from feedstock.errors import CommitConflict, ConfigError, ContractViolation, EmbeddingError, ReleaseConflict

if (
    TYPE_CHECKING
):  # the lake pulls in pyarrow, pandas and delta-rs: not at DAG parse time, which every task pays
    from feedstock.lake import Lake, S3Settings

DEFAULT_ARGS = {
    "retries": 2,
    "retry_delay": timedelta(seconds=float(os.environ.get("FEEDSTOCK_RETRY_DELAY_S", "60"))),
    "owner": "feedstock",
}
START_DATE = datetime(2026, 1, 1, tzinfo=UTC)
log = logging.getLogger("feedstock")


@contextmanager
def one_line_errors():
    """Fail the task, without retries, with the one-line message of a configuration or contract error."""
    try:
        yield
    except (
        CommitConflict,
        ConfigError,
        ContractViolation,
        FileNotFoundError,
        EmbeddingError,
        ReleaseConflict,
    ) as exc:
        log.error(str(exc))  # the reason first; Airflow's traceback of the failure follows
        raise AirflowFailException(str(exc)) from None


def config() -> Config:
    with one_line_errors():
        return load_config()


def source(cfg: Config, name: str):
    """The named source. A broken one fails its own task (and only it), with its one-line reason first in the log."""
    get_current_context()["source_label"] = name  # for map_index_template="{{ source_label }}"
    if problem := cfg.problem(name):
        log.error(problem)
        raise AirflowFailException(problem)
    return cfg.source(name)


def feed_config(feed: str) -> Config:
    """The configuration, with the run's ``sources`` param (from a UI trigger) narrowing ``feed``'s sources."""
    import dataclasses

    cfg = config()
    chosen = (get_current_context().get("params") or {}).get("sources") or []
    if not chosen:
        return cfg
    with one_line_errors():
        unknown = [name for name in chosen if name not in {s.name for s in (*cfg.sources, *cfg.broken)}]
        if unknown:
            raise ConfigError(f"param 'sources': unknown source '{unknown[0]}'")
    section = getattr(cfg, feed)
    return dataclasses.replace(cfg, **{feed: dataclasses.replace(section, sources=tuple(chosen))})


def s3_settings(conn_id: str | None) -> S3Settings:
    """S3 endpoint and keys from an Airflow connection (login/password, extra endpoint_url/region_name)."""
    from feedstock.lake import S3Settings

    if not conn_id:
        return S3Settings.from_env()
    conn = BaseHook.get_connection(conn_id)
    extra = conn.extra_dejson
    env = S3Settings.from_env()
    return S3Settings(
        endpoint_url=extra.get("endpoint_url") or env.endpoint_url,
        key=conn.login or env.key,
        secret=conn.password or env.secret,
        region=extra.get("region_name") or env.region,
    )


def lake(cfg: Config) -> Lake:
    from feedstock.lake import Lake, observe

    observe(_report_lineage)
    return Lake(cfg.lake, s3_settings(cfg.lake_aws_conn_id))


class _LakeLineage:
    """The context the lake's reads and writes are reported under, and the task they were last reported for."""

    task: tuple | None = None


_LAKE_LINEAGE = _LakeLineage()


def _report_lineage(kind: str, uri: str) -> None:
    """Each lake table (or source) a task reads or writes becomes an input or output of its OpenLineage events,
    through Airflow's hook-lineage collector (a no-op unless the openlineage provider is configured)."""
    from airflow.sdk.lineage import get_hook_lineage_collector

    try:
        ti = get_current_context()["ti"]
    except RuntimeError:  # the same process outside a task (a test, `dag.test()`'s caller): nothing to report
        return
    task = (ti.dag_id, ti.task_id, ti.run_id, ti.map_index)
    if task != _LAKE_LINEAGE.task:  # several tasks in one process (dag.test): each reports only its own
        get_hook_lineage_collector.cache_clear()
        _LAKE_LINEAGE.task = task
    collector = get_hook_lineage_collector()
    uri = uri if "://" in uri else "file://" + os.path.abspath(uri)
    add = collector.add_input_asset if kind == "read" else collector.add_output_asset
    add(context=_LAKE_LINEAGE, uri=uri)


def as_of(context: dict[str, Any]) -> datetime:
    """The run's point in time: the data interval end, never the wall clock (so reruns are identical)."""
    run = context["dag_run"]
    value = context.get("data_interval_end") or getattr(run, "run_after", None) or context.get("logical_date")
    return value.astimezone(UTC)


def run_key(context: dict[str, Any]) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", context["run_id"])


def produced_by(context: dict[str, Any]) -> dict[str, str]:
    return {"dag_id": context["dag"].dag_id, "task_id": context["task"].task_id, "run_id": context["run_id"]}


def asset(lake_: Lake, name: str) -> Asset:
    uri = lake_.uri(name)
    return Asset(name=name, uri=uri if "://" in uri else f"file://{uri}")


def sqlalchemy_url(conn_id: str):
    from feedstock.warehouse import sqlalchemy_url as url_for

    conn = BaseHook.get_connection(conn_id)
    return url_for(
        conn.conn_type, conn.host, conn.schema, conn.login, conn.password, conn.port, conn.extra_dejson
    )


DBT_PROJECT = Path(__file__).resolve().parents[1] / "dbt_project"
DBT_POOL = "feedstock_duckdb"  # one slot: dbt tasks never write one DuckDB file at the same time
RELEASE_POOL = "feedstock_pretrain_release"  # one slot: pretraining releases are published one at a time


def pretrain_run():
    """What every pretraining task needs: the feed module, the configuration, the lake and the run key."""
    from feedstock.pretrain import feed

    cfg = feed_config("pretrain")
    return feed, cfg, lake(cfg), run_key(get_current_context())


def finetune_run():
    """What every fine-tuning task needs: the feed module, the configuration, the lake and the run key."""
    from feedstock.finetune import feed

    cfg = feed_config("finetune")
    return feed, cfg, lake(cfg), run_key(get_current_context())


def dbt_env(context: dict[str, Any]) -> dict[str, str]:
    """What a feed's dbt tasks need: only the run's own DuckDB file, where ``prepare`` landed the sources.

    dbt never reads the lake, so no credential is passed to it (or stored in XCom).
    """
    return {"FEEDSTOCK_DUCKDB": dbt_run_file(context)}


def dbt_transform(select: list[str], exclude: list[str] | None = None):
    """The dbt models a feed needs, as a cosmos task group (a task per model and test) named ``transform``.

    The environment comes from the ``prepare`` task's ``env`` (see :func:`dbt_env`); every dbt task takes the
    one-slot DuckDB pool.
    """
    from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
    from cosmos.constants import InvocationMode, LoadMode, TestBehavior

    # Parsing the project is not news in every task's log; what dbt does when a task runs still is.
    logging.getLogger("cosmos").setLevel(logging.WARNING)
    logging.getLogger("cosmos.airflow.graph").setLevel(logging.ERROR)  # unit tests: run by each model's build
    logging.getLogger("cosmos.operators").setLevel(logging.INFO)
    logging.getLogger("cosmos.hooks").setLevel(logging.INFO)

    return DbtTaskGroup(
        group_id="transform",
        project_config=ProjectConfig(DBT_PROJECT),
        profile_config=ProfileConfig(
            profile_name="feedstock", target_name="lake", profiles_yml_filepath=DBT_PROJECT / "profiles.yml"
        ),
        execution_config=ExecutionConfig(
            dbt_executable_path=dbt_executable(), invocation_mode=InvocationMode.SUBPROCESS
        ),
        render_config=RenderConfig(
            load_method=LoadMode.DBT_LS,
            # `dbt build` per model: a model and its tests (and unit tests) are one task, so a feed run pays for
            # one dbt process per model instead of one per model and per test.
            test_behavior=TestBehavior.BUILD,
            select=select,
            exclude=exclude or [],
            should_detach_multiple_parents_tests=True,  # a relationships test runs after both its models
            emit_datasets=False,  # the Assets a user cares about are the lake's tables, not one per run file
        ),
        operator_args={
            "env": "{{ ti.xcom_pull(task_ids='prepare')['env'] }}",
            "append_env": True,
            "install_deps": False,
            "pool": DBT_POOL,
        },
        default_args={**DEFAULT_ARGS, "pool": DBT_POOL},
    )


@task
def cleanup_run_file(prepared: dict | None = None, **context) -> None:
    """Teardown: delete the run's DuckDB file, whatever happened to the run (even a failed ``prepare``)."""
    path = dbt_run_file(context)
    for suffix in ("", ".wal"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)


def values(mapped) -> list:
    """A mapped task's results, read by position: iterating the lazy sequence reads one past its end, which
    Airflow logs as an ERROR ("XCom not found") in a task that succeeded."""
    return [] if mapped is None else [mapped[i] for i in range(len(mapped))]


def dbt_executable() -> str:
    return shutil.which("dbt") or str(Path(sys.executable).with_name("dbt"))


def dbt_run_file(context: dict[str, Any]) -> str:
    """The run's own DuckDB file, on storage every worker shares (the project's data folder)."""
    folder = Path(os.environ.get("FEEDSTOCK_DBT_DIR") or DBT_PROJECT.parent / "data" / "dbt")
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / f"run_{hashlib.sha256(context['run_id'].encode()).hexdigest()[:16]}.duckdb")
