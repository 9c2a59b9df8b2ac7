"""pretrain_feed end to end with dag.test(): dbt mart and corpus shards, every stage, release, rerun, release 2."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from feedstock.config import DEFAULT_CONFIG, load_config
from feedstock.lake import Lake
from feedstock.lineage import trace
from feedstock.pretrain import feed
from tests.conftest import SAMPLE, run_dag, task_states
from tests.integration.test_ingest_warehouse import seed

sys.path.insert(0, str(SAMPLE / "corpus"))
from build_corpus import PII, PLANTED, build, edit_words  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture
def pretrain_project(project, tmp_path, monkeypatch):
    """The shipped configuration with the handbook and a freshly built sample corpus, in a private lake."""
    handbook, corpus = tmp_path / "handbook", tmp_path / "corpus"
    shutil.copytree(SAMPLE / "handbook", handbook)
    build(corpus)
    eval_set = tmp_path / "eval_qa.jsonl"
    # A benchmark question quoting 13+ words of one corpus document: that document must be decontaminated.
    quoted = " ".join(
        json.loads((corpus / "crawl-000.jsonl").read_text().splitlines()[5])["text"].split()[:20]
    )
    eval_set.write_text(json.dumps({"question": quoted, "answer": "n/a"}) + "\n")
    monkeypatch.setenv("FEEDSTOCK_DBT_DIR", str(tmp_path / "dbt"))
    url = f"sqlite:///{tmp_path / 'wh.sqlite'}"
    seed(url).dispose()
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAREHOUSE_DEFAULT",
        f'{{"conn_type": "generic", "extra": {{"sqlalchemy_url": "{url}"}}}}',
    )
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["lake"] = project.lake
    raw["sources"][0]["uri"], raw["sources"][3]["uri"] = str(handbook), str(corpus)
    raw["pretrain"].update(
        output_shards=2,
        dedup_partitions=2,
        formats=["megatron", "nanogpt", "parquet"],
        nanogpt_val_fraction=0.1,
        decontamination={"eval_sets": [str(eval_set)], "ngram": 13, "fields": ["question", "answer"]},
    )
    raw.pop("rag")
    project.config.write_text(yaml.safe_dump(raw))
    project.corpus, project.quoted_doc = (
        corpus,
        json.loads((corpus / "crawl-000.jsonl").read_text().splitlines()[5])["id"],
    )
    return project


def release_files(lake: Lake, release: int) -> dict[str, str]:
    folder = Path(feed.release_dir(lake, release))
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def check_trainer_formats(folder: Path, p: dict) -> None:
    """Each format read as its trainer reads it holds exactly the Parquet documents' tokens, each with EOS."""
    import numpy as np
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    from feedstock.pretrain.formats import in_validation
    from feedstock.stages.tokenizers import load_tokenizer

    tokenizer = load_tokenizer({"kind": "tiktoken", "name": "cl100k_base"})
    eos = [tokenizer.eos_id]
    splits = {"train": [], "val": []}
    for shard in range(p["output_shards"]):
        rows = pq.read_table(folder / f"shard-{shard:05d}.parquet").to_pylist()
        expected = [tokens + eos for tokens in tokenizer.encode_batch([r["text"] for r in rows])]
        megatron = IndexedDataset(str(folder / f"shard-{shard:05d}"))  # Megatron-Core's own reader
        assert len(megatron) == len(rows) > 0
        assert [megatron[i].tolist() for i in range(len(rows))] == expected
        assert [r["n_tokens"] for r in rows] == [len(t) - 1 for t in expected]
        for row, tokens in zip(rows, expected, strict=True):
            splits[
                "val" if in_validation(row["doc_id"], p["seed"], p["nanogpt_val_fraction"]) else "train"
            ] += tokens
    for split, tokens in splits.items():
        # As nanoGPT's train.py reads it; the cl100k vocabulary needs uint32.
        assert np.memmap(folder / "nanogpt" / f"{split}.bin", dtype=np.uint32, mode="r").tolist() == tokens
    assert splits["val"] and len(splits["val"]) < len(splits["train"])


