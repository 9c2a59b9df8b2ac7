"""The semantic cache with the real embedding model, on both stores (LanceDB in a lake, a real Redis 7)."""

from __future__ import annotations

import time
import uuid

import pytest

from feedstock.config import Embedding
from feedstock.lake import Lake
from feedstock.rag.embedders import embedder
from feedstock.rag.index import model_version
from feedstock.serving.cache import LakeStore, RedisStore, SemanticCache, invalidate, same_intent

MODEL = model_version(Embedding())


@pytest.fixture(scope="module")
def embed():
    return embedder(Embedding()).embed


@pytest.fixture
def redis_store():
    store = RedisStore("redis://127.0.0.1:6379/0", prefix=f"feedstock-test:{uuid.uuid4().hex}")
    yield store
    store.clear()


@pytest.fixture(params=["lake", "redis"])
def store(request, tmp_path):
    if request.param == "lake":
        return LakeStore(Lake(str(tmp_path / "lake")))
    return request.getfixturevalue("redis_store")


def make(store, embed, grounding=None, threshold=0.9):
    return SemanticCache(store, embed, MODEL, threshold, 3600, grounding=grounding)


def test_a_paraphrase_hits_and_a_reversed_question_does_not(store, embed):
    cache = make(store, embed)
    entry = cache.store_answer(
        "Do I need approval before booking international travel?", "Yes, from your manager."
    )
    hit = cache.lookup("Is approval required before I book international travel?", frozenset())
    assert hit.entry is not None and hit.entry.id == entry.id and hit.reason == "hit"
    assert (
        cache.lookup("do I need approval before booking international travel", frozenset()).reason == "exact"
    )
    reversed_ = cache.lookup("Do I need approval after booking international travel?", frozenset())
    assert reversed_.entry is None and reversed_.reason == "intent:opposite:before/after"
    assert reversed_.similarity > 0.95  # the embedding alone would have served the wrong answer
    assert cache.lookup("How many weeks of parental leave do employees get?", frozenset()).entry is None


def test_access_tags(store, embed):
    cache = make(store, embed)
    cache.store_answer(
        "What is the escalation contact for priority 1 incidents?", "The on-call lead.", ("support",)
    )
    question = "Who is the escalation contact for priority 1 incidents?"
    assert cache.lookup(question, frozenset()).entry is None  # an untagged caller sees only untagged entries
    assert cache.lookup(question, frozenset({"internal"})).entry is None
    assert cache.lookup(question, frozenset({"support", "internal"})).entry is not None


def test_expiry_is_absolute(store, embed):
    cache = make(store, embed)
    now = time.time()
    entry = cache.store_answer(
        "How do I rotate an API key?", "Rotate it in Settings.", now=now, ttl_seconds=60
    )
    assert entry.expires_at == now + 60
    hit = cache.lookup("How can I rotate my API key?", frozenset(), now=now + 59)
    assert hit.entry is not None and hit.entry.expires_at == now + 60  # a hit does not extend it
    assert cache.lookup("How can I rotate my API key?", frozenset(), now=now + 60).entry is None
    assert (
        cache.lookup("How do I rotate an API key?", frozenset(), now=now + 61).entry is None
    )  # exact path too


def test_an_answer_grounded_on_a_changed_document_is_never_served(store, embed):
    current = {"handbook/pto_policy.md": "h1", "handbook/travel.md": "t1"}
    cache = make(store, embed, grounding=lambda: current)
    kept = cache.store_answer(
        "How many PTO days do new employees get?", "20.", grounding={"handbook/pto_policy.md": "h1"}
    )
    cache.store_answer(
        "Do I need approval before booking international travel?",
        "Yes.",
        grounding={"handbook/travel.md": "t1"},
    )
    current["handbook/travel.md"] = (
        "t2"  # edited and released: the lookup sees it before any invalidation ran
    )
    assert cache.lookup("Do I need approval before booking international travel?", frozenset()).entry is None
    assert cache.stats["stale_removed"] == 1  # and removed
    assert cache.lookup("Is approval required before I book international travel?", frozenset()).entry is None
    del current["handbook/pto_policy.md"]  # deleted
    assert invalidate(store, current) == {"entries": 1, "invalidated": 1}
    assert store.load() == [] and kept.id


def test_two_processes_share_a_redis_store(redis_store, embed):
    """Two caches on one Redis (as two service processes): what one stores, the other hits; deletes reach both."""
    one, other = (
        make(redis_store, embed),
        make(RedisStore("redis://127.0.0.1:6379/0", prefix=redis_store.prefix), embed),
    )
    question = "Do I need approval before booking international travel?"
    paraphrase = "Is approval required before I book international travel?"
    assert other.lookup(question, frozenset()).entry is None
    entry = one.store_answer(question, "Yes, from your manager.")
    assert other.lookup(paraphrase, frozenset()).entry.id == entry.id
    one.delete([entry.id], false_hit=True)
    assert other.lookup(paraphrase, frozenset()).entry is None
    assert one.stats["false_hits"] == 1


@pytest.mark.parametrize(
    ("asked", "cached", "rule"),
    [
        ("How can I turn on two-factor authentication?", "How do I enable two-factor authentication?", None),
        (
            "How do I disable two-factor authentication?",
            "How do I enable two-factor authentication?",
            "opposite:enable/disable",
        ),
        (
            "Can we switch from annual to monthly billing?",
            "Can we switch from monthly to annual billing?",
            "direction",
        ),
        (
            "Can I not work remotely from another country?",
            "Can I work remotely from another country?",
            "negation",
        ),
        (
            "What does a blinking red LED on the E200 mean?",
            "What does a blinking red LED on the E100 mean?",
            "entity",
        ),
        ("How do I enable 2FA on my account?", "How do I enable two-factor authentication?", None),
        (
            "Is it possible to move from monthly billing to yearly billing?",
            "Can we switch from monthly to annual billing?",
            None,
        ),
    ],
)
def test_same_intent(asked, cached, rule):
    assert same_intent(asked, cached) == rule
