"""Embedding runtimes: chunks/s against raw ``SentenceTransformer.encode``, and what each does to retrieval.

- **Throughput:** the same 2,000 chunks of 200 tokens (real documents from ``/usr/share/doc``, chunked by the
  feed's chunker, with the title/section heading the feed embeds) encoded by raw ``SentenceTransformer.encode``
  (batch 64), then by feedstock's embedder on each runtime: torch, ONNX fp32, ONNX int8. The ONNX export is made
  beforehand (it is cached), so the timing is encoding only; the export's own time is reported separately.
- **Agreement:** the lowest and mean cosine between each runtime's vectors and torch's on those chunks.
- **Retrieval:** recall@5 and MRR on the sample golden set (``include/config/golden/handbook.yaml``) with each
  runtime's vectors, by exact search over the sample handbook's chunks.
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
N_CHUNKS = 2_000
RUNTIMES = {
    "torch": Embedding(),
    "onnx_fp32": Embedding(runtime="onnx"),
    "onnx_int8": Embedding(runtime="onnx", quantize="int8"),
}


def _chunk_texts(chunker: Chunker, docs: list[dict]) -> list[str]:
    return [embedding_text(c) for doc in docs for c in chunker.chunk(doc)]


def _handbook(chunker: Chunker) -> tuple[list[str], list[str]]:
    """The sample handbook's chunks (texts) and the document each comes from."""
    root = ROOT / "include" / "sample_data" / "handbook"
    texts, owners = [], []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        parsed, _ = parse_document(
            str(path), path.read_bytes(), ParseOptions(text_field="body")
        )  # as configured
        doc_id = f"handbook/{path.relative_to(root)}"
        doc = {"doc_id": doc_id, "source": "handbook", "uri": str(path), "title": parsed.title}
        doc |= {"text": parsed.text, "pages": parsed.pages, "content_hash": "", "access_tags": []}
        for chunk in chunker.chunk(doc):
            texts.append(embedding_text(chunk))
            owners.append(doc_id)
    return texts, owners


def _retrieval(model, chunks: np.ndarray, owners: list[str], golden: list[dict], k: int = 5) -> dict:
    questions = model.embed([g["question"] for g in golden])
    found, reciprocal = 0, 0.0
    for g, q in zip(golden, questions, strict=True):
        ranked = []
        for i in np.argsort(-(chunks @ q)):
            if owners[i] not in ranked:
                ranked.append(owners[i])
            if len(ranked) == k:
                break
        if g["expected_doc_id"] in ranked:
            found += 1
            reciprocal += 1 / (ranked.index(g["expected_doc_id"]) + 1)
    return {"recall_at_5": round(found / len(golden), 3), "mrr": round(reciprocal / len(golden), 3)}


def run() -> dict:
    from sentence_transformers import SentenceTransformer

    os.environ.setdefault("FEEDSTOCK_MODELS", tempfile.mkdtemp(prefix="feedstock-bench-models-"))
    chunker = Chunker(load_tokenizer("all-MiniLM-L6-v2"), 200, 32)
    texts = _chunk_texts(chunker, _documents(corpus.build(), 400))[:N_CHUNKS]
    hand_texts, owners = _handbook(chunker)
    golden = yaml.safe_load((ROOT / "include" / "config" / "golden" / "handbook.yaml").read_text())
    result: dict = {"chunks": len(texts), "models_dir": os.environ["FEEDSTOCK_MODELS"]}

    raw = SentenceTransformer(model_path("all-MiniLM-L6-v2"), device="cpu")
    raw.encode(texts[:64], batch_size=64)
    start = time.perf_counter()
    reference = raw.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    raw_seconds = time.perf_counter() - start
    result["raw_sentence_transformers"] = {"chunks_per_s": round(len(texts) / raw_seconds, 1)}

    for name, spec in RUNTIMES.items():
        start = time.perf_counter()
        model = embedder(spec)
        loaded = time.perf_counter() - start
        model.embed(texts[:64])
        start = time.perf_counter()
        vectors = model.embed(texts)
        seconds = time.perf_counter() - start
        cosines = np.sum(vectors * reference, axis=1)
        result[name] = {
            "load_or_export_s": round(loaded, 1),
            "chunks_per_s": round(len(texts) / seconds, 1),
            "vs_raw": round(raw_seconds / seconds, 2),
            "cosine_to_torch_min": round(float(cosines.min()), 4),
            "cosine_to_torch_mean": round(float(cosines.mean()), 4),
            **_retrieval(model, model.embed(hand_texts), owners, golden),
        }
    return result
