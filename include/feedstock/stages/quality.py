"""The quality stage: published heuristic document filters for pretraining text.

Contract: the input is one :class:`~feedstock.stages.steps.Document`; the output is the document kept, or
dropped with the reason ``quality:<family>:<rule>``, naming the rule that decided:

- ``quality:gopher_repetition:*``: Gopher's repetition rules (Rae et al. 2021, Appendix A, table A1):
  ``dup_paras``, ``dup_para_chars``, ``dup_lines``, ``dup_line_chars`` (duplicated paragraphs and lines, as
  shares of the units and of the characters), ``top_{2,3,4}_gram`` (the most frequent n-gram's characters),
  ``dup_{5..10}_grams`` (characters in duplicated n-grams).
- ``quality:gopher_quality:*``: Gopher's quality rules: ``short_doc``, ``long_doc`` (word count),
  ``short_words``, ``long_words`` (mean word length), ``symbols`` (hash and ellipsis to word ratio),
  ``bullet_lines``, ``ellipsis_lines``, ``non_alpha_words`` (too few words with a letter), ``few_stop_words``.
- ``quality:c4:*``: the C4 line rules (Raffel et al. 2020). C4 *rewrites* a kept document to its kept lines and
  drops it when fewer than 5 sentences remain (``few_sentences``), or when a kept line holds "lorem ipsum"
  (``lorem_ipsum``) or a curly bracket (``curly_bracket``).
- ``quality:fineweb:*``: FineWeb's rules (Penedo et al. 2024): ``line_punct`` (too few lines ending in
  punctuation), ``short_lines``, ``char_duplicates`` (characters in duplicated lines), ``new_lines`` (newlines
  per word), ``empty``.

The rules and defaults follow HuggingFace datatrove's filters of the same names. A threshold set to None
switches that rule off. Simplifications and deliberate differences:

- Words come from a regex tokenizer (runs of word characters, keeping ``don't``, ``3.14``, ``well-known``
  whole; punctuation runs are separate tokens) instead of NLTK's ``word_tokenize``, which needs a data
  download. C4 counts sentences with a regex splitter instead of NLTK's punkt.
- Blank lines are ignored by the line rules. Our parsers separate paragraphs with blank lines, while the web
  extractions these thresholds were tuned on do not; counting them would flag every well-formed document as
  repetitive (many identical empty lines) or as made of short lines.
- Markdown-aware, because every parser emits Markdown: heading markers (``## Title``) are not counted as hash
  symbols, and ``-``, ``*`` and ``+`` list items count as bullet lines besides ``•``.
- Gopher's top n-gram rule only looks at n-grams that occur at least twice, so a very short document is not
  reported as repetitive because its only n-gram covers the whole text.
- The C4 bad-words list (a download) is not applied.
"""

from __future__ import annotations

import inspect
import re
import secrets
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from feedstock.stages.steps import Document, Filter

# Word tokens as NLTK would keep them whole; _TOKEN also yields punctuation runs, which NLTK counts as tokens.
_WORD = re.compile(r"\w+(?:['’.\-]\w+)*")
_TOKEN = re.compile(r"\w+(?:['’.\-]\w+)*|[^\w\s]+")
_LETTER = re.compile(r"[^\W\d_]")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r]*\n\s*")
_MARKDOWN_HEADING = re.compile(r"^[ \t]{0,3}(#{1,6})[ \t]", re.MULTILINE)
_BULLETS = ("•", "‣", "◦", "▪", "●", "- ", "* ", "+ ")
_ELLIPSES = ("...", "…")
_CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
# A sentence ends at . ! ? (maybe closed by a quote or bracket) before whitespace and a non-lowercase start,
# so "e.g. this" stays one sentence.
_SENTENCE_BREAK = re.compile(r"(?:(?<=[.!?…])|(?<=[.!?…][\"'”’)\]]))\s+(?=[^\sa-z])")
_C4_END_PUNCTUATION = (".", "?", "!", '"', "'")
_C4_POLICY = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)
_FINEWEB_STOP_CHARS = (".", "'", '"', "!", "?")
STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")


def _nonblank_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _stripped_lines(text: str) -> list[str]:
    """The non-blank lines, stripped: what the Gopher quality and FineWeb line rules read."""
    return [line.strip() for line in _nonblank_lines(text)]


def _duplicates(items: Sequence[str]) -> tuple[int, int]:
    """How many items repeat an earlier one, and how many characters those repeats hold."""
    counts = Counter(items)
    if len(counts) == len(items):
        return 0, 0  # the usual case, decided without a pass over the counts
    return len(items) - len(counts), sum(len(item) * (n - 1) for item, n in counts.items() if n > 1)


