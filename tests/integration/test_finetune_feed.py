"""finetune_feed end to end with dag.test(): warehouse tickets from the machine's PostgreSQL through dbt, the sample
chat, preference and Label Studio files with their planted problems, a corrupt file, release, rerun, release 2."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from feedstock.config import DEFAULT_CONFIG, load_config
from feedstock.finetune import feed
from feedstock.lake import Lake
from feedstock.lineage import trace
from tests.conftest import SAMPLE, run_dag, task_states
from tests.integration.test_ingest_warehouse import seed

pytestmark = pytest.mark.slow

PLANTED = {
    "support_chats/bad-roles": "format:roles_not_alternating",
    "support_chats/bad-empty": "format:empty_content",
    "support_chats/bad-last": "format:last_not_assistant",
    "support_chats/bad-role-name": "format:unknown_role",
    "support_chats/chat.jsonl@25": "format:invalid_json",
    "support_chats/leak-golden": "decontamination:handbook",
    "support_chats/echo": "quality:prompt_equals_response",
    "support_chats/short": "quality:response_too_short",
    "support_chats/loop": "quality:repetition",
    "support_chats/too-long": "length:over_max_tokens",
    "answer_preferences/pair-same": "quality:chosen_equals_rejected",
    "answer_preferences/pair-bad-prompt": "format:prompt_not_ending_with_user",
    "reviewed_answers/rev-3": "review:rejected",
    "reviewed_answers/rev-5": "review:not_reviewed",
    "finetune_uploads/broken.jsonl.gz": "read:unreadable_file",
}


@pytest.fixture
def finetune_project(project, tmp_path, monkeypatch, postgres_db):
    """The shipped configuration's fine-tuning sources (and the tickets, on PostgreSQL) in a private lake."""
    data = tmp_path / "finetune"
    shutil.copytree(SAMPLE / "finetune", data)
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    (uploads / "broken.jsonl.gz").write_bytes(gzip.compress(b'{"prompt": "x"}\n' * 50)[:40])  # truncated
    monkeypatch.setenv("FEEDSTOCK_DBT_DIR", str(tmp_path / "dbt"))
    seed(postgres_db).dispose()
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAREHOUSE_DEFAULT",
        f'{{"conn_type": "generic", "extra": {{"sqlalchemy_url": "{postgres_db}"}}}}',
    )
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["lake"] = project.lake
    sources = [
        s
        for s in raw["sources"]
        if s["name"] in ("tickets", "support_chats", "answer_preferences", "reviewed_answers")
    ]
    for source in sources:
        if source["kind"] == "dataset":
            source["uri"] = str(data)
    sources.append(
        {"name": "finetune_uploads", "kind": "dataset", "uri": str(uploads), "schema": "prompt_response"}
    )
    raw["sources"] = sources
    raw.pop("pretrain")
    raw["finetune"]["splits"] = {"train": 0.8, "validation": 0.2}
    project.config.write_text(yaml.safe_dump(raw))
    project.data, project.uploads = data, uploads
    return project


