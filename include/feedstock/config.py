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


@dataclass(frozen=True)
class CorpusSource:
    """A large text corpus in object storage, for continued pretraining: JSONL (plain, .gz, .zst) or Parquet."""

    name: str
    uri: str
    format: str = "jsonl"  # jsonl (plain, .gz or .zst) or parquet
    text_field: str = "text"
    id_field: str | None = "id"  # without it a record's id is its position in the file
    include: tuple[str, ...] = ("**/*",)
    exclude: tuple[str, ...] = ()
    part_mb: float = 256.0  # a plain .jsonl or a Parquet file larger than this is split into parts (shards)
    aws_conn_id: str | None = None
    access_tags: tuple[str, ...] = ()
    kind: str = field(default="corpus", init=False)


Source = DocumentSource | WarehouseSource | CorpusSource
_KINDS: dict[str, type] = {"documents": DocumentSource, "warehouse": WarehouseSource, "corpus": CorpusSource}


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
class MinHash:
    """Fuzzy dedup: word shingles, MinHash permutations, LSH bands x rows, and the Jaccard a pair must reach."""

    shingle_size: int = 3
    num_perm: int = 128
    bands: int = 42
    rows: int = 3
    threshold: float = 0.4  # candidate pairs from LSH are kept only if their estimated Jaccard reaches this
    seed: int = 1


@dataclass(frozen=True)
class Pretrain:
    """The continued-pretraining feed. Every stage can be switched off or tuned; see the README."""

    sources: tuple[str, ...] | None = (
        None  # default: every documents, warehouse (with a template) and corpus source
    )
    batch_size: int = 1_000  # documents per streamed batch: bounds a shard task's memory
    normalize: dict[str, Any] = field(
        default_factory=dict
    )  # ftfy, boilerplate_min_docs, boilerplate_min_chars
    language: dict[str, Any] | None = field(default_factory=dict)  # allow, min_score, languages; None = off
    quality: dict[str, Any] = field(
        default_factory=lambda: {"gopher_repetition": {}, "gopher_quality": {}, "c4": False, "fineweb": {}}
    )
    pii: dict[str, Any] | None = field(default_factory=dict)  # types; None = off
    exact_dedup: bool = True
    minhash: MinHash | None = MinHash()  # None = no fuzzy dedup
    dedup_partitions: int = 4  # exact-dedup partitions (one mapped task each)
    decontamination: dict[str, Any] | None = None  # eval_sets: [paths], ngram: 13, text_field: text
    tokenizer: dict[str, Any] = field(default_factory=lambda: {"kind": "tiktoken", "name": "cl100k_base"})
    weights: dict[str, float] = field(
        default_factory=dict
    )  # per source; 2.0 repeats each doc twice, 0.5 keeps half
    seed: int = 42  # the deterministic shuffle
    output_shards: int = 4  # token/text shards per release


@dataclass(frozen=True)
class Config:
    lake: str
    sources: tuple[Source, ...]
    validation: Validation = Validation()
    lake_aws_conn_id: str | None = None
    rag: Rag = Rag()
    pretrain: Pretrain = Pretrain()

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
        pretrain=_parse_pretrain(raw.get("pretrain") or {}, sources, base_dir),
    )


def _parse_pretrain(raw: dict[str, Any], sources: list[Source], base_dir: Path) -> Pretrain:
    where = "config 'pretrain'"
    raw = dict(raw)
    minhash = raw.pop("minhash", {})
    minhash = None if minhash is None or minhash is False else _build(MinHash, minhash, f"{where}.minhash")
    if minhash is not None:
        if minhash.bands * minhash.rows > minhash.num_perm:
            raise ConfigError(f"{where}.minhash: bands x rows must not exceed num_perm")
        if minhash.shingle_size < 1 or not 0 < minhash.threshold <= 1:
            raise ConfigError(f"{where}.minhash: shingle_size must be >= 1 and threshold in (0, 1]")
    pretrain = _build(Pretrain, {**raw, "minhash": minhash}, where)
    names = {s.name for s in sources}
    if pretrain.sources is not None:
        unknown = [n for n in pretrain.sources if n not in names]
        if unknown:
            raise ConfigError(f"{where}: field 'sources' names unknown source '{unknown[0]}'")
        object.__setattr__(pretrain, "sources", tuple(pretrain.sources))
    unknown = [n for n in pretrain.weights if n not in names]
    if unknown:
        raise ConfigError(f"{where}: field 'weights' names unknown source '{unknown[0]}'")
    if any(not isinstance(w, (int, float)) or w < 0 for w in pretrain.weights.values()):
        raise ConfigError(f"{where}: field 'weights' must map sources to numbers >= 0")
    for attr in ("batch_size", "dedup_partitions", "output_shards"):
        if not isinstance(getattr(pretrain, attr), int) or getattr(pretrain, attr) < 1:
            raise ConfigError(f"{where}: field '{attr}' must be a positive integer")
    tokenizer = dict(pretrain.tokenizer)
    if tokenizer.get("kind") == "huggingface" and tokenizer.get("path"):
        tokenizer["path"] = resolve_uri(str(tokenizer["path"]), base_dir)
    object.__setattr__(pretrain, "tokenizer", tokenizer)
    if pretrain.decontamination:
        sets = pretrain.decontamination.get("eval_sets") or []
        resolved = [resolve_uri(str(p), base_dir) for p in sets]
        object.__setattr__(pretrain, "decontamination", {**pretrain.decontamination, "eval_sets": resolved})
    return pretrain


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
    if isinstance(source, (DocumentSource, CorpusSource)):
        if not isinstance(source.uri, str) or not source.uri:
            raise ConfigError(f"source '{name}': field 'uri' must be a path or URL")
        for attr in ("include", "exclude"):
            value = getattr(source, attr)
            if isinstance(value, str):
                value = (value,)
            object.__setattr__(source, attr, tuple(value))
        object.__setattr__(source, "uri", resolve_uri(source.uri, base_dir))
        if isinstance(source, CorpusSource):
            if source.format not in ("jsonl", "parquet"):
                raise ConfigError(
                    f"source '{name}': field 'format' must be jsonl or parquet, got {source.format!r}"
                )
            _positive(source, "part_mb")
        else:
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
