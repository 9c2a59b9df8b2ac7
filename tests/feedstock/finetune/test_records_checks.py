"""Reading each schema into the canonical form, and the per-example stages' exact reasons."""

from __future__ import annotations

import gzip
import json
from collections import Counter

import pytest

from feedstock.config import DatasetSource, Finetune, FinetuneQuality
from feedstock.finetune.checks import (
    DecontaminationCheck,
    FormatCheck,
    LengthCheck,
    PiiStep,
    QualityCheck,
    count_tokens,
)
from feedstock.finetune.records import Example, RecordError, make_example, parse_record, read_file
from feedstock.finetune.review import tasks, verdict
from feedstock.lake import Lake
from feedstock.stages.steps import Drop, run_steps
from feedstock.stages.tokenizers import load_tokenizer

U, A, S = "user", "assistant", "system"


def msgs(*turns: tuple[str, str]) -> list[dict]:
    return [{"role": r, "content": c} for r, c in turns]


@pytest.mark.parametrize(
    ("schema", "record", "names", "expected"),
    [
        ("messages", {"messages": msgs((U, "q"), (A, "a"))}, {}, (msgs((U, "q"), (A, "a")), None, None)),
        (
            "sharegpt",
            {
                "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}],
                "system": "s",
            },
            {},
            (msgs((S, "s"), (U, "q"), (A, "a")), None, None),
        ),
        (
            "alpaca",
            {"instruction": "Translate", "input": "bonjour", "output": "hello"},
            {},
            (msgs((U, "Translate\n\nbonjour"), (A, "hello")), None, None),
        ),
        (
            "alpaca",
            {"instruction": "Say hi", "input": "", "output": "hi"},
            {},
            (msgs((U, "Say hi"), (A, "hi")), None, None),
        ),
        (
            "prompt_response",
            {"question": "q", "answer": "a"},
            {"prompt": "question", "response": "answer"},
            (msgs((U, "q"), (A, "a")), None, None),
        ),
        (
            "preference",
            {"prompt": "q", "chosen": "good", "rejected": msgs((A, "bad"))},
            {},
            (msgs((U, "q")), msgs((A, "good")), msgs((A, "bad"))),
        ),
    ],
)
def test_every_schema_reads_into_the_canonical_form(schema, record, names, expected):
    assert parse_record(record, schema, names) == expected


@pytest.mark.parametrize(
    ("schema", "record", "rule"),
    [
        ("messages", {"conversations": []}, "missing_field"),
        ("messages", {"messages": "hello"}, "messages_not_a_list"),
        ("messages", {"messages": [{"role": "bot", "content": "x"}]}, "unknown_role"),
        ("sharegpt", {"conversations": [{"from": "robot", "value": "x"}]}, "unknown_role"),
        ("alpaca", {"instruction": "x"}, "missing_field"),
        ("messages", ["not", "a", "dict"], "invalid_json"),
    ],
)
def test_unreadable_records_are_named_not_repaired(schema, record, rule):
    with pytest.raises(RecordError, match=rule):
        parse_record(record, schema, {})


def test_example_id_follows_the_content():
    one = make_example("s", "s/1", msgs((U, "q"), (A, "a")))
    assert one.doc_id == make_example("s", "s/1", msgs((U, "q"), (A, "a"))).doc_id
    assert one.doc_id != make_example("s", "s/1", msgs((U, "q"), (A, "changed"))).doc_id
    assert (
        one.kind == "sft"
        and make_example("s", "s/2", msgs((U, "q")), msgs((A, "a")), msgs((A, "b"))).kind == "preference"
    )


