"""Shards: the unit of parallel work of the pretraining feed, and how a shard is streamed in batches.

A :class:`Shard` is one file of a ``corpus`` source, or one part of a large one (a byte range of a plain
``.jsonl`` file, aligned to lines; a range of row groups of a Parquet file), or one staged Parquet file of
documents exported from the dbt mart. Compressed ``.gz`` and ``.zst`` files cannot be split and are one shard
each. A shard's ``version`` comes from the file's size and modification time (or ETag), so a shard that was
already processed with the same configuration is recognised and skipped.

:func:`read_batches` yields lists of :class:`~feedstock.stages.steps.Document` of at most ``batch_size``;
memory is bounded by the batch, not by the shard. Records that cannot become a document (invalid JSON, no
text) are yielded as :class:`~feedstock.stages.steps.Drop` with reason ``read:<why>``. A file that cannot be
read at all raises :class:`ShardUnreadable`; the caller quarantines the whole shard.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow.parquet as pq

from feedstock.config import CorpusSource
from feedstock.documents.ingest import list_files
from feedstock.lake import Lake, filesystem
from feedstock.stages.steps import Document, Drop

MB = 1024 * 1024


class ShardUnreadable(RuntimeError):
    """The shard's file is corrupt or unreadable; the message is the reason."""


@dataclass(frozen=True)
class Shard:
    source: str
    uri: str
    relative: str
    format: str  # jsonl | parquet | mart (staged Parquet with doc_id, source, text)
    version: str
    part: int = 0
    start: int = 0  # jsonl: byte offset; parquet: first row group
    end: int = -1  # jsonl: byte offset (exclusive); parquet: row group (exclusive); -1 = to the end
    text_field: str = "text"
    id_field: str | None = "id"

    @property
    def shard_id(self) -> str:
        """Stable across runs: the same file part of the same source."""
        return hashlib.sha256(f"{self.source}\0{self.relative}\0{self.part}".encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        return f"{self.source}/{self.relative}" + (f"#{self.part}" if self.part or self.end != -1 else "")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> Shard:
        return cls(**value)


def file_version(file: dict[str, Any]) -> str:
    return hashlib.sha256(f"{file['size']}\0{file['modified_at']}".encode()).hexdigest()[:16]


def list_shards(source: CorpusSource, lake: Lake) -> list[Shard]:
    """Every shard of a corpus source, in a stable order."""
    shards: list[Shard] = []
    part_bytes = int(source.part_mb * MB)
    for file in list_files(source, lake):  # type: ignore[arg-type]
        # The file's extension decides where it is unambiguous, so one folder can mix formats.
        fmt = "parquet" if file["relative"].endswith(".parquet") else source.format
        common = {
            "source": source.name,
            "uri": file["uri"],
            "relative": file["relative"],
            "format": fmt,
            "version": file_version(file),
            "text_field": source.text_field,
            "id_field": source.id_field,
        }
        compressed = file["relative"].endswith((".gz", ".zst"))
        if fmt == "jsonl" and not compressed and file["size"] > part_bytes:
            offsets = list(range(0, file["size"], part_bytes))
            for part, start in enumerate(offsets):
                end = offsets[part + 1] if part + 1 < len(offsets) else file["size"]
                shards.append(Shard(**common, part=part, start=start, end=end))
        elif fmt == "parquet" and file["size"] > part_bytes:
            shards.extend(_parquet_parts(common, lake, part_bytes))
        else:
            shards.append(Shard(**common))
    return shards


def _parquet_parts(common: dict[str, Any], lake: Lake, part_bytes: int) -> list[Shard]:
    fs, path = filesystem(common["uri"], lake.s3)
    try:
        with fs.open(path, "rb") as handle:
            meta = pq.ParquetFile(handle).metadata
    except Exception:  # noqa: BLE001 - an unreadable footer is found again, and quarantined, by the shard task
        return [Shard(**common)]
    parts, start, size = [], 0, 0
    for group in range(meta.num_row_groups):
        size += meta.row_group(group).total_byte_size
        if size >= part_bytes or group == meta.num_row_groups - 1:
            parts.append(Shard(**common, part=len(parts), start=start, end=group + 1))
            start, size = group + 1, 0
    return parts


def read_batches(shard: Shard, lake: Lake, batch_size: int) -> Iterator[list[Document | Drop]]:
    """Stream a shard as batches of documents (and drops of records that are not documents)."""
    try:
        if shard.format == "jsonl":
            yield from _jsonl_batches(shard, lake, batch_size)
        else:
            yield from _parquet_batches(shard, lake, batch_size)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, ValueError) as exc:
        raise ShardUnreadable(
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'unreadable'}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - zstandard and pyarrow raise their own error types
        if type(exc).__module__.split(".")[0] in ("zstd", "zstandard", "pyarrow"):
            raise ShardUnreadable(f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from None
        raise


def _jsonl_batches(shard: Shard, lake: Lake, batch_size: int) -> Iterator[list[Document | Drop]]:
    fs, path = filesystem(shard.uri, lake.s3)
    with fs.open(path, "rb") as raw:
        if shard.relative.endswith((".gz", ".zst")):
            lines = _numbered(decompressed_lines(raw, shard.relative))
        else:
            lines = _byte_range_lines(raw, shard.start, shard.end)
        batch: list[Document | Drop] = []
        for offset, line in lines:
            if line.strip():
                batch.append(_record(shard, offset, line))
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch


def decompressed_lines(raw: Any, name: str) -> Iterator[bytes]:
    """The lines of a ``.gz`` or ``.zst`` file (``name`` says which), decompressed as they are read."""
    if name.endswith(".gz"):
        stream: Any = gzip.GzipFile(fileobj=raw)
    else:
        import zstandard

        stream = io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw))
    yield from stream


