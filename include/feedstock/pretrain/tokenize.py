"""Token shards: Megatron-Core indexed datasets (``shard-00000.bin``/``.idx``) of tokenized documents.

The tokenizers themselves are shared with the fine-tuning feed: :mod:`feedstock.stages.tokenizers`. The layout of
the files, including that of earlier releases, is :mod:`feedstock.pretrain.formats`.
"""

from __future__ import annotations

from itertools import chain
from typing import Any

import numpy as np

from feedstock.pretrain.formats import index_dtype, megatron_index, token_offsets


def with_eos(token_lists: list[list[int]], eos_id: int, dtype: np.dtype) -> np.ndarray:
    """Documents' tokens back to back, each followed by EOS, as one array of ``dtype``."""
    eos = (eos_id,)
    return np.fromiter(
        chain.from_iterable(chain(tokens, eos) for tokens in token_lists),
        dtype=dtype,
        count=sum(len(t) + 1 for t in token_lists),
    )


class TokenShardWriter:
    """Streams documents' tokens into a Megatron ``.bin``; :meth:`index_bytes` is its ``.idx``."""

    def __init__(self, bin_handle: Any, dtype: np.dtype, eos_id: int):
        self.handle, self.dtype, self.eos = bin_handle, dtype, eos_id
        self.lengths: list[int] = []

    def write(self, token_lists: list[list[int]]) -> list[int]:
        """Append documents; return each one's token count (EOS excluded)."""
        counts = [len(t) for t in token_lists]
        if token_lists:
            self.handle.write(with_eos(token_lists, self.eos, self.dtype).tobytes())
            self.lengths.extend(n + 1 for n in counts)
        return counts

    def index_bytes(self) -> bytes:
        return megatron_index(self.lengths, self.dtype)


def read_document(bin_bytes: bytes, idx_bytes: bytes, dtype: str, doc: int) -> list[int]:
    """The tokens of one document of a token shard (either index layout), EOS excluded."""
    offsets = token_offsets(idx_bytes)
    if not 0 <= doc < len(offsets) - 1:
        raise ValueError(f"document {doc} is out of range: the shard has {len(offsets) - 1} documents")
    tokens = np.frombuffer(bin_bytes, dtype=index_dtype(idx_bytes) or np.dtype(dtype))
    return tokens[offsets[doc] : offsets[doc + 1] - 1].tolist()
