"""Forgetting documents in published pretraining releases: only the shards that hold them are rewritten.

For each release that published a forgotten document, every file format is rewritten without it:

- ``parquet``: the shard's rows without the document (this is also how the token files are matched: each format
  keeps the same document order);
- ``megatron``: the kept documents' token slices, byte for byte, and a new ``MMIDIDX`` index;
- ``nanogpt``: ``train.bin``/``val.bin`` cut back into documents (each ends with EOS), the forgotten ones left out.

A shard without a forgotten document is not touched. The release's ``stats.json`` and data card get a note of the
deletion (counts only), and its ``pretrain.release`` rows their new document and token counts. A release written
without the ``parquet`` format has no document ids in its files; it cannot be edited and is reported.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from feedstock.forget import note_deletion, replace_file
from feedstock.lake import Lake, filesystem
from feedstock.pretrain.formats import (
    in_validation,
    index_dtype,
    megatron_index,
    split_documents,
    token_offsets,
)


def forget_in_release(
    config: Any, lake: Lake, files: list[dict[str, Any]], ids: set[str]
) -> dict[str, Any] | None:
    """Rewrite one release's files (its ``pretrain.release`` rows) without documents ``ids``. Returns the updated
    rows and counts, or None when the release holds none of them."""
    parquet = sorted((f for f in files if f["format"] == "parquet"), key=lambda f: f["shard"])
    if not parquet:
        raise ValueError(
            f"pretraining release {files[0]['release']} has no parquet files: its token files carry no document "
            "ids, so forgetting must rebuild it"
        )
    wanted = pa.array(sorted(ids), pa.string())
    shards = {f["shard"]: lake.read_parquet(f["uri"]) for f in parquet}
    drops = {s: pc.is_in(t["doc_id"], wanted) for s, t in shards.items()}
    removed = {s: int(pc.sum(d).as_py() or 0) for s, d in drops.items()}
    if not any(removed.values()):
        return None
    release = files[0]["release"]
    updated = []
    for f in files:
        shard = f["shard"]
        if f["format"] == "parquet" and removed.get(shard):
            kept = shards[shard].filter(pc.invert(drops[shard]))
            replace_file(lake, f["uri"], lambda handle, kept=kept: pq.write_table(kept, handle))
            f = {**f, "docs": kept.num_rows, "tokens": int(pc.sum(kept["n_tokens"]).as_py() or 0)}
        elif f["format"] == "megatron" and removed.get(shard) and f["uri"].endswith(".bin"):
            f = _megatron(lake, f, drops[shard].to_numpy(zero_copy_only=False))
        elif f["format"] == "nanogpt" and f["split"] in ("train", "val"):
            f = _nanogpt(config, lake, f, shards, drops)
        updated.append(f)
    # the .idx rows carry the same counts as their .bin
    bins = {f["shard"]: f for f in updated if f["format"] == "megatron" and f["uri"].endswith(".bin")}
    updated = [
        {**f, "docs": bins[f["shard"]]["docs"], "tokens": bins[f["shard"]]["tokens"]}
        if f["format"] == "megatron" and f["uri"].endswith(".idx")
        else f
        for f in updated
    ]
    gone = {d for s, t in shards.items() for d in t["doc_id"].filter(drops[s]).to_pylist()}
    return {
        "release": release,
        "files": updated,
        "documents": len(gone),
        "copies": sum(removed.values()),
        "shards": sorted(s for s, n in removed.items() if n),
    }


def _read(lake: Lake, uri: str) -> bytes:
    fs, path = filesystem(uri, lake.s3)
    with fs.open(path, "rb") as handle:
        return handle.read()


def _megatron(lake: Lake, f: dict[str, Any], drop: np.ndarray) -> dict[str, Any]:
    idx_uri = f["uri"].removesuffix(".bin") + ".idx"
    index = _read(lake, idx_uri)
    dtype = index_dtype(index) or np.dtype(f["dtype"])
    tokens = np.frombuffer(_read(lake, f["uri"]), dtype=dtype)
    offsets = token_offsets(index)
    kept = [i for i in range(len(offsets) - 1) if not drop[i]]
    pieces = [tokens[offsets[i] : offsets[i + 1]] for i in kept]
    data = np.concatenate(pieces) if pieces else np.zeros(0, dtype)
    replace_file(lake, f["uri"], lambda handle: handle.write(data.tobytes()))
    lengths = [int(offsets[i + 1] - offsets[i]) for i in kept]
    replace_file(lake, idx_uri, lambda handle: handle.write(megatron_index(lengths, dtype)))
    return {**f, "docs": len(kept), "tokens": int(sum(lengths) - len(kept))}


def _nanogpt(
    config: Any, lake: Lake, f: dict[str, Any], shards: dict[int, pa.Table], drops: dict[int, pa.Array]
) -> dict[str, Any]:
    """``train.bin``/``val.bin`` hold the release's documents in shard order, each on the side its id hashes to."""
    p = config.pretrain
    side = []  # for each document of this split, in file order: whether it is forgotten
    for shard in sorted(shards):
        ids, drop = shards[shard]["doc_id"].to_pylist(), drops[shard].to_pylist()
        for doc_id, dropped in zip(ids, drop, strict=True):
            if in_validation(doc_id, p.seed, p.nanogpt_val_fraction) == (f["split"] == "val"):
                side.append(dropped)
    if not any(side):
        return f
    dtype = np.dtype(f["dtype"])
    eos = int(f["eos_id"])
    documents = split_documents(np.frombuffer(_read(lake, f["uri"]), dtype=dtype), eos)
    if len(documents) != len(side):
        raise ValueError(f"{f['uri']}: {len(documents)} documents, but the parquet shards list {len(side)}")
    kept = [d for d, dropped in zip(documents, side, strict=True) if not dropped]
    end = np.array([eos], dtype)
    data = np.concatenate([piece for d in kept for piece in (d, end)]) if kept else np.zeros(0, dtype)
    replace_file(lake, f["uri"], lambda handle: handle.write(data.tobytes()))
    return {**f, "docs": len(kept), "tokens": int(sum(len(d) for d in kept))}


def note(lake: Lake, release_dir: str, request: str, result: dict[str, Any]) -> None:
    """Counts only: the release's ``stats.json`` and data card record the deletion."""
    parquet = [f for f in result["files"] if f["format"] == "parquet"]
    note_deletion(
        lake,
        release_dir,
        request,
        {"documents": result["documents"], "shards": result["shards"]},
        "docs_published",
        f"\n## Deletion ({request})\n\n{result['documents']} documents ({result['copies']} copies) were removed "
        f"from shards {', '.join(map(str, result['shards']))} by a `forget` request; the counts above are as "
        "released, `stats.json` holds the current ones.\n",
        docs_out_weighted=sum(f["docs"] for f in parquet),
        tokens=sum(f["tokens"] for f in parquet),
    )
