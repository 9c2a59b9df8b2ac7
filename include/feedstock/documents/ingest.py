"""Incremental document ingestion from any fsspec URL into ``bronze.documents.<source>``.

Three steps, each one Airflow task (the parse step mapped over file batches):

1. :func:`plan` lists the source, compares each file with the last published version of its document and
   writes batch manifests of the files that may have changed. A file whose size and modification time are
   unchanged costs nothing more; a file that is gone becomes a tombstone.
2. :func:`parse_batch` reads, hashes and parses one batch. A file whose content hash is unchanged is not
   parsed. Files that cannot become text go to quarantine with a reason code.
3. :func:`commit` (after :mod:`feedstock.contracts` validation) appends the new versions and tombstones in one
   Delta commit and the quarantine rows in another. Each commit is made with the run's Delta transaction id
   against the table version the plan read (:class:`feedstock.lake.Txn`): a retry skips what it already
   committed and returns the same stats (from the receipt it leaves in staging once finished), and a run whose
   plan another run's commit made stale fails with one line (:class:`feedstock.errors.CommitConflict`) instead
   of appending the same versions twice.

Output ``bronze.documents.<source>``, one row per document version: ``doc_id`` (``<source>/<relative path>``),
``source, uri, title, text, mime_type, content_hash`` (sha256 of the bytes), ``size_bytes, modified_at,
ingested_at, is_deleted, doc_version`` (1, 2, ... per doc_id) and ``pages`` (PDF page boundaries as character
offsets into ``text``). Output ``quarantine.documents.<source>``: ``doc_id, uri, reason, detail, seen_at,
content_hash, size_bytes, modified_at``.

Accounting, per run: ``files_seen = ingested + unchanged + quarantined + forgotten`` (files a ``forget`` request
removed, which the source still holds), plus ``deleted`` tombstones. :func:`commit`
returns these stats plus ``version`` and ``quarantine_version``: the table versions this run's commits made, or
None when it had nothing to publish there.
"""

from __future__ import annotations

import fnmatch
import hashlib
import posixpath
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa

from feedstock import contracts
from feedstock.config import DocumentSource
from feedstock.documents.parsers import (
    BAD_LINE,
    PARSERS_VERSION,
    ParseLimits,
    ParseOptions,
    ParseWorker,
    Quarantined,
)
from feedstock.forget import forgotten_ids
from feedstock.lake import Commit, Lake, Txn, filesystem, join, modified_time

PAGE = pa.struct([("page", pa.int32()), ("start", pa.int64()), ("end", pa.int64())])
TS = pa.timestamp("us", tz="UTC")
DOCUMENTS_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("source", pa.string()),
        ("uri", pa.string()),
        ("title", pa.string()),
        ("text", pa.string()),
        ("mime_type", pa.string()),
        ("content_hash", pa.string()),
        ("size_bytes", pa.int64()),
        ("modified_at", TS),
        ("ingested_at", TS),
        ("is_deleted", pa.bool_()),
        ("doc_version", pa.int64()),
        ("pages", pa.list_(PAGE)),
    ]
)
QUARANTINE_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("uri", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("seen_at", TS),
        ("content_hash", pa.string()),
        ("size_bytes", pa.int64()),
        ("modified_at", TS),
    ]
)


def documents_table(source: str) -> str:
    return f"bronze.documents.{source}"


def quarantine_table(source: str) -> str:
    return f"quarantine.documents.{source}"


def staging_dir(lake: Lake, run_key: str, source: str) -> str:
    return lake.staging("ingest_documents", run_key, source)


@dataclass(frozen=True)
class Batch:
    """A reference to one batch manifest, small enough for XCom."""

    source: str
    run_key: str
    index: int
    manifest: str
    files: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _matches(relative: str, patterns: tuple[str, ...]) -> bool:
    return any(
        fnmatch.fnmatchcase(relative, p) or (p.startswith("**/") and fnmatch.fnmatchcase(relative, p[3:]))
        for p in patterns
    )


