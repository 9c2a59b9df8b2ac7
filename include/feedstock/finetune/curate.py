"""The global stages of the fine-tuning feed, over every source's staged examples at once: dedup, selection, split.

1. **dedup**: exact (the xxh3 hash of the whole normalized example) and MinHash LSH on the prompt side, so the
   same answer to a paraphrased prompt is a duplicate; within the release and against every published example of
   earlier releases (``finetune.examples``), with the pretraining feed's functions
   (:mod:`feedstock.stages.dedup`): the earlier example, else the smallest id, is kept. Pairs and SFT examples
   are deduplicated separately. Reasons ``dedup:exact``, ``dedup:near_duplicate``.
2. **selection** (optional, ``finetune.selection``): Deita's score-first diversity filter. Examples are ranked by
   their quality score (:func:`score`); each is embedded with the offline model and taken only when its cosine
   to every example already taken is below ``max_similarity``, until the budget (a count or a fraction) is met.
   Reasons ``selection:redundant``, ``selection:over_budget``.
3. **split**: examples whose prompts are near each other (an LSH candidate pair with estimated Jaccard >=
   :data:`SPLIT_JACCARD`, well below the dedup threshold) form a group, and a group's split is drawn from the
   hash of its smallest id (or is the split an earlier release gave a member). The candidates come from the
   dedup buckets (42 bands x 3 rows), which find a pair at Jaccard 0.5 almost always but at 0.3 about two times in
   three, so near-duplicates (which dedup removes anyway) never straddle train and validation, and looser
   relatives rarely do: measured, 6 of 679 published pairs at Jaccard 0.25 to 0.5 in 50k examples.

Output: ``curated.parquet`` (``example_id, status, split, group``) in the run folder, and the stage counts.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from feedstock.config import Config
from feedstock.stages import dedup

SPLIT_JACCARD = 0.25
_WORD = re.compile(r"\w+")


def exact_hash(texts: list[str]) -> list[int]:
    return dedup.exact_hashes(texts).tolist()


def score(response: str, turns: int) -> float:
    """A cheap quality score (no judge model runs offline): longer, lexically varied answers rank first, and
    multi-turn conversations a little higher. ``log1p(words) * distinct/words * (1 + 0.1 * (turns - 1))``."""
    tokens = _WORD.findall(response.lower())
    if not tokens:
        return 0.0
    return math.log1p(len(tokens)) * len(set(tokens)) / len(tokens) * (1 + 0.1 * max(turns - 1, 0))


def split_of(group: str, splits: dict[str, float], seed: int) -> str:
    """The split a group falls in: its hash against the cumulative fractions, the same on every run."""
    point = xxhash.xxh3_64_intdigest(f"{seed}\0{group}".encode()) / 2**64
    total = 0.0
    for name in ("train", "validation", "test"):
        total += splits.get(name, 0.0)
        if point < total:
            return name
    return "train"


def curate(
    config: Config, examples: pa.Table, previous: pa.Table | None, embed: Any = None
) -> tuple[pa.Table, dict[str, Counter]]:
    """Dedup, select and split. ``examples``: ``example_id, kind, exact_hash, signature, buckets, score`` of the
    staged examples; ``previous``: the same (plus ``release``, ``split``) of earlier published examples.
    ``embed(ids) -> vectors`` embeds examples for selection. Returns ``curated`` rows and the stage counts."""
    f = config.finetune
    stats: dict[str, Counter] = {"dedup": Counter(), "selection": Counter(), "split": Counter()}
    ids = examples["example_id"].to_pylist()
    status = dict.fromkeys(ids, "published")
    kinds = examples["kind"].to_pylist()
    prev = _previous(previous)
    groups: dict[str, str] = {}
    for kind in sorted(set(kinds)):
        mine = examples.filter(pc.equal(examples["kind"], kind))
        theirs = prev.filter(pc.equal(prev["kind"], kind))
        stats["dedup"]["in"] += mine.num_rows
        for doc_id, reason in _duplicates(config, mine, theirs).items():
            status[doc_id] = reason
            stats["dedup"][f"dropped:{reason}"] += 1
        alive = mine.filter(pa.array([status[d] == "published" for d in mine["example_id"].to_pylist()]))
        groups.update(_groups(alive, theirs, config.finetune.minhash is not None))
    stats["dedup"]["out"] = sum(1 for s in status.values() if s == "published")

    if f.selection is not None:
        alive = [i for i, d in enumerate(ids) if status[d] == "published"]
        for doc_id, reason in _select(f.selection, examples.take(alive), embed).items():
            status[doc_id] = reason
            stats["selection"][f"dropped:{reason}"] += 1
        stats["selection"]["in"] = len(alive)
        stats["selection"]["out"] = sum(1 for s in status.values() if s == "published")

    previous_split = dict(zip(prev["group"].to_pylist(), prev["split"].to_pylist(), strict=True))
    splits = []
    for doc_id in ids:
        group = groups.get(doc_id, doc_id)
        split = previous_split.get(group) or split_of(group, f.splits, f.seed)
        splits.append(split if status[doc_id] == "published" else None)
        if status[doc_id] == "published":
            stats["split"][split] += 1
    curated = pa.table(
        {
            "example_id": ids,
            "status": [status[d] for d in ids],
            "split": splits,
            "group": [groups.get(d, d) for d in ids],
        }
    )
    return curated, stats


def _previous(previous: pa.Table | None) -> pa.Table:
    columns = ["example_id", "kind", "exact_hash", "signature", "buckets", "release", "split"]
    if previous is None or previous.num_rows == 0:
        return pa.table({c: pa.array([], t) for c, t in zip([*columns, "group"], _TYPES, strict=True)})
    return previous.select(columns).append_column("group", previous["example_id"])


_TYPES = [
    pa.string(),
    pa.string(),
    pa.int64(),
    pa.binary(),
    pa.list_(pa.int64()),
    pa.int32(),
    pa.string(),
    pa.string(),
]


def _duplicates(config: Config, mine: pa.Table, theirs: pa.Table) -> dict[str, str]:
    """``{example_id: reason}`` of this run's duplicates of one kind."""
    drops: dict[str, str] = {}
    f = config.finetune
    if f.exact_dedup:
        hashes = pa.concat_tables(
            [
                pa.table(
                    {
                        "doc_id": mine["example_id"],
                        "exact_hash": mine["exact_hash"],
                        "release": pa.array([0] * mine.num_rows, pa.int32()),
                    }
                ),
                pa.table(
                    {
                        "doc_id": theirs["example_id"],
                        "exact_hash": theirs["exact_hash"],
                        "release": theirs["release"].cast(pa.int32()),
                    }
                ),
            ]
        )
        for doc_id in dedup.exact_partition(hashes)["doc_id"].to_pylist():
            drops[doc_id] = "dedup:exact"
    if f.minhash is not None:
        alive = mine.filter(pa.array([d not in drops for d in mine["example_id"].to_pylist()]))
        pairs, signatures, releases = _candidates(alive, theirs)
        dropped, _ = dedup.fuzzy_clusters(pairs, signatures, releases, f.minhash.threshold)
        for doc_id in dropped["doc_id"].to_pylist():
            drops[doc_id] = "dedup:near_duplicate"
    return drops


