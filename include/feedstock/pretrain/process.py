"""Stage 3 of the pretraining feed: process one shard (mapped, one task per shard, bounded memory).

:func:`process_shard` runs normalize (with the run's boilerplate), language, quality, PII and decontamination,
then the ``contracts.PRETRAIN_DOCUMENTS`` boundary; then exact hashes, MinHash signatures and LSH buckets of the
documents kept. Its outputs land in the shard's work folder (:func:`feedstock.pretrain.workspace.work_dir`):
``docs.parquet`` (:data:`~feedstock.pretrain.tables.DOCS_SCHEMA`), ``rejects.parquet``
(:data:`~feedstock.pretrain.tables.REJECT_SCHEMA`, every drop with its stage and reason) and a completion marker
holding the shard's result and stats: a shard already done is skipped on rerun, and a failed shard retries
alone. A corrupt shard is quarantined with its reason.
"""

from __future__ import annotations

import posixpath
from collections import Counter
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from feedstock import contracts
from feedstock.config import Config
from feedstock.forget import forgotten_ids
from feedstock.lake import Lake
from feedstock.pretrain.corpus import Shard, ShardUnreadable, read_batches
from feedstock.pretrain.scan import _boilerplate_for
from feedstock.pretrain.tables import DOCS_SCHEMA, REJECT_SCHEMA
from feedstock.pretrain.workspace import work_dir
from feedstock.stages import dedup
from feedstock.stages.steps import Document, Drop, Forgotten, Step, run_steps


def build_steps(config: Config, boilerplate: dict[str, set[int]]) -> list[Step]:
    from feedstock.stages.normalize import Normalizer
    from feedstock.stages.quality import build_filters

    p = config.pretrain
    steps: list[Step] = [Normalizer(**p.normalize, boilerplate=boilerplate)]
    if p.language is not None:
        from feedstock.pretrain.langid import LanguageFilter

        steps.append(LanguageFilter(**p.language))
    steps += build_filters(p.quality)
    if p.pii is not None:
        from feedstock.stages.pii import PiiRedactor

        steps.append(PiiRedactor(**p.pii))
    if p.decontamination:
        from feedstock.stages.decontam import Decontaminator

        steps.append(Decontaminator(**p.decontamination))
    return steps


def out_shard(seed: int, doc_id: str, shards: int) -> int:
    return xxhash.xxh64_intdigest(doc_id.encode(), seed=seed) % shards


@dataclass
class ShardResult:
    shard_id: str
    label: str
    status: str  # processed | quarantined
    reason: str | None
    work: str
    stats: dict[str, dict[str, int]]


def process_shard(config: Config, lake: Lake, shard_dict: dict[str, Any], run_key: str) -> dict[str, Any]:
    """Clean, filter and sign one shard; idempotent (a finished shard returns its recorded result)."""
    shard = Shard.from_dict(shard_dict)
    work = work_dir(lake, config, shard)
    marker = posixpath.join(work, "_SUCCESS.json")
    if lake.exists(marker):
        return lake.read_json(marker)
    lake.clear(work)
    try:
        stats = _process(config, lake, shard, work, _boilerplate_for(lake, run_key))
        result = ShardResult(shard.shard_id, shard.label, "processed", None, work, stats)
    except ShardUnreadable as exc:
        lake.clear(work)
        result = ShardResult(shard.shard_id, shard.label, "quarantined", str(exc), work, {})
    value = {**asdict(result), "shard": shard.to_dict()}
    lake.write_json(marker, value)
    return value


def _process(
    config: Config, lake: Lake, shard: Shard, work: str, boilerplate: dict[str, set[int]]
) -> dict[str, dict[str, int]]:
    p = config.pretrain
    steps = build_steps(config, boilerplate)
    if forgotten := forgotten_ids(lake):
        steps.insert(0, Forgotten(forgotten))
    hasher = dedup.MinHasher(p.minhash) if p.minhash else None
    stats: dict[str, Counter] = {"read": Counter()}
    writers: dict[str, pq.ParquetWriter] = {}

    with ExitStack() as opened:

        def writer(name: str, schema: pa.Schema) -> pq.ParquetWriter:
            # Opened on first use, so a shard with no rejects (or nothing kept) has no such file.
            if name not in writers:
                writers[name] = opened.enter_context(lake.parquet_writer(posixpath.join(work, name), schema))
            return writers[name]

        for batch in read_batches(shard, lake, p.batch_size):
            drops: list[Drop] = [d for d in batch if isinstance(d, Drop)]
            docs = [d for d in batch if isinstance(d, Document)]
            stats["read"]["in"] += len(batch)
            stats["read"]["out"] += len(docs)
            for d in drops:
                stats["read"][f"dropped:{d.reason}"] += 1
            kept = _contract(list(run_steps(docs, steps, stats, drops)), stats, drops)
            if drops:
                writer("rejects.parquet", REJECT_SCHEMA).write_table(
                    pa.Table.from_pylist([asdict(d) for d in drops], schema=REJECT_SCHEMA)
                )
            if kept:
                writer("docs.parquet", DOCS_SCHEMA).write_table(
                    _signed(kept, hasher, p.seed, p.output_shards)
                )
    return {stage: dict(counter) for stage, counter in stats.items()}


def _contract(docs: list[Document], stats: dict[str, Counter], drops: list[Drop]) -> list[Document]:
    """The stage boundary: documents that break ``contracts.PRETRAIN_DOCUMENTS`` are set aside with the reason."""
    counter = stats.setdefault("contract", Counter())
    counter["in"] += len(docs)
    if not docs:
        return docs
    batch = pa.table(
        {
            "doc_id": [d.doc_id for d in docs],
            "source": [d.source for d in docs],
            "text": [d.text for d in docs],
            "lang": pa.array([d.meta.get("lang") for d in docs], pa.string()),
            "lang_score": pa.array([d.meta.get("lang_score") for d in docs], pa.float64()),
        }
    )
    checked = contracts.check(batch, contracts.PRETRAIN_DOCUMENTS)
    for row, reason in zip(checked.failed_rows, checked.reasons, strict=True):
        counter[f"dropped:{reason}"] += 1
        drops.append(Drop(docs[row].doc_id, docs[row].source, "contract", reason))
    failed = set(checked.failed_rows)
    kept = [d for i, d in enumerate(docs) if i not in failed]
    counter["out"] += len(kept)
    return kept


def _signed(docs: list[Document], hasher: dedup.MinHasher | None, seed: int, shards: int) -> pa.Table:
    texts = [d.text for d in docs]
    n = len(docs)
    if hasher is not None:
        signatures, has_shingles = hasher.signatures(texts)
        buckets = hasher.buckets(signatures)
        signature_col = [signatures[i].tobytes() for i in range(n)]
        bucket_col = [buckets[i].tolist() if has_shingles[i] else [] for i in range(n)]
    else:
        signature_col, bucket_col = [None] * n, [[] for _ in range(n)]
    return pa.table(
        {
            "doc_id": [d.doc_id for d in docs],
            "source": [d.source for d in docs],
            "text": texts,
            "lang": [d.meta.get("lang") for d in docs],
            "lang_score": [d.meta.get("lang_score") for d in docs],
            "exact_hash": dedup.exact_hashes(texts),
            "signature": signature_col,
            "buckets": bucket_col,
            "out_shard": [out_shard(seed, d.doc_id, shards) for d in docs],
        },
        schema=DOCS_SCHEMA,
    )
