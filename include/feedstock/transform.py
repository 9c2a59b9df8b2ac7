"""The feeds' dbt inputs: the configured sources, landed in a run's own DuckDB file at pinned versions.

The dbt project is static: it never names a source. A feed's ``prepare`` task pins the bronze Delta version of
every configured source the feed reads (:func:`inputs`), and :func:`land` writes exactly those versions into
two tables of schema ``bronze`` in the run's DuckDB file, which dbt declares as its only sources:

- ``bronze.documents``: one row per document version of every ``documents`` source: ``doc_id, source, uri,
  title, text, mime_type, content_hash, size_bytes, modified_at, ingested_at, is_deleted, doc_version,
  pages`` (a list of ``{page, start, end}`` structs) and ``access_tags`` (a list, from the configuration).
- ``bronze.warehouse_documents``: one row per row of every ``warehouse`` source with a ``document`` template,
  rendered through it (``doc_id`` = ``<source>/<key>``; a row deleted at the source, or no longer matching the
  template's ``where``, is a tombstone): ``doc_id, source, uri, title, text, mime_type, content_hash,
  ingested_at, is_deleted, access_tags``.
- ``bronze.warehouse_conversations``: one row per row of every ``warehouse`` source with a ``finetune`` template,
  rendered through it: ``record_id`` (``<source>/<key>``), ``source, system, prompt, response, content_hash,
  is_deleted`` (deleted at the source, or no longer matching the template's ``where``).

So adding, renaming or removing a source is an edit of the YAML file and nothing else. A source that is no longer
configured is not landed, so its documents leave the feeds like deleted ones; its bronze tables stay in the lake
(the catalog lists them as detached). Templates are rendered here, per source, in SQL over the source's own typed
columns, so two sources may use one column name with different types.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from feedstock.config import Config, ConfigError, DocumentSource, WarehouseSource
from feedstock.lake import Lake

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

DOCUMENTS_DDL = """create table bronze.documents (
    doc_id varchar, source varchar, uri varchar, title varchar, text varchar, mime_type varchar,
    content_hash varchar, size_bytes bigint, modified_at timestamptz, ingested_at timestamptz,
    is_deleted boolean, doc_version bigint, pages struct(page integer, start bigint, "end" bigint)[],
    access_tags varchar[]
)"""
WAREHOUSE_DDL = """create table bronze.warehouse_documents (
    doc_id varchar, source varchar, uri varchar, title varchar, text varchar, mime_type varchar,
    content_hash varchar, ingested_at timestamptz, is_deleted boolean, access_tags varchar[]
)"""


CONVERSATIONS_DDL = """create table bronze.warehouse_conversations (
    record_id varchar, source varchar, system varchar, prompt varchar, response varchar, content_hash varchar,
    is_deleted boolean
)"""


def bronze_table(source: DocumentSource | WarehouseSource) -> str:
    return f"bronze.{'documents' if isinstance(source, DocumentSource) else 'warehouse'}.{source.name}"


def feed_sources(config: Config, names: set[str] | None = None) -> list[DocumentSource | WarehouseSource]:
    """The configured sources that reach the feeds through dbt: documents, and templated warehouse tables."""
    return [
        s
        for s in config.sources
        if (isinstance(s, DocumentSource) or (isinstance(s, WarehouseSource) and (s.document or s.finetune)))
        and (names is None or s.name in names)
    ]


def inputs(config: Config, lake: Lake, names: set[str] | None = None) -> list[str]:
    """``name@version`` of the bronze table of every feed source that has one, sorted: what a run reads."""
    pins = []
    for source in feed_sources(config, names):
        version = lake.version(bronze_table(source))
        if version is not None:
            pins.append(f"{bronze_table(source)}@{version}")
    return sorted(pins)


def fingerprint(*parts: Any) -> str:
    """A short, stable hash of what a feed run depends on (pins, configuration)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def land(config: Config, lake: Lake, duckdb_file: str, pins: list[str]) -> dict[str, int]:
    """Write the pinned bronze versions into the run's DuckDB file as dbt's sources; return rows per source."""
    import duckdb

    pinned = dict(pin.rsplit("@", 1) for pin in pins)
    counts: dict[str, int] = {}
    con = duckdb.connect(duckdb_file)
    try:
        for statement in (
            "create schema if not exists bronze",
            "drop table if exists bronze.documents",
            "drop table if exists bronze.warehouse_documents",
            "drop table if exists bronze.warehouse_conversations",
            DOCUMENTS_DDL,
            WAREHOUSE_DDL,
            CONVERSATIONS_DDL,
        ):
            con.execute(statement).fetchall()  # duckdb 2 keeps a result open until it is fetched
        for source in feed_sources(config):
            name = bronze_table(source)
            if name not in pinned:
                continue
            con.register("landing", lake.dataset(name, int(pinned[name])))
            before = _rows(con, source)
            if isinstance(source, DocumentSource):
                con.execute(
                    "insert into bronze.documents by name select * exclude (pages), "
                    'cast(pages as struct(page integer, start bigint, "end" bigint)[]) as pages, '
                    "$tags as access_tags from landing",
                    {"tags": list(source.access_tags)},
                ).fetchall()
            else:
                if source.document:
                    _render(con, source)
                if source.finetune:
                    _render_conversations(con, source)
            con.unregister("landing")
            counts[source.name] = _rows(con, source) - before
    finally:
        con.close()
    return counts


