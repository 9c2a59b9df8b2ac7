"""Embedding providers over real HTTP against our own OpenAI-compatible server."""

from __future__ import annotations

import numpy as np
import pytest

from feedstock.config import Embedding
from feedstock.rag.embedders import EmbeddingError, embedder


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
