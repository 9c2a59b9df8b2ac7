"""RAG feed: embedding overhead against raw encode, the cost of a 1%-changed refresh, and ANN search at 100k.

- **Embedding throughput**: the feed's embed stage (read the staged batch, build texts, encode, write the
  vectors back) against ``SentenceTransformer.encode`` called directly on the same texts, in the same run.
- **Refresh**: a full build (plan, embed, build the LanceDB table) of a corpus of real documents, then a run with
  1% of the documents changed, then a run with nothing changed; each as a fraction of the full build.
- **ANN**: 100k vectors (384-d, clustered like real embeddings), IVF_PQ in LanceDB against exact search over the
  same vectors (LanceDB's flat scan, and numpy); QPS and recall@10.
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


def bench_ann(work: Path, n: int = 100_000, dim: int = 384, queries: int = 200) -> dict:
    import lancedb

    rng = np.random.default_rng(7)
    centers = rng.normal(size=(200, dim)).astype(np.float32)
    vectors = centers[rng.integers(0, 200, n)] + 0.35 * rng.normal(size=(n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    probes = vectors[rng.choice(n, queries, replace=False)] + 0.05 * rng.normal(size=(queries, dim)).astype(
        np.float32
    )
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    table = lancedb.connect(str(work / "ann")).create_table(
        "v",
        pa.table(
            {
                "id": np.arange(n),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim),
            }
        ),
    )
    start = time.perf_counter()
    exact = [set(table.search(q).metric("cosine").limit(10).to_arrow()["id"].to_pylist()) for q in probes]
    flat_qps = queries / (time.perf_counter() - start)
    start = time.perf_counter()
    numpy_exact = [set(np.argsort(-(vectors @ q))[:10].tolist()) for q in probes]
    numpy_qps = queries / (time.perf_counter() - start)
    start = time.perf_counter()
    table.create_index(
        metric="cosine",
        vector_column_name="vector",
        index_type="IVF_PQ",
        num_partitions=int(np.sqrt(n)),
        num_sub_vectors=48,
    )
    build_s = time.perf_counter() - start
    results = {}
    for nprobes, refine in ((20, 10), (40, 20)):
        start = time.perf_counter()
        found = [
            set(
                table.search(q)
                .metric("cosine")
                .nprobes(nprobes)
                .refine_factor(refine)
                .limit(10)
                .to_arrow()["id"]
                .to_pylist()
            )
            for q in probes
        ]
        qps = queries / (time.perf_counter() - start)
        recall = np.mean([len(f & e) / 10 for f, e in zip(found, numpy_exact, strict=True)])
        results[f"nprobes_{nprobes}_refine_{refine}"] = {
            "qps": round(qps, 1),
            "recall_at_10": round(float(recall), 4),
            "speedup_vs_flat": round(qps / flat_qps, 1),
            "speedup_vs_numpy": round(qps / numpy_qps, 1),
        }
    agree = np.mean([len(a & b) / 10 for a, b in zip(exact, numpy_exact, strict=True)])
    return {
        "vectors": n,
        "dim": dim,
        "queries": queries,
        "index_build_seconds": round(build_s, 1),
        "flat_qps": round(flat_qps, 1),
        "numpy_exact_qps": round(numpy_qps, 1),
        "flat_vs_numpy_agreement": round(float(agree), 4),
        **results,
        "target": "recall@10 >= 0.95 at >= 10x brute-force QPS",
    }


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
