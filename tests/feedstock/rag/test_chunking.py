"""Chunking with the embedding model's own tokenizer: structure first, then the token budget."""

from __future__ import annotations

import pytest

from feedstock.rag.chunking import Chunker, load_tokenizer, sections


@pytest.fixture(scope="module")
def chunker():
    return Chunker(load_tokenizer("all-MiniLM-L6-v2"), budget=64, overlap=8)


def doc(text: str, **extra) -> dict:
    return {
        "doc_id": "s/a.md",
        "source": "s",
        "uri": "/a.md",
        "title": "A",
        "text": text,
        "content_hash": "h",
        "pages": None,
        "access_tags": ["internal", "hr"],
        **extra,
    }


def test_sections_follow_headings_and_pages():
    text = "# Policy\n\nIntro.\n\n## Leave\n\nTwenty days.\n\n### Carry over\n\nFive days."
    paths = [s.path for s in sections(text)]
    assert paths == ["Policy", "Policy > Leave", "Policy > Leave > Carry over"]
    pages = [{"page": 1, "start": 0, "end": 6}, {"page": 2, "start": 8, "end": 14}]
    assert [(s.page, s.text) for s in sections("page A\n\npage B", pages)] == [(1, "page A"), (2, "page B")]


def test_chunks_respect_the_budget_and_carry_metadata(chunker):
    paragraphs = "\n\n".join(
        f"Paragraph {i} explains the policy in some detail with several words." for i in range(40)
    )
    chunks = chunker.chunk(doc(f"# Handbook\n\n## Rules\n\n{paragraphs}"))
    assert len(chunks) > 3
    assert all(c["n_tokens"] <= 64 for c in chunks)
    assert {c["section"] for c in chunks} == {"Handbook > Rules"}
    assert chunks[0]["access_tags"] == ["internal", "hr"]
    assert len({c["chunk_id"] for c in chunks}) == len(chunks)


def test_unchanged_passages_keep_their_ids_when_the_document_changes(chunker):
    before = chunker.chunk(doc("# T\n\n## One\n\nFirst section text.\n\n## Two\n\nSecond section text."))
    after = chunker.chunk(doc("# T\n\n## One\n\nFirst section text.\n\n## Two\n\nSecond section, rewritten."))
    assert before[0]["chunk_id"] == after[0]["chunk_id"]
    assert before[1]["chunk_id"] != after[1]["chunk_id"]


def test_pdf_pages_are_kept(chunker):
    text = "Page one text.\n\nPage two text."
    pages = [{"page": 1, "start": 0, "end": 14}, {"page": 2, "start": 16, "end": 30}]
    assert [c["page"] for c in chunker.chunk(doc(text, pages=pages))] == [1, 2]


def test_bad_input_empty_huge_and_non_english(chunker):
    assert chunker.chunk(doc("")) == [] and chunker.chunk(doc("#\n\n   \n")) == []
    huge = chunker.chunk(doc(" ".join(f"w{i}" for i in range(20_000))))  # one paragraph far over the budget
    assert len(huge) > 300 and max(c["n_tokens"] for c in huge) <= 64
    mixed = chunker.chunk(
        doc(
            "# 日本語\n\n東京のオフィスは午前九時に開きます。\n\n## Ελληνικά\n\nΤο γραφείο ανοίγει στις εννέα."
        )
    )
    assert [c["section"] for c in mixed] == ["日本語", "日本語 > Ελληνικά"]
    assert "東京" in mixed[0]["text"]
