"""Incremental refresh of the RAG index, and search.

Stages (each one Airflow task; ``embed`` is mapped over batches):

1. :func:`plan` compares the ``rag_documents`` mart with the index. Each document's boilerplate lines (repeated
   across its source) are dropped, and what shapes its chunks is hashed (:func:`document_key`: text, title,
   tags, chunking settings). A document whose key is unchanged is not even re-chunked. A changed or new one is
   chunked; only chunks whose id is not in the index go to embedding, the others keep their vectors and take the
   document's new metadata. Chunks of changed or deleted documents that no longer exist are marked for removal.
2. :func:`embed_batch` embeds one staged batch.
3. :func:`validate` checks the chunk and embedding contract (dimension, finite vectors, non-empty text).
4. :func:`build` applies the changes to the model's LanceDB table as a new, unreleased table version (a model
   change builds a new table beside the old one) and refreshes its full-text and ANN indexes.
5. :func:`evaluate` scores that version on the golden set.
6. :func:`release` records the release in the lake (``rag.index``: one row per chunk with its vector, commit
   metadata pinning the document versions) and then switches the pointer ``rag/CURRENT.json`` to the new table
   version. Search only ever reads the version the pointer names, so a release is atomic and a failed run
   publishes nothing.

Stats: ``documents, documents_changed`` (re-chunked), ``documents_reembedded, chunks_total, embedded, reused,
updated`` (reused with new metadata), ``removed, boilerplate_found, boilerplate_lines, documents_all_boilerplate``
plus the golden-set ``recall_at_k`` and ``mrr``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from feedstock import contracts
from feedstock.config import _NAME as SOURCE_NAME
from feedstock.config import SEARCH_MODES, Config, Embedding, Rag, Rerank
from feedstock.errors import CommitConflict, IndexNotReady
from feedstock.lake import Commit, Lake, Txn, filesystem, join
from feedstock.rag.embedders import embedder, index_name
from feedstock.stages import boilerplate as lines

log = logging.getLogger(__name__)

INDEX_TABLE = "rag.index"
EMBED_BATCH = 2_000  # chunks per mapped embedding task
CHUNK_FIELDS = [
    ("chunk_id", pa.string()),
    ("doc_id", pa.string()),
    ("source", pa.string()),
    ("uri", pa.string()),
    ("title", pa.string()),
    ("section", pa.string()),
    ("page", pa.int32()),
    ("text", pa.string()),
    ("n_tokens", pa.int32()),
    ("access_tags", pa.list_(pa.string())),
    ("content_hash", pa.string()),
    ("doc_hash", pa.string()),
]
CHUNKS_SCHEMA = pa.schema(CHUNK_FIELDS)


def stage_dir(lake: Lake, run_key: str) -> str:
    return lake.staging("rag_feed", run_key)


def lancedb_uri(lake: Lake) -> str:
    return join(lake.root, "rag", "lancedb")


def pointer_uri(lake: Lake) -> str:
    return join(lake.root, "rag", "CURRENT.json")


def model_version(spec: Embedding) -> str:
    """What a vector's model is recorded as; a change of it means a new index (blue/green)."""
    version = f"{spec.provider}:{spec.model}:{spec.dimensions or ''}"
    return version if spec.quantize == "none" else f"{version}:{spec.quantize}"


def read_pointer(lake: Lake) -> dict[str, Any] | None:
    return lake.read_json(pointer_uri(lake)) if lake.exists(pointer_uri(lake)) else None


def _connect(lake: Lake):
    import lancedb

    options = lake.s3.delta_options() if lake.root.startswith("s3://") else None
    return lancedb.connect(lancedb_uri(lake), storage_options=options)


def each_version(table) -> Iterator[int]:
    """Check out every version of a LanceDB table in turn, oldest first, and yield its number (lineage and
    forget's verification look into each)."""
    for version in sorted(v["version"] for v in table.list_versions()):
        table.checkout(version)
        yield version


def _tokenizer(spec: Embedding):
    from feedstock.rag.chunking import load_tokenizer

    # Remote models do not ship their tokenizer; the packaged MiniLM one stands in to count the budget.
    return load_tokenizer(spec.model if spec.provider == "sentence_transformers" else "all-MiniLM-L6-v2")


def prepare(config: Config, lake: Lake, duckdb_file: str) -> dict[str, Any]:
    """Pin the inputs and land them in the run's DuckDB file for dbt, unless nothing changed since the last run.

    Returns ``changed`` (False: the run has nothing to do), a one-line ``message``, and for a run with work the
    ``inputs`` (``name@version`` of every bronze table read) and the ``fingerprint`` recorded when it finishes.
    """
    from feedstock import runstate, transform

    pins = transform.inputs(config, lake)
    sources = [
        (s.name, s.kind, s.access_tags, getattr(s, "document", None)) for s in transform.feed_sources(config)
    ]
    broken = [(b.name, b.error) for b in config.broken]
    fingerprint = transform.fingerprint(pins, sources, broken, config.rag)
    if not pins and read_pointer(lake) is None:
        return {"changed": False, "message": "nothing to index yet: no configured source has bronze data"}
    if message := runstate.unchanged(lake, "rag", fingerprint):
        return {"changed": False, "message": message}
    landed = transform.land(config, lake, duckdb_file, pins)
    return {
        "changed": True,
        "inputs": pins,
        "fingerprint": fingerprint,
        "message": f"landed {sum(landed.values())} rows from {len(landed)} sources: {landed}",
    }


