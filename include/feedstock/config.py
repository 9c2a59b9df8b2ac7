"""Configuration: the YAML file that names the lake and the sources.

The file's path comes from ``FEEDSTOCK_CONFIG`` (default ``include/config/feedstock.yaml``) and the lake root
from ``FEEDSTOCK_LAKE`` when it is set. Every option is parsed when the file is loaded into a frozen
dataclass whose ``__post_init__`` checks each field against its annotation and its rule, so every problem is
a :class:`ConfigError` whose message is one line naming the source and the field.

Problems at the top level (the YAML, the lake, ``validation``, ``rag``, ``pretrain``, unknown keys) fail the
load. A problem inside one source does not: that entry becomes a :class:`BrokenSource` in
:attr:`Config.broken`, so the other sources keep working and only the broken one's tasks fail, with its line.
"""

from __future__ import annotations

import difflib
import os
import re
import tempfile
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from feedstock.errors import ConfigError
from feedstock.pretrain.formats import DEFAULT_FORMATS, FORMATS

__all__ = [
    "PROJECT_ROOT",
    "BrokenSource",
    "Config",
    "ConfigError",
    "CorpusSource",
    "DatasetSource",
    "Finetune",
    "DocumentSource",
    "Embedding",
    "Rerank",
    "SEARCH_MODES",
    "MinHash",
    "Pretrain",
    "Cache",
    "Rag",
    "Serve",
    "Source",
    "Validation",
    "WarehouseSource",
    "config_path",
    "load_config",
    "parse_config",
    "resolve_uri",
]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = PROJECT_ROOT / "include" / "config" / "feedstock.yaml"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


# ---- field rules ------------------------------------------------------------------------------------------


def _rule(
    must_be: str, check: Callable[[Any], bool] | None = None, default: Any = MISSING, factory: Any = MISSING
) -> Any:
    """A field that must be ``must_be``: its type, then ``check`` if given (a None value is not checked)."""
    return field(default=default, default_factory=factory, metadata={"must_be": must_be, "check": check})


def _positive_int(default: Any = MISSING) -> Any:
    return _rule("a positive integer", lambda v: v >= 1, default)


def _positive(default: Any) -> Any:
    return _rule("a positive number", lambda v: v > 0, default)


def _one_of(default: Any, *choices: str) -> Any:
    return _rule(f"{', '.join(choices[:-1])} or {choices[-1]}", lambda v: v in choices, default)


def _text(must_be: str, default: Any = MISSING) -> Any:
    return _rule(must_be, lambda v: v != "", default)


def _name() -> Any:
    return _rule("lower_snake_case", lambda v: bool(_NAME.match(v)))


# ---- the checker: each field against its annotation and its rule -------------------------------------------


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    """``cls(**values)`` for a mapping from the file: unknown and missing fields named, YAML lists as tuples."""
    known = {f.name: f for f in fields(cls) if f.init}
    _reject_unknown(values, known, where)
    for name, f in known.items():
        if name not in values and f.default is MISSING and f.default_factory is MISSING:
            raise ConfigError(f"{where}: field '{name}' is required")
    hints = _hints(cls)
    return cls(**{k: _as_declared(v, hints[k]) for k, v in values.items()})


def _section(raw: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: field '{key}' must be a mapping, got {_show(value)}")
    return value


def _reject_unknown(
    values: dict[Any, Any], known: typing.Iterable[str], where: str, noun: str = "field"
) -> None:
    known = list(known)
    unknown = [str(k) for k in values if k not in known]
    if unknown:
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(sorted(known))}"
        raise ConfigError(f"{where}: unknown {noun} '{unknown[0]}' ({hint})")


def _check_fields(obj: Any, where: str) -> None:
    """Raise a one-line :class:`ConfigError` for the first field of ``obj`` that breaks its type or rule."""
    hints = _hints(type(obj))
    for f in fields(obj):
        value, hint = getattr(obj, f.name), hints[f.name]
        check = f.metadata.get("check")
        if not _conforms(value, hint) or (check is not None and value is not None and not check(value)):
            must_be = f.metadata.get("must_be") or _describe(hint)
            raise ConfigError(f"{where}: field '{f.name}' must be {must_be}, got {_show(value)}")


