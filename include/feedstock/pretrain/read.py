"""Reading a published pretraining release back: the text of its token files, in every format it wrote.

:func:`decode` finds a release (or the latest one) in ``pretrain.release`` and decodes one document, or every
document, of an output shard (Megatron ``.bin``/``.idx``, the earlier ``.idx`` layout, or the Parquet text) or of
nanoGPT's ``train.bin``/``val.bin``, with the release's tokenizer (``feedstock pretrain decode``).
"""

from __future__ import annotations

from typing import Any

from feedstock.lake import Lake, filesystem
from feedstock.pretrain.tables import RELEASE


def decode(
    lake: Lake, release: str | int, shard: int | str, doc: int | None = None, fmt: str | None = None
) -> str:
    """The text of one document (or every document) of output shard ``shard`` (or nanoGPT split ``train`` /
    ``val``), read from format ``fmt`` (by default the token files the release has)."""
    import numpy as np

    from feedstock.pretrain.formats import split_documents, token_offsets
    from feedstock.pretrain.tokenize import read_document

    table = lake.read(RELEASE)
    if table is None or table.num_rows == 0:
        raise ValueError("no pretraining release yet: run the pretrain_feed DAG first")
    rows = table.to_pylist()
    number = max(r["release"] for r in rows) if release == "latest" else int(release)
    rows = [r for r in rows if r["release"] == number]
    if not rows:
        raise ValueError(f"there is no pretraining release {number}")
    row = _find(rows, shard, fmt, number)
    tokenizer = _tokenizer(row)
    if row.get("format") == "parquet":
        texts = lake.read_parquet(row["uri"]).column("text").to_pylist()
        return "\n".join(texts if doc is None else [_nth(texts, doc)])
    if row.get("format") == "nanogpt":
        tokens = np.frombuffer(_read_bytes(lake, row["uri"]), dtype=np.dtype(row["dtype"]))
        docs = [d.tolist() for d in split_documents(tokens, row["eos_id"])]
        return "\n".join(tokenizer.decode(d) for d in (docs if doc is None else [_nth(docs, doc)]))
    bin_uri = row.get("uri") or row["bin_uri"]  # megatron, or a release written before pretrain.formats
    data = _read_bytes(lake, bin_uri)
    index = _read_bytes(lake, row.get("idx_uri") or bin_uri.removesuffix(".bin") + ".idx")
    n_docs = len(token_offsets(index)) - 1
    docs = range(n_docs) if doc is None else [doc]
    return "\n".join(tokenizer.decode(read_document(data, index, row["dtype"], d)) for d in docs)


def _find(rows: list[dict[str, Any]], shard: int | str, fmt: str | None, number: int) -> dict[str, Any]:
    """The catalog row of the file to read: the shard's token file unless ``fmt`` names another format."""
    if str(shard) in ("train", "val"):
        fmt = fmt or "nanogpt"
        match = [r for r in rows if r.get("format") == fmt and r.get("split") == str(shard)]
    else:
        order = (fmt,) if fmt else ("megatron", None, "parquet")  # None: a release before pretrain.formats
        match = sorted(
            (
                r
                for r in rows
                if r["shard"] == int(shard)
                and r.get("format") in order
                and not (r.get("uri") or "").endswith(".idx")
            ),
            key=lambda r: order.index(r.get("format")),
        )
    if not match:
        what = f"{fmt} files" if fmt else "token files"
        raise ValueError(f"release {number} has no {what} for shard {shard}")
    return match[0]


def _tokenizer(row: dict[str, Any]):
    from feedstock.stages.tokenizers import load_tokenizer

    if row["tokenizer"] in ("cl100k_base", "o200k_base"):
        return load_tokenizer({"kind": "tiktoken", "name": row["tokenizer"]})
    return load_tokenizer({"kind": "huggingface", "path": row["tokenizer"]})


def _nth(items: list, doc: int):
    if not 0 <= doc < len(items):
        raise ValueError(f"document {doc} is out of range: the file has {len(items)} documents")
    return items[doc]


def _read_bytes(lake: Lake, uri: str) -> bytes:
    fs, path = filesystem(uri, lake.s3)
    with fs.open(path, "rb") as handle:
        return handle.read()
