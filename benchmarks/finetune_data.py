"""Chat examples for the fine-tuning benchmark, with planted duplicates, benchmark items and PII, and the truth.

Deterministic (one seeded ``random.Random``). Words come from this machine's text (the pretraining
benchmark's base documents, :mod:`benchmarks.pretrain_corpus`, built once and cached):

- **Prompts** (10-40 words in all): an opener ("How do I", "Why does", ... 60 of them), then phrase units of a
  connector ("the", "without", "for every", ... 48 of them) and one to three content words drawn from a
  vocabulary of 12,000 words, sometimes a closer ("Keep it short.", ...); the opener and the closer make at
  most 30% of the words (a short prompt gets a short opener and no closer). Two distinct prompts share only
  the opener, the closer and function-word pairs ("of the"), so their word 2-gram Jaccard stays below about
  0.2: a template that differs in a single slot word would be a near-duplicate by nature, and none is used. About 15% are two-turn
  conversations (the second user turn built the same way) and 10% have a system message.
- **Answers**: 30-150 words of real prose paragraphs (whole paragraphs, the last cut short), so tokenization,
  PII redaction and the repetition filter see real text (and whatever real PII it holds: IP addresses, ...).

Planted, each on its own original (an original has at most one planted copy), as shares of ``n``:

- ``exact``: an exact copy of an original (same messages, another record id), 2%;
- ``near``: the original's user turns with 5-10% of their words edited (a vocabulary word substituted or
  inserted, or the word deleted, equally likely; at least one edit per turn) and another answer, 5%;
- ``related``: the same with 20-30% of the words edited (word 2-gram Jaccard about 0.3-0.5: below the
  dedup threshold, so both are normally published, but near enough that they belong in one split), 2%;
- ``eval``: an item of the eval set (written beside the data, ``question``/``answer`` JSONL) as the prompt,
  lightly reformatted: case changes, punctuation, extra whitespace, a "Question:" prefix or an instruction
  around it, 1%. The eval set holds 13-40 word questions and some of 6-12 words (matched whole);
- ``pii``: emails, phone numbers (+CC, North American and trunk-0 shapes), IBANs (valid mod-97) and card numbers
  (valid Luhn, spaced, dashed or plain) written into the answers of untouched examples, one to three each, 3%.

:func:`generate` returns the records and a :class:`Truth`; :func:`write` writes them as ``messages`` JSONL.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from benchmarks.pretrain_corpus import edit_words

OPENERS = (
    "How do I",
    "How can I",
    "How should I",
    "What is the best way to",
    "Can you explain how to",
    "Could you help me",
    "Please explain why",
    "Why does",
    "Why would",
    "When should I",
    "Is it possible to",
    "What happens if I",
    "What is the difference between",
    "Explain in simple terms how",
    "Give me three ways to",
    "Write a short guide on how to",
    "Summarize how",
    "Tell me whether",
    "I am trying to",
    "I need to",
    "My team wants to",
    "We are planning to",
    "Help me understand how",
    "Walk me through how to",
    "Describe how",
    "List the steps to",
    "Suggest a way to",
    "Compare",
    "In practice, how do people",
    "From a beginner's point of view, how do you",
    "Is there a reason to",
    "What are the risks when you",
    "What would you recommend to",
    "Draft an email asking how to",
    "Write a paragraph about how to",
    "Outline a plan to",
    "Which tools let me",
    "Can I safely",
    "Should we",
    "How long does it take to",
    "What does it mean to",
    "Where can I learn to",
    "Any tips on how to",
    "Quick question: how do I",
    "Hi! Could you show me how to",
    "As a teacher, how can I",
    "For a school project, explain how to",
    "Give an example of how to",
    "What mistakes do people make when they",
    "Rewrite this so it explains how to",
    "Create a checklist to",
    "What is a good way to",
    "How would an expert",
    "Explain to a child how to",
    "Why is it hard to",
    "What should I check before I",
    "How do professionals",
    "Propose an experiment to",
    "What questions should I ask before I",
    "Teach me to",
)
CONNECTORS = (
    "the",
    "a",
    "my",
    "our",
    "their",
    "this",
    "that",
    "some",
    "every",
    "of the",
    "in the",
    "on a",
    "for the",
    "with",
    "without",
    "after",
    "before",
    "during",
    "while",
    "when",
    "so that",
    "because of",
    "instead of",
    "between",
    "across",
    "into the",
    "from",
    "using",
    "by",
    "near",
    "under",
    "over",
    "through",
    "against",
    "about",
    "like",
    "unlike",
    "around",
    "within",
    "beyond",
    "toward",
    "despite",
    "for every",
    "along with",
    "and",
    "or",
    "but not",
    "even if",
)
CLOSERS = (
    "?",
    "?",
    "?",
    ".",
    "? Keep it short.",
    "? Please be concise.",
    "? Thanks!",
    "? Give an example.",
    "? Use bullet points.",
    "? Explain step by step.",
    "? I am a beginner.",
    " - any advice?",
    "? Answer in two sentences.",
    "? Cite the key idea.",
    "? What would you do?",
)


def _n_words(text: str) -> int:
    return len(re.findall(r"\w+", text))


_OPENERS_UP_TO = {k: tuple(o for o in OPENERS if _n_words(o) <= k) for k in range(1, 9)}

SYSTEMS = (
    "You are a helpful assistant.",
    "You are a concise technical writer.",
    "Answer as a patient teacher.",
    "You are an expert consultant. Be precise.",
    "Reply in plain English without jargon.",
)
FOLLOW_UPS = (
    "And what about",
    "Thanks. Now how would I",
    "Follow-up: what if",
    "Could you also cover",
    "One more thing:",
    "OK, and how do I",
    "Great. Why does",
)
EVAL_OPENERS = (
    "Which of the following best describes",
    "According to the passage, why did",
    "What is the main purpose of",
    "A student observes that",
    "In the experiment described, what caused",
    "Which statement about",
    "Select the option that explains why",
    "What would most likely happen if",
    "Identify the term for",
    "Based on the table, how many",
)
EVAL_WRAPPERS = (
    "Question: {q}",
    "QUESTION: {q}",
    "Q: {q}",
    "Answer the following question.\n{q}",
    "Here is a question from a quiz:  {q}  What is the answer?",
    "{q}\nChoose the best answer.",
    "Please solve:\n\n{q}",
    "{q}",
)

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
SHARES = {"exact": 0.02, "near": 0.05, "related": 0.02, "eval": 0.01, "pii": 0.03}
EVAL_SET_SIZE = 600


@dataclass
class Truth:
    ids: list[str] = field(default_factory=list)  # every record id, in file order
    exact: dict[str, str] = field(default_factory=dict)  # copy id -> original id
    near: dict[str, str] = field(default_factory=dict)  # edited copy id -> original id (5-10% edits)
    related: dict[str, str] = field(default_factory=dict)  # 20-30% edits: not duplicates, one split
    edit_rate: dict[str, float] = field(default_factory=dict)  # near/related copy id -> its edit rate
    eval_items: set[str] = field(default_factory=set)  # ids of examples holding an eval question
    pii: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # id -> [(type, planted string)]

    @property
    def originals(self) -> set[str]:
        return set(self.exact.values()) | set(self.near.values()) | set(self.related.values())

    @property
    def untouched(self) -> set[str]:
        """Ids with nothing planted on them for dedup or decontamination (PII answers included)."""
        planted = set(self.exact) | set(self.near) | set(self.related) | self.eval_items | self.originals
        return set(self.ids) - planted

    def counts(self) -> dict[str, int]:
        return {
            "examples": len(self.ids),
            "exact_copies": len(self.exact),
            "near_duplicates": len(self.near),
            "related_pairs": len(self.related),
            "eval_items": len(self.eval_items),
            "pii_examples": len(self.pii),
            "pii_strings": sum(len(v) for v in self.pii.values()),
            "untouched": len(self.untouched),
        }


# ---- words and text ------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _material() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(vocabulary, paragraphs): 12,000 words found in at least four of the first 8,000 base documents
    (letters only, 3-14 characters; the 300 most common left out as function words), and the prose paragraphs
    of the documents (at least 20 words, 80% of them words of letters, no "@"; no document with tabs, which are
    ChangeLogs and tables), whitespace collapsed."""
    from collections import Counter

    from benchmarks import pretrain_corpus

    docs = pretrain_corpus.base_documents()
    frequency: Counter = Counter()
    for doc in docs[:8_000]:  # document frequency: a word of one man page is not vocabulary
        frequency.update(
            {w.lower() for w in doc["text"].split() if w.isalpha() and w.isascii() and 3 <= len(w) <= 14}
        )
    ranked = [w for w, c in frequency.most_common() if c >= 4]
    vocabulary = tuple(sorted(ranked[300:12_300]))
    paragraphs = []
    for doc in docs:
        if "\t" in doc["text"]:  # ChangeLogs and tables
            continue
        for paragraph in _PARAGRAPH_BREAK.split(doc["text"]):
            words = paragraph.split()
            if len(words) < 20 or "@" in paragraph:
                continue
            if sum(w.strip(".,;:()\"'!?").isalpha() for w in words) >= 0.8 * len(words):
                paragraphs.append(" ".join(words))
    return vocabulary, tuple(paragraphs)


