"""Boilerplate detection for the pretraining feed: the lines repeated across many documents of a source.

:func:`scan_shard` (mapped, one task per shard) counts, per source, in how many documents of the shard each line
occurs, and writes the counts per batch (``source, line, docs``) into a scan folder with a completion marker, so
memory stays bounded and a finished shard is skipped on rerun. :func:`boilerplate` sums the counts over all
shards and writes the lines that occur in at least ``boilerplate_min_docs`` documents of a source to the run's
``boilerplate.parquet``, which :mod:`feedstock.pretrain.process` removes from every document.

An unreadable shard scans to no lines: the process stage quarantines it with its reason.
"""

from __future__ import annotations

import posixpath
from collections import Counter
from typing import Any

from feedstock.config import Config
from feedstock.lake import Lake
from feedstock.pretrain.corpus import Shard, ShardUnreadable, read_batches
from feedstock.pretrain.workspace import run_dir
from feedstock.stages import boilerplate as lines
from feedstock.stages.steps import Document


def _boilerplate_options(config: Config) -> tuple[int, int]:
    options = config.pretrain.normalize
    min_docs = options.get("boilerplate_min_docs", lines.MIN_DOCS)
    return int(min_docs or 0), int(options.get("boilerplate_min_chars", lines.MIN_CHARS))


def scan_dir(lake: Lake, config: Config, shard: Shard) -> str:
    return lake.staging(
        "pretrain", "scan", f"{shard.shard_id}-{shard.version}-{_boilerplate_options(config)[1]}"
    )


def scan_shard(config: Config, lake: Lake, shard_dict: dict[str, Any]) -> dict[str, Any]:
    """Count, per source, in how many documents of this shard each line occurs (for boilerplate removal).

    Counts are written per batch and summed across shards by :func:`boilerplate`, so memory stays bounded.
    """
    shard = Shard.from_dict(shard_dict)
    min_docs, min_chars = _boilerplate_options(config)
    work = scan_dir(lake, config, shard)
    marker = posixpath.join(work, "_SUCCESS.json")
    if not min_docs:
        return {"shard_id": shard.shard_id, "lines": None}
    if lake.exists(marker):
        return lake.read_json(marker)
    lake.clear(work)
    result: dict[str, Any] = {"shard_id": shard.shard_id, "lines": posixpath.join(work, "lines.parquet")}
    try:
        with lake.parquet_writer(result["lines"], lines.LINES_SCHEMA) as out:
            for batch in read_batches(shard, lake, config.pretrain.batch_size):
                docs = ((d.source, d.text) for d in batch if isinstance(d, Document))
                if (counts := lines.count_batch(docs, min_chars)) is not None:
                    out.write_table(counts)
    except ShardUnreadable:
        lake.clear(work)
        result["lines"] = None  # the process stage quarantines the shard with its reason
    lake.write_json(marker, result)
    return result


def boilerplate(config: Config, lake: Lake, run_key: str, scans: list[dict[str, Any]]) -> dict[str, int]:
    """The lines that occur in at least ``boilerplate_min_docs`` documents of a source, over all its shards,
    streamed from DuckDB into the run's ``boilerplate.parquet``; returns how many each source has."""
    min_docs, _ = _boilerplate_options(config)
    files = [s["lines"] for s in scans if s.get("lines") and lake.exists(s["lines"])] if min_docs else []
    counts: Counter = Counter()
    uri = posixpath.join(run_dir(lake, run_key), "boilerplate.parquet")
    with lake.local_files(files) as local, lake.parquet_writer(uri, lines.FOUND_SCHEMA) as out:
        for batch in lines.frequent(local, min_docs):
            out.write_batch(batch)
            for row in batch.column("source").value_counts().to_pylist():
                counts[row["values"]] += row["counts"]
    return dict(counts)


def _boilerplate_for(lake: Lake, run_key: str) -> dict[str, set[int]]:
    uri = posixpath.join(run_dir(lake, run_key), "boilerplate.parquet")
    if not lake.exists(uri):
        return {}
    return lines.by_source(lake.read_parquet(uri).to_batches())
