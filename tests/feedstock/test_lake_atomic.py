"""``Lake.write_json`` is atomic: a writer that dies mid-write leaves the previous pointer whole and readable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from feedstock.lake import Lake
from feedstock.rag.index import pointer_uri, read_pointer
from tests.conftest import ROOT

OLD = {"table": "chunks_all_minilm", "version": 3, "index_version": 7}
NEW = {"table": "chunks_all_minilm", "version": 4, "index_version": 8, "padding": "x" * 200_000}


class Killed(Exception):
    """The process dies here."""


def half_then_die(value, handle, **kwargs):
    text = json.dumps(value, **kwargs)
    handle.write(text[: len(text) // 2])
    handle.flush()
    raise Killed


def test_a_write_that_fails_midway_leaves_the_old_pointer(tmp_path, monkeypatch):
    lake = Lake(str(tmp_path / "lake"))
    lake.write_json(pointer_uri(lake), OLD)
    monkeypatch.setattr(json, "dump", half_then_die)
    with pytest.raises(Killed):
        lake.write_json(pointer_uri(lake), NEW)
    monkeypatch.undo()
    assert read_pointer(lake) == OLD
    assert os.listdir(tmp_path / "lake" / "rag") == ["CURRENT.json"]  # the half-written file is gone
    lake.write_json(pointer_uri(lake), NEW)
    assert read_pointer(lake) == NEW


def test_a_writer_killed_midway_leaves_the_old_pointer(tmp_path):
    """A real SIGKILL in the middle of the JSON: no cleanup runs, and the pointer is still the old one."""
    lake = Lake(str(tmp_path / "lake"))
    lake.write_json(pointer_uri(lake), OLD)
    script = textwrap.dedent(
        f"""
        import json, os, signal
        from feedstock.lake import Lake
        from feedstock.rag.index import pointer_uri

        def half_then_kill(value, handle, **kwargs):
            text = json.dumps(value, **kwargs)
            handle.write(text[: len(text) // 2])
            handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)

        json.dump = half_then_kill
        lake = Lake({lake.root!r})
        lake.write_json(pointer_uri(lake), {{"version": 4, "padding": "x" * 200_000}})
        """
    )
    killed = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    assert read_pointer(lake) == OLD
    # What the killed writer left behind is a hidden temporary file that no ``*.json`` listing picks up.
    leftovers = [name for name in os.listdir(tmp_path / "lake" / "rag") if name != "CURRENT.json"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".CURRENT.json.")
    assert lake.staged_files(os.path.join(lake.root, "rag"), "*.json") == [pointer_uri(lake)]


def test_s3_pointer_is_one_put(s3):
    """On S3 a JSON file is one PUT: a value that fails to serialize halfway writes nothing."""
    fs, bucket = s3
    lake = Lake(f"s3://{bucket}/lake")
    lake.write_json(pointer_uri(lake), OLD)
    circular: list = []
    circular.append(circular)
    with pytest.raises(ValueError, match="Circular reference"):
        lake.write_json(pointer_uri(lake), {"a_padding": "x" * 200_000, "z": circular})
    assert read_pointer(lake) == OLD
    lake.write_json(pointer_uri(lake), NEW)
    assert read_pointer(lake) == NEW
    assert fs.ls(f"{bucket}/lake/rag") == [f"{bucket}/lake/rag/CURRENT.json"]