def _ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return list(zip(*(tokens[i:] for i in range(n)), strict=False))


def _char_class(char: str) -> int:
    if _WORD_CHAR.match(char):
        return _WORDS
    if _SPACE_CHAR.match(char):
        return _SPACES
    return _JOINER if char in _JOINERS else _OTHER


_WORD_CHAR, _SPACE_CHAR, _JOINERS = re.compile(r"\w"), re.compile(r"\s"), "'’.-"
_SPACES, _WORDS, _OTHER, _JOINER = 0, 1, 2, 3
_ASCII_CLASS = np.array([_char_class(chr(code)) for code in range(128)], np.int8)
_ASCII_LETTER = np.array([bool(_LETTER.match(chr(code))) for code in range(128)])
_LONG_TOKEN = 64  # characters; longer tokens (rare) are hashed by Python
# Salted per process, as str's own hash is, so that no text can be built to make two tokens collide.
_TOKEN_BASE = np.uint64(secrets.randbits(64) | 1)
with np.errstate(over="ignore"):
    _TOKEN_POWERS = np.cumprod(np.full(_LONG_TOKEN + 1, _TOKEN_BASE, np.uint64))


class _Tokens(NamedTuple):
    """A batch's tokens, in order: each one's document, start and end (characters of the texts joined by
    newlines), 64-bit hash, whether it is a word (``_WORD``, not a punctuation run) and whether it holds a
    letter."""

    doc: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    hashes: np.ndarray
    words: np.ndarray
    letters: np.ndarray

    def subset(self, picks: list[int], documents: int) -> _Tokens:
        """The tokens of documents ``picks`` (of ``documents``, in that order), numbered 0.. as listed."""
        bounds = np.searchsorted(self.doc, np.arange(documents + 1))
        first, counts = bounds[picks], bounds[np.asarray(picks, np.int64) + 1] - bounds[picks]
        at = np.repeat(first - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
        doc = np.repeat(np.arange(len(picks)), counts)
        return _Tokens(doc, *(column[at] for column in self[1:]))


def _tokenize(texts: list[str]) -> _Tokens:
    """``_TOKEN.findall`` over a batch of texts, vectorized (:class:`_Tokens`), in pieces of about
    ``_PIECE_CHARS`` characters so that the temporary arrays stay small (about 30 bytes a character).
    """
    pieces: list[_Tokens] = []
    doc = char = 0
    for group in _pieces(texts):
        tokens = _tokenize_piece(group)
        pieces.append(
            tokens._replace(doc=tokens.doc + doc, starts=tokens.starts + char, ends=tokens.ends + char)
        )
        doc, char = doc + len(group), char + sum(map(len, group)) + len(group)
    return _Tokens(*(np.concatenate(column) for column in zip(*pieces, strict=True)))


_PIECE_CHARS = 1 << 20


def _pieces(texts: list[str]) -> Iterator[list[str]]:
    group: list[str] = []
    size = 0
    for text in texts:
        if group and size + len(text) > _PIECE_CHARS:
            yield group
            group, size = [], 0
        group.append(text)
        size += len(text) + 1
    yield group


def _tokenize_piece(texts: list[str]) -> _Tokens:
    """``_TOKEN.findall`` over a few texts, vectorized.

    The regex, restated over character classes: a token is a run of word characters, a joiner (``'’.-``)
    between two word characters included, or a run of other non-space characters. Each distinct character is
    classed by the regex's own ``\\w`` and ``\\s``. A token's hash is the sum of its characters' code points times
    a salted base to the power of their place in it; a token over ``_LONG_TOKEN`` characters gets str's hash.
    Measured on the end-to-end corpus: half the time of ``findall`` plus ``hash`` and ``len`` per token.
    """
    joined = "\n".join(texts)
    codes = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), np.uint32)
    ascii_codes = np.minimum(codes, 127)
    classes, letter = _ASCII_CLASS[ascii_codes], _ASCII_LETTER[ascii_codes]
    wide = np.flatnonzero(codes >= 128)
    if len(wide):
        unique, inverse = np.unique(codes[wide], return_inverse=True)
        chars = [chr(code) for code in unique.tolist()]
        classes[wide] = np.array([_char_class(char) for char in chars], np.int8)[inverse]
        letter[wide] = np.array([bool(_LETTER.match(char)) for char in chars])[inverse]
    kind = np.where(classes == _JOINER, _OTHER, classes)
    glued = (classes[1:-1] == _JOINER) & (classes[:-2] == _WORDS) & (classes[2:] == _WORDS)
    kind[1:-1][glued] = _WORDS
    runs = np.flatnonzero(np.diff(kind, prepend=np.int8(-1)))  # where each run of one kind starts
    run_start = np.zeros(len(kind), np.int32)
    run_start[runs] = runs
    place = np.arange(len(kind), dtype=np.int32) - np.maximum.accumulate(run_start)  # its place in its run
    with np.errstate(over="ignore"):
        terms = (codes.astype(np.uint64) + np.uint64(1)) * _TOKEN_POWERS[np.minimum(place, _LONG_TOKEN)]
        prefix = np.concatenate(([np.uint64(0)], np.cumsum(terms, dtype=np.uint64)))
    letters = np.concatenate(([0], np.cumsum(letter)))
    ends = np.append(runs[1:], len(kind)) if len(runs) else runs
    token = kind[runs] != _SPACES
    starts, ends = runs[token], ends[token]
    hashes = prefix[ends] - prefix[starts]
    long = np.flatnonzero(ends - starts > _LONG_TOKEN)
    if len(long):
        spans = zip(starts[long].tolist(), ends[long].tolist(), strict=True)
        hashes[long] = np.fromiter((hash(joined[a:b]) for a, b in spans), np.int64, len(long)).view(np.uint64)
    text_ends = np.cumsum(np.fromiter(map(len, texts), np.int64, len(texts)) + 1)
    doc = np.searchsorted(text_ends, starts, side="right")
    return _Tokens(doc, starts, ends, hashes, kind[starts] == _WORDS, letters[ends] > letters[starts])


