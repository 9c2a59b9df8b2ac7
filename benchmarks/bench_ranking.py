"""Ranking: vector, full-text and hybrid search on the golden sets, in one run, through the feed's own search.

Each set's pages are parsed (content extraction on), chunked and embedded as the feed does, written to a LanceDB
table indexed by the feed's ``index_table`` (full-text index included), and every golden question is asked through
``feedstock.rag.index.search_table`` in each mode. Documents are ranked by their best chunk, as the feed's
evaluation does; recall@5 and MRR per mode. The sets: the sample handbook and, when Debian's ``debian-handbook``
package is installed, The Debian Administrator's Handbook (45 questions over 127 pages).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pyarrow as pa

from benchmarks.bench_embeddings import DEBIAN_HANDBOOK, _golden
from benchmarks.bench_retrieval import ROOT, _docs
from feedstock.config import SEARCH_MODES, Config, Embedding
from feedstock.rag.chunking import Chunker, embedding_text, load_tokenizer
from feedstock.rag.embedders import embedder
from feedstock.rag.index import index_table, search_table

K = 5


def _table(db, name: str, chunker: Chunker, docs: list[dict], model) -> tuple[object, int, float]:
    rows = []
    for doc in docs:
        for i, chunk in enumerate(chunker.chunk(doc)):
            rows.append(
                {
                    "chunk_id": f"{doc['doc_id']}#{i}",
                    "doc_id": doc["doc_id"],
                    "uri": doc["uri"],
                    "title": chunk.get("title") or "",
                    "section": chunk.get("section") or "",
                    "page": chunk.get("page"),
                    "text": chunk["text"],
                    "embedded": embedding_text(chunk),
                    "access_tags": [],
                }
            )
    start = time.perf_counter()
    vectors = model.embed([r.pop("embedded") for r in rows])
    seconds = time.perf_counter() - start
    for row, vector in zip(rows, vectors, strict=True):
        row["vector"] = vector.tolist()
    data = pa.Table.from_pylist(rows)
    data = data.set_column(
        data.schema.get_field_index("access_tags"),
        "access_tags",
        pa.array([[] for _ in rows], pa.list_(pa.string())),
    )
    table = db.create_table(name, data, mode="overwrite")
    index_table(Config(lake=str(db.uri), sources=()), table)
    return table, len(rows), seconds


def _rank(table, embed, golden: list[dict], mode: str) -> dict:
    found, reciprocal, start = 0, 0.0, time.perf_counter()
    for item in golden:
        docs: list[str] = []
        for hit in search_table(table, embed, item["question"], K * 4, None, mode):
            if hit["doc_id"] not in docs:
                docs.append(hit["doc_id"])
        docs = docs[:K]
        expected = item.get("expected_doc_id") or item["expected_uri"]
        if expected in docs:
            found += 1
            reciprocal += 1 / (docs.index(expected) + 1)
    return {
        "recall_at_5": round(found / len(golden), 3),
        "mrr": round(reciprocal / len(golden), 3),
        "ms_per_query": round(1000 * (time.perf_counter() - start) / len(golden), 1),
    }


def run() -> dict:
    import lancedb

    model = embedder(Embedding(runtime="onnx"))  # the same vectors as torch (cosine >= 0.9999), faster
    model.embed(["warm up"])
    chunker = Chunker(load_tokenizer("all-MiniLM-L6-v2"), 200, 32)
    sets = [("sample_handbook", ROOT / "include" / "sample_data" / "handbook", "handbook/", "handbook.yaml")]
    results: dict = {}
    if DEBIAN_HANDBOOK.exists():
        sets.append(("debian_handbook", DEBIAN_HANDBOOK, "", "debian_handbook.yaml"))
    else:
        results["debian_handbook"] = "skipped: apt-get install debian-handbook"
    work = Path(tempfile.mkdtemp(prefix="feedstock-bench-ranking-"))
    try:
        db = lancedb.connect(str(work))
        for name, root, prefix, golden_file in sets:
            golden = _golden(golden_file)
            table, chunks, seconds = _table(db, name, chunker, _docs(root, prefix, True), model)
            results[name] = {
                "questions": len(golden),
                "chunks": chunks,
                "embed_seconds": round(seconds, 1),
                **{mode: _rank(table, model.embed, golden, mode) for mode in SEARCH_MODES},
            }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results
