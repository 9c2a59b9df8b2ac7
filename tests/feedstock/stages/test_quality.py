"""The quality stage: Gopher repetition and quality, C4 and FineWeb rules on tiny inline documents."""

from __future__ import annotations

from collections import Counter

import pytest

from feedstock.stages.quality import (
    FILTERS,
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
    build_filters,
)
from feedstock.stages.steps import Document, Drop, run_steps

GOOD = """\
The city council met on Tuesday evening to discuss the new budget for public libraries. Several residents \
spoke in favour of longer opening hours, and the head librarian presented figures showing that visits have \
grown steadily over the last three years.

Council members agreed that the reading rooms need better lighting and more seats. They also asked the \
finance office to prepare a plan that would keep the branches open on Sunday afternoons without cutting the \
money set aside for new books.

A final vote is expected next month, after the public has had time to comment on the proposal. Anyone who \
wants to take part can write to the council or attend the next open meeting at the town hall."""

ALL = (GopherRepetitionFilter, GopherQualityFilter, C4QualityFilter, FineWebQualityFilter)


def doc(text: str) -> Document:
    return Document("d1", "web", text)


def reason(step, text: str) -> str | None:
    return step.process(doc(text), Counter())


@pytest.mark.parametrize("cls", ALL)
def test_good_prose_passes_every_filter(cls):
    assert reason(cls(), GOOD) is None


@pytest.mark.parametrize("cls", ALL)
def test_markdown_heading_and_crlf_do_not_hurt(cls):
    assert reason(cls(), "# Library budget\r\n\r\n" + GOOD.replace("\n", "\r\n")) is None


def test_empty_documents_do_not_crash():
    assert reason(GopherRepetitionFilter(), "  \n\n ") is None  # nothing repeats
    assert reason(GopherQualityFilter(), "") == "quality:gopher_quality:short_doc"
    assert reason(C4QualityFilter(), "") == "quality:c4:few_sentences"
    assert reason(FineWebQualityFilter(), "\n\n") == "quality:fineweb:empty"


# --- Gopher repetition ------------------------------------------------------------------------------------


def test_repeated_lines_are_dropped():
    line = "Click here to subscribe to our weekly newsletter for more updates."
    text = GOOD + "\n" + "\n".join([line] * 6)
    assert reason(GopherRepetitionFilter(), text) == "quality:gopher_repetition:dup_lines"
    lines_only = dict(dup_para_frac=None, dup_para_char_frac=None, top_n_grams=(), dup_n_grams=())
    assert reason(GopherRepetitionFilter(**lines_only), text) == "quality:gopher_repetition:dup_lines"
    chars_only = dict(lines_only, dup_line_frac=None)
    assert reason(GopherRepetitionFilter(**chars_only), text) == "quality:gopher_repetition:dup_line_chars"
    assert (
        reason(GopherRepetitionFilter(**lines_only, dup_line_frac=None, dup_line_char_frac=None), text)
        is None
    )


def test_repeated_paragraphs_are_dropped():
    paragraphs = GOOD.split("\n\n")
    text = "\n\n".join(paragraphs + [paragraphs[0], paragraphs[0]])
    assert reason(GopherRepetitionFilter(), text) == "quality:gopher_repetition:dup_paras"


def test_repeated_ngrams_in_one_line_are_dropped():
    text = " ".join(["Buy cheap watches online today and save money."] * 12)
    # one line, so the n-gram rules: each 2-gram holds 19% of the text (limit 20%), each 3-gram 35% (18%)
    assert reason(GopherRepetitionFilter(), text) == "quality:gopher_repetition:top_3_gram"