def list_files(source: DocumentSource, lake: Lake) -> list[dict[str, Any]]:
    """Every file under the source URI that its include/exclude globs select, with size and mtime."""
    fs, root = filesystem(source.uri, lake.s3)
    if not fs.exists(root):
        raise FileNotFoundError(
            f"source '{source.name}': field 'uri': {source.uri} does not exist or is unreachable"
        )
    files = []
    for path, info in sorted(fs.find(root, detail=True).items()):
        if info.get("type") == "directory":
            continue
        relative = posixpath.relpath(path, root) if root else path
        if not _matches(relative, source.include) or _matches(relative, source.exclude):
            continue
        modified = modified_time(info)
        files.append(
            {
                "relative": relative,
                "uri": fs.unstrip_protocol(path) if "://" in source.uri else path,
                "size": int(info.get("size") or 0),
                "modified_at": modified.isoformat() if modified else None,
            }
        )
    return files


def _latest(
    lake: Lake, name: str, key: str, order: str, columns: list[str], version: int | None
) -> dict[str, dict[str, Any]]:
    """The newest row per key of a lake table at a version, as ``{key: row}`` (only the given columns are read)."""
    if version is None:
        return {}
    table = lake.read(name, columns=[key, order, *columns], version=version)
    if table is None or table.num_rows == 0:
        return {}
    latest = duckdb.sql(
        f'select * from "table" qualify row_number() over (partition by "{key}" order by "{order}" desc) = 1'
    )
    rows = latest.to_arrow_table().to_pylist()
    return {row[key]: row for row in rows}


def plan(source: DocumentSource, lake: Lake, run_key: str) -> tuple[list[Batch], dict[str, Any]]:
    """Compare the source with the lake; write batch manifests of files to parse and the tombstone list."""
    files = list_files(source, lake)
    # The commit is made against exactly these versions: another run's commit in between refuses it.
    read_versions = {
        "documents": lake.version(documents_table(source.name)),
        "quarantine": lake.version(quarantine_table(source.name)),
    }
    state = _latest(
        lake,
        documents_table(source.name),
        "doc_id",
        "doc_version",
        ["content_hash", "size_bytes", "modified_at", "is_deleted"],
        read_versions["documents"],
    )
    held = _latest(
        lake,
        quarantine_table(source.name),
        "doc_id",
        "seen_at",
        ["content_hash", "size_bytes", "modified_at"],
        read_versions["quarantine"],
    )
    stage = staging_dir(lake, run_key, source.name)
    lake.clear(stage)
    blocked = forgotten_ids(lake)
    # When the parse settings changed since the last commit, every file is parsed again and only a changed text
    # becomes a version. A lake from before signatures were recorded was parsed by the first parsers.
    uri, now = parsed_with_uri(lake, source.name), parse_signature(source)
    before = lake.read_json(uri) if lake.exists(uri) else {**now, "parsers": 1}
    reparse = read_versions["documents"] is not None and before != now
    texts = _parsed_texts(lake, source, read_versions["documents"]) if reparse else {}
    todo, unchanged, still_quarantined, forgotten, present = [], 0, 0, 0, set()
    for file in files:
        doc_id = f"{source.name}/{file['relative']}"
        present.add(doc_id)
        if (
            doc_id in blocked
        ):  # a forget request removed it: the source still holding it does not bring it back
            forgotten += 1
            continue
        previous = state.get(doc_id)
        if previous and not previous["is_deleted"] and _same_file(previous, file) and not reparse:
            unchanged += 1
            continue
        last_bad = held.get(doc_id)
        if last_bad and _same_file(last_bad, file):
            still_quarantined += 1
            continue
        live = previous if previous and not previous["is_deleted"] else None
        todo.append(
            {
                **file,
                "doc_id": doc_id,
                "previous_hash": live["content_hash"] if live else None,
                "previous_version": previous["doc_version"] if previous else 0,
                "quarantined_hash": last_bad["content_hash"] if last_bad else None,
                "previous_text": texts.get(doc_id),
            }
        )
    tombstones = [
        {"doc_id": doc_id, "uri": row.get("uri"), "previous_version": row["doc_version"]}
        for doc_id, row in sorted(state.items())
        if not row["is_deleted"] and doc_id not in present
    ]
    batches = []
    for index, start in enumerate(range(0, len(todo), source.batch_size)):
        manifest = f"{stage}/manifests/batch-{index:05d}.json"
        lake.write_json(manifest, todo[start : start + source.batch_size])
        batches.append(
            Batch(source.name, run_key, index, manifest, len(todo[start : start + source.batch_size]))
        )
    summary = {
        "files_seen": len(files),
        "unchanged": unchanged,
        "quarantined": still_quarantined,
        "forgotten": forgotten,
        "to_parse": len(todo),
        "reparsed": sum(1 for f in todo if f["previous_text"]),
        "tombstones": tombstones,
        "read_versions": read_versions,
    }
    lake.write_json(f"{stage}/plan.json", summary)
    return batches, summary


