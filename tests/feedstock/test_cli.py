"""The ``feedstock`` command as a shell runs it: its exit code and stderr are the command's own."""

from __future__ import annotations

import subprocess
import sys

import pyarrow as pa
import yaml

from feedstock.lake import Commit, Lake


def test_an_error_after_reading_the_lake_exits_1_with_one_line_every_time(tmp_path):
    """Reading a Delta table through pyarrow left Arrow threads that aborted the interpreter at exit (SIGABRT,
    "terminate called without an active exception") in about 3 runs of 4; the exit code must be the command's."""
    lake = Lake(str(tmp_path / "lake"))
    lake.append("finetune.release", pa.table({"release": [1, 2]}), Commit({"task": "test"}))
    config = tmp_path / "feedstock.yaml"
    config.write_text(yaml.safe_dump({"lake": str(tmp_path / "lake"), "sources": []}))
    command = [sys.executable, "-m", "feedstock.cli", "finetune", "show", "9"]
    runs = [
        subprocess.run(command, capture_output=True, text=True, env={"FEEDSTOCK_CONFIG": str(config)})
        for _ in range(6)
    ]
    assert [(r.returncode, r.stderr) for r in runs] == [
        (1, "feedstock finetune: no fine-tuning release 9; releases: 1, 2\n")
    ] * 6