def test_files_read_in_every_container_with_line_ids(tmp_path):
    lines = [
        json.dumps({"id": "a", "messages": msgs((U, "q"), (A, "r"))}),
        "{broken",
        "",
        json.dumps({"messages": msgs((U, "x"), (A, "y"))}),
    ]
    (tmp_path / "plain.jsonl").write_text("\n".join(lines) + "\n")
    with gzip.open(tmp_path / "packed.jsonl.gz", "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    (tmp_path / "array.json").write_text(json.dumps([json.loads(lines[0])]))
    source = DatasetSource(name="chats", uri=str(tmp_path))
    lake = Lake(str(tmp_path / "lake"))
    for name, expected in (("plain.jsonl", 3), ("packed.jsonl.gz", 3), ("array.json", 1)):
        items = [
            i
            for batch in read_file(source, {"uri": str(tmp_path / name), "relative": name}, lake, 2)
            for i in batch
        ]
        assert len(items) == expected, name
        assert items[0].record_id == "chats/a"
        if expected == 3:
            assert isinstance(items[1], Drop) and items[1].reason == "format:invalid_json"
            assert items[1].doc_id == f"chats/{name}@2"
            assert items[2].record_id == f"chats/{name}@4"  # no id field: the file and line


def check(example: Example) -> str | None:
    return FormatCheck().process(example, Counter())


@pytest.mark.parametrize(
    ("messages", "reason"),
    [
        (msgs((U, "q"), (A, "a")), None),
        (msgs((S, "s"), (U, "q"), (A, "a"), (U, "q2"), (A, "a2")), None),
        ([], "format:no_messages"),
        (msgs((U, "q"), (U, "q again"), (A, "a")), "format:roles_not_alternating"),
        (msgs((U, "q"), (A, "  ")), "format:empty_content"),
        (msgs((U, "q"), (A, "a"), (U, "more?")), "format:last_not_assistant"),
        (msgs((A, "hi"), (U, "q"), (A, "a")), "format:first_not_user"),
        (msgs((U, "q"), (S, "s"), (A, "a")), "format:system_not_first"),
        (msgs((U, "q"), (A, "bad \ud800 surrogate")), "format:invalid_utf8"),
        ([{"role": U, "content": 42}, {"role": A, "content": "a"}], "format:content_not_text"),
    ],
)
def test_format_rules(messages, reason):
    assert check(Example("e", "s", "s/1", messages)) == reason


def test_preference_format_rules():
    good = Example("e", "s", "s/1", msgs((U, "q")), msgs((A, "yes")), msgs((A, "no")))
    assert check(good) is None
    two_turns = Example("e", "s", "s/1", msgs((U, "q")), msgs((A, "yes"), (A, "and more")), msgs((A, "no")))
    assert check(two_turns) == "format:answer_not_one_assistant_turn"
    assert check(Example("e", "s", "s/1", msgs((U, "q"), (A, "x")), msgs((A, "y")), msgs((A, "n")))) == (
        "format:prompt_not_ending_with_user"
    )
    assert (
        check(Example("e", "s", "s/1", msgs((U, "q")), msgs((U, "y")), msgs((A, "n"))))
        == "format:answer_not_one_assistant_turn"
    )


def test_pii_is_redacted_in_every_turn_and_counted():
    example = Example(
        "e",
        "s",
        "s/1",
        msgs((U, "mail me at ann@example.com")),
        msgs((A, "call +1 415 555 0142")),
        msgs((A, "no")),
    )
    stats: Counter = Counter()
    assert PiiStep().process(example, stats) is None
    assert example.messages[0]["content"] == "mail me at <EMAIL>"
    assert "<PHONE>" in example.chosen[0]["content"]
    assert stats["pii:email"] == 1 and stats["pii:phone"] == 1


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer({"kind": "tiktoken", "name": "cl100k_base"})


def quality(example: Example, tokenizer, **options) -> str | None:
    count_tokens([example], tokenizer)
    return QualityCheck(Finetune(quality=FinetuneQuality(**options))).process(example, Counter())


ANSWER = "Open the settings page, choose API keys and click rotate; the old key works for one more day."


@pytest.mark.parametrize(
    ("messages", "options", "reason"),
    [
        (msgs((U, "How do I rotate a key?"), (A, ANSWER)), {}, None),
        (msgs((U, "Hi"), (A, "Hello there friend")), {}, "quality:too_few_tokens"),
        (msgs((U, "Is it on?"), (A, "Yes.")), {"min_tokens": 2}, "quality:response_too_short"),
        (msgs((U, ANSWER), (A, ANSWER.upper())), {}, "quality:prompt_equals_response"),
        (
            msgs((U, "List the steps"), (A, "\n".join(["Click reset and wait for the pipe."] * 10))),
            {},
            "quality:repetition",
        ),
        (msgs((U, "How do I rotate a key?"), (A, ANSWER)), {"max_tokens": 10}, "quality:too_many_tokens"),
        (msgs((U, "Hi"), (A, "Hello there friend")), {"min_tokens": None}, None),  # a rule switched off
    ],
)
def test_quality_rules(tokenizer, messages, options, reason):
    assert quality(Example("e", "s", "s/1", messages), tokenizer, **options) == reason


def test_chosen_equal_to_rejected_is_a_quality_reject(tokenizer):
    pair = Example(
        "e", "s", "s/1", msgs((U, "Does it support Oracle?")), msgs((A, ANSWER)), msgs((A, ANSWER))
    )
    assert quality(pair, tokenizer) == "quality:chosen_equals_rejected"


def test_length_rejects_or_truncates_at_a_turn_boundary(tokenizer):
    long = " ".join(["word"] * 300)
    messages = msgs((S, "be brief"), (U, "first question"), (A, "first answer"), (U, "second"), (A, long))
    example = Example("e", "s", "s/1", messages)
    count_tokens([example], tokenizer)
    assert LengthCheck(100, truncate=False).process(example, Counter()) == "length:over_max_tokens"
    stats: Counter = Counter()
    assert LengthCheck(100, truncate=True).process(example, stats) is None
    assert [m["role"] for m in example.messages] == [S, U, A] and stats["truncated"] == 1
    alone = Example("e", "s", "s/1", msgs((U, "q"), (A, long)))
    count_tokens([alone], tokenizer)
    assert LengthCheck(100, truncate=True).process(alone, Counter()) == "length:over_max_tokens"


def test_decontamination_matches_golden_questions_whole_and_long_items_by_13_grams(tmp_path):
    golden = tmp_path / "golden.yaml"
    golden.write_text("- question: How many days of PTO do new employees get?\n  expected_doc_id: x\n")
    evals = tmp_path / "mmlu.jsonl"
    long_item = "Which of the following statements about the mitochondrial electron transport chain in eukaryotic cells is correct"
    evals.write_text(json.dumps({"question": long_item}) + "\n")
    step = DecontaminationCheck([str(golden), str(evals)], fields=["question"])

    def reason(prompt: str) -> str | None:
        return step.process(Example("e", "s", "s/1", msgs((U, prompt), (A, "An answer."))), Counter())

    assert reason("QUESTION: how many days of PTO do new employees get ?") == "decontamination:golden"
    assert reason(f"Please help. {long_item.lower()}! Thanks") == "decontamination:mmlu"
    assert reason("How many days of vacation do new hires get?") is None
    assert reason(" ".join(long_item.split()[:12])) is None  # 12 words of a long item are not a match


def test_run_steps_counts_every_stage_and_keeps_the_reasons(tokenizer):
    examples = [
        make_example("s", "s/1", msgs((U, "How do I rotate a key?"), (A, ANSWER))),
        make_example("s", "s/2", msgs((U, "q"), (U, "q"), (A, ANSWER))),
    ]
    stats: dict = {}
    drops: list = []
    kept = list(run_steps(examples, [FormatCheck(), PiiStep()], stats, drops))
    assert [e.record_id for e in kept] == ["s/1"]
    assert [d.reason for d in drops] == ["format:roles_not_alternating"]
    assert stats["format"]["in"] == 2 and stats["format"]["out"] == 1


def test_label_studio_round_trip():
    written = tasks(
        [{"prompt": "q", "response": "a"}, {"id": "x", "prompt": "q", "answer1": "a", "answer2": "b"}]
    )
    assert written[0]["data"] == {"id": 1, "prompt": "q", "response": "a"} and written[1]["id"] == "x"
    accepted = {
        **written[0],
        "annotations": [{"result": [{"type": "choices", "value": {"choices": ["accept"]}}]}],
    }
    cancelled = {
        **written[0],
        "annotations": [
            {"was_cancelled": True, "result": [{"type": "choices", "value": {"choices": ["accept"]}}]}
        ],
    }
    ranked = {
        **written[1],
        "annotations": [{"result": [{"type": "pairwise", "value": {"selected": "right"}}]}],
    }
    assert verdict(accepted) == "accept"
    assert verdict(cancelled) == "not_reviewed"
    assert verdict(ranked) == "right"