class _Gen:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.vocabulary, self.paragraphs = _material()

    def word(self) -> str:
        return self.rng.choice(self.vocabulary)

    def prompt_body(self, target: int) -> str:
        words: list[str] = []
        while len(words) < target:
            words += self.rng.choice(CONNECTORS).split()
            words += [self.word() for _ in range(self.rng.randint(1, 3))]
        return " ".join(words)

    def prompt(self) -> str:
        """10-40 words, of which the opener and the closer (shared with other prompts) are at most 30%."""
        rng = self.rng
        total = rng.randint(10, 40)
        budget = max(2, int(0.3 * total))
        closer = rng.choice(CLOSERS)
        if _n_words(closer) > budget - 1:
            closer = "?"
        opener = rng.choice(_OPENERS_UP_TO[min(budget - _n_words(closer), 8)])
        text = f"{opener} {self.prompt_body(total - _n_words(opener) - _n_words(closer))}{closer}"
        return text[0].upper() + text[1:]

    def follow_up(self) -> str:
        return f"{self.rng.choice(FOLLOW_UPS)} {self.prompt_body(self.rng.randint(6, 16))}?"

    def answer(self) -> str:
        """``n`` words (30-150): whole prose paragraphs, the last one cut at the n-th word."""
        rng = self.rng
        n = rng.randint(30, 150)
        parts: list[str] = []
        while n > 0:
            words = rng.choice(self.paragraphs).split(" ")
            parts.append(" ".join(words[:n]))
            n -= len(words)
        return "\n\n".join(parts)

    def edit(self, text: str, rate: float) -> str:
        """Edit ``rate`` of the words: substitute, insert after, or delete (at least one edit)."""
        return re.sub(r"  +", " ", edit_words(text, rate, self.rng, self.vocabulary)).strip()

    def eval_question(self) -> str:
        rng = self.rng
        opener = rng.choice(EVAL_OPENERS)
        short = rng.random() < 0.25  # 6-12 words: shorter than the 13-gram, matched whole
        target = (rng.randint(6, 12) if short else rng.randint(14, 40)) - len(opener.split())
        words = self.prompt_body(max(target, 2)).split()[: max(target, 2)]
        return f"{opener} {' '.join(words)}?"

    def reformat(self, question: str) -> str:
        """Light reformatting: case, punctuation, whitespace, a prefix or an instruction around it."""
        rng = self.rng
        q = question
        style = rng.randrange(4)
        if style == 0:
            q = q.lower()
        elif style == 1:
            q = q.upper()
        elif style == 2:
            q = " ".join(w.capitalize() if rng.random() < 0.3 else w for w in q.split())
        if rng.random() < 0.5:
            q = q.rstrip("?") + rng.choice(("", "?!", " ?", "...", ":"))
        if rng.random() < 0.5:
            q = re.sub(r" ", lambda _: rng.choice((" ", " ", "  ", "\n", " \t")), q)
        if rng.random() < 0.3:
            words = q.split(" ")
            i = rng.randrange(len(words))
            words[i] = words[i] + rng.choice((",", ";", " -"))
            q = " ".join(words)
        return rng.choice(EVAL_WRAPPERS).format(q=q)

    # PII, valid by the checksums feedstock.stages.pii gates on; random digits, so each string is unique.
    def email(self) -> str:
        rng = self.rng
        local = f"{self.word()}.{self.word()}{rng.randint(1, 999)}"
        domain = rng.choice(("example.com", "mail.example.org", "corp-mail.net", "gmail.com", "uni.edu"))
        return f"{local}@{domain}"

    def phone(self) -> str:
        rng = self.rng
        d = lambda k: "".join(str(rng.randrange(10)) for _ in range(k))  # noqa: E731
        shape = rng.randrange(3)
        if shape == 0:
            return f"+{rng.choice(('44', '49', '33', '31', '1'))} {rng.randint(10, 99)} {d(4)} {d(4)}"
        if shape == 1:
            return f"({rng.randint(201, 989)}) {rng.randint(200, 999)}-{d(4)}"
        return f"0{rng.randint(20, 99)} {d(3)} {d(4)}"

    def iban(self) -> str:
        rng = self.rng
        country = rng.choice(("DE", "FR", "NL", "GB", "ES"))
        if country == "GB":
            bban = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4))
            bban += "".join(str(rng.randrange(10)) for _ in range(14))
        else:
            bban = "".join(str(rng.randrange(10)) for _ in range(18))
        numeric = "".join(str(int(ch, 36)) for ch in bban + country + "00")
        check = 98 - int(numeric) % 97
        compact = f"{country}{check:02d}{bban}"
        if rng.random() < 0.5:
            return compact
        return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))

    def card(self) -> str:
        rng = self.rng
        prefix = rng.choice(("4", "51", "55", "37", "6011"))
        length = 15 if prefix == "37" else 16
        body = prefix + "".join(str(rng.randrange(10)) for _ in range(length - len(prefix) - 1))
        total = 0
        for i, ch in enumerate(reversed(body + "0")):
            v = int(ch)
            if i % 2:
                v = v * 2 - 9 if v * 2 > 9 else v * 2
            total += v
        number = body + str((10 - total % 10) % 10)
        sep = rng.choice((" ", "-", ""))
        if not sep:
            return number
        if length == 15:
            return sep.join((number[:4], number[4:10], number[10:]))
        return sep.join(number[i : i + 4] for i in range(0, 16, 4))

    def pii_sentence(self) -> tuple[str, str, str]:
        kind = self.rng.choice(("email", "phone", "iban", "credit_card"))
        value = {"email": self.email, "phone": self.phone, "iban": self.iban, "credit_card": self.card}[
            kind
        ]()
        lead = {
            "email": ("Write to", "Contact me at", "Send the file to", "My address is"),
            "phone": ("Call me on", "My number is", "Phone", "Reach the office at"),
            "iban": ("Pay into IBAN", "The account is", "Transfer to", "Our IBAN:"),
            "credit_card": ("Card number", "I paid with", "Charge the card", "Use card"),
        }[kind]
        return kind, value, f"{self.rng.choice(lead)} {value} if anything is unclear."


