"""RAG feed: embedding overhead against raw encode, the cost of a 1%-changed refresh, and ANN search at 100k.

- **Embedding throughput**: the feed's embed stage (read the staged batch, build texts, encode, write the
  vectors back) against ``SentenceTransformer.encode`` called directly on the same texts, in the same run.
- **Refresh**: a full build (plan, embed, build the LanceDB table) of a corpus of real documents, then a run with
  1% of the documents changed, then a run with nothing changed; each as a fraction of the full build.
- **ANN**: 100k vectors (384-d, clustered like real embeddings), the feed's own index (``index.build_ann``, its
  parameters sized by the table) against numpy's exact search over the same vectors; QPS and recall@10. The
  suite ``ann`` does the same at 1M vectors. The vectors are synthetic: embedding 1M real chunks takes over 5 hours
  on these 2 cores, and the clusters make neighbours near-ties, harder for an index than real chunk vectors.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from benchmarks import corpus
from feedstock.config import parse_config
from feedstock.lake import Lake
from feedstock.rag import index
from feedstock.rag.chunking import embedding_text
from feedstock.rag.embedders import embedder


def _documents(root: Path, limit: int) -> list[dict]:
    docs = []
    for fmt in ("md", "txt"):
        for path in sorted((root / fmt).iterdir())[: limit // 2]:
            text = path.read_text(errors="replace")
            docs.append(
                {
                    "doc_id": f"bench/{fmt}/{path.name}",
                    "source": "bench",
                    "uri": str(path),
                    "title": path.stem,
                    "text": text[:12000],
                    "mime_type": "text/plain",
                    "content_hash": str(hash(text)),
                    "is_deleted": False,
                    "pages": None,
                    "access_tags": [],
                }
            )
    return docs


def _config(lake_root: str):
    return parse_config({"lake": lake_root, "sources": [], "rag": {"chunk_tokens": 200, "chunk_overlap": 32}})


def _full_run(config, lake, docs: list[dict], run_key: str, model) -> tuple[float, dict]:
    start = time.perf_counter()
    planned = index.plan(config, lake, pa.Table.from_pylist(docs), run_key)
    for batch in planned.batches:
        index.embed_batch(config, lake, batch, model)
    built = index.build(config, lake, run_key)
    index.release(config, lake, run_key, built, {"dag_id": "bench"}, [], {})
    return time.perf_counter() - start, planned.stats


def bench_refresh(work: Path, model, n_docs: int = 200) -> dict:
    docs = _documents(corpus.build(), n_docs)
    lake = Lake(str(work / "lake"))
    config = _config(lake.root)
    full_s, full = _full_run(config, lake, docs, "full", model)
    changed = [dict(d) for d in docs]
    for d in changed[: max(1, len(docs) // 100)]:
        d["text"] += "\n\nAn added closing paragraph about the quarterly review."
        d["content_hash"] = d["content_hash"] + "-v2"
    refresh_s, refresh = _full_run(config, lake, changed, "refresh", model)
    same_s, same = _full_run(config, lake, changed, "same", model)
    return {
        "documents": len(docs),
        "chunks": full["chunks_total"],
        "full_seconds": round(full_s, 2),
        "refresh_1pct_seconds": round(refresh_s, 2),
        "refresh_1pct_embedded": refresh["embedded"],
        "refresh_1pct_fraction": round(refresh_s / full_s, 4),
        "target_fraction": "< 0.05",
        "unchanged_seconds": round(same_s, 2),
        "unchanged_embedded": same["embedded"],
    }


def bench_embedding(work: Path, model, n_docs: int = 200) -> dict:
    from feedstock.rag.chunking import Chunker, load_tokenizer

    chunker = Chunker(load_tokenizer("all-MiniLM-L6-v2"), 200, 32)
    chunks = [c for d in _documents(corpus.build(), n_docs) for c in chunker.chunk(d)][:2000]
    lake = Lake(str(work / "lake-embed"))
    config = _config(lake.root)
    uri = f"{lake.staging('bench')}/chunks/batch-00000.parquet"
    lake.write_parquet(uri, pa.Table.from_pylist(chunks, index.CHUNKS_SCHEMA))
    texts = [embedding_text(c) for c in chunks]
    model.embed(texts[:64])  # warm up
    start = time.perf_counter()
    model._model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    raw_s = time.perf_counter() - start
    start = time.perf_counter()
    index.embed_batch(config, lake, uri, model)
    feed_s = time.perf_counter() - start
    return {
        "chunks": len(chunks),
        "raw_encode_chunks_per_s": round(len(chunks) / raw_s, 1),
        "feed_chunks_per_s": round(len(chunks) / feed_s, 1),
        "feed_overhead": round(feed_s / raw_s - 1, 4),
        "target_overhead": "< 0.15",
    }


def _unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def clustered_vectors(n: int, dim: int = 384, seed: int = 7) -> np.ndarray:
    """Unit vectors shaped like a chunked corpus: 1,000 topics of 10 subtopics, documents of 20 chunks. A chunk
    is its subtopic + 0.7 x its document's direction + 0.6 x its own noise, so its nearest neighbours are its
    document's other chunks (cosine about 0.77), then its subtopic's: near-ties, as among one manual's pages."""
    rng = np.random.default_rng(seed)
    topics, per_topic, per_doc = 1_000, 10, 20
    subtopics = _unit(
        _unit(rng.normal(size=(topics, 1, dim))) + 0.9 * _unit(rng.normal(size=(topics, per_topic, dim)))
    ).reshape(-1, dim)
    doc_dirs = _unit(rng.normal(size=(-(-n // per_doc), dim))).astype(np.float32)
    doc_subtopic = rng.integers(0, len(subtopics), len(doc_dirs))
    vectors = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):
        docs = np.arange(start, min(start + 100_000, n)) // per_doc
        noise = _unit(rng.normal(size=(len(docs), dim)).astype(np.float32))
        vectors[start : start + len(docs)] = (
            subtopics[doc_subtopic[docs]] + 0.7 * doc_dirs[docs] + 0.6 * noise
        )
    return _unit(vectors)


def bench_ann(work: Path, n: int = 100_000, dim: int = 384, queries: int = 200) -> dict:
    """The feed's own index (:func:`index.build_ann`, sized by the table) against numpy's exact search."""
    import lancedb

    vectors = clustered_vectors(n, dim)
    rng = np.random.default_rng(8)
    probes = vectors[rng.choice(n, queries, replace=False)] + 0.02 * rng.normal(size=(queries, dim)).astype(
        np.float32
    )
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    start = time.perf_counter()
    exact = [set(np.argpartition(-(vectors @ q), 10)[:10].tolist()) for q in probes]
    numpy_qps = queries / (time.perf_counter() - start)
    db = lancedb.connect(str(work / f"ann-{n}"))
    table = db.create_table(
        "v",
        pa.table(
            {"id": np.arange(n), "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim)}
        ),
    )
    start = time.perf_counter()
    ann = index.build_ann(table)
    build_s = time.perf_counter() - start
    size = sum(f.stat().st_size for f in (work / f"ann-{n}").rglob("*") if f.is_file())

    def search(q):
        builder = table.search(q, vector_column_name="vector").metric("cosine")
        return set(ann.tune(builder).limit(10).select(["id"]).to_arrow()["id"].to_pylist())

    for q in probes[:20]:  # warm: the index's partitions read once
        search(q)
    start = time.perf_counter()
    found = [search(q) for q in probes]
    qps = queries / (time.perf_counter() - start)
    recall = np.mean([len(f & e) / 10 for f, e in zip(found, exact, strict=True)])
    return {
        "vectors": n,
        "dim": dim,
        "queries": queries,
        "index": {"type": "IVF_HNSW_SQ", "partitions": ann.partitions, "nprobes": ann.nprobes, "ef": ann.ef},
        "index_build_seconds": round(build_s, 1),
        "table_with_index_mb": round(size / 1e6),
        "raw_vectors_mb": round(vectors.nbytes / 1e6),
        "numpy_exact_qps": round(numpy_qps, 1),
        "qps": round(qps, 1),
        "recall_at_10": round(float(recall), 4),
        "qps_vs_numpy": round(qps / numpy_qps, 1),
        "target": "recall@10 >= 0.95 at >= 10x numpy exact QPS (at 1M vectors)",
    }


def run_million() -> dict:
    """``make bench`` suite ``ann``: the index at 1M vectors (about 10 minutes here)."""
    work = Path(tempfile.mkdtemp(prefix="feedstock-bench-ann-"))
    try:
        return bench_ann(work, n=1_000_000)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run() -> dict:
    work = Path(tempfile.mkdtemp(prefix="feedstock-bench-rag-"))
    try:
        model = embedder(_config(str(work)).rag.embedding)
        return {
            "embedding": bench_embedding(work, model),
            "refresh": bench_refresh(work, model),
            "ann": bench_ann(work),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
