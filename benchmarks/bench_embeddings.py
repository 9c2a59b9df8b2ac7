"""Embedding runtimes: chunks/s against raw ``SentenceTransformer.encode``, and what each does to retrieval.

- **Throughput:** the same 2,000 chunks of 200 tokens (real documents from ``/usr/share/doc``, chunked by the
  feed's chunker, with the title/section heading the feed embeds) encoded by raw ``SentenceTransformer.encode``
  (batch 64), then by feedstock's embedder on each runtime: torch in fp32 and in bf16 (autocast), ONNX fp32,
  ONNX int8. The ONNX export is made
  beforehand (it is cached), so the timing is encoding only; the export's own time is reported separately.
- **Agreement:** the lowest and mean cosine between each runtime's vectors and torch's on those chunks.
- **Retrieval:** recall@5 and MRR with each runtime's vectors, by exact search over the chunks, on two golden
  sets: the sample handbook's (``include/config/golden/handbook.yaml``) and The Debian Administrator's
  Handbook's (``include/config/golden/debian_handbook.yaml``: 45 questions over its 127 English HTML pages, from
  Debian's ``debian-handbook`` package, skipped with a note when the package is not installed).
- **The feed end to end on the Debian handbook:** ``rag_feed``'s own stages (plan and chunk, embed, build the
  LanceDB table, release) on every page, against raw ``SentenceTransformer.encode`` of the same chunk texts.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from benchmarks import corpus
from benchmarks.bench_rag import _documents
from feedstock.config import Embedding
from feedstock.documents.parsers import ParseOptions, parse_document
from feedstock.rag.chunking import Chunker, embedding_text, load_tokenizer, model_path
from feedstock.rag.embedders import embedder

ROOT = Path(__file__).resolve().parents[1]
DEBIAN_HANDBOOK = Path("/usr/share/doc/debian-handbook/html/en-US")
N_CHUNKS = 2_000
RUNTIMES = {
    "torch": Embedding(precision="fp32"),
    "torch_bf16": Embedding(precision="bf16"),
    "onnx_fp32": Embedding(runtime="onnx"),
    "onnx_int8": Embedding(runtime="onnx", quantize="int8"),
}


def _parse(root: Path, prefix: str, pattern: str = "*") -> list[dict]:
    """Documents as the feed sees them: each file parsed, ``doc_id`` its path under ``root``."""
    docs = []
    for path in sorted(p for p in root.rglob(pattern) if p.is_file()):
        parsed, _ = parse_document(
            str(path), path.read_bytes(), ParseOptions(text_field="body")
        )  # as configured
        doc_id = f"{prefix}{path.relative_to(root)}"
        docs.append(
            {"doc_id": doc_id, "source": "bench", "uri": doc_id, "title": parsed.title, "text": parsed.text}
            | {"pages": parsed.pages or None, "content_hash": str(hash(parsed.text)), "access_tags": []}
            | {"mime_type": "text/html", "is_deleted": False}
        )
    return docs


def _chunks(chunker: Chunker, docs: list[dict]) -> tuple[list[str], list[str]]:
    """Each chunk's embedded text and the document it comes from."""
    texts, owners = [], []
    for doc in docs:
        for chunk in chunker.chunk(doc):
            texts.append(embedding_text(chunk))
            owners.append(doc["doc_id"])
    return texts, owners


def _retrieval(model, chunks: np.ndarray, owners: list[str], golden: list[dict], k: int = 5) -> dict:
    """Documents, not chunks, are ranked: a document's place is that of its best chunk."""
    questions = model.embed([g["question"] for g in golden])
    found, reciprocal = 0, 0.0
    for g, q in zip(golden, questions, strict=True):
        ranked = []
        for i in np.argsort(-(chunks @ q)):
            if owners[i] not in ranked:
                ranked.append(owners[i])
            if len(ranked) == k:
                break
        expected = g.get("expected_doc_id") or g["expected_uri"]
        if expected in ranked:
            found += 1
            reciprocal += 1 / (ranked.index(expected) + 1)
    return {"recall_at_5": round(found / len(golden), 3), "mrr": round(reciprocal / len(golden), 3)}


def _golden(name: str) -> list[dict]:
    return yaml.safe_load((ROOT / "include" / "config" / "golden" / name).read_text())