def _check_mapping(values: dict[str, Any], options: dict[str, Any], where: str) -> None:
    """A stage's option mapping: known keys only, each of its type."""
    _reject_unknown(values, options, where, noun="key")
    for key, value in values.items():
        if not _conforms(value, options[key]):
            raise ConfigError(f"{where}: key '{key}' must be {_describe(options[key])}, got {_show(value)}")


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _conforms(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    if hint is None or hint is type(None):
        return value is None
    if _is_union(hint):
        return any(_conforms(value, arg) for arg in typing.get_args(hint))
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (tuple, list):
        return isinstance(value, origin) and all(_conforms(item, args[0]) for item in value)
    if origin is dict:
        return isinstance(value, dict) and all(
            _conforms(k, args[0]) and _conforms(v, args[1]) for k, v in value.items()
        )
    return isinstance(value, hint)


_NOUNS = {
    str: ("a string", "strings"),
    int: ("an integer", "integers"),
    float: ("a number", "numbers"),
    bool: ("true or false", "true/false values"),
}


def _describe(hint: Any, plural: bool = False) -> str:
    """An annotation in the words of the file: ``tuple[str, ...] | None`` is 'a list of strings or null'."""
    if _is_union(hint):
        args = typing.get_args(hint)
        text = " or ".join(_describe(arg, plural) for arg in args if arg is not type(None))
        return f"{text} or null" if type(None) in args else text
    if hint in _NOUNS:
        return _NOUNS[hint][plural]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (tuple, list):
        return f"{'lists' if plural else 'a list'} of {_describe(args[0], True)}"
    if origin is dict or hint is dict or is_dataclass(hint):
        text = "mappings" if plural else "a mapping"
        if args and args[1] is not Any:
            text += f" of {_describe(args[0], True)} to {_describe(args[1], True)}"
        return text
    return "values" if plural else "a value"


def _as_declared(value: Any, hint: Any) -> Any:
    """A YAML list becomes the tuple a field declares (the check that follows rejects anything else)."""
    declared = typing.get_args(hint) if _is_union(hint) else (hint,)
    if isinstance(value, list) and any(typing.get_origin(h) is tuple for h in declared):
        return tuple(value)
    return value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


# ---- sources ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DocumentSource:
    """A folder of documents at any fsspec URL."""

    name: str = _name()
    uri: str = _text("a path or URL")
    include: tuple[str, ...] = ("**/*",)  # one glob or a list of them
    exclude: tuple[str, ...] = ()
    text_field: str = _text("a field name", "text")  # the field holding the text in .json/.jsonl files
    title_field: str = "title"
    max_file_mb: float = _positive(50.0)
    batch_size: int = _positive_int(200)  # files per mapped parse task
    aws_conn_id: str | None = None
    access_tags: tuple[str, ...] = ()  # carried onto every chunk, for filtered search
    # HTML: "content" keeps the article (navigation, sidebars, headers, footers and tables of contents dropped);
    # "page" keeps the whole page but its <nav> and <footer>. A change re-parses the source's files.
    html_extraction: str = _one_of("content", "content", "page")
    kind: str = field(default="documents", init=False)

    def __post_init__(self) -> None:
        _check_fields(self, f"source '{self.name}'")


@dataclass(frozen=True)
class WarehouseSource:
    """A table or query behind an Airflow connection, read through SQLAlchemy."""

    name: str = _name()
    conn_id: str = _text("an Airflow connection id")
    key: str = _text("a column name")
    table: str | None = None
    query: str | None = None
    watermark: str | None = None
    batch_size: int = _positive_int(50_000)  # rows per fetch; bounds the task's memory
    access_tags: tuple[str, ...] = ()
    # Renders each row as a document for the feeds: {"title": "...{col}...", "text": "...", "where": "sql"}
    document: dict[str, str] | None = None
    # Renders each row as a conversation for the fine-tuning feed: {"system", "prompt", "response", "where"}
    finetune: dict[str, str] | None = None
    kind: str = field(default="warehouse", init=False)

    def __post_init__(self) -> None:
        where = f"source '{self.name}'"
        _check_fields(self, where)
        if bool(self.table) == bool(self.query):
            raise ConfigError(f"{where}: give exactly one of fields 'table' and 'query'")
        if self.document is not None:
            unknown = sorted(set(self.document) - {"title", "text", "where"})
            if unknown:
                raise ConfigError(f"{where}: field 'document' has unknown key '{unknown[0]}'")
            if not self.document.get("text"):
                raise ConfigError(f"{where}: field 'document' needs at least a 'text' template")
        if self.finetune is not None:
            unknown = sorted(set(self.finetune) - {"system", "prompt", "response", "where"})
            if unknown:
                raise ConfigError(f"{where}: field 'finetune' has unknown key '{unknown[0]}'")
            missing = [k for k in ("prompt", "response") if not self.finetune.get(k)]
            if missing:
                raise ConfigError(f"{where}: field 'finetune' needs a '{missing[0]}' template")


@dataclass(frozen=True)
class CorpusSource:
    """A large text corpus in object storage, for continued pretraining: JSONL (plain, .gz, .zst) or Parquet."""

    name: str = _name()
    uri: str = _text("a path or URL")
    format: str = _one_of("jsonl", "jsonl", "parquet")  # jsonl (plain, .gz or .zst) or parquet
    text_field: str = _text("a field name", "text")
    id_field: str | None = "id"  # without it a record's id is its position in the file
    include: tuple[str, ...] = ("**/*",)
    exclude: tuple[str, ...] = ()
    part_mb: float = _positive(256.0)  # a plain .jsonl or a Parquet file larger than this is split into parts
    aws_conn_id: str | None = None
    access_tags: tuple[str, ...] = ()
    kind: str = field(default="corpus", init=False)

    def __post_init__(self) -> None:
        _check_fields(self, f"source '{self.name}'")


# How a record of a ``dataset`` source is read (feedstock.finetune.records), and the fields each schema names.
DATASET_SCHEMAS: dict[str, tuple[str, ...]] = {
    "messages": ("messages",),
    "sharegpt": ("conversations", "system"),
    "alpaca": ("instruction", "input", "output", "system"),
    "prompt_response": ("prompt", "response", "system"),
    "preference": ("prompt", "chosen", "rejected", "system"),
    "labelstudio": ("prompt", "response", "chosen", "rejected"),
}


@dataclass(frozen=True)
class DatasetSource:
    """Instruction or chat files for the fine-tuning feed: JSONL (plain, .gz, .zst) or Parquet at any fsspec URL.

    ``schema`` says how a record reads (see :data:`DATASET_SCHEMAS`); ``fields`` renames the schema's fields to
    the file's own (``{prompt: question}``).
    """

    name: str = _name()
    uri: str = _text("a path or URL")
    schema: str = _one_of("messages", *DATASET_SCHEMAS)
    fields: dict[str, str] = _rule("a mapping of schema fields to field names", factory=dict)
    format: str = _one_of("jsonl", "jsonl", "json", "parquet")  # also taken from a .parquet/.json suffix
    id_field: str | None = "id"  # without it a record's id is its file and line
    include: tuple[str, ...] = ("**/*",)
    exclude: tuple[str, ...] = ()
    aws_conn_id: str | None = None
    access_tags: tuple[str, ...] = ()
    kind: str = field(default="dataset", init=False)

    def __post_init__(self) -> None:
        where = f"source '{self.name}'"
        _check_fields(self, where)
        _reject_unknown(self.fields, DATASET_SCHEMAS[self.schema], f"{where}: field 'fields'", noun="key")


Source = DocumentSource | WarehouseSource | CorpusSource | DatasetSource
_KINDS: dict[str, type] = {
    "documents": DocumentSource,
    "warehouse": WarehouseSource,
    "corpus": CorpusSource,
    "dataset": DatasetSource,
}


@dataclass(frozen=True)
class BrokenSource:
    """A source entry that could not be parsed: its tasks fail with ``error``, the other sources carry on.

    ``name`` is ``#<position>`` when the entry has no valid name; ``kind`` is None when it is not a known kind.
    """

    name: str
    kind: str | None
    error: str


# ---- settings ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Validation:
    # a run fails when more than this share of a table's rows break the contract
    max_failure_ratio: float = _rule("a number between 0 and 1", lambda v: 0 <= v <= 1, 0.05)

    def __post_init__(self) -> None:
        _check_fields(self, "config 'validation'")


@dataclass(frozen=True)
class Embedding:
    """Which model embeds chunks. ``provider``: sentence_transformers (offline default), openai, bedrock.

    ``runtime: onnx`` (``feedstock.rag.onnx``) gives the same vectors as torch (cosine >= 0.9999), so switching
    to it keeps the index; ``quantize: int8`` changes them beyond that tolerance, so it is a new model version
    and the index is rebuilt beside the old one (blue/green). ``precision: bf16`` runs torch in bfloat16
    (autocast), 2-3x faster where the CPU computes bf16 natively (AMX, AVX512-BF16) and within cosine 0.9995 of
    fp32, so it keeps the index too; ``auto`` (the default) picks it on such CPUs and fp32 elsewhere."""

    provider: str = _one_of("sentence_transformers", "sentence_transformers", "openai", "bedrock")
    model: str = _text("a model name", "all-MiniLM-L6-v2")
    batch_size: int = _positive_int(64)
    endpoint: str | None = None  # openai: base URL of an OpenAI-compatible API; bedrock: endpoint override
    api_key_env: str = "OPENAI_API_KEY"  # openai: the environment variable holding the key
    dimensions: int | None = _rule("a positive integer or null", lambda v: v >= 1, None)
    timeout_s: float = _positive(30.0)
    retries: int = _rule("an integer >= 0", lambda v: v >= 0, 4)
    # sentence_transformers only: torch, or ONNX Runtime on an export of the same weights (optionally int8)
    runtime: str = _one_of("torch", "torch", "onnx")
    quantize: str = _one_of("none", "none", "int8")
    precision: str = _one_of("auto", "auto", "fp32", "bf16")  # torch only: bf16 autocast, or fp32

    def __post_init__(self) -> None:
        _check_fields(self, "config 'rag.embedding'")
        local = (self.runtime, self.quantize, self.precision) != ("torch", "none", "auto")
        if self.provider != "sentence_transformers" and local:
            raise ConfigError(
                f"config 'rag.embedding': fields 'runtime', 'quantize' and 'precision' apply to the local model "
                f"(provider sentence_transformers), not to provider {self.provider!r}"
            )
        if self.quantize != "none" and self.runtime != "onnx":
            raise ConfigError("config 'rag.embedding': field 'quantize' needs runtime: onnx")
        if self.precision == "bf16" and self.runtime != "torch":
            raise ConfigError("config 'rag.embedding': field 'precision: bf16' needs runtime: torch")


SEARCH_MODES = ("vector", "fts", "hybrid")  # vector similarity, full-text (BM25), both fused (RRF)


@dataclass(frozen=True)
class Boilerplate:
    """Lines repeated across a source's documents (footers, licence lines, "Edit this page"), dropped before
    chunking: a line of at least ``min_chars`` characters in at least ``min_docs`` documents of its source and
    in at least ``min_share`` of them. Markdown headings never are (they are the documents' structure).
    ``min_docs: 0`` switches it off.

    The share keeps content that many pages repeat: in the Python library reference, "New in version 3.11." and
    "Traceback (most recent call last):" are in 13% and 10% of the pages; chrome that escapes extraction is in
    nearly all of them (measured: ``make bench`` suite ``retrieval``)."""

    min_docs: int = _rule("an integer >= 0", lambda v: v >= 0, 5)
    min_share: float = _rule("a number between 0 and 1", lambda v: 0 <= v <= 1, 0.5)
    min_chars: int = _positive_int(20)

    def __post_init__(self) -> None:
        _check_fields(self, "config 'rag.boilerplate'")


@dataclass(frozen=True)
class Rerank:
    """An optional reranking stage after retrieval, off unless configured (no reranking model ships offline here).

    ``provider: http`` speaks the rerank API that Cohere, Jina, vLLM, Infinity and TEI's compatible route share:
    ``POST {endpoint}/rerank`` with ``{model, query, documents, top_n}``, answered with
    ``{"results": [{"index", "relevance_score"}]}``. Search retrieves ``candidates`` chunks and returns the top k
    in the reranker's order (see :mod:`feedstock.rag.rerank`).
    """

    endpoint: str = _text("a URL")
    model: str = _text("a model name")
    provider: str = _one_of("http", "http")
    api_key_env: str | None = (
        None  # the environment variable holding a bearer token, if the endpoint needs one
    )
    candidates: int = _positive_int(20)
    timeout_s: float = _positive(10.0)
    retries: int = _rule("an integer >= 0", lambda v: v >= 0, 1)

    def __post_init__(self) -> None:
        _check_fields(self, "config 'rag.rerank'")


@dataclass(frozen=True)
class Rag:
    chunk_tokens: int = _positive_int(200)  # the budget, counted with the embedding model's own tokenizer
    chunk_overlap: int = _rule("an integer >= 0", lambda v: v >= 0, 32)
    embedding: Embedding = Embedding()
    golden_set: str | None = None  # YAML list of {question, expected_doc_id | expected_uri}
    k: int = _positive_int(5)
    min_recall: float = _rule("a number between 0 and 1", lambda v: 0 <= v <= 1, 0.0)  # recall@k floor
    on_low_recall: str = _one_of("fail", "fail", "warn")
    ann_min_rows: int = _rule("an integer >= 0", lambda v: v >= 0, 5_000)  # build an ANN index from here
    rerank: Rerank | None = None  # off by default
    # the default of `feedstock search`, /search and the golden-set evaluation (`make bench` suite ranking)
    search_mode: str = _one_of("vector", *SEARCH_MODES)
    boilerplate: Boilerplate = Boilerplate()

    def __post_init__(self) -> None:
        _check_fields(self, "config 'rag'")
        if self.chunk_overlap >= self.chunk_tokens:
            raise ConfigError(
                f"config 'rag': field 'chunk_overlap' must be less than chunk_tokens ({self.chunk_tokens}), "
                f"got {self.chunk_overlap}"
            )


@dataclass(frozen=True)
class MinHash:
    """Fuzzy dedup: word shingles, MinHash permutations, LSH bands x rows, and the Jaccard a pair must reach."""

    shingle_size: int = _positive_int(3)
    num_perm: int = _positive_int(128)
    bands: int = _positive_int(42)
    rows: int = _positive_int(3)
    # candidate pairs from LSH are kept only if their estimated Jaccard reaches this
    threshold: float = _rule("a number in (0, 1]", lambda v: 0 < v <= 1, 0.4)
    seed: int = 1

    def __post_init__(self) -> None:
        _check_fields(self, "config 'pretrain.minhash'")
        if self.bands * self.rows > self.num_perm:
            raise ConfigError(
                f"config 'pretrain.minhash': fields 'bands' x 'rows' ({self.bands} x {self.rows}) must not "
                f"exceed 'num_perm' ({self.num_perm})"
            )


# The keys (and their types) of the pretraining stages' option mappings; the stages own the finer checks
# (the quality filters' thresholds, whether a tokenizer file exists) and apply them in the feed's first task.
_STAGE_OPTIONS: dict[str, dict[str, Any]] = {
    "normalize": {"ftfy": bool, "boilerplate_min_docs": int, "boilerplate_min_chars": int},
    "language": {
        "allow": list[str] | None,
        "min_score": float,
        "languages": list[str] | str,
        "max_chars": int,
        "low_accuracy": bool,
        "quick_chars": int,
        "quick_score": float,
    },
    "quality": dict.fromkeys(
        ("gopher_repetition", "gopher_quality", "c4", "fineweb"), dict[str, Any] | bool | None
    ),
    "pii": {"types": list[str] | None},
    "decontamination": {"eval_sets": list[str], "ngram": int, "fields": list[str] | None, "min_words": int},
    "tokenizer": {"kind": str, "name": str, "threads": int, "path": str, "eos_token": str | None},
}
_TOKENIZER_OPTIONS = {"tiktoken": {"kind", "name", "threads"}, "huggingface": {"kind", "path", "eos_token"}}


def _check_tokenizer(tokenizer: dict[str, Any], where: str) -> None:
    kind = tokenizer.get("kind", "tiktoken")
    if kind not in _TOKENIZER_OPTIONS:
        raise ConfigError(
            f"{where}: field 'tokenizer': key 'kind' must be tiktoken or huggingface, got {kind!r}"
        )
    unknown = [key for key in tokenizer if key not in _TOKENIZER_OPTIONS[kind]]
    if unknown:
        raise ConfigError(f"{where}: field 'tokenizer': unknown key '{unknown[0]}' for kind {kind}")
    if kind == "huggingface" and not tokenizer.get("path"):
        raise ConfigError(f"{where}: field 'tokenizer': key 'path' is required for kind huggingface")


@dataclass(frozen=True)
class Pretrain:
    """The continued-pretraining feed. Every stage can be switched off or tuned; see the README."""

    # default (None): every documents, warehouse (with a template) and corpus source
    sources: tuple[str, ...] | None = None
    batch_size: int = _positive_int(1_000)  # documents per streamed batch: bounds a shard task's memory
    # ftfy, boilerplate_min_docs, boilerplate_min_chars
    normalize: dict[str, Any] = field(default_factory=dict)
    language: dict[str, Any] | None = field(default_factory=dict)  # allow, min_score, languages; None = off
    quality: dict[str, Any] = field(
        default_factory=lambda: {"gopher_repetition": {}, "gopher_quality": {}, "c4": False, "fineweb": {}}
    )
    pii: dict[str, Any] | None = field(default_factory=dict)  # types; None = off
    exact_dedup: bool = True
    minhash: MinHash | None = MinHash()  # None = no fuzzy dedup
    dedup_partitions: int = _positive_int(4)  # exact-dedup partitions (one mapped task each)
    decontamination: dict[str, Any] | None = None  # eval_sets: [paths], ngram: 13, fields: [question, ...]
    tokenizer: dict[str, Any] = field(default_factory=lambda: {"kind": "tiktoken", "name": "cl100k_base"})
    # per source; 2.0 repeats each doc twice, 0.5 keeps half
    weights: dict[str, float] = _rule(
        "a mapping of source names to numbers >= 0", lambda v: all(w >= 0 for w in v.values()), factory=dict
    )
    seed: int = 42  # the deterministic shuffle
    output_shards: int = _positive_int(4)  # token/text shards per release
    # the files a release writes: megatron, nanogpt, parquet (see feedstock.pretrain.formats)
    formats: tuple[str, ...] = _rule(
        f"a non-empty list of {', '.join(FORMATS[:-1])} or {FORMATS[-1]}, each once",
        lambda v: bool(v) and len(set(v)) == len(v) and set(v) <= set(FORMATS),
        DEFAULT_FORMATS,
    )
    # the share of documents (by a hash of their id) in nanoGPT's val.bin
    nanogpt_val_fraction: float = _rule("a number from 0 up to 1", lambda v: 0 <= v < 1, 0.005)

    def __post_init__(self) -> None:
        where = "config 'pretrain'"
        _check_fields(self, where)
        for block, options in _STAGE_OPTIONS.items():
            values = getattr(self, block)
            if values is not None:
                _check_mapping(values, options, f"{where}: field '{block}'")
        _check_tokenizer(self.tokenizer, where)
        if self.decontamination is not None and not self.decontamination.get("eval_sets"):
            raise ConfigError(
                f"{where}: field 'decontamination': key 'eval_sets' is required (a list of paths)"
            )


FINETUNE_FORMATS = (
    "openai_chat",
    "openai_dpo",
    "trl_messages",
    "trl_prompt_completion",
    "trl_preference",
    "alpaca",
    "sharegpt",
)
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class FinetuneQuality:
    """The fine-tuning feed's quality rules; a threshold set to null switches its rule off."""

    min_tokens: int | None = _rule("a positive integer or null", lambda v: v >= 1, 8)  # the whole example
    max_tokens: int | None = _rule("a positive integer or null", lambda v: v >= 1, None)
    min_response_words: int | None = _rule("a positive integer or null", lambda v: v >= 1, 3)
    repetition: bool = True  # Gopher's repetition rules on the assistant turns
    prompt_equals_response: bool = True

    def __post_init__(self) -> None:
        _check_fields(self, "config 'finetune.quality'")


@dataclass(frozen=True)
class Selection:
    """Deita-style selection: the best-scoring examples that are not too like one already chosen, to a budget."""

    budget: float = _rule("a count (>= 1) or a fraction (< 1) above 0", lambda v: v > 0)
    max_similarity: float = _rule("a number in (0, 1]", lambda v: 0 < v <= 1, 0.9)  # cosine to a chosen one

    def __post_init__(self) -> None:
        _check_fields(self, "config 'finetune.selection'")
        if self.budget >= 1 and self.budget != int(self.budget):
            raise ConfigError(
                f"config 'finetune.selection': field 'budget' must be a whole count or a fraction below 1, "
                f"got {self.budget}"
            )


@dataclass(frozen=True)
class Finetune:
    """The fine-tuning feed. Every stage can be switched off or tuned; see the README."""

    # default (None): every dataset source and every warehouse source with a finetune template
    sources: tuple[str, ...] | None = None
    batch_size: int = _positive_int(1_000)  # records per streamed batch
    pii: dict[str, Any] | None = field(default_factory=dict)  # types; None = off
    quality: FinetuneQuality = FinetuneQuality()
    tokenizer: dict[str, Any] = field(default_factory=lambda: {"kind": "tiktoken", "name": "cl100k_base"})
    max_tokens: int = _positive_int(4_096)  # per example, counted with the tokenizer over every turn
    truncate: bool = False  # over max_tokens: drop whole turns from the end instead of rejecting
    exact_dedup: bool = True
    # on the prompt side; shorter shingles than pretraining's because prompts are short
    minhash: MinHash | None = MinHash(shingle_size=2, threshold=0.5)
    decontamination: dict[str, Any] | None = field(default_factory=dict)  # eval_sets, ngram, fields
    selection: Selection | None = None
    splits: dict[str, float] = _rule(
        "a mapping of train, validation and test to fractions that add up to 1, with train",
        lambda v: (
            "train" in v
            and set(v) <= set(SPLITS)
            and all(0 <= f <= 1 for f in v.values())
            and abs(sum(v.values()) - 1) < 1e-9
        ),
        factory=lambda: {"train": 0.9, "validation": 0.1},
    )
    formats: tuple[str, ...] = _rule(
        f"a non-empty list of {', '.join(FINETUNE_FORMATS[:-1])} or {FINETUNE_FORMATS[-1]}, each once",
        lambda v: bool(v) and len(set(v)) == len(v) and set(v) <= set(FINETUNE_FORMATS),
        FINETUNE_FORMATS,
    )
    seed: int = 42

    def __post_init__(self) -> None:
        where = "config 'finetune'"
        _check_fields(self, where)
        for block in ("pii", "decontamination", "tokenizer"):
            values = getattr(self, block)
            if values is not None:
                _check_mapping(values, _STAGE_OPTIONS[block], f"{where}: field '{block}'")
        _check_tokenizer(self.tokenizer, where)
        if self.decontamination is not None:
            ngram = self.decontamination.get("ngram", 13)
            if ngram < 1:
                raise ConfigError(f"{where}: field 'decontamination': key 'ngram' must be >= 1, got {ngram}")


@dataclass(frozen=True)
class Warm:
    """Past answers loaded into the cache from a warehouse source's rows, grounded on their documents."""

    source: str = _name()  # a warehouse source with a document template (its documents are in the index)
    question: str = _text("a column name")  # the column holding the question
    answer: str = _text("a column name")  # the column holding the answer given

    def __post_init__(self) -> None:
        _check_fields(self, "config 'serve.cache.warm'")


@dataclass(frozen=True)
class Cache:
    """The semantic cache of ``feedstock serve`` (see :mod:`feedstock.serving.cache`)."""

    store: str = _one_of("lake", "lake", "redis")  # lake: a LanceDB table beside the index; redis: shared
    redis_url: str = _text("a redis:// URL", "redis://127.0.0.1:6379/0")
    redis_prefix: str = _text("a key prefix", "feedstock:cache")  # one per deployment sharing a Redis db
    # null: the threshold `feedstock cache calibrate` measured (0.9 until it has run)
    threshold: float | None = _rule("a number in (0, 1] or null", lambda v: 0 < v <= 1, None)
    ttl_seconds: int = _positive_int(7 * 86_400)  # absolute: a hit does not extend it
    pairs: str = _text("a path", "include/config/cache_pairs.yaml")  # labelled pairs for calibration
    warm: Warm | None = None  # e.g. {source: tickets, question: question, answer: answer}

    def __post_init__(self) -> None:
        _check_fields(self, "config 'serve.cache'")


@dataclass(frozen=True)
class Serve:
    """``feedstock serve``: the search API and the semantic cache."""

    host: str = _text("a host name or address", "127.0.0.1")
    port: int = _rule("a port number", lambda v: 1 <= v <= 65535, 8800)
    url: str | None = None  # where `feedstock search` finds the service (default http://host:port)
    # API keys: the environment variable holding each key, and the access tags its caller holds. With none,
    # a caller's tags come from the X-Access-Tags header (for a gateway that sets it).
    api_keys: dict[str, list[str]] = _rule(
        "a mapping of environment variable names to tag lists", factory=dict
    )
    max_query_chars: int = _positive_int(2_000)
    max_k: int = _positive_int(50)
    poll_seconds: float = _positive(1.0)  # how often the service looks for a new release
    cache: Cache = Cache()

    def __post_init__(self) -> None:
        _check_fields(self, "config 'serve'")


# ---- the configuration ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """The whole file: the lake, the valid sources, the broken ones, and the settings of each stage."""

    lake: str = _text("a path or URL")
    sources: tuple[Source, ...] = _rule("a tuple of sources")  # the valid ones
    validation: Validation = Validation()
    lake_aws_conn_id: str | None = None
    rag: Rag = Rag()
    pretrain: Pretrain = Pretrain()
    finetune: Finetune = Finetune()
    serve: Serve = Serve()
    broken: tuple[BrokenSource, ...] = ()  # the entries that could not be parsed, in file order
    # every entry's name, valid or broken, in file order (for source_names); empty: sources, then broken
    order: tuple[str, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_fields(self, "config")
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            twice = next(n for n in names if names.count(n) > 1)
            raise ConfigError(f"source '{twice}': field 'name' is used by two sources")
        configured = set(names) | {b.name for b in self.broken}
        for attr in ("sources", "weights"):
            unknown = [n for n in getattr(self.pretrain, attr) or () if n not in configured]
            if unknown:
                raise ConfigError(f"config 'pretrain': field '{attr}' names unknown source '{unknown[0]}'")
        unknown = [n for n in self.finetune.sources or () if n not in configured]
        if unknown:
            raise ConfigError(f"config 'finetune': field 'sources' names unknown source '{unknown[0]}'")

    def source(self, name: str) -> Source:
        """The named source; a broken one raises its own one-line error."""
        for source in self.sources:
            if source.name == name:
                return source
        if problem := self.problem(name):
            raise ConfigError(problem)
        raise ConfigError(f"source '{name}': not in the configuration")

    def of_kind(self, kind: str) -> list[Source]:
        """The valid sources of a kind."""
        return [s for s in self.sources if s.kind == kind]

    def source_names(self, kind: str) -> list[str]:
        """The names, in file order, of the valid and broken sources of a kind (one task each).

        A broken entry whose kind is unknown is listed for every kind, so that its error is seen.
        """
        kinds: dict[str, str | None] = {s.name: s.kind for s in self.sources}
        for b in self.broken:
            kinds.setdefault(b.name, b.kind)
        order = self.order or tuple(kinds)
        return [name for name in dict.fromkeys(order) if name in kinds and kinds[name] in (kind, None)]

    def problem(self, name: str) -> str | None:
        """The one-line error of a broken source, or None when the source is fine (or not configured)."""
        if any(s.name == name for s in self.sources):
            return None
        return next((b.error for b in self.broken if b.name == name), None)


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
    return parse_config({} if raw is None else raw, base_dir=PROJECT_ROOT)


_TOP_LEVEL = ("lake", "lake_aws_conn_id", "sources", "validation", "rag", "pretrain", "finetune", "serve")


def parse_config(raw: dict[str, Any], base_dir: Path = PROJECT_ROOT) -> Config:
    """Check a parsed YAML document; a problem in one source makes it a :class:`BrokenSource`, not an error."""
    if not isinstance(raw, dict):
        raise ConfigError("config: the top level must be a mapping with 'lake' and 'sources'")
    _reject_unknown(raw, _TOP_LEVEL, "config")
    lake = _parse_lake(raw.get("lake"), base_dir)
    sources_raw = raw.get("sources")
    if not isinstance(sources_raw, list):
        raise ConfigError(f"config: field 'sources' must be a list, got {_show(sources_raw)}")
    sources: list[Source] = []
    broken: list[BrokenSource] = []
    order: list[str] = []
    for index, item in enumerate(sources_raw):
        name = item.get("name") if isinstance(item, dict) else None
        name = name if isinstance(name, str) and _NAME.match(name) else f"#{index + 1}"
        kind = item.get("kind") if isinstance(item, dict) else None
        try:
            if name in order:
                raise ConfigError(f"source '{name}': field 'name' is used by two sources")
            sources.append(_parse_source(item, index, base_dir))
        except ConfigError as exc:
            broken.append(
                BrokenSource(name, kind if isinstance(kind, str) and kind in _KINDS else None, str(exc))
            )
        order.append(name)
    rag = _section(raw, "rag", "config")
    embedding = _build(Embedding, _section(rag, "embedding", "config 'rag'"), "config 'rag.embedding'")
    if rag.get("rerank") is not None:
        rag = {
            **rag,
            "rerank": _build(Rerank, _section(rag, "rerank", "config 'rag'"), "config 'rag.rerank'"),
        }
    boilerplate = _section(rag, "boilerplate", "config 'rag'")
    rag = {**rag, "boilerplate": _build(Boilerplate, boilerplate, "config 'rag.boilerplate'")}
    if isinstance(rag.get("golden_set"), str):
        rag = {**rag, "golden_set": resolve_uri(rag["golden_set"], base_dir)}
    return Config(
        lake=lake,
        sources=tuple(sources),
        validation=_build(Validation, _section(raw, "validation", "config"), "config 'validation'"),
        lake_aws_conn_id=raw.get("lake_aws_conn_id"),
        rag=_build(Rag, {**rag, "embedding": embedding}, "config 'rag'"),
        pretrain=_parse_pretrain(_section(raw, "pretrain", "config"), base_dir),
        finetune=_parse_finetune(_section(raw, "finetune", "config"), base_dir),
        serve=_parse_serve(_section(raw, "serve", "config"), base_dir),
        broken=tuple(broken),
        order=tuple(order),
    )


def _parse_serve(raw: dict[str, Any], base_dir: Path) -> Serve:
    cache = _section(raw, "cache", "config 'serve'")
    pairs = cache.get("pairs", Cache().pairs)
    if isinstance(pairs, str):
        cache = {**cache, "pairs": resolve_uri(pairs, base_dir)}
    if isinstance(cache.get("warm"), dict):
        cache = {**cache, "warm": _build(Warm, cache["warm"], "config 'serve.cache.warm'")}
    values = {**raw, "cache": _build(Cache, cache, "config 'serve.cache'")}
    return _build(Serve, values, "config 'serve'")


def _parse_lake(value: Any, base_dir: Path) -> str:
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError(f"config: field 'lake' must be a path or URL, got {_show(value)}")
    from_env = os.environ.get("FEEDSTOCK_LAKE")
    lake = resolve_uri(from_env or value or "./data/lake", base_dir)
    if problem := _unwritable(lake):
        raise ConfigError(f"config: field 'lake'{' ($FEEDSTOCK_LAKE)' if from_env else ''}: {problem}")
    return lake


def _unwritable(lake: str) -> str | None:
    """Why a local lake folder cannot be written (None if it can). Object storage is not checked here."""
    if "://" in lake and not lake.startswith("file://"):
        return None
    path = Path(lake.removeprefix("file://"))
    if os.path.isdir(path):
        return None if os.access(path, os.W_OK | os.X_OK) else f"{lake} is not writable"
    if os.path.lexists(path):
        return f"{lake} is a file, not a folder"
    ancestor = path.parent
    while not os.path.lexists(ancestor):
        ancestor = ancestor.parent
    if not os.path.isdir(ancestor):
        return f"{lake} cannot be created: {ancestor} is not a folder"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"{lake} cannot be created: {ancestor} is not writable"
    try:  # root passes every access check, so try it (in a folder of our own, removed at once)
        os.rmdir(tempfile.mkdtemp(prefix=".feedstock-lake-check-", dir=ancestor))
    except OSError as exc:
        return f"{lake} cannot be created in {ancestor} ({exc.strerror})"
    return None


def _parse_source(item: Any, index: int, base_dir: Path) -> Source:
    if not isinstance(item, dict):
        raise ConfigError(f"source #{index + 1}: must be a mapping, got {_show(item)}")
    name = item.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"source #{index + 1}: field 'name' must be lower_snake_case, got {_show(name)}")
    where = f"source '{name}'"
    kind = item.get("kind")
    if not isinstance(kind, str) or kind not in _KINDS:
        raise ConfigError(f"{where}: field 'kind' must be one of {', '.join(_KINDS)}, got {_show(kind)}")
    values = {k: v for k, v in item.items() if k != "kind"}
    for attr in ("include", "exclude"):
        if isinstance(values.get(attr), str):  # one glob
            values[attr] = [values[attr]]
    if isinstance(values.get("uri"), str) and values["uri"]:
        values["uri"] = resolve_uri(values["uri"], base_dir)
    return _build(_KINDS[kind], values, where)


def _parse_pretrain(raw: dict[str, Any], base_dir: Path) -> Pretrain:
    values = dict(raw)
    values["minhash"] = _switch(values.get("minhash", True), MinHash, MinHash(), "config 'pretrain.minhash'")
    return _build(Pretrain, _stage_blocks(values, base_dir), "config 'pretrain'")


def _parse_finetune(raw: dict[str, Any], base_dir: Path) -> Finetune:
    values = _stage_blocks(dict(raw), base_dir)
    where = "config 'finetune'"
    values["minhash"] = _switch(values.get("minhash", True), MinHash, Finetune().minhash, f"{where}.minhash")
    values["selection"] = _switch(values.get("selection"), Selection, None, f"{where}.selection")
    values["quality"] = _switch(
        values.get("quality", True), FinetuneQuality, FinetuneQuality(), f"{where}.quality"
    )
    if values["quality"] is None:  # quality: false switches every rule off
        values["quality"] = FinetuneQuality(None, None, None, False, False)
    return _build(Finetune, values, where)


def _switch(value: Any, cls: type, default: Any, where: str) -> Any:
    """A block that may be a mapping (its settings), true (the defaults) or false/null (off)."""
    if value is None or value is False:
        return None
    if value is True:
        return default if default is not None else cls()
    if isinstance(value, dict):
        return _build(cls, value, where)
    return value  # the wrong type: the dataclass names the field


def _stage_blocks(values: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """The option blocks the pretraining and fine-tuning feeds share: switches and paths made absolute."""
    for block in ("language", "pii", "decontamination"):  # false switches a stage off, like null
        if values.get(block) is False:
            values[block] = None
    tokenizer = values.get("tokenizer")
    if isinstance(tokenizer, dict) and tokenizer.get("kind") == "huggingface":
        if isinstance(tokenizer.get("path"), str) and tokenizer["path"]:
            values["tokenizer"] = {**tokenizer, "path": resolve_uri(tokenizer["path"], base_dir)}
    decontamination = values.get("decontamination")
    if isinstance(decontamination, dict) and _conforms(decontamination.get("eval_sets"), list[str]):
        resolved = [resolve_uri(p, base_dir) for p in decontamination["eval_sets"]]
        values["decontamination"] = {**decontamination, "eval_sets": resolved}
    return values


def resolve_uri(uri: str, base_dir: Path = PROJECT_ROOT) -> str:
    """Make a local path absolute (relative to the project root); leave URLs with a scheme alone."""
    if "://" in uri:
        return uri.rstrip("/")
    path = Path(uri).expanduser()
    return str(path if path.is_absolute() else (base_dir / path).resolve())
