"""Embedding and reranking providers over real HTTP against our own OpenAI-compatible server."""

from __future__ import annotations

import numpy as np
import pytest

from feedstock.config import ConfigError, Embedding, Rerank, parse_config
from feedstock.rag.embedders import EmbeddingError, embedder
from feedstock.rag.rerank import rerank


def test_openai_compatible_provider_matches_the_local_model(openai_server):
    url = openai_server("ok")
    remote = embedder(Embedding(provider="openai", model="minilm-remote", endpoint=url))
    local = embedder(Embedding())
    texts = ["How many PTO days do new employees get?", "Relay Edge firmware 3.7 fixed the FAN2 alert."]
    a, b = remote.embed(texts), local.embed(texts)
    assert a.shape == (2, 384)
    assert np.allclose((a * b).sum(axis=1), 1.0, atol=1e-3)


@pytest.mark.parametrize("mode", ["error", "slow"])
def test_failing_provider_retries_then_fails_with_one_line(openai_server, mode):
    url = openai_server(mode)
    spec = Embedding(provider="openai", model="m", endpoint=url, retries=2, timeout_s=0.5)
    with pytest.raises(EmbeddingError) as error:
        embedder(spec).embed(["hello"])
    message = str(error.value)
    assert "after 3 attempts" in message and "\n" not in message


def test_bedrock_provider_over_the_invoke_model_api(openai_server, monkeypatch):
    url = openai_server("ok").removesuffix("/v1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    remote = embedder(Embedding(provider="bedrock", model="amazon.titan-embed-text-v2:0", endpoint=url))
    vectors = remote.embed(["Which Relay version added SSO?", "How long is the free trial?"])
    local = embedder(Embedding()).embed(["Which Relay version added SSO?", "How long is the free trial?"])
    assert vectors.shape == (2, 384) and np.allclose((vectors * local).sum(axis=1), 1.0, atol=1e-3)


RETRIEVED = [
    {"chunk_id": "a", "text": "The office kitchen is cleaned on Fridays.", "score": 0.9},
    {"chunk_id": "b", "text": "New employees receive fifteen days of paid leave each year.", "score": 0.8},
    {"chunk_id": "c", "text": "Paid leave requests need manager approval.", "score": 0.7},
]


def test_http_reranker_orders_by_the_endpoints_scores(openai_server):
    spec = Rerank(endpoint=openai_server("ok"), model="rerank-test")
    ranked = rerank(spec, "how many days of paid leave do new employees receive", RETRIEVED, k=2)
    assert [r["chunk_id"] for r in ranked] == ["b", "c"]  # the endpoint's order, not the retrieval's
    assert ranked[0]["retrieval_score"] == 0.8 and ranked[0]["score"] > ranked[1]["score"]
    assert all(r["reranked"] for r in ranked)


def test_a_failing_reranker_keeps_the_retrieval_order(openai_server, caplog):
    spec = Rerank(endpoint=openai_server("error"), model="rerank-test", retries=1, timeout_s=0.5)
    ranked = rerank(spec, "paid leave", RETRIEVED, k=2)
    assert [(r["chunk_id"], r["score"], r["reranked"]) for r in ranked] == [
        ("a", 0.9, False),
        ("b", 0.8, False),
    ]
    assert "rerank with 'rerank-test' failed after 2 attempts (HTTPStatusError" in caplog.text


@pytest.mark.parametrize(
    "rerank, words",
    [
        ({"endpoint": "http://localhost:9/v1"}, "config 'rag.rerank': field 'model'"),
        ({"endpoint": "http://localhost:9/v1", "model": "m", "candidates": 0}, "field 'candidates'"),
        ({"endpoint": "http://localhost:9/v1", "model": "m", "top": 3}, "unknown field 'top'"),
    ],
)
def test_rerank_configuration_is_checked_at_load_time(rerank, words):
    with pytest.raises(ConfigError, match=words):
        parse_config({"lake": "./lake", "sources": [], "rag": {"rerank": rerank}})
