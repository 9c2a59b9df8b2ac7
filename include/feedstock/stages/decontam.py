"""Decontamination: drop documents that share a long word n-gram with an evaluation set.

The evaluation sets are local files or fsspec URLs: JSONL (the ``text_field`` of each record, default
``text``; with ``fields`` several fields are joined, e.g. question and answer) or plain text (one item per
line). Their n-grams (``ngram`` words, default 13 as in GPT-3's decontamination; words lowercased without
punctuation, the same tokenization as fuzzy dedup) are hashed once per shard task; a document with any n-gram
in that set is dropped with ``decontamination:<eval set file stem>``.

Items shorter than ``ngram`` words (a question of eight words) have no such n-gram. With ``min_words`` below
``ngram``, an item of at least ``min_words`` words is matched whole instead: a document holding all its words in a
row is contaminated. YAML files (the RAG golden sets) are lists of mappings; their ``question`` is the item when
none of ``fields`` is there.
"""

from __future__ import annotations

import json
import posixpath
from collections import Counter

import numpy as np

from feedstock.lake import filesystem
from feedstock.stages.dedup import shingle_hashes, words
from feedstock.stages.steps import Document, Step


def _items(uri: str, fields: list[str]) -> list[str]:
    fs, path = filesystem(uri)
    with fs.open(path, "r", encoding="utf-8") as handle:
        lines = [line for line in handle.read().splitlines() if line.strip()]
    if path.endswith((".yaml", ".yml")):
        import yaml

        records = yaml.safe_load("\n".join(lines)) or []
        items = []
        for record in records if isinstance(records, list) else []:
            if isinstance(record, dict):
                present = [f for f in fields if record.get(f) is not None] or ["question"]
                items.append(" ".join(str(record[f]) for f in present if record.get(f) is not None))
        return items
    if not path.endswith((".jsonl", ".json")):
        return lines
    items = []
    for line in lines:
        record = json.loads(line)
        items.append(" ".join(str(record[f]) for f in fields if record.get(f) is not None))
    return items


class Decontaminator(Step):
    stage = "decontamination"

    def __init__(
        self,
        eval_sets: list[str],
        ngram: int = 13,
        fields: list[str] | None = None,
        min_words: int | None = None,
    ):
        self.ngram = ngram
        self.prefix = min(
            min_words or ngram, ngram
        )  # a short item is found by its first words, then compared
        # per eval set: the sorted ngram hashes of its long items, and its short items by their first words
        self.sets: list[tuple[str, np.ndarray, dict[tuple[str, ...], list[tuple[str, ...]]]]] = []
        for uri in eval_sets:
            name = posixpath.basename(uri).split(".")[0]
            long_items: list[list[str]] = []
            short: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
            for item in (words(t) for t in _items(uri, fields or ["text"])):
                if len(item) >= ngram:
                    long_items.append(item)
                elif len(item) >= self.prefix:
                    short.setdefault(tuple(item[: self.prefix]), []).append(tuple(item))
            grams = np.unique(shingle_hashes(long_items, ngram)[0]) if long_items else np.zeros(0, np.int64)
            self.sets.append((name, grams, short))

    def matches(self, text: str) -> str | None:
        """The name of the first eval set ``text`` shares an n-gram (or a whole short item) with.

        One hashing of the text's n-grams, looked up by binary search in each set's sorted hashes (``np.isin``
        would sort both sides on every call), and one pass over its word positions for the short items.
        """
        tokens = words(text)
        hashes = shingle_hashes([tokens], self.ngram)[0] if len(tokens) >= self.ngram else None
        for name, grams, short in self.sets:
            if hashes is not None and len(grams):
                at = np.minimum(np.searchsorted(grams, hashes), len(grams) - 1)
                if (grams[at] == hashes).any():
                    return name
            if short:
                for i in range(len(tokens) - self.prefix + 1):
                    for item in short.get(tuple(tokens[i : i + self.prefix]), ()):
                        if tuple(tokens[i : i + len(item)]) == item:
                            return name
        return None

    def text_of(self, doc) -> str:
        """The text compared with the eval sets (a subclass reads another kind of record)."""
        return doc.text

    def process(self, doc: Document, stats: Counter) -> str | None:
        name = self.matches(self.text_of(doc))
        return None if name is None else f"decontamination:{name}"
