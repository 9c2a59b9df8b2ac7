"""Parsers on real files of every format, including broken ones."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from fpdf import FPDF

from feedstock.documents.parsers import ParseOptions, Quarantined, decode_text, parse_document
from tests.conftest import SAMPLE

HANDBOOK = SAMPLE / "handbook"
JSON_OPTIONS = ParseOptions(text_field="body")


def parse(relative: str, options: ParseOptions | None = None):
    parsed, parser = parse_document(relative, (HANDBOOK / relative).read_bytes(), options or ParseOptions())
    return parsed, parser


def test_markdown_keeps_headings_and_title():
    parsed, parser = parse("policies/pto_policy.md")
    assert parser.mime_type == "text/markdown"
    assert parsed.title == "Paid Time Off (PTO) Policy"
    assert parsed.text.startswith("# Paid Time Off")
    assert "\n## " in parsed.text


def test_html_visible_text_only():
    parsed, parser = parse("faq/billing_faq.html")
    assert parser.mime_type == "text/html"
    assert parsed.title and "Billing" in parsed.title
    raw = (HANDBOOK / "faq/billing_faq.html").read_text()
    assert "<script" in raw and "<style" in raw
    assert "<" not in parsed.text and "function" not in parsed.text and "{" not in parsed.text
    assert "\n## " in parsed.text or parsed.text.startswith("# ")


def test_pdf_text_per_page_with_boundaries():
    parsed, parser = parse("policies/information_security_policy.pdf")
    assert parser.mime_type == "application/pdf"
    assert parsed.title == "Information Security Policy"
    assert [p["page"] for p in parsed.pages] == [1, 2, 3, 4]
    for page in parsed.pages:
        assert parsed.text[page["start"] : page["end"]].strip()
    assert parsed.pages[1]["start"] > parsed.pages[0]["end"]


def test_docx_headings_and_title():
    parsed, parser = parse("policies/new_hire_onboarding.docx")
    assert parser.mime_type.endswith("wordprocessingml.document")
    assert parsed.title == "New Hire Onboarding Guide"
    assert "\n## " in parsed.text


def test_json_and_jsonl_use_the_configured_text_field():
    single, _ = parse("support/kb_rotate_api_key.json", JSON_OPTIONS)
    assert single.title == "How to rotate a Relay API key without downtime"
    many, _ = parse("faq/relay_faq.jsonl", JSON_OPTIONS)
    lines = (HANDBOOK / "faq/relay_faq.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert first["body"][:40] in many.text
    assert many.text.count("## ") == len(lines)
    assert many.title == "Relay faq"


def test_json_without_the_text_field_is_empty():
    with pytest.raises(Quarantined) as bad:
        parse_document("a.jsonl", b'{"other": "x"}\n{"other": "y"}\n', JSON_OPTIONS)
    assert bad.value.reason == "empty"


def test_latin1_and_utf16_are_decoded():
    latin, _ = parse("policies/montreal_office_notes.txt")
    assert "Montréal" in latin.text and "café" in latin.text
    utf16, _ = parse("support/escalation_contacts.txt")
    assert "ESCALATION" in utf16.text and "\x00" not in utf16.text
    sentence = "Le café du bureau de Montréal ouvre à huit heures; les employés y déjeunent souvent."
    assert decode_text(sentence.encode("latin-1")) == sentence


@pytest.mark.parametrize(
    "name, data, reason",
    [
        ("truncated.pdf", (HANDBOOK / "policies/employee_travel_policy.pdf").read_bytes()[:200], "corrupt"),
        ("garbage.pdf", b"%PDF-1.4 this is not a pdf", "corrupt"),
        ("broken.docx", b"PK\x03\x04 not really a zip", "corrupt"),
        ("broken.json", b'{"body": "unterminated', "corrupt"),
        ("blank.md", b"   \n\n  ", "empty"),
        ("empty.txt", b"", "empty"),
        ("picture.png", b"\x89PNG\r\n\x1a\n", "unsupported_type"),
        ("README", b"no suffix", "unsupported_type"),
        ("binary.txt", bytes(range(256)) * 8, "undecodable"),
    ],
)
def test_broken_files_are_quarantined_with_a_reason(name, data, reason):
    with pytest.raises(Quarantined) as bad:
        parse_document(name, data, JSON_OPTIONS)
    assert bad.value.reason == reason
    assert bad.value.detail


def test_docx_that_is_a_valid_zip_but_not_a_document():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hello.txt", "hi")
    with pytest.raises(Quarantined) as bad:
        parse_document("x.docx", buffer.getvalue())
    assert bad.value.reason == "corrupt"


def test_encrypted_pdf():
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.cell(text="secret")
    pdf.set_encryption(owner_password="owner", user_password="user")
    with pytest.raises(Quarantined) as bad:
        parse_document("locked.pdf", bytes(pdf.output()))
    assert bad.value.reason == "encrypted"


SPHINX_PAGE = b"""<html><head><title>Built-in Functions</title></head><body>
<div class="related" role="navigation"><h3>Navigation</h3><ul><li><a href="genindex.html">index</a></li>
<li><a href="modules.html">modules</a> |</li><li>Python &#187;</li></ul></div>
<div class="document"><div class="body" role="main">
<section id="built-in-functions"><h1>Built-in Functions<a class="headerlink" href="#built-in">\xc2\xb6</a></h1>
<p>The Python interpreter has a number of functions and types built into it that are always available. They are
listed here in alphabetical order, with a short description of each and a link to its full entry below.</p>
<h2>abs(x)<a class="headerlink" href="#abs">\xc2\xb6</a></h2><p>Return the absolute value of a number. The argument
may be an integer, a floating-point number, or an object implementing __abs__().</p></section></div></div>
<div class="sphinxsidebar" role="navigation"><h3>Table of Contents</h3><ul><li>Built-in Functions</li></ul>
<h4>Previous topic</h4><p>Introduction</p><h4>Next topic</h4><p>Built-in Constants</p><h3>This Page</h3></div>
<div class="footer">&#169; Copyright 2001-2026, Python Software Foundation.</div>
<div id="consent" style="display: none">We use cookies.</div>
</body></html>"""


def test_html_keeps_the_content_and_drops_the_site_chrome():
    from feedstock.documents.parsers import HtmlParser, ParseOptions

    parsed = HtmlParser().parse(SPHINX_PAGE, ParseOptions())
    assert parsed.extraction == "content"
    assert parsed.text.startswith("# Built-in Functions\n") and "## abs(x)\n" in parsed.text
    for chrome in (
        "Navigation",
        "modules",
        "Table of Contents",
        "Previous topic",
        "This Page",
        "Copyright",
        "¶",
        "cookies",
    ):
        assert chrome not in parsed.text, chrome
    whole = HtmlParser().parse(SPHINX_PAGE, ParseOptions(html_content=False))
    assert "Table of Contents" in whole.text and "¶" in whole.text  # the parser as it was, for comparisons


def test_html_falls_back_to_the_whole_page_when_the_content_would_be_too_little():
    from feedstock.documents.parsers import HtmlParser, ParseOptions

    page = (
        b"<html><body><nav>"
        + b"<p>a long list of links that is the page itself</p>" * 20
        + b"</nav><p>x</p></body></html>"
    )
    parsed = HtmlParser().parse(page, ParseOptions())
    assert parsed.extraction == "whole_page" and parsed.text.count("a long list of links") == 20


def test_an_index_page_keeps_its_listing_or_its_marked_content_without_the_chrome():
    from feedstock.documents.parsers import HtmlParser, ParseOptions

    chrome = b'<div id="banner">Download the ebook</div><ul class="docnav"><li>Prev</li><li>Next</li></ul>'
    entries = b"".join(b"<li>Chapter %d: a chapter of the book</li>" % i for i in range(20))
    front = (
        b"<html><body>"
        + chrome
        + b'<h1>The Book</h1><div class="toc"><ul>'
        + entries
        + b"</ul></div></body></html>"
    )
    parsed = HtmlParser().parse(
        front, ParseOptions()
    )  # no main: the table of contents is what the page holds
    assert parsed.extraction == "content" and parsed.text.count("a chapter of the book") == 20
    assert "Download the ebook" not in parsed.text and "Prev" not in parsed.text

    sidebar = b'<div class="sphinxsidebar">' + entries * 3 + b"</div>"
    chapter = b'<html><body><div role="main"><h1>Services</h1><p>The modules of this chapter.</p></div>'
    parsed = HtmlParser().parse(chapter + sidebar + b"</body></html>", ParseOptions())
    assert parsed.extraction == "content" and parsed.text == "# Services\n\nThe modules of this chapter."
