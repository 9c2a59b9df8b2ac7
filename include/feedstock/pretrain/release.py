"""Stage 6 of the pretraining feed: publish the release.

:func:`release` commits ``pretrain.release`` (one row per published file, with its format),
``pretrain.rejects`` (``doc_id, source, stage, reason``) and ``pretrain.documents`` (the dedup state: one row per
processed document), moves the staged files of every configured format into the release folder
(:func:`feedstock.pretrain.formats.publish_files`), writes the data card (:mod:`feedstock.pretrain.card`) and
``stats.json`` beside them, then deletes what the release consumed.

Every input document is accounted for: ``docs_in = docs_out + dropped (by stage and reason)``, and every shard
is either processed or quarantined with its reason; a release that does not add up is not published.
It runs in a one-slot pool: a release number that another run published meanwhile fails this run with
:class:`ReleaseConflict`; a retry of this task finishes its own commits.
"""

from __future__ import annotations

import posixpath
from collections import Counter
from typing import Any

import pyarrow as pa

from feedstock import contracts, runstate
from feedstock.config import Config
from feedstock.lake import Commit, Lake, filesystem
from feedstock.pretrain.card import data_card
from feedstock.pretrain.corpus import Shard
from feedstock.pretrain.formats import publish_files
from feedstock.pretrain.global_dedup import _dropped
from feedstock.pretrain.scan import scan_dir
from feedstock.pretrain.tables import (
    DOCUMENTS,
    DOCUMENTS_SCHEMA,
    REJECT_SCHEMA,
    REJECTS,
    RELEASE,
    RELEASE_SCHEMA,
)
from feedstock.pretrain.workspace import release_dir, run_dir
from feedstock.stages import dedup
from feedstock.stages.tokenizers import ordered_histogram


def _merge_stats(results: list[dict[str, Any]]) -> dict[str, Counter]:
    merged: dict[str, Counter] = {}
    for result in results:
        for stage, counts in (result.get("stats") or {}).items():
            merged.setdefault(stage, Counter()).update(counts)
    return merged


