"""The per-example stages of the fine-tuning feed: format, pii, quality, length, decontamination.

Each is a :class:`~feedstock.stages.steps.Step` over :class:`~feedstock.finetune.records.Example` (the shared
``run_steps`` does the counting), so a reject always carries ``<stage>:<rule>``:

1. :class:`FormatCheck` (``format``): roles are ``system``? then ``user`` and ``assistant`` alternating, ending with
   ``assistant`` (a preference prompt ends with ``user`` and its answers are assistant turns); every content is
   non-empty text and valid UTF-8. Rules: ``no_messages``, ``content_not_text``, ``empty_content``,
   ``invalid_utf8``, ``system_not_first``, ``first_not_user``, ``roles_not_alternating``, ``last_not_assistant``,
   ``prompt_not_ending_with_user``, ``answer_not_one_assistant_turn``. Nothing is repaired.
2. :class:`PiiStep` (``pii``): the pretraining feed's redaction (:func:`feedstock.stages.pii.redact`) on every
   message; never drops.
3. :class:`QualityCheck` (``quality``): ``too_few_tokens``, ``too_many_tokens``, ``response_too_short`` (words),
   ``prompt_equals_response``, ``chosen_equals_rejected``, ``repetition`` (Gopher's repetition rules on the
   answer side).
4. :class:`LengthCheck` (``length``): over ``max_tokens`` is ``length:over_max_tokens``, or, with ``truncate``,
   whole turns are dropped from the end (at a user/assistant boundary) until it fits.
5. :class:`DecontaminationCheck` (``decontamination``): the shared 13-gram check against the eval sets and every
   RAG golden set, over all the example's text.

Token counts come from :func:`count_tokens` (one batch call of the configured tokenizer) and are kept in
``meta["turn_tokens"]``; the quality and length stages read them.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from feedstock.config import Finetune
from feedstock.finetune.records import Example
from feedstock.stages.decontam import Decontaminator
from feedstock.stages.steps import Document, Step

_SPACE = re.compile(r"\s+")


def _invalid_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, e.g. from a JSON "\ud800" escape
        return True
    return False


class FormatCheck(Step):
    stage = "format"

    def process(self, example: Example, stats: Counter) -> str | None:
        rule = self.rule(example)
        return None if rule is None else f"format:{rule}"

    @staticmethod
    def rule(example: Example) -> str | None:
        if not example.messages:
            return "no_messages"
        for turn in example.turns():
            content = turn.get("content")
            if not isinstance(content, str):
                return "content_not_text"
            if not content.strip():
                return "empty_content"
            if _invalid_utf8(content):
                return "invalid_utf8"
        roles = [turn["role"] for turn in example.messages]
        if "system" in roles[1:]:
            return "system_not_first"
        body = roles[1:] if roles[0] == "system" else roles
        if not body or body[0] != "user":
            return "first_not_user"
        if any(role == body[i - 1] for i, role in enumerate(body) if i):
            return "roles_not_alternating"
        if example.kind == "preference":
            if body[-1] != "user":
                return "prompt_not_ending_with_user"
            for answer in (example.chosen, example.rejected):
                if not answer or len(answer) != 1 or answer[0]["role"] != "assistant":
                    return "answer_not_one_assistant_turn"  # what OpenAI's DPO and TRL's pairs hold
        elif body[-1] != "assistant":
            return "last_not_assistant"
        return None


class PiiStep(Step):
    stage = "pii"

    def __init__(self, types: Any = None) -> None:
        from feedstock.stages.pii import _resolve_types

        self.types = _resolve_types(types)

    def process(self, example: Example, stats: Counter) -> str | None:
        from feedstock.stages.pii import redact

        found: Counter = Counter()
        for turn in example.turns():
            turn["content"], counts = redact(turn["content"], self.types)
            found.update(counts)
        for kind, n in found.items():
            stats[f"pii:{kind}"] += n
        example.meta["pii"] = dict(found)
        return None


def count_tokens(examples: list[Example], tokenizer: Any) -> None:
    """Set ``meta["turn_tokens"]`` (per turn, in :meth:`Example.turns` order) with one batch call."""
    texts = [turn["content"] for example in examples for turn in example.turns()]
    counts = iter(len(tokens) for tokens in tokenizer.encode_batch(texts))
    for example in examples:
        example.meta["turn_tokens"] = [next(counts) for _ in example.turns()]


def tokens(example: Example) -> int:
    """The example's tokens: every message; for a pair, the prompt and its longer answer (what one sequence
    of a preference trainer holds)."""
    counts = example.meta["turn_tokens"]
    n = len(example.messages)
    if example.kind == "sft":
        return sum(counts[:n])
    chosen = len(example.chosen or ())
    return sum(counts[:n]) + max(sum(counts[n : n + chosen]), sum(counts[n + chosen :]))


def _normalized(text: str) -> str:
    return _SPACE.sub(" ", text).strip().lower()


class QualityCheck(Step):
    stage = "quality"

    def __init__(self, config: Finetune) -> None:
        from feedstock.stages.quality import GopherRepetitionFilter

        self.q = config.quality
        self.repetition = GopherRepetitionFilter() if self.q.repetition else None

    def process(self, example: Example, stats: Counter) -> str | None:
        rule = self.rule(example)
        return None if rule is None else f"quality:{rule}"

    def rule(self, example: Example) -> str | None:
        q, n = self.q, tokens(example)
        if q.min_tokens is not None and n < q.min_tokens:
            return "too_few_tokens"
        if q.max_tokens is not None and n > q.max_tokens:
            return "too_many_tokens"
        response = example.response_text
        if q.min_response_words is not None and len(response.split()) < q.min_response_words:
            return "response_too_short"
        if q.prompt_equals_response and _normalized(example.prompt_text) == _normalized(response):
            return "prompt_equals_response"
        if example.kind == "preference" and _normalized(response) == _normalized(
            "\n".join(t["content"] for t in example.rejected or ())
        ):
            return "chosen_equals_rejected"
        if self.repetition is not None and self.repetition.filter(Document("", "", response)) is not True:
            return "repetition"
        return None


class LengthCheck(Step):
    stage = "length"

    def __init__(self, max_tokens: int, truncate: bool) -> None:
        self.max_tokens, self.truncate = max_tokens, truncate

    def process(self, example: Example, stats: Counter) -> str | None:
        if tokens(example) <= self.max_tokens:
            return None
        if self.truncate and example.kind == "sft":
            counts, messages = example.meta["turn_tokens"], example.messages
            first = 3 if messages[0]["role"] == "system" else 2  # the first user/assistant pair stays
            end = len(messages)
            while end - 2 >= first and sum(counts[:end]) > self.max_tokens:
                end -= 2  # the format stage made every pair user then assistant
            if sum(counts[:end]) <= self.max_tokens:
                example.messages, example.meta["turn_tokens"] = messages[:end], counts[:end]
                stats["truncated"] += 1
                return None
        return "length:over_max_tokens"


class DecontaminationCheck(Decontaminator):
    """The pretraining decontamination over an example's turns, with short eval items matched from 5 words."""

    def __init__(
        self,
        eval_sets: list[str],
        ngram: int = 13,
        fields: list[str] | None = None,
        min_words: int | None = 5,
    ) -> None:
        super().__init__(eval_sets, ngram, fields, min_words)

    def text_of(self, example: Example) -> str:
        return "\n".join(turn["content"] for turn in example.turns())


def build_checks(config: Finetune, golden_sets: list[str]) -> tuple[list[Step], list[Step]]:
    """The stages before token counting (format, pii) and after it (quality, length, decontamination)."""
    before: list[Step] = [FormatCheck()]
    if config.pii is not None:
        before.append(PiiStep(config.pii.get("types")))
    after: list[Step] = [QualityCheck(config), LengthCheck(config.max_tokens, config.truncate)]
    if config.decontamination is not None:
        options = dict(config.decontamination)
        eval_sets = list(options.pop("eval_sets", [])) + golden_sets
        if eval_sets:
            after.append(DecontaminationCheck(eval_sets, **options))
    return before, after