def test_duplicated_long_ngrams_alone_are_dropped():
    phrase = "the committee will publish its detailed findings in the annual report"
    lines = [f"In {year}, {phrase} before the summer recess begins." for year in range(2001, 2011)]
    only_dup_ngrams = dict(dup_line_frac=None, dup_para_frac=None, dup_line_char_frac=None)
    only_dup_ngrams |= dict(dup_para_char_frac=None, top_n_grams=())
    expected = "quality:gopher_repetition:dup_5_grams"
    assert reason(GopherRepetitionFilter(**only_dup_ngrams), "\n".join(lines)) == expected
    assert reason(GopherRepetitionFilter(**only_dup_ngrams, dup_n_grams=()), "\n".join(lines)) is None


def test_short_document_is_not_called_repetitive():
    assert reason(GopherRepetitionFilter(), "Hello world.") is None


# --- Gopher quality ---------------------------------------------------------------------------------------


def test_too_few_and_too_many_words():
    short = "The meeting is at noon, and it is short."
    assert reason(GopherQualityFilter(), short) == "quality:gopher_quality:short_doc"
    assert reason(GopherQualityFilter(max_doc_words=50), GOOD) == "quality:gopher_quality:long_doc"
    assert (
        reason(GopherQualityFilter(min_doc_words=None), "The meeting is at noon and the room is small.")
        is None
    )


def test_hash_heavy_text_is_dropped_but_markdown_headings_are_not_hashes():
    tagged = GOOD + "\n" + " ".join(f"#tag{i}" for i in range(20))
    assert reason(GopherQualityFilter(), tagged) == "quality:gopher_quality:symbols"
    assert reason(GopherQualityFilter(max_symbol_word_ratio=None), tagged) is None
    headed = "\n\n".join(f"## Part {i}\n\n{p}" for i, p in enumerate(GOOD.split("\n\n")))
    assert reason(GopherQualityFilter(max_symbol_word_ratio=0.01), headed) is None


def test_ellipsis_heavy_text_is_dropped():
    text = "\n".join(f"{line[:60]}..." for line in GOOD.replace(". ", ".\n").splitlines() if line)
    assert reason(GopherQualityFilter(), text) == "quality:gopher_quality:ellipsis_lines"
    assert reason(GopherQualityFilter(max_ellipsis_lines_ratio=None), text) is None


def test_bullet_only_text_is_dropped():
    items = [f"Item {i}: the order of the steps matters for the process to work with care" for i in range(6)]
    for marker in ("•", "-", "*"):
        text = "\n".join(f"{marker} {item}" for item in items)
        assert reason(GopherQualityFilter(), text) == "quality:gopher_quality:bullet_lines", marker
        assert reason(GopherQualityFilter(max_bullet_lines_ratio=None), text) is None


def test_text_without_stop_words_is_dropped():
    text = "Sales grew fast across every region this quarter. " * 8
    assert reason(GopherQualityFilter(), text) == "quality:gopher_quality:few_stop_words"
    assert reason(GopherQualityFilter(min_stop_words=None), text) is None


def test_numeric_tables_and_odd_word_lengths_are_dropped():
    table = "The totals and the counts:\n" + "\n".join(
        f"{1000 + i} {2000 + 7 * i} {3000 + 13 * i}" for i in range(20)
    )
    assert reason(GopherQualityFilter(), table) == "quality:gopher_quality:non_alpha_words"
    assert reason(GopherQualityFilter(max_non_alpha_words_ratio=None), table) is None
    long_words = " ".join(["internationalization", "the", "of", "characteristically"] * 20)
    assert reason(GopherQualityFilter(), long_words) == "quality:gopher_quality:long_words"
    assert reason(GopherQualityFilter(max_avg_word_length=None), long_words) is None


# --- C4 ---------------------------------------------------------------------------------------------------


def test_c4_keeps_prose_and_removes_noise_lines():
    noisy = "\n".join(
        [
            "Home | News | Contact",
            GOOD.split("\n\n")[0] + "[1]",
            "Please enable JavaScript to view the comments powered by a third party.",
            "This website uses cookies to improve your experience.",
            "Read more",
            GOOD.split("\n\n")[1],
            GOOD.split("\n\n")[2],
            "And then the story trails off...",
        ]
    )
    document = doc(noisy)
    assert C4QualityFilter().process(document, Counter()) is None
    assert document.text == "\n".join(GOOD.split("\n\n"))


