"""Deletion that reaches every feed (the ``forget`` DAG): the right to be forgotten, with a verified receipt.

A :class:`ForgetRequest` names records by id (``doc_ids``), by ``source``, or by content (``contains``: every
record holding one of these strings, such as an e-mail address). :func:`resolve` turns it into record ids, reading
the bronze tables, the corpus and dataset sources (a corpus document or a dataset record never passes through
bronze), and the cache. Then each store forgets them (:data:`STORES`, one task each):

- ``tables``: every lake table that holds records (bronze, ``rag.index``, the feeds' dedup state and rejects):
  a Delta delete, then the data files that held the records are removed, so no version can read them again;
- ``rag``: every LanceDB index table; the rows are deleted, the files compacted, the indexes rebuilt and old
  versions removed, and the search pointer names the new version;
- ``pretrain``: each release's affected shards are rewritten (:mod:`feedstock.pretrain.forget`);
- ``finetune``: each release's files lose the examples' lines (:mod:`feedstock.finetune.forget`);
- ``cache``: the answers grounded on the records, or holding the strings.

:func:`verify` then reads every file under the lake root (Parquet decoded column by column, compressed files
decompressed, everything else as bytes) and every LanceDB version for the strings, and :func:`receipt` appends the
outcome to ``governance.forget_receipts``, with hashes in place of the strings and record ids. The ids also go to
``governance.forgotten``, which the feeds' readers consult, so a source that still holds a record does not bring
it back (:func:`forgotten_ids`).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import posixpath
import warnings
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from feedstock.config import Config, ConfigError, CorpusSource, DatasetSource, WarehouseSource
from feedstock.lake import Commit, Lake, filesystem
from feedstock.lineage import record_tables, versions_holding

log = logging.getLogger(__name__)

RECEIPTS = "governance.forget_receipts"
FORGOTTEN = "governance.forgotten"
STORES = ("tables", "rag", "pretrain", "finetune", "cache")
MIN_CONTAINS = 6  # characters: a shorter string would match far more than one person's data


@dataclass(frozen=True)
class ForgetRequest:
    doc_ids: tuple[str, ...] = ()
    source: str | None = None
    contains: tuple[str, ...] = ()
    verify: tuple[str, ...] = ()  # more strings the verification must not find (a name, a phone number)

    def __post_init__(self) -> None:
        for name in ("doc_ids", "contains", "verify"):
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)) or not all(
                isinstance(v, str) and v.strip() for v in value
            ):
                raise ConfigError(f"forget request: field '{name}' must be a list of non-empty strings")
        if self.source is not None and (not isinstance(self.source, str) or not self.source.strip()):
            raise ConfigError("forget request: field 'source' must be a source name")
        if short := [v for v in self.contains if len(v) < MIN_CONTAINS]:
            raise ConfigError(
                f"forget request: field 'contains' needs strings of {MIN_CONTAINS}+ characters, got {len(short)} "
                "shorter"
            )
        if not (self.doc_ids or self.source or self.contains):
            raise ConfigError("forget request: name records by 'doc_ids', 'source' or 'contains'")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ForgetRequest:
        unknown = sorted(set(params) - {"doc_ids", "source", "contains", "verify"})
        if unknown:
            raise ConfigError(f"forget request: unknown field '{unknown[0]}'")

        def listed(name: str):  # a list stays a list (as a tuple); anything else is refused by __post_init__
            value = params.get(name) or ()
            return tuple(value) if isinstance(value, list | tuple) else value

        return cls(
            doc_ids=listed("doc_ids"),
            source=params.get("source") or None,
            contains=listed("contains"),
            verify=listed("verify"),
        )

    @property
    def strings(self) -> tuple[str, ...]:
        """What no file may hold afterwards."""
        return tuple(dict.fromkeys((*self.contains, *self.verify)))

    def summary(self) -> dict[str, Any]:
        """The request without its content: counts and hashes."""
        return {
            "doc_ids": len(self.doc_ids),
            "source": self.source,
            "contains": [digest(s) for s in self.contains],
            "verify": [digest(s) for s in self.verify],
        }


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


# ---- which records --------------------------------------------------------------------------------------------


def _matches(table: pa.Table, strings: tuple[str, ...]) -> pa.Array:
    """Rows of ``table`` with any of ``strings`` in any text column (case-insensitive)."""
    hit = pa.array([False] * table.num_rows)
    for column in _text_columns(table):
        for s in strings:
            found = pc.fill_null(pc.match_substring(column, s, ignore_case=True), False)
            hit = pc.or_(hit, found)
    return hit


def _text_columns(table: pa.Table) -> list[pa.Array]:
    """Every string in a table, nested ones too (list and struct columns, such as chat messages), as arrays
    aligned with the rows where they are flat; nested values are matched per row through their JSON form."""
    columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            columns.append(column)
        elif pa.types.is_nested(field.type):
            columns.append(pa.array([None if v is None else json.dumps(v) for v in column.to_pylist()]))
    return columns


def resolve(config: Config, lake: Lake, request: ForgetRequest) -> list[str]:
    """The record ids the request names (see the module docstring)."""
    ids = set(request.doc_ids)
    if request.source:
        prefix = request.source + "/"
        for name, column, _ in record_tables(config, lake, prefix):
            values = lake.read(name, columns=[column])
            if values is None:
                continue
            found = {v for v in pc.cast(values[column], pa.string()).to_pylist() if v is not None}
            if name.startswith("bronze.warehouse."):
                ids |= {prefix + v for v in found}
            else:
                ids |= {v for v in found if v.startswith(prefix)}
    if request.contains:
        ids |= _containing(config, lake, request.contains)
    return sorted(ids)


def _containing(config: Config, lake: Lake, strings: tuple[str, ...]) -> set[str]:
    found: set[str] = set()
    for name in lake.tables():
        if name.startswith("bronze.documents."):
            table = lake.read(name)
            found |= set(table.filter(_matches(table, strings))["doc_id"].to_pylist())
        elif name.startswith("bronze.warehouse."):
            source = next((s for s in config.sources if s.name == name.rsplit(".", 1)[-1]), None)
            if isinstance(source, WarehouseSource):
                table = lake.read(name)
                keys = table.filter(_matches(table, strings))[source.key]
                found |= {f"{source.name}/{k}" for k in pc.cast(keys, pa.string()).to_pylist()}
    for source in config.sources:
        if isinstance(source, CorpusSource):
            found |= _corpus_containing(source, lake, strings)
        elif isinstance(source, DatasetSource):
            found |= _dataset_containing(source, lake, strings)
    return found


def _corpus_containing(source: CorpusSource, lake: Lake, strings: tuple[str, ...]) -> set[str]:
    from feedstock.pretrain.corpus import ShardUnreadable, list_shards, read_batches
    from feedstock.stages.steps import Document

    lowered = [s.lower() for s in strings]
    found = set()
    for shard in list_shards(source, lake):
        try:
            for batch in read_batches(shard, lake, 1_000):
                for doc in batch:
                    if isinstance(doc, Document) and any(s in doc.text.lower() for s in lowered):
                        found.add(doc.doc_id)
        except (
            ShardUnreadable,
            OSError,
            ValueError,
        ) as exc:  # the feed quarantines it; nothing of it is published
            log.warning("forget: %s is unreadable (%s); its documents were never published", shard.label, exc)
    return found


def _dataset_containing(source: DatasetSource, lake: Lake, strings: tuple[str, ...]) -> set[str]:
    from feedstock.documents.ingest import list_files
    from feedstock.finetune.records import Example, read_file

    lowered = [s.lower() for s in strings]
    found = set()
    for file in list_files(source, lake):  # type: ignore[arg-type]
        try:
            for batch in read_file(source, file, lake, 1_000):
                for example in batch:
                    if isinstance(example, Example):
                        text = json.dumps([example.messages, example.chosen, example.rejected]).lower()
                        if any(s in text for s in lowered):
                            found.add(example.record_id)
        except (OSError, ValueError) as exc:  # a quarantined file: nothing of it was published
            log.warning("forget: %s is unreadable (%s)", file["relative"], exc)
    return found


# ---- the stores -----------------------------------------------------------------------------------------------


def forget_store(
    store: str,
    config: Config,
    lake: Lake,
    ids: list[str],
    request: ForgetRequest,
    produced_by: dict[str, str],
) -> dict[str, Any]:
    """Remove ``ids`` from one store; returns what was removed where (counts, versions, no content)."""
    if not ids and not (store == "cache" and request.strings):
        return {}
    return {
        "tables": _tables,
        "rag": _rag,
        "pretrain": _pretrain,
        "finetune": _finetune,
        "cache": _cache,
    }[store](config, lake, set(ids), request, produced_by)


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# Tables the feeds read with pyarrow filters: rewritten by pyarrow, since the files a delta-rs delete writes hold
# string_view columns, which pyarrow cannot compare with a string literal.
_REWRITTEN = ("pretrain.documents", "pretrain.rejects", "finetune.rejects")


def _tables(config, lake, ids, request, produced_by) -> dict[str, Any]:
    removed = {}
    for name, column, _ in _targets(config, lake, ids):
        values = _values(config, name, ids)
        if not values:
            continue
        versions, files = versions_holding(lake, name, column, values)
        if not versions:
            continue
        commit = Commit(produced_by, stats={"forget": True})
        if name in _REWRITTEN:
            table = lake.read(name)
            held = pc.is_in(pc.cast(table[column], pa.string()), pa.array(sorted(values), pa.string()))
            lake.replace(name, table.filter(pc.invert(held)), commit)
            rows = int(pc.sum(held.cast(pa.int64())).as_py() or 0)
        else:
            predicate = f"CAST(`{column}` AS STRING) IN ({', '.join(map(_literal, sorted(values)))})"
            rows = (
                lake.table(name)
                .delete(predicate, commit_properties=commit.properties())
                .get("num_deleted_rows", 0)
            )
            lake.record_write(name, commit)
        _drop_files(lake, name, files)
        removed[name] = {"rows": rows, "versions": versions, "files_removed": len(files)}
    return removed


def _targets(config, lake, ids) -> list[tuple[str, str, str]]:
    """Tables to delete from: every record table but ``finetune.examples``, which the finetune store rewrites."""
    seen, targets = set(), []
    for record in sorted({i.split("/", 1)[0] + "/" for i in ids}):
        for name, column, value in record_tables(config, lake, record):
            if name not in seen and name != "finetune.examples":
                seen.add(name)
                targets.append((name, column, value))
    return targets


def _values(config, name: str, ids: set[str]) -> set[str]:
    """The column values of ``ids`` in table ``name``: the key part for a warehouse bronze table."""
    if name.startswith("bronze.warehouse."):
        prefix = name.rsplit(".", 1)[-1] + "/"
        return {i[len(prefix) :] for i in ids if i.startswith(prefix)}
    return set(ids)


def _drop_files(lake: Lake, name: str, files: list[str]) -> None:
    """Delete data files that held forgotten rows and that the table's latest version no longer reads (a vacuum
    of just those files: the versions that read them can no longer be loaded, the others still can)."""
    live = set(lake.table(name).file_uris())
    for uri in files:
        if uri not in live:
            fs, path = filesystem(uri, lake.s3)
            if fs.exists(path):
                fs.rm(path)


def _rag(config, lake, ids, request, produced_by) -> dict[str, Any]:
    from feedstock.rag.index import INDEX_TABLE, _connect, index_table, pointer_uri, read_pointer

    pointer = read_pointer(lake)
    db = _connect(lake)
    removed = {}
    where = f"doc_id IN ({', '.join(map(_literal, sorted(ids)))})"
    for name in db.table_names():
        table = db.open_table(name)
        if "doc_id" not in table.schema.names or not (held := table.count_rows(where)):
            continue
        _rewrite_without(table, where)
        index_table(config, table)
        _drop_old_versions(table)
        removed[name] = {"chunks": held, "version": table.version}
        if pointer and pointer.get("table") == name:
            pointer = {**pointer, "version": table.version}
    if pointer and removed:
        # rag.index, the lake's record of the release, was edited by the tables store: point at that version too,
        # or the next rag_feed would take it for an interrupted release and roll it back.
        pointer["index_version"] = lake.version(INDEX_TABLE)
        lake.write_json(pointer_uri(lake), pointer)
    return removed


def _rewrite_without(table, where: str) -> None:
    """Delete rows from a LanceDB table so that their bytes are gone: a delete only marks rows, and compaction
    keeps a fragment with few deleted rows, so the rest is written anew and the old files go with the old
    versions (LanceDB's own compaction options need the separate ``pylance`` package)."""
    table.delete(where)
    table.add(table.to_arrow(), mode="overwrite")
    _drop_old_versions(table)


def _drop_old_versions(table) -> None:
    """Every version but the latest, and the files only they read (the forget tasks hold the release pool: no
    feed writes the table meanwhile; a search process reads the version the pointer names, which is the latest)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"optimize\(cleanup_older_than=0\)", category=UserWarning)
        table.optimize(cleanup_older_than=timedelta(0), delete_unverified=True)


def _pretrain(config, lake, ids, request, produced_by) -> dict[str, Any]:
    from feedstock.pretrain.forget import forget_in_release, note
    from feedstock.pretrain.tables import RELEASE
    from feedstock.pretrain.workspace import release_dir

    rows = lake.read(RELEASE)
    if rows is None:
        return {}
    files = rows.to_pylist()
    results, updated = [], []
    for number in sorted({f["release"] for f in files}):
        own = [f for f in files if f["release"] == number]
        result = forget_in_release(config, lake, own, ids)
        if result is None:
            updated += own
            continue
        note(lake, release_dir(lake, number), produced_by["run_id"], result)
        results.append({k: result[k] for k in ("release", "documents", "copies", "shards")})
        updated += result["files"]
    if results:
        lake.replace(
            RELEASE,
            pa.Table.from_pylist(updated, schema=rows.schema),
            Commit(produced_by, stats={"forget": results}),
        )
    return {"releases": results}


def _finetune(config, lake, ids, request, produced_by) -> dict[str, Any]:
    from feedstock.finetune.forget import forget_examples, note
    from feedstock.finetune.release import release_dir
    from feedstock.finetune.tables import EXAMPLES, RELEASE

    examples = lake.read(EXAMPLES)
    if examples is None:
        return {}
    versions, old_files = versions_holding(lake, EXAMPLES, "record_id", ids)
    if not versions:
        return {}
    release_rows = lake.read(RELEASE)
    files = release_rows.to_pylist() if release_rows is not None else []
    kept, updated, results = forget_examples(lake, examples, files, ids)
    commit = Commit(produced_by, stats={"forget": results})
    lake.replace(EXAMPLES, kept, commit)
    _drop_files(lake, EXAMPLES, old_files)
    if results:
        lake.replace(RELEASE, pa.Table.from_pylist(updated, schema=release_rows.schema), commit)
        for result in results:
            note(lake, release_dir(lake, result["release"]), produced_by["run_id"], result)
    return {"examples_removed": examples.num_rows - kept.num_rows, "versions": versions, "releases": results}


def _cache(config, lake, ids, request, produced_by) -> dict[str, Any]:
    from feedstock.serving.cache import LakeStore, open_store

    try:
        store = open_store(config, lake)
        entries = store.load()
    except Exception as exc:  # noqa: BLE001 - no store yet (no table, no Redis configured): nothing cached
        log.info(
            "forget: no cache to clean (%s)", str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        )
        return {}
    lowered = [s.lower() for s in request.strings]
    stale = [
        e.id
        for e in entries
        if ids.intersection(e.grounding) or any(s in f"{e.question}\n{e.answer}".lower() for s in lowered)
    ]
    deleted = store.delete(stale) if stale else 0
    if isinstance(store, LakeStore) and deleted:
        store.compact(_rewrite_without)
    return {"entries": deleted}


# ---- what the release files and notes share -------------------------------------------------------------------


def replace_file(lake: Lake, uri: str, write) -> None:
    """Write a file beside ``uri`` and move it over it: a reader sees the old file or the new one."""
    fs, path = filesystem(uri, lake.s3)
    partial = path + ".forget-partial"
    with fs.open(partial, "wb") as handle:
        write(handle)
    fs.mv(partial, path)


def note_deletion(
    lake: Lake,
    release_dir: str,
    request: str,
    removed: dict[str, Any],
    published: str,
    card: str,
    **current: Any,
) -> None:
    """Record a deletion in a release's ``stats.json`` (counts only: ``forgotten`` sums the integer counts of
    ``removed`` and lists each request; ``published`` drops by the first of them; ``current`` replaces stats) and
    add ``card`` to its data card (rewritten whole: object stores cannot append)."""
    uri = posixpath.join(release_dir, "stats.json")
    stats = lake.read_json(uri)
    forgotten = stats.setdefault("forgotten", {"requests": []})
    for key, value in removed.items():
        if isinstance(value, int):
            forgotten[key] = forgotten.get(key, 0) + value
    forgotten["requests"].append({"request": request, **removed})
    stats[published] = stats.get(published, 0) - next(v for v in removed.values() if isinstance(v, int))
    stats.update(current)
    lake.write_json(uri, stats)
    fs, path = filesystem(posixpath.join(release_dir, "README.md"), lake.s3)
    with fs.open(path, "r", encoding="utf-8") as handle:
        text = handle.read()
    replace_file(
        lake, posixpath.join(release_dir, "README.md"), lambda h: h.write((text + card).encode("utf-8"))
    )


# ---- after: the block list, the verification, the receipt ------------------------------------------------------


def block(lake: Lake, ids: list[str], produced_by: dict[str, str]) -> None:
    """Record the ids in ``governance.forgotten``: the feeds do not read them again from a source that holds them."""
    rows = pa.table(
        {
            "record_id": pa.array(ids, pa.string()),
            "request": pa.array([produced_by["run_id"]] * len(ids), pa.string()),
        }
    )
    lake.append(FORGOTTEN, rows, Commit(produced_by, stats={"records": len(ids)}))


def forgotten_ids(lake: Lake) -> set[str]:
    """Every record id a forget request removed (and no request has lifted)."""
    table = lake.read(FORGOTTEN, columns=["record_id"])
    return set(table["record_id"].to_pylist()) if table is not None else set()


def verify(lake: Lake, strings: tuple[str, ...]) -> dict[str, Any]:
    """Look for ``strings`` in every file under the lake root and in every version of every LanceDB table.

    Parquet files are decoded column by column (their pages are compressed, so their bytes prove nothing),
    ``.gz`` files decompressed; every other file is searched as bytes, case-insensitively.
    """
    fs, root = filesystem(lake.root, lake.s3)
    fs.invalidate_cache()  # s3fs lists from a cache that earlier tasks of this process filled
    needles = [s.lower().encode() for s in strings]
    found, files, size = [], 0, 0
    for path in sorted(fs.find(root)):
        try:
            with fs.open(path, "rb") as handle:
                held, read = _stream_holds(handle, needles)
                if path.endswith(".parquet"):
                    handle.seek(0)
                    held |= _parquet_holds(handle, strings)
                elif path.endswith(".gz"):
                    handle.seek(0)
                    with gzip.open(handle) as unzipped:
                        held |= _stream_holds(unzipped, needles)[0]
        except FileNotFoundError:  # removed since the listing (a log clean-up): it holds nothing now
            continue
        files += 1
        size += read
        for number in sorted(held):
            found.append({"file": posixpath.relpath(path, root), "string": digest(strings[number])})
    found += _lancedb_versions(lake, strings)
    return {"files_scanned": files, "bytes_scanned": size, "strings": len(strings), "found": found}


def _stream_holds(handle, needles: list[bytes], block: int = 8 << 20) -> tuple[set[int], int]:
    """Which ``needles`` (lower-case) occur in a file, read a block at a time (a block's tail is kept, so a
    string across two blocks is found); and the bytes read."""
    keep = max((len(n) for n in needles), default=1) - 1
    tail, held, read = b"", set(), 0
    while chunk := handle.read(block):
        read += len(chunk)
        data = tail + chunk.lower()
        held |= {i for i, needle in enumerate(needles) if needle in data}
        tail = data[-keep:] if keep else b""
    return held, read


def _parquet_holds(handle, strings: tuple[str, ...]) -> set[int]:
    """Which of ``strings`` a Parquet file's decoded values hold, a row group at a time."""
    try:
        parquet = pq.ParquetFile(handle)
    except pa.ArrowInvalid:  # not Parquet after all: its bytes were searched
        return set()
    held: set[int] = set()
    for group in range(parquet.num_row_groups):
        held |= _table_holds(parquet.read_row_group(group), strings)
    return held


