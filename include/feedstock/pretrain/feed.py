"""The continued-pretraining feed: from input shards to a tokenized, deduplicated, mixed release.

One function per Airflow task (``dags/pretrain_feed.py`` is the wiring):

1. :func:`prepare` numbers the release and pins the inputs (bronze versions, corpus file versions).
2. :func:`plan` lists the shards still to do: every file (or part) of the ``corpus`` sources that no earlier
   release processed in this version, and the new or changed documents of the dbt mart ``pretrain_documents``,
   exported as staged Parquet shards.
3. :func:`process_shard` (mapped, one task per shard, bounded memory): normalize, language, quality, PII,
   decontamination; then exact hashes, MinHash signatures and LSH buckets of the documents kept. Its outputs
   land in a work folder keyed by the shard's id, version and the configuration, with a completion marker:
   a shard already done is skipped on rerun, and a failed shard retries alone. A corrupt shard is quarantined.
4. :func:`exact_dedup` (mapped per hash partition), :func:`lsh` (mapped per band group) and :func:`clusters`:
   the global dedup stages, on the compact per-shard outputs and on the previous releases' signatures.
5. :func:`write_shard` (mapped per output shard): the mix (per-source weights, deterministic shuffle by seed),
   tokenization, and the ``.bin``/``.idx`` token files plus a Parquet text shard (``doc_id, source, text,
   n_tokens``).
6. :func:`release` commits ``pretrain.release`` (one row per output shard), ``pretrain.rejects`` (``doc_id,
   source, stage, reason``) and ``pretrain.documents`` (the dedup state: one row per processed document) and
   writes the data card beside the shards.

Every input document is accounted for: ``docs_in = docs_out + dropped (by stage and reason)``, and every shard
is either processed or quarantined with its reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
from collections import Counter
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from feedstock import contracts
from feedstock.config import Config, ConfigError, CorpusSource
from feedstock.errors import ReleaseConflict
from feedstock.lake import Commit, Lake, filesystem
from feedstock.pretrain import dedup
from feedstock.pretrain.corpus import Shard, ShardUnreadable, list_shards, read_batches
from feedstock.pretrain.steps import Document, Drop, Step, run_steps

log = logging.getLogger(__name__)

RELEASE = "pretrain.release"
REJECTS = "pretrain.rejects"
DOCUMENTS = "pretrain.documents"
MART_SHARD_DOCS = 20_000  # documents per staged shard of the dbt mart

REJECT_SCHEMA = pa.schema(
    [("doc_id", pa.string()), ("source", pa.string()), ("stage", pa.string()), ("reason", pa.string())]
)
DOCS_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("source", pa.string()),
        ("text", pa.string()),
        ("lang", pa.string()),
        ("lang_score", pa.float32()),
        ("exact_hash", pa.int64()),
        ("signature", pa.binary()),
        ("buckets", pa.list_(pa.int64())),
        ("out_shard", pa.int32()),
    ]
)


# ---- configuration identity -----------------------------------------------------------------------------


def config_key(config: Config) -> str:
    """What a processed shard depends on: every stage's settings, the shuffle seed and the output shards."""
    p = config.pretrain
    relevant = {
        "normalize": p.normalize,
        "language": p.language,
        "quality": p.quality,
        "pii": p.pii,
        "decontamination": p.decontamination,
        "minhash": asdict(p.minhash) if p.minhash else None,
        "seed": p.seed,
        "output_shards": p.output_shards,
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:16]


def work_dir(lake: Lake, config: Config, shard: Shard) -> str:
    return lake.staging("pretrain", "work", config_key(config), f"{shard.shard_id}-{shard.version}")


def run_dir(lake: Lake, run_key: str) -> str:
    return lake.staging("pretrain", "runs", run_key)


def release_dir(lake: Lake, release: int) -> str:
    return lake.uri("pretrain") + f"/releases/{release:05d}"


def feed_sources(config: Config) -> list[str]:
    if config.pretrain.sources is not None:
        return list(config.pretrain.sources)
    return [
        s.name
        for s in config.sources
        if s.kind in ("documents", "corpus") or (s.kind == "warehouse" and getattr(s, "document", None))
    ]


