"""The catalog: one entry per lake dataset, derived from each Delta table's own log (nothing stored twice).

Entry fields: ``name, version, uri, format, rows, created_at, produced_by, inputs, stats, detached``, where
``produced_by``, ``inputs`` and ``stats`` come from the newest commit that feedstock made, ``uri`` opens with
``deltalake.DeltaTable``, and ``detached`` marks the bronze and quarantine tables of a source that is no longer in
the configuration (they stay in the lake; the feeds no longer read them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from feedstock.lake import Lake


@dataclass
class Entry:
    name: str
    version: int
    uri: str
    format: str
    rows: int
    created_at: str
    produced_by: dict[str, str]
    inputs: list[str]
    stats: dict[str, Any]
    detached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def entry(lake: Lake, name: str, configured: set[str] | None = None) -> Entry | None:
    table = lake.table(name)
    if table is None:
        return None
    actions = pa.table(table.get_add_actions(flatten=True))
    rows = pc.sum(actions["num_records"]).as_py() if actions.num_rows else 0
    newest = table.history(1)[0]
    made = lake.last_commit(name) or {}
    return Entry(
        name=name,
        version=table.version(),
        uri=lake.uri(name),
        format="delta",
        rows=int(rows or 0),
        created_at=datetime.fromtimestamp(newest["timestamp"] / 1000, tz=UTC).isoformat(),
        produced_by=made.get("produced_by", {}),
        inputs=list(made.get("inputs", [])),
        stats=made.get("stats", {}),
        detached=configured is not None
        and name.startswith(("bronze.", "quarantine."))
        and name.rsplit(".", 1)[-1] not in configured,
    )


def catalog(lake: Lake, configured: set[str] | None = None) -> list[Entry]:
    """Every dataset in the lake, sorted by name; with the configured source names, detached ones marked."""
    return [e for e in (entry(lake, name, configured) for name in lake.tables()) if e is not None]


def render_table(entries: list[Entry]) -> str:
    """A readable, fixed-width listing for the terminal."""
    header = ("NAME", "VERSION", "ROWS", "CREATED_AT", "PRODUCED_BY")
    rows = [
        (
            e.name,
            str(e.version),
            str(e.rows),
            e.created_at[:19].replace("T", " "),
            f"{e.produced_by.get('dag_id', '-')}.{e.produced_by.get('task_id', '-')}"
            + (" (detached: source not configured)" if e.detached else ""),
        )
        for e in entries
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    if not rows:
        lines.append("(the lake is empty: run the ingest_documents or ingest_warehouse DAG first)")
    return "\n".join(lines)
