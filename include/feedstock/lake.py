"""The lake: versioned Delta tables under one root URL (a local path or ``s3://bucket/prefix``).

A dataset name such as ``bronze.documents.handbook`` maps to the folder ``<root>/bronze/documents/handbook``.
Every write is one Delta commit, so a reader sees a whole run or none of it, and each commit carries
``produced_by`` (dag_id, task_id, run_id), ``inputs`` (name@version) and ``stats`` in its commit metadata;
the catalog is read back from there. Runs stage their intermediate files under ``<root>/_staging`` and a
single task turns them into one commit.

A commit made with a :class:`Txn` is idempotent and exclusive. It carries Delta transaction identifiers of its
writer and run: a retried commit finds the one it already made and returns its version instead of writing
again, and it is made against the table version the run planned from, so that Delta refuses it when another run
of the same writer committed in between (:class:`~feedstock.errors.CommitConflict`, one line). A finished
commit replaces its staging folder with a receipt under ``<root>/_receipts``, so a retry after the staged files
are gone returns the same result; the folders of dead runs are removed by age (:meth:`Lake.clean_staging`).

This module is the one home of storage: URIs, filesystems, S3 settings, Parquet staging and Delta commits.
"""

from __future__ import annotations

import json
import os
import posixpath
import tempfile
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, Transaction, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from fsspec.implementations.local import LocalFileSystem

from feedstock.errors import CommitConflict

STAGING = "_staging"
# A Parquet writer holds a whole row group in memory (delta-rs defaults to 1M rows): smaller row groups and
# files keep a writer's memory bounded by the batch, not the table.
TARGET_FILE_SIZE = 64 * 1024 * 1024
WRITER = WriterProperties(max_row_group_size=65_536)
RECEIPTS = "_receipts"  # <root>/_receipts/<dag>/<run>/<source>.json: what a finished commit returned
# A run's tasks finish within hours and its retries within minutes; staged files a week older than the newest
# run's are a dead run's.
STAGING_MAX_AGE = timedelta(days=7)


@dataclass(frozen=True)
class S3Settings:
    """Endpoint and credentials for ``s3://`` URLs; by default the standard AWS environment variables."""

    endpoint_url: str | None = None
    key: str | None = None
    secret: str | None = None
    region: str | None = None

    @classmethod
    def from_env(cls) -> S3Settings:
        env = os.environ.get
        return cls(
            endpoint_url=env("AWS_ENDPOINT_URL_S3") or env("AWS_ENDPOINT_URL"),
            key=env("AWS_ACCESS_KEY_ID"),
            secret=env("AWS_SECRET_ACCESS_KEY"),
            region=env("AWS_DEFAULT_REGION") or env("AWS_REGION") or "us-east-1",
        )

    def fsspec_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"client_kwargs": {"region_name": self.region}}
        if self.endpoint_url:
            options["endpoint_url"] = self.endpoint_url
        if self.key:
            options.update(key=self.key, secret=self.secret)
        return options

    def delta_options(self) -> dict[str, str]:
        options = {"AWS_REGION": self.region or "us-east-1"}
        if self.endpoint_url:
            options["AWS_ENDPOINT_URL"] = self.endpoint_url
            if self.endpoint_url.startswith("http://"):
                options["AWS_ALLOW_HTTP"] = "true"
        if self.key:
            options.update(AWS_ACCESS_KEY_ID=self.key, AWS_SECRET_ACCESS_KEY=self.secret or "")
        # Overlapping runs of one writer are refused by Delta's conflict check (see Txn); what this option gives
        # up is the atomicity of two commits racing for one version file within milliseconds. See
        # docs/decisions.md.
        options["AWS_S3_ALLOW_UNSAFE_RENAME"] = "true"
        return options


def filesystem(uri: str, s3: S3Settings | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem for a URI and the path inside it."""
    options = (s3 or S3Settings.from_env()).fsspec_options() if uri.startswith(("s3://", "s3a://")) else {}
    fs, path = fsspec.core.url_to_fs(uri, **options)
    return fs, path


def join(uri: str, *parts: str) -> str:
    return posixpath.join(uri.rstrip("/"), *parts) if "://" in uri else os.path.join(uri, *parts)


def modified_time(info: dict[str, Any]) -> datetime | None:
    """A listing entry's modification time in UTC (local files: ``mtime``; S3: ``LastModified``)."""
    value = info.get("mtime") or info.get("LastModified") or info.get("last_modified") or info.get("created")
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=UTC)
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    return None