def release(
    config: Config,
    lake: Lake,
    run_key: str,
    prepared: dict[str, Any],
    results: list[dict[str, Any]],
    dedup_stats: dict[str, int],
    shards: list[dict[str, Any]],
    produced_by: dict[str, str],
) -> dict[str, Any]:
    """Commit the release, its rejects and the dedup state; write the data card. Nothing new: no release.

    Runs in a one-slot pool. A release number that another run published meanwhile fails this run with
    :class:`ReleaseConflict` (its dedup did not see that release); a retry of this task finishes its own commits.
    """
    import pyarrow.compute as pc

    number = prepared["release"]
    if runstate.already_published(lake, RELEASE, number, produced_by.get("run_id"), "pretraining"):
        _clean_up(config, lake, run_key, results)  # a retry after the publishing commit: only cleanup is left
        return {**(lake.last_commit(RELEASE) or {}).get("stats", {}), "released": True}
    stages = _merge_stats(results)
    exact, fuzzy = _dropped(lake, run_key, "exact"), _dropped(lake, run_key, "fuzzy")
    rejects, documents = _release_rows(config, lake, results, exact, fuzzy, number)
    docs_in = stages.get("read", Counter())["in"]
    docs_out = sum(s["docs"] for s in shards)
    unique_out = documents.filter(pc.equal(documents["status"], "published")).num_rows
    quarantined = [
        {"shard": r["label"], "reason": r["reason"]} for r in results if r["status"] == "quarantined"
    ]
    tokens_by_source: Counter = Counter()
    lengths: Counter = Counter()
    for s in shards:
        tokens_by_source.update(s["tokens_by_source"])
        lengths.update(s.get("token_histogram", {}))
    kept_before_dedup = stages.get("read", Counter())["out"] - sum(
        v for stage, c in stages.items() if stage != "read" for k, v in c.items() if k.startswith("dropped:")
    )
    stats = {
        "release": number,
        "docs_in": docs_in,
        "docs_published": unique_out,
        "docs_out_weighted": docs_out,
        "tokens": int(sum(tokens_by_source.values())),
        "tokens_by_source": dict(tokens_by_source),
        "token_histogram": ordered_histogram(lengths),  # documents per token length, after source weights
        "drops_by_stage": {
            stage: {k.removeprefix("dropped:"): v for k, v in c.items() if k.startswith("dropped:")}
            for stage, c in stages.items()
        },
        "languages": {
            k.removeprefix("lang:"): v
            for k, v in stages.get("language", Counter()).items()
            if k.startswith("lang:")
        },
        "pii": {
            k.removeprefix("pii:"): v for k, v in stages.get("pii", Counter()).items() if k.startswith("pii:")
        },
        "exact_duplicates": exact.num_rows,
        "fuzzy_duplicates": fuzzy.num_rows,
        "exact_duplicate_rate": round(exact.num_rows / kept_before_dedup, 6) if kept_before_dedup else 0.0,
        "fuzzy_duplicate_rate": round(fuzzy.num_rows / kept_before_dedup, 6) if kept_before_dedup else 0.0,
        **dedup_stats,
        "shards_processed": sum(1 for r in results if r["status"] == "processed"),
        "shards_quarantined": quarantined,
        "plan": lake.read_json(posixpath.join(run_dir(lake, run_key), "plan.json")),
        "tokenizer": shards[0]["tokenizer"] if shards else None,
        "config_key": prepared["config_key"],
    }
    stats["drops_by_stage"]["dedup"] = {"dedup:exact": exact.num_rows, "dedup:fuzzy": fuzzy.num_rows}
    contracts.enforce_ratio(
        "pretrain documents",
        sum(v for k, v in stages.get("contract", Counter()).items() if k.startswith("dropped:")),
        stages.get("contract", Counter())["in"],
        config.validation.max_failure_ratio,
    )
    accounted = unique_out + rejects.num_rows - len(quarantined)
    if accounted != docs_in:
        raise RuntimeError(f"pretrain release {number}: {docs_in} documents in but {accounted} accounted for")
    if not results:
        return {**stats, "released": False}
    inputs = list(prepared["bronze"]) + sorted(
        f"{r['shard']['source']}/{r['shard']['relative']}#{r['shard']['part']}@{r['shard']['version']}"
        for r in results
        if r["shard"]["format"] != "mart"
    )
    commit = Commit(produced_by=produced_by, inputs=tuple(inputs), stats=stats)
    out = release_dir(lake, number)
    fs, base = filesystem(out, lake.s3)
    staged = filesystem(posixpath.join(run_dir(lake, run_key), "out"), lake.s3)[1]
    files = publish_files(fs, staged, base, config.pretrain, shards)
    with fs.open(posixpath.join(base, "README.md"), "w") as handle:
        handle.write(data_card(stats, shards, files, out))
    lake.write_json(posixpath.join(out, "stats.json"), stats)
    # No multi-table transaction: each table is committed once per release (a retry skips what is there), and
    # pretrain.release, the publishing commit, goes last.
    if documents.num_rows and not runstate.has_release(lake, DOCUMENTS, number):
        lake.append(DOCUMENTS, documents, commit)
    if not runstate.has_release(lake, REJECTS, number):
        lake.append(REJECTS, rejects if rejects.num_rows else _empty_rejects(number), commit)
    rows = pa.Table.from_pylist(
        [
            {
                "release": number,
                **{k: f[k] for k in ("format", "shard", "split", "docs", "tokens", "dtype")},
                "uri": f"{out}/{f['name']}",
                "tokenizer": shards[0]["tokenizer"],
                "eos_id": shards[0]["eos_id"],
                "card_uri": f"{out}/README.md",
            }
            for f in files
        ],
        schema=RELEASE_SCHEMA,
    )
    if not runstate.has_release(lake, RELEASE, number):
        lake.append(RELEASE, rows, commit)
    _clean_up(config, lake, run_key, results)
    return {**stats, "released": True}


def _clean_up(config: Config, lake: Lake, run_key: str, results: list[dict[str, Any]]) -> None:
    """Delete what a published release consumed: work folders, scans, staged mart shards, the run folder."""
    for r in results:
        lake.clear(r["work"])
        lake.clear(scan_dir(lake, config, Shard.from_dict(r["shard"])))
        if r["shard"]["format"] == "mart":
            lake.clear(posixpath.dirname(r["shard"]["uri"]))
    lake.clear(run_dir(lake, run_key))


def _empty_rejects(number: int) -> pa.Table:
    return REJECT_SCHEMA.append(pa.field("release", pa.int32())).empty_table()


