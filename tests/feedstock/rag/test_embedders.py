"""The local model on torch in bf16: the same vectors as fp32 within tolerance, so the same index."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from feedstock.config import Embedding
from feedstock.errors import EmbeddingError
from feedstock.rag import embedders
from feedstock.rag.embedders import BF16_MIN_COSINE, embedder, index_name, native_bf16
from feedstock.rag.index import model_version

TEXTS = [
    "How many days of PTO do new employees get?",
    "Relay Edge firmware 3.7 adds TLS 1.3 and fixes the watchdog reset.",
    "Customer question (billing): I was charged twice.\n\nSupport answer: the duplicate charge is refunded.",
    "word " * 400,
]


@pytest.fixture(scope="module")
def fp32():
    model = embedder(Embedding(precision="fp32"))
    assert not model._bf16
    return model.embed(TEXTS)


def test_bf16_gives_fp32s_vectors_within_tolerance_and_keeps_the_index(fp32):
    model = embedder(Embedding(precision="bf16"))
    assert model._bf16
    vectors = model.embed(TEXTS)
    assert vectors.dtype == np.float32 and vectors.shape == fp32.shape
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-6)
    cosines = np.sum(vectors * fp32, axis=1)
    assert cosines.min() >= BF16_MIN_COSINE
    assert not np.array_equal(vectors, fp32)  # really computed in bf16
    bf16 = Embedding(precision="bf16")
    assert model_version(bf16) == model_version(Embedding(precision="fp32")) == model_version(Embedding())
    assert index_name(bf16) == index_name(Embedding())


def test_auto_uses_bf16_only_where_the_cpu_computes_it():
    assert embedder(Embedding())._bf16 == native_bf16()


def test_bf16_too_far_from_fp32_is_refused_or_falls_back(monkeypatch, caplog, fp32):
    monkeypatch.setattr(embedders, "BF16_MIN_COSINE", 1.01)  # no bf16 run can reach it
    with pytest.raises(EmbeddingError, match="in bf16 differs from fp32: lowest cosine"):
        embedder(Embedding(precision="bf16"))
    monkeypatch.setattr(embedders, "native_bf16", lambda: True)
    with caplog.at_level(logging.WARNING, logger="feedstock.rag.embedders"):
        model = embedder(Embedding())
    assert not model._bf16 and "embedding in fp32" in caplog.text
    assert np.array_equal(model.embed(TEXTS), fp32)
