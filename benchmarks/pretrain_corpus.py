"""Real English text from this machine, for the pretraining benchmarks, with planted duplicates.

Sources, all local (nothing downloads): package docs and licenses under the project venv's site-packages and
under /root/.pyenv (README, .md, .rst, .txt, LICENSE, dist-info METADATA), the docstrings of Python files in
both, /usr/share/doc (.gz decompressed), and the man pages of /usr/share/man sections 1, 5 and 8 (troff
stripped; only a sample of the Google Cloud SDK's generated pages).

Each text is split into documents of 1-8 KB (groups of whole paragraphs, sizes drawn per document); the
documents are deduplicated exactly (lowercased, whitespace collapsed) and only prose-like ones are kept: at
least 100 words with letters, making up at least half of the whitespace-separated tokens (no data tables).
The base set is built once, shuffled with a fixed seed and cached in ``benchmarks/.cache/pretrain``.

- :func:`base_documents`: the first ``n`` base documents, ``{"id", "text"}``.
- :func:`planted`: base documents free of natural near-duplicates (exact word 3-gram Jaccard below 0.2 to
  every other one), plus near-duplicates with 5% and 10% of their words edited and exact copies, with the
  ground truth (which ids are duplicates, of which original).
- :func:`write_jsonl_corpus`: a multi-GB JSONL corpus for end-to-end runs: every base document once, then
  repetitions that each differ by a 30% word edit (so fuzzy dedup keeps them), with some exact copies and
  some 5%-edited near-duplicates mixed in.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import re
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache" / "pretrain"
VERSION = 1  # bump to rebuild the cached base set
SITE_PACKAGES = Path(__file__).resolve().parents[1] / ".venv" / "lib" / "python3.11" / "site-packages"
MIN_DOC_BYTES, MAX_DOC_BYTES, MIN_WORDS = 1_000, 8_000, 100
# Per-source budgets (bytes of raw text read), so no single source dominates and the build stays quick.
BUDGETS = {"packages": 25e6, "pyenv": 15e6, "docstrings": 25e6, "usr-share-doc": 30e6, "man": 25e6}
DOC_SUFFIXES = (".md", ".rst", ".txt")
DOC_NAMES = ("readme", "license", "licence", "copying", "notice", "authors", "changes", "history", "metadata")

_WORD = re.compile(r"\w+")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f]*\n")
_WHITESPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_DOCSTRING = re.compile(r'^[ \t]*[rRuU]?("""|\'\'\')(.*?)\1', re.DOTALL | re.MULTILINE)
_BACKSPACE = re.compile(r".\x08")


# ---- gathering ---------------------------------------------------------------------------------------------


def _walk(root: Path, skip: tuple[str, ...] = ()) -> Iterator[Path]:
    for dirpath, dirnames, files in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip and not d.startswith("."))
        for name in sorted(files):
            yield Path(dirpath) / name


def _read(path: Path) -> str | None:
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        return raw.decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile):
        return None


