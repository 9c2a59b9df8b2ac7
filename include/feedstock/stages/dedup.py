"""Exact and fuzzy (MinHash LSH) deduplication, in two halves: per shard, then global.

**Per shard** (inside the shard task, vectorized per batch):

- :func:`exact_hashes`: xxh3-64 of the normalized text (lowercased, whitespace collapsed).
- :class:`MinHasher`: word shingles of ``shingle_size`` words (text lowercased, punctuation removed), hashed with
  rensa (Rust), MinHash signatures of ``num_perm`` values from rensa's bulk digest, and one LSH bucket per band
  (``bands`` bands of ``rows`` values each, combined with numpy).

**Global** (separate tasks, on compact per-shard outputs only):

- :func:`exact_partition`: one task per hash partition groups equal hashes and keeps one document per group.
- :func:`lsh_candidates`: one task per band group finds documents that share a bucket (datatrove's per-band
  buckets). Each collision becomes a candidate pair (member, the bucket's first member).
- :func:`fuzzy_clusters`: one task verifies each candidate pair by the Jaccard its signatures estimate
  (``threshold``), so that an unlucky bucket collision never removes a document, and keeps one document per
  connected component.

**The keeper rule**, deterministic: a document of an earlier release always wins (it is already published);
otherwise the smallest ``doc_id``. **Across releases**, previous releases' hashes, buckets and signatures come
from the ``pretrain.signatures`` table and are never recomputed.
"""

from __future__ import annotations

import re
from dataclasses import asdict

import numpy as np
import pyarrow as pa
import xxhash

from feedstock.config import MinHash

_PUNCTUATION = re.compile(r"[^\w\s]+")
_WHITESPACE = re.compile(r"\s+")
# Odd 64-bit constants: position weights that turn k word hashes into one shingle hash (wrapping arithmetic).
_MIX = np.array(
    [
        0x9E3779B97F4A7C15,
        0xC2B2AE3D27D4EB4F,
        0x165667B19E3779F9,
        0xD6E8FEB86659FD93,
        0xFF51AFD7ED558CCD,
        0xC4CEB9FE1A85EC53,
        0x94D049BB133111EB,
        0xBF58476D1CE4E5B9,
    ],
    dtype=np.uint64,
)


def normalized_for_exact(text: str) -> str:
    return _WHITESPACE.sub(" ", text.lower()).strip()


def exact_hashes(texts: list[str]) -> np.ndarray:
    """xxh3-64 of each normalized text, as int64 (Delta has no unsigned integers)."""
    values = np.fromiter(
        (xxhash.xxh3_64_intdigest(normalized_for_exact(t).encode()) for t in texts),
        dtype=np.uint64,
        count=len(texts),
    )
    return values.view(np.int64)


def words(text: str) -> list[str]:
    return _PUNCTUATION.sub(" ", text.lower()).split()


