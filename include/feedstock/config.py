"""Configuration: the YAML file that names the lake and the sources.

The file's path comes from ``FEEDSTOCK_CONFIG`` (default ``include/config/feedstock.yaml``) and the lake root
from ``FEEDSTOCK_LAKE`` when it is set. Every problem is raised as a :class:`ConfigError` whose message is one
line naming the source and the field, so a user sees what to fix instead of a traceback.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = PROJECT_ROOT / "include" / "config" / "feedstock.yaml"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class ConfigError(ValueError):
    """A configuration problem, described in one line."""


@dataclass(frozen=True)
class DocumentSource:
    """A folder of documents at any fsspec URL."""

    name: str
    uri: str
    include: tuple[str, ...] = ("**/*",)
    exclude: tuple[str, ...] = ()
    text_field: str = "text"  # the field holding the text in .json/.jsonl files
    title_field: str = "title"
    max_file_mb: float = 50.0
    batch_size: int = 200  # files per mapped parse task
    aws_conn_id: str | None = None
    access_tags: tuple[str, ...] = ()  # carried onto every chunk, for filtered search
    kind: str = field(default="documents", init=False)


@dataclass(frozen=True)
class WarehouseSource:
    """A table or query behind an Airflow connection, read through SQLAlchemy."""

    name: str
    conn_id: str
    key: str
    table: str | None = None
    query: str | None = None
    watermark: str | None = None
    batch_size: int = 50_000  # rows per fetch; bounds the task's memory
    access_tags: tuple[str, ...] = ()
    # Renders each row as a document for the feeds: {"title": "...{col}...", "text": "...", "where": "sql"}
    document: dict[str, str] | None = None
    kind: str = field(default="warehouse", init=False)


Source = DocumentSource | WarehouseSource
_KINDS: dict[str, type] = {"documents": DocumentSource, "warehouse": WarehouseSource}


@dataclass(frozen=True)
class Validation:
    max_failure_ratio: float = (
        0.05  # a run fails when more than this share of a table's rows break the contract
    )


@dataclass(frozen=True)
class Embedding:
    """Which model embeds chunks. ``provider``: sentence_transformers (offline default), openai, bedrock."""

    provider: str = "sentence_transformers"
    model: str = "all-MiniLM-L6-v2"
    batch_size: int = 64
    endpoint: str | None = None  # openai: base URL of an OpenAI-compatible API; bedrock: endpoint override
    api_key_env: str = "OPENAI_API_KEY"  # openai: the environment variable holding the key
    dimensions: int | None = None
    timeout_s: float = 30.0
    retries: int = 4


@dataclass(frozen=True)
class Rag:
    chunk_tokens: int = 200  # the budget, counted with the embedding model's own tokenizer
    chunk_overlap: int = 32
    embedding: Embedding = Embedding()
    golden_set: str | None = None  # YAML list of {question, expected_doc_id | expected_uri}
    k: int = 5
    min_recall: float = 0.0  # the run fails when recall@k on the golden set drops below this
    on_low_recall: str = "fail"  # or "warn"
    ann_min_rows: int = 5_000  # build an ANN index once the table has this many vectors


@dataclass(frozen=True)
class Config:
    lake: str
    sources: tuple[Source, ...]
    validation: Validation = Validation()
    lake_aws_conn_id: str | None = None
    rag: Rag = Rag()

    def source(self, name: str) -> Source:
        for source in self.sources:
            if source.name == name:
                return source
        raise ConfigError(f"source '{name}': not in the configuration")

    def of_kind(self, kind: str) -> list[Source]:
        return [s for s in self.sources if s.kind == kind]


def config_path() -> Path:
    return Path(os.environ.get("FEEDSTOCK_CONFIG") or DEFAULT_CONFIG)


def load_config(path: str | Path | None = None) -> Config:
    """Read and check the configuration file; raise :class:`ConfigError` on any problem."""
    path = Path(path) if path else config_path()
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist (set FEEDSTOCK_CONFIG)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    return parse_config(raw or {}, base_dir=PROJECT_ROOT)


def parse_config(raw: dict[str, Any], base_dir: Path = PROJECT_ROOT) -> Config:
    if not isinstance(raw, dict):
        raise ConfigError("config: the top level must be a mapping with 'lake' and 'sources'")
    lake = os.environ.get("FEEDSTOCK_LAKE") or raw.get("lake") or "./data/lake"
    sources_raw = raw.get("sources")
    if not isinstance(sources_raw, list):
        raise ConfigError("config: field 'sources' must be a list")
    sources: list[Source] = []
    for index, item in enumerate(sources_raw):
        source = _parse_source(item, index, base_dir)
        if any(s.name == source.name for s in sources):
            raise ConfigError(f"source '{source.name}': field 'name' is used by two sources")
        sources.append(source)
    validation = _build(Validation, raw.get("validation") or {}, "config 'validation'")
    if not 0 <= validation.max_failure_ratio <= 1:
        raise ConfigError("config 'validation': field 'max_failure_ratio' must be between 0 and 1")
    rag_raw = dict(raw.get("rag") or {})
    embedding = _build(Embedding, rag_raw.pop("embedding", None) or {}, "config 'rag.embedding'")
    if embedding.provider not in ("sentence_transformers", "openai", "bedrock"):
        raise ConfigError(
            f"config 'rag.embedding': field 'provider' must be sentence_transformers, openai or bedrock, "
            f"got {embedding.provider!r}"
        )
    rag = _build(Rag, {**rag_raw, "embedding": embedding}, "config 'rag'")
    if rag.golden_set:
        object.__setattr__(rag, "golden_set", resolve_uri(rag.golden_set, base_dir))
    if not 0 <= rag.chunk_overlap < rag.chunk_tokens:
        raise ConfigError("config 'rag': field 'chunk_overlap' must be between 0 and chunk_tokens")
    return Config(
        lake=resolve_uri(str(lake), base_dir),
        sources=tuple(sources),
        validation=validation,
        lake_aws_conn_id=raw.get("lake_aws_conn_id"),
        rag=rag,
    )


def _parse_source(item: Any, index: int, base_dir: Path) -> Source:
    if not isinstance(item, dict):
        raise ConfigError(f"source #{index + 1}: must be a mapping")
    name = item.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"source #{index + 1}: field 'name' must be lower_snake_case, got {name!r}")
    kind = item.get("kind")
    if kind not in _KINDS:
        raise ConfigError(f"source '{name}': field 'kind' must be one of {sorted(_KINDS)}, got {kind!r}")
    values = {k: v for k, v in item.items() if k != "kind"}
    source = _build(_KINDS[kind], values, f"source '{name}'")
    object.__setattr__(source, "access_tags", tuple(source.access_tags or ()))
    if isinstance(source, DocumentSource):
        if not isinstance(source.uri, str) or not source.uri:
            raise ConfigError(f"source '{name}': field 'uri' must be a path or URL")
        for attr in ("include", "exclude"):
            value = getattr(source, attr)
            if isinstance(value, str):
                value = (value,)
            object.__setattr__(source, attr, tuple(value))
        object.__setattr__(source, "uri", resolve_uri(source.uri, base_dir))
        _positive(source, "batch_size")
        _positive(source, "max_file_mb")
    else:
        if bool(source.table) == bool(source.query):
            raise ConfigError(f"source '{name}': give exactly one of fields 'table' and 'query'")
        if not source.key:
            raise ConfigError(f"source '{name}': field 'key' is required")
        if source.document is not None:
            if not isinstance(source.document, dict) or not source.document.get("text"):
                raise ConfigError(f"source '{name}': field 'document' needs at least a 'text' template")
            unknown = sorted(set(source.document) - {"title", "text", "where"})
            if unknown:
                raise ConfigError(f"source '{name}': field 'document' has unknown key '{unknown[0]}'")
        _positive(source, "batch_size")
    return source


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    known = {f.name for f in fields(cls) if f.init}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown field '{unknown[0]}' (known: {', '.join(sorted(known))})")
    try:
        return cls(**values)
    except TypeError as exc:
        missing = re.findall(r"'(\w+)'", str(exc))
        raise ConfigError(f"{where}: missing field '{missing[0] if missing else '?'}'") from None


def _positive(source: Source, attr: str) -> None:
    value = getattr(source, attr)
    if not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"source '{source.name}': field '{attr}' must be a positive number, got {value!r}")


def resolve_uri(uri: str, base_dir: Path = PROJECT_ROOT) -> str:
    """Make a local path absolute (relative to the project root); leave URLs with a scheme alone."""
    if "://" in uri:
        return uri.rstrip("/")
    path = Path(uri).expanduser()
    return str(path if path.is_absolute() else (base_dir / path).resolve())