# ---- 1. prepare -------------------------------------------------------------------------------------------


def previous_releases(lake: Lake) -> list[int]:
    table = lake.read(RELEASE, columns=["release"])
    return sorted(set(table["release"].to_pylist())) if table is not None and table.num_rows else []


def prepare(config: Config, lake: Lake, duckdb_file: str | None = None) -> dict[str, Any]:
    """The release number, the pinned inputs and the configuration key of this run; the bronze inputs landed in
    the run's DuckDB file for dbt.

    ``changed`` is False, with a one-line ``message``, when the inputs (bronze versions, corpus file versions) and
    the configuration are those of the last finished run: the run then has nothing to do.
    """
    from feedstock import runstate, transform
    from feedstock.pretrain.tokenize import load_tokenizer

    try:
        load_tokenizer(config.pretrain.tokenizer)  # a bad tokenizer fails here, before any work
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    releases = previous_releases(lake)
    sources = set(feed_sources(config))
    bronze = transform.inputs(config, lake, sources)
    corpus = sorted(f"{shard.shard_id}@{shard.version}" for shard in _corpus_shards(config, lake, sources)[0])
    p = config.pretrain
    fingerprint = transform.fingerprint(bronze, corpus, config_key(config), p.tokenizer, p.weights, sorted(sources))
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


# ---- 2. plan ----------------------------------------------------------------------------------------------


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


# ---- 3. process a shard -------------------------------------------------------------------------------------


def build_steps(config: Config, boilerplate: dict[str, set[int]]) -> list[Step]:
    from feedstock.pretrain.normalize import Normalizer
    from feedstock.pretrain.quality import build_filters

    p = config.pretrain
    steps: list[Step] = [Normalizer(**p.normalize, boilerplate=boilerplate)]
    if p.language is not None:
        from feedstock.pretrain.langid import LanguageFilter

        steps.append(LanguageFilter(**p.language))
    steps += build_filters(p.quality)
    if p.pii is not None:
        from feedstock.pretrain.pii import PiiRedactor

        steps.append(PiiRedactor(**p.pii))
    if p.decontamination:
        from feedstock.pretrain.decontam import Decontaminator

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


LINES_SCHEMA = pa.schema([("source", pa.string()), ("line", pa.int64()), ("docs", pa.int64())])


def _boilerplate_options(config: Config) -> tuple[int, int]:
    from feedstock.pretrain.normalize import BOILERPLATE_MIN_CHARS, BOILERPLATE_MIN_DOCS

    options = config.pretrain.normalize
    min_docs = options.get("boilerplate_min_docs", BOILERPLATE_MIN_DOCS)
    return int(min_docs or 0), int(options.get("boilerplate_min_chars", BOILERPLATE_MIN_CHARS))


def scan_dir(lake: Lake, config: Config, shard: Shard) -> str:
    return lake.staging(
        "pretrain", "scan", f"{shard.shard_id}-{shard.version}-{_boilerplate_options(config)[1]}"
    )


def scan_shard(config: Config, lake: Lake, shard_dict: dict[str, Any]) -> dict[str, Any]:
    """Count, per source, in how many documents of this shard each line occurs (for boilerplate removal).

    Counts are written per batch and summed across shards by :func:`boilerplate`, so memory stays bounded.
    """
    from feedstock.pretrain.normalize import line_key

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
        with lake.parquet_writer(result["lines"], LINES_SCHEMA) as out:
            for batch in read_batches(shard, lake, config.pretrain.batch_size):
                keys: Counter = Counter()
                for doc in batch:
                    if isinstance(doc, Document):
                        lines = {line_key(x) for x in doc.text.split("\n") if len(x.strip()) >= min_chars}
                        keys.update((doc.source, k) for k in lines)
                if keys:
                    out.write_table(
                        pa.table(
                            {
                                "source": [s for s, _ in keys],
                                "line": np.array([k for _, k in keys], dtype=np.uint64).view(np.int64),
                                "docs": list(keys.values()),
                            },
                            schema=LINES_SCHEMA,
                        )
                    )
    except ShardUnreadable:
        lake.clear(work)
        result["lines"] = None  # the process stage quarantines the shard with its reason
    lake.write_json(marker, result)
    return result


