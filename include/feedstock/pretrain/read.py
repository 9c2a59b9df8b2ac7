"""Reading a published pretraining release back: the text of its token shards.

:func:`decode` finds a shard of a release (or of the latest one) in ``pretrain.release`` and decodes one document,
or every document, of its ``.bin``/``.idx`` files with the release's tokenizer (``feedstock pretrain decode``).
"""

from __future__ import annotations

from feedstock.lake import Lake, filesystem
from feedstock.pretrain.tables import RELEASE


def decode(lake: Lake, release: str | int, shard: int, doc: int | None = None) -> str:
    """The text of one document (or every document) of a token shard, decoded with the release's tokenizer."""
    from feedstock.pretrain.tokenize import load_tokenizer, read_document

    table = lake.read(RELEASE)
    if table is None or table.num_rows == 0:
        raise ValueError("no pretraining release yet: run the pretrain_feed DAG first")
    rows = table.to_pylist()
    number = max(r["release"] for r in rows) if release == "latest" else int(release)
    match = [r for r in rows if r["release"] == number and r["shard"] == shard]
    if not match:
        raise ValueError(f"release {number} has no shard {shard}")
    row = match[0]
    spec = {"kind": "tiktoken", "name": row["tokenizer"]}
    if row["tokenizer"] not in ("cl100k_base", "o200k_base"):
        spec = {"kind": "huggingface", "path": row["tokenizer"]}
    tokenizer = load_tokenizer(spec)
    data = _read_bytes(lake, row["bin_uri"])
    index = _read_bytes(lake, row["idx_uri"])
    n_docs = len(index) // 8 - 1
    docs = range(n_docs) if doc is None else [doc]
    return "\n".join(tokenizer.decode(read_document(data, index, row["dtype"], d)) for d in docs)


def _read_bytes(lake: Lake, uri: str) -> bytes:
    fs, path = filesystem(uri, lake.s3)
    with fs.open(path, "rb") as handle:
        return handle.read()
