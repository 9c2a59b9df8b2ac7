"""Retrieval quality: the HTML parser's chrome removal, before and after, in one run.

On The Debian Administrator's Handbook (Debian's ``debian-handbook`` package: 127 English HTML pages generated
by Publican, with its banner and previous/up/home/next navigation) and the sample handbook, each page is parsed
twice: as the whole page (the parser before chrome removal, ``ParseOptions(html_content=False)``) and as its
content (the default). For each: the chunks the feed's chunker makes, how many of them are chrome (a line that
is one of the site's chrome strings, or a permalink sign), the embedding time those chunks cost at the measured
encode rate, and recall@5 and MRR on the golden sets (``include/config/golden``), by exact search with the
offline model.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from benchmarks.bench_embeddings import DEBIAN_HANDBOOK, _chunks, _golden, _retrieval
from feedstock.config import Embedding
from feedstock.documents.parsers import ParseOptions, parse_document
from feedstock.rag.chunking import Chunker, load_tokenizer
from feedstock.rag.embedders import embedder

ROOT = Path(__file__).resolve().parents[1]
# Lines that are the Debian handbook's chrome (its banner and navigation), and generic permalink signs.
CHROME_LINES = {"Download the ebook", "Prev", "Next", "Up", "Home", "- Prev", "- Next", "- Up", "- Home"}
CHROME_SECTIONS = ("Navigation", "Table of Contents", "Previous topic", "Next topic", "This Page")


def _docs(root: Path, prefix: str, html_content: bool) -> list[dict]:
    docs = []
    for path in sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix in (".html", ".md", ".txt", ".pdf", ".docx", ".json", ".jsonl")
    ):
        options = ParseOptions(text_field="body", html_content=html_content)
        parsed, _ = parse_document(str(path), path.read_bytes(), options)
        doc_id = f"{prefix}{path.relative_to(root)}"
        docs.append(
            {
                "doc_id": doc_id,
                "source": "bench",
                "uri": doc_id,
                "title": parsed.title,
                "text": parsed.text,
                "pages": parsed.pages or None,
                "content_hash": "",
                "access_tags": [],
                "mime_type": "",
                "is_deleted": False,
            }
        )
    return docs


def _chrome(chunker: Chunker, docs: list[dict]) -> int:
    count = 0
    for doc in docs:
        for chunk in chunker.chunk(doc):
            lines = {line.strip() for line in chunk["text"].splitlines()}
            section = chunk.get("section") or ""
            if lines & CHROME_LINES or "¶" in chunk["text"] or any(s in section for s in CHROME_SECTIONS):
                count += 1
    return count


def _side(model, chunker: Chunker, docs: list[dict], golden: list[dict], rate: float | None) -> dict:
    texts, owners = _chunks(chunker, docs)
    start = time.perf_counter()
    vectors = np.asarray(model.embed(texts), dtype=np.float32)
    seconds = time.perf_counter() - start
    return {
        "chunks": len(texts),
        "chrome_chunks": _chrome(chunker, docs),
        "embed_seconds": round(seconds, 1),
        **_retrieval(model, vectors, owners, golden),
    }


def run() -> dict:
    model = embedder(Embedding())
    model.embed(["warm up"])
    chunker = Chunker(load_tokenizer("all-MiniLM-L6-v2"), 200, 32)
    results = {}
    sets = [("sample_handbook", ROOT / "include" / "sample_data" / "handbook", "handbook/", "handbook.yaml")]
    if DEBIAN_HANDBOOK.exists():
        sets.append(("debian_handbook", DEBIAN_HANDBOOK, "", "debian_handbook.yaml"))
    else:
        results["debian_handbook"] = "skipped: apt-get install debian-handbook"
    for name, root, prefix, golden_file in sets:
        golden = _golden(golden_file)
        before = _side(model, chunker, _docs(root, prefix, False), golden, None)
        after = _side(model, chunker, _docs(root, prefix, True), golden, None)
        saved = before["chunks"] - after["chunks"]
        results[name] = {
            "whole_page": before,
            "content": after,
            "chunks_saved": saved,
            "chunks_saved_share": round(saved / before["chunks"], 3) if before["chunks"] else 0.0,
            "embed_seconds_saved": round(before["embed_seconds"] - after["embed_seconds"], 1),
            "targets": "0 chrome chunks, recall@5 >= 0.97, MRR >= 0.90, fewer chunks (Debian handbook)",
        }
    return results
