"""The local model on ONNX Runtime: exported from the installed weights, checked against torch, cached."""

from __future__ import annotations

import numpy as np
import pytest

from feedstock.config import Embedding, parse_config
from feedstock.errors import ConfigError, EmbeddingError
from feedstock.rag import onnx
from feedstock.rag.chunking import model_path
from feedstock.rag.embedders import embedder, index_name
from feedstock.rag.index import model_version, query_embedder

TEXTS = [
    "How many days of PTO do new employees get?",
    "Relay Edge firmware 3.7 adds TLS 1.3 and fixes the watchdog reset.",
    "Customer question (billing): I was charged twice.\n\nSupport answer: the duplicate charge is refunded.",
    "é" * 3,
    "word " * 400,  # past max_seq_length: truncated as sentence-transformers truncates
]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FEEDSTOCK_MODELS", str(folder))
        yield folder


@pytest.fixture(scope="module")
def torch_vectors():
    return embedder(Embedding(precision="fp32")).embed(TEXTS)


def test_fp32_export_gives_torchs_vectors_and_is_reused(models, torch_vectors):
    model = embedder(Embedding(runtime="onnx"))
    vectors = model.embed(TEXTS)
    assert vectors.shape == torch_vectors.shape and vectors.dtype == np.float32
    assert np.sum(vectors * torch_vectors, axis=1).min() >= onnx.FP32_MIN_COSINE
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)

    exported = list(models.glob("*/model.onnx"))
    assert len(exported) == 1
    stamp = exported[0].stat().st_mtime_ns
    again = embedder(Embedding(runtime="onnx"))  # the cached file, not a second export
    assert exported[0].stat().st_mtime_ns == stamp
    assert np.array_equal(again.embed(TEXTS[:2]), vectors[:2])
    assert model.embed([]).shape[0] == 0


def test_int8_is_close_but_a_new_model_version(models, torch_vectors):
    vectors = embedder(Embedding(runtime="onnx", quantize="int8")).embed(TEXTS)
    cosines = np.sum(vectors * torch_vectors, axis=1)
    assert cosines.min() >= onnx.INT8_MIN_COSINE and cosines.min() < onnx.FP32_MIN_COSINE
    assert len(list(models.glob("*/model.onnx"))) == 2  # keyed by the quantization
    fp32, int8 = Embedding(runtime="onnx"), Embedding(runtime="onnx", quantize="int8")
    # fp32 keeps the index (same vectors); int8 gets its own (blue/green)
    assert model_version(fp32) == model_version(Embedding()) != model_version(int8)
    assert index_name(fp32) == index_name(Embedding()) != index_name(int8)


def test_queries_run_on_onnx_for_a_torch_index(models, torch_vectors):
    query = query_embedder(Embedding())
    assert query._onnx is not None
    assert np.sum(query.embed(TEXTS) * torch_vectors, axis=1).min() >= onnx.FP32_MIN_COSINE


def test_a_bad_export_is_refused(models, monkeypatch):
    monkeypatch.setattr(onnx, "PROBES", ["short", "a longer probe sentence"])
    monkeypatch.setattr(onnx, "FP32_MIN_COSINE", 1.01)  # no export can reach it
    monkeypatch.setattr(onnx, "EXPORT_VERSION", "test-refused")
    before = sorted(models.glob("*/model.onnx"))
    with pytest.raises(EmbeddingError, match="differs from torch: lowest cosine"):
        onnx.load(model_path("all-MiniLM-L6-v2"))
    assert sorted(models.glob("*/model.onnx")) == before  # nothing cached for the refused export


@pytest.mark.parametrize(
    ("embedding", "message"),
    [
        ({"runtime": "tensorrt"}, "field 'runtime'"),
        ({"quantize": "int8"}, "field 'quantize' needs runtime: onnx"),
        ({"provider": "openai", "runtime": "onnx"}, "apply to the local model"),
        ({"runtime": "onnx", "quantize": "int4"}, "field 'quantize'"),
        ({"precision": "fp16"}, "field 'precision'"),
        ({"runtime": "onnx", "precision": "bf16"}, "field 'precision: bf16' needs runtime: torch"),
        ({"provider": "openai", "precision": "fp32"}, "apply to the local model"),
    ],
)
def test_runtime_options_are_checked_at_load(embedding, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({"lake": "/tmp/lake", "sources": [], "rag": {"embedding": embedding}})
