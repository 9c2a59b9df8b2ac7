"""The family base of the pretraining stages that look at one document at a time.

A :class:`Step` takes a :class:`Document` and either keeps it (possibly rewriting ``doc.text``) or drops it with a
machine-readable reason ``<stage>:<rule>`` (for example ``language:not_allowed``; the quality filters, families
of rules, name both: ``quality:fineweb:short_lines``). A :class:`Filter` is a
step that only decides: its ``filter(doc)`` returns ``True`` to keep the document or the rule's name to drop it.
:func:`run_steps` does the plumbing once: it applies the steps in order and counts, per stage, the documents
that went in, out and aside by reason, plus any extra counters a step adds (PII counts per type, languages).
It runs a batch one step at a time (each step sees every document still in), so a step whose work is cheaper over
many documents at once (the Gopher n-gram rules: one numpy pass for a batch, not one per document) overrides
:meth:`Step.process_batch`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Document:
    doc_id: str
    source: str
    text: str
    meta: dict[str, Any] = field(default_factory=dict)  # lang, lang_score, pii counts, ...


@dataclass
class Drop:
    doc_id: str
    source: str
    stage: str
    reason: str  # "<stage>:<rule>"


class Step:
    """One document-level stage. ``process`` returns None to keep the document or a drop reason."""

    stage: str = "step"

    def process(self, doc: Document, stats: Counter) -> str | None:
        raise NotImplementedError

    def process_batch(self, docs: list[Document], stats: Counter) -> list[str | None]:
        """``process`` of each document, in order."""
        return [self.process(doc, stats) for doc in docs]


class Filter(Step):
    """A step that keeps or drops without rewriting; ``filter`` returns True or the failing rule's name."""

    def filter(self, doc: Document) -> bool | str:
        raise NotImplementedError

    def reason(self, verdict: bool | str) -> str | None:
        """A ``filter`` verdict as ``process`` returns it: None to keep, else ``<stage>:<rule>``."""
        return None if verdict is True else f"{self.stage}:{verdict or 'rejected'}"

    def process(self, doc: Document, stats: Counter) -> str | None:
        return self.reason(self.filter(doc))


class Forgotten(Filter):
    """Drop what a ``forget`` request removed (``governance.forgotten``), so that a source still holding it does
    not bring it back: a document by its id, a fine-tuning example by its record's id."""

    stage = "forget"

    def __init__(self, ids: set[str]):
        self.ids = ids

    def filter(self, doc) -> bool | str:
        return "requested" if getattr(doc, "record_id", doc.doc_id) in self.ids else True


def run_steps(
    docs: Iterable[Document], steps: list[Step], stats: dict[str, Counter], drops: list[Drop]
) -> Iterator[Document]:
    """Apply the steps in order; yield the documents that pass, append the rest to ``drops`` (both in the order
    the documents came).

    ``stats[stage]`` gets ``in``, ``out``, ``dropped:<reason>`` and whatever the step itself counts. Consecutive
    steps of one stage (the quality filters) count as one stage: a document goes in once and out once.
    """
    stages = [step.stage for step in steps]
    first = [i == 0 or stages[i - 1] != stage for i, stage in enumerate(stages)]
    last = [i == len(stages) - 1 or stages[i + 1] != stage for i, stage in enumerate(stages)]
    live = list(enumerate(docs))
    dropped: list[tuple[int, Drop]] = []
    for i, step in enumerate(steps):
        if not live:
            break
        counter = stats.setdefault(step.stage, Counter())
        if first[i]:
            counter["in"] += len(live)
        reasons = step.process_batch([doc for _, doc in live], counter)
        kept = []
        for (position, doc), reason in zip(live, reasons, strict=True):
            if reason is None:
                kept.append((position, doc))
            else:
                counter[f"dropped:{reason}"] += 1
                dropped.append((position, Drop(doc.doc_id, doc.source, step.stage, reason)))
        if last[i] and kept:
            counter["out"] += len(kept)
        live = kept
    drops.extend(drop for _, drop in sorted(dropped, key=lambda pair: pair[0]))
    return iter([doc for _, doc in live])