def _rows(con, source) -> int:
    tables = (
        ["documents"]
        if isinstance(source, DocumentSource)
        else ["warehouse_documents", "warehouse_conversations"]
    )
    return sum(
        con.execute(f"select count(*) from bronze.{table} where source = ?", [source.name]).fetchall()[0][0]
        for table in tables
    )


def _render(con, source: WarehouseSource) -> None:
    """Render one warehouse source's rows through its templates, in SQL over its own columns."""
    template = source.document or {}
    text = render_template(template["text"])
    title = render_template(template["title"]) if template.get("title") else "null"
    live = f"({template['where']})" if template.get("where") else "true"
    key = _quote(source.key)
    sql = f"""
        insert into bronze.warehouse_documents
        select
            $source || '/' || cast({key} as varchar) as doc_id,
            $source as source,
            'warehouse://' || $source || '/' || cast({key} as varchar) as uri,
            {title} as title,
            {text} as text,
            'text/plain' as mime_type,
            md5({text}) as content_hash,
            _ingested_at as ingested_at,
            _op = 'delete' or not coalesce({live}, false) as is_deleted,
            $tags as access_tags
        from landing
    """
    _insert_rendered(con, sql, {"source": source.name, "tags": list(source.access_tags)}, source, "document")


def _render_conversations(con, source: WarehouseSource) -> None:
    """Render one warehouse source's rows through its ``finetune`` template (system, prompt, response)."""
    template = source.finetune or {}
    system = render_template(template["system"]) if template.get("system") else "null"
    prompt, response = render_template(template["prompt"]), render_template(template["response"])
    live = f"({template['where']})" if template.get("where") else "true"
    key = _quote(source.key)
    sql = f"""
        insert into bronze.warehouse_conversations
        select
            $source || '/' || cast({key} as varchar) as record_id,
            $source as source,
            {system} as system,
            {prompt} as prompt,
            {response} as response,
            md5(coalesce({system}, '') || chr(0) || {prompt} || chr(0) || {response}) as content_hash,
            _op = 'delete' or not coalesce({live}, false) as is_deleted
        from landing
    """
    _insert_rendered(con, sql, {"source": source.name}, source, "finetune")


def _insert_rendered(con, sql: str, params: dict, source: WarehouseSource, field: str) -> None:
    """Run a template's insert; a template naming a column that does not exist is a ConfigError on ``field``."""
    try:
        con.execute(sql, params).fetchall()
    except Exception as exc:  # duckdb's Binder/Parser errors
        first = str(exc).splitlines()[0]
        raise ConfigError(f"source '{source.name}': field '{field}': {first}") from None


def render_template(template: str) -> str:
    """``'Q: {question}'`` as a SQL expression concatenating the literal text and the named columns.

    A NULL column renders as empty text.
    """
    pieces = []
    for number, part in enumerate(_PLACEHOLDER.split(template)):
        if number % 2:
            pieces.append(f"coalesce(cast({_quote(part)} as varchar), '')")
        elif part:
            pieces.append("'" + part.replace("'", "''") + "'")
    return " || ".join(pieces) if pieces else "''"


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