def boilerplate(config: Config, lake: Lake, run_key: str, scans: list[dict[str, Any]]) -> dict[str, int]:
    """The lines that occur in at least ``boilerplate_min_docs`` documents of a source, over all its shards."""
    import duckdb

    min_docs, _ = _boilerplate_options(config)
    files = [s["lines"] for s in scans if s.get("lines") and lake.exists(s["lines"])]
    if not min_docs or not files:
        found = LINES_SCHEMA.empty_table().select(["source", "line"])
    else:
        con = duckdb.connect()
        # Streamed into DuckDB's aggregate (which can spill), not materialized: the counts grow with the corpus.
        con.register("lines", lake.parquet_dataset(files, LINES_SCHEMA).scanner().to_reader())
        found = con.sql(
            f"select source, line from lines group by source, line having sum(docs) >= {min_docs} order by all"
        ).to_arrow_table()
    lake.write_parquet(posixpath.join(run_dir(lake, run_key), "boilerplate.parquet"), found)
    counts = Counter(found["source"].to_pylist())
    return dict(counts)


def _boilerplate_for(lake: Lake, run_key: str) -> dict[str, set[int]]:
    uri = posixpath.join(run_dir(lake, run_key), "boilerplate.parquet")
    if not lake.exists(uri):
        return {}
    table = lake.read_parquet(uri)
    keys: dict[str, set[int]] = {}
    lines = table["line"].to_numpy().view(np.uint64)
    for source, key in zip(table["source"].to_pylist(), lines.tolist(), strict=True):
        keys.setdefault(source, set()).add(key)
    return keys


def _process(
    config: Config, lake: Lake, shard: Shard, work: str, boilerplate: dict[str, set[int]]
) -> dict[str, dict[str, int]]:
    p = config.pretrain
    steps = build_steps(config, boilerplate)
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


# ---- 4. global dedup ------------------------------------------------------------------------------------------


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


# ---- 5. mix, tokenize and write the output shards -----------------------------------------------------------


def write_shard(
    config: Config, lake: Lake, run_key: str, results: list[dict[str, Any]], shard: int
) -> dict[str, Any]:
    """Output shard ``shard``: its documents (weighted by source, shuffled by seed), tokenized, into the run's
    staging folder (the release moves it into place)."""
    import duckdb
    import pyarrow.dataset as ds

    from feedstock.pretrain.tokenize import TokenShardWriter, load_tokenizer

    p = config.pretrain
    tokenizer = load_tokenizer(p.tokenizer)
    files = _docs_files(lake, results)
    dropped = pa.concat_tables([_dropped(lake, run_key, "exact"), _dropped(lake, run_key, "fuzzy")])
    weights = pa.table(
        {"source": list(p.weights), "weight": pa.array([float(w) for w in p.weights.values()], pa.float64())}
    )
    docs = _read_docs(lake, files, ["doc_id", "source", "text"], ds.field("out_shard") == shard)
    con = duckdb.connect()
    con.register("docs", docs)
    con.register("dropped", dropped)
    con.register("weights", weights)
    # A weight w gives floor(w) copies, plus one more for a hash-chosen share frac(w) of the documents.
    reader = con.sql(
        f"""
        with weighted as (
            select d.doc_id, d.source, d.text, coalesce(w.weight, 1.0) as weight
            from docs d left join weights w using (source)
            where d.doc_id not in (select doc_id from dropped)
        ), copies as (
            select doc_id, source, text,
                   cast(floor(weight) as integer)
                   + case when (hash(doc_id || ':{p.seed}') % 1000000) / 1000000.0 < weight - floor(weight)
                          then 1 else 0 end as n
            from weighted
        )
        select doc_id, source, text from copies, range(n) as c(copy)
        order by hash(doc_id || ':' || copy || ':{p.seed}'), doc_id, copy
        """
    ).fetch_arrow_reader(batch_size=p.batch_size)
    out = posixpath.join(run_dir(lake, run_key), "out")
    name = f"shard-{shard:05d}"
    fs, base = filesystem(out, lake.s3)
    fs.makedirs(base, exist_ok=True)
    text_schema = pa.schema(
        [("doc_id", pa.string()), ("source", pa.string()), ("text", pa.string()), ("n_tokens", pa.int32())]
    )
    tokens_by_source: Counter = Counter()
    docs_written = 0
    with (
        fs.open(posixpath.join(base, f"{name}.bin"), "wb") as bin_handle,
        lake.parquet_writer(posixpath.join(out, f"{name}.parquet"), text_schema) as texts,
    ):
        tokens = TokenShardWriter(bin_handle, tokenizer.dtype, tokenizer.eos_id)
        for batch in reader:
            counts = tokens.write(tokenizer.encode_batch(batch.column("text").to_pylist()))
            texts.write_table(
                pa.Table.from_batches([batch]).append_column("n_tokens", pa.array(counts, pa.int32()))
            )
            for source, n in zip(batch.column("source").to_pylist(), counts, strict=True):
                tokens_by_source[source] += n
            docs_written += batch.num_rows
    with fs.open(posixpath.join(base, f"{name}.idx"), "wb") as handle:
        handle.write(tokens.index_bytes())
    return {
        "shard": shard,
        "name": name,
        "docs": docs_written,
        "tokens": int(sum(tokens_by_source.values())),
        "tokens_by_source": dict(tokens_by_source),
        "dtype": tokenizer.dtype.str,
        "tokenizer": tokenizer.name,
        "eos_id": tokenizer.eos_id,
    }


