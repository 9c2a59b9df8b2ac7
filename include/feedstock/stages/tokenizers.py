"""Tokenizers, shared by the feeds that count or write tokens (``pretrain.tokenizer``, ``finetune.tokenizer``).

All offline:

- ``{kind: tiktoken, name: cl100k_base | o200k_base}`` (the default is cl100k_base): OpenAI's encodings run by
  tiktoken, with the vocabularies read from the ``bpe-openai`` package, which bundles them (tiktoken itself would
  download them).
- ``{kind: huggingface, path: .../tokenizer.json, eos_token: ...}``: any HuggingFace ``tokenizers`` file.
"""

from __future__ import annotations

import base64
import gzip
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>", "[SEP]")
LENGTH_EDGES = (0, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)  # the buckets of the data cards' histograms


def length_histogram(lengths: Iterable[int], counts: Counter | None = None) -> Counter:
    """Token lengths counted into the buckets of :data:`LENGTH_EDGES` (``"128-255"``, ``"8192+"``), added to
    ``counts`` when given, so a feed can count shard by shard and merge."""
    counts = Counter() if counts is None else counts
    for n in lengths:
        low = max(e for e in LENGTH_EDGES if e <= n)
        high = next((e for e in LENGTH_EDGES if e > n), None)
        counts[f"{low}-{high - 1}" if high else f"{low}+"] += 1
    return counts


def ordered_histogram(counts: Counter | dict[str, int]) -> dict[str, int]:
    """The buckets in increasing order of length, for a card or a chart."""
    return {k: counts[k] for k in sorted(counts, key=lambda k: int(k.split("-")[0].rstrip("+")))}


def histogram_bars(histogram: dict[str, int], width: int = 30) -> list[tuple[str, int, str]]:
    """``(bucket, count, bar)`` rows for a data card's table: the bar is ``#`` scaled to the largest bucket."""
    peak = max(histogram.values(), default=0)
    return [(k, n, "#" * max(1, round(width * n / peak)) if n else "") for k, n in histogram.items()]


class Tokenizer:
    """The family base: ``encode_batch`` and ``decode``, plus the vocabulary size and the EOS id."""

    name: str
    vocab_size: int
    eos_id: int

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        raise NotImplementedError

    def decode(self, tokens: list[int]) -> str:
        raise NotImplementedError

    @property
    def dtype(self) -> np.dtype:
        """The token files' dtype, chosen by vocabulary size as Megatron chooses it."""
        from feedstock.pretrain.formats import megatron_dtype

        return megatron_dtype(self.vocab_size)


class TiktokenTokenizer(Tokenizer):
    def __init__(self, name: str = "cl100k_base", threads: int = 2):
        self.name = name
        self.encoding = _tiktoken_encoding(name)
        self.threads = threads
        self.vocab_size = self.encoding.n_vocab
        self.eos_id = self.encoding.eot_token

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self.encoding.encode_ordinary_batch(texts, num_threads=self.threads)

    def decode(self, tokens: list[int]) -> str:
        return self.encoding.decode(tokens)


@lru_cache(maxsize=4)
def _tiktoken_encoding(name: str):
    """A tiktoken Encoding whose vocabulary comes from the installed ``bpe-openai`` package."""
    import bpe_openai
    import tiktoken
    import tiktoken_ext.openai_public as public

    data = Path(bpe_openai.__file__).parent / "data" / f"{name}.tiktoken.gz"
    if name not in ("cl100k_base", "o200k_base") or not data.exists():
        raise ValueError(f"tokenizer: tiktoken encoding must be cl100k_base or o200k_base, got {name!r}")
    with gzip.open(data, "rb") as handle:
        ranks = {
            base64.b64decode(token): int(rank) for token, rank in (line.split() for line in handle if line)
        }
    # tiktoken's constructors hold the split pattern and the special tokens; only their vocabulary loader is
    # swapped for the bundled file, so the encoding is exactly OpenAI's.
    loader = public.load_tiktoken_bpe
    public.load_tiktoken_bpe = lambda *args, **kwargs: ranks
    try:
        spec = getattr(public, name)()
    finally:
        public.load_tiktoken_bpe = loader
    return tiktoken.Encoding(**spec)


class HuggingFaceTokenizer(Tokenizer):
    def __init__(self, path: str, eos_token: str | None = None):
        from tokenizers import Tokenizer as HfTokenizer

        if not Path(path).exists():
            raise ValueError(f"tokenizer: tokenizer file {path} does not exist")
        self.name = path
        self.tokenizer = HfTokenizer.from_file(path)
        # A tokenizer.json made for a model may pad and truncate (e.g. to 128): documents need every token.
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.vocab_size = self.tokenizer.get_vocab_size(with_added_tokens=True)
        candidates = (eos_token,) if eos_token else EOS_CANDIDATES
        ids = [self.tokenizer.token_to_id(token) for token in candidates]
        found = [i for i in ids if i is not None]
        if not found:
            raise ValueError(f"tokenizer: {path} has no EOS token among {', '.join(candidates)}")
        self.eos_id = found[0]

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch_fast(texts, add_special_tokens=False)]

    def decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=False)


def load_tokenizer(spec: dict[str, Any]) -> Tokenizer:
    spec = dict(spec)
    kind = spec.pop("kind", "tiktoken")
    if kind == "tiktoken":
        return TiktokenTokenizer(**spec)
    if kind == "huggingface":
        return HuggingFaceTokenizer(**spec)
    raise ValueError(f"tokenizer: kind must be tiktoken or huggingface, got {kind!r}")
