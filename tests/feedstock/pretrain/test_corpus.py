"""Corpus shards: listing and splitting files, and streaming JSONL (plain, .gz, .zst) and Parquet."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from feedstock.config import CorpusSource
from feedstock.lake import Lake
from feedstock.pretrain.corpus import Shard, ShardUnreadable, list_shards, read_batches
from feedstock.stages.steps import Document, Drop


@pytest.fixture
def lake(tmp_path) -> Lake:
    return Lake(str(tmp_path / "lake"))


@pytest.fixture
def corpus(tmp_path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    return folder


def records(n: int, prefix: str = "r") -> list[dict]:
    # varied lengths so that part boundaries fall at different places inside lines
    return [{"id": f"{prefix}{i}", "text": f"document {i} " + "word " * (i % 17)} for i in range(n)]


def jsonl_bytes(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def source(folder: Path, **kwargs) -> CorpusSource:
    return CorpusSource(name="web", uri=str(folder), **kwargs)


def read_all(shards: list[Shard], lake: Lake, batch_size: int = 1000) -> list[Document | Drop]:
    return [item for shard in shards for batch in read_batches(shard, lake, batch_size) for item in batch]


def test_plain_jsonl_split_into_parts_reads_every_record_once(corpus, lake):
    rows = records(200)
    (corpus / "big.jsonl").write_bytes(jsonl_bytes(rows))
    size = (corpus / "big.jsonl").stat().st_size
    shards = list_shards(source(corpus, part_mb=0.001), lake)
    part_bytes = int(0.001 * 1024 * 1024)
    assert len(shards) == -(-size // part_bytes) > 3
    assert [s.part for s in shards] == list(range(len(shards)))
    assert shards[0].start == 0 and shards[-1].end == size
    assert all(a.end == b.start for a, b in zip(shards, shards[1:], strict=False))
    assert len({s.shard_id for s in shards}) == len(shards)
    assert shards[1].label == "web/big.jsonl#1"
    items = read_all(shards, lake)
    assert all(isinstance(i, Document) for i in items)
    ids = [i.doc_id for i in items]
    assert sorted(ids) == sorted(f"web/{r['id']}" for r in rows)
    assert len(ids) == len(set(ids))
    texts = {i.doc_id: i.text for i in items}
    assert texts["web/r16"] == rows[16]["text"]


@pytest.mark.parametrize("part_bytes", [1, 7, 50, 64, 65, 1000])
def test_every_boundary_reads_every_record_once(corpus, lake, part_bytes):
    rows = records(12)
    data = jsonl_bytes(rows)
    (corpus / "f.jsonl").write_bytes(data)
    shards = list_shards(source(corpus, part_mb=part_bytes / (1024 * 1024)), lake)
    assert len(shards) == -(-len(data) // part_bytes)
    ids = [i.doc_id for i in read_all(shards, lake)]
    assert ids == [f"web/{r['id']}" for r in rows]


def test_small_file_is_one_shard(corpus, lake):
    (corpus / "small.jsonl").write_bytes(jsonl_bytes(records(3)))
    shards = list_shards(source(corpus), lake)
    assert len(shards) == 1
    assert (shards[0].part, shards[0].start, shards[0].end) == (0, 0, -1)
    assert shards[0].label == "web/small.jsonl"


def test_shard_round_trips_through_dict(corpus, lake):
    (corpus / "a.jsonl").write_bytes(jsonl_bytes(records(3)))
    shard = list_shards(source(corpus), lake)[0]
    assert Shard.from_dict(shard.to_dict()) == shard


def test_shard_version_changes_with_content(corpus, lake):
    path = corpus / "a.jsonl"
    path.write_bytes(jsonl_bytes(records(3)))
    before = list_shards(source(corpus), lake)[0]
    path.write_bytes(jsonl_bytes(records(4)))
    after = list_shards(source(corpus), lake)[0]
    assert before.shard_id == after.shard_id
    assert before.version != after.version


def test_gz_and_zst_are_read_and_not_split(corpus, lake):
    rows = records(150)
    (corpus / "a.jsonl.gz").write_bytes(gzip.compress(jsonl_bytes(rows[:75])))
    (corpus / "b.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(jsonl_bytes(rows[75:])))
    shards = list_shards(source(corpus, part_mb=0.0001), lake)
    assert [(s.relative, s.end) for s in shards] == [("a.jsonl.gz", -1), ("b.jsonl.zst", -1)]
    items = read_all(shards, lake)
    assert [i.doc_id for i in items] == [f"web/{r['id']}" for r in rows]
    assert items[3].text == rows[3]["text"]


def test_zst_written_as_a_stream(corpus, lake):
    compressor = zstandard.ZstdCompressor()
    with open(corpus / "s.jsonl.zst", "wb") as handle, compressor.stream_writer(handle) as writer:
        writer.write(jsonl_bytes(records(5)))
    assert len(read_all(list_shards(source(corpus), lake), lake)) == 5


def test_parquet_with_custom_fields(corpus, lake):
    table = pa.table({"uid": ["p1", "p2", None], "body": ["first text", "second text", "third text"]})
    pq.write_table(table, corpus / "data.parquet")
    shards = list_shards(source(corpus, format="parquet", text_field="body", id_field="uid"), lake)
    assert [s.format for s in shards] == ["parquet"]
    items = read_all(shards, lake)
    assert [(i.doc_id, i.text) for i in items] == [
        ("web/p1", "first text"),
        ("web/p2", "second text"),
        ("web/data.parquet@0:2", "third text"),
    ]


def test_parquet_split_by_row_groups(corpus, lake):
    n = 3000
    table = pa.table({"id": [f"q{i}" for i in range(n)], "text": [f"text number {i} " * 3 for i in range(n)]})
    pq.write_table(table, corpus / "big.parquet", row_group_size=500)
    shards = list_shards(source(corpus, format="jsonl", part_mb=0.01), lake)  # the extension decides
    assert len(shards) > 1 and all(s.format == "parquet" for s in shards)
    ids = [i.doc_id for i in read_all(shards, lake, batch_size=128)]
    assert sorted(ids) == sorted(f"web/q{i}" for i in range(n))


def test_parquet_without_text_column_unreadable(corpus, lake):
    pq.write_table(pa.table({"id": ["a"], "content": ["x"]}), corpus / "bad.parquet")
    shard = list_shards(source(corpus, format="parquet"), lake)[0]
    with pytest.raises(ShardUnreadable, match="no column 'text'"):
        read_all([shard], lake)


def test_parquet_empty_text_is_no_text(corpus, lake):
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["  ", None]}), corpus / "e.parquet")
    items = read_all(list_shards(source(corpus, format="parquet"), lake), lake)
    assert [(i.doc_id, i.reason) for i in items] == [("web/a", "read:no_text"), ("web/b", "read:no_text")]


def test_missing_id_gets_stable_offset_id(corpus, lake):
    lines = [b'{"id": "x1", "text": "has id"}\n', b'{"text": "no id"}\n', b'{"id": "", "text": "empty id"}\n']
    (corpus / "sub").mkdir()
    (corpus / "sub" / "f.jsonl").write_bytes(b"".join(lines))
    shards = list_shards(source(corpus), lake)
    first = [i.doc_id for i in read_all(shards, lake)]
    second = [i.doc_id for i in read_all(list_shards(source(corpus), lake), lake)]
    offset = len(lines[0])
    assert first == ["web/x1", f"web/sub/f.jsonl@{offset}", f"web/sub/f.jsonl@{offset + len(lines[1])}"]
    assert first == second


def test_missing_id_offset_is_file_offset_in_every_part(corpus, lake):
    rows = [{"text": f"row {i} " + "pad " * 5} for i in range(20)]
    data = jsonl_bytes(rows)
    (corpus / "f.jsonl").write_bytes(data)
    whole = [i.doc_id for i in read_all(list_shards(source(corpus), lake), lake)]
    parts = [i.doc_id for i in read_all(list_shards(source(corpus, part_mb=100 / (1024 * 1024)), lake), lake)]
    assert whole == parts
    assert len(set(whole)) == 20


def test_no_id_field_configured(corpus, lake):
    (corpus / "f.jsonl").write_bytes(b'{"id": "ignored", "text": "t"}\n')
    items = read_all(list_shards(source(corpus, id_field=None), lake), lake)
    assert items[0].doc_id == "web/f.jsonl@0"


def test_invalid_json_and_no_text_become_drops(corpus, lake):
    lines = [
        b'{"id": "ok", "text": "fine"}\n',
        b"{not json\n",
        b"[1, 2, 3]\n",
        b"\n",
        b'{"id": "nt", "other": "no text field"}\n',
        b'{"id": "blank", "text": "   "}\n',
        b'{"id": "num", "text": 42}\n',
        b'{"id": "ok2", "text": "also fine"}',  # no final newline
    ]
    (corpus / "f.jsonl").write_bytes(b"".join(lines))
    items = read_all(list_shards(source(corpus), lake), lake)
    summary = [(type(i).__name__, i.doc_id, getattr(i, "reason", None)) for i in items]
    offset = len(lines[0])
    assert summary == [
        ("Document", "web/ok", None),
        ("Drop", f"web/f.jsonl@{offset}", "read:invalid_json"),
        ("Drop", f"web/f.jsonl@{offset + len(lines[1])}", "read:invalid_json"),
        ("Drop", "web/nt", "read:no_text"),
        ("Drop", "web/blank", "read:no_text"),
        ("Drop", "web/num", "read:no_text"),
        ("Document", "web/ok2", None),
    ]
    drops = [i for i in items if isinstance(i, Drop)]
    assert {(d.source, d.stage) for d in drops} == {("web", "read")}


def test_truncated_gz_raises_shard_unreadable(corpus, lake):
    data = gzip.compress(jsonl_bytes(records(500)))
    (corpus / "t.jsonl.gz").write_bytes(data[: len(data) // 2])
    shard = list_shards(source(corpus), lake)[0]
    with pytest.raises(ShardUnreadable, match="^EOFError: Compressed file ended"):
        read_all([shard], lake)


def test_not_gzip_raises_shard_unreadable(corpus, lake):
    (corpus / "t.jsonl.gz").write_bytes(b"this is not gzip at all\n")
    with pytest.raises(ShardUnreadable):
        read_all(list_shards(source(corpus), lake), lake)


def test_corrupt_zst_raises_shard_unreadable(corpus, lake):
    (corpus / "t.jsonl.zst").write_bytes(b"\x28\xb5\x2f\xfd garbage garbage")
    with pytest.raises(ShardUnreadable, match="^ZstdError"):
        read_all(list_shards(source(corpus), lake), lake)


def test_missing_folder(tmp_path, lake):
    with pytest.raises(FileNotFoundError, match="source 'web'"):
        list_shards(source(tmp_path / "nope"), lake)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_batch_size_respected(corpus, lake, fmt):
    rows = records(23)
    if fmt == "jsonl":
        (corpus / "f.jsonl").write_bytes(jsonl_bytes(rows))
    else:
        pq.write_table(pa.Table.from_pylist(rows), corpus / "f.parquet")
    shard = list_shards(source(corpus, format=fmt), lake)[0]
    sizes = [len(batch) for batch in read_batches(shard, lake, 5)]
    assert sizes == [5, 5, 5, 5, 3]
    assert [len(batch) for batch in read_batches(shard, lake, 100)] == [23]


def test_include_exclude(corpus, lake):
    (corpus / "keep.jsonl").write_bytes(jsonl_bytes(records(1)))
    (corpus / "skip.jsonl").write_bytes(jsonl_bytes(records(1)))
    (corpus / "notes.txt").write_text("x")
    shards = list_shards(source(corpus, include=("*.jsonl",), exclude=("skip*",)), lake)
    assert [s.relative for s in shards] == ["keep.jsonl"]
