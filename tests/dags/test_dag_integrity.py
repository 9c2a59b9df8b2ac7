"""Every DAG imports cleanly and carries the settings operators rely on (parametrized over the DAG files, one DAG
per file named after it, so a new DAG is covered without editing this file)."""

from __future__ import annotations

import os

import pytest
from airflow.dag_processing.dagbag import DagBag

from tests.conftest import ROOT


def _dagbag() -> DagBag:
    return DagBag(dag_folder=str(ROOT / "dags"))


DAG_IDS = sorted(path.stem for path in (ROOT / "dags").glob("*.py") if not path.name.startswith("_"))


@pytest.fixture(scope="module")
def dagbag():
    return _dagbag()  # after the session's metadata DB exists: cosmos caches its dbt listing in Variables


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


def test_every_dag_file_holds_its_dag(dagbag):
    assert set(DAG_IDS) == set(dagbag.dag_ids)


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_dag_settings(dagbag, dag_id):
    dag = dagbag.get_dag(dag_id)
    assert dag.tags and "feedstock" in dag.tags
    assert dag.doc_md and dag_id in dag.doc_md
    assert dag.schedule is not None or dag.timetable is not None
    for task in dag.tasks:
        assert task.retries >= 2, f"{dag_id}.{task.task_id} has retries={task.retries}"


def test_dags_parse_with_a_broken_source_in_the_configuration(tmp_path, monkeypatch):
    """Sources are configuration: any edit of the YAML file, even a broken one, leaves every DAG parsing."""
    config = tmp_path / "feedstock.yaml"
    config.write_text(
        "lake: " + str(tmp_path / "lake") + "\n"
        "sources:\n"
        "  - {name: itdocs, kind: documents, uri: /nonexistent, batch_size: 2.5}\n"
        "  - {name: crm, kind: warehouse, conn_id: nope, table: t}\n"
    )
    monkeypatch.setenv("FEEDSTOCK_CONFIG", str(config))
    assert os.environ["FEEDSTOCK_CONFIG"] == str(config)
    bag = _dagbag()
    assert bag.import_errors == {}
    assert set(DAG_IDS) == set(bag.dag_ids)