class _TokenCache:
    """The tokens of the last batch, for the next filter over the same texts: the repetition filter tokenizes a
    batch, and the Gopher quality and FineWeb filters, which see the documents it kept, take theirs from here.
    Texts are matched by identity (they are held, so an identity is not reused while cached): a text rewritten
    by C4, or any text not in the last batch, means a new batch. The same goes for the stripped non-blank lines
    that both of those filters read (:meth:`lines`)."""

    def __init__(self):
        self._texts: list[str] = []
        self._index: dict[int, int] = {}
        self._tokens: _Tokens | None = None
        self._lines: dict[int, list[str]] = {}

    def lines(self, text: str) -> list[str]:
        """The text's non-blank lines, stripped; kept for the texts of the last batch."""
        if id(text) not in self._index:
            return _stripped_lines(text)
        if (found := self._lines.get(id(text))) is None:
            found = self._lines[id(text)] = _stripped_lines(text)
        return found

    def of(self, texts: list[str]) -> _Tokens:
        picks = [self._index.get(id(text)) for text in texts]
        if self._tokens is not None and None not in picks:
            return (
                self._tokens
                if picks == list(range(len(self._texts)))
                else self._tokens.subset(picks, len(self._texts))
            )
        self._texts, self._index, self._lines = list(texts), {id(text): i for i, text in enumerate(texts)}, {}
        self._tokens = _tokenize(self._texts)
        return self._tokens


