"""Stage 3 of the fine-tuning feed, one task per source: read, normalize, and run the per-example stages.

:func:`process_source` reads the source's new records (a ``dataset`` source's files that no earlier release read
in this version; a warehouse source's live rows of the ``finetune_conversations`` mart), turns each into an
:class:`~feedstock.finetune.records.Example`, skips those an earlier release already processed (same example
id), and runs :mod:`feedstock.finetune.checks` in batches. What passes is staged with its token count, quality
score, exact hash and MinHash signature of the prompt side (``examples.parquet``); every reject with its
reason (``rejects.parquet``).

A file that cannot be read (a corrupt ``.gz``, a truncated Parquet footer) is quarantined whole with
``read:unreadable_file`` and one line of why; its records are read all or nothing, so nothing of it is staged.
Every record is accounted for: ``examples_in = staged + rejected``.
"""

from __future__ import annotations

import json
import logging
import posixpath
import zlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from feedstock.config import Config, DatasetSource, WarehouseSource
from feedstock.finetune import curate
from feedstock.finetune.checks import build_checks, count_tokens, tokens
from feedstock.finetune.records import Example, make_example, read_file
from feedstock.finetune.tables import EXAMPLE_SCHEMA, EXAMPLES, FILES, REJECT_SCHEMA, REJECTS
from feedstock.forget import forgotten_ids
from feedstock.lake import Lake
from feedstock.stages.steps import Drop, Forgotten, run_steps

log = logging.getLogger(__name__)


def source_dir(lake: Lake, run_key: str, source: str) -> str:
    return lake.staging("finetune", run_key, "sources", source)


def golden_sets(config: Config) -> list[str]:
    """Every RAG golden set the configuration names: fine-tuning data must not hold their questions."""
    return [config.rag.golden_set] if config.rag.golden_set else []


def _seen(lake: Lake) -> set[str]:
    """Example ids an earlier release processed (published or rejected)."""
    seen: set[str] = set()
    for name in (EXAMPLES, REJECTS):
        table = lake.read(name, columns=["example_id"])
        if table is not None:
            seen.update(table["example_id"].to_pylist())
    return seen


def done_files(lake: Lake) -> set[tuple[str, str, str]]:
    table = lake.read(FILES, columns=["source", "relative", "version"])
    if table is None:
        return set()
    return set(zip(*(table[c].to_pylist() for c in ("source", "relative", "version")), strict=True))


def process_source(
    config: Config, lake: Lake, run_key: str, name: str, duckdb_file: str | None
) -> dict[str, Any]:
    """Read one source's new records, run the per-example stages, stage the results; return the counts."""
    from feedstock.stages.dedup import MinHasher
    from feedstock.stages.tokenizers import load_tokenizer

    source = config.source(name)
    f = config.finetune
    before, after = build_checks(f, golden_sets(config))
    if forgotten := forgotten_ids(lake):
        before.insert(0, Forgotten(forgotten))
    tokenizer = load_tokenizer(f.tokenizer)
    hasher = MinHasher(f.minhash) if f.minhash is not None else None
    seen = _seen(lake)
    stats: dict[str, Counter] = {"read": Counter()}
    files: list[dict[str, Any]] = []
    out = source_dir(lake, run_key, name)
    lake.clear(out)  # a retried task starts over
    examples_uri, rejects_uri = (
        posixpath.join(out, "examples.parquet"),
        posixpath.join(out, "rejects.parquet"),
    )
    rejects: list[dict[str, Any]] = []
    with lake.parquet_writer(examples_uri, EXAMPLE_SCHEMA) as writer:
        for batch in _batches(source, lake, f.batch_size, duckdb_file, files, stats["read"], rejects):
            fresh = []
            for item in batch:
                stats["read"]["in"] += 1
                if isinstance(item, Drop):  # not readable as its schema: counted where it was read
                    stats["read"][f"dropped:{item.reason}"] += 1
                    rejects.append(_reject(item, item.doc_id))
                elif item.doc_id in seen:
                    stats["read"]["unchanged"] += 1
                    stats["read"]["in"] -= 1
                else:
                    stats["read"]["out"] += 1
                    fresh.append(item)
            drops: list[Drop] = []
            record_of = {e.doc_id: e.record_id for e in fresh}
            kept = list(run_steps(fresh, before, stats, drops))
            count_tokens(kept, tokenizer)
            kept = list(run_steps(kept, after, stats, drops))
            rejects += [_reject(d, record_of[d.doc_id]) for d in drops]
            if kept:
                writer.write_table(_contract(_rows(kept, hasher, source.access_tags), stats, rejects))
    lake.write_parquet(rejects_uri, pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA))
    staged = lake.parquet_dataset([examples_uri]).count_rows()  # from the footer: the rows stay on disk
    result = {
        "source": name,
        "examples_uri": examples_uri,
        "rejects_uri": rejects_uri,
        "files": files,
        "stats": {stage: dict(c) for stage, c in stats.items()},
        "examples_in": stats["read"]["in"],
        "staged": staged,
        "rejected": len(rejects),
    }
    if result["examples_in"] != staged + len(rejects):
        raise RuntimeError(
            f"source '{name}': {result['examples_in']} examples in, {staged + len(rejects)} accounted for"
        )
    return result


