"""Pretraining process stage per core: the shipped steps against the same steps as issue 13 measured them.

The process stage (normalize, language ID, the quality filters, PII; :func:`feedstock.pretrain.process.build_steps`
with the shipped configuration) runs over the same documents of the benchmark corpus
(:mod:`benchmarks.pretrain_corpus`) twice in one run, on one core, timed in CPU seconds per step:

- **ours**: the code as it is;
- **reference**: the same steps as they were when the issue measured 1.5 MB/s: ftfy over the whole text,
  whitespace tidied line by line, language ID on the first 1,000 characters (no quick look at the first 200),
  Gopher's n-gram rules one document at a time over tuples of strings (``quality._TupleGrams``, which the unit
  tests keep as the reference of the batch's hashed n-grams), and Gopher's quality rules one document at a time
  over ``_WORD.findall`` (``quality._plain_gopher_quality``), FineWeb's token count by ``_TOKEN.findall``.

Reported: MB/s of each, the speedup, the CPU seconds per step, and the share of documents on which both make the
same decision (kept, or dropped at the same stage for the same reason). Best of ``passes`` passes, alternating.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import replace

from benchmarks import pretrain_corpus
from feedstock.config import DEFAULT_CONFIG, load_config
from feedstock.pretrain.process import build_steps
from feedstock.stages.steps import Document


@contextmanager
def reference():
    """The process stage's code paths as the issue measured them (see the module docstring)."""
    import ftfy

    from feedstock.stages import boilerplate, normalize, quality

    every_run = re.compile(f"{normalize._SPACE_CHARS}+")

    def tidy_line_by_line(text: str) -> str:
        text = normalize._CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
        lines = [every_run.sub(" ", line).strip() for line in text.split("\n")]
        return boilerplate.BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip()

    def tuple_repetition(self, docs: list[Document]) -> list[bool | str]:
        verdicts: list[bool | str] = []
        for doc in docs:
            verdict = self._repeated_units(doc.text) if doc.text.strip() else True
            if verdict is True and doc.text.strip():
                grams, size = quality._TupleGrams(quality._TOKEN.findall(doc.text)), len(doc.text)
                for n, frac in self.top_n_grams:
                    count, chars = grams.top_chars(n)
                    if count > 1 and chars * count / size > frac:
                        verdict = f"top_{n}_gram"
                        break
                else:
                    for n, frac in self.dup_n_grams:
                        if grams.duplicate_chars(n) > frac * size:
                            verdict = f"dup_{n}_grams"
                            break
            verdicts.append(verdict)
        return verdicts

    def plain_quality(self, docs: list[Document]) -> list[bool | str]:
        return [quality._plain_gopher_quality(self, doc.text) for doc in docs]

    def fineweb_findall(self, docs: list[Document]) -> list[bool | str]:
        return [self._rules(doc.text, len(quality._TOKEN.findall(doc.text))) for doc in docs]

    repetition, gopher, fineweb = (
        quality.GopherRepetitionFilter,
        quality.GopherQualityFilter,
        quality.FineWebQualityFilter,
    )
    saved = (
        repetition.check_batch,
        gopher.check_batch,
        fineweb.check_batch,
        normalize.fix_text,
        normalize._tidy,
    )
    repetition.check_batch, gopher.check_batch, fineweb.check_batch = (
        tuple_repetition,
        plain_quality,
        fineweb_findall,
    )
    normalize.fix_text = lambda text: ftfy.fix_text(text, normalization="NFC")
    normalize._tidy = tidy_line_by_line
    try:
        yield
    finally:
        (
            repetition.check_batch,
            gopher.check_batch,
            fineweb.check_batch,
            normalize.fix_text,
            normalize._tidy,
        ) = saved


def _pass(steps, docs: list[dict], batch_size: int) -> tuple[float, dict[str, float], list[str]]:
    """CPU seconds in all, per step, and each document's decision ("kept" or "stage:reason"): the steps run
    stage by stage over each batch, as :func:`run_steps` runs them."""
    per_step: Counter = Counter()
    decisions = []
    for at in range(0, len(docs), batch_size):
        live = [Document(raw["id"], "bench", raw["text"]) for raw in docs[at : at + batch_size]]
        decided = dict.fromkeys((d.doc_id for d in live), "kept")
        for step in steps:
            start = time.process_time()
            reasons = step.process_batch(live, Counter())
            per_step[type(step).__name__] += time.process_time() - start
            for doc, reason in zip(live, reasons, strict=True):
                if reason is not None:
                    decided[doc.doc_id] = f"{step.stage}:{reason}"
            live = [doc for doc, reason in zip(live, reasons, strict=True) if reason is None]
        decisions += decided.values()
    return sum(per_step.values()), dict(per_step), decisions


def run(megabytes: float = 10.0, passes: int = 2) -> dict:
    config = load_config(DEFAULT_CONFIG)
    docs, size = [], 0
    for i, doc in enumerate(pretrain_corpus.base_documents()):
        docs.append({"id": f"doc-{i}", "text": doc["text"]})
        size += len(doc["text"].encode())
        if size >= megabytes * 1e6:
            break
    mb = size / 1e6
    ours_steps = build_steps(config, {})
    language = {**(config.pretrain.language or {}), "max_chars": 1_000, "quick_chars": 0}
    reference_config = replace(config, pretrain=replace(config.pretrain, language=language))
    with reference():
        reference_steps = build_steps(reference_config, {})
    best: dict[str, tuple] = {}
    for number in range(passes):
        for side in ("ours", "reference") if number % 2 == 0 else ("reference", "ours"):
            if side == "ours":
                result = _pass(ours_steps, docs, config.pretrain.batch_size)
            else:
                with reference():
                    result = _pass(reference_steps, docs, config.pretrain.batch_size)
            if side not in best or result[0] < best[side][0]:
                best[side] = result
    (ours, ours_steps_s, ours_decisions), (ref, ref_steps_s, ref_decisions) = best["ours"], best["reference"]
    same = sum(a == b for a, b in zip(ours_decisions, ref_decisions, strict=True))
    return {
        "documents": len(docs),
        "megabytes": round(mb, 1),
        "ours_mb_per_s": round(mb / ours, 2),
        "reference_mb_per_s": round(mb / ref, 2),
        "speedup": round(ref / ours, 2),
        "same_decision_share": round(same / len(docs), 4),
        "kept_share": round(ours_decisions.count("kept") / len(docs), 3),
        "cpu_seconds_per_step": {
            name: {"ours": round(ours_steps_s.get(name, 0.0), 2), "reference": round(seconds, 2)}
            for name, seconds in ref_steps_s.items()
        },
        "target": "process stage >= 3 MB/s per core (issue 13), same decision on >= 99% of documents",
    }
