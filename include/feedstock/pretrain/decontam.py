"""Decontamination: drop documents that share a long word n-gram with an evaluation set.

The evaluation sets are local files or fsspec URLs: JSONL (the ``text_field`` of each record, default
``text``; with ``fields`` several fields are joined, e.g. question and answer) or plain text (one item per
line). Their n-grams (``ngram`` words, default 13 as in GPT-3's decontamination; words lowercased without
punctuation, the same tokenization as fuzzy dedup) are hashed once per shard task; a document with any n-gram
in that set is dropped with ``decontamination:<eval set file stem>``.
"""

from __future__ import annotations

import json
import posixpath
from collections import Counter

import numpy as np

from feedstock.lake import filesystem
from feedstock.pretrain.dedup import shingle_hashes, words
from feedstock.pretrain.steps import Document, Step


def _items(uri: str, fields: list[str]) -> list[str]:
    fs, path = filesystem(uri)
    with fs.open(path, "r", encoding="utf-8") as handle:
        lines = [line for line in handle.read().splitlines() if line.strip()]
    if not path.endswith((".jsonl", ".json")):
        return lines
    items = []
    for line in lines:
        record = json.loads(line)
        items.append(" ".join(str(record[f]) for f in fields if record.get(f) is not None))
    return items


class Decontaminator(Step):
    stage = "decontamination"

    def __init__(self, eval_sets: list[str], ngram: int = 13, fields: list[str] | None = None):
        self.ngram = ngram
        self.sets: list[tuple[str, np.ndarray]] = []
        for uri in eval_sets:
            name = posixpath.basename(uri).split(".")[0]
            items = [w for w in (words(t) for t in _items(uri, fields or ["text"])) if len(w) >= ngram]
            hashes, _ = shingle_hashes(items, ngram)
            self.sets.append((name, np.unique(hashes)))

    def process(self, doc: Document, stats: Counter) -> str | None:
        tokens = words(doc.text)
        if len(tokens) < self.ngram:
            return None
        hashes, _ = shingle_hashes([tokens], self.ngram)
        for name, contaminated in self.sets:
            if np.isin(hashes, contaminated, assume_unique=False).any():
                return f"decontamination:{name}"
        return None