def test_c4_drops_lorem_ipsum_and_curly_brackets():
    lorem = GOOD + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit."
    assert reason(C4QualityFilter(), lorem) == "quality:c4:lorem_ipsum"
    assert reason(C4QualityFilter(filter_lorem_ipsum=False), lorem) is None
    braces = GOOD + "\nUse the template {name} in every greeting you send."
    assert reason(C4QualityFilter(), braces) == "quality:c4:curly_bracket"
    assert reason(C4QualityFilter(filter_curly_bracket=False), braces) is None
    code = GOOD + "\nfunction greet() { return 1 }"  # no terminal punctuation: the line goes, the doc stays
    assert reason(C4QualityFilter(), code) is None


def test_c4_drops_documents_with_too_few_sentences():
    text = "Welcome to our shop.\nWe sell fresh bread every day. It is baked at dawn.\nMenu\nCart"
    assert reason(C4QualityFilter(), text) == "quality:c4:few_sentences"
    assert reason(C4QualityFilter(min_num_sentences=3), text) is None


def test_c4_sentence_mode_joins_sentences():
    document = doc(GOOD.replace("\n\n", " "))
    assert C4QualityFilter(split_paragraph=False).process(document, Counter()) is None
    assert document.text == GOOD.replace("\n\n", " ")


# --- FineWeb ----------------------------------------------------------------------------------------------


def test_fineweb_drops_lines_without_punctuation():
    headlines = "\n".join(
        [
            "Council approves new budget for public libraries",
            "Residents ask for longer opening hours on weekends",
            "Head librarian presents three years of visitor figures",
            "Reading rooms to get better lighting and more seats",
            "Final vote on the proposal expected next month",
        ]
    )
    assert reason(FineWebQualityFilter(), headlines) == "quality:fineweb:line_punct"
    assert reason(FineWebQualityFilter(line_punct_thr=None), headlines) is None
    assert reason(FineWebQualityFilter(line_punct_thr=0.0, line_punct_exclude_zero=True), headlines) is None


def test_fineweb_drops_documents_of_short_lines():
    menu = "\n".join(["Home.", "About us.", "Our team.", "Careers.", "Contact us.", GOOD.split("\n\n")[0]])
    assert reason(FineWebQualityFilter(new_line_ratio=None), menu) == "quality:fineweb:short_lines"
    assert reason(FineWebQualityFilter(new_line_ratio=None, short_line_thr=None), menu) is None


def test_fineweb_drops_duplicated_line_characters():
    repeated = GOOD + "\n\n" + GOOD.split("\n\n")[2]
    assert reason(FineWebQualityFilter(), repeated) == "quality:fineweb:char_duplicates"
    assert reason(FineWebQualityFilter(char_duplicates_ratio=None), repeated) is None


def test_fineweb_drops_list_like_documents():
    words = ["Interoperability", "Internationalization", "Telecommunications", "Misunderstandings"]
    words += ["Responsibilities", "Characterizations"]
    lines = [f"{a} {b}." for a in words for b in words if a != b]  # long enough, but one item a line
    text = "\n".join(lines)
    assert reason(FineWebQualityFilter(), text) == "quality:fineweb:new_lines"
    assert reason(FineWebQualityFilter(new_line_ratio=None), text) is None


# --- build_filters and the stage plumbing -----------------------------------------------------------------


def test_build_filters_in_fixed_order_with_overrides():
    filters = build_filters(
        {"fineweb": True, "c4": False, "gopher_quality": {"min_doc_words": 10}, "gopher_repetition": {}}
    )
    assert [type(f) for f in filters] == [GopherRepetitionFilter, GopherQualityFilter, FineWebQualityFilter]
    assert filters[1].min_doc_words == 10 and filters[1].max_doc_words == 100_000
    assert build_filters({"gopher_repetition": None}) == []
    assert [type(f) for f in build_filters(dict.fromkeys(FILTERS, True))] == list(ALL)