def _numbered(lines: Iterator[bytes]) -> Iterator[tuple[int, bytes]]:
    offset = 0
    for line in lines:
        yield offset, line
        offset += len(line)


def _byte_range_lines(raw: Any, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    """The lines that *start* in [start, end): a line crossing the boundary belongs to the part it starts in."""
    position = start
    if start > 0:
        raw.seek(start - 1)
        position = start - 1 + len(raw.readline())
    else:
        raw.seek(0)
    while end < 0 or position < end:
        line = raw.readline()
        if not line:
            return
        yield position, line
        position += len(line)


def _record(shard: Shard, offset: int, line: bytes) -> Document | Drop:
    fallback = f"{shard.source}/{shard.relative}@{offset}"
    try:
        record = json.loads(line)
    except ValueError:
        return Drop(fallback, shard.source, "read", "read:invalid_json")
    if not isinstance(record, dict):
        return Drop(fallback, shard.source, "read", "read:invalid_json")
    text = record.get(shard.text_field)
    identifier = record.get(shard.id_field) if shard.id_field else None
    doc_id = f"{shard.source}/{identifier}" if identifier not in (None, "") else fallback
    if not isinstance(text, str) or not text.strip():
        return Drop(doc_id, shard.source, "read", "read:no_text")
    return Document(doc_id, shard.source, text)


def _parquet_batches(shard: Shard, lake: Lake, batch_size: int) -> Iterator[list[Document | Drop]]:
    fs, path = filesystem(shard.uri, lake.s3)
    with fs.open(path, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        groups = list(range(shard.start, parquet.num_row_groups if shard.end < 0 else shard.end))
        if shard.format == "mart":
            columns, text_field, id_field = ["doc_id", "source", "text"], "text", "doc_id"
        else:
            text_field, id_field = shard.text_field, shard.id_field
            columns = [text_field] + ([id_field] if id_field in parquet.schema_arrow.names else [])
        if text_field not in parquet.schema_arrow.names:
            raise ShardUnreadable(f"no column '{text_field}' in {shard.relative}")
        row = 0
        for batch in parquet.iter_batches(batch_size=batch_size, row_groups=groups, columns=columns):
            values = batch.to_pydict()
            texts, ids = values[text_field], values.get(id_field) or [None] * batch.num_rows
            out: list[Document | Drop] = []
            for i, text in enumerate(texts):
                if shard.format == "mart":
                    doc_id, source = ids[i], values["source"][i]
                else:
                    source = shard.source
                    doc_id = (
                        f"{source}/{ids[i]}"
                        if ids[i] not in (None, "")
                        else f"{source}/{shard.relative}@{shard.start}:{row + i}"
                    )
                if not isinstance(text, str) or not text.strip():
                    out.append(Drop(doc_id, source, "read", "read:no_text"))
                else:
                    out.append(Document(doc_id, source, text))
            row += batch.num_rows
            yield out
