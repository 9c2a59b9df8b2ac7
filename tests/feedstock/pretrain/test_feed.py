"""The feed's task functions in DAG order, without Airflow: resumable shards, idempotent and conflicting releases."""

from __future__ import annotations

import sys

import pytest

from feedstock.config import parse_config
from feedstock.lake import Lake
from feedstock.pretrain import feed
from tests.conftest import SAMPLE

sys.path.insert(0, str(SAMPLE / "corpus"))
from build_corpus import build  # noqa: E402


@pytest.fixture
def corpus_config(tmp_path):
    build(tmp_path / "corpus")
    config = parse_config(
        {
            "lake": str(tmp_path / "lake"),
            "sources": [{"name": "crawl", "kind": "corpus", "uri": str(tmp_path / "corpus")}],
            "pretrain": {"output_shards": 2, "dedup_partitions": 2},
        }
    )
    return config, Lake(config.lake)


def build_until_release(config, lake, run_key):
    """Every task up to the release, in the DAG's order; returns the release task's arguments."""
    prepared = feed.prepare(config, lake)
    shards = feed.plan(config, lake, run_key, None)["shards"]
    feed.boilerplate(config, lake, run_key, [feed.scan_shard(config, lake, s) for s in shards])
    results = [feed.process_shard(config, lake, s, run_key) for s in shards]
    fan_out = feed.partitions(config)
    for p in fan_out["exact_partitions"]:
        feed.exact_dedup(config, lake, run_key, results, p)
    for g in fan_out["band_groups"]:
        feed.lsh(config, lake, run_key, results, g)
    dedup_stats = feed.clusters(config, lake, run_key, results)
    outputs = [feed.write_shard(config, lake, run_key, results, k) for k in fan_out["output_shards"]]
    return prepared, results, dedup_stats, outputs


def release(config, lake, run_key, built):
    prepared, results, dedup_stats, outputs = built
    by = {"dag_id": "pretrain_feed", "task_id": "release", "run_id": run_key}
    return feed.release(config, lake, run_key, prepared, results, dedup_stats, outputs, by)


def test_a_finished_shard_is_not_processed_again(corpus_config):
    config, lake = corpus_config
    shard = feed.plan(config, lake, "r1", None)["shards"][0]
    first = feed.process_shard(config, lake, shard, "r1")
    docs = f"{first['work']}/docs.parquet"
    lake.write_parquet(docs, lake.read_parquet(docs).slice(0, 1))  # a marker means done: the output stays
    assert feed.process_shard(config, lake, shard, "r1") == first
    assert lake.read_parquet(docs).num_rows == 1


def test_a_retried_release_commits_once(corpus_config):
    config, lake = corpus_config
    built = build_until_release(config, lake, "r1")
    stats = release(config, lake, "r1", built)
    assert stats["released"] and stats["release"] == 1
    versions = {name: lake.version(name) for name in (feed.RELEASE, feed.REJECTS, feed.DOCUMENTS)}
    release(config, lake, "r1", built)  # the task retried after its commits: nothing is committed twice
    assert {name: lake.version(name) for name in versions} == versions


def test_overlapping_runs_cannot_publish_the_same_release(corpus_config):
    config, lake = corpus_config
    first, second = build_until_release(config, lake, "a"), build_until_release(config, lake, "b")
    assert release(config, lake, "a", first)["release"] == 1
    with pytest.raises(feed.ReleaseConflict, match="published by another run"):
        release(config, lake, "b", second)
    # release 1 once: its two shards, three files each (Megatron .bin and .idx, Parquet)
    assert lake.read(feed.RELEASE)["release"].to_pylist() == [1] * 6
    # Cleared and rerun, the second run builds on release 1: everything it had was already released.
    again = build_until_release(config, lake, "b2")
    assert again[0]["release"] == 2 and again[1] == []


def test_the_stage_boundary_contract_sets_bad_documents_aside():
    from collections import Counter

    from feedstock.stages.steps import Document

    stats: dict[str, Counter] = {}
    drops: list = []
    docs = [
        Document("crawl/a", "crawl", "Fine text.", {"lang": "en", "lang_score": 0.9}),
        Document("no-source-prefix", "crawl", "Fine text too.", {"lang": "en", "lang_score": 0.9}),
        Document("crawl/c", "crawl", "Odd score.", {"lang": "en", "lang_score": 1.5}),
    ]
    kept = feed._contract(docs, stats, drops)
    assert [d.doc_id for d in kept] == ["crawl/a"]
    reasons = {d.doc_id: d.reason for d in drops}
    assert reasons["no-source-prefix"].startswith("contract:doc_id:")
    assert reasons["crawl/c"].startswith("contract:lang_score:")
    assert stats["contract"]["in"] == 3 and stats["contract"]["out"] == 1
