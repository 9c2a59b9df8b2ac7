"""Record-level lineage: every artifact in the lake that holds a record, or anything derived from it.

A record is named as the feeds name it, ``<source>/<key>``: a document (``handbook/policies/pto_policy.md``), a
warehouse row (``tickets/1004``), a corpus document (``crawl/doc-17``) or a dataset record
(``support_chats/good-01``). :func:`trace` finds

- **tables**: every Delta table that holds a row of the record, and in which of its versions (the bronze tables,
  ``rag.index``, the feeds' dedup state and rejects);
- **rag**: its chunks in the released LanceDB table, and the LanceDB versions that hold any of them;
- **pretrain**: each release that read it, with its status, and for a published document each output shard and
  the document's offset in it (as ``feedstock pretrain decode <release> <shard> --doc <offset>`` reads it);
- **finetune**: each release that read it, with its status, split and row (its line in every format's file);
- **cache**: the cached answers grounded on it.

``feedstock lineage <record>`` prints it (``--json`` for the whole answer). Versions are found from the Delta log:
each version's file list, and each file read once for the record's column, so a table with many versions costs a
log replay per version (checkpoints keep that short).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from feedstock.config import Config, WarehouseSource
from feedstock.lake import Lake, filesystem

# The column that names a record in each lake table that holds records (bronze tables are matched by prefix).
RECORD_COLUMNS = {
    "rag.index": "doc_id",
    "pretrain.documents": "doc_id",
    "pretrain.rejects": "doc_id",
    "finetune.examples": "record_id",
    "finetune.rejects": "record_id",
}


@dataclass
class Lineage:
    record: str
    tables: list[dict[str, Any]] = field(default_factory=list)  # {table, column, versions, files}
    rag: list[dict[str, Any]] = field(default_factory=list)  # {table, released_version, chunks, versions}
    pretrain: list[dict[str, Any]] = field(default_factory=list)  # {release, status, shard?, offset?, uri?}
    finetune: list[dict[str, Any]] = field(
        default_factory=list
    )  # {release, status, kind, split?, row?, files}
    cache: list[dict[str, Any]] = field(default_factory=list)  # {id, question}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def found(self) -> bool:
        return any((self.tables, self.rag, self.pretrain, self.finetune, self.cache))


def record_tables(config: Config, lake: Lake, record: str) -> list[tuple[str, str, str]]:
    """``(table, column, value)`` for every lake table whose rows can hold ``record``."""
    source, _, key = record.partition("/")
    configured = next((s for s in config.sources if s.name == source), None)
    found = []
    for name in lake.tables():
        if name.startswith("bronze.documents."):
            found.append((name, "doc_id", record))
        elif name == f"bronze.warehouse.{source}" and isinstance(configured, WarehouseSource):
            found.append((name, configured.key, key))
        elif name in RECORD_COLUMNS:
            found.append((name, RECORD_COLUMNS[name], record))
    return found


def versions_holding(
    lake: Lake, name: str, column: str, values: str | set[str]
) -> tuple[list[int], list[str]]:
    """The versions of Delta table ``name`` that hold a row whose ``column`` (compared as text) is one of
    ``values``, and the data files that hold one (a vacuumed file no longer exists and is skipped)."""
    wanted = pa.array(sorted({values} if isinstance(values, str) else values), pa.string())
    table = lake.table(name)
    if table is None:
        return [], []
    latest = table.version()
    files_of: dict[int, list[str]] = {}
    for version in range(latest + 1):
        try:
            table.load_as_version(version)
        except Exception:  # noqa: BLE001 - a version whose log was cleaned up is no longer readable
            continue
        files_of[version] = table.file_uris()
    holding = {
        uri
        for uri in {u for files in files_of.values() for u in files}
        if _file_holds(lake, uri, column, wanted)
    }
    return sorted(v for v, files in files_of.items() if holding.intersection(files)), sorted(holding)


def _file_holds(lake: Lake, uri: str, column: str, wanted: pa.Array) -> bool:
    fs, path = filesystem(uri, lake.s3)
    if not fs.exists(path):
        return False
    with fs.open(path, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        if column not in parquet.schema_arrow.names:
            return False
        values = parquet.read(columns=[column])[column]
    return bool(pc.any(pc.is_in(pc.cast(values, pa.string()), wanted)).as_py())


def trace(config: Config, lake: Lake, record: str) -> Lineage:
    """Every artifact that holds ``record`` or something derived from it (see the module docstring)."""
    found = Lineage(record)
    for name, column, value in record_tables(config, lake, record):
        versions, files = versions_holding(lake, name, column, value)
        if versions:
            found.tables.append({"table": name, "column": column, "versions": versions, "files": files})
    found.rag = _rag(lake, record)
    found.pretrain = _pretrain(lake, record)
    found.finetune = _finetune(lake, record)
    found.cache = _cache(config, lake, record)
    return found


def _text(field):
    """A string field as ``string`` whatever its files hold: delta-rs's own rewrites (delete, merge) write
    ``string_view``, which pyarrow cannot compare with a string literal."""
    return field.cast(pa.string())


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _rag(lake: Lake, record: str) -> list[dict[str, Any]]:
    from feedstock.rag.index import _connect, each_version, read_pointer

    pointer = read_pointer(lake)
    if pointer is None or pointer.get("version") is None:
        return []
    table = _connect(lake).open_table(pointer["table"])
    where = f"doc_id = {_quote(record)}"
    versions = [version for version in each_version(table) if table.count_rows(where)]
    if not versions:
        return []
    table.checkout(pointer["version"])
    held = table.count_rows(where)
    chunks = (
        table.search().where(where).select(["chunk_id"]).limit(held).to_arrow()["chunk_id"].to_pylist()
        if held
        else []
    )
    return [
        {
            "table": pointer["table"],
            "released_version": pointer["version"],
            "chunks": sorted(chunks),
            "versions": versions,
        }
    ]


def _pretrain(lake: Lake, record: str) -> list[dict[str, Any]]:
    import pyarrow.dataset as ds

    from feedstock.pretrain.tables import DOCUMENTS, RELEASE

    state = lake.dataset(DOCUMENTS)
    if state is None:
        return []
    rows = state.to_table(
        filter=_text(ds.field("doc_id")) == record, columns=["release", "status"]
    ).to_pylist()
    files = lake.read(RELEASE, columns=["release", "format", "shard", "uri"])
    shards = [f for f in (files.to_pylist() if files is not None else []) if f["format"] == "parquet"]
    found = []
    for row in sorted(rows, key=lambda r: r["release"]):
        if row["status"] != "published":
            found.append({"release": row["release"], "status": row["status"]})
            continue
        placed = False
        for shard in (s for s in shards if s["release"] == row["release"]):
            ids = lake.read_parquet(shard["uri"], columns=["doc_id"])["doc_id"]
            for offset in pc.indices_nonzero(pc.equal(ids, record)).to_pylist():
                found.append(
                    {
                        "release": row["release"],
                        "status": "published",
                        "shard": shard["shard"],
                        "offset": offset,
                        "uri": shard["uri"],
                    }
                )
                placed = True
        if not placed:  # a release without the parquet format: its shard files carry no document ids
            found.append({"release": row["release"], "status": "published"})
    return found


def _finetune(lake: Lake, record: str) -> list[dict[str, Any]]:
    import pyarrow.dataset as ds

    from feedstock.finetune.tables import EXAMPLES, RELEASE

    examples = lake.dataset(EXAMPLES)
    if examples is None:
        return []
    rows = examples.to_table(
        filter=_text(ds.field("record_id")) == record,
        columns=["example_id", "release", "status", "kind", "split", "row"],
    ).to_pylist()
    files = lake.read(RELEASE, columns=["release", "split", "format", "uri"])
    files = files.to_pylist() if files is not None else []
    found = []
    for row in sorted(rows, key=lambda r: (r["release"], r["example_id"])):
        entry = {k: row[k] for k in ("release", "status", "kind", "example_id")}
        if row["status"] == "published":
            entry.update(split=row["split"], row=row["row"])
            entry["files"] = sorted(
                f["uri"] for f in files if f["release"] == row["release"] and f["split"] == row["split"]
            )
        found.append(entry)
    return found


def _cache(config: Config, lake: Lake, record: str) -> list[dict[str, Any]]:
    from feedstock.serving.cache import open_store

    try:
        entries = open_store(config, lake).load()
    except Exception:  # noqa: BLE001 - no cache store reachable (Redis down, no table yet): nothing cached
        return []
    return [{"id": e.id, "question": e.question} for e in entries if record in e.grounding]


def render(found: Lineage) -> str:
    """The lineage for a terminal: one line per artifact."""
    lines = [f"lineage of {found.record}"]
    for t in found.tables:
        lines.append(f"  table {t['table']}: versions {_ranges(t['versions'])} ({len(t['files'])} files)")
    for r in found.rag:
        lines.append(
            f"  rag {r['table']}@{r['released_version']}: {len(r['chunks'])} chunks; "
            f"LanceDB versions {_ranges(r['versions'])}"
        )
    for p in found.pretrain:
        where = f" shard {p['shard']} document {p['offset']}" if "offset" in p else ""
        lines.append(f"  pretrain release {p['release']}: {p['status']}{where}")
    for f in found.finetune:
        where = f" {f['split']} row {f['row']}" if f["status"] == "published" else ""
        lines.append(f"  finetune release {f['release']}: {f['status']} {f['kind']}{where}")
    for c in found.cache:
        lines.append(f"  cache entry {c['id']}: {c['question']}")
    if not found.found:
        lines.append("  (nothing in the lake holds it)")
    return "\n".join(lines)


def _ranges(numbers: list[int]) -> str:
    """``[0, 1, 2, 5]`` as ``0-2, 5``."""
    spans: list[list[int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


__all__ = ["Lineage", "record_tables", "render", "trace", "versions_holding"]
