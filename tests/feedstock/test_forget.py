"""The forget request and the verification scan, on inline data (the DAG end to end: tests/integration)."""

from __future__ import annotations

import io
import random
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from feedstock.config import ConfigError
from feedstock.forget import ForgetRequest, _stream_holds, _table_holds, verify
from feedstock.lake import Lake


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({}, "name records by 'doc_ids', 'source' or 'contains'"),
        ({"doc_ids": "handbook/a.md"}, "field 'doc_ids' must be a list of non-empty strings"),
        ({"contains": ["a@b"]}, "field 'contains' needs strings of 6+ characters, got 1 shorter"),
        ({"source": 3}, "field 'source' must be a source name"),
        ({"doc_ids": ["x/y"], "where": "1=1"}, "unknown field 'where'"),
    ],
)
def test_a_bad_request_is_one_line_naming_the_field(params, error):
    with pytest.raises(ConfigError, match=f"^forget request: {re.escape(error)}$"):
        ForgetRequest.from_params(params)


def test_the_summary_holds_no_content():
    request = ForgetRequest.from_params({"contains": ["jane@example.com"], "verify": ["Jane Roe"]})
    assert request.strings == ("jane@example.com", "Jane Roe")
    assert "jane" not in str(request.summary()).lower()


def test_strings_are_found_in_nested_and_view_columns():
    messages = pa.array(
        [[{"role": "user", "content": "Mail JANE@example.com please"}]],
        pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())])),
    )
    table = pa.table({"id": pa.array(["a"]).cast(pa.string_view()), "messages": messages})
    assert _table_holds(table, ("jane@example.com", "nobody", "a")) == {0, 2}


def test_verify_decodes_parquet_whose_bytes_hide_the_string(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    (tmp_path / "lake").mkdir()
    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghij") for _ in range(6)) for _ in range(2000)]
    text = " ".join(words[:1000]) + " jane@example.com " + " ".join(words[1000:])
    pq.write_table(pa.table({"text": [text]}), tmp_path / "lake" / "t.parquet", compression="gzip")
    assert b"jane@example.com" not in (tmp_path / "lake" / "t.parquet").read_bytes()
    (tmp_path / "lake" / "note.txt").write_text("nothing here")
    result = verify(lake, ("jane@example.com",))
    assert result["files_scanned"] == 2
    assert [f["file"] for f in result["found"]] == ["t.parquet"]


def test_a_string_across_two_read_blocks_is_found():
    data = b"x" * 10 + b"Jane.Roe@example.com" + b"y" * 10
    for block in (4, 7, 15, 64):
        held, read = _stream_holds(io.BytesIO(data), [b"jane.roe@example.com", b"absent"], block)
        assert (held, read) == ({0}, len(data)), block
