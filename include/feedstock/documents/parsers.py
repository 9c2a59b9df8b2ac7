"""Parsers: file bytes in, a :class:`ParsedDocument` out (title, text, PDF page boundaries).

Every parser turns the document's own structure into Markdown-style headings (``# Title``, ``## Section``) in
``text``, so later stages (chunking) can split any format on the same markers. A file that cannot become text
raises :class:`Quarantined` with a machine-readable reason code:

- ``unsupported_type``: no parser for the file's suffix
- ``too_large``: over the source's ``max_file_mb``, or over a parse bound of :class:`ParseLimits`: a DOCX whose
  contents expand past ``expanded_mb`` or by more than ``expansion_ratio`` (a zip bomb), HTML nested deeper than
  ``html_depth``, or a parse that needs more than the worker's ``memory_mb``
- ``timeout``: parsing took longer than the time :class:`ParseLimits` allows for the file's size
- ``undecodable``: text whose encoding cannot be detected
- ``corrupt``: a PDF, DOCX or JSON file that does not parse (``detail`` says which), or one that crashes the
  parse worker
- ``encrypted``: a password-protected PDF
- ``empty``: no text after parsing

A JSON Lines file with some lines that do not parse still becomes a document, from its good lines; each bad
line is reported in :attr:`ParsedDocument.bad_lines`, and ingestion quarantines it with reason ``invalid_json``.

Limits on size, nesting and expansion are checked by the parsers themselves (:func:`parse_document`); time and
memory can only be bounded from outside, so ingestion parses in a :class:`ParseWorker` child process.
"""

from __future__ import annotations

import io
import json
import re
import signal
import socket
import subprocess
import sys
import warnings
import zipfile
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, ClassVar

MB = 1024 * 1024
BAD_LINE = "invalid_json"  # the quarantine reason of a JSON Lines line left out of its document


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
    bad_lines: list[tuple[int, str]] = field(
        default_factory=list
    )  # JSON Lines: (line number, why) of each line left out of text
    extraction: str | None = None  # HTML: "content" (the chrome removed) or "whole_page" (the fallback)


@dataclass(frozen=True)
class ParseLimits:
    """Bounds on parsing one file; a file over any of them is quarantined instead of stalling its batch.

    :param expanded_mb: the most a zip-based file (DOCX) may hold uncompressed
    :param expansion_ratio: the most a zip member over 1 MB may inflate (Apache POI's zip-bomb rule, 100x)
    :param html_depth: the deepest element nesting of an HTML file (Chromium's parser stops at 512 too)
    :param timeout_s: parse time allowed for any file, plus ``timeout_s_per_mb`` for each MB of it
    :param memory_mb: the address space of the :class:`ParseWorker` process
    """

    expanded_mb: float = 500.0
    expansion_ratio: float = 100.0
    html_depth: int = 512
    timeout_s: float = 30.0
    timeout_s_per_mb: float = 10.0
    memory_mb: int = 2048

    @classmethod
    def for_max_file_mb(cls, max_file_mb: float) -> ParseLimits:
        """The limits for a source whose files may be ``max_file_mb`` large: 10x that expanded, 40x in memory."""
        return cls(expanded_mb=10 * max_file_mb, memory_mb=max(cls.memory_mb, int(40 * max_file_mb)))

    def timeout_for(self, size_bytes: int) -> float:
        return self.timeout_s + self.timeout_s_per_mb * size_bytes / MB


# Part of every source's parse signature (feedstock.documents.ingest.parse_signature): bump it when a parser's
# output changes, and every source's files are parsed again on its next run (only changed texts become versions).
PARSERS_VERSION = 2  # 2: HTML pages with little content keep it (a main landmark) or their listings