def finish(lake: Lake, prepared: dict[str, Any], run_id: str) -> None:
    """Record what this run built from, so an unchanged next run is skipped (see :mod:`feedstock.runstate`)."""
    from feedstock import runstate

    pointer = read_pointer(lake) or {}
    runstate.record(lake, "rag", prepared["fingerprint"], pointer.get("index_version"), run_id)


@dataclass
class Plan:
    batches: list[str]  # staged parquet files of chunks to embed
    stats: dict[str, int]


PLAN_VERSION = "2"  # part of every document key: bump it when what shapes a document's chunks changes meaning
LIVE_DOCUMENTS = "select * from docs where not is_deleted and coalesce(trim(text), '') <> ''"


def plan(config: Config, lake: Lake, documents: pa.Table | str, run_key: str) -> Plan:
    """Work out what to embed, what to update and what to remove, from the mart's documents and the index.

    ``documents`` is the ``rag_documents`` mart: a run's DuckDB file (read-only, streamed in batches) or an
    Arrow table. Each document's boilerplate lines (:mod:`feedstock.stages.boilerplate`, counted over its source)
    are dropped, and the result is keyed by :func:`document_key`: everything that shapes its chunks. Only a
    document whose key is not the one its indexed chunks carry is chunked again. Of its chunks, the ones whose
    text is new are embedded; the ones already indexed keep their vectors and are rewritten with the document's
    new key, tags and metadata (``updated``), so a changed ``access_tags`` reaches search without re-embedding.
    """
    from feedstock.rag.chunking import Chunker

    rag, spec, stage = config.rag, config.rag.embedding, stage_dir(lake, run_key)
    lake.clear(stage)
    pointer = read_pointer(lake)
    same_model = pointer is not None and pointer["model_version"] == model_version(spec)
    index = (
        lake.read(INDEX_TABLE, columns=["chunk_id", "doc_id", "doc_hash", "source"]) if same_model else None
    )
    if index is None or index.num_rows == 0:
        index = pa.table({c: pa.array([], pa.string()) for c in ("chunk_id", "doc_id", "doc_hash", "source")})
    con = duckdb.connect()
    if isinstance(documents, str):
        con.execute(f"attach '{documents}' as mart (read_only)")
        con.execute("create view docs as select * from mart.rag_documents")
    else:
        con.register("docs", documents)
    con.register("idx", index)
    boilerplate, found = _boilerplate(con, lake, stage, rag)
    indexed = dict(con.execute("select doc_id, list(distinct doc_hash) from idx group by doc_id").fetchall())
    chunker = Chunker(_tokenizer(spec), rag.chunk_tokens, rag.chunk_overlap)
    settings = f"{PLAN_VERSION}|{model_version(spec)}|{rag.chunk_tokens}|{rag.chunk_overlap}"
    live: list[str] = []
    changed: list[str] = []
    # Only the changed documents' chunks are held: memory follows the change, not the corpus.
    new_chunks: list[dict] = []
    counts: Counter = Counter()
    for batch in con.sql(LIVE_DOCUMENTS).to_arrow_reader(500):
        for doc in batch.to_pylist():
            live.append(doc["doc_id"])
            repeated = boilerplate.get(doc["source"], set())
            text, pages, removed = lines.strip_pages(
                doc["text"], doc.get("pages") or None, repeated, rag.boilerplate.min_chars, headings=False
            )
            counts["boilerplate_lines"] += removed
            if not text.strip():  # nothing but boilerplate: no chunks (and any it had leave)
                counts["documents_all_boilerplate"] += 1
                if doc["doc_id"] in indexed:
                    changed.append(doc["doc_id"])
                continue
            key = document_key(doc, text, pages, settings)
            if indexed.get(doc["doc_id"]) == [key]:
                continue
            changed.append(doc["doc_id"])
            new_chunks.extend(chunker.chunk({**doc, "text": text, "pages": pages, "doc_hash": key}))
    fresh = pa.Table.from_pylist(new_chunks, CHUNKS_SCHEMA)
    known = pc.is_in(fresh["chunk_id"], value_set=index["chunk_id"].combine_chunks())
    to_embed, carried = fresh.filter(pc.invert(known)), fresh.filter(known)
    con.register("fresh", fresh.select(["chunk_id"]))
    con.register("live", pa.table({"doc_id": pa.array(live, pa.string())}))
    con.register("changed", pa.table({"doc_id": pa.array(changed, pa.string())}))
    # A broken source is frozen: its released chunks stay until its configuration is fixed (a removed source's
    # chunks leave, like deleted documents).
    con.register("frozen", pa.table({"source": pa.array([b.name for b in config.broken], pa.string())}))
    removed = con.sql(
        """select chunk_id from idx
           where (doc_id not in (select doc_id from live) or doc_id in (select doc_id from changed))
             and chunk_id not in (select chunk_id from fresh)
             and source not in (select source from frozen)"""
    ).to_arrow_table()
    kept = index.num_rows - removed.num_rows
    stats = {
        "documents": len(live),
        "documents_changed": len(changed),  # chunked again: what shapes their chunks changed
        "documents_reembedded": len(set(to_embed["doc_id"].to_pylist())),  # of those, the ones with new text
        "chunks_total": kept + to_embed.num_rows,
        "embedded": to_embed.num_rows,
        "reused": kept,
        "updated": carried.num_rows,  # reused with new metadata (tags, title, document key), not re-embedded
        "removed": removed.num_rows,
        "boilerplate_found": found,  # boilerplate lines over all sources
        "boilerplate_lines": counts["boilerplate_lines"],  # lines dropped from documents
        "documents_all_boilerplate": counts["documents_all_boilerplate"],
        "full_rebuild": int(not same_model),
    }
    batches = []
    for number, start in enumerate(range(0, to_embed.num_rows, EMBED_BATCH)):
        uri = f"{stage}/chunks/batch-{number:05d}.parquet"
        lake.write_parquet(uri, to_embed.slice(start, EMBED_BATCH))
        batches.append(uri)
    if carried.num_rows:
        lake.write_parquet(f"{stage}/carried.parquet", _with_vectors(lake, carried))
    lake.write_parquet(f"{stage}/removed.parquet", removed)
    lake.write_json(f"{stage}/plan.json", stats)
    return Plan(batches, stats)