@dataclass(frozen=True)
class Txn:
    """Which run commits, and from which table version it planned: what makes a commit idempotent and exclusive.

    ``app_id`` names the one writer of a table (``feedstock:<dag>:<source>``), ``run_key`` the run, and
    ``read_version`` the table version the run's plan read (None: the table did not exist yet). The commit
    carries two Delta transaction identifiers at :attr:`version`: ``<app_id>:<run_key>``, by which a retry finds
    the commit it already made, and ``<app_id>``, which makes Delta's conflict check refuse the commit when
    another run of the writer committed after ``read_version``.
    """

    app_id: str
    run_key: str
    read_version: int | None

    @property
    def run_app_id(self) -> str:
        return f"{self.app_id}:{self.run_key}"

    @property
    def version(self) -> int:
        """The table version the commit makes when nobody commits first (Delta's transaction version)."""
        return 0 if self.read_version is None else self.read_version + 1

    def to_dict(self) -> dict[str, Any]:
        return {"app_id": self.app_id, "run_key": self.run_key, "read_version": self.read_version}


@dataclass(frozen=True)
class Commit:
    """What a task publishes alongside its data: who made it, from what, and the counts.

    With a ``txn`` the commit is idempotent and exclusive (see :class:`Txn`); ``metadata`` adds further commit
    metadata under its own keys.
    """

    produced_by: dict[str, str]
    inputs: tuple[str, ...] = ()
    stats: dict[str, Any] | None = None
    txn: Txn | None = None
    metadata: dict[str, Any] | None = None

    def properties(self) -> CommitProperties:
        metadata = {
            **(self.metadata or {}),
            "produced_by": dict(self.produced_by),
            "inputs": list(self.inputs),
            "stats": self.stats or {},
        }
        transactions = None
        if self.txn is not None:
            metadata["txn"] = self.txn.to_dict()
            transactions = [
                Transaction(app_id=self.txn.app_id, version=self.txn.version),
                Transaction(app_id=self.txn.run_app_id, version=self.txn.version),
            ]
        return CommitProperties(
            custom_metadata=json.loads(json.dumps(metadata, default=str)),  # dates as ISO strings
            app_transactions=transactions,
        )


_observers: list[Callable[[str, str], None]] = []


def observe(callback: Callable[[str, str], None]) -> None:
    """Call ``callback(kind, uri)`` for every table this process reads (``"read"``) or writes (``"write"``), and
    for every input a commit names: how the Airflow glue reports a task's OpenLineage inputs and outputs (the
    library itself imports no Airflow). Registering a callback twice is a no-op."""
    if callback not in _observers:
        _observers.append(callback)


def _notify(kind: str, uri: str) -> None:
    for callback in _observers:
        callback(kind, uri)