def test_finetune_feed_end_to_end(finetune_project):
    lake = Lake(finetune_project.lake)
    assert run_dag("ingest_warehouse", day=10).state == "success"
    run = run_dag("finetune_feed", day=10)
    states = task_states(run)
    assert run.state == "success", states
    assert any(key.startswith("transform.finetune_conversations") for key in states), states

    stats = lake.last_commit("finetune.release")["stats"]
    rejects = {r["record_id"]: r["reason"] for r in lake.read("finetune.rejects").to_pylist()}
    for record, reason in PLANTED.items():
        assert rejects.get(record) == reason, record
    dedup = {r: v for r, v in rejects.items() if v.startswith("dedup:")}
    # good-11 restates ticket 1004's question in other words: a near-duplicate across sources, one of them goes
    across = {"tickets/1004", "support_chats/good-11"}
    assert len(across & set(dedup)) == 1
    assert {r: v for r, v in dedup.items() if r not in across} == {
        "support_chats/dup-exact": "dedup:exact",
        "support_chats/dup-near": "dedup:near_duplicate",
    }
    # Every example read is published or rejected with a reason, and the quarantined file says why.
    assert stats["examples_in"] == stats["examples_published"] + stats["examples_rejected"]
    assert stats["examples_rejected"] == len(rejects)
    assert stats["files_quarantined"][0]["file"] == "broken.jsonl.gz"

    examples = lake.read("finetune.examples").to_pylist()
    published = {e["record_id"]: e for e in examples if e["status"] == "published"}
    # Resolved tickets rated 4 or 5 became conversations, with the template's system prompt.
    tickets = [e for r, e in published.items() if r.startswith("tickets/")]
    assert len(tickets) >= 30
    assert (
        tickets[0]["messages"][0]["role"] == "system"
        and "support assistant" in tickets[0]["messages"][0]["content"]
    )
    assert {"answer_preferences/pair-01", "reviewed_answers/rev-4"} <= set(published)
    # The tickets' access tag reaches each example derived from them, and every file that holds one.
    assert {tuple(e["access_tags"]) for e in tickets} == {("support",)}
    assert published["answer_preferences/pair-01"]["access_tags"] == []
    files = lake.read("finetune.release").to_pylist()
    assert all(f["access_tags"] == ["support"] for f in files if f["format"] == "openai_chat"), files
    assert published["reviewed_answers/rev-4"]["kind"] == "preference"
    assert set(stats["splits"]) == {"train", "validation"}

    folder = Path(feed.release_dir(lake, 1))
    written = "".join(p.read_text() for p in folder.rglob("*.jsonl"))
    assert "billing.desk@northwind-example.com" not in written and "555 0142" not in written
    assert "<EMAIL>" in written and "<PHONE>" in written
    info = json.loads((folder / "dataset_info.json").read_text())
    assert "feedstock_sft_train_sharegpt" in info and info["feedstock_preference_train_sharegpt"]["ranking"]
    card = (folder / "README.md").read_text()
    assert "| dedup |" in card and "format:roles_not_alternating" in card and "type: chat_template" in card
    # Lineage: each published example's row is its line in every format's file of its split.
    example = published["support_chats/good-01"]
    lines = (folder / "openai_chat" / f"{example['split']}.jsonl").read_text().splitlines()
    assert json.loads(lines[example["row"]])["messages"] == example["messages"]

    # Lineage: the example's release, split and row, and the files that hold it; a duplicate's reason.
    held = trace(load_config(), lake, "support_chats/good-01").finetune
    assert [(h["release"], h["split"], h["row"]) for h in held] == [(1, example["split"], example["row"])]
    assert str(folder / "openai_chat" / f"{example['split']}.jsonl") in held[0]["files"]
    assert trace(load_config(), lake, "support_chats/dup-exact").finetune[0]["status"] == "dedup:exact"

    # The same inputs again: nothing to do, no new release.
    rerun = run_dag("finetune_feed", day=10)
    assert rerun.state == "success"
    assert task_states(rerun)["release[-1]"] == "skipped"
    assert feed.previous_releases(lake) == [1]

    # A new upload: one new example and a near-copy of a released one. Release 2 holds only what is new.
    near = published["support_chats/good-03"]["messages"][-2]["content"].replace("without", "with no")
    (finetune_project.uploads / "more.jsonl").write_text(
        json.dumps(
            {
                "id": "new-1",
                "prompt": "How do I invite a contractor with read-only access?",
                "response": "Invite them under Settings > Members and pick the Viewer role; viewers cannot edit pipes.",
            }
        )
        + "\n"
        + json.dumps(
            {"id": "new-2", "prompt": near, "response": "It keeps its cursor and resumes where it stopped."}
        )
        + "\n"
    )
    second = run_dag("finetune_feed", day=11)
    assert second.state == "success", task_states(second)
    stats2 = lake.last_commit("finetune.release")["stats"]
    assert stats2["release"] == 2 and stats2["examples_in"] == 2
    assert stats2["examples_published"] == 1 and stats2["rejects_by_reason"] == {"dedup:near_duplicate": 1}
    # Unchanged files are not read again; the warehouse rows are, and each is recognised as already processed.
    tickets_seen = sum(1 for e in examples if e["source"] == "tickets") + sum(
        1 for r in rejects if r.startswith("tickets/") and not rejects[r].startswith("dedup:")
    )
    assert stats2["unchanged"] == tickets_seen

    shown = subprocess.run(
        [
            sys.executable,
            "-m",
            "feedstock.cli",
            "finetune",
            "show",
            "1",
            "--split",
            "train",
            "--n",
            "2",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert len(json.loads(shown.stdout)["examples"]) == 2
    missing = subprocess.run(
        [sys.executable, "-m", "feedstock.cli", "finetune", "show", "9"], capture_output=True, text=True
    )
    assert (
        missing.returncode == 1
        and missing.stderr.count("\n") == 1
        and "no fine-tuning release 9" in missing.stderr
    )