@dataclass(frozen=True)
class ParseOptions:
    text_field: str = "text"
    title_field: str = "title"
    limits: ParseLimits = ParseLimits()
    html_content: bool = True  # False: the whole page as text, as before chrome removal (for comparisons)


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
    """The page's content as Markdown-style text, without the site's chrome.

    Documentation sites (Sphinx, MkDocs, Publican/DocBook, Docusaurus, Confluence exports) wrap each page in
    navigation, sidebars, breadcrumbs, previous/next links, tables of contents and footers. They are removed by
    what they are, not by where they sit: HTML5's own chrome elements (``nav``, ``aside``, and ``header`` or
    ``footer`` outside the article), ARIA landmark roles that are not content, elements hidden from the reader,
    and the class or id names the common generators give them (:data:`CHROME_NAMES`). A page with a ``main`` element (or ``role="main"``) keeps
    only it. Permalink anchors (``¶``) go, and heading text loses a trailing permalink sign.

    A page with ``main`` keeps it however little it holds. A page without it that would keep less than
    :attr:`MIN_SHARE` of its text keeps its page listings (:data:`LISTING_NAMES`: a book's front page is its table
    of contents); when even that is too little, or nothing is left, the whole page is used instead (a page built
    unusually, not a documentation page), and :attr:`ParsedDocument.extraction` says so.
    """

    suffixes = (".html", ".htm")
    mime_type = "text/html"
    MIN_SHARE = 0.3
    _invisible = ("script", "style", "noscript", "template", "head", "svg", "iframe")
    _blocks = ("p", "div", "li", "tr", "br", "section", "article", "blockquote", "pre", "table", "ul", "ol")
    _chrome_roles = {"navigation", "banner", "contentinfo", "complementary", "search"}
    # Class and id words of chrome in the generators above (whole words of the attribute, lowercased).
    CHROME_NAMES = frozenset(
        (
            "docnav navheader navfooter banner breadcrumb breadcrumbs sphinxsidebar sphinxsidebarwrapper related "
            "headerlink hash-link toc toctree-wrapper md-sidebar md-header md-footer md-tabs pagination-nav "
            "theme-doc-toc-desktop theme-doc-footer skip-link navigation sidebar footer edit-this-page consent "
            "cookie-banner cookie-consent"
        ).split()
    )
    # Of those, the ones that list the site's pages: the content of an index page, which a page without a main
    # landmark keeps when dropping them would leave too little (a book's front page is its table of contents).
    LISTING_NAMES = frozenset(
        "toc toctree-wrapper sphinxsidebar sphinxsidebarwrapper md-sidebar sidebar".split()
    )
    _PERMALINK = re.compile(r"\s*[¶§🔗#]+$")

    def parse(self, data: bytes, options: ParseOptions) -> ParsedDocument:
        from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning

        markup = decode_text(data)
        _check_html_depth(markup, options.limits.html_depth)
        # XHTML (Sphinx, DocBook exports) parses well as HTML: no warning per file.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
            soup = BeautifulSoup(markup, "lxml")
        title_tag = soup.find("title")
        title = title_tag.get_text(" ", strip=True) if title_tag else None
        for tag in soup(self._invisible):
            tag.decompose()
        if not options.html_content:  # the parser before chrome removal: nav and footer only, headings as is
            for tag in soup(("nav", "footer")):
                tag.decompose()
            return ParsedDocument(
                text=(text := self._text(soup, permalinks=True)), title=title or _first_heading(text)
            )
        markup = str(soup)
        whole = self._text(BeautifulSoup(markup, "lxml"))
        landmark = soup.find("main") or soup.find(attrs={"role": "main"})
        text = self._text(self._content(soup, landmark))
        extraction = "content"

        # A page that marks its content is trusted to, however little it holds (a chapter's index page is an
        # introduction and a table of contents); a page without the mark keeps its page listings when too little
        # is left without them, and falls back to the whole page when even that is too little.
        def too_little(text: str) -> bool:
            return landmark is None and len(text) < self.MIN_SHARE * len(whole)

        if too_little(text):
            text = self._text(self._content(BeautifulSoup(markup, "lxml"), None, listings=True))
        if not text.strip() or too_little(text):
            text, extraction = whole, "whole_page"
        return ParsedDocument(text=text, title=title or _first_heading(text), extraction=extraction)

    def _content(self, soup: Any, main: Any, listings: bool = False) -> Any:
        root = main if main is not None else soup
        for tag in root.find_all(True):
            if tag.decomposed:
                continue
            if self._is_chrome(tag, inside_content=main is not None, listings=listings):
                tag.decompose()
        return root

    def _is_chrome(self, tag: Any, inside_content: bool, listings: bool = False) -> bool:
        if tag.name in ("nav", "aside"):
            return True
        if tag.name in ("header", "footer") and not (inside_content or tag.find_parent(("article", "main"))):
            return True
        attrs = tag.attrs or {}
        style = str(attrs.get("style", "")).replace(" ", "").lower()
        if "hidden" in attrs or attrs.get("aria-hidden") == "true" or "display:none" in style:
            return True  # not shown to a reader (a consent banner waiting for its script, icons)
        if str(attrs.get("role", "")).lower() in self._chrome_roles:
            return True
        names = attrs.get("class") or []
        names = [names] if isinstance(names, str) else list(names)
        if attrs.get("id"):
            names.append(str(attrs["id"]))
        names = {str(name).lower() for name in names}
        if listings and names & self.LISTING_NAMES:
            return False
        return bool(names & self.CHROME_NAMES)

    def _text(self, root: Any, permalinks: bool = False) -> str:
        for level in range(1, 7):
            for heading in root.find_all(f"h{level}"):
                words = heading.get_text(" ", strip=True)
                words = words if permalinks else self._PERMALINK.sub("", words)
                heading.replace_with(f"\n\n{'#' * level} {words}\n\n")
        for tag in root.find_all("li"):
            tag.insert(0, "- ")
        for tag in root.find_all(self._blocks):
            tag.append("\n")
        text = root.get_text()
        text = "\n".join(re.sub(r"[ \t]+", " ", line).strip() for line in text.splitlines())
        return _clean(text)