def test_build_filters_rejects_unknown_names_and_thresholds():
    with pytest.raises(ValueError, match="unknown quality filter 'perplexity'"):
        build_filters({"perplexity": {}})
    with pytest.raises(ValueError, match="unknown threshold 'min_words' for quality filter 'gopher_quality'"):
        build_filters({"gopher_quality": {"min_words": 10}})
    with pytest.raises(ValueError, match="'fineweb'"):
        build_filters({"fineweb": 0.3})


def test_run_steps_counts_drops_per_rule():
    docs = [Document("a", "web", GOOD), Document("b", "web", "Too short to keep.")]
    stats: dict[str, Counter] = {}
    drops: list[Drop] = []
    kept = list(run_steps(docs, build_filters(dict.fromkeys(FILTERS, {})), stats, drops))
    assert [d.doc_id for d in kept] == ["a"]
    assert drops == [Drop("b", "web", "quality", "quality:gopher_quality:short_doc")]
    assert stats["quality"]["dropped:quality:gopher_quality:short_doc"] == 1


def test_hashed_ngram_rules_agree_with_the_tuple_reference():
    """The batch's numpy n-gram hashes decide exactly as the plain-Python rules (tuples of strings, Counter) on
    each of its texts, with every kind of repetition: ties between top n-grams, overlapping and skipped repeats,
    texts shorter than n, and the same n-grams in neighbouring documents (which must not count for each other)."""
    import random

    import numpy as np

    from feedstock.stages.quality import _TOKEN, _Grams, _tokenize, _TupleGrams

    rng = random.Random(5)
    vocabulary = ["a", "bb", "ccc", "the", "pipe", "sync", "x", "Relay", "--", "3.14", "don't"]
    documents = []
    for _ in range(400):
        words = [
            rng.choice(vocabulary[: rng.randint(2, len(vocabulary))]) for _ in range(rng.randint(0, 120))
        ]
        if words and rng.random() < 0.5:  # a repeated block, as in templated pages
            start = rng.randrange(len(words))
            words += words[start : start + rng.randint(1, 15)] * rng.randint(1, 4)
        documents.append(" ".join(words))
        if rng.random() < 0.1:
            documents.append(documents[-1])  # the same text again, next to it
    references = [_TupleGrams(_TOKEN.findall(text)) for text in documents]
    grams = _Grams(_tokenize(documents), len(documents))
    for n in (2, 3, 4):
        counts, chars = grams.top(n)
        assert list(zip(counts.tolist(), chars.tolist(), strict=True)) == [r.top_chars(n) for r in references]
    everyone = np.ones(len(documents), bool)
    for n in range(5, 11):
        exact = np.array([r.duplicate_chars(n) for r in references])
        for limits in (0 * exact, np.maximum(exact - 1, 0), exact, exact + 1, exact + 10**9):
            over = grams.duplicate_chars_over(n, limits.astype(float), everyone)
            assert over.tolist() == (exact > limits).tolist(), n
        some = np.arange(len(documents)) % 3 == 0  # documents already decided are not looked at
        assert not grams.duplicate_chars_over(n, np.zeros(len(documents)), some)[~some].any()


