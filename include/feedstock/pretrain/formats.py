"""The file formats a pretraining release writes (``pretrain.formats``), and reading them back.

- ``megatron``: per output shard, ``shard-NNNNN.bin`` (the documents' tokens back to back, each followed by EOS)
  and ``shard-NNNNN.idx`` in Megatron-Core's ``IndexedDataset`` layout (``MMIDIDX``): one sequence per
  document, dtype by vocabulary size as Megatron chooses it (uint16 below 65,500 tokens, else int32). Megatron-LM,
  Megatron-Core, NeMo and GPT-NeoX read it with ``--data-path``.
- ``nanogpt``: ``nanogpt/train.bin`` and ``nanogpt/val.bin``, every document's tokens followed by EOS, flat, in
  release order (shard by shard). uint16 as nanoGPT's ``train.py`` reads it when the vocabulary fits in 16 bits,
  else uint32 (then ``train.py``'s two ``np.uint16`` memmaps must read ``np.uint32``). A document goes to
  ``val.bin`` when the hash of its id falls under ``pretrain.nanogpt_val_fraction``, so the split is the same on
  every run and every copy of a weighted document lands on the same side.
- ``parquet``: per output shard, ``shard-NNNNN.parquet`` with ``doc_id, source, text, n_tokens``, in the same
  order as the token files.

Releases written before ``pretrain.formats`` existed have a ``.idx`` of ``n_docs + 1`` uint64 token offsets and a
uint16/uint32 ``.bin``; :func:`token_offsets` reads both index layouts.

The Megatron index is written here (:func:`megatron_index`, 20 lines of numpy) rather than with Megatron-Core's
``IndexedDatasetBuilder``, which needs torch tensors and imports the training framework (about 9 s) in every
shard task; the tests open every written index with Megatron-Core's own ``IndexedDataset``.
"""

from __future__ import annotations

import hashlib
import pickle
import posixpath
import shutil
import struct
from typing import Any

import numpy as np

FORMATS = ("megatron", "nanogpt", "parquet")
DEFAULT_FORMATS = ("megatron", "parquet")

MEGATRON_HEADER = b"MMIDIDX\x00\x00"
# megatron.core.datasets.indexed_dataset.DType
MEGATRON_DTYPE_CODES = {
    np.dtype("u1"): 1,
    np.dtype("i1"): 2,
    np.dtype("<i2"): 3,
    np.dtype("<i4"): 4,
    np.dtype("<i8"): 5,
    np.dtype("<f8"): 6,
    np.dtype("<f4"): 7,
    np.dtype("<u2"): 8,
}
_CODE_DTYPES = {code: dtype for dtype, code in MEGATRON_DTYPE_CODES.items()}


def megatron_dtype(vocab_size: int) -> np.dtype:
    """Megatron's ``DType.optimal_dtype``: uint16 for vocabularies under 65,500 tokens, else int32."""
    return np.dtype("<u2") if vocab_size < 65500 else np.dtype("<i4")


def nanogpt_dtype(vocab_size: int) -> np.dtype:
    """uint16, as nanoGPT reads it, when every token id fits; else uint32."""
    return np.dtype("<u2") if vocab_size <= 2**16 else np.dtype("<u4")


def megatron_index(lengths: list[int], dtype: np.dtype) -> bytes:
    """An ``MMIDIDX`` index: one sequence per document, each ``lengths[i]`` tokens (EOS included)."""
    sizes = np.asarray(lengths, dtype="<i4")
    pointers = np.zeros(len(sizes), dtype="<i8")
    if len(sizes):
        np.cumsum(sizes[:-1].astype("<i8") * dtype.itemsize, out=pointers[1:])
    documents = np.arange(len(sizes) + 1, dtype="<i8")
    return b"".join(
        (
            MEGATRON_HEADER,
            struct.pack("<Q", 1),
            struct.pack("<B", MEGATRON_DTYPE_CODES[dtype]),
            struct.pack("<Q", len(sizes)),
            struct.pack("<Q", len(documents)),
            sizes.tobytes(),
            pointers.tobytes(),
            documents.tobytes(),
        )
    )