def document_key(doc: dict[str, Any], text: str, pages: list[dict] | None, settings: str) -> str:
    """A hash of everything that shapes a document's chunks: the text chunked (its boilerplate already dropped),
    title, URI, source, access tags, page boundaries, and the chunking settings and model. Its chunks carry it
    as ``doc_hash``, which is also what the semantic cache's entries are grounded on."""
    parts = [
        settings,
        doc["source"],
        doc["uri"] or "",
        doc["title"] or "",
        json.dumps(list(doc.get("access_tags") or [])),
        json.dumps(pages or []),
        text,
    ]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def _boilerplate(con, lake: Lake, stage: str, rag: Rag) -> tuple[dict[str, set[int]], int]:
    """The boilerplate lines of each source, counted over all its live documents (``{source: line keys}``), and
    how many there are."""
    spec = rag.boilerplate
    if not spec.min_docs:
        return {}, 0
    uri, documents = f"{stage}/boilerplate-lines.parquet", Counter()
    with lake.parquet_writer(uri, lines.LINES_SCHEMA) as out:
        for batch in con.sql(f"select source, text from ({LIVE_DOCUMENTS})").to_arrow_reader(1000):
            sources = batch.column(0).to_pylist()
            documents.update(sources)
            pairs = zip(sources, batch.column(1).to_pylist(), strict=True)
            if (counts := lines.count_batch(pairs, spec.min_chars, headings=False)) is not None:
                out.write_table(counts)
    with lake.local_files([uri]) as local:
        found = lines.by_source(lines.frequent(local, spec.min_docs, spec.min_share, documents))
    return found, sum(map(len, found.values()))


def _with_vectors(lake: Lake, chunks: pa.Table) -> pa.Table:
    """Indexed chunks with their new metadata and the vectors (and model) ``rag.index`` holds for them."""
    wanted, parts = chunks["chunk_id"].combine_chunks(), []
    # Batch by batch, filtered here: a Delta merge may write string_view columns, which pyarrow's pushed-down
    # filter cannot compare with the string statistics of the older files.
    for batch in lake.dataset(INDEX_TABLE).to_batches(columns=["chunk_id", "vector", "model"]):
        ids = batch.column("chunk_id").cast(pa.string())
        part = pa.Table.from_batches([batch]).set_column(0, "chunk_id", ids)
        parts.append(part.filter(pc.is_in(ids, value_set=wanted)))
    held = pa.concat_tables(parts, promote_options="permissive")
    position = {chunk_id: i for i, chunk_id in enumerate(held["chunk_id"].to_pylist())}
    take = pa.array([position[c] for c in chunks["chunk_id"].to_pylist()], pa.int64())
    vectors = held["vector"].take(take).combine_chunks()
    if not pa.types.is_fixed_size_list(vectors.type):  # the Delta table may hold them as variable lists
        dim = len(vectors[0]) if len(vectors) else 0
        vectors = pa.FixedSizeListArray.from_arrays(vectors.flatten(), dim)
    return chunks.append_column("vector", vectors).append_column("model", held["model"].take(take))