@pytest.mark.parametrize("piece_chars", [1 << 20, 16])
def test_the_vectorized_tokens_are_the_regexs_tokens(monkeypatch, piece_chars):
    """_tokenize restates _TOKEN over character classes: the same tokens, on texts made of the characters that
    decide it (joiners next to words and to each other, Unicode letters, digits and spaces, control characters,
    a lone surrogate), and equal tokens hash equal, different ones differently; in one piece or in many."""
    import random

    from feedstock.stages import quality
    from feedstock.stages.quality import _LETTER, _LONG_TOKEN, _TOKEN, _WORD, _tokenize

    monkeypatch.setattr(quality, "_PIECE_CHARS", piece_chars)  # 16: a batch tokenized in many pieces
    rng = random.Random(1)
    alphabet = list("ab_9 .'-’\n\t!?é,") + [
        "\u00a0",
        "\u2003",
        "日",
        "٣",
        "\x1c",
        "\x00",
        "\ud800",
        "a.b",
        "x'y",
    ]
    alphabet.append("w" * (_LONG_TOKEN + 1))
    for _ in range(2000):
        texts = [
            "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(rng.randint(1, 4))
        ]
        doc, starts, ends, hashes, words, letters = _tokenize(texts)
        joined = "\n".join(texts)
        tokens = [joined[a:b] for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
        assert tokens == [token for text in texts for token in _TOKEN.findall(text)]
        assert doc.tolist() == [i for i, text in enumerate(texts) for _ in _TOKEN.findall(text)]
        word_tokens = [token for token, word in zip(tokens, words.tolist(), strict=True) if word]
        assert word_tokens == [word for text in texts for word in _WORD.findall(text)]
        assert letters.tolist() == [bool(_LETTER.search(token)) for token in tokens]
        by_token = dict(zip(tokens, hashes.tolist(), strict=True))
        assert [by_token[token] for token in tokens] == hashes.tolist()
        assert len(set(by_token.values())) == len(by_token)


def test_a_later_filter_takes_its_documents_tokens_from_the_batch():
    """The token cache hands a subset of the last batch (in any order) the tokens a fresh tokenization gives."""
    from feedstock.stages.quality import _TokenCache, _tokenize

    texts = ["one two three", "", "x.y -- z", "   ", "a b c d e f", "again: one two"]
    cache = _TokenCache()
    whole = cache.of(texts)
    for picks in ([0, 2, 4, 5], [5, 0], [1, 3], [4]):
        subset = [texts[i] for i in picks]
        got, fresh = cache.of(subset), _tokenize(subset)
        assert cache.of(texts) is whole  # still the same batch
        for column, expected in zip(got, fresh, strict=True):
            if column is not got.starts and column is not got.ends:  # offsets are the batch's
                assert column.tolist() == expected.tolist()
        assert (got.ends - got.starts).tolist() == (fresh.ends - fresh.starts).tolist()
    assert cache.of(["new text"]).doc.tolist() == [0, 0]


def test_gopher_quality_over_a_batch_is_the_plain_rules():
    """The batch's word counts (from tokens) decide as the per-document rules over ``_WORD.findall`` did, on
    generated texts that reach every rule."""
    import random

    from feedstock.stages.quality import _plain_gopher_quality as plain

    rng = random.Random(7)
    vocabulary = [
        "the",
        "of",
        "and",
        "The",
        "pipeline",
        "sync",
        "3.14",
        "42",
        "_",
        "x",
        "extraordinarily",
        "don't",
    ]
    vocabulary += ["#", "...", "…", "-", "well-known", "été", "日本"]
    texts = []
    for _ in range(300):
        lines = []
        for _ in range(rng.randint(1, 12)):
            line = " ".join(rng.choice(vocabulary) for _ in range(rng.randint(1, 15)))
            lines.append(rng.choice(["", "", "- ", "## ", "• "]) + line + rng.choice(["", ".", "..."]))
        texts.append("\n".join(lines))
    filters = [
        GopherQualityFilter(min_doc_words=5),
        GopherQualityFilter(),
        GopherQualityFilter(stop_words=["a b"]),
    ]
    for f in filters:
        assert f.check_batch([doc(text) for text in texts]) == [plain(f, text) for text in texts]
    assert len({plain(filters[0], text) for text in texts}) >= 8  # every rule but long_doc decides some


def test_repetition_batch_decides_as_one_document_at_a_time():
    """The filter's batch verdicts are those of each document alone."""
    texts = [GOOD, "", "word " * 300, (GOOD + "\n\n") * 3, "one two three four five six " * 20, GOOD[:200]]
    step = GopherRepetitionFilter()
    docs = [doc(text) for text in texts]
    assert step.check_batch(docs) == [step.check(d) for d in docs]