# ---- the dataset --------------------------------------------------------------------------------------------


def eval_set(seed: int = 7, size: int = EVAL_SET_SIZE) -> list[dict]:
    gen = _Gen(seed)
    return [
        {"id": f"eval-{i:04d}", "question": gen.eval_question(), "answer": gen.answer()} for i in range(size)
    ]


def generate(n: int, seed: int = 0, evals: list[dict] | None = None) -> tuple[list[dict], Truth]:
    """``n`` records (``{"id", "messages"}``), the planted ones shuffled in among the rest, and the truth."""
    gen = _Gen(seed)
    rng = gen.rng
    evals = evals if evals is not None else eval_set()
    truth = Truth()
    counts = {k: round(v * n) for k, v in SHARES.items()}
    n_base = n - counts["exact"] - counts["near"] - counts["related"] - counts["eval"]
    base: list[dict] = []
    for i in range(n_base):
        messages = []
        if rng.random() < 0.10:
            messages.append({"role": "system", "content": rng.choice(SYSTEMS)})
        messages += [
            {"role": "user", "content": gen.prompt()},
            {"role": "assistant", "content": gen.answer()},
        ]
        if rng.random() < 0.15:
            messages += [
                {"role": "user", "content": gen.follow_up()},
                {"role": "assistant", "content": gen.answer()},
            ]
        base.append({"id": f"b{i:07d}", "messages": messages})

    order = list(range(n_base))
    rng.shuffle(order)
    at = 0
    copies: list[dict] = []
    for kind in ("exact", "near", "related"):
        for j in order[at : at + counts[kind]]:
            original = base[j]
            copy_id = f"{kind[0]}{len(copies):07d}"
            if kind == "exact":
                messages = json.loads(json.dumps(original["messages"]))
                truth.exact[copy_id] = original["id"]
            else:
                rate = rng.uniform(0.05, 0.10) if kind == "near" else rng.uniform(0.20, 0.30)
                messages = [
                    {"role": m["role"], "content": gen.edit(m["content"], rate)}
                    if m["role"] == "user"
                    else {
                        "role": m["role"],
                        "content": gen.answer() if m["role"] == "assistant" else m["content"],
                    }
                    for m in original["messages"]
                ]
                (truth.near if kind == "near" else truth.related)[copy_id] = original["id"]
                truth.edit_rate[copy_id] = rate
            copies.append({"id": copy_id, "messages": messages})
        at += counts[kind]
    for j in order[at : at + counts["pii"]]:
        record = base[j]
        planted = []
        for _ in range(rng.randint(1, 3)):
            kind, value, sentence = gen.pii_sentence()
            answer = next(m for m in record["messages"] if m["role"] == "assistant")
            answer["content"] = (
                f"{answer['content']} {sentence}" if rng.random() < 0.5 else f"{sentence} {answer['content']}"
            )
            planted.append((kind, value))
        truth.pii[record["id"]] = planted
    for i in range(counts["eval"]):
        item = evals[rng.randrange(len(evals))]
        record_id = f"v{i:07d}"
        copies.append(
            {
                "id": record_id,
                "messages": [
                    {"role": "user", "content": gen.reformat(item["question"])},
                    {"role": "assistant", "content": gen.answer()},
                ],
            }
        )
        truth.eval_items.add(record_id)
    records = base + copies
    rng.shuffle(records)
    truth.ids = [r["id"] for r in records]
    return records, truth


def write(records: list[dict], folder: Path, per_file: int | None = None) -> list[Path]:
    """JSONL files of ``per_file`` records (default: one file, as a dataset's ``train.jsonl`` usually comes)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    per_file = per_file or max(len(records), 1)
    for k, at in enumerate(range(0, len(records), per_file)):
        path = folder / f"chats-{k:03d}.jsonl"
        with path.open("w", encoding="utf-8") as handle:
            for record in records[at : at + per_file]:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        paths.append(path)
    return paths


def write_eval_set(items: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for item in items:
            handle.write(json.dumps(item, ensure_ascii=False) + "\n")
    return path
