"""The forget DAG end to end: a person planted in every feed, then forgotten by e-mail address, provably."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import yaml

from feedstock import forget
from feedstock.config import DEFAULT_CONFIG, load_config
from feedstock.finetune import feed as finetune
from feedstock.lake import Lake
from feedstock.lineage import trace
from feedstock.pretrain import feed as pretrain
from feedstock.rag import index
from feedstock.serving.cache import Entry, LakeStore
from tests.conftest import _HOME, SAMPLE, run_dag, task_states
from tests.integration.test_ingest_warehouse import seed
from tests.integration.test_pretrain_feed import check_trainer_formats

sys.path.insert(0, str(SAMPLE / "corpus"))
from build_corpus import build  # noqa: E402

pytestmark = pytest.mark.slow

NAME, EMAIL, PHONE = "Zephyrine Okonkwo-Hale", "zephyrine.hale@northwind-example.com", "+1 415 555 0199"
PROSE = (
    "Payroll escalations for the Lisbon office go to {name}, who runs the payroll operations desk. Write to "
    "{email} or call {phone} before the monthly cut-off on the twentieth, and include the employee number, the "
    "pay period and a short description of the discrepancy. The desk answers within two working days and keeps "
    "a written record of every correction it makes to a payslip, so that finance can reconcile the ledger at the "
    "end of the quarter. Corrections after the cut-off are paid with the following month's salary, never by a "
    "separate transfer, and the employee receives an itemised statement of the adjustment by internal mail."
)


@pytest.fixture
def subject_project(project, tmp_path, monkeypatch):
    """Every shipped source, on private copies of the sample data, with one person planted in each feed."""
    handbook, corpus, finetune_data = tmp_path / "handbook", tmp_path / "corpus", tmp_path / "finetune"
    shutil.copytree(SAMPLE / "handbook", handbook)
    shutil.copytree(SAMPLE / "finetune", finetune_data)
    build(corpus)
    text = PROSE.format(name=NAME, email=EMAIL, phone=PHONE)
    (handbook / "people").mkdir(exist_ok=True)
    (handbook / "people" / "payroll-escalations.md").write_text(f"# Payroll escalations\n\n{text}\n")
    near = text.replace("two working days", "two business days").replace("itemised", "itemized")
    (corpus / "crawl-020.jsonl").write_text(
        json.dumps({"id": "payroll-desk", "text": text})
        + "\n"
        + json.dumps({"id": "payroll-desk-copy", "text": near})
        + "\n"
    )
    with (finetune_data / "chat.jsonl").open("a") as handle:
        question = f"Who handles payroll escalations in Lisbon? I was told to ask {NAME}."
        answer = f"The payroll operations desk: write to {EMAIL} before the monthly cut-off on the twentieth."
        handle.write(
            json.dumps(
                {
                    "id": "payroll-q",
                    "messages": [
                        {"role": "user", "content": question},
                        {"role": "assistant", "content": answer},
                    ],
                }
            )
            + "\n"
        )
    url = f"sqlite:///{tmp_path / 'wh.sqlite'}"
    engine = seed(url)
    with engine.begin() as con:
        con.execute(
            sa.text(
                "insert into tickets (ticket_id, product_id, category, question, answer, rating, status, created_at, "
                "updated_at) values (1999, 2, 'billing', :q, :a, 5, 'resolved', '2026-11-01 09:00:00', "
                "'2026-11-02 09:00:00')"
            ),
            {
                "q": f"My payslip is wrong; {NAME} ({EMAIL}) said to open a ticket. Who fixes payroll errors?",
                "a": "The payroll operations desk corrects it with next month's salary and sends an itemised statement.",
            },
        )
    engine.dispose()
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAREHOUSE_DEFAULT",
        f'{{"conn_type": "generic", "extra": {{"sqlalchemy_url": "{url}"}}}}',
    )
    monkeypatch.setenv("FEEDSTOCK_DBT_DIR", str(tmp_path / "dbt"))
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["lake"] = project.lake
    uris = {"documents": handbook, "corpus": corpus, "dataset": finetune_data}
    for source in raw["sources"]:
        if source["kind"] in uris:
            source["uri"] = str(uris[source["kind"]])
    raw["rag"]["golden_set"] = str(DEFAULT_CONFIG.parent / "golden" / "handbook.yaml")
    raw["pretrain"].update(
        output_shards=2,
        dedup_partitions=2,
        formats=["megatron", "nanogpt", "parquet"],
        nanogpt_val_fraction=0.1,
    )
    project.config.write_text(yaml.safe_dump(raw))
    project.corpus, project.finetune = corpus, finetune_data
    return project


def lake_holds(root: Path | str, needle: str, fs=None) -> list[str]:
    """An independent scan: every file's bytes, and every Parquet file's decoded values (local, or on ``fs``)."""
    import fsspec

    fs = fs or fsspec.filesystem("file")
    found = []
    for path in fs.find(str(root)):
        data = fs.cat_file(path).lower()
        if path.endswith(".parquet"):
            with fs.open(path, "rb") as handle:
                data += json.dumps(pq.read_table(handle).to_pylist(), default=str).lower().encode()
        if needle.lower().encode() in data:
            found.append(path)
    return found


def lineage_events(lake: Lake) -> dict[str, tuple[set[str], set[str]]]:
    """Each job's inputs and outputs in the COMPLETE events about this lake."""
    events = [
        json.loads(line) for line in (Path(_HOME) / "openlineage" / "events.jsonl").read_text().splitlines()
    ]
    seen: dict[str, tuple[set[str], set[str]]] = {}
    for event in events:
        if event["eventType"] == "COMPLETE" and lake.root in json.dumps(event):
            inputs, outputs = seen.setdefault(event["job"]["name"], (set(), set()))
            inputs |= {d["name"] for d in event.get("inputs", [])}
            outputs |= {d["name"] for d in event.get("outputs", [])}
    return seen


