"""Release formats: what writing Megatron + nanoGPT + Parquet costs against writing today's token files alone.

The stage measured is the pretraining feed's own tokenize-and-write step, :func:`feedstock.pretrain.mix.write_files`,
run on the 2.2 GB end-to-end benchmark corpus (``bench_pretrain_feed``'s JSONL, built once and cached):

- ``tokens_only``: ``formats: [megatron]``, the ``.bin``/``.idx`` pair a release wrote before formats existed;
- ``all``: ``formats: [megatron, nanogpt, parquet]``.

The corpus is read into memory a chunk (about 64 MB) at a time, outside the clock; both sides run on every chunk,
alternating which goes first, so both see the same machine load. Target: the extra formats cost at most 25% of
the tokens-only stage. ``FEEDSTOCK_BENCH_FORMATS_MB`` bounds the corpus read (default: all of it).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import fsspec
import pyarrow as pa

from benchmarks.bench_pretrain_feed import _corpus
from feedstock.config import Pretrain
from feedstock.pretrain.mix import write_files
from feedstock.stages.tokenizers import load_tokenizer

CHUNK_BYTES = 64 * 1024**2
SIDES = {"tokens_only": ("megatron",), "all": ("megatron", "nanogpt", "parquet")}


def _chunks(folder: Path, limit_mb: float, batch_size: int):
    """Lists of record batches (``doc_id, source, text``) of about CHUNK_BYTES of text each."""
    rows, size, total = [], 0, 0
    for path in sorted(folder.glob("*.jsonl")):
        with path.open() as handle:
            for line in handle:
                doc = json.loads(line)
                rows.append({"doc_id": f"crawl/{doc['id']}", "source": "crawl", "text": doc["text"]})
                size += len(line)
                if size >= CHUNK_BYTES:
                    yield _batches(rows, batch_size), size
                    total += size
                    rows, size = [], 0
                    if total >= limit_mb * 1e6:
                        return
    if rows:
        yield _batches(rows, batch_size), size


def _batches(rows: list[dict], batch_size: int) -> list[pa.RecordBatch]:
    table = pa.Table.from_pylist(rows)
    return table.to_batches(max_chunksize=batch_size)


def run() -> dict:
    limit_mb = float(os.environ.get("FEEDSTOCK_BENCH_FORMATS_MB", "1e9"))
    corpus = _corpus()
    base = Pretrain()
    configs = {side: dataclasses.replace(base, formats=formats) for side, formats in SIDES.items()}
    tokenizer = load_tokenizer(base.tokenizer)
    fs = fsspec.filesystem("file")
    work = Path(tempfile.mkdtemp(prefix="feedstock-bench-formats-"))
    took = dict.fromkeys(SIDES, 0.0)
    out_bytes = dict.fromkeys(SIDES, 0)
    megabytes, docs = 0.0, 0
    try:
        for i, (batches, size) in enumerate(_chunks(corpus, limit_mb, base.batch_size)):
            order = list(SIDES) if i % 2 == 0 else list(reversed(SIDES))
            for side in order:
                folder = work / side
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir()
                start = time.perf_counter()
                written = write_files(fs, str(folder), "shard-00000", batches, tokenizer, configs[side]).docs
                took[side] += time.perf_counter() - start
                out_bytes[side] += sum(p.stat().st_size for p in folder.iterdir())
            megabytes += size / 1e6
            docs += written
            print(f"  {megabytes:,.0f} MB: {took}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    extra = took["all"] / took["tokens_only"] - 1
    return {
        "corpus_megabytes": round(megabytes, 1),
        "documents": docs,
        "tokens_only_seconds": round(took["tokens_only"], 1),
        "all_formats_seconds": round(took["all"], 1),
        "tokens_only_mb_per_s": round(megabytes / took["tokens_only"], 2),
        "all_formats_mb_per_s": round(megabytes / took["all"], 2),
        "extra_formats_cost_pct": round(100 * extra, 1),
        "target_pct": 25,
        "target_met": extra <= 0.25,
        "output_megabytes": {side: round(n / 1e6, 1) for side, n in out_bytes.items()},
    }
