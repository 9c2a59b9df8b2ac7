"""Forgetting records in published fine-tuning releases.

An example's ``row`` is its line in every format's file of its split and kind (``finetune.examples``). For each
release that published a forgotten record, the lines at those rows are removed from each of those files, and the
rows of the examples after them in ``finetune.examples`` move up, so lineage stays exact. ``stats.json`` and the
data card note the deletion (counts only); the ``finetune.release`` rows get their new counts.
"""

from __future__ import annotations

import posixpath
from collections import defaultdict
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from feedstock.finetune import exports
from feedstock.forget import note_deletion, replace_file
from feedstock.lake import Lake, filesystem


def forget_examples(
    lake: Lake, examples: pa.Table, files: list[dict[str, Any]], ids: set[str]
) -> tuple[pa.Table, list[dict[str, Any]], list[dict[str, Any]]]:
    """``finetune.examples`` without the records ``ids`` (later rows renumbered), the release files rewritten, and
    per release what was removed. ``files`` are the ``finetune.release`` rows; returns them with new counts."""
    forgotten = pc.is_in(examples["record_id"], pa.array(sorted(ids), pa.string()))
    removed: dict[tuple[int, str, str], list[int]] = defaultdict(list)  # (release, split, kind) -> rows
    for row in examples.filter(forgotten).to_pylist():
        if row["status"] == "published":
            removed[(row["release"], row["split"], row["kind"])].append(row["row"])
    kept = examples.filter(pc.invert(forgotten))
    if removed:
        kept = _renumber(kept, removed)
    results: dict[int, dict[str, Any]] = {}
    updated = []
    for f in files:
        kind = _kind(f)
        rows = sorted(removed.get((f["release"], f["split"], kind), ()))
        if rows:
            _drop_lines(lake, f["uri"], set(rows))
            f = {**f, "examples": f["examples"] - len(rows)}
            result = results.setdefault(f["release"], {"release": f["release"], "examples": 0, "splits": {}})
            result["splits"][f"{f['split']}/{kind}"] = len(rows)
        updated.append(f)
    for result in results.values():
        result["examples"] = sum(result["splits"].values())
    return kept, updated, list(results.values())


def _kind(f: dict[str, Any]) -> str:
    """A release file's kind, from its name (see :func:`feedstock.finetune.exports.file_name`)."""
    name = posixpath.basename(f["uri"])
    if name.endswith(".pairs.jsonl") or f["format"] not in exports.SFT_FORMATS:
        return "preference"
    return "sft"


def _renumber(kept: pa.Table, removed: dict[tuple[int, str, str], list[int]]) -> pa.Table:
    rows = kept["row"].to_pylist()
    keys = zip(kept["release"].to_pylist(), kept["split"].to_pylist(), kept["kind"].to_pylist(), strict=True)
    shifted = [
        None if row is None else row - sum(1 for r in removed.get(key, ()) if r < row)
        for key, row in zip(keys, rows, strict=True)
    ]
    return kept.set_column(kept.schema.get_field_index("row"), "row", pa.array(shifted, pa.int64()))


def _drop_lines(lake: Lake, uri: str, rows: set[int]) -> None:
    fs, path = filesystem(uri, lake.s3)
    with fs.open(path, "rb") as handle:
        lines = handle.read().splitlines(keepends=True)
    kept = b"".join(line for number, line in enumerate(lines) if number not in rows)
    replace_file(lake, uri, lambda handle: handle.write(kept))


def note(lake: Lake, release_dir: str, request: str, result: dict[str, Any]) -> None:
    """Counts only: the release's ``stats.json`` and data card record the deletion."""
    note_deletion(
        lake,
        release_dir,
        request,
        {"examples": result["examples"], "splits": result["splits"]},
        "examples_published",
        f"\n## Deletion ({request})\n\n{result['examples']} published examples were removed by a `forget` request "
        f"({', '.join(f'{k}: {v}' for k, v in sorted(result['splits'].items()))}); the counts above are as "
        "released, `stats.json` holds the current ones.\n",
    )
