"""Every DAG imports cleanly and carries the settings operators rely on."""

from __future__ import annotations

import pytest
from airflow.dag_processing.dagbag import DagBag

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def dagbag():
    return DagBag(dag_folder=str(ROOT / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


def test_expected_dags_present(dagbag):
    assert {"ingest_documents", "ingest_warehouse", "rag_feed"} <= set(dagbag.dag_ids)


@pytest.mark.parametrize("dag_id", ["ingest_documents", "ingest_warehouse", "rag_feed"])
def test_dag_settings(dagbag, dag_id):
    dag = dagbag.get_dag(dag_id)
    assert dag.tags and "feedstock" in dag.tags
    assert dag.doc_md and dag_id in dag.doc_md
    assert dag.schedule is not None or dag.timetable is not None
    for task in dag.tasks:
        assert task.retries >= 2, f"{dag_id}.{task.task_id} has retries={task.retries}"
