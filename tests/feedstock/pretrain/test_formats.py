"""Release formats: Megatron-Core opens the index we write; the earlier index layout still reads; nanoGPT split."""

from __future__ import annotations

import io

import numpy as np
import pytest

from feedstock.pretrain import formats
from feedstock.pretrain.tokenize import TokenShardWriter, read_document, with_eos


def _megatron_files(tmp_path, docs, dtype, eos=0):
    handle = io.BytesIO()
    writer = TokenShardWriter(handle, np.dtype(dtype), eos_id=eos)
    writer.write(docs)
    (tmp_path / "shard.bin").write_bytes(handle.getvalue())
    (tmp_path / "shard.idx").write_bytes(writer.index_bytes())
    return str(tmp_path / "shard")


@pytest.mark.parametrize(("vocab", "dtype"), [(50_257, "<u2"), (100_277, "<i4")])
def test_megatron_core_reads_what_we_write(tmp_path, vocab, dtype):
    from megatron.core.datasets.indexed_dataset import DType, IndexedDataset

    assert formats.megatron_dtype(vocab) == np.dtype(DType.optimal_dtype(vocab))
    docs = [[5, 6, 7], [], [vocab - 1, 1], list(range(1, 300))]
    dataset = IndexedDataset(_megatron_files(tmp_path, docs, dtype, eos=2))
    assert len(dataset) == len(docs)
    assert dataset.document_indices.tolist() == list(range(len(docs) + 1))
    assert [dataset[i].tolist() for i in range(len(docs))] == [d + [2] for d in docs]
    assert dataset[3].dtype == np.dtype(dtype)


def test_megatron_index_matches_megatron_cores_builder(tmp_path):
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    docs = [[5, 6, 7, 0], [0], [9, 8, 0]]
    builder = IndexedDatasetBuilder(str(tmp_path / "theirs.bin"), dtype=np.int32)
    for doc in docs:
        builder.add_document(torch.tensor(doc), [len(doc)])
    builder.finalize(str(tmp_path / "theirs.idx"))
    ours = formats.megatron_index([len(d) for d in docs], np.dtype("<i4"))
    assert ours == (tmp_path / "theirs.idx").read_bytes()
    assert (
        with_eos([d[:-1] for d in docs], 0, np.dtype("<i4")).tobytes()
        == (tmp_path / "theirs.bin").read_bytes()
    )


def test_the_earlier_index_layout_still_reads():
    """Releases before pretrain.formats: uint64 token offsets, the dtype named by the catalog row."""
    data = np.array([5, 6, 9, 7, 9], dtype="<u4").tobytes()
    legacy = np.array([0, 3, 5], dtype="<u8").tobytes()
    assert formats.index_dtype(legacy) is None
    assert [read_document(data, legacy, "<u4", i) for i in range(2)] == [[5, 6], [7]]


def test_validation_split_is_stable_and_near_its_fraction():
    ids = [f"doc-{i}" for i in range(20_000)]
    chosen = [formats.in_validation(d, 42, 0.05) for d in ids]
    assert chosen == [formats.in_validation(d, 42, 0.05) for d in ids]
    assert 0.04 < sum(chosen) / len(ids) < 0.06
    assert chosen != [formats.in_validation(d, 7, 0.05) for d in ids]


def test_split_documents_cuts_at_eos():
    flat = np.array([1, 2, 0, 0, 3, 0], dtype="<u2")
    assert [d.tolist() for d in formats.split_documents(flat, 0)] == [[1, 2], [], [3]]


def test_decode_reads_a_release_written_before_formats(tmp_path):
    """A lake with a release in the earlier layout (uint32 .bin, uint64-offset .idx, bin_uri/idx_uri rows)."""
    import pyarrow as pa

    from feedstock.lake import Commit, Lake
    from feedstock.pretrain.read import decode
    from feedstock.pretrain.tables import RELEASE
    from feedstock.stages.tokenizers import load_tokenizer

    tokenizer = load_tokenizer({"kind": "tiktoken", "name": "cl100k_base"})
    texts = ["The first document.", "A second, longer document of the old release."]
    encoded = tokenizer.encode_batch(texts)
    folder = tmp_path / "lake" / "pretrain" / "releases" / "00001"
    folder.mkdir(parents=True)
    (folder / "shard-00000.bin").write_bytes(with_eos(encoded, tokenizer.eos_id, np.dtype("<u4")).tobytes())
    offsets = np.cumsum([0] + [len(t) + 1 for t in encoded]).astype("<u8")
    (folder / "shard-00000.idx").write_bytes(offsets.tobytes())
    lake = Lake(str(tmp_path / "lake"))
    row = {
        "release": 1,
        "shard": 0,
        "bin_uri": str(folder / "shard-00000.bin"),
        "idx_uri": str(folder / "shard-00000.idx"),
        "parquet_uri": str(folder / "shard-00000.parquet"),
        "docs": 2,
        "tokens": sum(map(len, encoded)),
        "dtype": "<u4",
        "tokenizer": "cl100k_base",
        "eos_id": tokenizer.eos_id,
        "card_uri": str(folder / "README.md"),
    }
    lake.append(RELEASE, pa.Table.from_pylist([row]), Commit(produced_by={"run_id": "old"}))
    assert decode(lake, "latest", 0, 1) == texts[1]
    assert decode(lake, 1, 0) == "\n".join(texts)
    with pytest.raises(ValueError, match="no nanogpt files"):
        decode(lake, 1, "val")
    # The next release, in the new layout, lands in the same table beside it.
    from feedstock.pretrain.tables import RELEASE_SCHEMA

    new = {name: None for name in RELEASE_SCHEMA.names} | {"release": 2, "format": "parquet", "shard": 0}
    lake.append(
        RELEASE, pa.Table.from_pylist([new], schema=RELEASE_SCHEMA), Commit(produced_by={"run_id": "new"})
    )
    rows = sorted(lake.read(RELEASE).to_pylist(), key=lambda r: r["release"])
    assert [(r["release"], r["format"], r["bin_uri"] is not None) for r in rows] == [
        (1, None, True),
        (2, "parquet", False),
    ]