def published_texts(lake: Lake, release: int) -> dict[str, str]:
    folder = Path(feed.release_dir(lake, release))
    rows = [r for f in sorted(folder.glob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    return {r["doc_id"]: r["text"] for r in rows}


def check_lineage(lake: Lake, texts: dict[str, str]) -> None:
    """``feedstock lineage`` finds a document in bronze and at every position of the release's shards; the shard
    and offset it gives decode, from the token files, to the document's published text."""
    doc = "handbook/policies/pto_policy.md"
    shown = subprocess.run(
        [sys.executable, "-m", "feedstock.cli", "lineage", doc, "--json"], capture_output=True, text=True
    )
    assert shown.returncode == 0, shown.stderr
    found = json.loads(shown.stdout)
    assert {(t["table"], tuple(t["versions"])) for t in found["tables"]} >= {
        ("bronze.documents.handbook", (0,))
    }
    assert "pretrain.documents" in {t["table"] for t in found["tables"]}
    placed = [p for p in found["pretrain"] if p["status"] == "published"]
    assert len(placed) == 2  # the handbook's weight is 2.0: two copies
    for p in placed:
        assert feed.decode(lake, 1, p["shard"], p["offset"], "megatron") == texts[doc]
    assert {"release": 1, "status": "dedup:fuzzy"} in trace(
        load_config(), lake, PLANTED["near_duplicate"]
    ).to_dict()["pretrain"]
    ticket = trace(load_config(), lake, "tickets/1001").to_dict()
    assert [t["table"] for t in ticket["tables"] if t["table"].startswith("bronze.")] == [
        "bronze.warehouse.tickets"
    ]


def ingest(day: int) -> None:
    for dag_id in ("ingest_documents", "ingest_warehouse"):
        assert run_dag(dag_id, day=day).state == "success", dag_id


def test_pretrain_feed_end_to_end(pretrain_project, tmp_path):
    lake = Lake(pretrain_project.lake)
    ingest(10)
    run = run_dag("pretrain_feed", day=10)
    states = task_states(run)
    assert run.state == "success", states
    assert any(key.startswith("transform.pretrain_documents") for key in states), states

    stats = lake.last_commit(feed.RELEASE)["stats"]
    rejects = {r["doc_id"]: r["reason"] for r in lake.read(feed.REJECTS).to_pylist()}
    # Every planted problem is dropped with its reason; the corrupt shard is quarantined, the rest published.
    assert rejects[PLANTED["near_duplicate"]] == "dedup:fuzzy"
    assert "dedup:exact" in {rejects.get("crawl/handbook-000"), rejects.get(PLANTED["exact_copy"])}
    assert rejects[PLANTED["repeated_lines"]] == "quality:gopher_repetition:dup_lines"
    assert rejects[PLANTED["wrong_language"]] == "language:not_allowed"
    assert rejects[f"crawl/{pretrain_project.quoted_doc}"] == "decontamination:eval_qa"
    assert any(r == "read:invalid_json" for r in rejects.values())
    assert rejects[f"crawl/{PLANTED['corrupt_shard']}"] == "read:unreadable_shard"
    assert stats["shards_quarantined"][0]["shard"] == f"crawl/{PLANTED['corrupt_shard']}"
    # The counts add up: every document read is published once or rejected with a reason.
    assert stats["docs_in"] == stats["docs_published"] + len(rejects) - 1
    assert stats["docs_published"] > 40 and stats["tokens"] > 10_000
    assert set(stats["tokens_by_source"]) == {"handbook", "crawl", "tickets", "products"}

    texts = published_texts(lake, 1)
    ticket = texts[PLANTED["pii"]]
    for kind, values in PII.items():
        for value in values:
            assert value not in ticket, kind
        assert f"<{kind.upper()}>" in ticket
        assert stats["pii"][kind] >= len(values)
    assert not any("All rights reserved. Printed copies" in t for t in texts.values())  # boilerplate removed
    # Source weights: handbook documents (weight 2.0) appear twice in the shards.
    assert stats["docs_out_weighted"] > stats["docs_published"]

    # The token files decode back to the published text, through the CLI.
    shard0 = pq.read_table(Path(feed.release_dir(lake, 1)) / "shard-00000.parquet").to_pylist()
    cli = subprocess.run(
        [sys.executable, "-m", "feedstock.cli", "pretrain", "decode", "latest", "0", "--doc", "3"],
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.rstrip("\n") == shard0[3]["text"]
    card = (Path(feed.release_dir(lake, 1)) / "README.md").read_text()
    assert "# Pretraining release 1" in card and "| quality:gopher_repetition:dup_lines | 1 |" in card
    check_trainer_formats(
        Path(feed.release_dir(lake, 1)), yaml.safe_load(pretrain_project.config.read_text())["pretrain"]
    )
    files = lake.read(feed.RELEASE).to_pylist()
    assert {(f["format"], f["split"]) for f in files} == {
        ("megatron", None),
        ("parquet", None),
        ("nanogpt", "train"),
        ("nanogpt", "val"),
        ("nanogpt", None),
    }
    for f in files:
        assert (
            Path(f["uri"]).exists() and f"`{Path(f['uri']).relative_to(feed.release_dir(lake, 1))}`" in card
        )
    assert f"--data-path {files[0]['tokens']} " in card and "dataset = 'feedstock'" in card
    val = next(f for f in files if f["split"] == "val")
    assert feed.decode(lake, "latest", "val", val["docs"] - 1)  # the last validation document decodes
    assert feed.decode(lake, 1, 0, 3, "parquet") == shard0[3]["text"]

    check_lineage(lake, texts)

    # A rerun of the same interval changes nothing: no new release.
    version = lake.version(feed.RELEASE)
    first_files = release_files(lake, 1)
    assert run_dag("pretrain_feed", day=10).state == "success"
    assert lake.version(feed.RELEASE) == version
    assert release_files(lake, 1) == first_files

    # Release 2: a new corpus file; its near-duplicate of a release-1 document is dropped against release 1,
    # and the files of release 1 are not processed again.
    base = json.loads((pretrain_project.corpus / "crawl-000.jsonl").read_text().splitlines()[3])
    fresh = {"id": "fresh-near-dup", "text": edit_words(base["text"], 0.05, seed=7)}
    (pretrain_project.corpus / "crawl-010.jsonl").write_text(json.dumps(fresh) + "\n")
    assert run_dag("pretrain_feed", day=17).state == "success"
    second = lake.last_commit(feed.RELEASE)["stats"]
    assert second["release"] == 2
    assert second["plan"]["shards_unchanged"] == 5 and second["shards_processed"] == 1
    assert second["plan"]["mart_unchanged"] > 0 and second["docs_in"] == 1
    rejects = {r["doc_id"]: (r["reason"], r["release"]) for r in lake.read(feed.REJECTS).to_pylist()}
    assert rejects["crawl/fresh-near-dup"] == ("dedup:fuzzy", 2)


def test_same_inputs_give_identical_release_bytes(pretrain_project, tmp_path):
    """Two lakes, the same inputs and configuration: byte-identical shards."""
    digests = []
    for name in ("a", "b"):
        os.environ.pop(
            "FEEDSTOCK_LAKE", None
        )  # dag.test runs dbt in this process: cosmos leaves its env behind
        lake_uri = str(tmp_path / f"lake-{name}")
        raw = yaml.safe_load(pretrain_project.config.read_text())
        raw["lake"] = lake_uri
        pretrain_project.config.write_text(yaml.safe_dump(raw))
        ingest(10)
        assert run_dag("pretrain_feed", day=10).state == "success"
        files = release_files(Lake(lake_uri), 1)
        digests.append({k: v for k, v in files.items() if k.endswith((".bin", ".idx", ".parquet", ".pkl"))})
    assert digests[0] == digests[1] and len(digests[0]) == 9  # 2 shards x 3 files, nanoGPT's 3 files


def test_corpus_and_lake_on_s3(pretrain_project, s3, tmp_path):
    """The corpus read from, and the release written to, a real S3 API (moto's server)."""
    fs, bucket = s3
    fs.put(str(pretrain_project.corpus), f"{bucket}/crawl", recursive=True)
    raw = yaml.safe_load(pretrain_project.config.read_text())
    raw["lake"] = f"s3://{bucket}/lake"
    next(s for s in raw["sources"] if s["name"] == "crawl")["uri"] = f"s3://{bucket}/crawl"
    raw["pretrain"].pop("decontamination")
    pretrain_project.config.write_text(yaml.safe_dump(raw))
    lake = Lake(raw["lake"])

    ingest(10)
    run = run_dag("pretrain_feed", day=10)
    assert run.state == "success", task_states(run)
    stats = lake.last_commit(feed.RELEASE)["stats"]
    assert stats["shards_quarantined"][0]["shard"] == f"crawl/{PLANTED['corrupt_shard']}"
    assert "crawl" in stats["tokens_by_source"] and stats["docs_published"] > 40
    assert fs.exists(f"{bucket}/lake/pretrain/releases/00001/shard-00001.bin")
    assert fs.exists(f"{bucket}/lake/pretrain/releases/00001/README.md")
    first = pq.read_table(fs.open(f"{bucket}/lake/pretrain/releases/00001/shard-00000.parquet")).to_pylist()[
        0
    ]
    assert feed.decode(lake, "latest", 0, 0) == first["text"]
    # Megatron-Core reads the shard straight from S3 (its index cached locally, the tokens in ranged reads).
    from megatron.core.datasets.indexed_dataset import IndexedDataset
    from megatron.core.datasets.object_storage_utils import ObjectStorageConfig

    from feedstock.stages.tokenizers import load_tokenizer

    cache = ObjectStorageConfig(path_to_idx_cache=str(tmp_path / "idx-cache"), bin_chunk_nbytes=4096)
    megatron = IndexedDataset(
        f"s3://{bucket}/lake/pretrain/releases/00001/shard-00000", mmap=False, object_storage_config=cache
    )
    tokenizer = load_tokenizer({"kind": "tiktoken", "name": "cl100k_base"})
    assert megatron[0].tolist() == tokenizer.encode_batch([first["text"]])[0] + [tokenizer.eos_id]
    assert fs.exists(f"{bucket}/lake/pretrain/releases/00001/nanogpt/val.bin")
    assert feed.decode(lake, "latest", "train", 0)
    assert not fs.exists(f"{bucket}/lake/_staging/pretrain/work")  # consumed work is cleaned up on release
    assert not fs.exists(f"{bucket}/lake/_staging/pretrain/scan") and not fs.exists(
        f"{bucket}/lake/_staging/pretrain/mart"
    )