def parse_signature(source: DocumentSource) -> dict[str, Any]:
    """The settings that shape a file's parsed text; when they change, the source's files are parsed again."""
    return {
        "parsers": PARSERS_VERSION,
        "html_extraction": source.html_extraction,
        "text_field": source.text_field,
        "title_field": source.title_field,
    }


def parsed_with_uri(lake: Lake, source: str) -> str:
    return join(lake.root, "ingest", "parsed_with", f"{source}.json")


def text_hash(title: str | None, text: str | None) -> str:
    """A document's parsed title and text, hashed the same way here and (with DuckDB's sha256) in :func:`plan`."""
    return hashlib.sha256(f"{title or ''}\x00{text or ''}".encode()).hexdigest()


def _parsed_texts(lake: Lake, source: DocumentSource, version: int | None) -> dict[str, str]:
    """``{doc_id: text_hash}`` of the source's live documents, for a re-parse to tell which texts changed."""
    table = lake.read(
        documents_table(source.name), ["doc_id", "doc_version", "is_deleted", "title", "text"], version
    )
    if table is None or table.num_rows == 0:
        return {}
    rows = duckdb.sql(
        """select doc_id, sha256(coalesce(title, '') || chr(0) || coalesce(text, '')) from "table"
           qualify row_number() over (partition by doc_id order by doc_version desc) = 1 and not is_deleted"""
    ).fetchall()
    return dict(rows)


def _same_file(previous: dict[str, Any], file: dict[str, Any]) -> bool:
    modified = previous.get("modified_at")
    modified = modified.isoformat() if isinstance(modified, datetime) else modified
    return (
        previous.get("size_bytes") == file["size"]
        and modified == file["modified_at"]
        and modified is not None
    )


