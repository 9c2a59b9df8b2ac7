"""The lake: versioned Delta tables under one root URL (a local path or ``s3://bucket/prefix``).

A dataset name such as ``bronze.documents.handbook`` maps to the folder ``<root>/bronze/documents/handbook``.
Every write is one Delta commit, so a reader sees a whole run or none of it, and each commit carries
``produced_by`` (dag_id, task_id, run_id), ``inputs`` (name@version) and ``stats`` in its commit metadata;
the catalog is read back from there. Runs stage their intermediate files under ``<root>/_staging`` and a
single task turns them into one commit.

This module is the one home of storage: URIs, filesystems, S3 settings, Parquet staging and Delta commits.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, WriterProperties, write_deltalake
from deltalake.exceptions import TableNotFoundError

STAGING = "_staging"
# A Parquet writer holds a whole row group in memory (delta-rs defaults to 1M rows): smaller row groups and
# files keep a writer's memory bounded by the batch, not the table.
TARGET_FILE_SIZE = 64 * 1024 * 1024
WRITER = WriterProperties(max_row_group_size=65_536)


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
        # Each table has exactly one producing task and the DAGs run one at a time, so no two writers race
        # on a commit; see docs/decisions.md.
        options["AWS_S3_ALLOW_UNSAFE_RENAME"] = "true"
        return options


def filesystem(uri: str, s3: S3Settings | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem for a URI and the path inside it."""
    options = (s3 or S3Settings.from_env()).fsspec_options() if uri.startswith(("s3://", "s3a://")) else {}
    fs, path = fsspec.core.url_to_fs(uri, **options)
    return fs, path


def join(uri: str, *parts: str) -> str:
    return posixpath.join(uri.rstrip("/"), *parts) if "://" in uri else os.path.join(uri, *parts)


@dataclass(frozen=True)
class Commit:
    """What a task publishes alongside its data: who made it, from what, and the counts."""

    produced_by: dict[str, str]
    inputs: tuple[str, ...] = ()
    stats: dict[str, Any] | None = None

    def properties(self) -> CommitProperties:
        return CommitProperties(
            custom_metadata={
                "produced_by": dict(self.produced_by),
                "inputs": list(self.inputs),
                "stats": json.loads(json.dumps(self.stats or {}, default=str)),  # dates as ISO strings
            }
        )


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
        return None if table is None else table.to_pyarrow_dataset()

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
        write_deltalake(
            self.uri(name),
            data,
            mode=mode,
            schema_mode=schema_mode,
            storage_options=self.storage_options,
            target_file_size=TARGET_FILE_SIZE,
            writer_properties=WRITER,
            commit_properties=commit.properties(),
        )
        return self.version(name)  # type: ignore[return-value]

    def upsert(self, name: str, data: pa.Table | pa.RecordBatchReader, key: str, commit: Commit) -> int:
        """Insert new keys and replace existing ones, in one commit."""
        table = self.table(name)
        if table is None:
            return self.append(name, data, commit)
        (
            table.merge(
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
        return self.version(name)  # type: ignore[return-value]

    def history(self, name: str) -> list[dict[str, Any]]:
        """Commits of a table, newest first, with their feedstock metadata decoded."""
        table = self.table(name)
        if table is None:
            return []
        entries = []
        for entry in table.history():
            for field_name in ("produced_by", "inputs", "stats"):
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

    def read_parquet(self, uri: str, schema: pa.Schema | None = None) -> pa.Table:
        fs, path = filesystem(uri, self.s3)
        with fs.open(path, "rb") as handle:
            return pq.read_table(handle, schema=schema)

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

    def read_staged(self, uri: str, pattern: str = "*.parquet", schema: pa.Schema | None = None) -> pa.Table:
        if not self.staged_files(uri, pattern):
            return schema.empty_table() if schema is not None else pa.table({})
        return self.staged_dataset(uri, pattern, schema).to_table()

    def exists(self, uri: str) -> bool:
        fs, path = filesystem(uri, self.s3)
        return fs.exists(path)

    def write_json(self, uri: str, value: Any) -> None:
        fs, path = filesystem(uri, self.s3)
        fs.makedirs(posixpath.dirname(path), exist_ok=True)
        with fs.open(path, "w") as handle:
            json.dump(value, handle, sort_keys=True, default=str)

    def read_json(self, uri: str) -> Any:
        fs, path = filesystem(uri, self.s3)
        with fs.open(path, "r") as handle:
            return json.load(handle)

    def clear(self, uri: str) -> None:
        fs, path = filesystem(uri, self.s3)
        if fs.exists(path):
            fs.rm(path, recursive=True)