def _weights(k: int) -> np.ndarray:
    return np.array([int(_MIX[j % len(_MIX)]) ^ (j // len(_MIX)) for j in range(k)], dtype=np.uint64)


def shingle_hashes(word_lists: list[list[str]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every k-word shingle of every document, flat, with row offsets (n + 1).

    A document shorter than k words has one shingle (all its words); a document with no words has none.
    """
    import rensa

    lengths = np.fromiter((len(w) for w in word_lists), dtype=np.int64, count=len(word_lists))
    total = int(lengths.sum())
    offsets = np.zeros(len(word_lists) + 1, dtype=np.uint64)
    if total == 0:
        return np.zeros(0, dtype=np.uint64), offsets
    flat = np.fromiter(
        (h for row in rensa.RMinHash.hash_token_sets(word_lists) for h in row), dtype=np.uint64, count=total
    )
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    ends = starts + np.repeat(lengths, lengths)
    position = np.arange(total)
    weights = _weights(k)
    shingles = np.zeros(total, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(k):
            index = np.minimum(position + j, total - 1)
            inside = position + j < ends
            shingles += np.where(inside, flat[index], 0) * weights[j]
    valid = (position + k <= ends) | ((position == starts) & (ends - starts < k))
    per_doc = np.where(lengths >= k, lengths - k + 1, np.minimum(lengths, 1))
    offsets[1:] = np.cumsum(per_doc)
    return shingles[valid], offsets


class MinHasher:
    """MinHash signatures and LSH band buckets for batches of texts."""

    def __init__(self, spec: MinHash):
        self.spec = spec
        self.band_weights = _weights(spec.rows)

    @property
    def spec_key(self) -> str:
        """Signatures are comparable only when computed with the same parameters (and rensa's algorithm)."""
        import rensa

        return ",".join(f"{k}={v}" for k, v in asdict(self.spec).items() if k != "threshold") + (
            f",rensa={rensa.RMinHash.ALGORITHM_VERSION}"
        )

    def signatures(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(n, num_perm) uint32 signatures, and a mask of the documents that have any shingle."""
        import rensa

        shingles, offsets = shingle_hashes([words(t) for t in texts], self.spec.shingle_size)
        has_shingles = np.diff(offsets) > 0
        if not len(texts):
            return np.zeros((0, self.spec.num_perm), dtype=np.uint32), has_shingles
        matrix = rensa.RMinHash.digest_matrix_from_flat_token_hashes(
            shingles, offsets, self.spec.num_perm, self.spec.seed
        )
        return np.array(matrix.to_rows(), dtype=np.uint32).reshape(len(texts), -1), has_shingles

    def buckets(self, signatures: np.ndarray) -> np.ndarray:
        """(n, bands) int64 bucket ids: each band's ``rows`` values combined into one 64-bit hash."""
        n = signatures.shape[0]
        used = signatures[:, : self.spec.bands * self.spec.rows].astype(np.uint64)
        with np.errstate(over="ignore"):
            combined = (used.reshape(n, self.spec.bands, self.spec.rows) * self.band_weights).sum(
                axis=2, dtype=np.uint64
            )
        return combined.view(np.int64)


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise share of equal signature values: the MinHash estimate of Jaccard similarity."""
    return (a == b).mean(axis=1)


# ---- global stages: plain functions over Arrow tables, run by DuckDB --------------------------------------


def exact_partition(hashes: pa.Table) -> pa.Table:
    """Input: ``doc_id, exact_hash, release`` (release 0 = this run). Output: the new documents to drop,
    ``doc_id, duplicate_of``."""
    import duckdb

    con = duckdb.connect()
    con.register("hashes", hashes)
    return con.sql(
        f"""
        with ranked as (
            select doc_id, release, exact_hash,
                   first_value(doc_id) over (partition by exact_hash order by {_keeper()}) as keeper
            from hashes
        )
        select doc_id, keeper as duplicate_of from ranked
        where doc_id <> keeper and release = 0
        order by doc_id
        """
    ).to_arrow_table()


def _keeper() -> str:
    # release 0 is the run being built: it sorts after every published release.
    return "case when release = 0 then 2147483647 else release end, doc_id"


def lsh_candidates(buckets: pa.Table) -> pa.Table:
    """Input: ``doc_id, release, band, bucket``. Output: candidate pairs ``doc_id, candidate`` in which
    ``doc_id`` is a new document and ``candidate`` is the first member of a bucket they share."""
    import duckdb

    con = duckdb.connect()
    con.register("buckets", buckets)
    return con.sql(
        f"""
        with members as (
            select doc_id, release, band, bucket,
                   first_value(doc_id) over (partition by band, bucket order by {_keeper()}) as candidate,
                   count(*) over (partition by band, bucket) as size
            from buckets
        )
        select distinct doc_id, candidate from members
        where size > 1 and doc_id <> candidate and release = 0
        order by doc_id, candidate
        """
    ).to_arrow_table()


def fuzzy_clusters(
    pairs: pa.Table, signatures: dict[str, np.ndarray], releases: dict[str, int], threshold: float
) -> tuple[pa.Table, int]:
    """Verify the candidate pairs and keep one document per connected component.

    ``signatures`` and ``releases`` map every doc_id in ``pairs`` to its signature and release (0 = new).
    Returns the new documents to drop (``doc_id, duplicate_of``) and the number of pairs that failed
    verification.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    empty = pa.table({"doc_id": pa.array([], pa.string()), "duplicate_of": pa.array([], pa.string())})
    if pairs.num_rows == 0:
        return empty, 0
    left, right = pairs["doc_id"].to_pylist(), pairs["candidate"].to_pylist()
    similar = estimated_jaccard(
        np.stack([signatures[d] for d in left]), np.stack([signatures[d] for d in right])
    )
    keep = similar >= threshold
    rejected = int((~keep).sum())
    left = [d for d, k in zip(left, keep, strict=True) if k]
    right = [d for d, k in zip(right, keep, strict=True) if k]
    if not left:
        return empty, rejected
    ids = sorted(set(left) | set(right))
    index = {d: i for i, d in enumerate(ids)}
    rows = np.array([index[d] for d in left])
    cols = np.array([index[d] for d in right])
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(ids), len(ids)))
    _, component = connected_components(graph, directed=False)

    def order(doc_id: str) -> tuple[int, str]:
        release = releases.get(doc_id, 0)
        return (release if release > 0 else 2**31, doc_id)

    keepers: dict[int, str] = {}
    for doc_id in ids:
        c = int(component[index[doc_id]])
        if c not in keepers or order(doc_id) < order(keepers[c]):
            keepers[c] = doc_id
    dropped = [
        (d, keepers[int(component[index[d]])])
        for d in ids
        if releases.get(d, 0) == 0 and keepers[int(component[index[d]])] != d
    ]
    return pa.table(
        {"doc_id": [d for d, _ in dropped], "duplicate_of": [k for _, k in dropped]},
        schema=empty.schema,
    ), rejected