def parse_batch(source: DocumentSource, lake: Lake, batch: Batch, as_of: datetime) -> dict[str, int]:
    """Read, hash and parse one batch; stage new document versions and quarantine rows as Parquet.

    Files are parsed in one :class:`~feedstock.documents.parsers.ParseWorker` process for the batch, within
    limits derived from the source's ``max_file_mb``: a file that expands too far, nests too deep, needs too much
    memory or runs out of time is quarantined (``too_large``, ``timeout``) and the batch goes on.

    A JSON Lines file with bad lines counts once, as ``ingested`` (its document is kept from the good lines);
    each bad line adds a quarantine row ``<doc_id>#L<line>`` with reason ``invalid_json``, which appears in the
    commit's ``quarantine_reasons`` but not in its file counts.
    """
    files = lake.read_json(batch.manifest)
    options = ParseOptions(
        text_field=source.text_field,
        title_field=source.title_field,
        limits=ParseLimits.for_max_file_mb(source.max_file_mb),
        html_content=source.html_extraction == "content",
    )
    max_bytes = int(source.max_file_mb * 1024 * 1024)
    documents, quarantined, counts = [], [], {"ingested": 0, "unchanged": 0, "quarantined": 0}

    def held(base: dict[str, Any], reason: str, detail: str) -> dict[str, Any]:
        return {**base, "reason": reason, "detail": detail, "seen_at": as_of}

    with ParseWorker() as worker:
        for file in files:
            modified = datetime.fromisoformat(file["modified_at"]) if file["modified_at"] else None
            base = {
                "doc_id": file["doc_id"],
                "uri": file["uri"],
                "size_bytes": file["size"],
                "modified_at": modified,
                "content_hash": None,
            }
            try:
                if file["size"] > max_bytes:
                    raise Quarantined(
                        "too_large", f"{file['size']} bytes is over the {source.max_file_mb} MB limit"
                    )
                fs, path = filesystem(file["uri"], lake.s3)
                with fs.open(path, "rb") as handle:
                    data = handle.read()
                base["content_hash"] = hashlib.sha256(data).hexdigest()
                if base["content_hash"] == file["previous_hash"] and not file.get("previous_text"):
                    counts["unchanged"] += 1  # touched, not changed: no parsing, no new version
                    continue
                if base["content_hash"] == file["quarantined_hash"]:
                    counts["quarantined"] += 1  # the same bad bytes as last time: already in quarantine
                    continue
                parsed, parser = worker.parse(file["relative"], data, options)
            except Quarantined as bad:
                counts["quarantined"] += 1
                quarantined.append(held(base, bad.reason, bad.detail))
                continue
            except (OSError, MemoryError) as exc:
                counts["quarantined"] += 1
                quarantined.append(held(base, "unreadable", f"{type(exc).__name__}: {exc}"[:300]))
                continue
            if file.get("previous_text") == text_hash(parsed.title, parsed.text):
                counts["unchanged"] += 1  # parsed again under new settings, to the same text: no new version
                continue
            counts["ingested"] += 1
            if parsed.extraction == "whole_page":  # an HTML page whose chrome could not be told from content
                counts["html_whole_page"] = counts.get("html_whole_page", 0) + 1
            documents.append(
                {
                    **base,
                    "source": source.name,
                    "title": parsed.title,
                    "text": parsed.text,
                    "mime_type": parser.mime_type,
                    "ingested_at": as_of,
                    "is_deleted": False,
                    "doc_version": file["previous_version"] + 1,
                    "pages": parsed.pages or None,
                }
            )
            quarantined.extend(
                held({**base, "doc_id": f"{file['doc_id']}#L{line}"}, BAD_LINE, f"line {line}: {why}")
                for line, why in parsed.bad_lines
            )
    stage = staging_dir(lake, batch.run_key, source.name)
    name = f"batch-{batch.index:05d}"
    lake.write_parquet(f"{stage}/parsed/{name}.parquet", pa.Table.from_pylist(documents, DOCUMENTS_SCHEMA))
    lake.write_parquet(
        f"{stage}/quarantine/{name}.parquet", pa.Table.from_pylist(quarantined, QUARANTINE_SCHEMA)
    )
    lake.write_json(f"{stage}/counts/{name}.json", counts)
    return counts


def tombstone_rows(source: str, tombstones: list[dict[str, Any]], as_of: datetime) -> pa.Table:
    rows = [
        {
            "doc_id": t["doc_id"],
            "source": source,
            "uri": t["uri"],
            "ingested_at": as_of,
            "is_deleted": True,
            "doc_version": t["previous_version"] + 1,
        }
        for t in tombstones
    ]
    return pa.Table.from_pylist(rows, DOCUMENTS_SCHEMA)