def _feed_full_build(docs: list[dict]) -> dict:
    """rag_feed's stages on ``docs`` (one full build), against raw encode of the same chunk texts."""
    from sentence_transformers import SentenceTransformer

    from benchmarks.bench_rag import _config, _full_run
    from feedstock.lake import Lake
    from feedstock.rag import index

    work = Path(tempfile.mkdtemp(prefix="feedstock-bench-feed-"))
    lake = Lake(str(work / "lake"))
    config = _config(lake.root)
    model = embedder(config.rag.embedding)
    model.embed(["warm up"])
    seconds, stats = _full_run(config, lake, docs, "full", model)
    texts = [embedding_text(c) for c in lake.read(index.INDEX_TABLE).to_pylist()]
    raw = SentenceTransformer(model_path("all-MiniLM-L6-v2"), device="cpu")
    start = time.perf_counter()
    raw.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    raw_seconds = time.perf_counter() - start
    return {
        "documents": len(docs),
        "chunks": stats["chunks_total"],
        "feed_seconds": round(seconds, 1),
        "feed_chunks_per_s": round(stats["chunks_total"] / seconds, 1),
        "raw_encode_seconds": round(raw_seconds, 1),
        "raw_chunks_per_s": round(len(texts) / raw_seconds, 1),
        "feed_vs_raw": round(raw_seconds / seconds, 3),
        "target": ">= 0.9",
    }


def run() -> dict:
    from sentence_transformers import SentenceTransformer

    os.environ.setdefault("FEEDSTOCK_MODELS", tempfile.mkdtemp(prefix="feedstock-bench-models-"))
    chunker = Chunker(load_tokenizer("all-MiniLM-L6-v2"), 200, 32)
    texts = _chunks(chunker, _documents(corpus.build(), 400))[0][:N_CHUNKS]
    sets = {
        "sample": (
            _chunks(chunker, _parse(ROOT / "include/sample_data/handbook", "handbook/")),
            _golden("handbook.yaml"),
        )
    }
    debian = _parse(DEBIAN_HANDBOOK, "", "*.html") if DEBIAN_HANDBOOK.exists() else []
    if debian:
        sets["debian"] = (_chunks(chunker, debian), _golden("debian_handbook.yaml"))
    result: dict = {"chunks": len(texts), "models_dir": os.environ["FEEDSTOCK_MODELS"]}
    if not debian:
        result["debian_handbook"] = "not installed: apt-get install debian-handbook"

    raw = SentenceTransformer(model_path("all-MiniLM-L6-v2"), device="cpu")
    raw.encode(texts[:64], batch_size=64)

    def raw_encode() -> tuple[np.ndarray, float]:
        start = time.perf_counter()
        vectors = raw.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
        return vectors, time.perf_counter() - start

    # Raw encode runs first and last, and the faster of the two is the baseline: on a shared machine a slow
    # baseline would flatter every ratio.
    reference, raw_seconds = raw_encode()
    timings: dict[str, float] = {}
    for name, spec in RUNTIMES.items():
        start = time.perf_counter()
        model = embedder(spec)
        loaded = time.perf_counter() - start
        model.embed(texts[:64])
        start = time.perf_counter()
        vectors = model.embed(texts)
        timings[name] = time.perf_counter() - start
        cosines = np.sum(vectors * reference, axis=1)
        result[name] = {
            "load_or_export_s": round(loaded, 1),
            "chunks_per_s": round(len(texts) / timings[name], 1),
            "cosine_to_torch_min": round(float(cosines.min()), 4),
            "cosine_to_torch_mean": round(float(cosines.mean()), 4),
        }
        for set_name, ((chunk_texts, owners), golden) in sets.items():
            scores = _retrieval(model, model.embed(chunk_texts), owners, golden)
            result[name][set_name] = {"chunks": len(chunk_texts), "questions": len(golden), **scores}
    last = raw_encode()[1]
    result["raw_sentence_transformers"] = {
        "chunks_per_s": round(len(texts) / min(raw_seconds, last), 1),
        "first_and_last_run_chunks_per_s": [round(len(texts) / raw_seconds, 1), round(len(texts) / last, 1)],
    }
    for name, seconds in timings.items():
        result[name]["vs_raw"] = round(min(raw_seconds, last) / seconds, 2)
    if debian:
        result["rag_feed_full_build_debian_handbook"] = _feed_full_build(debian)
    return result
