"""``feedstock serve``: the search API and the semantic cache, one long-running FastAPI app.

- The embedding model loads once, at start-up. The app follows ``rag/CURRENT.json`` (every ``serve.poll_seconds``)
  and swaps in a new :class:`View` (table version, query model, document hashes) as one reference, so a request
  sees either the old release or the new one, never a mix; a blue/green model switch loads the new model first.
- Access tags are enforced on search and on the cache: a caller sees only what carries tags it holds. Its tags
  come from its API key (``serve.api_keys``) or, when no keys are configured, from the ``X-Access-Tags`` header.
- A bad request gets a 4xx and a one-line ``{"error": ...}``; filters are bound values (see
  :func:`feedstock.rag.index.search_filter`), never text pasted into a filter expression.

Endpoints: ``POST /search``, ``POST /cache/lookup``, ``POST /cache/store``, ``DELETE /cache/{id}``,
``GET /cache/stats``, ``GET /healthz``, ``GET /metrics`` (Prometheus text).
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field

from feedstock.config import Config
from feedstock.errors import IndexNotReady
from feedstock.lake import Lake

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class View:
    """One released index as the service reads it: swapped whole when a release lands."""

    pointer: dict[str, Any]
    table: Any
    embed: Any
    documents: dict[str, str]  # doc_id -> content hash of the released version (the cache's grounding check)
    chunks: dict[str, tuple[str, str, tuple[str, ...]]]  # chunk_id -> (doc_id, content hash, access tags)
    tags: frozenset[str]  # every access tag the index carries


class Index:
    """Follows ``rag/CURRENT.json``; :meth:`view` returns the current :class:`View` (or raises IndexNotReady)."""

    def __init__(self, config: Config, lake: Lake):
        self.config, self.lake = config, lake
        self.poll = config.serve.poll_seconds
        self._view: View | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def view(self) -> View:
        if time.monotonic() - self._checked >= self.poll:
            with self._lock:
                if time.monotonic() - self._checked >= self.poll:
                    self._refresh()
                    self._checked = time.monotonic()
        if self._view is None:
            raise IndexNotReady("the RAG index has not been built yet: run the rag_feed DAG first")
        return self._view

    def _refresh(self) -> None:
        from feedstock.rag.index import (
            chunk_map,
            open_released,
            pointer_embedding,
            query_embedder,
            read_pointer,
        )
        from feedstock.serving.cache import documents_of

        pointer = read_pointer(self.lake)
        current = self._view.pointer if self._view else None
        if pointer is None or pointer.get("version") is None or _same_release(pointer, current):
            return
        pointer, table = open_released(self.lake, pointer)
        spec = pointer_embedding(self.config, pointer)
        chunks = chunk_map(table)
        self._view = View(
            pointer=pointer,
            table=table,
            embed=query_embedder(spec).embed,  # a blue/green switch loads the new model before the swap
            documents=documents_of(chunks),
            chunks=chunks,
            tags=frozenset(t for _, _, tags in chunks.values() for t in tags),
        )
        log.info("serving %s version %s (%d chunks)", pointer["table"], pointer["version"], len(chunks))


def _same_release(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    return a is not None and b is not None and (a["table"], a["version"]) == (b["table"], b["version"])


# ---- requests -------------------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class SearchRequest(_Strict):
    query: str = Field(min_length=1)
    k: int = Field(default=5, ge=1)
    source: str | None = None
    tags: list[str] = Field(default_factory=list)  # only chunks that carry every one of these tags
    mode: Literal["vector", "fts", "hybrid"] | None = None  # rag.search_mode when not given


class LookupRequest(_Strict):
    question: str = Field(min_length=1)


class StoreRequest(_Strict):
    question: str = Field(min_length=1)
    answer: str = Field(min_length=1)
    chunk_ids: list[str] = Field(default_factory=list)  # the /search results the answer was built from
    access_tags: list[str] = Field(default_factory=list)
    ttl_seconds: int | None = Field(default=None, ge=1)


class BadRequest(ValueError):
    """A request the service understood but refuses, in one line (400)."""


# ---- the app --------------------------------------------------------------------------------------------


def create_app(config: Config, lake: Lake | None = None, cache_store=None):
    """The FastAPI app; ``cache_store`` overrides the configured store (tests)."""
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, PlainTextResponse
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    from feedstock.config import Embedding
    from feedstock.rag.index import (
        Ann,
        SearchFilterError,
        model_version,
        query_embedder,
        search_filter,
        search_table,
        visible_to,
    )
    from feedstock.serving import cache as cache_module

    lake = lake or Lake(config.lake)
    serve = config.serve
    registry = CollectorRegistry()
    requests = Counter(
        "feedstock_requests", "Requests by endpoint and status", ["endpoint", "status"], registry=registry
    )
    latency = Histogram(
        "feedstock_request_seconds",
        "Request latency by endpoint",
        ["endpoint"],
        buckets=(0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        registry=registry,
    )
    cache_events = Counter(
        "feedstock_cache", "Cache lookups by outcome, and false hits reported", ["outcome"], registry=registry
    )

    spec: Embedding = config.rag.embedding
    model = model_version(spec)
    embed = query_embedder(spec).embed  # the model loads once, here
    embed(["warm up"])
    index = Index(config, lake)
    store = cache_store or cache_module.open_store(config, lake)
    threshold = serve.cache.threshold or calibrated_threshold(lake)

    def grounding():
        try:
            return index.view().documents
        except IndexNotReady:
            return None

    cache = cache_module.SemanticCache(
        store, embed, model, threshold, serve.cache.ttl_seconds, grounding=grounding
    )
    keys = {env: frozenset(tags) for env, tags in serve.api_keys.items()}

    app = FastAPI(title="feedstock", docs_url=None, redoc_url=None)
    app.state.cache, app.state.index = cache, index

    def caller_tags(request: Request) -> frozenset[str]:
        if keys:
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            for env, tags in keys.items():
                secret = os.environ.get(env)
                if secret and given and hmac.compare_digest(secret, given):
                    return tags
            raise PermissionError("a valid API key is required (Authorization: Bearer <key>)")
        header = request.headers.get("x-access-tags", "")
        tags = frozenset(t.strip() for t in header.split(",") if t.strip())
        visible_to(sorted(tags), ())  # checks each tag's form
        return tags

    def check_query(text: str, what: str) -> None:
        if len(text) > serve.max_query_chars:
            raise BadRequest(f"{what} is {len(text):,} characters; the limit is {serve.max_query_chars:,}")

    @app.middleware("http")
    async def measure(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        endpoint = getattr(route, "path", "unmatched")
        latency.labels(endpoint).observe(time.perf_counter() - start)
        requests.labels(endpoint, str(response.status_code)).inc()
        return response

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0]
        if first.get("type") == "json_invalid":
            return error(400, "the body is not valid JSON")
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        if first.get("type") == "extra_forbidden":
            return error(400, f"unknown field '{where}'")
        return error(422, f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(BadRequest)
    @app.exception_handler(SearchFilterError)
    async def bad(request: Request, exc: Exception):
        return error(400, str(exc).splitlines()[0])

    @app.exception_handler(PermissionError)
    async def forbidden(request: Request, exc: PermissionError):
        return error(401, str(exc))

    @app.exception_handler(IndexNotReady)
    async def not_ready(request: Request, exc: IndexNotReady):
        return error(503, str(exc))

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        try:
            view = index.view()
            return {
                "status": "ok",
                "index": {"table": view.pointer["table"], "version": view.pointer["version"]},
            }
        except IndexNotReady as exc:
            return {"status": "ok", "index": None, "detail": str(exc)}

    @app.get("/metrics")
    def metrics():
        return PlainTextResponse(generate_latest(registry).decode(), media_type="text/plain; version=0.0.4")

    @app.post("/search")
    def search(body: SearchRequest, request: Request) -> list[dict[str, Any]]:
        tags = caller_tags(request)
        check_query(body.query, "query")
        if body.k > serve.max_k:
            raise BadRequest(f"k must be at most {serve.max_k}, got {body.k}")
        filters = search_filter(body.source, body.tags)
        view = index.view()
        where = " AND ".join(w for w in (filters, visible_to(sorted(tags), view.tags)) if w) or None
        ann = Ann(len(view.chunks))  # the index's settings follow its size, which the view already counted
        return search_table(
            view.table,
            view.embed,
            body.query,
            body.k,
            where,
            body.mode or config.rag.search_mode,
            ann,
            rerank=config.rag.rerank,
        )

    @app.post("/cache/lookup")
    def lookup(body: LookupRequest, request: Request) -> dict[str, Any]:
        tags = caller_tags(request)
        check_query(body.question, "question")
        found = cache.lookup(body.question, tags)
        cache_events.labels("hit" if found.entry else "miss").inc()
        if found.entry is None:
            return {"hit": False, "reason": found.reason, "similarity": found.similarity}
        return {
            "hit": True,
            "reason": found.reason,
            "similarity": round(found.similarity, 4),
            **found.entry.public(),
        }

    @app.post("/cache/store", status_code=201)
    def store_answer(body: StoreRequest, request: Request) -> dict[str, Any]:
        tags = caller_tags(request)
        check_query(body.question, "question")
        visible_to(body.access_tags, ())  # checks each tag's form
        view = index.view() if body.chunk_ids else None
        grounding: dict[str, str] = {}
        entry_tags = set(body.access_tags)
        for chunk_id in body.chunk_ids:
            if chunk_id not in view.chunks:
                raise BadRequest(f"chunk {chunk_id!r} is not in the released index")
            doc_id, doc_hash, chunk_tags = view.chunks[chunk_id]
            if not set(chunk_tags) <= tags:
                raise BadRequest(f"chunk {chunk_id!r} is not visible to this caller")
            grounding[doc_id] = doc_hash
            entry_tags |= set(chunk_tags)  # an answer is as restricted as what it was built from
        if not entry_tags <= tags:
            raise BadRequest("an entry cannot carry access tags its caller does not hold")
        entry = cache.store_answer(
            body.question, body.answer, tuple(entry_tags), tuple(body.chunk_ids), grounding, body.ttl_seconds
        )
        return entry.public()

    @app.delete("/cache/{entry_id}")
    def delete(entry_id: str, request: Request, false_hit: bool = False) -> dict[str, Any]:
        tags = caller_tags(request)
        entry = cache.entry(entry_id)
        if entry is None or not cache_module.visible(entry.access_tags, tags):
            return error(404, f"no cache entry {entry_id!r}")
        cache.delete([entry_id], false_hit=false_hit)
        if false_hit:
            cache_events.labels("false_hit").inc()
        return {"deleted": entry_id}

    @app.get("/cache/stats")
    def stats() -> dict[str, Any]:
        return {**cache.stats, "entries": len(cache.entries()), "threshold": cache.threshold}

    return app


def calibrated_threshold(lake: Lake) -> float:
    """The calibrated threshold (``rag/cache/calibration.json``), or 0.9 before calibration."""
    from feedstock.serving.calibrate import read_threshold

    return read_threshold(lake) or 0.9


def single_query_threads() -> None:
    """One query is too little work to split across threads: one intra-op thread per request answers it faster
    (MiniLM: 30 ms against 79 ms on a busy 2-core machine), and concurrent requests, in FastAPI's thread pool,
    use the cores."""
    import torch

    torch.set_num_threads(1)


def run(config: Config, host: str | None = None, port: int | None = None) -> None:
    """Serve until interrupted (``feedstock serve``)."""
    import uvicorn

    single_query_threads()
    app = create_app(config)
    uvicorn.run(app, host=host or config.serve.host, port=port or config.serve.port, log_level="info")
