"""Boilerplate: the lines a source repeats across many of its documents (footers, licence lines, cookie banners,
"Edit this page"), found and removed the same way by both feeds that use it.

A line is boilerplate for a source when it occurs in at least ``min_docs`` of the source's documents (and, where
a feed asks for it, in at least ``min_share`` of them) and is at least ``min_chars`` long, so short headings and
list markers survive. Lines are compared by :func:`line_key`: case
and whitespace do not matter.

The pretraining feed counts per shard (:mod:`feedstock.pretrain.scan`, one mapped task each) and the RAG feed
over its mart's documents (:func:`feedstock.rag.index.plan`); both write each batch's counts to Parquet with
:func:`count_batch` and sum them with :func:`frequent`: DuckDB reads the files itself under a memory limit and
spills, and the lines found stream out in batches, so memory does not grow with the number of distinct lines
(measured: 203 / 345 / 354 MB peak at 1x / 4x / 16x the lines; through a pyarrow reader registered with DuckDB it
was 305 / 657 / 1,421 MB, because DuckDB could not spill what it scanned from the stream). :func:`strip` removes
the lines from a document.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

MIN_DOCS = 5  # a line in at least this many documents of a source is boilerplate
MIN_CHARS = 20  # shorter lines (headings, list markers) never are
MEMORY = "192MB"  # DuckDB's budget for the global line count; past it, the aggregate spills to disk
LINES_SCHEMA = pa.schema([("source", pa.string()), ("line", pa.int64()), ("docs", pa.int64())])
FOUND_SCHEMA = pa.schema([("source", pa.string()), ("line", pa.int64())])
BATCH_ROWS = 100_000  # lines found per streamed batch

BLANK_RUNS = re.compile(r"\n{3,}")  # collapsed to one blank line where lines were dropped


def line_key(line: str) -> int:
    return xxhash.xxh64_intdigest(" ".join(line.lower().split()).encode())


def _candidate(line: str, min_chars: int, headings: bool) -> bool:
    """Whether a line may be boilerplate: long enough, and (with ``headings=False``) not a Markdown heading, which
    is the document's own structure (a "## See also" in every page is a section, not chrome)."""
    stripped = line.strip()
    return len(stripped) >= min_chars and (headings or not stripped.startswith("#"))


def count_batch(docs: Iterable[tuple[str, str]], min_chars: int, headings: bool = True) -> pa.Table | None:
    """For ``(source, text)`` pairs: in how many of them each candidate line occurs, per source."""
    keys: Counter = Counter()
    for source, text in docs:
        keys.update(
            (source, k) for k in {line_key(x) for x in text.split("\n") if _candidate(x, min_chars, headings)}
        )
    if not keys:
        return None
    return pa.table(
        {
            "source": [s for s, _ in keys],
            "line": np.array([k for _, k in keys], dtype=np.uint64).view(np.int64),
            "docs": list(keys.values()),
        },
        schema=LINES_SCHEMA,
    )


def frequent(
    files: list[str],
    min_docs: int,
    min_share: float = 0.0,
    documents: dict[str, int] | None = None,
) -> Iterator[pa.RecordBatch]:
    """The ``(source, line)`` pairs (:data:`FOUND_SCHEMA`, in order) whose counts in the local Parquet ``files``
    (:data:`LINES_SCHEMA`) sum to at least ``min_docs``, and to at least ``min_share`` of the source's
    ``documents`` when given (``{source: number of documents}``).

    DuckDB reads the files, with a memory limit and a spill folder (without them it sizes itself to 80% of the
    machine), and the result streams out in batches of :data:`BATCH_ROWS`.
    """
    import duckdb

    if not files:
        return
    documents = documents or {}
    floor = pa.table(
        {
            "source": pa.array(list(documents), pa.string()),
            "floor": pa.array(
                [max(min_docs, math.ceil(min_share * n)) for n in documents.values()], pa.int64()
            ),
        }
    )
    spill = tempfile.mkdtemp(prefix="feedstock-boilerplate-")
    con = duckdb.connect(config={"memory_limit": MEMORY, "temp_directory": spill, "threads": 1})
    con.register("floors", floor)
    try:
        # Summed first, then compared with the source's floor: an aggregate of one sum spills to disk, while
        # one that also carries any_value(floor) ran out of memory past about a million frequent lines.
        paths = ", ".join("'" + path.replace("'", "''") + "'" for path in files)
        found = con.sql(
            f"""with totals as (
                    select source, line, sum(docs) as docs from read_parquet([{paths}]) group by source, line)
                select source, line from totals left join floors using (source)
                where docs >= coalesce(floor, {min_docs}) order by all"""
        )
        for batch in found.to_arrow_reader(BATCH_ROWS):
            yield batch.cast(FOUND_SCHEMA)
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)


def find(
    docs: list[tuple[str, str]], min_docs: int, min_chars: int, min_share: float = 0.0, headings: bool = True
) -> dict[str, set[int]]:
    """:func:`count_batch` and :func:`frequent` over documents held in memory (benchmarks, small sets)."""
    counts = count_batch(docs, min_chars, headings)
    if counts is None or not min_docs:
        return {}
    documents = dict(Counter(source for source, _ in docs))
    with tempfile.TemporaryDirectory(prefix="feedstock-boilerplate-") as folder:
        path = os.path.join(folder, "lines.parquet")
        pq.write_table(counts, path)
        return by_source(frequent([path], min_docs, min_share, documents))


def by_source(found: Iterable[pa.RecordBatch]) -> dict[str, set[int]]:
    """:func:`frequent`'s batches as ``{source: line keys}``."""
    keys: dict[str, set[int]] = {}
    for batch in found:
        lines = batch.column("line").to_numpy().view(np.uint64)
        for source, key in zip(batch.column("source").to_pylist(), lines.tolist(), strict=True):
            keys.setdefault(source, set()).add(key)
    return keys


def strip(text: str, keys: set[int], min_chars: int, headings: bool = True) -> tuple[str, int]:
    """The text without its boilerplate lines (blank-line runs left behind collapse to one), and how many went."""
    if not keys:
        return text, 0
    lines = text.split("\n")
    kept = [x for x in lines if not (_candidate(x, min_chars, headings) and line_key(x) in keys)]
    if len(kept) == len(lines):
        return text, 0
    return BLANK_RUNS.sub("\n\n", "\n".join(kept)).strip(), len(lines) - len(kept)


def strip_pages(
    text: str, pages: list[dict] | None, keys: set[int], min_chars: int, headings: bool = True
) -> tuple[str, list[dict] | None, int]:
    """:func:`strip` for a document with page boundaries (character offsets into its text): each page is stripped
    on its own and the boundaries follow."""
    if not pages or not keys:
        stripped, removed = strip(text, keys, min_chars, headings)
        return stripped, pages, removed
    out, moved, cursor, length, removed = [], [], 0, 0, 0
    for page in pages:
        between = text[cursor : page["start"]]  # what lies between pages is kept as it is
        body, gone = strip(text[page["start"] : page["end"]], keys, min_chars, headings)
        out += [between, body]
        start = length + len(between)
        moved.append({**page, "start": start, "end": start + len(body)})
        cursor, length, removed = page["end"], start + len(body), removed + gone
    out.append(text[cursor:])
    return "".join(out), moved, removed