def _candidates(mine: pa.Table, theirs: pa.Table) -> tuple[pa.Table, dict[str, np.ndarray], dict[str, int]]:
    """LSH candidate pairs among this run's examples and against earlier ones, with the signatures and releases
    of the examples in a pair. The bucket rows (one per example and band) are built column by column: as Python
    lists they were most of this stage's memory."""
    schema = pa.schema(
        [("doc_id", pa.string()), ("release", pa.int32()), ("band", pa.int32()), ("bucket", pa.int64())]
    )
    parts = []
    for table, is_new in ((mine, True), (theirs, False)):
        if not table.num_rows:
            continue
        lists = table["buckets"].combine_chunks()
        lengths = pc.list_value_length(lists).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        parents = pc.list_parent_indices(lists)
        band = np.arange(len(parents), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        release = (
            pa.array(np.zeros(len(parents), np.int32))
            if is_new
            else pc.take(table["release"], parents).cast(pa.int32())
        )
        parts.append(
            pa.table(
                [
                    pc.take(table["example_id"], parents),
                    release,
                    pa.array(band, pa.int32()),
                    pc.list_flatten(lists),
                ],
                schema=schema,
            )
        )
    buckets = pa.concat_tables(parts) if parts else schema.empty_table()
    pairs = dedup.lsh_candidates(buckets)
    del buckets
    wanted = pa.array(
        sorted(set(pairs["doc_id"].to_pylist()) | set(pairs["candidate"].to_pylist())), pa.string()
    )
    signatures: dict[str, np.ndarray] = {}
    releases: dict[str, int] = {}
    for table, is_new in ((mine, True), (theirs, False)):
        chosen = table.filter(pc.is_in(table["example_id"], value_set=wanted)) if table.num_rows else table
        rels = [0] * chosen.num_rows if is_new else chosen["release"].to_pylist()
        for doc_id, release, sig in zip(
            chosen["example_id"].to_pylist(), rels, chosen["signature"].to_pylist(), strict=True
        ):
            signatures[doc_id] = np.frombuffer(sig, dtype=np.uint32)
            releases[doc_id] = release
    return pairs, signatures, releases


def _groups(mine: pa.Table, theirs: pa.Table, enabled: bool) -> dict[str, str]:
    """``{example_id: group}``: the connected components of candidate pairs at :data:`SPLIT_JACCARD`; a group
    that holds an earlier example is named by it (so it keeps that example's split), else by its smallest id."""
    if not enabled or mine.num_rows == 0:
        return {}
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    pairs, signatures, releases = _candidates(mine, theirs)
    if pairs.num_rows == 0:
        return {}
    left, right = pairs["doc_id"].to_pylist(), pairs["candidate"].to_pylist()
    near = (
        dedup.estimated_jaccard(
            np.stack([signatures[d] for d in left]), np.stack([signatures[d] for d in right])
        )
        >= SPLIT_JACCARD
    )
    left = [d for d, k in zip(left, near, strict=True) if k]
    right = [d for d, k in zip(right, near, strict=True) if k]
    if not left:
        return {}
    members = sorted(set(left) | set(right))
    index = {d: i for i, d in enumerate(members)}
    graph = coo_matrix(
        (np.ones(len(left)), ([index[d] for d in left], [index[d] for d in right])),
        shape=(len(members), len(members)),
    )
    _, component = connected_components(graph, directed=False)
    names: dict[int, str] = {}
    for doc_id in members:  # an earlier example names its group; otherwise the smallest id
        c = int(component[index[doc_id]])
        old = releases.get(doc_id, 0) > 0
        current = names.get(c)
        if (
            current is None
            or (old and releases.get(current, 0) == 0)
            or (old == (releases.get(current, 0) > 0) and doc_id < current)
        ):
            names[c] = doc_id
    return {d: names[int(component[index[d]])] for d in members if releases.get(d, 0) == 0}


def _select(selection: Any, alive: pa.Table, embed: Any) -> dict[str, str]:
    """Deita's greedy pass: by score, take an example unless it is too like one taken; stop at the budget."""
    n = alive.num_rows
    budget = int(selection.budget) if selection.budget >= 1 else math.floor(selection.budget * n)
    order = np.argsort(-np.asarray(alive["score"].to_pylist(), dtype=np.float64), kind="stable")
    ids = alive["example_id"].to_pylist()
    vectors = np.asarray(embed([ids[i] for i in order]), dtype=np.float32) if n else np.zeros((0, 1))
    taken: list[int] = []
    drops: dict[str, str] = {}
    for rank, i in enumerate(order):
        if len(taken) >= budget:
            drops[ids[i]] = "selection:over_budget"
            continue
        if taken and float((vectors[taken] @ vectors[rank]).max()) >= selection.max_similarity:
            drops[ids[i]] = "selection:redundant"
            continue
        taken.append(rank)
    return drops