class _Grams:
    """The word n-grams of a batch of documents as 64-bit hashes, for every n, from one pass over their text.

    Gopher's n-gram rules look at up to nine n-gram sizes; building tuples of strings for each, or a few numpy
    calls per size and document, was most of the quality stage's time. Here the batch's tokens
    (:func:`_tokenize`) are laid end to end, each a 64-bit hash. An n-gram is a polynomial hash of n of them
    (numpy, wrapping uint64), with its document mixed into its first token, so n-grams of different documents
    never meet; a collision would need two different n-grams of one document to agree on 64 bits. An n-gram's
    characters (the tokens joined by single spaces) come from cumulative token lengths. Every rule then runs for
    the whole batch at once, per n-gram size, and answers per document.
    """

    _PRIME = np.uint64(1_000_003)
    _DOCUMENT = np.uint64(0x9E3779B97F4A7C15)  # odd: document i shifts its first tokens' hashes by i times it

    def __init__(self, tokens: _Tokens, documents: int):
        self.doc, self.ids, self.documents = tokens.doc, tokens.hashes, documents
        self.ends = np.concatenate(([0], np.cumsum(tokens.ends - tokens.starts)))
        # where each token's document ends
        self.stop = np.cumsum(np.bincount(self.doc, minlength=documents))[self.doc]
        with np.errstate(over="ignore"):
            self._first = self.ids + self.doc.astype(np.uint64) * self._DOCUMENT
        # n -> the positions whose n-gram occurs more than once, and those n-grams' hashes
        self._shared: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _hashed(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The positions where a whole n-gram starts, and its hashes. An n-gram that occurs twice starts with an
        (n-1)-gram that occurs twice, so once the (n-1)-grams were counted only their shared positions (usually
        few) are extended: every n-gram that repeats is among them, in the same order, which is all the rules ask
        about."""
        if n - 1 in self._shared:
            positions, h = self._shared[n - 1]
            whole = positions + n <= self.stop[positions]
            positions, h, m = positions[whole], h[whole], n - 1
        else:
            positions = np.flatnonzero(np.arange(len(self.ids)) + n <= self.stop)
            h, m = self._first[positions], 1
        with np.errstate(over="ignore"):
            for k in range(m, n):
                h = h * self._PRIME + self.ids[positions + k] + np.uint64(1)
        return positions, h

    def _counted(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The positions looked at, their n-grams' codes and each code's count. Codes number the distinct
        n-grams in the order they first occur (``pandas.factorize``: one hash-table pass, where ``np.unique``
        sorts)."""
        positions, h = self._hashed(n)
        codes = pd.factorize(h)[0] if len(h) else np.zeros(0, np.intp)
        counts = np.bincount(codes)
        shared = counts[codes] > 1
        self._shared[n] = positions[shared], h[shared]
        return positions, codes, counts

    def chars(self, n: int, positions: np.ndarray) -> np.ndarray:
        return self.ends[positions + n] - self.ends[positions] + (n - 1)

    def top(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Per document: the most frequent repeated n-gram's count and characters (0, 0 when none repeats); ties
        go to the one seen first, as in Counter."""
        counts_out, chars_out = np.zeros(self.documents, np.int64), np.zeros(self.documents, np.int64)
        positions, codes, counts = self._counted(n)
        repeated = counts[codes] > 1
        positions, count = positions[repeated], counts[codes[repeated]]
        if not len(positions):
            return counts_out, chars_out
        doc = self.doc[positions]
        np.maximum.at(counts_out, doc, count)
        # the first position holding its document's top count: the first of the most frequent n-grams, since
        # positions are in order
        best = np.flatnonzero(count == counts_out[doc])
        first = best[np.unique(doc[best], return_index=True)[1]]
        chars_out[doc[first]] = self.chars(n, positions[first])
        return counts_out, chars_out

    def duplicate_chars_over(self, n: int, limits: np.ndarray, looking: np.ndarray) -> np.ndarray:
        """Per document (of those ``looking``): whether the characters in n-grams seen before (skipping past each
        repeat, as datatrove's ``find_all_duplicate``) exceed its limit. The sum over every repeated position
        bounds them from above, so most documents are decided without the sequential scan, and the scan stops
        once past the limit."""
        over = np.zeros(self.documents, bool)
        positions, codes, counts = self._counted(n)
        if not len(codes):
            return over
        newest = np.maximum.accumulate(codes)  # grows exactly where an n-gram occurs for the first time
        repeat = np.concatenate(([False], newest[1:] == newest[:-1]))
        chars = self.chars(n, positions)
        doc = self.doc[positions]
        bound = np.bincount(doc[repeat], weights=chars[repeat], minlength=self.documents)
        suspects = np.flatnonzero(looking & (bound > limits))
        if not len(suspects):
            return over
        shared = np.flatnonzero(counts[codes] > 1)  # only n-grams that occur twice can ever be "seen"
        bounds = np.searchsorted(doc[shared], np.stack([suspects, suspects + 1]))
        for d, lo, hi in zip(suspects.tolist(), bounds[0].tolist(), bounds[1].tolist(), strict=True):
            local = shared[lo:hi]
            seen = _scan(
                positions[local].tolist(), codes[local].tolist(), chars[local].tolist(), n, limits[d]
            )
            over[d] = seen > limits[d]
        return over


def _scan(positions: list[int], keys: list[int], lengths: list[int], n: int, limit: float) -> int:
    """datatrove's sequential rule, visiting only the positions of n-grams that occur more than once: the walk
    steps one position at a time past the others, which changes nothing, and skips n past a repeat."""
    seen: set[int] = set()
    total = walk = 0
    for position, key, length in zip(positions, keys, lengths, strict=True):
        if position < walk:
            continue  # skipped over by an earlier repeat
        if key in seen:
            total += length
            if total > limit:
                return total
            walk = position + n
        else:
            seen.add(key)
            walk = position + 1
    return total


def _ngram_chars(gram: tuple[str, ...]) -> int:
    return sum(map(len, gram)) + len(gram) - 1  # the tokens joined by single spaces


class _TupleGrams:
    """:class:`_Grams`' questions for one document over tuples of strings and a Counter: the reference the tests
    hold the hashed n-grams to."""

    def __init__(self, tokens: list[str]):
        self.tokens = tokens

    def top_chars(self, n: int) -> tuple[int, int]:
        top = Counter(_ngrams(self.tokens, n)).most_common(1)
        return (top[0][1], _ngram_chars(top[0][0])) if top and top[0][1] > 1 else (0, 0)

    def duplicate_chars(self, n: int) -> int:
        """Characters in n-grams seen before, skipping past each repeat so overlapping repeats count once."""
        grams = _ngrams(self.tokens, n)
        if len(set(grams)) == len(grams):
            return 0  # the usual case for prose, found at C speed without the sequential scan
        seen: set[tuple[str, ...]] = set()
        chars = i = 0
        while i < len(grams):
            if grams[i] in seen:
                chars += _ngram_chars(grams[i])
                i += n
            else:
                seen.add(grams[i])
                i += 1
        return chars

    def over_duplicate_chars(self, n: int, limit: float) -> bool:
        return self.duplicate_chars(n) > limit


def _over(value: float, limit: float | None) -> bool:
    return limit is not None and value > limit


def _under(value: float, limit: float | None) -> bool:
    return limit is not None and value < limit


class _Family(Filter):
    """A family of rules (``rule``). ``check`` returns True or the name of the rule that failed, and the drop
    reason names both: ``quality:fineweb:short_lines``."""

    stage = "quality"
    rule = ""

    def check(self, doc: Document) -> bool | str:
        raise NotImplementedError

    def check_batch(self, docs: list[Document]) -> list[bool | str]:
        return [self.check(doc) for doc in docs]

    def named(self, verdict: bool | str) -> bool | str:
        return True if verdict is True else f"{self.rule}:{verdict}"

    def filter(self, doc: Document) -> bool | str:
        return self.named(self.check(doc))

    def process_batch(self, docs: list[Document], stats: Counter) -> list[str | None]:
        return [self.reason(self.named(verdict)) for verdict in self.check_batch(docs)]


class _Tokenized(_Family):
    """A family whose rules read the batch's tokens (:class:`_TokenCache`), so it decides a batch at a time and
    one document as a batch of one. :func:`build_filters` hands the filters of a pipeline one cache."""

    def __init__(self):
        self.tokens = _TokenCache()

    def check(self, doc: Document) -> bool | str:
        return self.check_batch([doc])[0]


class GopherRepetitionFilter(_Tokenized):
    """Drop documents made of repeated lines, paragraphs or n-grams (Gopher, table A1)."""

    rule = "gopher_repetition"

    def __init__(
        self,
        *,
        dup_line_frac: float | None = 0.3,
        dup_para_frac: float | None = 0.3,
        dup_line_char_frac: float | None = 0.2,
        dup_para_char_frac: float | None = 0.2,
        top_n_grams: Sequence[tuple[int, float]] = ((2, 0.2), (3, 0.18), (4, 0.16)),
        dup_n_grams: Sequence[tuple[int, float]] = (
            (5, 0.15),
            (6, 0.14),
            (7, 0.13),
            (8, 0.12),
            (9, 0.11),
            (10, 0.10),
        ),
    ):
        super().__init__()
        self.dup_line_frac = dup_line_frac
        self.dup_para_frac = dup_para_frac
        self.dup_line_char_frac = dup_line_char_frac
        self.dup_para_char_frac = dup_para_char_frac
        self.top_n_grams = tuple((int(n), float(frac)) for n, frac in top_n_grams or ())
        self.dup_n_grams = tuple((int(n), float(frac)) for n, frac in dup_n_grams or ())

    def _repeated_units(self, text: str) -> bool | str:
        size = len(text)
        for unit, units, frac, char_frac in (
            ("para", _PARAGRAPH_BREAK.split(text.strip()), self.dup_para_frac, self.dup_para_char_frac),
            ("line", _nonblank_lines(text), self.dup_line_frac, self.dup_line_char_frac),
        ):
            repeats, repeated_chars = _duplicates(units)
            if _over(repeats / len(units), frac):
                return f"dup_{unit}s"
            if _over(repeated_chars / size, char_frac):
                return f"dup_{unit}_chars"
        return True

    def check_batch(self, docs: list[Document]) -> list[bool | str]:
        """The paragraph and line rules per document, then the n-gram rules over the batch's remaining documents
        at once (:class:`_Grams`), in the rules' order: a document's verdict is the first rule it fails."""
        verdicts: list[bool | str] = []
        waiting = []
        for i, doc in enumerate(docs):
            # nothing repeats in an empty document; that is gopher_quality's business
            blank = not doc.text.strip()
            verdicts.append(True if blank else self._repeated_units(doc.text))
            if not blank and verdicts[i] is True:
                waiting.append(i)
        if not waiting or not (self.top_n_grams or self.dup_n_grams):
            return verdicts
        texts = [docs[i].text for i in waiting]
        grams = _Grams(self.tokens.of(texts), len(texts))
        sizes = np.fromiter(map(len, texts), np.int64, len(texts))
        open_ = np.ones(len(texts), bool)  # no rule has failed yet
        failed = np.full(len(texts), "", object)
        for n, frac in self.top_n_grams:
            count, chars = grams.top(n)
            fails = open_ & (count > 1) & (chars * count / sizes > frac)
            failed[fails], open_ = f"top_{n}_gram", open_ & ~fails
        for n, frac in self.dup_n_grams:
            fails = grams.duplicate_chars_over(n, frac * sizes, open_)
            failed[fails], open_ = f"dup_{n}_grams", open_ & ~fails
        for i, verdict in zip(waiting, failed.tolist(), strict=True):
            verdicts[i] = verdict or True
        return verdicts


class GopherQualityFilter(_Tokenized):
    """Drop documents that do not look like human prose (Gopher's quality rules)."""

    rule = "gopher_quality"

    def __init__(
        self,
        *,
        min_doc_words: int | None = 50,
        max_doc_words: int | None = 100_000,
        min_avg_word_length: float | None = 3,
        max_avg_word_length: float | None = 10,
        max_symbol_word_ratio: float | None = 0.1,
        max_bullet_lines_ratio: float | None = 0.9,
        max_ellipsis_lines_ratio: float | None = 0.3,
        max_non_alpha_words_ratio: float | None = 0.8,
        min_stop_words: int | None = 2,
        stop_words: Sequence[str] = STOP_WORDS,
    ):
        super().__init__()
        self.min_doc_words = min_doc_words
        self.max_doc_words = max_doc_words
        self.min_avg_word_length = min_avg_word_length
        self.max_avg_word_length = max_avg_word_length
        self.max_symbol_word_ratio = max_symbol_word_ratio
        self.max_bullet_lines_ratio = max_bullet_lines_ratio
        self.max_ellipsis_lines_ratio = max_ellipsis_lines_ratio
        # Named as in datatrove, but it is the *minimum* share of words holding a letter.
        self.max_non_alpha_words_ratio = max_non_alpha_words_ratio
        self.min_stop_words = min_stop_words
        self.stop_words = frozenset(stop_words)
        words = _tokenize(sorted(self.stop_words))  # a stop word that is not one word can never match
        alone = np.bincount(words.doc, minlength=len(self.stop_words)) == 1
        self._stop_hashes = words.hashes[words.words & alone[words.doc]]

    def check_batch(self, docs: list[Document]) -> list[bool | str]:
        """The word counts of the whole batch from its tokens (:func:`_tokenize`'s words are ``_WORD``'s), then
        each document's rules in order."""
        texts = [doc.text for doc in docs]
        tokens = self.tokens.of(texts)
        doc, size = tokens.doc[tokens.words], len(docs)
        n_words = np.bincount(doc, minlength=size).tolist()
        length = np.bincount(doc, (tokens.ends - tokens.starts)[tokens.words], size).astype(np.int64).tolist()
        with_letter = np.bincount(doc, minlength=size, weights=tokens.letters[tokens.words]).astype(np.int64)
        stop = np.bincount(doc, np.isin(tokens.hashes[tokens.words], self._stop_hashes), size).astype(
            np.int64
        )
        return [
            self._rules(*counts)
            for counts in zip(texts, n_words, length, with_letter.tolist(), stop.tolist(), strict=True)
        ]

    def _rules(self, text: str, n_words: int, length: int, with_letter: int, stop_words: int) -> bool | str:
        if not n_words or _under(n_words, self.min_doc_words):
            return "short_doc"
        if _over(n_words, self.max_doc_words):
            return "long_doc"
        mean_length = length / n_words
        if _under(mean_length, self.min_avg_word_length):
            return "short_words"
        if _over(mean_length, self.max_avg_word_length):
            return "long_words"
        hashes = text.count("#") - sum(map(len, _MARKDOWN_HEADING.findall(text)))
        ellipses = text.count("...") + text.count("…")
        if _over(max(hashes, ellipses) / n_words, self.max_symbol_word_ratio):
            return "symbols"
        lines = self.tokens.lines(text)
        if _over(sum(line.startswith(_BULLETS) for line in lines) / len(lines), self.max_bullet_lines_ratio):
            return "bullet_lines"
        if _over(sum(line.endswith(_ELLIPSES) for line in lines) / len(lines), self.max_ellipsis_lines_ratio):
            return "ellipsis_lines"
        if _under(with_letter / n_words, self.max_non_alpha_words_ratio):
            return "non_alpha_words"
        if _under(stop_words, self.min_stop_words):
            return "few_stop_words"
        return True


def _plain_gopher_quality(f: GopherQualityFilter, text: str) -> bool | str:
    """The Gopher quality rules one document at a time over ``_WORD.findall`` and a regex per word: the reference
    the tests and the process benchmark hold :meth:`GopherQualityFilter.check_batch` to."""
    words = _WORD.findall(text)
    n_words = len(words)
    if not n_words or _under(n_words, f.min_doc_words):
        return "short_doc"
    if _over(n_words, f.max_doc_words):
        return "long_doc"
    mean_length = sum(map(len, words)) / n_words
    if _under(mean_length, f.min_avg_word_length):
        return "short_words"
    if _over(mean_length, f.max_avg_word_length):
        return "long_words"
    hashes = text.count("#") - sum(map(len, _MARKDOWN_HEADING.findall(text)))
    ellipses = text.count("...") + text.count("…")
    if _over(max(hashes, ellipses) / n_words, f.max_symbol_word_ratio):
        return "symbols"
    lines = _stripped_lines(text)
    if _over(sum(line.startswith(_BULLETS) for line in lines) / len(lines), f.max_bullet_lines_ratio):
        return "bullet_lines"
    if _over(sum(line.endswith(_ELLIPSES) for line in lines) / len(lines), f.max_ellipsis_lines_ratio):
        return "ellipsis_lines"
    if _under(sum(map(bool, map(_LETTER.search, words))) / n_words, f.max_non_alpha_words_ratio):
        return "non_alpha_words"
    if _under(sum(map(f.stop_words.__contains__, words)), f.min_stop_words):
        return "few_stop_words"
    return True


class C4QualityFilter(_Family):
    """Keep only C4-clean lines (rewriting ``doc.text``); drop the document if too little prose is left.

    Like C4, "lorem ipsum" and ``{`` drop the document only on lines that survived the earlier line rules: a
    line of code without terminal punctuation is removed rather than condemning its document.
    """

    rule = "c4"

    def __init__(
        self,
        *,
        split_paragraph: bool = True,
        remove_citations: bool = True,
        filter_no_terminal_punct: bool = True,
        min_num_sentences: int | None = 5,
        min_words_per_line: int | None = 3,
        max_word_length: int | None = 1000,
        filter_lorem_ipsum: bool = True,
        filter_javascript: bool = True,
        filter_curly_bracket: bool = True,
        filter_policy: bool = True,
    ):
        self.split_paragraph = split_paragraph
        self.remove_citations = remove_citations
        self.filter_no_terminal_punct = filter_no_terminal_punct
        self.min_num_sentences = min_num_sentences
        self.min_words_per_line = min_words_per_line
        # datatrove switches this rule off with -1; accept that spelling too.
        self.max_word_length = None if max_word_length is None or max_word_length < 0 else max_word_length
        self.filter_lorem_ipsum = filter_lorem_ipsum
        self.filter_javascript = filter_javascript
        self.filter_curly_bracket = filter_curly_bracket
        self.filter_policy = filter_policy

    def check(self, doc: Document) -> bool | str:
        units = doc.text.splitlines() if self.split_paragraph else _SENTENCE_BREAK.split(doc.text)
        kept: list[str] = []
        sentences = 0
        for line in units:
            line = line.strip()
            words = line.split()
            if self.max_word_length is not None and any(len(word) > self.max_word_length for word in words):
                continue
            if self.remove_citations:
                line = _CITATION.sub("", line)
            if self.filter_no_terminal_punct and (
                not line.endswith(_C4_END_PUNCTUATION) or line.endswith("...")
            ):
                continue
            if _under(len(words), self.min_words_per_line):
                continue
            lower = line.lower()
            if self.filter_lorem_ipsum and "lorem ipsum" in lower:
                return "lorem_ipsum"
            if self.filter_javascript and "javascript" in lower:
                continue
            if self.filter_curly_bracket and "{" in line:
                return "curly_bracket"
            if self.filter_policy and any(phrase in lower for phrase in _C4_POLICY):
                continue
            sentences += len(_SENTENCE_BREAK.split(line)) if self.split_paragraph else 1
            kept.append(line)
        if _under(sentences, self.min_num_sentences):
            return "few_sentences"
        doc.text = ("\n" if self.split_paragraph else " ").join(kept).strip()
        return True


class FineWebQualityFilter(_Tokenized):
    """Drop list-like, menu-like and line-duplicated documents (FineWeb's own rules)."""

    rule = "fineweb"

    def __init__(
        self,
        *,
        line_punct_thr: float | None = 0.12,
        line_punct_exclude_zero: bool = False,
        short_line_thr: float | None = 0.67,
        short_line_length: int = 30,
        char_duplicates_ratio: float | None = 0.01,
        new_line_ratio: float | None = 0.3,
    ):
        super().__init__()
        self.line_punct_thr = line_punct_thr
        self.line_punct_exclude_zero = line_punct_exclude_zero
        self.short_line_thr = short_line_thr
        self.short_line_length = short_line_length
        self.char_duplicates_ratio = char_duplicates_ratio
        self.new_line_ratio = new_line_ratio

    def check_batch(self, docs: list[Document]) -> list[bool | str]:
        """Each document's rules, the token counts taken from the batch's tokens (after C4 rewrote a text, from
        the text as it is now)."""
        texts = [doc.text for doc in docs]
        tokens = np.bincount(self.tokens.of(texts).doc, minlength=len(docs)).tolist()
        return [self._rules(text, n) for text, n in zip(texts, tokens, strict=True)]

    def _rules(self, text: str, tokens: int) -> bool | str:
        lines = self.tokens.lines(text)
        if not lines:
            return "empty"
        punct_ratio = sum(line.endswith(_FINEWEB_STOP_CHARS) for line in lines) / len(lines)
        if (
            self.line_punct_thr is not None
            and punct_ratio <= self.line_punct_thr
            and not (punct_ratio == 0 and self.line_punct_exclude_zero)
        ):
            return "line_punct"
        short_ratio = sum(len(line) <= self.short_line_length for line in lines) / len(lines)
        if self.short_line_thr is not None and short_ratio >= self.short_line_thr:
            return "short_lines"
        repeated_chars = _duplicates(lines)[1]
        if self.char_duplicates_ratio is not None and (
            repeated_chars / (len(text) - text.count("\n")) >= self.char_duplicates_ratio
        ):
            return "char_duplicates"
        # Line breaks between text lines, so a blank line between paragraphs is not a list item.
        if _over((len(lines) - 1) / tokens, self.new_line_ratio):
            return "new_lines"
        return True


FILTERS: dict[str, type[Filter]] = {
    "gopher_repetition": GopherRepetitionFilter,
    "gopher_quality": GopherQualityFilter,
    "c4": C4QualityFilter,
    "fineweb": FineWebQualityFilter,
}


def build_filters(config: dict[str, dict | bool | None]) -> list[Filter]:
    """The enabled filters, in ``FILTERS`` order, from ``{name: thresholds}``.

    A value of False or None (or a missing name) switches a filter off; True or ``{}`` uses its published
    defaults; a dict overrides the named thresholds.
    """
    for name in config:
        if name not in FILTERS:
            raise ValueError(f"unknown quality filter {name!r}; known: {', '.join(FILTERS)}")
    filters: list[Filter] = []
    for name, cls in FILTERS.items():
        thresholds = config.get(name)
        if thresholds is None or thresholds is False:
            continue
        if thresholds is True:
            thresholds = {}
        if not isinstance(thresholds, dict):
            raise ValueError(f"quality filter {name!r}: expected a mapping of thresholds or true/false")
        known = inspect.signature(cls.__init__).parameters
        for key in thresholds:
            if key not in known or key == "self":
                raise ValueError(f"unknown threshold {key!r} for quality filter {name!r}")
        filters.append(cls(**thresholds))
    tokens = _TokenCache()  # the Gopher and FineWeb filters share one tokenization of each batch
    for step in filters:
        if isinstance(step, _Tokenized):
            step.tokens = tokens
    return filters
