"""Exact and fuzzy dedup: hashes, MinHash signatures and buckets, and the global keeper rules."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from feedstock.config import MinHash
from feedstock.stages.dedup import (
    MinHasher,
    estimated_jaccard,
    exact_hashes,
    exact_partition,
    fuzzy_clusters,
    lsh_candidates,
    shingle_hashes,
    words,
)

SENTENCES = [
    "The harbour town wakes early when the fishing boats return with their morning catch.",
    "Traders line the quay with baskets of mackerel, crab and oysters packed in wet seaweed.",
    "Children on their way to school stop to watch the gulls fight over scraps near the old lighthouse.",
    "By noon the market has moved inland to the square, where farmers sell cheese, apples and bread.",
    "Visitors often climb the narrow lane behind the church to see the view across the bay.",
    "In winter the storms close the harbour for days, and the fishermen mend their nets in the sheds.",
    "The local museum keeps records of every boat built in the yard since the middle of the last century.",
    "A small ferry still crosses to the island twice a day, carrying post, groceries and a few tourists.",
    "Most families here have lived in the same stone cottages for generations and know each other by name.",
    "When the summer festival arrives, the streets fill with music, lanterns and long tables of food.",
    "Older residents remember the great flood that swept away the wooden pier and half of the boatyard.",
    "Since then a concrete sea wall has protected the lower streets, though spray still reaches the pub.",
    "Walkers who follow the cliff path north reach a sandy cove that is empty for most of the year.",
]
BASE = " ".join(SENTENCES).split()[:200]
TEXT = " ".join(BASE)
UNRELATED = (
    "Quantum computers use qubits that can represent zero and one at the same time, which lets certain "
    "algorithms run far faster than on classical machines. Researchers are still working to reduce the "
    "errors caused by noise in the hardware, and most practical applications remain several years away. "
    "Meanwhile, banks and governments are preparing new encryption standards that resist such attacks."
)


def edited(fraction: float, seed: int) -> str:
    rng = np.random.default_rng(seed)
    out = list(BASE)
    for i in rng.choice(len(out), int(len(out) * fraction), replace=False):
        out[i] = f"edit{i}"
    return " ".join(out)


@pytest.fixture(scope="module")
def hasher() -> MinHasher:
    return MinHasher(MinHash())


# ---- exact ------------------------------------------------------------------------------------------


def test_exact_hashes_equal_across_whitespace_and_case():
    h = exact_hashes(["Hello World\nagain", "  hello   WORLD again\t", "hello world again"])
    assert h.dtype == np.int64 and h.shape == (3,)
    assert h[0] == h[1] == h[2]


def test_exact_hashes_differ_otherwise():
    h = exact_hashes(["hello world again", "hello world again!", "hello worlds again", "helloworld again"])
    assert len(set(h.tolist())) == 4


def test_exact_hashes_empty_input():
    assert exact_hashes([]).shape == (0,)
    assert exact_hashes([""])[0] == exact_hashes(["  \n "])[0]


# ---- shingles and signatures -----------------------------------------------------------------------


def test_words_lowercase_without_punctuation():
    assert words("Hello, World! It's 3pm.") == ["hello", "world", "it", "s", "3pm"]


def test_shingle_counts_and_offsets():
    hashes, offsets = shingle_hashes([["a", "b", "c", "d"], ["x"], [], ["a", "b", "c"]], 3)
    assert offsets.tolist() == [0, 2, 3, 3, 4]
    assert hashes.shape == (4,)
    # "a b c" is the first shingle of doc 0 and the only one of doc 3
    assert hashes[0] == hashes[3]
    assert hashes[1] != hashes[0]
    # word order matters
    other, _ = shingle_hashes([["c", "b", "a"]], 3)
    assert other[0] != hashes[0]


def test_shingle_hashes_all_empty():
    hashes, offsets = shingle_hashes([[], []], 3)
    assert hashes.size == 0 and offsets.tolist() == [0, 0, 0]


def test_near_duplicates_similar_unrelated_not(hasher):
    sig, mask = hasher.signatures([TEXT, edited(0.05, 1), edited(0.10, 2), UNRELATED])
    assert sig.shape == (4, 128) and sig.dtype == np.uint32
    assert mask.all()
    j5, j10, unrelated, unrelated_edit = estimated_jaccard(sig[[0, 0, 0, 1]], sig[[1, 2, 3, 3]])
    assert j5 >= 0.4
    assert j10 >= 0.4
    assert j5 > j10
    assert unrelated < 0.2 and unrelated_edit < 0.2


def test_identical_texts_have_identical_signatures(hasher):
    sig, _ = hasher.signatures([TEXT, TEXT.upper().replace(".", " ")])
    assert estimated_jaccard(sig[:1], sig[1:])[0] == 1.0


def test_signatures_deterministic_across_calls(hasher):
    first, _ = hasher.signatures([TEXT, UNRELATED])
    again, _ = MinHasher(MinHash()).signatures([UNRELATED, TEXT])
    assert np.array_equal(first, again[::-1])


def test_seed_changes_signatures():
    a, _ = MinHasher(MinHash(seed=1)).signatures([TEXT])
    b, _ = MinHasher(MinHash(seed=2)).signatures([TEXT])
    assert not np.array_equal(a, b)


def test_short_and_empty_documents(hasher):
    sig, mask = hasher.signatures(["two words", "", "   ...  ", "two words", "other pair"])
    assert sig.shape == (5, 128)
    assert mask.tolist() == [True, False, False, True, True]
    assert np.array_equal(sig[0], sig[3])
    assert not np.array_equal(sig[0], sig[4])
    # a document with no shingle gets no real signature: it must not look like any document with one
    assert estimated_jaccard(sig[1:2], sig[0:1])[0] < 0.2


def test_no_documents(hasher):
    sig, mask = hasher.signatures([])
    assert sig.shape == (0, 128) and mask.shape == (0,)


def test_buckets_shape_and_collisions(hasher):
    sig, _ = hasher.signatures([TEXT, TEXT, edited(0.05, 1), UNRELATED])
    buckets = hasher.buckets(sig)
    assert buckets.shape == (4, 42) and buckets.dtype == np.int64
    assert np.array_equal(buckets[0], buckets[1])
    assert (buckets[0] == buckets[2]).any()
    assert not (buckets[0] == buckets[3]).any()


def test_buckets_depend_on_band_values_only():
    spec = MinHash(num_perm=16, bands=4, rows=2)
    hasher = MinHasher(spec)
    sig = np.arange(32, dtype=np.uint32).reshape(2, 16)
    sig[1] = sig[0]
    sig[1, 9:] = 999  # beyond bands * rows = 8 values: ignored
    sig[1, 0] = 12345  # inside band 0
    buckets = hasher.buckets(sig)
    assert buckets.shape == (2, 4)
    assert buckets[0, 0] != buckets[1, 0]
    assert np.array_equal(buckets[0, 1:], buckets[1, 1:])


# ---- global: exact -----------------------------------------------------------------------------------


def hashes_table(rows: list[tuple[str, int, int]]) -> pa.Table:
    return pa.table(
        {
            "doc_id": [r[0] for r in rows],
            "exact_hash": pa.array([r[1] for r in rows], pa.int64()),
            "release": pa.array([r[2] for r in rows], pa.int32()),
        }
    )


def test_exact_partition_earlier_release_wins():
    # "a/1" sorts first but is new; "z/9" was published in release 3
    out = exact_partition(hashes_table([("a/1", 7, 0), ("z/9", 7, 3), ("m/5", 7, 5)]))
    assert out.to_pylist() == [{"doc_id": "a/1", "duplicate_of": "z/9"}]


def test_exact_partition_within_run_smallest_doc_id():
    out = exact_partition(hashes_table([("b", 1, 0), ("a", 1, 0), ("c", 1, 0), ("d", 2, 0), ("e", 3, 1)]))
    assert out.to_pylist() == [{"doc_id": "b", "duplicate_of": "a"}, {"doc_id": "c", "duplicate_of": "a"}]


def test_exact_partition_never_drops_published_documents():
    out = exact_partition(hashes_table([("a", 1, 2), ("b", 1, 1)]))
    assert out.num_rows == 0


# ---- global: fuzzy -----------------------------------------------------------------------------------


def buckets_table(rows: list[tuple[str, int, int, int]]) -> pa.Table:
    return pa.table(
        {
            "doc_id": [r[0] for r in rows],
            "release": pa.array([r[1] for r in rows], pa.int32()),
            "band": pa.array([r[2] for r in rows], pa.int32()),
            "bucket": pa.array([r[3] for r in rows], pa.int64()),
        }
    )


def test_lsh_candidates_only_new_documents():
    table = buckets_table(
        [
            ("old1", 1, 0, 100),
            ("old2", 2, 0, 100),  # two published documents sharing a bucket: not a pair
            ("new_b", 0, 0, 100),
            ("new_a", 0, 1, 200),
            ("new_c", 0, 1, 200),
            ("new_a", 0, 2, 300),
            ("new_c", 0, 2, 300),  # a second shared band: still one pair
            ("alone", 0, 0, 999),
        ]
    )
    out = lsh_candidates(table).to_pylist()
    assert out == [
        {"doc_id": "new_b", "candidate": "old1"},
        {"doc_id": "new_c", "candidate": "new_a"},
    ]
    assert all(row["doc_id"].startswith("new") for row in out)


def test_lsh_candidates_same_bucket_in_other_band_is_no_pair():
    out = lsh_candidates(buckets_table([("a", 0, 0, 5), ("b", 0, 1, 5)]))
    assert out.num_rows == 0


def pairs(rows: list[tuple[str, str]]) -> pa.Table:
    return pa.table({"doc_id": [r[0] for r in rows], "candidate": [r[1] for r in rows]})


def test_fuzzy_clusters_rejects_unverified_pair():
    same = np.arange(16, dtype=np.uint32)
    signatures = {"a": same, "b": same + 100, "c": same.copy()}
    dropped, rejected = fuzzy_clusters(pairs([("b", "a"), ("c", "a")]), signatures, {}, threshold=0.5)
    assert rejected == 1
    assert dropped.to_pylist() == [{"doc_id": "c", "duplicate_of": "a"}]


def test_fuzzy_clusters_all_rejected_and_empty():
    sig = {"a": np.zeros(8, np.uint32), "b": np.ones(8, np.uint32)}
    dropped, rejected = fuzzy_clusters(pairs([("b", "a")]), sig, {}, threshold=0.4)
    assert (dropped.num_rows, rejected) == (0, 1)
    dropped, rejected = fuzzy_clusters(pairs([]), {}, {}, threshold=0.4)
    assert (dropped.num_rows, rejected) == (0, 0)
    assert dropped.column_names == ["doc_id", "duplicate_of"]


def test_fuzzy_clusters_one_per_component_prefers_release_1():
    sig = np.arange(16, dtype=np.uint32)
    signatures = {d: sig for d in ("a", "b", "c", "old", "x", "y")}
    releases = {"a": 0, "b": 0, "c": 0, "old": 1, "x": 0, "y": 0}
    # component 1: a - b - c - old (chained); component 2: x - y
    table = pairs([("b", "a"), ("c", "b"), ("c", "old"), ("y", "x")])
    dropped, rejected = fuzzy_clusters(table, signatures, releases, threshold=0.4)
    assert rejected == 0
    assert dropped.to_pylist() == [
        {"doc_id": "a", "duplicate_of": "old"},
        {"doc_id": "b", "duplicate_of": "old"},
        {"doc_id": "c", "duplicate_of": "old"},
        {"doc_id": "y", "duplicate_of": "x"},
    ]


def test_fuzzy_clusters_earlier_release_wins_and_published_never_dropped():
    sig = np.arange(16, dtype=np.uint32)
    signatures = {"new": sig, "r1": sig, "r2": sig}
    releases = {"new": 0, "r1": 1, "r2": 2}
    dropped, _ = fuzzy_clusters(pairs([("new", "r2"), ("new", "r1")]), signatures, releases, 0.4)
    assert dropped.to_pylist() == [{"doc_id": "new", "duplicate_of": "r1"}]


def test_end_to_end_near_duplicate_found(hasher):
    texts = {"web/1": TEXT, "web/2": edited(0.05, 3), "web/3": UNRELATED}
    sig, _ = hasher.signatures(list(texts.values()))
    buckets = hasher.buckets(sig)
    rows = [
        (d, 0, band, int(buckets[i, band])) for i, d in enumerate(texts) for band in range(buckets.shape[1])
    ]
    candidates = lsh_candidates(buckets_table(rows))
    assert candidates.to_pylist() == [{"doc_id": "web/2", "candidate": "web/1"}]
    signatures = dict(zip(texts, sig, strict=True))
    dropped, rejected = fuzzy_clusters(candidates, signatures, {}, threshold=0.4)
    assert dropped.to_pylist() == [{"doc_id": "web/2", "duplicate_of": "web/1"}]
    assert rejected == 0
