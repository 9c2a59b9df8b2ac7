"""Stage 4 of the pretraining feed: the global dedup, across this run's shards and the previous releases.

Inputs are the compact per-shard ``docs.parquet`` files and the published rows of ``pretrain.documents``.

- :func:`exact_dedup` (mapped per hash partition) drops the new documents whose normalized text equals an
  earlier one's, into the run's ``exact/`` folder (``doc_id, duplicate_of``).
- :func:`lsh` (mapped per band group) writes the candidate near-duplicate pairs of its bands to ``candidates/``.
- :func:`clusters` verifies the candidate pairs and keeps one document per near-duplicate cluster, writing the
  others to ``fuzzy/``.

:func:`partitions` gives the fan-out of these stages (and of the output shards) for task mapping.
"""

from __future__ import annotations

import posixpath
from typing import Any

import numpy as np
import pyarrow as pa

from feedstock.config import Config
from feedstock.lake import Lake
from feedstock.pretrain.tables import DOCS_SCHEMA, DOCUMENTS
from feedstock.pretrain.workspace import run_dir
from feedstock.stages import dedup


def _docs_files(lake: Lake, results: list[dict[str, Any]]) -> list[str]:
    files = [posixpath.join(r["work"], "docs.parquet") for r in results if r["status"] == "processed"]
    return [f for f in files if lake.exists(f)]


def _read_docs(lake: Lake, files: list[str], columns: list[str], filter_=None) -> pa.Table:
    if not files:
        return DOCS_SCHEMA.empty_table().select(columns)
    return lake.parquet_dataset(files, DOCS_SCHEMA).to_table(columns=columns, filter=filter_)


def _previous(lake: Lake, columns: list[str], filter_=None) -> pa.Table | None:
    import pyarrow.dataset as ds

    dataset = lake.dataset(DOCUMENTS)
    if dataset is None:
        return None
    published = ds.field("status") == "published"
    return dataset.to_table(columns=columns, filter=published if filter_ is None else published & filter_)


def exact_dedup(
    config: Config, lake: Lake, run_key: str, results: list[dict[str, Any]], partition: int
) -> int:
    """Drop the new documents whose normalized text equals an earlier one's (this partition of the hashes)."""
    import pyarrow.compute as pc

    partitions = config.pretrain.dedup_partitions

    def mine(table: pa.Table) -> pa.Table:
        bucket = pc.bit_wise_and(table["exact_hash"], pa.scalar(2**62 - 1, pa.int64()))
        return table.filter(pc.equal(pc.remainder(bucket, partitions), partition))

    new = mine(_read_docs(lake, _docs_files(lake, results), ["doc_id", "exact_hash"]))
    new = new.append_column("release", pa.array([0] * new.num_rows, pa.int32()))
    previous = _previous(lake, ["doc_id", "exact_hash", "release"])
    if previous is not None and config.pretrain.exact_dedup:
        new = pa.concat_tables([mine(previous).cast(new.schema), new])
    drops = dedup.exact_partition(new) if config.pretrain.exact_dedup else _no_drops()
    lake.write_parquet(
        posixpath.join(run_dir(lake, run_key), "exact", f"part-{partition:04d}.parquet"), drops
    )
    return drops.num_rows


def _no_drops() -> pa.Table:
    return pa.table({"doc_id": pa.array([], pa.string()), "duplicate_of": pa.array([], pa.string())})


def _dropped(lake: Lake, run_key: str, kind: str) -> pa.Table:
    return lake.read_staged(posixpath.join(run_dir(lake, run_key), kind), schema=_no_drops().schema)


def band_groups(config: Config) -> list[list[int]]:
    if config.pretrain.minhash is None:
        return []
    bands = list(range(config.pretrain.minhash.bands))
    groups = min(config.pretrain.dedup_partitions, len(bands))
    return [bands[g::groups] for g in range(groups)]


def partitions(config: Config) -> dict[str, list[int]]:
    """The fan-out of the global stages, for task mapping."""
    return {
        "exact_partitions": list(range(config.pretrain.dedup_partitions)),
        "band_groups": list(range(len(band_groups(config)))),
        "output_shards": list(range(config.pretrain.output_shards)),
    }


def lsh(config: Config, lake: Lake, run_key: str, results: list[dict[str, Any]], group: int) -> int:
    """Candidate near-duplicate pairs from the bands of this group, against this run and earlier releases."""
    import duckdb

    bands = band_groups(config)[group]
    exact = _dropped(lake, run_key, "exact")
    new = _read_docs(lake, _docs_files(lake, results), ["doc_id", "buckets"])
    con = duckdb.connect()
    con.register("new_docs", new)
    con.register("exact", exact)
    parts = [
        "select doc_id, 0 as release, b.band, buckets[b.band + 1] as bucket from new_docs, bands b "
        "where len(buckets) > 0 and doc_id not in (select doc_id from exact)"
    ]
    previous = _previous(lake, ["doc_id", "release", "buckets", "spec"])
    spec = dedup.MinHasher(config.pretrain.minhash).spec_key
    if previous is not None:
        con.register("previous", previous)
        parts.append(
            "select doc_id, release, b.band, buckets[b.band + 1] from previous, bands b "
            f"where len(buckets) > 0 and spec = '{spec}'"
        )
    con.register("bands", pa.table({"band": pa.array(bands, pa.int32())}))
    buckets = con.sql(" union all ".join(parts)).to_arrow_table()
    pairs = dedup.lsh_candidates(buckets)
    lake.write_parquet(
        posixpath.join(run_dir(lake, run_key), "candidates", f"group-{group:04d}.parquet"), pairs
    )
    return pairs.num_rows


def clusters(config: Config, lake: Lake, run_key: str, results: list[dict[str, Any]]) -> dict[str, int]:
    """Verify the candidate pairs and keep one document per near-duplicate cluster."""
    import pyarrow.dataset as ds

    schema = pa.schema([("doc_id", pa.string()), ("candidate", pa.string())])
    pairs = lake.read_staged(posixpath.join(run_dir(lake, run_key), "candidates"), schema=schema)
    if pairs.num_rows:
        pairs = pairs.group_by(["doc_id", "candidate"]).aggregate([]).sort_by([("doc_id", "ascending")])
    involved = pa.array(
        sorted(set(pairs["doc_id"].to_pylist()) | set(pairs["candidate"].to_pylist())), pa.string()
    )
    signatures: dict[str, np.ndarray] = {}
    releases: dict[str, int] = {}
    new = _read_docs(
        lake, _docs_files(lake, results), ["doc_id", "signature"], ds.field("doc_id").isin(involved)
    )
    previous = _previous(lake, ["doc_id", "signature", "release"], ds.field("doc_id").isin(involved))
    for table, release in ((previous, None), (new, 0)):
        if table is None:
            continue
        for i, doc_id in enumerate(table["doc_id"].to_pylist()):
            signatures[doc_id] = np.frombuffer(table["signature"][i].as_py(), dtype=np.uint32)
            releases[doc_id] = table["release"][i].as_py() if release is None else 0
    drops, unverified = dedup.fuzzy_clusters(pairs, signatures, releases, config.pretrain.minhash.threshold)
    lake.write_parquet(posixpath.join(run_dir(lake, run_key), "fuzzy", "clusters.parquet"), drops)
    return {
        "candidate_pairs": pairs.num_rows,
        "unverified_pairs": unverified,
        "fuzzy_duplicates": drops.num_rows,
    }
