"""The optional reranking stage of search (``rag.rerank``): retrieve more chunks than asked for, let a reranking
model order them, keep the top k.

A provider takes a question and passages and returns one relevance score per passage. ``http`` speaks the rerank
API of Cohere, Jina, vLLM and Infinity (``POST {endpoint}/rerank``); a cross-encoder served by any of them fits
behind it. Reranked results carry the reranker's ``score`` and keep the retrieval's as ``retrieval_score``.

Search stays up when the reranker is down: after its retries the results keep the retrieval order, a warning is
logged, and ``reranked`` is false in them.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from feedstock.config import Rerank
from feedstock.rag.embedders import one_line, with_retries

log = logging.getLogger(__name__)


class Reranker:
    """A question and passages in, one relevance score per passage out (higher is more relevant)."""

    def __init__(self, spec: Rerank):
        self.spec = spec

    def scores(self, query: str, passages: list[str]) -> list[float]:
        raise NotImplementedError


class HttpReranker(Reranker):
    def scores(self, query: str, passages: list[str]) -> list[float]:
        import httpx

        key = os.environ.get(self.spec.api_key_env) if self.spec.api_key_env else None
        response = httpx.post(
            f"{self.spec.endpoint.rstrip('/')}/rerank",
            json={"model": self.spec.model, "query": query, "documents": passages, "top_n": len(passages)},
            headers={"Authorization": f"Bearer {key}"} if key else {},
            timeout=self.spec.timeout_s,
        )
        response.raise_for_status()
        scores: list[float | None] = [None] * len(passages)
        for result in response.json()["results"]:
            scores[int(result["index"])] = float(result["relevance_score"])
        if any(s is None for s in scores):
            raise ValueError(
                f"the reranker scored {sum(s is not None for s in scores)} of {len(passages)} passages"
            )
        return scores  # type: ignore[return-value]


PROVIDERS: dict[str, type[Reranker]] = {"http": HttpReranker}


def reranker(spec: Rerank) -> Reranker:
    return PROVIDERS[spec.provider](spec)


def rerank(spec: Rerank, query: str, results: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """The top ``k`` of ``results`` in the reranker's order; the retrieval's top ``k`` if it fails."""
    if not results:
        return results
    passages = [r["text"] for r in results]
    try:
        scores = with_retries(lambda: reranker(spec).scores(query, passages), spec.retries, delay=0.25)
    except Exception as exc:  # noqa: BLE001 - every provider error is retried, then logged
        log.warning(
            "rerank with %r failed after %s attempts (%s); results keep the retrieval order",
            spec.model,
            spec.retries + 1,
            one_line(exc),
        )
        return [r | {"reranked": False} for r in results[:k]]
    order = sorted(range(len(results)), key=lambda i: -scores[i])[:k]
    return [
        results[i] | {"score": round(scores[i], 4), "retrieval_score": results[i]["score"], "reranked": True}
        for i in order
    ]