def _table_holds(table: pa.Table, strings: tuple[str, ...]) -> set[int]:
    """Which of ``strings`` occur in any string value of ``table``, nested ones too (vectorized)."""
    held = set()
    for leaf in _leaves(table.columns):
        for number, s in enumerate(strings):
            if number not in held and pc.any(pc.match_substring(leaf, s, ignore_case=True)).as_py():
                held.add(number)
    return held


def _leaves(arrays) -> list[pa.Array]:
    """The string arrays inside columns of any nesting (lists, structs, maps)."""
    leaves = []
    for array in arrays:
        array = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
        kind = array.type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            leaves.append(array)
        elif pa.types.is_string_view(kind):
            leaves.append(array.cast(pa.string()))
        elif pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_map(kind):
            leaves += _leaves([array.flatten()])
        elif pa.types.is_struct(kind):
            leaves += _leaves([array.field(i) for i in range(kind.num_fields)])
    return leaves


def _lancedb_versions(lake: Lake, strings: tuple[str, ...]) -> list[dict[str, Any]]:
    from feedstock.rag.index import _connect, each_version

    found = []
    db = _connect(lake)
    for name in db.table_names():
        table = db.open_table(name)
        for version in each_version(table):
            found += [
                {"file": f"lancedb:{name}@{version}", "string": digest(strings[i])}
                for i in sorted(_table_holds(table.to_arrow(), strings))
            ]
    return found


def receipt(
    lake: Lake,
    request: ForgetRequest,
    ids: list[str],
    removed: dict[str, Any],
    verification: dict[str, Any],
    produced_by: dict[str, str],
) -> dict[str, Any]:
    """Append the request's receipt to ``governance.forget_receipts``: counts, versions, hashes; no content."""
    row = {
        "request": produced_by["run_id"],
        "selector": json.dumps(request.summary()),
        "records": len(ids),
        "record_hashes": [digest(i) for i in ids],
        "removed": json.dumps(removed, default=str),
        "files_scanned": verification["files_scanned"],
        "bytes_scanned": verification["bytes_scanned"],
        "found": len(verification["found"]),
        "verified": not verification["found"],
    }
    lake.append(
        RECEIPTS,
        pa.Table.from_pylist([row]),
        Commit(produced_by, stats={"records": len(ids), "verified": row["verified"]}),
    )
    return row