# ---- 6. release ------------------------------------------------------------------------------------------------

DOCUMENTS_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("source", pa.string()),
        ("release", pa.int32()),
        ("status", pa.string()),  # published, or the drop reason
        ("shard_id", pa.string()),
        ("shard_version", pa.string()),
        ("content_hash", pa.string()),  # mart documents: the bronze content hash, to skip unchanged ones
        ("exact_hash", pa.int64()),
        ("signature", pa.binary()),
        ("buckets", pa.list_(pa.int64())),
        ("spec", pa.string()),
    ]
)


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
    published = previous_releases(lake)
    if published and published[-1] >= number:
        if _release_run(lake, number) != produced_by.get("run_id"):
            raise ReleaseConflict(
                f"release {published[-1]} was published by another run while this one ran; clear this run to "
                f"build release {published[-1] + 1} on top of it"
            )
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
    for s in shards:
        tokens_by_source.update(s["tokens_by_source"])
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
    fs.makedirs(base, exist_ok=True)
    for shard in shards:
        for suffix in (".bin", ".idx", ".parquet"):
            name = shard["name"] + suffix
            if fs.exists(posixpath.join(staged, name)):
                fs.mv(posixpath.join(staged, name), posixpath.join(base, name))
    with fs.open(posixpath.join(base, "README.md"), "w") as handle:
        handle.write(data_card(stats, shards))
    lake.write_json(posixpath.join(out, "stats.json"), stats)
    # No multi-table transaction: each table is committed once per release (a retry skips what is there), and
    # pretrain.release, the publishing commit, goes last.
    if documents.num_rows and not _has_release(lake, DOCUMENTS, number):
        lake.append(DOCUMENTS, documents, commit)
    if not _has_release(lake, REJECTS, number):
        lake.append(REJECTS, rejects if rejects.num_rows else _empty_rejects(number), commit)
    rows = pa.Table.from_pylist(
        [
            {
                "release": number,
                "shard": s["shard"],
                "bin_uri": f"{out}/{s['name']}.bin",
                "idx_uri": f"{out}/{s['name']}.idx",
                "parquet_uri": f"{out}/{s['name']}.parquet",
                "docs": s["docs"],
                "tokens": s["tokens"],
                "dtype": s["dtype"],
                "tokenizer": s["tokenizer"],
                "eos_id": s["eos_id"],
                "card_uri": f"{out}/README.md",
            }
            for s in sorted(shards, key=lambda s: s["shard"])
        ]
    )
    if not _has_release(lake, RELEASE, number):
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


