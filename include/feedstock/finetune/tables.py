"""The fine-tuning feed's tables in the lake and the schema of the files its stages hand each other.

Tables, committed by :func:`feedstock.finetune.release.release`:

- ``finetune.release``: one row per published file: ``release, split, format, uri, examples, tokens,
  access_tags`` (every access tag of the file's examples: who may train on it).
- ``finetune.rejects``: ``example_id, record_id, source, stage, reason, release``, one row per example set aside.
- ``finetune.examples``: the canonical rows of every processed example, published or not, with their source record
  id, split and row in the split's files (lineage), their source's access tags, and their exact hash, MinHash signature and LSH buckets (the
  dedup state later releases compare against).
- ``finetune.files``: ``source, relative, version, status, reason, release``: the dataset files each release read
  (or quarantined), so a later release reads only new and changed files.

Staged per source: ``examples.parquet`` (:data:`EXAMPLE_SCHEMA`, the examples that passed the per-example stages)
and ``rejects.parquet`` (:data:`REJECT_SCHEMA`); per run, ``curated.parquet`` (:data:`CURATED_SCHEMA`).
"""

from __future__ import annotations

import pyarrow as pa

RELEASE = "finetune.release"
REJECTS = "finetune.rejects"
EXAMPLES = "finetune.examples"
FILES = "finetune.files"

MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))

EXAMPLE_SCHEMA = pa.schema(
    [
        ("example_id", pa.string()),
        ("source", pa.string()),
        ("record_id", pa.string()),
        ("kind", pa.string()),  # sft or preference
        ("messages", MESSAGES),  # a preference pair: the prompt
        ("chosen", MESSAGES),
        ("rejected", MESSAGES),
        ("tokens", pa.int64()),
        ("score", pa.float32()),  # the quality score selection ranks by
        ("exact_hash", pa.int64()),
        ("signature", pa.binary()),
        ("buckets", pa.list_(pa.int64())),
        ("access_tags", pa.list_(pa.string())),  # the source's, for whoever trains on or serves the example
    ]
)
REJECT_SCHEMA = pa.schema(
    [
        ("example_id", pa.string()),
        ("record_id", pa.string()),
        ("source", pa.string()),
        ("stage", pa.string()),
        ("reason", pa.string()),
    ]
)
CURATED_SCHEMA = pa.schema(
    [
        ("example_id", pa.string()),
        ("status", pa.string()),  # published, or the reason (dedup:exact, selection:redundant, ...)
        ("split", pa.string()),
        ("group", pa.string()),  # the near-duplicate group the split was drawn for
    ]
)
RELEASE_SCHEMA = pa.schema(
    [
        ("release", pa.int64()),
        ("split", pa.string()),
        ("format", pa.string()),
        ("uri", pa.string()),
        ("examples", pa.int64()),
        ("tokens", pa.int64()),
        ("access_tags", pa.list_(pa.string())),  # every tag of the file's examples
    ]
)
EXAMPLES_SCHEMA = pa.schema(
    [
        ("example_id", pa.string()),
        ("source", pa.string()),
        ("record_id", pa.string()),
        ("release", pa.int32()),
        ("status", pa.string()),
        ("kind", pa.string()),
        ("split", pa.string()),
        ("row", pa.int64()),  # the example's row in its split's files (every format writes the same order)
        ("messages", MESSAGES),
        ("chosen", MESSAGES),
        ("rejected", MESSAGES),
        ("tokens", pa.int64()),
        ("exact_hash", pa.int64()),
        ("signature", pa.binary()),
        ("buckets", pa.list_(pa.int64())),
        ("spec", pa.string()),
        ("access_tags", pa.list_(pa.string())),
    ]
)
FILES_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("relative", pa.string()),
        ("version", pa.string()),
        ("status", pa.string()),  # read or quarantined
        ("reason", pa.string()),
        ("release", pa.int32()),
    ]
)