def commit(
    source: DocumentSource, lake: Lake, run_key: str, produced_by: dict[str, str], as_of: datetime
) -> dict[str, Any]:
    """Publish the validated batch outputs and tombstones of one source: one commit per table.

    Idempotent: a retry skips the commits this run already made and, once the commit finished, returns its
    receipt. Exclusive: when another run committed to a table after this run's plan read it, raises
    :class:`~feedstock.errors.CommitConflict` (one line) and writes nothing more.
    """
    stage = staging_dir(lake, run_key, source.name)
    if (receipt := lake.read_receipt(stage)) is not None:
        return receipt
    summary = lake.read_json(f"{stage}/plan.json")
    counts = {"ingested": 0, "unchanged": summary["unchanged"], "quarantined": summary["quarantined"]}
    counts["html_whole_page"] = 0
    for path in lake.staged_files(f"{stage}/counts", "*.json"):
        for key, value in lake.read_json(path).items():
            counts[key] = counts.get(key, 0) + value
    validated = lake.read_staged(f"{stage}/validated", schema=DOCUMENTS_SCHEMA)
    rejected = lake.read_staged(f"{stage}/quarantine", schema=QUARANTINE_SCHEMA)
    contract_failures = validated_failures(lake, stage)
    counts["ingested"] -= contract_failures
    counts["quarantined"] += contract_failures
    tombstones = tombstone_rows(source.name, summary["tombstones"], as_of)
    stats = {
        "files_seen": summary["files_seen"],
        "ingested": counts["ingested"],
        "unchanged": counts["unchanged"],
        "quarantined": counts["quarantined"],
        "forgotten": summary.get("forgotten", 0),
        "deleted": tombstones.num_rows,
        "contract_failures": contract_failures,
        "quarantine_reasons": _reason_counts(rejected),
        "html_whole_page": counts["html_whole_page"],  # HTML ingested whole: no content told from its chrome
        "reparsed": summary.get("reparsed", 0),  # files parsed again because the parse settings changed
    }
    if (
        stats["files_seen"]
        != stats["ingested"] + stats["unchanged"] + stats["quarantined"] + stats["forgotten"]
    ):
        raise RuntimeError(f"source '{source.name}': file accounting does not add up: {stats}")
    published = pa.concat_tables([validated, tombstones])
    inputs = (f"{source.uri}@{as_of.isoformat()}",)  # the source as it was listed for this interval
    read = summary["read_versions"]
    app_id = f"feedstock:ingest_documents:{source.name}"
    result: dict[str, Any] = {**stats, "version": None, "quarantine_version": None}
    if published.num_rows:
        result["version"] = lake.append(
            documents_table(source.name),
            published,
            Commit(produced_by, inputs, stats, Txn(app_id, run_key, read["documents"])),
        )
    if rejected.num_rows:
        result["quarantine_version"] = lake.append(
            quarantine_table(source.name),
            rejected,
            Commit(produced_by, inputs, stats, Txn(app_id, run_key, read["quarantine"])),
        )
    lake.write_json(parsed_with_uri(lake, source.name), parse_signature(source))
    lake.write_receipt(stage, result)
    lake.clean_staging("ingest_documents", run_key)
    return result


def validated_failures(lake: Lake, stage: str) -> int:
    path = f"{stage}/validation.json"
    return lake.read_json(path)["failed"] if lake.exists(path) else 0


def _reason_counts(rejected: pa.Table) -> dict[str, int]:
    if rejected.num_rows == 0:
        return {}
    counts = rejected.group_by("reason").aggregate([("reason", "count")])
    return dict(
        zip(counts.column("reason").to_pylist(), counts.column("reason_count").to_pylist(), strict=True)
    )


def validate(
    source: DocumentSource, lake: Lake, run_key: str, max_failure_ratio: float, as_of: datetime
) -> dict:
    """Check this run's parsed documents against the bronze contract; quarantine the rows that fail."""
    stage = staging_dir(lake, run_key, source.name)
    parsed = lake.read_staged(f"{stage}/parsed", schema=DOCUMENTS_SCHEMA)
    result = contracts.check(parsed, contracts.BRONZE_DOCUMENTS)
    lake.write_parquet(f"{stage}/validated/documents.parquet", result.passed)
    failed = parsed.take(pa.array(result.failed_rows, pa.int64()))
    rows = [
        {
            "doc_id": row["doc_id"],
            "uri": row["uri"],
            "reason": reason.split(":", 1)[0],
            "detail": reason,
            "seen_at": as_of,
            "content_hash": row["content_hash"],
            "size_bytes": row["size_bytes"],
            "modified_at": row["modified_at"],
        }
        for row, reason in zip(failed.to_pylist(), result.reasons, strict=True)
    ]
    lake.write_parquet(f"{stage}/quarantine/contract.parquet", pa.Table.from_pylist(rows, QUARANTINE_SCHEMA))
    lake.write_json(f"{stage}/validation.json", {"checked": result.checked, "failed": len(rows)})
    contracts.enforce_ratio(documents_table(source.name), len(rows), result.checked, max_failure_ratio)
    return {"checked": result.checked, "failed": len(rows)}
