"""Stage 5 of the pretraining feed: mix, tokenize and write one output shard (mapped per output shard).

:func:`write_shard` takes the shard's documents that survived the global dedup, applies the mix (per-source
weights, deterministic shuffle by seed), tokenizes them and writes, into the run's staging folder, the files of
each configured format (:mod:`feedstock.pretrain.formats`): Megatron ``.bin``/``.idx``, a Parquet text shard
(``doc_id, source, text, n_tokens``), this shard's parts of nanoGPT's ``train.bin``/``val.bin``. The release moves
them into place. It returns the shard's counts (docs, tokens per source, nanoGPT split) and its tokenizer's
identity.
"""

from __future__ import annotations

import posixpath
from collections import Counter
from collections.abc import Iterable
from contextlib import ExitStack
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

from feedstock.config import Config, Pretrain
from feedstock.lake import Lake, filesystem
from feedstock.pretrain.formats import in_validation, nanogpt_dtype
from feedstock.pretrain.global_dedup import _docs_files, _dropped, _read_docs
from feedstock.pretrain.workspace import run_dir

TEXT_SCHEMA = pa.schema(
    [("doc_id", pa.string()), ("source", pa.string()), ("text", pa.string()), ("n_tokens", pa.int32())]
)


def write_shard(
    config: Config, lake: Lake, run_key: str, results: list[dict[str, Any]], shard: int
) -> dict[str, Any]:
    """Output shard ``shard``: its documents (weighted by source, shuffled by seed), tokenized, into the run's
    staging folder (the release moves it into place)."""
    import duckdb
    import pyarrow.dataset as ds

    from feedstock.stages.tokenizers import load_tokenizer

    p = config.pretrain
    tokenizer = load_tokenizer(p.tokenizer)
    files = _docs_files(lake, results)
    dropped = pa.concat_tables([_dropped(lake, run_key, "exact"), _dropped(lake, run_key, "fuzzy")])
    weights = pa.table(
        {"source": list(p.weights), "weight": pa.array([float(w) for w in p.weights.values()], pa.float64())}
    )
    docs = _read_docs(lake, files, ["doc_id", "source", "text"], ds.field("out_shard") == shard)
    con = duckdb.connect()
    con.register("docs", docs)
    con.register("dropped", dropped)
    con.register("weights", weights)
    # A weight w gives floor(w) copies, plus one more for a hash-chosen share frac(w) of the documents.
    reader = con.sql(
        f"""
        with weighted as (
            select d.doc_id, d.source, d.text, coalesce(w.weight, 1.0) as weight
            from docs d left join weights w using (source)
            where d.doc_id not in (select doc_id from dropped)
        ), copies as (
            select doc_id, source, text,
                   cast(floor(weight) as integer)
                   + case when (hash(doc_id || ':{p.seed}') % 1000000) / 1000000.0 < weight - floor(weight)
                          then 1 else 0 end as n
            from weighted
        )
        select doc_id, source, text from copies, range(n) as c(copy)
        order by hash(doc_id || ':' || copy || ':{p.seed}'), doc_id, copy
        """
    ).fetch_arrow_reader(batch_size=p.batch_size)
    out = posixpath.join(run_dir(lake, run_key), "out")
    name = f"shard-{shard:05d}"
    fs, base = filesystem(out, lake.s3)
    fs.makedirs(base, exist_ok=True)
    written = write_files(fs, base, name, reader, tokenizer, p)
    return {
        "shard": shard,
        "name": name,
        "docs": written.docs,
        "tokens": int(sum(written.tokens_by_source.values())),
        "tokens_by_source": dict(written.tokens_by_source),
        "token_histogram": dict(written.lengths),
        "dtype": tokenizer.dtype.str,
        "tokenizer": tokenizer.name,
        "eos_id": tokenizer.eos_id,
        "vocab_size": tokenizer.vocab_size,
        "nanogpt": dict(written.nanogpt),
    }


class Written(NamedTuple):
    docs: int
    tokens_by_source: Counter
    nanogpt: Counter  # nanoGPT's documents per split
    lengths: Counter  # documents per token-length bucket (feedstock.stages.tokenizers.length_histogram)


def write_files(
    fs: Any, base: str, name: str, batches: Iterable[pa.RecordBatch], tokenizer: Any, p: Pretrain
) -> Written:
    """Tokenize ``batches`` (``doc_id, source, text``) once and write the files of every format in
    ``p.formats`` into the folder ``base``; return what was written."""
    from feedstock.pretrain.tokenize import TokenShardWriter
    from feedstock.stages.tokenizers import length_histogram

    tokens_by_source: Counter = Counter()
    nanogpt: Counter = Counter()
    lengths: Counter = Counter()
    docs_written = 0
    with ExitStack() as files:
        if "megatron" in p.formats:
            handle = files.enter_context(fs.open(posixpath.join(base, f"{name}.bin"), "wb"))
            megatron = TokenShardWriter(handle, tokenizer.dtype, tokenizer.eos_id)
        if "parquet" in p.formats:
            handle = files.enter_context(fs.open(posixpath.join(base, f"{name}.parquet"), "wb"))
            texts = files.enter_context(pq.ParquetWriter(handle, TEXT_SCHEMA))
        if "nanogpt" in p.formats:
            splits = {
                split: files.enter_context(fs.open(posixpath.join(base, f"{name}.nanogpt-{split}.bin"), "wb"))
                for split in ("train", "val")
            }
        for batch in batches:
            encoded = tokenizer.encode_batch(batch.column("text").to_pylist())
            counts = [len(t) for t in encoded]
            if "megatron" in p.formats:
                megatron.write(encoded)
            if "parquet" in p.formats:
                texts.write_table(
                    pa.Table.from_batches([batch]).append_column("n_tokens", pa.array(counts, pa.int32()))
                )
            if "nanogpt" in p.formats:
                _write_nanogpt(splits, batch.column("doc_id").to_pylist(), encoded, tokenizer, p, nanogpt)
            for source, n in zip(batch.column("source").to_pylist(), counts, strict=True):
                tokens_by_source[source] += n
            length_histogram(counts, lengths)
            docs_written += batch.num_rows
    if "megatron" in p.formats:
        with fs.open(posixpath.join(base, f"{name}.idx"), "wb") as handle:
            handle.write(megatron.index_bytes())
    return Written(docs_written, tokens_by_source, nanogpt, lengths)


def _write_nanogpt(splits, doc_ids, encoded, tokenizer, p, counts: Counter) -> None:
    """Append documents to this shard's part of nanoGPT's train.bin or val.bin (chosen by a hash of the id)."""
    from feedstock.pretrain.tokenize import with_eos

    dtype = nanogpt_dtype(tokenizer.vocab_size)
    for split in ("train", "val"):
        chosen = [
            tokens
            for doc_id, tokens in zip(doc_ids, encoded, strict=True)
            if in_validation(doc_id, p.seed, p.nanogpt_val_fraction) == (split == "val")
        ]
        if chosen:
            splits[split].write(with_eos(chosen, tokenizer.eos_id, dtype).tobytes())
            counts[f"{split}_docs"] += len(chosen)
            counts[f"{split}_tokens"] += sum(len(t) for t in chosen)