def embed_batch(config: Config, lake: Lake, batch_uri: str, model=None) -> int:
    """Embed one staged batch of chunks; write it back with ``vector`` and ``model`` columns."""
    from feedstock.rag.chunking import embedding_text

    model = model or embedder(config.rag.embedding)
    chunks = lake.read_parquet(batch_uri, CHUNKS_SCHEMA)
    texts = [embedding_text(c) for c in chunks.select(["title", "section", "text"]).to_pylist()]
    vectors = model.embed(texts)
    dim = vectors.shape[1] if len(vectors) else 0
    flat = pa.array(vectors.reshape(-1), pa.float32())
    table = chunks.append_column(
        "vector",
        pa.FixedSizeListArray.from_arrays(flat, dim) if dim else pa.array([], pa.list_(pa.float32(), 1)),
    )
    table = table.append_column(
        "model", pa.array([model_version(config.rag.embedding)] * table.num_rows, pa.string())
    )
    lake.write_parquet(batch_uri.replace("/chunks/", "/embedded/"), table)
    return table.num_rows


def validate(config: Config, lake: Lake, run_key: str) -> dict[str, int]:
    """The contract of embedded chunks: one dimension, finite vectors, non-empty text and a token count."""
    stage = stage_dir(lake, run_key)
    checked, dims = 0, set()
    for uri in lake.staged_files(f"{stage}/embedded"):
        table = lake.read_parquet(uri)
        checked += table.num_rows
        vectors = np.asarray(table.column("vector").combine_chunks().flatten(), dtype=np.float32)
        dim = table.schema.field("vector").type.list_size
        dims.add(dim)
        problems = []
        if not np.isfinite(vectors).all():
            problems.append("a vector has NaN or infinite values")
        if any(not (t or "").strip() for t in table.column("text").to_pylist()):
            problems.append("a chunk has empty text")
        if len(dims) > 1:
            problems.append(f"vectors of different dimensions {sorted(dims)}")
        if problems:
            raise contracts.ContractViolation(
                f"rag embeddings in {uri.rsplit('/', 1)[1]}: " + "; ".join(problems)
            )
    return {"checked": checked, "dimension": dims.pop() if dims else 0}


def build(config: Config, lake: Lake, run_key: str) -> dict[str, Any]:
    """Apply this run's changes to the model's LanceDB table; the new version is not yet released."""
    stage = stage_dir(lake, run_key)
    stats = lake.read_json(f"{stage}/plan.json")
    name = index_name(config.rag.embedding)
    db = _connect(lake)
    pointer = read_pointer(lake)
    embedded, carried = _staged(lake, stage)
    removed = lake.read_parquet(f"{stage}/removed.parquet").column("chunk_id").to_pylist()
    if name in db.table_names():
        table = db.open_table(name)
        released = pointer["version"] if pointer and pointer["table"] == name else None
        if released is not None and table.version != released:
            table.restore(released)  # drop a version an earlier, failed run built but never released
        if stats["full_rebuild"] or released is None:
            db.drop_table(name)
            table = None
    else:
        table = None
    if table is None:
        rows = [t for t in (embedded, carried) if t is not None]
        if not rows:
            return {"table": name, "version": None, **stats}
        table = db.create_table(name, pa.concat_tables(rows))
    else:
        if embedded is not None and embedded.num_rows:
            table.add(embedded)
        if carried is not None:  # the same vectors with their document's new metadata
            table.merge_insert("chunk_id").when_matched_update_all().execute(carried)
        if removed:
            quoted = ", ".join(f"'{c}'" for c in removed)
            table.delete(f"chunk_id IN ({quoted})")
    index_table(config, table, stats["embedded"] + stats.get("updated", 0))
    return {"table": name, "version": table.version, **stats}


def _staged(lake: Lake, stage: str) -> tuple[pa.Table | None, pa.Table | None]:
    """The run's staged chunks: those embedded, and those carried with their vectors (``None`` when none)."""
    embedded = lake.read_staged(f"{stage}/embedded") if lake.staged_files(f"{stage}/embedded") else None
    carried = f"{stage}/carried.parquet"
    return embedded, lake.read_parquet(carried) if lake.exists(carried) else None


def index_table(config: Config, table, new_rows: int | None = None) -> None:
    """The full-text, access-tag and (from ``rag.ann_min_rows``) vector indexes of a chunk table. The vector index
    is rebuilt when missing or when more than a fifth of the rows are new (``None``: every row is new), else the
    new rows are folded into it."""
    rows = table.count_rows()
    if not rows:
        return
    table.create_fts_index("text", replace=True)
    table.create_scalar_index("access_tags", index_type="LABEL_LIST", replace=True)  # access filters
    if rows >= config.rag.ann_min_rows:
        has_ann = any(i.columns == ["vector"] for i in table.list_indices())
        if not has_ann or new_rows is None or new_rows > rows * 0.2:
            build_ann(table)
        else:
            table.optimize()  # fold the new rows into the existing ANN index