def _has_release(lake: Lake, name: str, number: int) -> bool:
    import pyarrow.dataset as ds

    dataset = lake.dataset(name)
    return dataset is not None and dataset.count_rows(filter=ds.field("release") == number) > 0


def _release_run(lake: Lake, number: int) -> str | None:
    """The run id that published release ``number``."""
    for entry in lake.history(RELEASE):
        if (entry.get("stats") or {}).get("release") == number:
            return (entry.get("produced_by") or {}).get("run_id")
    return None


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


def data_card(stats: dict[str, Any], shards: list[dict[str, Any]]) -> str:
    """The release's data card (Markdown), generated from its stats."""

    def table(header: tuple[str, str], rows: dict[str, Any]) -> str:
        lines = [f"| {header[0]} | {header[1]} |", "| --- | ---: |"]
        lines += [f"| {k} | {v:,} |" for k, v in sorted(rows.items(), key=lambda kv: -kv[1])]
        return "\n".join(lines) if rows else "_none_"

    drops = {reason: n for reasons in stats["drops_by_stage"].values() for reason, n in reasons.items() if n}
    quarantined = (
        "\n".join(f"- `{q['shard']}`: {q['reason']}" for q in stats["shards_quarantined"]) or "_none_"
    )
    return f"""# Pretraining release {stats["release"]}

Generated by feedstock's `pretrain_feed` from the release's own statistics.

| | |
| --- | ---: |
| documents in | {stats["docs_in"]:,} |
| documents published (unique) | {stats["docs_published"]:,} |
| documents in the shards (after source weights) | {stats["docs_out_weighted"]:,} |
| tokens | {stats["tokens"]:,} |
| tokenizer | {stats["tokenizer"]} |
| output shards | {len(shards)} |
| exact duplicate rate | {stats["exact_duplicate_rate"]:.2%} |
| fuzzy duplicate rate | {stats["fuzzy_duplicate_rate"]:.2%} |

## Tokens per source

{table(("source", "tokens"), stats["tokens_by_source"])}

## Drops per stage and reason

{table(("stage:reason", "documents"), drops)}

## Languages (detected, before the allow-list)

{table(("language", "documents"), stats["languages"])}

## PII redacted, per type

{table(("type", "count"), stats["pii"])}

## Quarantined shards

{quarantined}

## Files

Each `shard-NNNNN.bin` holds the documents' tokens ({shards[0]["dtype"] if shards else "n/a"}, little-endian), each
document followed by the EOS token; `shard-NNNNN.idx` holds `n_docs + 1` uint64 token offsets; `shard-NNNNN.parquet`
holds `doc_id, source, text, n_tokens` in the same order. Decode any document with
`feedstock pretrain decode <release> <shard> --doc N`.
"""


def decode(lake: Lake, release: str | int, shard: int, doc: int | None = None) -> str:
    """The text of one document (or every document) of a token shard, decoded with the release's tokenizer."""
    from feedstock.pretrain.tokenize import load_tokenizer, read_document

    table = lake.read(RELEASE)
    if table is None or table.num_rows == 0:
        raise ValueError("no pretraining release yet: run the pretrain_feed DAG first")
    rows = table.to_pylist()
    number = max(r["release"] for r in rows) if release == "latest" else int(release)
    match = [r for r in rows if r["release"] == number and r["shard"] == shard]
    if not match:
        raise ValueError(f"release {number} has no shard {shard}")
    row = match[0]
    spec = {"kind": "tiktoken", "name": row["tokenizer"]}
    if row["tokenizer"] not in ("cl100k_base", "o200k_base"):
        spec = {"kind": "huggingface", "path": row["tokenizer"]}
    tokenizer = load_tokenizer(spec)
    data = _read_bytes(lake, row["bin_uri"])
    index = _read_bytes(lake, row["idx_uri"])
    n_docs = len(index) // 8 - 1
    docs = range(n_docs) if doc is None else [doc]
    return "\n".join(tokenizer.decode(read_document(data, index, row["dtype"], d)) for d in docs)


def _read_bytes(lake: Lake, uri: str) -> bytes:
    fs, path = filesystem(uri, lake.s3)
    with fs.open(path, "rb") as handle:
        return handle.read()
