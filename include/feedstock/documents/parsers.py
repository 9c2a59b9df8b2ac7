"""Parsers: file bytes in, a :class:`ParsedDocument` out (title, text, PDF page boundaries).

Every parser turns the document's own structure into Markdown-style headings (``# Title``, ``## Section``) in
``text``, so later stages (chunking) can split any format on the same markers. A file that cannot become text
raises :class:`Quarantined` with a machine-readable reason code:

- ``unsupported_type``: no parser for the file's suffix
- ``too_large``: over the source's ``max_file_mb``
- ``undecodable``: text whose encoding cannot be detected
- ``corrupt``: a PDF, DOCX or JSON file that does not parse (``detail`` says which)
- ``encrypted``: a password-protected PDF
- ``empty``: no text after parsing
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from typing import ClassVar


class Quarantined(Exception):
    """A file that cannot be published, with a reason code and a human detail."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class ParsedDocument:
    text: str
    title: str | None = None
    pages: list[dict[str, int]] = field(
        default_factory=list
    )  # [{page, start, end}] character offsets in text


@dataclass(frozen=True)
class ParseOptions:
    text_field: str = "text"
    title_field: str = "title"


class Parser:
    """One file format. Subclasses set ``suffixes`` and ``mime_type`` and implement :meth:`parse`."""

    suffixes: ClassVar[tuple[str, ...]] = ()
    mime_type: ClassVar[str] = "application/octet-stream"

    def parse(self, data: bytes, options: ParseOptions) -> ParsedDocument:
        raise NotImplementedError


def decode_text(data: bytes) -> str:
    """Bytes to str: BOM-marked and UTF-8 text directly, anything else through charset detection."""
    for bom, encoding in ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
        if data.startswith(bom):
            return data.decode(encoding)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise Quarantined("undecodable", "no text encoding fits the bytes")
    return str(best)


