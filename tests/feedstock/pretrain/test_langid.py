"""Language identification with lingua, offline: labels, allow list, stats, candidate languages."""

from __future__ import annotations

from collections import Counter

import pytest

from feedstock.pretrain.langid import LanguageFilter
from feedstock.stages.steps import Document, Drop, run_steps

ENGLISH = (
    "The committee published its annual report on Monday, describing how the new public library will be "
    "funded and when the reading rooms are expected to open."
)
GERMAN = (
    "Der Ausschuss hat am Montag seinen Jahresbericht veröffentlicht und beschrieben, wie die neue "
    "öffentliche Bibliothek finanziert wird und wann die Lesesäle öffnen sollen."
)
FRENCH = (
    "Le comité a publié lundi son rapport annuel, qui explique comment la nouvelle bibliothèque publique "
    "sera financée et quand les salles de lecture ouvriront."
)


def check(step: LanguageFilter, text: str) -> tuple[str | None, Document, Counter]:
    doc, stats = Document("d", "web", text), Counter()
    return step.process(doc, stats), doc, stats


def test_english_kept_with_lang_and_score():
    reason, doc, stats = check(LanguageFilter(), ENGLISH)
    assert reason is None
    assert doc.meta["lang"] == "en"
    assert 0.5 <= doc.meta["lang_score"] <= 1.0
    assert stats["lang:en"] == 1


def test_german_dropped_not_allowed():
    reason, doc, stats = check(LanguageFilter(allow=["en"]), GERMAN)
    assert reason == "language:not_allowed"
    assert doc.meta["lang"] == "de"
    assert stats["lang:de"] == 1 and stats["lang:en"] == 0


def test_allow_list_is_case_insensitive_and_can_hold_several():
    step = LanguageFilter(allow=["EN", "De"])
    assert check(step, GERMAN)[0] is None
    assert check(step, ENGLISH)[0] is None
    assert check(step, FRENCH)[0] == "language:not_allowed"


def test_allow_none_keeps_everything_but_labels():
    step = LanguageFilter(allow=None)
    stats: dict[str, Counter] = {}
    drops: list[Drop] = []
    docs = [Document(f"d{i}", "web", t) for i, t in enumerate([ENGLISH, GERMAN, FRENCH])]
    kept = list(run_steps(docs, [step], stats, drops))
    assert [d.meta["lang"] for d in kept] == ["en", "de", "fr"]
    assert drops == []
    assert stats["language"]["lang:en"] == stats["language"]["lang:de"] == stats["language"]["lang:fr"] == 1
    assert stats["language"]["in"] == stats["language"]["out"] == 3


def test_low_score_dropped():
    reason, doc, _ = check(LanguageFilter(allow=None, min_score=1.01), ENGLISH)
    assert reason == "language:low_score"
    assert doc.meta["lang"] == "en"


@pytest.mark.parametrize("text", ["", "12345 67 890", "!!! ??? ..."])
def test_no_letters_is_unknown(text):
    reason, doc, stats = check(LanguageFilter(allow=None), text)
    assert doc.meta == {"lang": "unknown", "lang_score": 0.0}
    assert stats["lang:unknown"] == 1
    assert reason == "language:low_score"
    assert check(LanguageFilter(), text)[0] == "language:not_allowed"


def test_candidate_languages_limit_detection():
    reason, doc, _ = check(LanguageFilter(allow=None, languages=["en", "fr"]), GERMAN)
    assert doc.meta["lang"] in ("en", "fr")


def test_only_the_first_max_chars_are_used():
    reason, doc, _ = check(LanguageFilter(max_chars=len(GERMAN)), GERMAN + " " + ENGLISH * 3)
    assert doc.meta["lang"] == "de"
    assert reason == "language:not_allowed"


def test_unknown_language_code_raises():
    with pytest.raises(ValueError, match="unknown ISO 639-1 code 'XX'"):
        LanguageFilter(languages=["en", "xx"])


def test_a_plainly_allowed_start_decides_and_any_other_start_reads_max_chars():
    english_then_german = ENGLISH + " " + GERMAN * 3  # 150 English characters, then German
    quick = LanguageFilter(quick_chars=len(ENGLISH), max_chars=len(english_then_german))
    reason, doc, _ = check(quick, english_then_german)
    assert reason is None and doc.meta["lang"] == "en" and doc.meta["lang_score"] >= 0.9
    reason, doc, _ = check(
        LanguageFilter(quick_chars=0, max_chars=len(english_then_german)), english_then_german
    )
    assert doc.meta["lang"] == "de" and reason == "language:not_allowed"
    # A German start is not plainly allowed: the longer sample decides, as without the quick look.
    german_then_english = GERMAN + " " + ENGLISH * 3
    reason, doc, _ = check(LanguageFilter(quick_chars=len(GERMAN), max_chars=2_000), german_then_english)
    slow_reason, slow, _ = check(LanguageFilter(quick_chars=0, max_chars=2_000), german_then_english)
    assert (reason, doc.meta) == (slow_reason, slow.meta)
