"""Stages 1 and 2 of the pretraining feed: prepare the release and plan the shards still to do.

1. :func:`prepare` numbers the release and pins the inputs (bronze versions, corpus file versions); when inputs
   and configuration are those of the last finished run, the run has nothing to do. :func:`finish` records what
   a run built from.
2. :func:`plan` lists the shards still to do: every file (or part) of the ``corpus`` sources that no earlier
   release processed in this version, and the new or changed documents of the dbt mart ``pretrain_documents``,
   exported as staged Parquet shards. It returns the shards as small dicts for task mapping, and its counts.

An unreachable corpus source leaves this release (with a one-line reason); it does not sink it.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
from collections import Counter
from typing import Any

import pyarrow as pa

from feedstock import runstate
from feedstock.config import Config, ConfigError, CorpusSource
from feedstock.lake import Lake
from feedstock.pretrain.corpus import Shard, list_shards
from feedstock.pretrain.tables import DOCUMENTS, RELEASE
from feedstock.pretrain.workspace import config_key, run_dir

log = logging.getLogger(__name__)

MART_SHARD_DOCS = 20_000  # documents per staged shard of the dbt mart


def feed_sources(config: Config) -> list[str]:
    if config.pretrain.sources is not None:
        return list(config.pretrain.sources)
    return [
        s.name
        for s in config.sources
        if s.kind in ("documents", "corpus") or (s.kind == "warehouse" and getattr(s, "document", None))
    ]


def previous_releases(lake: Lake) -> list[int]:
    return runstate.releases(lake, RELEASE)


def prepare(config: Config, lake: Lake, duckdb_file: str | None = None) -> dict[str, Any]:
    """The release number, the pinned inputs and the configuration key of this run; the bronze inputs landed in
    the run's DuckDB file for dbt.

    ``changed`` is False, with a one-line ``message``, when the inputs (bronze versions, corpus file versions) and
    the configuration are those of the last finished run: the run then has nothing to do.
    """
    from feedstock import runstate, transform
    from feedstock.stages.tokenizers import load_tokenizer

    try:
        load_tokenizer(config.pretrain.tokenizer)  # a bad tokenizer fails here, before any work
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    releases = previous_releases(lake)
    sources = set(feed_sources(config))
    bronze = transform.inputs(config, lake, sources)
    corpus = sorted(f"{shard.shard_id}@{shard.version}" for shard in _corpus_shards(config, lake, sources)[0])
    p = config.pretrain
    fingerprint = transform.fingerprint(
        bronze, corpus, config_key(config), p.tokenizer, p.weights, sorted(sources)
    )
    if message := runstate.unchanged(lake, "pretrain", fingerprint):
        return {"changed": False, "message": message}
    landed = transform.land(config, lake, duckdb_file, bronze) if duckdb_file else {}
    return {
        "changed": True,
        "release": (releases[-1] + 1) if releases else 1,
        "bronze": bronze,
        "config_key": config_key(config),
        "fingerprint": fingerprint,
        "message": f"release {(releases[-1] + 1) if releases else 1}: {len(corpus)} corpus shards listed, "
        f"{sum(landed.values())} bronze rows landed from {len(landed)} sources",
    }


def finish(lake: Lake, prepared: dict[str, Any], run_id: str) -> None:
    """Record what this run built from, so an unchanged next run is skipped (see :mod:`feedstock.runstate`)."""
    from feedstock import runstate

    releases = previous_releases(lake)
    runstate.record(lake, "pretrain", prepared["fingerprint"], releases[-1] if releases else None, run_id)


def _corpus_shards(config: Config, lake: Lake, sources: set[str]) -> tuple[list[Shard], dict[str, str]]:
    """The shards of every corpus source the feed reads, and the sources that could not be listed (one line
    each): an unreachable corpus leaves this release, it does not sink it."""
    shards: list[Shard] = []
    problems: dict[str, str] = {}
    for source in config.sources:
        if source.name in sources and isinstance(source, CorpusSource):
            try:
                shards += list_shards(source, lake)
            except OSError as exc:
                problems[source.name] = f"source '{source.name}': field 'uri': {str(exc).splitlines()[0]}"
                log.warning(problems[source.name])
    return shards, problems


def _processed(lake: Lake) -> tuple[set[tuple[str, str]], dict[str, str]]:
    """Shards (id, version) that earlier releases consumed, and the content hash of every mart document."""
    table = lake.read(DOCUMENTS, columns=["doc_id", "shard_id", "shard_version", "content_hash"])
    if table is None:
        return set(), {}
    shards = set(zip(table["shard_id"].to_pylist(), table["shard_version"].to_pylist(), strict=True))
    hashes = {
        d: h
        for d, h in zip(table["doc_id"].to_pylist(), table["content_hash"].to_pylist(), strict=True)
        if h is not None
    }
    return shards, hashes


def plan(config: Config, lake: Lake, run_key: str, duckdb_file: str | None) -> dict[str, Any]:
    """The shards this release must process, as small dicts for task mapping, and the plan's counts."""
    done_shards, mart_hashes = _processed(lake)
    sources = set(feed_sources(config))
    shards: list[Shard] = []
    stats: Counter = Counter()
    listed, unreachable = _corpus_shards(config, lake, sources)
    for shard in listed:
        if (shard.shard_id, shard.version) in done_shards:
            stats["shards_unchanged"] += 1
        else:
            shards.append(shard)
    if unreachable:
        stats["sources_unreachable"] = len(unreachable)
    if duckdb_file:
        mart_shards, mart_stats = _export_mart(lake, run_key, duckdb_file, sources, mart_hashes)
        shards += mart_shards
        stats.update(mart_stats)
    stats["shards_planned"] = len(shards)
    lake.write_json(posixpath.join(run_dir(lake, run_key), "plan.json"), dict(stats))
    return {"shards": [s.to_dict() for s in shards], "stats": dict(stats)}