def _clean(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = re.sub(r"[ \t\f\v]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _first_heading(text: str) -> str | None:
    match = re.search(r"^#{1,6}\s+(.+)$", text, flags=re.MULTILINE)
    return match.group(1).strip() if match else None


class TextParser(Parser):
    suffixes = (".txt", ".text")
    mime_type = "text/plain"

    def parse(self, data: bytes, options: ParseOptions) -> ParsedDocument:
        text = _clean(decode_text(data))
        first_line = text.split("\n", 1)[0].strip()
        return ParsedDocument(text=text, title=first_line[:200] or None)


class MarkdownParser(Parser):
    suffixes = (".md", ".markdown")
    mime_type = "text/markdown"

    def parse(self, data: bytes, options: ParseOptions) -> ParsedDocument:
        text = decode_text(data)
        title = None
        front = re.match(r"^---\n(.*?)\n---\n", text, flags=re.DOTALL)
        if front:  # YAML front matter: keep its title, drop the block from the text
            found = re.search(r"^title:\s*['\"]?(.+?)['\"]?\s*$", front.group(1), flags=re.MULTILINE)
            title = found.group(1) if found else None
            text = text[front.end() :]
        text = _clean(text)
        return ParsedDocument(text=text, title=title or _first_heading(text))


class HtmlParser(Parser):
    suffixes = (".html", ".htm")
    mime_type = "text/html"
    _invisible = ("script", "style", "noscript", "template", "head", "svg", "iframe", "nav", "footer")
    _blocks = ("p", "div", "li", "tr", "br", "section", "article", "blockquote", "pre", "table", "ul", "ol")

    def parse(self, data: bytes, options: ParseOptions) -> ParsedDocument:
        from bs4 import BeautifulSoup

        soup = BeautifulSoup(decode_text(data), "lxml")
        title_tag = soup.find("title")
        title = title_tag.get_text(" ", strip=True) if title_tag else None
        for tag in soup(self._invisible):
            tag.decompose()
        for level in range(1, 7):
            for heading in soup.find_all(f"h{level}"):
                heading.replace_with(f"\n\n{'#' * level} {heading.get_text(' ', strip=True)}\n\n")
        for tag in soup.find_all("li"):
            tag.insert(0, "- ")
        for tag in soup.find_all(self._blocks):
            tag.append("\n")
        text = soup.get_text()
        text = "\n".join(re.sub(r"[ \t]+", " ", line).strip() for line in text.splitlines())
        text = _clean(text)
        return ParsedDocument(text=text, title=title or _first_heading(text))


class PdfParser(Parser):
    suffixes = (".pdf",)
    mime_type = "application/pdf"

    def parse(self, data: bytes, options: ParseOptions) -> ParsedDocument:
        from pypdf import PdfReader
        from pypdf.errors import FileNotDecryptedError, PdfReadError

        try:
            reader = PdfReader(io.BytesIO(data))
            if reader.is_encrypted:
                raise Quarantined("encrypted", "the PDF is password-protected")
            parts, pages, offset = [], [], 0
            for number, page in enumerate(reader.pages, start=1):
                page_text = _clean(page.extract_text() or "")
                if parts:
                    offset += 2  # the blank line that joins pages
                pages.append({"page": number, "start": offset, "end": offset + len(page_text)})
                parts.append(page_text)
                offset += len(page_text)
            metadata = reader.metadata
        except FileNotDecryptedError:
            raise Quarantined("encrypted", "the PDF is password-protected") from None
        except Quarantined:
            raise
        except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
            raise Quarantined("corrupt", f"PDF does not parse: {type(exc).__name__}: {exc}"[:300]) from None
        text = "\n\n".join(parts)
        title = (metadata.title if metadata and metadata.title else None) or (
            parts[0].split("\n", 1)[0] if parts else None
        )
        return ParsedDocument(text=text, title=title.strip() if title else None, pages=pages)


class DocxParser(Parser):
    suffixes = (".docx",)
    mime_type = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

    def parse(self, data: bytes, options: ParseOptions) -> ParsedDocument:
        import docx

        try:
            document = docx.Document(io.BytesIO(data))
        except Exception as exc:  # python-docx raises zipfile, lxml and its own errors alike
            raise Quarantined("corrupt", f"DOCX does not open: {type(exc).__name__}: {exc}"[:300]) from None
        # Style names by id, looked up once: python-docx's Paragraph.style searches the styles part on every
        # call and was 80% of parse time in benchmarks. ``_p.style`` is the paragraph's raw style id.
        names = {style.style_id: style.name or "" for style in document.styles}
        lines = []
        for paragraph in document.paragraphs:
            style = names.get(paragraph._p.style or "", "")
            text = paragraph.text.strip()
            if not text:
                continue
            level = re.match(r"Heading (\d)", style)
            if style == "Title":
                lines.append(f"# {text}")
            elif level:
                lines.append(f"{'#' * min(int(level.group(1)), 6)} {text}")
            elif style.startswith("List"):
                lines.append(f"- {text}")
            else:
                lines.append(text)
        for table in document.tables:
            for row in table.rows:
                lines.append(" | ".join(cell.text.strip() for cell in row.cells))
        text = _clean("\n\n".join(lines))
        title = document.core_properties.title or _first_heading(text)
        return ParsedDocument(text=text, title=title)


class JsonParser(Parser):
    """``.json`` (an object or a list of objects) and ``.jsonl``; the source's ``text_field`` holds the text."""

    suffixes = (".json", ".jsonl", ".ndjson")
    mime_type = "application/json"

    def parse(self, data: bytes, options: ParseOptions) -> ParsedDocument:
        raw = decode_text(data)
        try:
            if raw.lstrip().startswith(("[", "{")) and not self._is_lines(raw):
                loaded = json.loads(raw)
                records = loaded if isinstance(loaded, list) else [loaded]
            else:
                records = [json.loads(line) for line in raw.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise Quarantined("corrupt", f"JSON does not parse: {exc}") from None
        sections, title = [], None
        for record in records:
            if not isinstance(record, dict):
                continue
            body = record.get(options.text_field)
            heading = record.get(options.title_field)
            title = title or (str(heading) if heading else None)
            if body:
                sections.append(f"## {heading}\n\n{body}" if heading and len(records) > 1 else str(body))
        if records and not sections:
            raise Quarantined("empty", f"no record has the text field '{options.text_field}'")
        # A file of many records (a FAQ, say) is titled by the caller from its file name.
        return ParsedDocument(text=_clean("\n\n".join(sections)), title=title if len(records) == 1 else None)

    @staticmethod
    def _is_lines(raw: str) -> bool:
        lines = [line for line in raw.splitlines() if line.strip()]
        return len(lines) > 1 and all(
            line.lstrip().startswith("{") and line.rstrip().endswith("}") for line in lines
        )


PARSERS: tuple[Parser, ...] = (
    TextParser(),
    MarkdownParser(),
    HtmlParser(),
    PdfParser(),
    DocxParser(),
    JsonParser(),
)
_BY_SUFFIX = {suffix: parser for parser in PARSERS for suffix in parser.suffixes}


def parser_for(path: str) -> Parser:
    suffix = "." + path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    parser = _BY_SUFFIX.get(suffix)
    if parser is None:
        raise Quarantined("unsupported_type", f"no parser for '{suffix or '(no suffix)'}' files")
    return parser


def parse_document(
    path: str, data: bytes, options: ParseOptions = ParseOptions()
) -> tuple[ParsedDocument, Parser]:
    """Parse one file's bytes; raise :class:`Quarantined` when it cannot become a non-empty document."""
    parser = parser_for(path)
    parsed = parser.parse(data, options)
    if not parsed.text.strip():
        raise Quarantined("empty", "no text after parsing")
    if not parsed.title:
        stem = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        parsed.title = re.sub(r"[_-]+", " ", stem).strip().capitalize()
    return parsed, parser
