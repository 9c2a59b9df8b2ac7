"""``feedstock cache calibrate``: measure the cache's similarity threshold on labelled question pairs.

The pairs file (``serve.cache.pairs``, YAML) lists groups: a cached ``question``, questions that ask the ``same``
thing and questions that ask something ``different`` (reversed meaning, another object, another number). A pair is
a hit when its cosine similarity reaches the threshold and :func:`feedstock.serving.cache.same_intent` finds no
sign of a different question, exactly as a lookup decides.

The groups are split in two by a hash of the question: the threshold is the lowest one whose false hits (wrong
answers among the hits) stay at or under ``max_false_hit_rate`` on the calibration half, and the held-out half
reports what that threshold does on questions it was not chosen on. The result is written to
``<lake>/rag/cache/calibration.json``, which ``feedstock serve`` reads.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import yaml

from feedstock.lake import Lake, filesystem, join
from feedstock.serving.cache import same_intent


def calibration_uri(lake: Lake) -> str:
    return join(lake.root, "rag", "cache", "calibration.json")


def read_threshold(lake: Lake) -> float | None:
    uri = calibration_uri(lake)
    return lake.read_json(uri)["threshold"] if lake.exists(uri) else None


def load_pairs(path: str) -> list[tuple[str, str, bool, str]]:
    """``(cached, asked, same, half)`` for every labelled pair of the file."""
    fs, local = filesystem(path)
    with fs.open(local) as handle:
        groups = yaml.safe_load(handle) or []
    pairs = []
    order = sorted(groups, key=lambda g: hashlib.sha256(g["question"].encode()).hexdigest())
    for rank, group in enumerate(order):
        half = "held_out" if rank % 2 else "calibration"
        pairs += [(group["question"], q, True, half) for q in group.get("same", [])]
        pairs += [(group["question"], q, False, half) for q in group.get("different", [])]
    return pairs


def score(pairs: list[tuple[str, str, bool, str]], embed) -> list[dict[str, Any]]:
    """Each pair with its cosine similarity and the intent rule (if any) that tells the questions apart."""
    texts = sorted({t for cached, asked, _, _ in pairs for t in (cached, asked)})
    vectors = dict(zip(texts, embed(texts), strict=True))
    return [
        {
            "cached": cached,
            "asked": asked,
            "same": same,
            "half": half,
            "similarity": float(np.dot(vectors[cached], vectors[asked])),
            "intent": same_intent(asked, cached),
        }
        for cached, asked, same, half in pairs
    ]


def rates(scored: list[dict[str, Any]], threshold: float, guard: bool = True) -> dict[str, Any]:
    """Hits, false hits (share of hits that are wrong) and recall (share of same-question pairs hit)."""
    hits = [s for s in scored if s["similarity"] >= threshold and (not guard or s["intent"] is None)]
    wrong = [s for s in hits if not s["same"]]
    positives = sum(s["same"] for s in scored)
    return {
        "pairs": len(scored),
        "hits": len(hits),
        "false_hits": len(wrong),
        "false_hit_rate": round(len(wrong) / len(hits), 4) if hits else 0.0,
        "recall": round((len(hits) - len(wrong)) / positives, 4) if positives else 0.0,
        "wrong": [(s["cached"], s["asked"], round(s["similarity"], 3)) for s in wrong],
    }


def choose(scored: list[dict[str, Any]], max_false_hit_rate: float = 0.01) -> float:
    """The lowest threshold whose false-hit rate on ``scored`` is at most ``max_false_hit_rate``."""
    for threshold in np.arange(0.50, 1.0, 0.01):
        if rates(scored, float(threshold))["false_hit_rate"] <= max_false_hit_rate:
            return round(float(threshold), 2)
    return 0.99


def calibrate(lake: Lake, pairs_path: str, embed, max_false_hit_rate: float = 0.01) -> dict[str, Any]:
    scored = score(load_pairs(pairs_path), embed)
    calibration = [s for s in scored if s["half"] == "calibration"]
    held_out = [s for s in scored if s["half"] == "held_out"]
    threshold = choose(calibration, max_false_hit_rate)
    result = {
        "threshold": threshold,
        "max_false_hit_rate": max_false_hit_rate,
        "pairs": pairs_path,
        "calibration": rates(calibration, threshold),
        "held_out": rates(held_out, threshold),
        "held_out_without_intent_rules": rates(held_out, threshold, guard=False),
    }
    lake.write_json(calibration_uri(lake), result)
    return result