@dataclass(frozen=True)
class Ann:
    """The vector index of a table of ``rows`` chunks, and how search reads it: sized by the table, not fixed.

    IVF_HNSW_SQ: an HNSW graph over 8-bit scalar-quantized vectors, split by k-means into partitions of about
    :data:`ROWS_PER_PARTITION` once the table outgrows one. A query visits :data:`PROBE_SHARE` of the partitions
    (a chunk's neighbours straddle them) with a graph beam of :data:`ef`. Measured at 1M vectors (``make bench``
    suite ``ann``; docs/decisions.md): one graph reached recall@10 0.98 at about 14x numpy's exact QPS, where 4
    partitions with 3 probed reached 0.95 to 0.96 at 11 to 12x, 64 partitions needed 12 probes for 0.96 (7.5x),
    and IVF_PQ stayed at 0.67 even with a refine pass. Above 1M rows the partition rule is extrapolated, not
    measured."""

    rows: int

    ROWS_PER_PARTITION: ClassVar[int] = 2_000_000
    PROBE_SHARE: ClassVar[float] = 0.75
    ef: ClassVar[int] = 200  # the graph beam

    @property
    def partitions(self) -> int:
        return max(1, round(self.rows / self.ROWS_PER_PARTITION))

    @property
    def nprobes(self) -> int:
        return math.ceil(self.partitions * self.PROBE_SHARE)  # at least 1: there is at least one partition

    def config(self):
        from lancedb.index import IvfHnswSq

        return IvfHnswSq(distance_type="cosine", num_partitions=self.partitions)

    def tune(self, builder):
        """A vector (or hybrid) query builder set to read this index."""
        return builder.nprobes(self.nprobes).ef(self.ef)


def build_ann(table) -> Ann:
    """(Re)build the table's vector index for its current size."""
    ann = Ann(table.count_rows())
    # With a config, create_index's first argument is the column (not the metric).
    table.create_index("vector", config=ann.config(), replace=True)
    return ann


RELEASE_WRITER = "feedstock:rag_feed"  # the Delta transaction id of rag.index's one writer


def release(
    config: Config,
    lake: Lake,
    run_key: str,
    built: dict[str, Any],
    produced_by: dict[str, str],
    inputs: list[str],
    scores: dict[str, float],
) -> dict[str, Any]:
    """Record the release in ``rag.index`` (one commit) and switch the search pointer to the built version.

    The ``rag.index`` commit carries the run's Delta transaction id and names the LanceDB version it goes with,
    and is made against the ``rag.index`` version the pointer names, so a concurrent release is refused
    (:class:`CommitConflict`). A retry finds that commit, switches the pointer if it was not switched (and no
    later release moved it), and returns the same stats without committing again. A release that finds
    ``rag.index`` ahead of the pointer (a run died between the two) restores ``rag.index`` to the released
    version and fails with one line: this run planned from chunks search never served, the next run plans again.
    """
    stage = stage_dir(lake, run_key)
    stats = {k: v for k, v in built.items() if k not in ("table", "version")} | scores
    pointer = read_pointer(lake)
    target = {"table": built["table"], "version": built["version"]}
    if built["version"] is None or (pointer and {k: pointer.get(k) for k in target} == target):
        _finish_stage(lake, run_key)  # nothing to release, or a retry after the switch
        return stats
    rebuild = bool(stats["full_rebuild"])
    released = None if rebuild or pointer is None else pointer.get("index_version")
    txn = Txn(RELEASE_WRITER, run_key, lake.version(INDEX_TABLE) if released is None else released)
    mine = next((c for c in lake.commits_of(INDEX_TABLE, txn) if c.get("release") == target), None)
    if mine is None:
        if released is not None:
            _roll_back_interrupted(lake, pointer, run_key, produced_by, target)
        removed = lake.read_parquet(f"{stage}/removed.parquet")
        commit = Commit(produced_by, tuple(inputs), stats, txn, {"release": target})
        recorded = _record(lake, *_staged(lake, stage), removed, rebuild, commit)
    elif "rolled_back_to" in mine:  # this run's release already found an interrupted one: fail the same way
        _point_at(lake, pointer, mine["version"])
        raise CommitConflict(mine["stats"]["message"])
    else:
        recorded = mine["version"]
    index_version = lake.version(INDEX_TABLE) if recorded is None else recorded
    now = read_pointer(lake)
    if now is None or now.get("index_version") is None or now["index_version"] <= index_version:
        lake.write_json(
            pointer_uri(lake),
            {
                **target,
                "model_version": model_version(config.rag.embedding),
                "provider": config.rag.embedding.provider,
                "model": config.rag.embedding.model,
                "embedding": dict(config.rag.embedding.__dict__),
                "index_version": index_version,
            },
        )
    _finish_stage(lake, run_key)
    return stats