class Lake:
    """Delta tables and staging files under one root URL."""

    def __init__(self, root: str, s3: S3Settings | None = None):
        self.root = root.rstrip("/")
        self.s3 = s3 or S3Settings.from_env()
        self.fs, self.root_path = filesystem(self.root, self.s3)

    # ---- tables -------------------------------------------------------------------------------------
    def uri(self, name: str) -> str:
        return join(self.root, *name.split("."))

    @property
    def storage_options(self) -> dict[str, str] | None:
        return self.s3.delta_options() if self.root.startswith(("s3://", "s3a://")) else None

    def table(self, name: str, version: int | None = None) -> DeltaTable | None:
        try:
            return DeltaTable(self.uri(name), version=version, storage_options=self.storage_options)
        except TableNotFoundError:
            return None

    def version(self, name: str) -> int | None:
        table = self.table(name)
        return None if table is None else table.version()

    def pinned(self, name: str) -> str:
        """``name@version``: how a commit records the exact version of an input it read."""
        return f"{name}@{self.version(name)}"

    def dataset(self, name: str, version: int | None = None) -> ds.Dataset | None:
        table = self.table(name, version)
        if table is None:
            return None
        _notify("read", self.uri(name))
        return table.to_pyarrow_dataset()

    def record_write(self, name: str, commit: Commit) -> None:
        """Tell the observers: ``name`` was written, from the commit's inputs (``name@version`` of a lake table, or
        ``<source uri>@<as of>``)."""
        for pinned in commit.inputs:
            base = pinned.rsplit("@", 1)[0]
            _notify("read", base if "://" in base or base.startswith("/") else self.uri(base))
        _notify("write", self.uri(name))

    def read(
        self, name: str, columns: list[str] | None = None, version: int | None = None
    ) -> pa.Table | None:
        dataset = self.dataset(name, version)
        if dataset is None:
            return None
        columns = [c for c in columns if c in dataset.schema.names] if columns else None
        return dataset.to_table(columns=columns)

    def append(self, name: str, data: pa.Table | pa.RecordBatchReader, commit: Commit) -> int:
        """Append rows in one commit (creating the table, or adding new columns, as needed)."""
        return self._write(name, data, commit, mode="append", schema_mode="merge")

    def replace(self, name: str, data: pa.Table | pa.RecordBatchReader, commit: Commit) -> int:
        """Replace the table's rows and schema in one commit (earlier versions stay readable)."""
        return self._write(name, data, commit, mode="overwrite", schema_mode="overwrite")

    def _write(self, name: str, data, commit: Commit, mode: str, schema_mode: str) -> int:
        if (done := self.committed(name, commit.txn)) is not None:
            return done["version"]
        with self.writing(name, commit) as target:
            write_deltalake(
                self.uri(name) if target is None else target,
                data,
                mode=mode,
                schema_mode=schema_mode,
                storage_options=self.storage_options,
                target_file_size=TARGET_FILE_SIZE,
                writer_properties=WRITER,
                commit_properties=commit.properties(),
            )
        self.record_write(name, commit)
        return self.version(name) if target is None else target.version()  # type: ignore[return-value]

    def upsert(self, name: str, data: pa.Table | pa.RecordBatchReader, key: str, commit: Commit) -> int:
        """Insert new keys and replace existing ones, in one commit."""
        if (done := self.committed(name, commit.txn)) is not None:
            return done["version"]
        with self.writing(name, commit) as target:
            if target is None:
                return self.append(name, data, commit)
            (
                target.merge(
                    data,
                    predicate=f"target.`{key}` = source.`{key}`",
                    source_alias="source",
                    target_alias="target",
                    merge_schema=True,
                    writer_properties=WRITER,
                    commit_properties=commit.properties(),
                )
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute()
            )
        self.record_write(name, commit)
        return target.version()

    def restore(self, name: str, version: int, commit: Commit) -> int:
        """Bring a table back to an earlier version in one new commit (the versions in between stay readable)."""
        if (done := self.committed(name, commit.txn)) is not None:
            return done["version"]
        with self.writing(name, commit) as target:
            if target is None:
                raise FileNotFoundError(f"{name}: there is no table to restore")
            target.restore(version, commit_properties=commit.properties())
        return target.version()

    @contextmanager
    def writing(self, name: str, commit: Commit) -> Iterator[DeltaTable | None]:
        """The table a commit is made to (None: not created yet), turning a refused commit into one line.

        With a ``commit.txn`` the table is opened at the version the run planned from, so Delta checks the commit
        against every commit made since: one by another run of the same writer (or, for a MERGE, any new data)
        refuses it, and :class:`CommitConflict` says so in one line.
        """
        txn = commit.txn
        if txn is not None and txn.read_version is not None:
            target = self.table(name, version=txn.read_version)
        else:
            target = self.table(name)
            if target is not None and txn is not None and target.transaction_version(txn.app_id) is not None:
                raise CommitConflict(
                    f"{name}: another run of {txn.app_id} created the table after run {txn.run_key} planned; "
                    "run it again to plan from the table"
                )
        try:
            yield target
        except CommitFailedError as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            planned = "" if txn is None else f" after run {txn.run_key} read version {txn.read_version}"
            raise CommitConflict(
                f"{name}: another run committed{planned}, so this commit was refused ({reason}); "
                "run it again to plan from the new version"
            ) from exc

    def committed(self, name: str, txn: Txn | None) -> dict[str, Any] | None:
        """The commit (a :meth:`history` entry) this run already made from the plan read at ``txn.read_version``."""
        if txn is None:
            return None
        return next(
            (
                entry
                for entry in self.commits_of(name, txn)
                if entry["txn"].get("read_version") == txn.read_version
            ),
            None,
        )

    def commits_of(self, name: str, txn: Txn) -> list[dict[str, Any]]:
        """Every commit a run made to a table, newest first; the log is read only when Delta holds the run's
        transaction identifier."""
        table = self.table(name)
        if table is None or table.transaction_version(txn.run_app_id) is None:
            return []
        return [
            entry
            for entry in self.history(name)
            if isinstance(entry.get("txn"), dict)
            and entry["txn"].get("app_id") == txn.app_id
            and entry["txn"].get("run_key") == txn.run_key
        ]

    def history(self, name: str) -> list[dict[str, Any]]:
        """Commits of a table, newest first, with their feedstock metadata decoded."""
        table = self.table(name)
        if table is None:
            return []
        entries = []
        for entry in table.history():
            for field_name in ("produced_by", "inputs", "stats", "txn"):
                if isinstance(entry.get(field_name), str):
                    entry[field_name] = json.loads(entry[field_name])
            entries.append(entry)
        return entries

    def last_commit(self, name: str) -> dict[str, Any] | None:
        """The newest commit made by feedstock (one that carries ``produced_by``)."""
        return next((entry for entry in self.history(name) if "produced_by" in entry), None)

    def tables(self) -> list[str]:
        """Names of every Delta table under the root."""
        names = []
        for log in sorted(self.fs.glob(posixpath.join(self.root_path, "**", "_delta_log"))):
            relative = posixpath.relpath(posixpath.dirname(log), self.root_path)
            if not relative.startswith(STAGING):
                names.append(relative.replace("/", "."))
        return names

    # ---- staging ------------------------------------------------------------------------------------
    def staging(self, *parts: str) -> str:
        return join(self.root, STAGING, *parts)

    def write_parquet(self, uri: str, table: pa.Table) -> str:
        fs, path = filesystem(uri, self.s3)
        fs.makedirs(posixpath.dirname(path), exist_ok=True)
        with fs.open(path, "wb") as handle:
            pq.write_table(table, handle)
        return uri

    def read_parquet(
        self, uri: str, schema: pa.Schema | None = None, columns: list[str] | None = None
    ) -> pa.Table:
        fs, path = filesystem(uri, self.s3)
        with fs.open(path, "rb") as handle:
            return pq.read_table(handle, schema=schema, columns=columns)

    def staged_files(self, uri: str, pattern: str = "*.parquet") -> list[str]:
        """URIs of the staged files in a folder that match ``pattern``, sorted."""
        fs, path = filesystem(uri, self.s3)
        if not fs.exists(path):
            return []
        found = sorted(fs.glob(posixpath.join(path, pattern)))
        return [fs.unstrip_protocol(p) for p in found] if "://" in uri else found

    def staged_dataset(
        self, uri: str, pattern: str = "*.parquet", schema: pa.Schema | None = None
    ) -> ds.Dataset:
        """The staged files as one dataset; without a schema, the files' schemas unified (types widened)."""
        return self.parquet_dataset(self.staged_files(uri, pattern), schema)

    def parquet_dataset(self, uris: list[str], schema: pa.Schema | None = None) -> ds.Dataset:
        """Parquet files (URIs on one filesystem) as one dataset, read lazily; without a schema, the files'
        schemas unified (types widened)."""
        fs, _ = filesystem(uris[0] if uris else self.root, self.s3)
        paths = [filesystem(f, self.s3)[1] for f in uris]
        if schema is None and len(paths) > 1:
            schemas = [pq.read_schema(fs.open(path, "rb")) for path in paths]
            schema = pa.unify_schemas(schemas, promote_options="permissive")
        return ds.dataset(paths, filesystem=fs, format="parquet", schema=schema)

    @contextmanager
    def parquet_writer(self, uri: str, schema: pa.Schema) -> Iterator[pq.ParquetWriter]:
        """A Parquet file written a batch at a time (one row group per ``write_table``); closed on exit."""
        fs, path = filesystem(uri, self.s3)
        fs.makedirs(posixpath.dirname(path), exist_ok=True)
        with fs.open(path, "wb") as handle, pq.ParquetWriter(handle, schema) as writer:
            yield writer

    @contextmanager
    def local_files(self, uris: list[str]) -> Iterator[list[str]]:
        """Local paths of the files, for a reader that only opens local files (DuckDB's ``read_parquet`` has no
        object store here: its httpfs extension cannot be installed offline). On a local lake, the files
        themselves; else copies in a temporary folder, removed on exit."""
        fs, _ = filesystem(uris[0] if uris else self.root, self.s3)
        if isinstance(fs, LocalFileSystem):
            yield [filesystem(uri, self.s3)[1] for uri in uris]
            return
        with tempfile.TemporaryDirectory(prefix="feedstock-local-") as folder:
            paths = [os.path.join(folder, f"{i:05d}.parquet") for i in range(len(uris))]
            for uri, path in zip(uris, paths, strict=True):
                fs.get_file(filesystem(uri, self.s3)[1], path)
            yield paths

    def read_staged(self, uri: str, pattern: str = "*.parquet", schema: pa.Schema | None = None) -> pa.Table:
        if not self.staged_files(uri, pattern):
            return schema.empty_table() if schema is not None else pa.table({})
        return self.staged_dataset(uri, pattern, schema).to_table()

    def exists(self, uri: str) -> bool:
        fs, path = filesystem(uri, self.s3)
        return fs.exists(path)

    def write_json(self, uri: str, value: Any) -> None:
        """Write a JSON file atomically: a reader sees the old file or the new one, never a part of it.

        Pointers (``rag/CURRENT.json``), markers and manifests are rewritten in place, so a writer killed mid-way
        must leave the previous file. Locally the JSON goes to a hidden temporary file beside the target, is
        synced, and replaces it by rename. On an object store one PUT of the whole object is already atomic.
        """
        fs, path = filesystem(uri, self.s3)
        fs.makedirs(posixpath.dirname(path), exist_ok=True)
        if not isinstance(fs, LocalFileSystem):
            fs.pipe_file(path, json.dumps(value, sort_keys=True, default=str).encode())
            return
        folder, name = os.path.split(path)
        temporary = os.path.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")  # matches no ``*.json`` glob
        try:
            with open(temporary, "w", encoding="utf-8") as handle:
                json.dump(value, handle, sort_keys=True, default=str)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)

    def read_json(self, uri: str) -> Any:
        fs, path = filesystem(uri, self.s3)
        with fs.open(path, "r") as handle:
            return json.load(handle)

    def clear(self, uri: str) -> None:
        """Delete a file or folder; locally, also the staging folders it leaves empty (object stores have none)."""
        fs, path = filesystem(uri, self.s3)
        if fs.exists(path):
            fs.rm(path, recursive=True)
        if "://" not in self.root:
            staging = os.path.realpath(self.staging())
            parent = os.path.dirname(os.path.realpath(path))
            while (parent == staging or parent.startswith(staging + os.sep)) and os.path.isdir(parent):
                try:
                    os.rmdir(parent)  # only when empty: another run's files are never touched
                except OSError:
                    break
                parent = os.path.dirname(parent)

    def receipt_uri(self, stage: str) -> str:
        """Where the receipt of a staging folder's commit is kept: ``_receipts/<the same path>.json``."""
        prefix = self.staging()
        if not stage.startswith(prefix + "/"):
            raise ValueError(f"{stage} is not a staging folder of the lake {self.root}")
        return join(self.root, RECEIPTS, *stage[len(prefix) + 1 :].strip("/").split("/")) + ".json"

    def read_receipt(self, stage: str) -> dict[str, Any] | None:
        """What the finished commit of a staging folder returned; None while it has not finished."""
        uri = self.receipt_uri(stage)
        return self.read_json(uri) if self.exists(uri) else None

    def write_receipt(self, stage: str, receipt: dict[str, Any]) -> None:
        """Record that a staging folder's commit finished (a retry returns ``receipt``), then drop the folder."""
        self.write_json(self.receipt_uri(stage), receipt)
        self.clear(stage)

    def clean_staging(
        self, dag: str, run_key: str, max_age: timedelta = STAGING_MAX_AGE, keep: Collection[str] = ()
    ) -> list[str]:
        """Remove the staging folders and receipts of a DAG's other runs that are ``max_age`` older than this run's.

        A folder's age is its newest file's (or, locally, folder's) modification time, compared with this run's
        newest: two times of the same store, so neither the wall clock nor a backfill's data interval can make a
        live run's folder look old. Runs in ``keep`` are left alone. Returns the run keys removed.
        """
        fs, _ = filesystem(self.root, self.s3)
        areas = [filesystem(join(self.root, area, dag), self.s3)[1] for area in (STAGING, RECEIPTS)]
        mine = max((t for area in areas if (t := _newest(fs, posixpath.join(area, run_key)))), default=None)
        if mine is None:
            return []
        removed = set()
        for area in areas:
            fs.invalidate_cache(area)
            if not fs.exists(area):
                continue
            for entry in fs.ls(area, detail=True):
                key = posixpath.basename(entry["name"].rstrip("/"))
                if entry.get("type") != "directory" or key == run_key or key in keep:
                    continue
                theirs = _newest(fs, entry["name"])
                if theirs is not None and mine - theirs > max_age:
                    fs.rm(entry["name"], recursive=True)
                    removed.add(key)
        return sorted(removed)


def _newest(fs: fsspec.AbstractFileSystem, path: str) -> datetime | None:
    """The newest modification time under a folder (object stores keep none for folders, only for files)."""
    if not fs.exists(path):
        return None
    infos = [fs.info(path), *fs.find(path, detail=True, withdirs=True).values()]
    return max((t for t in map(modified_time, infos) if t is not None), default=None)