def _is_doc_file(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(DOC_SUFFIXES) or name.startswith(DOC_NAMES)


def _package_docs(root: Path, skip: tuple[str, ...] = ()) -> Iterator[str]:
    for path in _walk(root, skip):
        if _is_doc_file(path) and path.is_file() and 2_000 <= path.stat().st_size <= 2_000_000:
            text = _read(path)
            if text:
                yield text


def _docstrings(root: Path, skip: tuple[str, ...] = ()) -> Iterator[str]:
    for path in _walk(root, skip):
        if path.suffix != ".py" or not path.is_file() or path.stat().st_size < 4_000:
            continue
        source = _read(path)
        if not source:
            continue
        parts = [textwrap.dedent(m.group(2)).strip() for m in _DOCSTRING.finditer(source)]
        parts = [p for p in parts if len(p) >= 200 and " the " in p]
        if parts:
            yield "\n\n".join(parts)


def _usr_share_doc() -> Iterator[str]:
    for path in _walk(Path("/usr/share/doc")):
        name = path.name.lower()
        if name.endswith((".html", ".htm", ".css", ".js", ".png", ".svg", ".pdf", ".json")):
            continue
        if path.is_file() and not path.is_symlink() and path.stat().st_size >= 1_000:
            text = _read(path)
            if text and "\x00" not in text:
                yield text


_TROFF_FONT = re.compile(r"\\f(?:\[[^\]]*\]|\(..|.)")
_TROFF_SPECIAL = re.compile(r"\\\((..)|\\\[([^\]]*)\]")
_TROFF_STRING = re.compile(r"\\\*(?:\(..|\[[^\]]*\]|.)")
_TROFF_SIZE = re.compile(r"\\s[+-]?\d+")
_TROFF_OTHER = re.compile(r"\\[&|^%:cdu0/,!]|\\[hvwoznkNxXlL]'[^']*'")
_SPECIALS = {
    "em": "—",
    "en": "–",
    "hy": "-",
    "bu": "•",
    "aq": "'",
    "dq": '"',
    "lq": "“",
    "rq": "”",
    "co": "©",
}
_PARAGRAPH_MACROS = {"PP", "LP", "P", "SH", "SS", "TP", "IP", "HP", "Sh", "Ss", "Pp", "sp", "Bl", "It"}
_TEXT_MACROS = {"B", "I", "BR", "RB", "IR", "RI", "BI", "IB", "SM", "SB", "SH", "SS", "Nm", "Nd", "Ar", "Fl"}


def strip_troff(source: str) -> str:
    """The prose of a man page: macros dropped (their text arguments kept), escapes resolved or removed."""
    lines: list[str] = []
    for line in source.splitlines():
        if line.startswith(('.\\"', "'\\\"", '\\"')):
            continue
        if line.startswith((".", "'")):
            macro, _, rest = line[1:].strip().partition(" ")
            if macro in _PARAGRAPH_MACROS:
                lines.append("")
            if macro in _TEXT_MACROS and rest:
                line = rest.replace('"', "")
            else:
                continue
        line = _TROFF_FONT.sub("", line)
        line = _TROFF_SPECIAL.sub(lambda m: _SPECIALS.get(m.group(1) or m.group(2) or "", ""), line)
        line = _TROFF_STRING.sub("", _TROFF_SIZE.sub("", _TROFF_OTHER.sub("", line)))
        line = line.replace("\\-", "-").replace("\\e", "\\").replace("\\ ", " ").replace("\\~", " ")
        lines.append(line)
    return "\n".join(lines)


def _man_pages() -> Iterator[str]:
    """Sections 1, 5 and 8. The Google Cloud SDK's ~17k generated pages would swamp the rest (and its alpha
    and beta pages near-duplicate the GA ones): only every 20th GA gcloud page is taken."""
    gcloud = 0
    for section in ("man1", "man5", "man8"):
        for path in _walk(Path("/usr/share/man") / section):
            if not path.name.endswith(".gz") or not path.is_file() or path.is_symlink():
                continue
            if path.name.startswith("gcloud"):
                if path.name.startswith(("gcloud_alpha", "gcloud_beta")):
                    continue
                gcloud += 1
                if gcloud % 20:
                    continue
            text = _read(path)
            if text and not text.lstrip().startswith(".so "):
                yield strip_troff(text)


def _sources() -> dict[str, Iterator[str]]:
    pyenv = Path("/root/.pyenv")
    return {
        "packages": _package_docs(SITE_PACKAGES),
        "pyenv": _package_docs(pyenv, skip=("site-packages", "test", "tests")),
        "docstrings": _interleave(_docstrings(SITE_PACKAGES), _docstrings(pyenv, skip=("test", "tests"))),
        "usr-share-doc": _usr_share_doc(),
        "man": _man_pages(),
    }


def _interleave(*iterators: Iterator[str]) -> Iterator[str]:
    active = list(iterators)
    while active:
        for it in list(active):
            try:
                yield next(it)
            except StopIteration:
                active.remove(it)


# ---- splitting and the base set ----------------------------------------------------------------------------


def _clean(text: str) -> str:
    text = _BACKSPACE.sub("", text.replace("\r\n", "\n"))
    return _CONTROL.sub("", text)


def split_documents(text: str, rng: random.Random) -> list[str]:
    """Groups of whole paragraphs of MIN_DOC_BYTES..MAX_DOC_BYTES, each group's target size drawn at
    random."""
    paragraphs: list[str] = []
    for paragraph in _PARAGRAPH_BREAK.split(_clean(text)):
        paragraph = paragraph.strip("\n").rstrip()
        if not paragraph.strip():
            continue
        while len(paragraph.encode()) > MAX_DOC_BYTES:  # one huge paragraph: cut at line boundaries
            cut = paragraph.rfind("\n", 0, MAX_DOC_BYTES // 2)
            cut = cut if cut > 0 else MAX_DOC_BYTES // 2
            paragraphs.append(paragraph[:cut])
            paragraph = paragraph[cut:].lstrip("\n")
        paragraphs.append(paragraph)
    docs, current, size = [], [], 0
    target = rng.randint(MIN_DOC_BYTES, MAX_DOC_BYTES)
    for paragraph in paragraphs:
        n = len(paragraph.encode()) + 2
        if current and size + n > MAX_DOC_BYTES:
            if size >= MIN_DOC_BYTES:
                docs.append("\n\n".join(current))
            current, size = [], 0
        current.append(paragraph)
        size += n
        if size >= target:
            docs.append("\n\n".join(current))
            current, size = [], 0
            target = rng.randint(MIN_DOC_BYTES, MAX_DOC_BYTES)
    if current and size >= MIN_DOC_BYTES:
        docs.append("\n\n".join(current))
    return docs


_LETTER_WORD = re.compile(r"[^\W\d_]{2,}")


def _prose_like(doc: str) -> bool:
    """At least MIN_WORDS words with letters, and most whitespace-separated tokens hold one (no data
    tables)."""
    lettered = len(_LETTER_WORD.findall(doc))
    return lettered >= MIN_WORDS and lettered >= 0.5 * len(doc.split())


def _normalized_key(text: str) -> bytes:
    return hashlib.blake2b(_WHITESPACE.sub(" ", text.lower()).strip().encode(), digest_size=16).digest()


def _build_base() -> list[dict]:
    rng = random.Random(20240501)
    seen: set[bytes] = set()
    docs: list[dict] = []
    for source, texts in _sources().items():
        budget = BUDGETS[source]
        for text in texts:
            if budget <= 0:
                break
            budget -= len(text)
            for doc in split_documents(text, rng):
                key = _normalized_key(doc)
                if key in seen or not _prose_like(doc):
                    continue
                seen.add(key)
                docs.append({"source": source, "text": doc})
    random.Random(7).shuffle(docs)
    return [{"id": f"b{i:06d}", **doc} for i, doc in enumerate(docs)]


def base_path() -> Path:
    return CACHE / f"base-v{VERSION}.jsonl"


_BASE: list[dict] | None = None


def _base() -> list[dict]:
    global _BASE
    if _BASE is None:
        path = base_path()
        if not path.exists():
            CACHE.mkdir(parents=True, exist_ok=True)
            docs = _build_base()
            tmp = path.with_suffix(".tmp")
            with tmp.open("w") as handle:
                for doc in docs:
                    handle.write(json.dumps(doc, ensure_ascii=False) + "\n")
            tmp.rename(path)
        with path.open() as handle:
            _BASE = [json.loads(line) for line in handle]
    return _BASE


def base_documents(n: int | None = None) -> list[dict]:
    """The first ``n`` (default: all) base documents, ``{"id", "source", "text"}``, in a fixed shuffled
    order."""
    docs = _base()
    return [dict(d) for d in (docs if n is None else docs[:n])]


def base_stats() -> dict:
    docs = _base()
    by_source: dict[str, int] = {}
    for d in docs:
        by_source[d["source"]] = by_source.get(d["source"], 0) + 1
    return {
        "documents": len(docs),
        "megabytes": round(sum(len(d["text"].encode()) for d in docs) / 1e6, 1),
        "by_source": by_source,
    }


# ---- edits and planted duplicates --------------------------------------------------------------------------


_TOKENS = re.compile(r"\S+|\s+")


def edit_words(text: str, rate: float, rng: random.Random, vocabulary: list[str]) -> str:
    """Edit ``rate`` of the words at random positions: each edit substitutes a random vocabulary word,
    inserts one after the word, or deletes the word (equally likely). Whitespace and layout are kept."""
    tokens = _TOKENS.findall(text)
    positions = [i for i, t in enumerate(tokens) if not t.isspace()]
    n_edits = max(1, round(rate * len(positions)))
    for i in rng.sample(positions, min(n_edits, len(positions))):
        kind = rng.randrange(3)
        if kind == 0:
            tokens[i] = rng.choice(vocabulary)
        elif kind == 1:
            tokens[i] = f"{tokens[i]} {rng.choice(vocabulary)}"
        else:
            tokens[i] = ""
    return "".join(tokens)


def _vocabulary(docs: list[dict], size: int = 20_000) -> list[str]:
    words: dict[str, None] = {}
    for doc in docs:
        for word in doc["text"].split():
            if word.isalpha() and len(word) > 2:
                words.setdefault(word.lower())
        if len(words) >= size:
            break
    return sorted(words)


def shingle_sets(texts: list[str], k: int = 3) -> list[set[int]]:
    sets = []
    for text in texts:
        words = _WORD.findall(text.lower())
        grams = zip(*(words[i:] for i in range(k)), strict=False) if len(words) >= k else [tuple(words)]
        sets.append({hash(g) for g in grams})
    return sets


def natural_near_duplicates(texts: list[str], threshold: float = 0.2) -> set[int]:
    """Indexes of documents whose exact word 3-gram Jaccard with an earlier one reaches ``threshold``."""
    import numpy as np
    from scipy.sparse import csr_matrix

    sets = shingle_sets(texts)
    vocab: dict[int, int] = {}
    indptr, indices = [0], []
    for s in sets:
        indices.extend(vocab.setdefault(h, len(vocab)) for h in s)
        indptr.append(len(indices))
    matrix = csr_matrix(
        (np.ones(len(indices), dtype=np.int32), np.array(indices), np.array(indptr)),
        shape=(len(sets), len(vocab)),
    )
    sizes = np.diff(matrix.indptr)
    flagged: set[int] = set()
    for start in range(0, len(sets), 512):
        block = (matrix[start : start + 512] @ matrix.T).toarray()
        for row in range(block.shape[0]):
            i = start + row
            inter = block[row, :i]
            union = sizes[i] + sizes[:i] - inter
            jaccard = np.divide(inter, union, out=np.zeros(i), where=union > 0)
            # only earlier documents that are themselves kept count: drop the later one of each pair
            hits = np.nonzero(jaccard >= threshold)[0]
            if any(int(j) not in flagged for j in hits):
                flagged.add(i)
    return flagged


@dataclass
class Planted:
    docs: list[dict]  # {"id", "text"}: the originals first (in id order), then every duplicate
    truth: dict[str, set[str]]  # category -> ids of the duplicates that should be dropped
    original_of: dict[str, str]  # duplicate id -> its original's id
    skipped_natural: int = 0  # base candidates left out because they near-duplicate another base doc
    categories: dict[str, str] = field(default_factory=dict)  # original id -> its duplicates' category


RATES = {"near_5pct": 0.05, "near_10pct": 0.10, "exact": 0.0}


def planted(
    n_base: int, seed: int = 0, shares: dict[str, float] | None = None, jaccard_limit: float = 0.2
) -> Planted:
    """``n_base`` originals (no two with a word 3-gram Jaccard of ``jaccard_limit`` or more) and one duplicate
    for a share of them: by default 20% get a 5%-edited copy, 20% a 10%-edited copy, 10% an exact copy.

    Duplicate ids sort after every original's (``b...`` < ``d...``) and follow them in ``docs``, so a
    deduplicator that keeps the first or the smallest id of a cluster keeps the original.
    """
    shares = shares or {"near_5pct": 0.2, "near_10pct": 0.2, "exact": 0.1}
    pool = base_documents(int(n_base * 1.5) + 200)
    flagged = natural_near_duplicates([d["text"] for d in pool], jaccard_limit)
    originals = [d for i, d in enumerate(pool) if i not in flagged][:n_base]
    if len(originals) < n_base:
        raise ValueError(f"only {len(originals)} base documents without natural near-duplicates")
    rng = random.Random(seed)
    vocabulary = _vocabulary(pool)
    order = list(range(n_base))
    rng.shuffle(order)
    truth: dict[str, set[str]] = {c: set() for c in RATES}
    original_of: dict[str, str] = {}
    categories: dict[str, str] = {}
    duplicates: list[dict] = []
    start = 0
    for category, share in shares.items():
        for i in order[start : start + round(share * n_base)]:
            original = originals[i]
            dup_id = f"d-{category}-{original['id']}"
            rate = RATES[category]
            text = original["text"] if rate == 0 else edit_words(original["text"], rate, rng, vocabulary)
            duplicates.append({"id": dup_id, "text": text})
            truth[category].add(dup_id)
            original_of[dup_id] = original["id"]
            categories[original["id"]] = category
        start += round(share * n_base)
    duplicates.sort(key=lambda d: d["id"])
    docs = [{"id": d["id"], "text": d["text"]} for d in sorted(originals, key=lambda d: d["id"])] + duplicates
    return Planted(docs, truth, original_of, len(flagged), categories)


# ---- the big end-to-end corpus -----------------------------------------------------------------------------


def write_jsonl_corpus(
    path: str | Path,
    target_bytes: int = 2_200_000_000,
    file_bytes: int = 128_000_000,
    seed: int = 0,
    exact_share: float = 0.02,
    near_share: float = 0.03,
) -> dict:
    """Write ``part-00000.jsonl``... (``{"id", "text"}`` per line, ~``file_bytes`` each) into ``path`` until
    ``target_bytes``. Round 0 is every base document as is; every later round repeats each base document with
    30% of its words edited (a different edit per round: word 3-gram Jaccard ~0.05 to any other version, so
    fuzzy dedup keeps it). In every round, ``exact_share`` of the documents are followed by an exact copy and
    ``near_share`` by a 5%-edited copy: known duplicates for the dedup stages to remove.

    Returns what was written (files, documents, bytes, planted exact and near duplicates). An existing corpus
    of at least ``target_bytes`` with the same parameters is reused.
    """
    out = Path(path)
    params = {"target_bytes": target_bytes, "file_bytes": file_bytes, "seed": seed, "version": VERSION}
    params.update(exact_share=exact_share, near_share=near_share)
    manifest = out / "manifest.json"
    if manifest.exists():
        written = json.loads(manifest.read_text())
        if written.get("params") == params:
            return written
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("part-*.jsonl"):
        old.unlink()
    base = base_documents()
    vocabulary = _vocabulary(base)
    rng = random.Random(seed)
    stats = {"files": 0, "documents": 0, "bytes": 0, "exact_duplicates": 0, "near_duplicates": 0}
    handle, in_file = None, 0
    round_no = 0
    try:
        while stats["bytes"] < target_bytes:
            for doc in base:
                text = doc["text"] if round_no == 0 else edit_words(doc["text"], 0.3, rng, vocabulary)
                doc_id = f"r{round_no:03d}-{doc['id']}"
                rows = [(doc_id, text)]
                draw = rng.random()
                if draw < exact_share:
                    rows.append((f"{doc_id}-exact", text))
                    stats["exact_duplicates"] += 1
                elif draw < exact_share + near_share:
                    rows.append((f"{doc_id}-near", edit_words(text, 0.05, rng, vocabulary)))
                    stats["near_duplicates"] += 1
                for row_id, row_text in rows:
                    if handle is None or in_file >= file_bytes:
                        if handle is not None:
                            handle.close()
                        handle = (out / f"part-{stats['files']:05d}.jsonl").open("w", encoding="utf-8")
                        stats["files"] += 1
                        in_file = 0
                    line = json.dumps({"id": row_id, "text": row_text}, ensure_ascii=False) + "\n"
                    handle.write(line)
                    n = len(line.encode())
                    in_file += n
                    stats["bytes"] += n
                    stats["documents"] += 1
                if stats["bytes"] >= target_bytes:
                    break
            round_no += 1
    finally:
        if handle is not None:
            handle.close()
    written = {"params": params, "rounds": round_no, **stats}
    manifest.write_text(json.dumps(written, indent=2))
    return written


if __name__ == "__main__":
    import sys
    import time

    start = time.perf_counter()
    print(json.dumps(base_stats(), indent=2), f"{time.perf_counter() - start:.1f}s")
    if len(sys.argv) > 1:
        print(json.dumps(write_jsonl_corpus(sys.argv[1], int(float(sys.argv[2]))), indent=2))