def _finish_stage(lake: Lake, run_key: str) -> None:
    lake.clean_staging("rag_feed", run_key)  # failed runs' staged chunks, by age
    lake.clear(stage_dir(lake, run_key))


def _roll_back_interrupted(
    lake: Lake, pointer: dict[str, Any], run_key: str, produced_by: dict[str, str], target: dict[str, Any]
) -> None:
    """When ``rag.index`` holds commits past the released version, restore it and fail with one line."""
    released = pointer["index_version"]
    if (lake.version(INDEX_TABLE) or 0) <= released:
        return
    later = [c for c in lake.history(INDEX_TABLE) if c["version"] > released and "produced_by" in c]
    if not later:  # only maintenance commits (no feedstock metadata) since the release
        return
    runs = sorted({str(c["produced_by"].get("run_id")) for c in later})
    message = (
        f"rag.index was ahead of the search pointer (run {', '.join(runs)} recorded version {later[0]['version']} "
        f"but never switched to it); restored rag.index to the released version {released}; this run planned "
        "from the unreleased chunks, so it publishes nothing and the next run plans again"
    )
    txn = Txn(RELEASE_WRITER, run_key, lake.version(INDEX_TABLE))
    metadata = {"release": target, "rolled_back_to": released}
    restored = lake.restore(
        INDEX_TABLE, released, Commit(produced_by, (), {"message": message}, txn, metadata)
    )
    _point_at(lake, pointer, restored)
    raise CommitConflict(message)


def _point_at(lake: Lake, pointer: dict[str, Any] | None, index_version: int) -> None:
    """Keep the released LanceDB version and name the ``rag.index`` version that now matches it."""
    if pointer is not None and (pointer.get("index_version") or -1) < index_version:
        lake.write_json(pointer_uri(lake), {**pointer, "index_version": index_version})


def _record(
    lake: Lake,
    embedded: pa.Table | None,
    carried: pa.Table | None,
    removed: pa.Table,
    rebuild: bool,
    commit: Commit,
) -> int | None:
    """``rag.index`` in one Delta commit: new chunks in, carried chunks updated, removed chunks out (a model
    change rewrites it).

    Returns the version committed, or None when there was nothing to record.
    """
    rows = [t for t in (embedded, carried) if t is not None]
    if rebuild or lake.table(INDEX_TABLE) is None:
        return lake.replace(INDEX_TABLE, pa.concat_tables(rows), commit) if rows else None
    if not rows and removed.num_rows == 0:
        return None
    with lake.writing(INDEX_TABLE, commit) as target:
        schema = pa.schema(target.schema())
        parts = [
            (table or schema.empty_table()).append_column(
                "_op", pa.array([op] * (table.num_rows if table else 0))
            )
            for table, op in ((embedded, "insert"), (carried, "update"))
        ]
        marks = pa.table({"chunk_id": removed.column("chunk_id")})
        parts.append(marks.append_column("_op", pa.array(["remove"] * removed.num_rows)))
        (
            target.merge(
                pa.concat_tables(parts, promote_options="permissive"),
                predicate="t.chunk_id = s.chunk_id",
                source_alias="s",
                target_alias="t",
                commit_properties=commit.properties(),
            )
            .when_matched_update_all(predicate="s._op = 'update'", except_cols=["_op"])
            .when_matched_delete(predicate="s._op = 'remove'")
            .when_not_matched_insert_all(predicate="s._op = 'insert'", except_cols=["_op"])
            .execute()
        )
    return target.version()


_EMBEDDERS: dict[str, Any] = {}


def query_embedder(spec: Embedding):
    """The embedder for queries of model ``spec``, loaded once per process.

    The local model answers queries on ONNX Runtime whatever runtime embedded the index: its fp32 export gives
    torch's vectors (cosine >= 0.9999, checked at export) in 3.9 ms a query instead of 10.1 ms
    (``make bench`` suite ``embeddings``). Each query runs on one thread: one query is too little work to
    split, and concurrent requests use the cores. If the model cannot be exported, torch answers."""
    key = model_version(spec)
    if key not in _EMBEDDERS:
        if spec.provider == "sentence_transformers" and spec.runtime == "torch":
            try:
                _EMBEDDERS[key] = embedder(replace(spec, runtime="onnx"), threads=1)
            except Exception as exc:  # noqa: BLE001 - any export failure leaves the torch runtime to answer
                log.warning("queries run on torch: ONNX export of %s failed: %s", spec.model, exc)
                _EMBEDDERS[key] = embedder(spec, threads=1)
        else:
            _EMBEDDERS[key] = embedder(spec, threads=1)
    return _EMBEDDERS[key]


