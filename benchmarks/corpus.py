"""A document corpus assembled from what this machine already has, in every supported format.

- html: the Rust book and reference shipped with the Rust toolchain (rustup docs), or any HTML under /usr/share.
- md: Markdown files installed on the machine (package READMEs, docs).
- txt: text files from /usr/share/doc and /usr/share/common-licenses.
- pdf, docx, json, jsonl: written from the Markdown and text above with fpdf2 and python-docx, so their content
  is real prose; a few real PDFs found on the machine are added.

The corpus is deterministic (sorted inputs, fixed dates) and cached under benchmarks/.cache.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache"
FORMATS = ("html", "md", "txt", "pdf", "docx", "json", "jsonl")


def _find(roots: list[str], suffixes: tuple[str, ...], min_size: int, limit: int) -> list[Path]:
    found = []
    for root in roots:
        for dirpath, _, files in sorted(os.walk(root)):
            if "/work/" in dirpath or "/.cache" in dirpath:
                continue
            for name in sorted(files):
                path = Path(dirpath) / name
                if name.lower().endswith(suffixes) and path.is_file() and path.stat().st_size >= min_size:
                    found.append(path)
                    if len(found) >= limit:
                        return found
    return found


def _texts(limit: int) -> list[str]:
    texts = []
    for path in _find(["/usr/share/doc", "/usr/share/common-licenses"], ("", ".gz"), 2000, limit * 3):
        try:
            raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
            text = raw.decode("utf-8")
        except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile):
            continue
        if text.strip():
            texts.append(text[:20000])
        if len(texts) >= limit:
            break
    return texts


def _latin1(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")


def build(per_format: int = 120) -> Path:
    """Build (once) and return the corpus folder: <cache>/corpus-<n>/<format>/..."""
    root = CACHE / f"corpus-{per_format}"
    done = CACHE / f"corpus-{per_format}.complete"
    if done.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    for fmt in FORMATS:
        (root / fmt).mkdir(parents=True)
    html = _find([os.path.expanduser("~/.rustup"), "/usr/share"], (".html",), 5000, per_format)
    md = _find(["/usr", "/opt", os.path.expanduser("~")], (".md",), 3000, per_format)
    texts = _texts(per_format * 2)
    for i, path in enumerate(html):
        shutil.copyfile(path, root / "html" / f"{i:04d}.html")
    for i, path in enumerate(md):
        shutil.copyfile(path, root / "md" / f"{i:04d}.md")
    for i, text in enumerate(texts[:per_format]):
        (root / "txt" / f"{i:04d}.txt").write_text(text)
    _write_pdfs(root / "pdf", texts, per_format)
    _write_docx(root / "docx", [p.read_text(errors="replace") for p in md] or texts, per_format)
    for i, text in enumerate(texts[:per_format]):
        (root / "json" / f"{i:04d}.json").write_text(json.dumps({"title": f"Doc {i}", "text": text}))
        records = [
            {"title": f"Part {j}", "text": part} for j, part in enumerate(text.split("\n\n")[:40]) if part
        ]
        (root / "jsonl" / f"{i:04d}.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    done.write_text("ok")
    return root


def _write_pdfs(folder: Path, texts: list[str], count: int) -> None:
    from fpdf import FPDF

    for i in range(count):
        text = texts[i % len(texts)][:6000]
        pdf = FPDF()
        pdf.set_creation_date(datetime(2026, 1, 1, tzinfo=UTC))
        pdf.set_title(f"Document {i}")
        pdf.set_font("helvetica", size=10)
        for page_text in (text[:3000], text[3000:6000]):
            if page_text.strip():
                pdf.add_page()
                pdf.multi_cell(0, 5, _latin1(page_text))
        pdf.output(str(folder / f"{i:04d}.pdf"))


def _write_docx(folder: Path, texts: list[str], count: int) -> None:
    import docx

    for i in range(count):
        document = docx.Document()
        document.core_properties.title = f"Document {i}"
        document.add_heading(f"Document {i}", level=1)
        for paragraph in texts[i % len(texts)][:8000].split("\n\n"):
            clean = "".join(ch for ch in paragraph if ch.isprintable() or ch in "\n\t")
            if clean.strip():
                if clean.startswith("#"):
                    document.add_heading(clean.lstrip("# ")[:200], level=2)
                else:
                    document.add_paragraph(clean)
        document.save(folder / f"{i:04d}.docx")


def size_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


if __name__ == "__main__":
    corpus = build()
    for fmt in FORMATS:
        files = list((corpus / fmt).iterdir())
        print(fmt, len(files), size_bytes(corpus / fmt))
