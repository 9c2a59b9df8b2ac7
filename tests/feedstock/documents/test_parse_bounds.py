"""Hostile files are quarantined by a bound (size, expansion, nesting, time, memory), and the batch goes on.

No timing assertions: the limits are set low through :class:`ParseLimits`, and the reason code says which
bound stopped the file.
"""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime

import pytest

from feedstock.config import DocumentSource
from feedstock.documents import ingest
from feedstock.documents.parsers import (
    ParseLimits,
    ParseOptions,
    ParseWorker,
    Quarantined,
    parse_document,
)
from feedstock.lake import Lake
from tests.conftest import SAMPLE

HANDBOOK = SAMPLE / "handbook"
DOCX = HANDBOOK / "policies/new_hire_onboarding.docx"
PARAGRAPH = b"<w:p><w:r><w:t>all work and no play</w:t></w:r></w:p>"


def nested_divs(depth: int = 100_000) -> bytes:
    """1.1 MB of HTML that once took 540 s to parse."""
    return ("<html><body>" + "<div>" * depth + "x" + "</div>" * depth + "</body></html>").encode()


def docx_bomb(expanded_mb: int) -> bytes:
    """A real DOCX whose document.xml is padded to ``expanded_mb`` of repeated paragraphs (it zips ~300x)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(DOCX) as original, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bomb:
        for member in original.infolist():
            body = original.read(member)
            if member.filename == "word/document.xml":
                head, tail = body.split(b"<w:body>")
                body = head + b"<w:body>" + PARAGRAPH * (expanded_mb * 2**20 // len(PARAGRAPH)) + tail
            bomb.writestr(member.filename, body)
    return buffer.getvalue()


JSONL = (  # line 2 is cut short, line 3 is blank
    b'{"title": "One", "body": "first answer"}\n'
    b'{"title": "Two", "body": "broken\n'
    b"\n"
    b'{"title": "Three", "body": "third answer"}\n'
)


def limits(**overrides) -> ParseOptions:
    return ParseOptions(text_field="body", limits=ParseLimits(**overrides))


def test_deeply_nested_html_is_too_large_before_it_is_built():
    with pytest.raises(Quarantined) as bad:
        parse_document("deep.html", nested_divs())
    assert bad.value.reason == "too_large" and "512 deep" in bad.value.detail
    with pytest.raises(Quarantined, match="more than 3 deep"):  # <html><body><p> is three levels
        parse_document("page.html", b"<html><body><div><p>four</p></div></body></html>", limits(html_depth=3))
    parsed, _ = parse_document("faq/billing_faq.html", (HANDBOOK / "faq/billing_faq.html").read_bytes())
    assert "Billing" in parsed.title  # real pages are far from the limit


def test_a_zip_bomb_docx_is_too_large_before_it_is_opened():
    bomb = docx_bomb(4)
    assert len(bomb) < 60_000
    with pytest.raises(Quarantined) as bad:
        parse_document("bomb.docx", bomb)
    assert bad.value.reason == "too_large" and "zip bomb: word/document.xml" in bad.value.detail
    with pytest.raises(Quarantined) as bad:  # over the expanded size, whatever the ratio
        parse_document("bomb.docx", bomb, limits(expanded_mb=2, expansion_ratio=1e9))
    assert bad.value.reason == "too_large" and "over the 2 MB limit" in bad.value.detail
    parsed, _ = parse_document(DOCX.name, DOCX.read_bytes(), limits(expanded_mb=1))  # real ones are small
    assert parsed.title == "New Hire Onboarding Guide"
    assert ParseLimits.for_max_file_mb(50).expanded_mb == 500  # a source's limit: 10x its max_file_mb


def test_jsonl_keeps_its_good_lines_and_reports_the_bad_ones():
    parsed, parser = parse_document("faq.jsonl", JSONL, limits())
    assert parser.mime_type == "application/json"
    assert "first answer" in parsed.text and "third answer" in parsed.text and "broken" not in parsed.text
    assert parsed.bad_lines == [(2, "Unterminated string starting at (column 26)")]


def test_jsonl_edge_cases():
    with pytest.raises(Quarantined) as bad:  # no line parses: the file, not a line, is bad
        parse_document("x.jsonl", b'{"body": \n{"body": \n', limits())
    assert bad.value.reason == "corrupt" and bad.value.detail.startswith("no line is JSON: line 1:")
    pretty = json.dumps([{"body": "a"}, {"body": "b"}], indent=2).encode()  # JSON in a .jsonl name
    assert parse_document("x.jsonl", pretty, limits())[0].text == "a\n\nb"
    separator = (
        json.dumps({"body": "one\u2028line"}, ensure_ascii=False).encode() + b"\n" + b'{"body": "two"}'
    )
    parsed, _ = parse_document("x.jsonl", separator, limits())  # U+2028 is inside a string, not a line end
    assert parsed.bad_lines == [] and "one\u2028line" in parsed.text
    with pytest.raises(Quarantined) as bad:  # a .json file is one document: any error is the file's
        parse_document("x.json", b'[{"body": "a"},\n{"body": "b"}\n', limits())
    assert bad.value.reason == "corrupt"


def test_the_worker_times_out_a_file_and_goes_on_with_a_fresh_process():
    no_depth_limit = limits(html_depth=10**9, timeout_s=0.5, timeout_s_per_mb=0)
    with ParseWorker() as worker:
        with pytest.raises(Quarantined) as bad:
            worker.parse("deep.html", nested_divs(), no_depth_limit)
        assert bad.value.reason == "timeout" and "0.5 s" in bad.value.detail
        parsed, _ = worker.parse("ok.md", b"# Fine\n\nStill parsing.", no_depth_limit)
        assert parsed.title == "Fine"
        parsed, _ = worker.parse("faq.jsonl", JSONL, no_depth_limit)  # bad lines travel back from the child
        assert [line for line, _ in parsed.bad_lines] == [2]


def test_the_worker_quarantines_a_file_that_needs_too_much_memory():
    unchecked = limits(expansion_ratio=1e9, memory_mb=200)  # 12 MB of XML is ~10x that as an lxml tree
    with ParseWorker() as worker:
        with pytest.raises(Quarantined) as bad:
            worker.parse("bomb.docx", docx_bomb(12), unchecked)
        assert bad.value.reason == "too_large" and "200 MB memory limit" in bad.value.detail
        assert worker.parse("ok.txt", b"next file", unchecked)[0].text == "next file"
        with pytest.raises(Quarantined) as bad:  # quarantine reasons still come back as they are
            worker.parse("broken.docx", b"PK\x03\x04 not really a zip", unchecked)
        assert bad.value.reason == "corrupt"
        with pytest.raises(Quarantined, match="unsupported_type"):
            worker.parse("logo.png", b"\x89PNG", unchecked)


def test_parse_batch_quarantines_hostile_files_and_keeps_the_rest(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "deep.html").write_bytes(nested_divs())
    (folder / "bomb.docx").write_bytes(docx_bomb(4))
    (folder / "faq.jsonl").write_bytes(JSONL)
    (folder / "pto.md").write_bytes((HANDBOOK / "policies/pto_policy.md").read_bytes())
    source = DocumentSource(name="docs", uri=str(folder), text_field="body")
    lake = Lake(str(tmp_path / "lake"))
    batches, summary = ingest.plan(source, lake, "run-1")
    counts = ingest.parse_batch(source, lake, batches[0], datetime(2026, 11, 1, tzinfo=UTC))
    # Per file: the partly good JSONL is one ingested file; its bad line is a quarantine row of its own.
    assert counts == {"ingested": 2, "unchanged": 0, "quarantined": 2}
    assert summary["files_seen"] == sum(counts.values())
    stage = ingest.staging_dir(lake, "run-1", "docs")
    held = {r["doc_id"]: r for r in lake.read_staged(f"{stage}/quarantine").to_pylist()}
    assert {doc_id: r["reason"] for doc_id, r in held.items()} == {
        "docs/deep.html": "too_large",
        "docs/bomb.docx": "too_large",
        "docs/faq.jsonl#L2": "invalid_json",
    }
    assert held["docs/faq.jsonl#L2"]["detail"].startswith("line 2: ")
    assert all("\n" not in r["detail"] for r in held.values())
    parsed = lake.read_staged(f"{stage}/parsed").to_pylist()
    assert sorted(r["doc_id"] for r in parsed) == ["docs/faq.jsonl", "docs/pto.md"]
