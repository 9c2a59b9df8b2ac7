"""Decontamination: a document sharing a 13-word n-gram with an evaluation set is dropped."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from feedstock.stages.decontam import Decontaminator
from feedstock.stages.steps import Document

QUESTION = "What is the name of the river that flows through the old capital city of the northern province"
ANSWER = "The answer is the Silverbrook river which rises in the eastern hills"
FILLER = "Yesterday our hiking club walked along the coast and talked about many unrelated things"


@pytest.fixture
def jsonl(tmp_path):
    path = tmp_path / "trivia_qa.jsonl"
    records = [
        {"question": QUESTION, "answer": ANSWER, "text": QUESTION},
        {"question": "Too short to matter", "text": "tiny"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    return path


def check(step: Decontaminator, text: str) -> str | None:
    return step.process(Document("d", "web", text), Counter())


def ngram(text: str, start: int, n: int) -> str:
    return " ".join(text.split()[start : start + n])


def test_document_with_a_13_gram_dropped(jsonl):
    step = Decontaminator([str(jsonl)])
    # case and punctuation differ from the eval set: words are normalized the same way
    text = f"{FILLER}. {ngram(QUESTION, 2, 13).upper()}, {FILLER}"
    assert check(step, text) == "decontamination:trivia_qa"


def test_document_sharing_only_12_words_kept(jsonl):
    step = Decontaminator([str(jsonl)])
    assert check(step, f"{FILLER} {ngram(QUESTION, 2, 12)} {FILLER}") is None
    # two 12-word pieces that are not contiguous in the eval item
    assert check(step, f"{ngram(QUESTION, 0, 12)} banana {ngram(QUESTION, 12, 12)}") is None


def test_short_document_kept(jsonl):
    assert check(Decontaminator([str(jsonl)]), "What is the name of the river") is None


def test_fields_are_joined(jsonl):
    step = Decontaminator([str(jsonl)], fields=["question", "answer"])
    # the 13-gram spans the end of the question and the start of the answer
    bridge = " ".join(QUESTION.split()[-6:] + ANSWER.split()[:7])
    assert check(step, f"{FILLER} {bridge}") == "decontamination:trivia_qa"
    assert check(Decontaminator([str(jsonl)]), f"{FILLER} {bridge}") is None


def test_plain_text_eval_set(tmp_path):
    path = tmp_path / "held_out.txt"
    path.write_text(f"{ANSWER} and joins the sea near the harbour\n\nsome short line\n")
    step = Decontaminator([str(path)])
    assert check(step, f"{FILLER} {ANSWER} and joins the sea") == "decontamination:held_out"
    assert check(step, FILLER) is None


def test_smaller_ngram(tmp_path):
    path = tmp_path / "mini.txt"
    path.write_text("alpha beta gamma delta\n")
    step = Decontaminator([str(path)], ngram=4)
    assert check(step, "x alpha beta gamma delta y") == "decontamination:mini"
    assert check(step, "x alpha beta gamma y delta") is None


def test_first_matching_set_names_the_reason(tmp_path, jsonl):
    other = tmp_path / "other.txt"
    other.write_text("completely different words that never appear in any of the documents here ok\n")
    step = Decontaminator([str(other), str(jsonl)])
    assert check(step, QUESTION) == "decontamination:trivia_qa"