def _release_rows(
    config: Config, lake: Lake, results: list[dict[str, Any]], exact: pa.Table, fuzzy: pa.Table, number: int
) -> tuple[pa.Table, pa.Table]:
    """The rejects of every stage and the dedup-state rows of every document this release processed."""
    spec = dedup.MinHasher(config.pretrain.minhash).spec_key if config.pretrain.minhash else None
    duplicate = {d: "dedup:exact" for d in exact["doc_id"].to_pylist()}
    duplicate.update({d: "dedup:fuzzy" for d in fuzzy["doc_id"].to_pylist()})
    rejects: list[pa.Table] = []
    documents: list[pa.Table] = []
    for r in results:
        shard = r["shard"]
        ids = {"shard_id": r["shard_id"], "shard_version": shard["version"]}
        if r["status"] == "quarantined":
            row = {
                "doc_id": r["label"],
                "source": shard["source"],
                "stage": "read",
                "reason": "read:unreadable_shard",
            }
            rejects.append(pa.Table.from_pylist([row], schema=REJECT_SCHEMA))
            # The shard itself is recorded, so an unchanged corrupt file is not read again by every release.
            label, reason = pa.array([r["label"]]), pa.array([row["reason"]])
            documents.append(_state(label, pa.array([shard["source"]]), reason, ids, {}, number))
            continue
        hashes = {}
        if shard["format"] == "mart":
            mart = lake.read_parquet(shard["uri"])
            hashes = dict(zip(mart["doc_id"].to_pylist(), mart["content_hash"].to_pylist(), strict=True))
        rejected_file = posixpath.join(r["work"], "rejects.parquet")
        if lake.exists(rejected_file):
            rejected = lake.read_parquet(rejected_file, schema=REJECT_SCHEMA)
            rejects.append(rejected)
            documents.append(
                _state(rejected["doc_id"], rejected["source"], rejected["reason"], ids, hashes, number)
            )
        docs_file = posixpath.join(r["work"], "docs.parquet")
        if lake.exists(docs_file):
            kept = lake.read_parquet(docs_file).select(
                ["doc_id", "source", "exact_hash", "signature", "buckets"]
            )
            status = [duplicate.get(d, "published") for d in kept["doc_id"].to_pylist()]
            dup_rows = [
                {"doc_id": d, "source": s, "stage": "dedup", "reason": st}
                for d, s, st in zip(
                    kept["doc_id"].to_pylist(), kept["source"].to_pylist(), status, strict=True
                )
                if st != "published"
            ]
            if dup_rows:
                rejects.append(pa.Table.from_pylist(dup_rows, schema=REJECT_SCHEMA))
            published = [s == "published" for s in status]
            signatures = [
                v if p else None for v, p in zip(kept["signature"].to_pylist(), published, strict=True)
            ]
            state = _state(
                kept["doc_id"],
                kept["source"],
                pa.array(status),
                ids,
                hashes,
                number,
                dedup_state={
                    "exact_hash": kept["exact_hash"],
                    "signature": pa.array(signatures, pa.binary()),  # only published ones are compared later
                    "buckets": kept["buckets"],
                    "spec": pa.array([spec] * kept.num_rows, pa.string()),
                },
            )
            documents.append(state)
    reject_table = pa.concat_tables(rejects) if rejects else REJECT_SCHEMA.empty_table()
    reject_table = reject_table.append_column(
        "release", pa.array([number] * reject_table.num_rows, pa.int32())
    )
    document_table = pa.concat_tables(documents) if documents else DOCUMENTS_SCHEMA.empty_table()
    return reject_table, document_table


def _state(
    doc_ids,
    sources,
    status,
    ids: dict[str, str],
    hashes: dict[str, str],
    number: int,
    dedup_state: dict[str, pa.Array] | None = None,
) -> pa.Table:
    """Rows of ``pretrain.documents``; ``dedup_state`` (hash, signature, buckets, spec) for documents kept."""
    n = len(doc_ids)
    doc_list = doc_ids.to_pylist()
    return pa.table(
        {
            "doc_id": doc_ids,
            "source": sources,
            "release": pa.array([number] * n, pa.int32()),
            "status": status,
            "shard_id": pa.array([ids["shard_id"]] * n, pa.string()),
            "shard_version": pa.array([ids["shard_version"]] * n, pa.string()),
            "content_hash": pa.array([hashes.get(d) for d in doc_list], pa.string()),
            "exact_hash": pa.array([None] * n, pa.int64()),
            "signature": pa.array([None] * n, pa.binary()),
            "buckets": pa.array([[]] * n, pa.list_(pa.int64())),
            "spec": pa.array([None] * n, pa.string()),
            **(dedup_state or {}),
        },
        schema=DOCUMENTS_SCHEMA,
    )