class _TooDeep(Exception):
    pass


class _DepthGauge:
    """An lxml parser target that only follows the element depth, and stops the parse past ``limit``."""

    def __init__(self, limit: int):
        self.limit, self.depth = limit, 0

    def start(self, tag: str, attrib: Any) -> None:
        self.depth += 1
        if self.depth > self.limit:
            raise _TooDeep

    def end(self, tag: str) -> None:
        self.depth -= 1

    def close(self) -> None:
        return None


def _check_html_depth(markup: str, limit: int) -> None:
    """Refuse HTML nested deeper than ``limit``, before BeautifulSoup builds it.

    BeautifulSoup's tree edits cost time in proportion to depth per element, so 100k nested ``<div>`` took 540 s.
    The gauge runs the same libxml2 HTML parser that BeautifulSoup's ``lxml`` builder uses, without a tree: about
    0.1 s for that file.
    """
    from lxml import etree

    parser = etree.HTMLParser(target=_DepthGauge(limit), recover=True)
    try:
        parser.feed(markup)
        parser.close()
    except _TooDeep:
        raise Quarantined("too_large", f"HTML nests elements more than {limit} deep") from None
    except etree.LxmlError:
        pass  # BeautifulSoup recovers from what libxml2 reports; depth is all that is checked here


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

        _check_expansion(data, options.limits)
        try:
            document = docx.Document(io.BytesIO(data))
        except MemoryError:
            raise
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