class SearchFilterError(ValueError):
    """A search filter that is not a plain source name or access tag, described in one line that names it."""


# An access tag: what a configuration would write (``internal``, ``team-a``, ``pii:none``), nothing that SQL,
# a shell or a log line could read as syntax.
ACCESS_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}")


def search_filter(source: str | None = None, tags: list[str] | None = None) -> str | None:
    """The ``where`` clause of a search, or None; a value that breaks its rule raises :class:`SearchFilterError`.

    :param source: only chunks of this source: a configured source name (the configuration's rule, whole string)
    :param tags: only chunks that carry every one of these access tags (:data:`ACCESS_TAG`)
    """
    tags = [tags] if isinstance(tags, str) else list(tags or [])  # one tag given bare is still one tag
    if source is not None and not (isinstance(source, str) and SOURCE_NAME.fullmatch(source)):
        raise SearchFilterError(
            f"search filter source={_shown(source)}: a source name is lower_snake_case (a-z, 0-9 and _)"
        )
    for tag in tags:
        if not (isinstance(tag, str) and ACCESS_TAG.fullmatch(tag)):
            raise SearchFilterError(
                f"search filter tag={_shown(tag)}: an access tag is 1-64 letters, digits and _ . : / - "
                "(starting with a letter or digit)"
            )
    return where_clause(source, tags)


def where_clause(source: str | None = None, tags: list[str] | None = None) -> str | None:
    """The filter as SQL in which every value is one string literal, whatever characters it holds.

    LanceDB takes no bound parameters: a filter is SQL text that DataFusion parses. (A ``lancedb.expr`` filter is
    rendered to SQL as well, and its renderer leaves a quote that follows a backslash undoubled: in ``x\\' OR
    true`` that quote ends the literal.) A value is therefore quoted here the standard SQL way, which is how
    DataFusion reads it: quotes doubled, backslashes plain characters.
    """
    parts = [] if source is None else [f"source = {_sql_string(source)}"]
    parts += [f"array_has_any(access_tags, [{_sql_string(tag)}])" for tag in tags or []]
    return " AND ".join(parts) or None


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _shown(value: Any) -> str:
    """A filter value for a one-line message: its repr (quotes, newlines and NULs escaped), at most 80 chars."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def visible_to(caller_tags: list[str], index_tags: frozenset[str] | set[str]) -> str | None:
    """The filter of what a caller holding ``caller_tags`` may read: chunks all of whose access tags it holds
    (untagged chunks included); ``index_tags`` are all the tags the index carries. An untagged caller reads only
    untagged chunks.

    It is written as "no tag the caller lacks", which the ``access_tags`` label-list index answers (12 ms against
    50 ms for a subset test at 100k chunks); a caller holding every tag gets no filter at all. A chunk whose tags
    were null would match nothing, so it could never leak.
    """
    for tag in caller_tags:
        if not (isinstance(tag, str) and ACCESS_TAG.fullmatch(tag)):
            raise SearchFilterError(f"access tag {_shown(tag)}: 1-64 letters, digits and _ . : / -")
    lacking = sorted(set(index_tags) - set(caller_tags))
    if not lacking:
        return None
    return f"NOT array_has_any(access_tags, [{', '.join(_sql_string(t) for t in lacking)}])"


def open_released(lake: Lake, at: dict[str, Any] | None = None):
    """The pointer and the LanceDB table checked out at the version it names (``at``: a built, unreleased one)."""
    pointer = at or read_pointer(lake)
    if pointer is None:
        raise IndexNotReady("the RAG index has not been built yet: run the rag_feed DAG first")
    if pointer.get("version") is None:
        raise IndexNotReady("the RAG index is empty: no document produced a chunk")
    table = _connect(lake).open_table(pointer["table"])
    table.checkout(pointer["version"])
    return pointer, table


def chunk_map(table) -> dict[str, tuple[str, str, tuple[str, ...]]]:
    """``chunk_id -> (doc_id, content hash, access tags)`` of an open index table: what serving checks a cached
    answer's grounding and a caller's access against."""
    rows = table.to_arrow().select(["chunk_id", "doc_id", "doc_hash", "access_tags"]).to_pylist()
    return {r["chunk_id"]: (r["doc_id"], r["doc_hash"], tuple(r["access_tags"] or ())) for r in rows}


def pointer_embedding(config: Config, pointer: dict[str, Any]) -> Embedding:
    """Queries are embedded by the model of the index being read: during a model switch the configuration
    already names the new model while search still serves the old index."""
    return Embedding(**pointer["embedding"]) if "embedding" in pointer else config.rag.embedding


RRF_K = 60  # reciprocal rank fusion's constant (Cormack et al.); a hybrid score of 1.0 is first in both lists


def search(
    config: Config,
    lake: Lake,
    query: str,
    k: int = 5,
    source: str | None = None,
    mode: str | None = None,
    tags: list[str] | None = None,
    at: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Top-k chunks for a question from the released index (or from ``at``: a built, unreleased version).

    ``mode``: vector, fts or hybrid; ``rag.search_mode`` when not given. ``source`` and ``tags`` are values, never
    SQL: see :func:`search_filter`.
    """
    where = search_filter(source, tags)  # before any I/O: a bad filter reads nothing
    mode = mode or config.rag.search_mode
    if mode not in SEARCH_MODES:
        raise ValueError(f"mode must be one of {', '.join(SEARCH_MODES)}, got {mode!r}")
    pointer, table = open_released(lake, at)
    embed = query_embedder(pointer_embedding(config, pointer)).embed
    return search_table(table, embed, query, k, where, mode, rerank=config.rag.rerank)


