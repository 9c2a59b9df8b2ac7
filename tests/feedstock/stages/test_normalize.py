"""Normalization: mojibake, NFC, control characters, whitespace, boilerplate lines, empty documents."""

from __future__ import annotations

import unicodedata
from collections import Counter

import pytest

from feedstock.stages.boilerplate import line_key
from feedstock.stages.normalize import Normalizer, clean_text
from feedstock.stages.steps import Document

BOILER = "Subscribe to our newsletter for weekly updates"
SHORT = "Share this"


def test_mojibake_repaired_and_counted():
    assert clean_text("cafÃ© au lait") == "café au lait"
    stats = Counter()
    doc = Document("d", "web", "cafÃ© au lait")
    assert Normalizer().process(doc, stats) is None
    assert doc.text == "café au lait"
    assert stats["fixed_encoding"] == 1


def test_ftfy_off_leaves_mojibake_and_does_not_count():
    stats = Counter()
    doc = Document("d", "web", "cafÃ©")
    Normalizer(ftfy=False).process(doc, stats)
    assert doc.text == "cafÃ©"
    assert stats["fixed_encoding"] == 0


def test_clean_text_does_not_count_plain_text_as_fixed():
    stats = Counter()
    Normalizer().process(Document("d", "web", "plain  text"), stats)
    assert stats["fixed_encoding"] == 0


@pytest.mark.parametrize("fix", [True, False])
def test_nfc(fix):
    decomposed = "cafe\u0301"
    assert unicodedata.is_normalized("NFC", decomposed) is False
    out = clean_text(decomposed, fix_encoding=fix)
    assert out == "caf\u00e9"
    assert unicodedata.is_normalized("NFC", out)


def test_control_characters_removed_newlines_kept():
    assert clean_text("a\x00b\x07c\x1bd\x7fe\u200bf\ufeffg") == "abcdefg"
    assert clean_text("line one\nline two") == "line one\nline two"
    assert clean_text("windows\r\nline\rold mac") == "windows\nline\nold mac"


def test_whitespace_collapsed():
    assert clean_text("  many    spaces\u00a0and\u3000wide \t tab  ") == "many spaces and wide tab"
    assert clean_text("para one\n\n\n\n\npara two") == "para one\n\npara two"
    assert clean_text("para one\n   \n \npara two") == "para one\n\npara two"
    # a single blank line is kept as is
    assert clean_text("a\n\nb") == "a\n\nb"


def test_line_key_ignores_case_and_spacing():
    assert line_key("Hello   World") == line_key(" hello world ")
    assert line_key("Hello World") != line_key("Hello Worlds")


def boilerplate_doc(source: str = "web") -> Document:
    return Document("d", source, f"Real content about gardening in spring.\n{BOILER}\n{SHORT}\nMore content.")


def test_boilerplate_removed_for_matching_source():
    step = Normalizer(boilerplate={"web": {line_key(BOILER), line_key(SHORT)}}, boilerplate_min_chars=20)
    stats = Counter()
    doc = boilerplate_doc()
    assert step.process(doc, stats) is None
    assert BOILER not in doc.text
    # shorter than boilerplate_min_chars: survives even though its key is listed
    assert SHORT in doc.text
    assert doc.text == f"Real content about gardening in spring.\n{SHORT}\nMore content."
    assert stats["boilerplate_lines"] == 1


def test_boilerplate_kept_for_other_source():
    step = Normalizer(boilerplate={"web": {line_key(BOILER)}})
    stats = Counter()
    doc = boilerplate_doc("books")
    step.process(doc, stats)
    assert BOILER in doc.text
    assert stats["boilerplate_lines"] == 0


def test_boilerplate_min_chars_threshold():
    key = {line_key(SHORT)}
    doc = boilerplate_doc()
    Normalizer(boilerplate={"web": key}, boilerplate_min_chars=len(SHORT)).process(doc, Counter())
    assert SHORT not in doc.text
    doc = boilerplate_doc()
    Normalizer(boilerplate={"web": key}, boilerplate_min_chars=len(SHORT) + 1).process(doc, Counter())
    assert SHORT in doc.text


def test_boilerplate_removal_collapses_left_over_blank_lines():
    doc = Document("d", "web", f"Top\n\n{BOILER}\n\nBottom")
    Normalizer(boilerplate={"web": {line_key(BOILER)}}).process(doc, Counter())
    assert doc.text == "Top\n\nBottom"


@pytest.mark.parametrize("text", ["", "   \n\t\n ", "\x00\x01\u200b"])
def test_empty_document_dropped(text):
    doc = Document("d", "web", text)
    assert Normalizer().process(doc, Counter()) == "normalize:empty"


def test_document_of_only_boilerplate_dropped():
    doc = Document("d", "web", f"{BOILER}\n{BOILER.upper()}")
    assert Normalizer(boilerplate={"web": {line_key(BOILER)}}).process(doc, Counter()) == "normalize:empty"


def test_fix_text_is_ftfy_line_for_line():
    """The ASCII-line shortcut gives exactly ftfy's output, entities, escapes and HTML switches included."""
    import random

    import ftfy

    from feedstock.stages.normalize import fix_text

    pieces = [
        "plain ascii line",
        "café",
        "cafÃ©",
        "&amp; &lt;b&gt;",
        "<p>tag</p>",
        "\x1b[31mred\x1b[0m",
        "a\rb",
        "“quoted”",
        "ﬁne",
        "ＬＯＵＤ",
        "\x00\x07ctl",
        "tab\tline",
        "",
        "âœ” mojibake",
        "&hellip; it&#x2019;s",
    ]
    rng = random.Random(3)
    for _ in range(300):
        text = "\n".join(rng.choice(pieces) + " " + rng.choice(pieces) for _ in range(rng.randint(1, 8)))
        assert fix_text(text) == ftfy.fix_text(text, normalization="NFC"), repr(text)


def test_tidy_in_one_pass_is_the_line_by_line_rule():
    """One regex pass that only matches the space runs it changes, then lines stripped by replaces (ASCII text)
    or by str.strip (other text), against every run replaced and every line stripped one by one."""
    import random
    import re

    from feedstock.stages.boilerplate import BLANK_RUNS
    from feedstock.stages.normalize import _CONTROL, _SPACE_CHARS, _tidy

    every_run = re.compile(f"{_SPACE_CHARS}+")

    def line_by_line(text: str) -> str:
        text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
        lines = [every_run.sub(" ", line).strip() for line in text.split("\n")]
        return BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip()

    rng = random.Random(3)
    alphabet = [
        "a",
        "b",
        "é",
        " ",
        "  ",
        "\t",
        "\n",
        "\r\n",
        "\r",
        "\u00a0",
        "\u2003",
        "\u3000",
        "\u2028",
        "\u202f",
        "\x0b",
        "\x1c",
        "\x85",
    ]
    for _ in range(2_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        assert _tidy(text) == line_by_line(text), repr(text)
        plain = "".join(char for char in text if char.isascii())
        assert _tidy(plain) == line_by_line(plain), repr(plain)