def check_openlineage(lake: Lake) -> None:
    """Each feed's publishing task emitted OpenLineage events whose inputs and outputs are the catalog's tables
    (their ``uri``), through the openlineage provider's file transport that tests/conftest.py configures."""
    seen = lineage_events(lake)
    expected = {
        "ingest_documents.commit": ("", "bronze.documents.handbook"),
        "rag_feed.release": ("bronze.documents.handbook", "rag.index"),
        "pretrain_feed.release": ("bronze.documents.handbook", "pretrain.release"),
        "finetune_feed.release": ("bronze.warehouse.tickets", "finetune.release"),
    }
    for job, (read, written) in expected.items():
        inputs, outputs = seen[job]
        assert inputs and outputs, job
        assert lake.uri(written) in outputs, (job, outputs)
        assert not read or lake.uri(read) in inputs, (job, inputs)
    # A warehouse table is an OpenLineage dataset only with the Airflow provider of its database: outputs only.
    assert lake.uri("bronze.warehouse.tickets") in seen["ingest_warehouse.source.commit"][1]


def test_forget_one_person_everywhere(subject_project):
    lake, config = Lake(subject_project.lake), load_config()
    for dag_id in ("ingest_documents", "ingest_warehouse", "rag_feed", "pretrain_feed", "finetune_feed"):
        run = run_dag(dag_id, day=10)
        assert run.state == "success", (dag_id, task_states(run))
    check_openlineage(lake)
    doc = "handbook/people/payroll-escalations.md"
    hits = index.search(config, lake, "who handles payroll escalations in Lisbon", k=3)
    assert hits[0]["doc_id"] == doc
    store = LakeStore(lake)
    pointer = index.read_pointer(lake)
    chunk = index.chunk_map(index.open_released(lake, pointer)[1])
    store.put(
        Entry(
            question="Who do I write to about a payroll error?",
            answer=f"Write to {EMAIL}.",
            vector=np.zeros(384, np.float32),
            model=pointer["model_version"],
            chunk_ids=(hits[0]["chunk_id"],),
            grounding={doc: chunk[hits[0]["chunk_id"]][1]},
            id="payroll-answer",
            key="payroll-answer",
            created_at=time.time(),
            expires_at=time.time() + 3600,
        )
    )
    store.put(
        Entry(
            question="How many PTO days?",
            answer="Twenty.",
            vector=np.zeros(384, np.float32),
            model=pointer["model_version"],
            id="pto-answer",
            key="pto-answer",
            created_at=time.time(),
            expires_at=time.time() + 3600,
        )
    )
    before = trace(config, lake, doc)
    assert before.tables and before.rag and before.cache
    assert any(p["status"] == "published" for p in trace(config, lake, "crawl/payroll-desk").pretrain)
    assert lake_holds(Path(lake.root), EMAIL) and lake_holds(Path(lake.root), NAME)
    pretrain_before = json.loads((Path(pretrain.release_dir(lake, 1)) / "stats.json").read_text())

    run = (
        __import__("forget")
        .forget()
        .test(
            logical_date=datetime(2026, 11, 11, tzinfo=UTC),
            run_conf={"contains": [EMAIL], "verify": [NAME, PHONE]},
        )
    )
    assert run.state == "success", task_states(run)

    written = lineage_events(lake)["forget.tables"][1]
    assert {lake.uri("bronze.documents.handbook"), lake.uri("pretrain.documents")} <= written, written
    receipt = lake.read(forget.RECEIPTS).to_pylist()[-1]
    assert receipt["verified"] and receipt["found"] == 0 and receipt["files_scanned"] > 50
    removed = json.loads(receipt["removed"])
    assert (
        receipt["records"] >= 5
    )  # the handbook page, the ticket, the corpus document and its copy, the chat
    assert (
        "bronze.documents.handbook" in removed["tables"] and "bronze.warehouse.tickets" in removed["tables"]
    )
    assert removed["cache"] == {"entries": 1}
    for needle in (EMAIL, NAME, PHONE):
        assert lake_holds(Path(lake.root), needle) == [], needle
        assert EMAIL not in json.dumps(receipt)

    # Search, the cache, the releases: nothing of the person; everything else still served.
    assert all(
        h["doc_id"] != doc
        for h in index.search(config, lake, "who handles payroll escalations in Lisbon", k=10)
    )
    assert (
        index.search(config, lake, "How many days of PTO do new employees get?", k=3)[0]["doc_id"]
        == "handbook/policies/pto_policy.md"
    )
    assert [e.id for e in store.load()] == ["pto-answer"]
    assert not trace(config, lake, doc).found
    folder = Path(pretrain.release_dir(lake, 1))
    check_trainer_formats(folder, yaml.safe_load(subject_project.config.read_text())["pretrain"])
    texts = [r["text"] for f in sorted(folder.glob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    assert texts and not any(NAME in t for t in texts)
    decoded = subprocess.run(
        [sys.executable, "-m", "feedstock.cli", "pretrain", "decode", "latest", "0"],
        capture_output=True,
        text=True,
        env=os.environ,
    )
    assert decoded.returncode == 0 and NAME not in decoded.stdout
    stats = json.loads((folder / "stats.json").read_text())
    assert stats["docs_published"] == pretrain_before["docs_published"] - stats["forgotten"]["documents"] > 0
    card = (folder / "README.md").read_text()
    assert "## Deletion" in card and NAME not in card
    shown = subprocess.run(
        [sys.executable, "-m", "feedstock.cli", "finetune", "show", "1", "--n", "1000", "--json"],
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 0 and "payroll" not in shown.stdout.lower()
    # Rows moved up where a line left: each published example is still its row's line, and the counts match.
    ft_folder = Path(finetune.release_dir(lake, 1))
    for example in lake.read("finetune.examples").to_pylist():
        if example["release"] == 1 and example["status"] == "published" and example["kind"] == "sft":
            lines = (ft_folder / "openai_chat" / f"{example['split']}.jsonl").read_text().splitlines()
            assert json.loads(lines[example["row"]])["messages"] == example["messages"]
    for f in lake.read("finetune.release").to_pylist():
        assert len(Path(f["uri"]).read_text().splitlines()) == f["examples"], f["uri"]
    ft_stats = json.loads((Path(finetune.release_dir(lake, 1)) / "stats.json").read_text())
    assert (
        ft_stats["examples_in"]
        == ft_stats["examples_published"] + ft_stats["examples_rejected"] + ft_stats["forgotten"]["examples"]
    )

    # The sources still hold the person: later runs do not bring the records back, even from files that changed.
    corpus, chats = subject_project.corpus, subject_project.finetune / "chat.jsonl"
    (corpus / "crawl-021.jsonl").write_text(
        json.dumps({"id": "payroll-desk", "text": PROSE.format(name=NAME, email=EMAIL, phone=PHONE)}) + "\n"
    )
    with chats.open("a") as handle:
        handle.write(
            json.dumps(
                {
                    "id": "new-1",
                    "messages": [
                        {"role": "user", "content": "How do I export a pipe's run history?"},
                        {
                            "role": "assistant",
                            "content": "Open the pipe, choose Runs, then Export; you get a CSV of every run with its row counts.",
                        },
                    ],
                }
            )
            + "\n"
        )
    for dag_id in ("ingest_documents", "ingest_warehouse", "rag_feed", "pretrain_feed", "finetune_feed"):
        run = run_dag(dag_id, day=12)
        assert run.state == "success", (dag_id, task_states(run))
    assert not trace(config, lake, doc).found and lake_holds(Path(lake.root), NAME) == []
    rejects = {r["doc_id"]: r["reason"] for r in lake.read(pretrain.REJECTS).to_pylist()}
    assert rejects["crawl/payroll-desk"] == "forget:requested"
    assert lake.last_commit("bronze.documents.handbook") is not None
    second = {
        e["record_id"]: e["status"] for e in lake.read("finetune.examples").to_pylist() if e["release"] == 2
    }
    assert second.get("support_chats/new-1") == "published", second
    ft_rejects = {r["record_id"]: r["reason"] for r in lake.read("finetune.rejects").to_pylist()}
    assert ft_rejects["support_chats/payroll-q"] == "forget:requested"