def _export_mart(
    lake: Lake, run_key: str, duckdb_file: str, sources: set[str], published: dict[str, str]
) -> tuple[list[Shard], Counter]:
    """Stage the mart's new and changed documents as Parquet shards; count unchanged and deleted ones."""
    import duckdb

    stats: Counter = Counter()
    con = duckdb.connect(duckdb_file, read_only=True)
    try:
        reader = con.sql(
            "select doc_id, source, text, content_hash, is_deleted from main.pretrain_documents "
            "order by doc_id"
        ).fetch_arrow_reader(batch_size=MART_SHARD_DOCS)
        shards, pending = [], []
        for batch in reader:
            rows = batch.to_pylist()
            for row in rows:
                if row["source"] not in sources:
                    continue
                if row["is_deleted"]:
                    stats["mart_deleted"] += 1
                elif published.get(row["doc_id"]) == row["content_hash"]:
                    stats["mart_unchanged"] += 1
                else:
                    stats["mart_new_or_changed"] += 1
                    pending.append(row)
            while len(pending) >= MART_SHARD_DOCS:
                shards.append(_stage_mart_shard(lake, run_key, len(shards), pending[:MART_SHARD_DOCS]))
                pending = pending[MART_SHARD_DOCS:]
        if pending:
            shards.append(_stage_mart_shard(lake, run_key, len(shards), pending))
    finally:
        con.close()
    return shards, stats


def _stage_mart_shard(lake: Lake, run_key: str, number: int, rows: list[dict[str, Any]]) -> Shard:
    table = pa.Table.from_pylist(
        rows,
        schema=pa.schema(
            [
                ("doc_id", pa.string()),
                ("source", pa.string()),
                ("text", pa.string()),
                ("content_hash", pa.string()),
            ]
        ),
    )
    version = hashlib.sha256(
        "\n".join(f"{r['doc_id']}\0{r['content_hash']}" for r in rows).encode()
    ).hexdigest()
    uri = posixpath.join(lake.staging("pretrain", "mart", version[:16]), f"mart-{number:05d}.parquet")
    if not lake.exists(uri):
        lake.write_parquet(uri, table)
    return Shard(
        source="mart", uri=uri, relative=f"mart-{number:05d}.parquet", format="mart", version=version[:16]
    )
