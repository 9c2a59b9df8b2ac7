"""Pretraining process stage per core: the shipped steps against the same steps as issue 13 measured them.

The process stage (normalize, language ID, the quality filters, PII; :func:`feedstock.pretrain.process.build_steps`
with the shipped configuration) runs over the same documents of the benchmark corpus
(:mod:`benchmarks.pretrain_corpus`) twice in one run, on one core, timed in CPU seconds per step:

- **ours**: the code as it is;
- **reference**: the same steps as they were when the issue measured 1.5 MB/s: ftfy over the whole text,
  whitespace tidied line by line, language ID on the first 1,000 characters (no quick look at the first 200), and
  Gopher's n-gram rules over tuples of strings (``quality._TupleGrams``, which the unit tests keep as the
  reference of the hashed n-grams).

Reported: MB/s of each, the speedup, the CPU seconds per step, and the share of documents on which both make the
same decision (kept, or dropped at the same stage for the same reason). Best of ``passes`` passes, alternating.
"""

from __future__ import annotations

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

    def tidy_line_by_line(text: str) -> str:
        text = normalize._CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
        lines = [normalize._SPACES.sub(" ", line).strip() for line in text.split("\n")]
        return boilerplate.BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip()

    saved = quality._HASHED_FROM, normalize.fix_text, normalize._tidy
    quality._HASHED_FROM = 10**12  # every document through the tuple n-grams
    normalize.fix_text = lambda text: ftfy.fix_text(text, normalization="NFC")
    normalize._tidy = tidy_line_by_line
    try:
        yield
    finally:
        quality._HASHED_FROM, normalize.fix_text, normalize._tidy = saved


def _pass(steps, docs: list[dict]) -> tuple[float, dict[str, float], list[str]]:
    """CPU seconds in all, per step, and each document's decision ("kept" or "stage:reason")."""
    per_step: Counter = Counter()
    decisions = []
    for raw in docs:
        doc = Document(raw["id"], "bench", raw["text"])
        decision = "kept"
        for step in steps:
            start = time.process_time()
            reason = step.process(doc, Counter())
            per_step[type(step).__name__] += time.process_time() - start
            if reason is not None:
                decision = f"{step.stage}:{reason}"
                break
        decisions.append(decision)
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
                result = _pass(ours_steps, docs)
            else:
                with reference():
                    result = _pass(reference_steps, docs)
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
