"""The pretraining feed's tables in the lake and the schemas of the files its stages hand each other.

Tables, committed by :func:`feedstock.pretrain.release.release`:

- ``pretrain.release``: one row per published file (:data:`RELEASE_SCHEMA`): its format, output shard or split,
  URI, documents and tokens. Releases written before ``pretrain.formats`` have one row per output shard with
  ``bin_uri``, ``idx_uri`` and ``parquet_uri`` instead.
- ``pretrain.rejects``: ``doc_id, source, stage, reason`` (and ``release``), one row per document set aside.
- ``pretrain.documents``: the dedup state, one row per processed document (:data:`DOCUMENTS_SCHEMA`).

Staged files: ``rejects.parquet`` (:data:`REJECT_SCHEMA`) and ``docs.parquet`` (:data:`DOCS_SCHEMA`, the kept
documents with their exact hash, MinHash signature, LSH buckets and output shard), one of each per processed shard.
"""

from __future__ import annotations

import pyarrow as pa

RELEASE = "pretrain.release"
REJECTS = "pretrain.rejects"
DOCUMENTS = "pretrain.documents"

RELEASE_SCHEMA = pa.schema(
    [
        ("release", pa.int64()),
        ("format", pa.string()),  # megatron, nanogpt or parquet (feedstock.pretrain.formats)
        ("shard", pa.int64()),  # the output shard; null for nanoGPT's train.bin/val.bin
        ("split", pa.string()),  # nanoGPT: train or val
        ("uri", pa.string()),
        ("docs", pa.int64()),  # documents (and tokens, EOS excluded) in the file
        ("tokens", pa.int64()),
        ("dtype", pa.string()),
        ("tokenizer", pa.string()),
        ("eos_id", pa.int64()),
        ("card_uri", pa.string()),
    ]
)
REJECT_SCHEMA = pa.schema(
    [("doc_id", pa.string()), ("source", pa.string()), ("stage", pa.string()), ("reason", pa.string())]
)
DOCS_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("source", pa.string()),
        ("text", pa.string()),
        ("lang", pa.string()),
        ("lang_score", pa.float32()),
        ("exact_hash", pa.int64()),
        ("signature", pa.binary()),
        ("buckets", pa.list_(pa.int64())),
        ("out_shard", pa.int32()),
    ]
)
DOCUMENTS_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("source", pa.string()),
        ("release", pa.int32()),
        ("status", pa.string()),  # published, or the drop reason
        ("shard_id", pa.string()),
        ("shard_version", pa.string()),
        ("content_hash", pa.string()),  # mart documents: the bronze content hash, to skip unchanged ones
        ("exact_hash", pa.int64()),
        ("signature", pa.binary()),
        ("buckets", pa.list_(pa.int64())),
        ("spec", pa.string()),
    ]
)
