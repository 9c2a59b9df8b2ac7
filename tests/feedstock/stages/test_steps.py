"""run_steps: per-stage in/out counting, drop reasons, and that a dropped document goes no further."""

from __future__ import annotations

from collections import Counter

from feedstock.stages.steps import Document, Drop, Filter, Step, run_steps


class Banned(Filter):
    """Drops documents containing a word; records every document it sees."""

    def __init__(self, stage: str, word: str, rule: str):
        self.stage, self.word, self.rule = stage, word, rule
        self.seen: list[str] = []

    def filter(self, doc: Document) -> bool | str:
        self.seen.append(doc.doc_id)
        return self.rule if self.word in doc.text else True


class Upper(Step):
    stage = "upper"

    def __init__(self):
        self.seen: list[str] = []

    def process(self, doc: Document, stats: Counter) -> str | None:
        self.seen.append(doc.doc_id)
        stats["rewritten"] += 1
        doc.text = doc.text.upper()
        return None


class Falsy(Filter):
    stage = "falsy"

    def filter(self, doc: Document) -> bool | str:
        return False


def docs(*texts: str) -> list[Document]:
    return [Document(f"d{i}", "web", text) for i, text in enumerate(texts)]


def test_consecutive_filters_of_one_stage_count_in_and_out_once():
    steps = [
        Banned("quality", "spam", "spam"),
        Banned("quality", "junk", "junk"),
        Banned("quality", "x", "x"),
    ]
    stats: dict[str, Counter] = {}
    drops: list[Drop] = []
    kept = list(run_steps(docs("good one", "pure spam", "some junk", "fine too"), steps, stats, drops))
    assert [d.doc_id for d in kept] == ["d0", "d3"]
    assert stats["quality"]["in"] == 4
    assert stats["quality"]["out"] == 2
    assert stats["quality"]["dropped:quality:spam"] == 1
    assert stats["quality"]["dropped:quality:junk"] == 1
    assert set(stats) == {"quality"}


def test_separate_stages_count_separately_and_step_counters_are_kept():
    steps = [Banned("a", "spam", "spam"), Upper(), Banned("a", "SPAM", "again")]
    stats: dict[str, Counter] = {}
    kept = list(run_steps(docs("hello", "spam here"), steps, stats, []))
    assert [d.text for d in kept] == ["HELLO"]
    # stage "a" appears twice, not consecutively: each occurrence counts its own in/out
    assert stats["a"]["in"] == 3 and stats["a"]["out"] == 2
    assert stats["upper"] == Counter({"in": 1, "out": 1, "rewritten": 1})


def test_drop_reasons_are_recorded():
    stats: dict[str, Counter] = {}
    drops: list[Drop] = []
    list(run_steps(docs("ok", "spam"), [Banned("quality", "spam", "too_spammy")], stats, drops))
    assert drops == [Drop("d1", "web", "quality", "quality:too_spammy")]


def test_falsy_verdict_becomes_rejected():
    drops: list[Drop] = []
    assert list(run_steps(docs("anything"), [Falsy()], {}, drops)) == []
    assert drops[0].reason == "falsy:rejected"


def test_document_dropped_by_first_step_is_not_seen_by_later_ones():
    first, upper, last = Banned("first", "spam", "spam"), Upper(), Banned("last", "nothing", "never")
    stats: dict[str, Counter] = {}
    drops: list[Drop] = []
    kept = list(run_steps(docs("spam", "ham"), [first, upper, last], stats, drops))
    assert first.seen == ["d0", "d1"]
    assert upper.seen == ["d1"]
    assert last.seen == ["d1"]
    assert [d.doc_id for d in kept] == ["d1"]
    assert [d.doc_id for d in drops] == ["d0"]
    assert stats["first"]["in"] == 2 and stats["first"]["out"] == 1
    assert stats["upper"]["in"] == 1 and stats["last"]["in"] == 1


def test_no_steps_passes_everything_through():
    stats: dict[str, Counter] = {}
    assert [d.doc_id for d in run_steps(docs("a", "b"), [], stats, [])] == ["d0", "d1"]
    assert stats == {}