def token_offsets(idx_bytes: bytes) -> np.ndarray:
    """Token offsets (``n_docs + 1``) of a shard's index: Megatron's ``MMIDIDX`` or the earlier uint64 layout."""
    if not idx_bytes.startswith(MEGATRON_HEADER):
        return np.frombuffer(idx_bytes, dtype="<u8").astype(np.int64)
    head = len(MEGATRON_HEADER) + 8
    code = idx_bytes[head]
    if code not in _CODE_DTYPES:
        raise ValueError(f"not a Megatron index: unknown dtype code {code}")
    sequences, _documents = struct.unpack_from("<QQ", idx_bytes, head + 1)
    sizes = np.frombuffer(idx_bytes, dtype="<i4", count=sequences, offset=head + 17)
    offsets = np.zeros(sequences + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    return offsets


def index_dtype(idx_bytes: bytes) -> np.dtype | None:
    """The token dtype a Megatron index names (None for the earlier layout, whose dtype the catalog row holds)."""
    if not idx_bytes.startswith(MEGATRON_HEADER):
        return None
    return _CODE_DTYPES[idx_bytes[len(MEGATRON_HEADER) + 8]]


def in_validation(doc_id: str, seed: int, fraction: float) -> bool:
    """Whether a document belongs to nanoGPT's ``val.bin``: a stable hash of its id, under ``fraction``."""
    digest = hashlib.blake2b(f"{seed}:{doc_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64 < fraction


def split_documents(tokens: np.ndarray, eos_id: int) -> list[np.ndarray]:
    """A flat nanoGPT token file cut back into its documents (EOS dropped)."""
    ends = np.flatnonzero(tokens == eos_id)
    starts = np.concatenate(([0], ends[:-1] + 1))
    return [tokens[s:e] for s, e in zip(starts, ends, strict=True)]


def publish_files(fs: Any, staged: str, base: str, pretrain: Any, shards: list[dict[str, Any]]) -> list[dict]:
    """Move the staged files of every configured format into the release folder ``base``; describe each file.

    Safe to repeat after a crash: a file already moved is not staged any more, and nanoGPT's ``train.bin`` and
    ``val.bin`` are rebuilt from the shards' parts for as long as any part is still staged.
    """
    files: list[dict[str, Any]] = []
    fs.makedirs(base, exist_ok=True)
    shards = sorted(shards, key=lambda s: s["shard"])
    for shard in shards:
        for fmt, suffix in (("megatron", ".bin"), ("megatron", ".idx"), ("parquet", ".parquet")):
            if fmt not in pretrain.formats:
                continue
            name = shard["name"] + suffix
            if fs.exists(posixpath.join(staged, name)):
                fs.mv(posixpath.join(staged, name), posixpath.join(base, name))
            dtype = shard["dtype"] if suffix == ".bin" else None
            files.append(_file(fmt, name, shard["shard"], None, shard["docs"], shard["tokens"], dtype))
    if "nanogpt" in pretrain.formats and shards:
        dtype = nanogpt_dtype(shards[0]["vocab_size"]).str
        fs.makedirs(posixpath.join(base, "nanogpt"), exist_ok=True)
        for split in ("train", "val"):
            parts = [posixpath.join(staged, f"{s['name']}.nanogpt-{split}.bin") for s in shards]
            target = posixpath.join(base, "nanogpt", f"{split}.bin")
            if any(fs.exists(part) for part in parts):
                with fs.open(target, "wb") as out:
                    for part in parts:
                        with fs.open(part, "rb") as handle:
                            shutil.copyfileobj(handle, out, 16 << 20)
                for part in parts:
                    fs.rm(part)
            docs = sum(s["nanogpt"].get(f"{split}_docs", 0) for s in shards)
            tokens = sum(s["nanogpt"].get(f"{split}_tokens", 0) for s in shards)
            files.append(_file("nanogpt", f"nanogpt/{split}.bin", None, split, docs, tokens, dtype))
        meta = pickle.dumps({"vocab_size": shards[0]["vocab_size"]}, protocol=4)
        with fs.open(posixpath.join(base, "nanogpt", "meta.pkl"), "wb") as handle:
            handle.write(meta)
        files.append(_file("nanogpt", "nanogpt/meta.pkl", None, None, 0, 0, None))
    return files


def _file(fmt, name, shard, split, docs, tokens, dtype) -> dict[str, Any]:
    return {
        "format": fmt,
        "name": name,
        "shard": shard,
        "split": split,
        "docs": docs,
        "tokens": tokens,
        "dtype": dtype,
    }