def search_table(
    table,
    embed,
    query: str,
    k: int,
    where: str | None,
    mode: str,
    ann: Ann | None = None,
    rerank: Rerank | None = None,
) -> list[dict[str, Any]]:
    """Top-k chunks of an open LanceDB table; ``where`` is a filter built by this module, never user text.
    ``ann``: the table's index settings, when the caller already knows its size. With ``rerank``, its
    ``candidates`` chunks are retrieved and the reranker's top k returned (:mod:`feedstock.rag.rerank`)."""
    wanted = k
    if rerank is not None:
        k = max(k, rerank.candidates)
    if mode == "fts":
        builder = table.search(query, query_type="fts")
    else:
        vector = embed([query])[0]
        if mode == "hybrid":
            from lancedb.rerankers import RRFReranker

            builder = (
                table.search(query_type="hybrid")
                .vector(vector)
                .text(query)
                .rerank(RRFReranker(K=RRF_K, return_score="all"))
            )
        else:
            builder = table.search(vector, vector_column_name="vector").metric("cosine")
        builder = (ann or Ann(table.count_rows())).tune(builder)  # below rag.ann_min_rows: an exact scan
    if where:
        builder = builder.where(where, prefilter=True)
    rows = builder.limit(k).to_list()
    results = []
    for row in rows:
        hit = {key: row.get(key) for key in ("chunk_id", "doc_id", "uri", "title", "section", "page", "text")}
        similarity = None if row.get("_distance") is None else round(1.0 - float(row["_distance"]), 4)
        bm25 = None if row.get("_score") is None else round(float(row["_score"]), 4)
        if mode == "vector":
            hit["score"] = similarity
        elif mode == "fts":
            hit["score"] = bm25
        else:  # 1.0: ranked first by both; each part says what it was
            hit["score"] = round(float(row["_relevance_score"]) * (RRF_K + 1) / 2, 4)
            hit["explain"] = {"vector_similarity": similarity, "bm25": bm25, "fusion": f"rrf k={RRF_K}"}
        results.append(hit)
    if rerank is not None:
        from feedstock.rag.rerank import rerank as reranked

        return reranked(rerank, query, results, wanted)
    return results


def evaluate(config: Config, lake: Lake, built: dict[str, Any]) -> dict[str, float]:
    """recall@k and MRR of the built version on the configured golden set (documents, not chunks)."""
    import yaml

    if not config.rag.golden_set or built.get("version") is None:
        return {}
    fs, path = filesystem(config.rag.golden_set)
    with fs.open(path) as handle:
        golden = yaml.safe_load(handle) or []
    k, hits, reciprocal = config.rag.k, 0, 0.0
    for item in golden:
        at = {**built, "embedding": dict(config.rag.embedding.__dict__)}
        results = search(config, lake, item["question"], k=k * 4, at=at)
        field = "doc_id" if "expected_doc_id" in item else "uri"
        docs: list[str] = []
        for r in results:
            if r[field] not in docs:
                docs.append(r[field])
        docs = docs[:k]
        expected = item.get("expected_doc_id") or item.get("expected_uri")
        match = next(
            (rank for rank, d in enumerate(docs, 1) if d == expected or d.endswith(str(expected))), None
        )
        hits += match is not None
        reciprocal += 1 / match if match else 0.0
    n = max(len(golden), 1)
    return {
        f"recall_at_{k}": round(hits / n, 4),
        "mrr": round(reciprocal / n, 4),
        "golden_questions": len(golden),
    }


def recall_gate(config: Config, scores: dict[str, float]) -> str | None:
    """The release gate: below ``rag.min_recall`` a run fails (or, with ``on_low_recall: warn``, warns)."""
    recall = scores.get(f"recall_at_{config.rag.k}")
    if recall is None or recall >= config.rag.min_recall:
        return None
    message = f"recall@{config.rag.k} {recall:.3f} is below rag.min_recall {config.rag.min_recall}"
    if config.rag.on_low_recall == "fail":
        raise contracts.ContractViolation(f"{message}; not released")
    return message


def json_results(results: list[dict[str, Any]]) -> str:
    return json.dumps(results, indent=2, default=str)
