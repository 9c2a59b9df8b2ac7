"""Normalization: the first stage of the pretraining feed, applied to every document.

In order: mojibake repair with ftfy (which also applies Unicode NFC; pure-ASCII text skips it), NFC,
control characters removed (tabs and newlines kept), runs of spaces collapsed, blank-line runs collapsed to one
empty line, and boilerplate lines removed. A boilerplate line is a line that repeats across a source: a scan
of every shard counts in how many documents each line occurs, and a line seen in at least
``boilerplate_min_docs`` documents of a source (and at least ``boilerplate_min_chars`` long, so short headings
and list markers survive) is removed from every document of that source. A document left empty is dropped with
``normalize:empty``.

Stats: ``in``, ``out``, ``fixed_encoding`` (ftfy changed the text), ``boilerplate_lines`` (lines removed).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

import ftfy

from feedstock.stages import boilerplate as lines
from feedstock.stages.steps import Document, Step

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\ufeff]")
_SPACE_CHARS = r"[ \t\u00a0\u2000-\u200a\u3000]"
# A run of spaces, as one plain space. Only runs that change are matched: a lone plain space is most of a text's
# spaces, and replacing each with itself was most of the tidy step. The pattern opens with a character class, so
# sre skips ahead to the spaces; a plain space then needs another after it (the lookbehind sees the space just
# matched), any other space character starts a run of its own.
_SPACES = re.compile(rf"{_SPACE_CHARS}(?:(?<! ){_SPACE_CHARS}*|{_SPACE_CHARS}+)")


def repair(text: str, fix_encoding: bool = True) -> tuple[str, bool]:
    """NFC text, with mojibake repaired by ftfy; and whether ftfy changed anything beyond NFC.

    Pure-ASCII text cannot hold mojibake, and ftfy is the slowest step of the whole shard task (measured: 40% of
    it), so ASCII text skips it.
    """
    nfc = text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)
    if not fix_encoding or text.isascii():
        return nfc, False
    fixed = fix_text(text)
    return fixed, fixed != nfc


# A character that sends its line to ftfy: what ftfy can change in a pure-ASCII line (HTML entities, terminal
# escapes, carriage returns, control characters), or any non-ASCII character.
_NEEDS_FTFY = re.compile(r"[^\t\n\x20-\x25\x27-\x7e]")
_FTFY = ftfy.TextFixerConfig(explain=False, normalization="NFC")
# As ftfy.fix_text: with unescape_html "auto", no entity decoding from the line of a text's first "<" on.
_FTFY_HTML = _FTFY._replace(unescape_html=False) if _FTFY.unescape_html == "auto" else _FTFY


def fix_text(text: str) -> str:
    """``ftfy.fix_text(text, normalization="NFC")``, line by line as ftfy itself goes, without calling ftfy on
    the ASCII lines it would leave alone (most lines of most documents): the same output at a fraction of the
    time, since ftfy's per-line set-up dominated the normalize stage. The lines that need ftfy are found by a
    regex search over the whole text; the lines between them are copied as they are."""
    if len(text) > _FTFY.max_decode_length:  # ftfy cuts a line this long into pieces: let it go its own way
        return ftfy.fix_text(text, _FTFY)
    first_tag = text.find("<")
    out, pos = [], 0
    while (found := _NEEDS_FTFY.search(text, pos)) is not None:
        start = text.rfind("\n", pos, found.start()) + 1 or pos
        end = text.find("\n", found.start()) + 1 or len(text)
        config = _FTFY_HTML if 0 <= first_tag < end else _FTFY
        out += [text[pos:start], ftfy.fix_and_explain(text[start:end], config)[0]]
        pos = end
    out.append(text[pos:])
    return "".join(out)


def clean_text(text: str, fix_encoding: bool = True) -> str:
    return _tidy(repair(text, fix_encoding)[0])


def _tidy(text: str) -> str:
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    # One pass over the text, not one per line: _SPACES never matches a newline, so it is the same.
    text = _SPACES.sub(" ", text)
    if text.isascii():  # the only spaces left are single plain ones: a line strips by two replaces
        text = text.replace("\n ", "\n").replace(" \n", "\n")
    else:  # str.strip also strips Unicode spaces that _SPACES leaves (U+2028, U+202F, ...)
        text = "\n".join(line.strip() for line in text.split("\n"))
    if "\n\n\n" in text:
        text = lines.BLANK_RUNS.sub("\n\n", text)
    return text.strip()


class Normalizer(Step):
    stage = "normalize"

    def __init__(
        self,
        ftfy: bool = True,
        boilerplate_min_docs: int = lines.MIN_DOCS,
        boilerplate_min_chars: int = lines.MIN_CHARS,
        boilerplate: dict[str, set[int]] | None = None,
    ):
        self.fix_encoding = ftfy
        self.boilerplate_min_docs = boilerplate_min_docs
        self.boilerplate_min_chars = boilerplate_min_chars
        self.boilerplate = boilerplate or {}  # source -> line keys

    def process(self, doc: Document, stats: Counter) -> str | None:
        text, fixed = repair(doc.text, self.fix_encoding)
        text = _tidy(text)
        if fixed:
            stats["fixed_encoding"] += 1
        text, removed = lines.strip(text, self.boilerplate.get(doc.source, set()), self.boilerplate_min_chars)
        if removed:
            stats["boilerplate_lines"] += removed
        doc.text = text
        return None if text else "normalize:empty"