def _contract(table: pa.Table, stats: dict[str, Counter], rejects: list[dict[str, Any]]) -> pa.Table:
    """The stage boundary: rows that break :data:`feedstock.contracts.FINETUNE_EXAMPLES` become rejects."""
    from feedstock import contracts

    result = contracts.check(table, contracts.FINETUNE_EXAMPLES)
    counter = stats.setdefault("contract", Counter())
    counter["in"] += table.num_rows
    counter["out"] += result.passed.num_rows
    for row, reason in zip(result.failed_rows, result.reasons, strict=True):
        counter[f"dropped:{reason}"] += 1
        rejects.append(
            {
                "example_id": table["example_id"][row].as_py(),
                "record_id": table["record_id"][row].as_py(),
                "source": table["source"][row].as_py(),
                "stage": "contract",
                "reason": reason,
            }
        )
    return result.passed


def _reject(drop: Drop, record_id: str) -> dict[str, Any]:
    return {
        "example_id": drop.doc_id,
        "record_id": record_id,
        "source": drop.source,
        "stage": drop.stage,
        "reason": drop.reason,
    }


def _batches(
    source: Any,
    lake: Lake,
    batch_size: int,
    duckdb_file: str | None,
    files: list,
    counts: Counter,
    rejects: list,
) -> Iterator[list[Example | Drop]]:
    if isinstance(source, WarehouseSource):
        yield from _mart_batches(source, duckdb_file, batch_size)
        return
    assert isinstance(source, DatasetSource)
    from feedstock.documents.ingest import list_files
    from feedstock.pretrain.corpus import file_version

    done = done_files(lake)
    for file in list_files(source, lake):  # type: ignore[arg-type]
        version = file_version(file)
        if (source.name, file["relative"], version) in done:
            counts["files_unchanged"] += 1
            continue
        try:
            batches = list(
                read_file(source, file, lake, batch_size)
            )  # all or nothing: see the module docstring
        except (OSError, EOFError, zlib.error, UnicodeDecodeError, ValueError) as exc:
            batches = None
            why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'unreadable'}"
        except Exception as exc:  # noqa: BLE001 - zstandard and pyarrow raise their own error types
            if type(exc).__module__.split(".")[0] not in ("zstd", "zstandard", "pyarrow"):
                raise
            batches, why = None, f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        files.append(
            {
                "source": source.name,
                "relative": file["relative"],
                "version": version,
                "status": "read" if batches is not None else "quarantined",
            }
        )
        if batches is None:
            log.warning("source '%s': %s quarantined: %s", source.name, file["relative"], why)
            files[-1]["reason"] = why
            counts["files_quarantined"] += 1
            yield [Drop(f"{source.name}/{file['relative']}", source.name, "read", "read:unreadable_file")]
            continue
        counts["files_read"] += 1
        yield from batches


def _mart_batches(
    source: WarehouseSource, duckdb_file: str | None, batch_size: int
) -> Iterator[list[Example]]:
    if not duckdb_file:
        return
    import duckdb

    con = duckdb.connect(duckdb_file, read_only=True)
    try:
        reader = con.execute(
            "select record_id, messages from main.finetune_conversations where source = ? and not is_deleted "
            "order by record_id",
            [source.name],
        ).to_arrow_reader(batch_size)
        for batch in reader:
            yield [make_example(source.name, row["record_id"], row["messages"]) for row in batch.to_pylist()]
    finally:
        con.close()


def _rows(examples: list[Example], hasher: Any, access_tags: tuple[str, ...] = ()) -> pa.Table:
    from feedstock.stages.dedup import exact_hashes

    exact = exact_hashes(
        [json.dumps([e.kind, [t["content"] for t in e.turns()]], ensure_ascii=False) for e in examples]
    )
    if hasher is not None:
        signatures, has_shingles = hasher.signatures([e.prompt_text for e in examples])
        buckets = hasher.buckets(signatures)
        sig_bytes = [s.tobytes() for s in signatures]
        bucket_lists = [b.tolist() if ok else [] for b, ok in zip(buckets, has_shingles, strict=True)]
    else:
        sig_bytes, bucket_lists = [b""] * len(examples), [[] for _ in examples]
    return pa.Table.from_pylist(
        [
            {
                "example_id": e.doc_id,
                "source": e.source,
                "record_id": e.record_id,
                "kind": e.kind,
                "messages": e.messages,
                "chosen": e.chosen,
                "rejected": e.rejected,
                "tokens": tokens(e),
                "score": curate.score(e.response_text, sum(1 for m in e.messages if m["role"] == "user")),
                "exact_hash": int(exact[i]),
                "signature": sig_bytes[i],
                "buckets": bucket_lists[i],
                "access_tags": list(access_tags),
            }
            for i, e in enumerate(examples)
        ],
        schema=EXAMPLE_SCHEMA,
    )