def _check_expansion(data: bytes, limits: ParseLimits) -> None:
    """Refuse a zip whose members, by their own headers, expand too far; nothing is decompressed here.

    The header sizes cannot lie to a reader: :mod:`zipfile` stops a member at its stated size (and fails its
    CRC check), so python-docx never inflates more than this checked.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError):
        return  # not a zip: the parser itself reports it as corrupt
    expanded = sum(m.file_size for m in members)
    if expanded > limits.expanded_mb * MB:
        raise Quarantined(
            "too_large",
            f"expands to {expanded / MB:.0f} MB uncompressed, over the {limits.expanded_mb:g} MB limit",
        )
    for member in members:
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > MB and ratio > limits.expansion_ratio:
            raise Quarantined(
                "too_large",
                f"zip bomb: {member.filename[:80]} inflates {ratio:.0f}x to {member.file_size / MB:.0f} MB "
                f"(limit {limits.expansion_ratio:g}x)",
            )


class JsonParser(Parser):
    """``.json``: an object or a list of objects (or an object per line); ``text_field`` holds the text."""

    suffixes = (".json",)
    mime_type = "application/json"
    one_per_line = False

    def parse(self, data: bytes, options: ParseOptions) -> ParsedDocument:
        raw = decode_text(data)
        bad_lines: list[tuple[int, str]] = []
        if self.one_per_line or self._is_lines(raw):
            records, bad_lines = _json_lines(raw)
            if bad_lines and not records:  # no line parses: one JSON document after all, or corrupt
                number, why = bad_lines[0]
                try:
                    records, bad_lines = _json_document(raw), []
                except Quarantined:
                    raise Quarantined("corrupt", f"no line is JSON: line {number}: {why}") from None
        else:
            records = _json_document(raw)
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
        return ParsedDocument(
            text=_clean("\n\n".join(sections)),
            title=title if len(records) == 1 else None,
            bad_lines=bad_lines,
        )

    @staticmethod
    def _is_lines(raw: str) -> bool:
        lines = [line for line in raw.splitlines() if line.strip()]
        return len(lines) > 1 and all(
            line.lstrip().startswith("{") and line.rstrip().endswith("}") for line in lines
        )


class JsonLinesParser(JsonParser):
    """``.jsonl``: one JSON object per line. A line that does not parse is left out, not the whole file."""

    suffixes = (".jsonl", ".ndjson")
    one_per_line = True


def _json_document(raw: str) -> list[Any]:
    """The records of a file that is one JSON value: an object, or a list of them."""
    if not raw.strip():
        return []
    try:
        loaded = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise Quarantined("corrupt", f"JSON does not parse: {exc}") from None
    return loaded if isinstance(loaded, list) else [loaded]


def _json_lines(raw: str) -> tuple[list[Any], list[tuple[int, str]]]:
    """The records of JSON Lines, and the (line number, error) of each line that does not parse.

    Lines end at a newline only: ``str.splitlines`` would also split at U+2028 and other separators that JSON
    strings may hold as they are.
    """
    records, bad = [], []
    for number, line in enumerate(raw.split("\n"), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                bad.append((number, f"{exc.msg} (column {exc.colno})"))
    return records, bad


PARSERS: tuple[Parser, ...] = (
    TextParser(),
    MarkdownParser(),
    HtmlParser(),
    PdfParser(),
    DocxParser(),
    JsonParser(),
    JsonLinesParser(),
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


class ParseWorker:
    """Parses files in a child process, one at a time, within :class:`ParseLimits`' time and memory.

    One child serves a whole batch: starting it costs a fraction of a second, and a small file then costs a
    round trip of its bytes. A file that runs out of time has the child killed, and the next file starts a fresh
    one. Use it as a context manager (or call :meth:`close`).
    """

    def __init__(self) -> None:
        self._child: subprocess.Popen | None = None
        self._channel: Connection | None = None
        self._memory_mb = 0

    def __enter__(self) -> ParseWorker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def parse(
        self, path: str, data: bytes, options: ParseOptions = ParseOptions()
    ) -> tuple[ParsedDocument, Parser]:
        """:func:`parse_document` in the child; raise :class:`Quarantined` also for ``timeout`` and memory."""
        parser = parser_for(path)  # an unsupported type needs no child
        limits = options.limits
        channel = self._channel_for(limits.memory_mb)
        try:
            channel.send((path, data, options))
        except OSError:  # the child is gone (killed from outside): one fresh start
            self.close()
            channel = self._channel_for(limits.memory_mb)
            channel.send((path, data, options))
        timeout = limits.timeout_for(len(data))
        if not channel.poll(timeout):
            self.close(kill=True)
            raise Quarantined("timeout", f"parsing took longer than the {timeout:.1f} s allowed for its size")
        try:
            outcome, *detail = channel.recv()
        except (EOFError, OSError):
            raise self._crashed() from None
        if outcome == "exhausted":
            self.close()  # the child exits after it
            raise Quarantined(
                "too_large", f"parsing it needs more than the {limits.memory_mb} MB memory limit"
            )
        if outcome == "failed":
            error = RuntimeError(f"parsing {path} failed in the parse worker: {detail[0]}")
            error.add_note(detail[1])  # the child's traceback
            raise error
        if outcome == "quarantined":
            raise Quarantined(*detail)
        return detail[0], parser

    def close(self, kill: bool = False) -> None:
        """Stop the child (``kill``: at once, mid-parse); the next :meth:`parse` starts another."""
        if self._child is None:
            return
        self._channel.close()  # an idle child reads the end of its input and exits
        try:
            if kill:
                self._child.kill()
            self._child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.wait()
        self._child = self._channel = None

    def _channel_for(self, memory_mb: int) -> Connection:
        if self._child is not None and (self._memory_mb != memory_mb or self._child.poll() is not None):
            self.close()
        if self._child is None:
            ours, theirs = socket.socketpair()
            package_root = str(Path(__file__).resolve().parents[2])  # feedstock importable however we were
            command = (
                f"import sys; sys.path.append({package_root!r}); "
                f"from feedstock.documents.parsers import _serve; _serve({theirs.fileno()}, {memory_mb})"
            )
            self._child = subprocess.Popen(
                [sys.executable, "-c", command], pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL
            )
            theirs.close()
            self._channel, self._memory_mb = Connection(ours.detach()), memory_mb
        return self._channel

    def _crashed(self) -> Quarantined:
        try:
            code = self._child.wait(timeout=5)  # its end of the channel closed: it has exited, or is exiting
        except subprocess.TimeoutExpired:
            code = 0
        self.close(kill=True)
        if code == -signal.SIGKILL:  # the kernel's out-of-memory killer, most likely
            return Quarantined("too_large", "the parse worker was killed while parsing it (out of memory?)")
        name = signal.Signals(-code).name if code < 0 else f"exit code {code}"
        return Quarantined("corrupt", f"the parse worker crashed on it ({name})")


def _serve(fd: int, memory_mb: int) -> None:
    """The parse worker's loop, in the child: (path, bytes, options) in, a document or a reason out."""
    import resource
    import traceback

    try:
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb * MB, memory_mb * MB))
    except (ValueError, OSError):  # a platform without an address-space limit: time is still bounded
        pass
    channel = Connection(fd)
    while True:
        try:
            path, data, options = channel.recv()
        except EOFError:
            return
        try:
            reply: tuple = ("parsed", parse_document(path, data, options)[0])
        except MemoryError:
            reply = ("exhausted",)
        except RecursionError:
            reply = ("quarantined", "too_large", "it nests too deep to parse")
        except Quarantined as bad:
            reply = ("quarantined", bad.reason, bad.detail)
        except Exception as exc:  # a parser bug: the batch fails with it, as it would in process
            reply = ("failed", f"{type(exc).__name__}: {exc}"[:300], traceback.format_exc())
        if reply[0] != "parsed" and _peak_mb() >= 0.9 * memory_mb:
            # libxml2 and other C code report a failed allocation as an error of their own ("XMLSyntaxError:
            # unknown error"); an address space that reached the limit says what it was.
            reply = ("exhausted",)
        channel.send(reply)
        if reply[0] == "exhausted":
            return  # the next file gets a fresh process: its heap and peak start over


def _peak_mb() -> float:
    """This process's peak address space (what ``RLIMIT_AS`` bounds) in MB; the peak resident size elsewhere."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmPeak:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
