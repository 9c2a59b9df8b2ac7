"""The pretraining feed's tables in the lake and the schemas of the files its stages hand each other.

Tables, committed by :func:`feedstock.pretrain.release.release`:

- ``pretrain.release``: one row per output shard (its ``.bin``, ``.idx`` and ``.parquet`` URIs, docs, tokens).
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
