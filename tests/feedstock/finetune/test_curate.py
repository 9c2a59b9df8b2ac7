"""Dedup (exact and near-duplicate prompts, within a release and against earlier ones), selection, and the split."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from feedstock.config import Config, Finetune, Selection
from feedstock.finetune import curate
from feedstock.finetune.checks import count_tokens
from feedstock.finetune.process import _rows
from feedstock.finetune.records import make_example
from feedstock.stages.dedup import MinHasher
from feedstock.stages.tokenizers import load_tokenizer

PROMPTS = [
    "How do I rotate the API key of a Relay workspace without downtime for our clients",
    "Which destinations does Relay support for change data capture pipes this year",
    "Can I pause a pipe without losing its sync position over a long weekend",
    "How long does Relay Vault keep snapshots on the Standard tier by default",
    "What does a blinking amber LED mean on an Edge appliance after installation",
    "Why did my MySQL CDC pipe fail with the binlog position not found error",
]


def config(**finetune) -> Config:
    return Config(lake="/tmp/unused", sources=(), finetune=Finetune(**finetune))


def table(
    prompts: list[str], cfg: Config, ids: list[str] | None = None, same_answer: bool = False
) -> pa.Table:
    examples = [
        make_example(
            "s",
            f"s/{ids[i] if ids else i}",
            [
                {"role": "user", "content": p},
                {"role": "assistant", "content": f"A helpful answer {i}."},
            ],
        )
        for i, p in enumerate(prompts)
    ]
    count_tokens(examples, load_tokenizer({"kind": "tiktoken", "name": "cl100k_base"}))
    hasher = MinHasher(cfg.finetune.minhash) if cfg.finetune.minhash else None
    return _rows(examples, hasher).select(
        ["example_id", "kind", "exact_hash", "signature", "buckets", "score"]
    )


def status(curated: pa.Table) -> dict[str, str]:
    return dict(zip(curated["example_id"].to_pylist(), curated["status"].to_pylist(), strict=True))


def test_exact_and_near_duplicate_prompts_are_removed_and_the_rest_kept():
    cfg = config()
    near = PROMPTS[1].replace("Which destinations", "What destinations").replace("pipes", "pipelines")
    rows = pa.concat_tables(
        [
            table(PROMPTS, cfg),
            table([PROMPTS[0]], cfg, ids=["copy"]),  # the same conversation as s/0 under another id
            table([near], cfg, ids=["near"]),
        ]
    )
    ids = rows["example_id"].to_pylist()
    curated, stats = curate.curate(cfg, rows, None)
    result = status(curated)
    assert [result[i] for i in ids[:6]] == ["published"] * 6
    assert result[ids[6]] == "dedup:exact"
    assert result[ids[7]] == "dedup:near_duplicate"
    assert stats["dedup"]["in"] == 8 and stats["dedup"]["out"] == 6


def test_a_duplicate_of_an_earlier_release_is_removed_and_the_earlier_one_wins():
    cfg = config()
    old = table(PROMPTS[:2], cfg, ids=["old0", "old1"])
    previous = (
        old.select(["example_id", "kind", "exact_hash", "signature", "buckets"])
        .append_column("release", pa.array([1, 1], pa.int32()))
        .append_column("split", pa.array(["validation", "train"]))
    )
    new = table([PROMPTS[0].replace("How do I", "How can I"), PROMPTS[3]], cfg, ids=["new0", "new1"])
    curated, _ = curate.curate(
        cfg, new.select(["example_id", "kind", "exact_hash", "signature", "buckets", "score"]), previous
    )
    assert status(curated)[new["example_id"][0].as_py()] == "dedup:near_duplicate"
    assert status(curated)[new["example_id"][1].as_py()] == "published"


def test_near_duplicates_below_the_dedup_threshold_share_a_split():
    cfg = config(
        minhash=Finetune().minhash.__class__(shingle_size=2, threshold=0.95),
        splits={"train": 0.5, "validation": 0.5},
    )
    base = PROMPTS[2].split()
    variants = [" ".join(base[:i] + ["really"] + base[i:]) for i in range(2, 12)]  # each ~10% edited
    rows = table(variants, cfg)
    curated, _ = curate.curate(
        cfg, rows.select(["example_id", "kind", "exact_hash", "signature", "buckets", "score"]), None
    )
    published = curated.filter(pa.compute.equal(curated["status"], "published"))
    assert published.num_rows >= 2  # the strict threshold kept several of them...
    assert len(set(published["split"].to_pylist())) == 1  # ...and they all went to one side


def test_split_is_deterministic_and_follows_the_fractions():
    splits = [
        curate.split_of(f"group-{i}", {"train": 0.8, "validation": 0.1, "test": 0.1}, 42) for i in range(5000)
    ]
    assert splits == [
        curate.split_of(f"group-{i}", {"train": 0.8, "validation": 0.1, "test": 0.1}, 42) for i in range(5000)
    ]
    share = {s: splits.count(s) / len(splits) for s in ("train", "validation", "test")}
    assert share["train"] == pytest.approx(0.8, abs=0.02) and share["test"] == pytest.approx(0.1, abs=0.02)


def test_selection_takes_the_best_scores_and_skips_near_copies():
    cfg = config(selection=Selection(budget=3, max_similarity=0.9), minhash=None, exact_dedup=False)
    rows = table(PROMPTS[:5], cfg).drop_columns(["score"])
    ids = rows["example_id"].to_pylist()
    rows = rows.append_column("score", pa.array([5.0, 4.0, 3.0, 2.0, 1.0], pa.float32()))
    vectors = {
        ids[0]: [1, 0, 0],
        ids[1]: [1, 0, 0],
        ids[2]: [0, 1, 0],
        ids[3]: [0, 0, 1],
        ids[4]: [0.6, 0.8, 0],
    }

    def embed(order):
        return np.array([vectors[i] for i in order], dtype=np.float32)

    curated, stats = curate.curate(cfg, rows, None, embed)
    result = status(curated)
    assert [result[i] for i in ids] == [
        "published",
        "selection:redundant",
        "published",
        "published",
        "selection:over_budget",
    ]
    assert stats["selection"]["out"] == 3


def test_score_prefers_longer_varied_answers():
    assert curate.score("A thorough answer that explains each of the steps in order.", 1) > curate.score(
        "Yes yes yes yes.", 1
    )
    assert curate.score("", 1) == 0.0
