"""Commits with a Txn: a retry writes once, a stale plan is refused in one line; receipts; staging cleanup."""

from __future__ import annotations

import os
import time

import pyarrow as pa
import pytest

from feedstock.errors import CommitConflict
from feedstock.lake import Commit, Lake, Txn

WHO = {"dag_id": "d", "task_id": "commit", "run_id": "r"}


def rows(*keys: int) -> pa.Table:
    return pa.table({"k": pa.array(keys, pa.int64()), "v": pa.array([f"v{k}" for k in keys])})


def commit(run: str, read_version: int | None, **stats) -> Commit:
    return Commit(WHO, (), stats, Txn("feedstock:d:s", run, read_version))


@pytest.fixture
def lake(tmp_path) -> Lake:
    return Lake(str(tmp_path / "lake"))


def test_a_retried_commit_returns_the_first_commit_instead_of_writing_again(lake):
    first = lake.append("t.a", rows(1, 2), commit("r1", None, n=2))
    again = lake.append("t.a", rows(1, 2), commit("r1", None, n=2))
    assert first == again == 0 and lake.read("t.a").num_rows == 2
    done = lake.committed("t.a", Txn("feedstock:d:s", "r1", None))
    assert done["version"] == 0 and done["stats"] == {"n": 2}

    # The same run planning again from the version it made is a new commit, not a retry.
    assert lake.append("t.a", rows(3), commit("r1", 0)) == 1
    assert lake.read("t.a").num_rows == 3


def test_a_plan_made_stale_by_another_run_is_refused_in_one_line(lake):
    lake.append("t.a", rows(1), commit("r0", None))
    assert lake.append("t.a", rows(2), commit("r1", 0)) == 1  # r1 and r2 both planned from version 0
    with pytest.raises(CommitConflict) as refused:
        lake.append("t.a", rows(2), commit("r2", 0))
    assert "\n" not in str(refused.value) and "r2" in str(refused.value)
    assert sorted(lake.read("t.a").column("k").to_pylist()) == [1, 2]

    # A MERGE from a stale version is refused the same way.
    with pytest.raises(CommitConflict):
        lake.upsert("t.a", rows(1), "k", commit("r3", 0))
    assert lake.version("t.a") == 1


def test_a_table_created_after_the_plan_refuses_a_second_creator(lake):
    lake.append("t.a", rows(1), commit("r1", None))
    with pytest.raises(CommitConflict):
        lake.append("t.a", rows(1), commit("r2", None))
    assert lake.read("t.a").num_rows == 1


def test_other_writers_commits_do_not_refuse_an_append(lake):
    lake.append("t.a", rows(1), commit("r0", None))
    lake.append("t.a", rows(2), Commit(WHO))  # no Txn: not a run of this writer
    assert lake.append("t.a", rows(3), commit("r1", 0)) == 2


def test_restore_is_one_new_commit(lake):
    lake.append("t.a", rows(1), commit("r0", None))
    lake.append("t.a", rows(2), commit("r1", 0))
    assert lake.restore("t.a", 0, commit("r2", 1)) == 2
    assert lake.read("t.a").column("k").to_pylist() == [1]
    assert lake.restore("t.a", 0, commit("r2", 1)) == 2  # a retry finds it


def test_a_receipt_replaces_the_staged_files(lake):
    stage = lake.staging("d", "run1", "s")
    lake.write_json(f"{stage}/plan.json", {"files": 3})
    lake.write_parquet(f"{stage}/rows/batch-0.parquet", rows(1))
    assert lake.read_receipt(stage) is None
    lake.write_receipt(stage, {"ingested": 3, "version": 4})
    assert lake.read_receipt(stage) == {"ingested": 3, "version": 4}
    assert not os.path.exists(stage)  # the staged data is gone; the receipt lives beside the staging tree
    assert os.path.exists(os.path.join(lake.root, "_receipts", "d", "run1", "s.json"))


def test_clean_staging_removes_only_other_runs_much_older_than_this_one(lake):
    def stage(run: str, days_old: float) -> None:
        lake.write_json(lake.staging("d", run, "s", "rows.json"), {})
        age(lake.staging("d", run), days_old)

    def age(folder: str, days_old: float) -> None:
        then = time.time() - days_old * 86400
        for path in [os.path.join(d, n) for d, dirs, files in os.walk(folder) for n in dirs + files] + [
            folder
        ]:
            os.utime(path, (then, then))

    stage("mine", 0)
    stage("dead", 8)
    dead_receipt = lake.receipt_uri(lake.staging("d", "dead", "s"))
    lake.write_json(dead_receipt, {})
    age(os.path.dirname(dead_receipt), 8)
    stage("recent", 2)
    stage("kept", 30)
    os.makedirs(lake.staging("d", "empty"))
    lake.write_json(lake.staging("other_dag", "dead", "rows.json"), {})
    age(lake.staging("other_dag"), 300)

    assert lake.clean_staging("d", "mine", keep={"kept"}) == ["dead"]
    assert sorted(os.listdir(lake.staging("d"))) == ["empty", "kept", "mine", "recent"]
    assert not os.path.exists(os.path.dirname(dead_receipt))
    assert os.path.exists(lake.staging("other_dag", "dead"))
    assert lake.clean_staging("d", "no_such_run") == []  # without files of its own a run removes nothing
