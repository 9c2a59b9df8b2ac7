"""Language identification, offline: lingua's models ship inside its wheel, so nothing downloads.

Each document gets ``meta["lang"]`` (ISO 639-1 code, or ``unknown``) and ``meta["lang_score"]`` (lingua's
confidence for that language, 0..1), detected on the first ``quick_chars`` characters when they already give an
allowed language at ``quick_score`` or more, else on the first ``max_chars`` (measured on the benchmark corpus:
37% less time, the same keep/drop decisions as 500 characters alone). A document whose language
is not in ``allow`` is dropped with ``language:not_allowed``; one whose score is below ``min_score`` with
``language:low_score``. ``allow: null`` keeps every language and only labels it.

``languages`` limits the candidates lingua considers, and the scores are relative to them; by default the 20
most common web languages (``all`` for every language lingua knows: 75, about 1 GB of models). Low-accuracy
mode (trigrams only) is the default: on whole documents it agrees with the full models, at a tenth of the
memory (measured: 38 MB against 356 MB for 20 languages) and about 0.6 ms a document.
Stats: ``lang:<code>`` per detected language.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache

from feedstock.stages.steps import Document, Filter

COMMON = (
    "en",
    "de",
    "fr",
    "es",
    "it",
    "pt",
    "nl",
    "sv",
    "pl",
    "ru",
    "uk",
    "cs",
    "tr",
    "ar",
    "zh",
    "ja",
    "ko",
    "hi",
)
COMMON += ("id", "vi")


@lru_cache(maxsize=4)
def detector(languages: tuple[str, ...] | None, low_accuracy: bool):
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    if languages:
        try:
            codes = [getattr(IsoCode639_1, code.upper()) for code in languages]
        except AttributeError as exc:
            raise ValueError(f"language: unknown ISO 639-1 code {str(exc).split()[-1]}") from None
        builder = LanguageDetectorBuilder.from_iso_codes_639_1(*codes)
    else:
        builder = LanguageDetectorBuilder.from_all_languages()
    if low_accuracy:
        builder = builder.with_low_accuracy_mode()
    return builder.build()


class LanguageFilter(Filter):
    stage = "language"

    def __init__(
        self,
        allow: list[str] | None = ("en",),  # type: ignore[assignment]
        min_score: float = 0.5,
        languages: list[str] | str = COMMON,
        max_chars: int = 500,
        low_accuracy: bool = True,
        quick_chars: int = 200,
        quick_score: float = 0.9,
    ):
        self.allow = {code.lower() for code in allow} if allow else None
        self.min_score = min_score
        self.max_chars = max_chars
        self.quick_chars, self.quick_score = quick_chars, quick_score
        candidates = None if languages == "all" else tuple(sorted(languages))
        self.detector = detector(candidates, low_accuracy)
        self._stats: Counter | None = None

    def process(self, doc: Document, stats: Counter) -> str | None:
        self._stats = stats
        return super().process(doc, stats)

    def _detect(self, sample: str) -> tuple[str, float]:
        confidences = self.detector.compute_language_confidence_values(sample)
        if confidences and confidences[0].value > 0:  # lingua lists every language at 0.0 for no letters
            best = confidences[0]
            return best.language.iso_code_639_1.name.lower(), float(best.value)
        return "unknown", 0.0

    def filter(self, doc: Document) -> bool | str:
        # Most documents are plainly in an allowed language after a few sentences: decided on the first
        # quick_chars at quick_score or more; the rest on max_chars (lingua's time grows with the sample).
        first = min(self.quick_chars, self.max_chars)
        lang, score = self._detect(doc.text[:first]) if first else ("unknown", 0.0)
        quick = score >= self.quick_score and (self.allow is None or lang in self.allow)
        if not quick and (not first or len(doc.text) > first):
            lang, score = self._detect(doc.text[: self.max_chars])
        doc.meta["lang"], doc.meta["lang_score"] = lang, round(score, 4)
        if self._stats is not None:
            self._stats[f"lang:{lang}"] += 1
        if self.allow is not None and lang not in self.allow:
            return "not_allowed"
        if score < self.min_score:
            return "low_score"
        return True
