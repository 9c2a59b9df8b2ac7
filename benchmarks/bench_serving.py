"""``feedstock serve``: search and cache latency over real HTTP, and the cache's false hits, hit rate and stale hits.

- **Search at 100k chunks.** A LanceDB table of 100,000 chunks (its vector index built by ``rag_feed``'s own code, and the
  full-text index) is released in a private lake; ``feedstock serve`` runs in uvicorn on a free port.
  One client sends 300 warm queries (p50, p95; the query embedding included), then 4 clients at once (QPS). The
  raw side is the same work in-process without the service: ``SentenceTransformer.encode`` plus LanceDB's search
  with the same filter. Today's CLI without a service (``feedstock search --local``, which loads the model) is
  timed once. Vectors: real MiniLM embeddings of the pairs file's questions plus random unit vectors for the
  rest (embedding 100k real chunks takes 40 minutes here; latency does not depend on what the vectors mean).
- **Cache lookup at 100k entries** (the lake store), p95 over HTTP, the question embedding included.
- **False hits and hit rate, side by side with GPTCache** (0.1.44, its defaults: ``similarity_threshold`` 0.8
  with ``SearchDistanceEvaluation``, SQLite + hnswlib stores) on the held-out half of
  ``include/config/cache_pairs.yaml``: each side caches the held-out questions, then is asked every paraphrase
  and every different question. A hit is right only for a paraphrase and with its own question's answer. GPTCache
  gets the same MiniLM vectors: its default embedding model (an ONNX ALBERT) downloads from the Hub.
- **Stale hits:** 500 grounded entries, half of their documents changed in a new release: hits served from a
  changed document (target 0).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import yaml

from feedstock.config import DEFAULT_CONFIG, Embedding, parse_config
from feedstock.lake import Lake
from feedstock.rag.embedders import embedder
from feedstock.rag.index import Ann, _connect, build_ann, model_version, pointer_uri, visible_to
from feedstock.serving.cache import Entry, LakeStore, _arrow_schema, question_key
from feedstock.serving.calibrate import calibrate, load_pairs, rates, score

ROOT = Path(__file__).resolve().parents[1]
N_CHUNKS = N_ENTRIES = 100_000
DIM = 384


def _unit(n: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _release_index(lake: Lake, real: np.ndarray, texts: list[str]) -> None:
    vectors = np.vstack([real, _unit(N_CHUNKS - len(real), 1)])
    texts = texts + [
        f"synthetic chunk {i} about pipes, billing and appliances" for i in range(N_CHUNKS - len(texts))
    ]
    tags = [[] if i % 3 == 0 else ["internal"] if i % 3 == 1 else ["support"] for i in range(N_CHUNKS)]
    table = pa.table(
        {
            "chunk_id": [f"c{i}" for i in range(N_CHUNKS)],
            "doc_id": [f"bench/doc-{i // 10}" for i in range(N_CHUNKS)],
            "uri": [f"bench/doc-{i // 10}.md" for i in range(N_CHUNKS)],
            "title": ["bench"] * N_CHUNKS,
            "section": [""] * N_CHUNKS,
            "page": pa.array([None] * N_CHUNKS, pa.int32()),
            "text": texts,
            "access_tags": pa.array(tags, pa.list_(pa.string())),
            "doc_hash": [f"h{i // 10}" for i in range(N_CHUNKS)],
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), DIM),
        }
    )
    lance = _connect(lake).create_table("bench_minilm", table)
    lance.create_fts_index("text", replace=True)
    lance.create_scalar_index("access_tags", index_type="LABEL_LIST")
    build_ann(lance)  # the feed's own index, sized by the table
    embedding = dict(Embedding().__dict__)
    lake.write_json(
        pointer_uri(lake), {"table": "bench_minilm", "version": lance.version, "embedding": embedding}
    )


def _cache_entries(lake: Lake, questions: list[str], real: np.ndarray) -> None:
    model = model_version(Embedding())
    now = time.time()
    vectors = np.vstack([real, _unit(N_ENTRIES - len(real), 2)])
    rows = []
    for i in range(N_ENTRIES):
        question = questions[i] if i < len(questions) else f"synthetic question {i}"
        rows.append(
            Entry(
                id=uuid.uuid4().hex,
                key=question_key(question),
                question=question,
                answer=f"answer {i}",
                vector=vectors[i],
                model=model,
                created_at=now,
                expires_at=now + 86_400,
            ).to_row()
        )
    LakeStore(lake)._table(create=True).add(pa.Table.from_pylist(rows, schema=_arrow_schema()))


def _serve(app):
    import uvicorn

    from tests.conftest import _free_port

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    return {"p50_ms": round(statistics.median(ms), 2), "p95_ms": round(ms[int(len(ms) * 0.95) - 1], 2)}


def run() -> dict:
    import httpx

    from feedstock.serving.service import create_app, single_query_threads

    work = Path(tempfile.mkdtemp(prefix="feedstock-bench-serving-"))
    lake = Lake(str(work / "lake"))
    raw_config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw_config["lake"] = lake.root
    config = parse_config(raw_config, base_dir=ROOT)
    model = embedder(Embedding())
    pairs = load_pairs(config.serve.cache.pairs)
    questions = sorted({q for cached, asked, _, _ in pairs for q in (cached, asked)})
    real = model.embed(questions)
    result: dict = {"chunks": N_CHUNKS, "cache_entries": N_ENTRIES}

    start = time.perf_counter()
    _release_index(lake, real, questions)
    calibration = calibrate(lake, config.serve.cache.pairs, model.embed)
    _cache_entries(lake, [c for c, _, _, _ in pairs], real[: len({c for c, _, _, _ in pairs})])
    result["setup_seconds"] = round(time.perf_counter() - start, 1)

    import torch

    threads = torch.get_num_threads()
    single_query_threads()  # as `feedstock serve` runs; restored at the end for the suites after this one
    queries = [asked for _, asked, _, _ in pairs] * 3
    headers = {"X-Access-Tags": "internal"}  # a caller that may not see a third of the chunks
    server, url = _serve(create_app(config, lake))
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            for q in queries[:20]:  # warm up
                http.post("/search", json={"query": q}, headers=headers).raise_for_status()
                http.post("/cache/lookup", json={"question": q}, headers=headers).raise_for_status()
            took = []
            for q in queries[:300]:
                t = time.perf_counter()
                http.post("/search", json={"query": q, "k": 5}, headers=headers).raise_for_status()
                took.append(time.perf_counter() - t)
            result["search_http"] = _percentiles(took)
            took = []
            for q in queries[:300]:
                t = time.perf_counter()
                http.post("/cache/lookup", json={"question": q}, headers=headers).raise_for_status()
                took.append(time.perf_counter() - t)
            result["cache_lookup_http"] = _percentiles(took)

        def client(chunk: list[str]) -> int:
            with httpx.Client(base_url=url, timeout=60) as http:
                for q in chunk:
                    http.post("/search", json={"query": q, "k": 5}, headers=headers).raise_for_status()
            return len(chunk)

        t = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            done = sum(pool.map(client, [queries[i::4][:75] for i in range(4)]))
        result["search_qps_4_clients"] = round(done / (time.perf_counter() - t), 1)
    finally:
        server.should_exit = True

    # The raw libraries doing the same search in-process: the model's encode and LanceDB's query, same filter.
    from feedstock.rag.index import open_released

    _, table = open_released(lake)
    where = visible_to(["internal"], {"internal", "support"})
    ann = Ann(table.count_rows())  # the same index settings as the service
    took = []
    for q in queries[:300]:
        t = time.perf_counter()
        vector = model.embed([q])[0]
        builder = table.search(vector, vector_column_name="vector").metric("cosine")
        ann.tune(builder).where(where, prefilter=True).limit(5).to_list()
        took.append(time.perf_counter() - t)
    result["search_raw_in_process"] = _percentiles(took)
    result["search_http_vs_raw_p50"] = round(
        result["search_http"]["p50_ms"] / result["search_raw_in_process"]["p50_ms"], 2
    )

    t = time.perf_counter()
    cli = subprocess.run(
        [sys.executable, "-m", "feedstock.cli", "search", "--local", queries[0]],
        env={**__import__("os").environ, "FEEDSTOCK_LAKE": lake.root},
        capture_output=True,
        text=True,
    )
    result["cli_without_service_seconds"] = round(time.perf_counter() - t, 2)
    result["cli_ok"] = cli.returncode == 0

    scored = score(pairs, model.embed)
    held_out = [s for s in scored if s["half"] == "held_out"]
    ours = {k: v for k, v in calibration["held_out"].items() if k != "wrong"}
    plain = {k: v for k, v in rates(held_out, 0.8, guard=False).items() if k != "wrong"}
    result["replay"] = _replay(pairs, model, calibration["threshold"], work)
    result["held_out_pairs"] = {
        "calibrated_threshold": calibration["threshold"],
        "ours": ours,
        "plain_cosine_0.8": plain,
    }
    result["stale_hits"] = _stale_hits(work, model)
    torch.set_num_threads(threads)
    return result


def _replay(pairs, model, threshold: float, work: Path) -> dict:
    """Our cache and GPTCache, each holding the held-out cached questions, asked every held-out question."""
    from gptcache import Cache, Config
    from gptcache.adapter.api import get, put
    from gptcache.manager import CacheBase, VectorBase, get_data_manager
    from gptcache.processor.pre import get_prompt
    from gptcache.similarity_evaluation.distance import SearchDistanceEvaluation

    from feedstock.serving.cache import SemanticCache

    held = [(c, a, same) for c, a, same, half in pairs if half == "held_out"]
    cached = sorted({c for c, _, _ in held})
    ours = SemanticCache(
        LakeStore(Lake(str(work / "replay"))), model.embed, model_version(Embedding()), threshold, 3600
    )
    gpt = Cache()
    folder = work / "gptcache"
    folder.mkdir()
    gpt.init(
        pre_embedding_func=get_prompt,  # what gptcache.adapter.api's put/get are documented with
        embedding_func=lambda text, **_: model.embed([text])[0],
        data_manager=get_data_manager(
            CacheBase("sqlite", sql_url=f"sqlite:///{folder / 'cache.db'}"),
            VectorBase("hnswlib", dimension=DIM, index_path=str(folder / "index.bin"), max_elements=1000),
        ),
        similarity_evaluation=SearchDistanceEvaluation(),
        config=Config(similarity_threshold=0.8),  # GPTCache's default
    )
    # GPTCache's hnswlib store returns numpy uint64 ids, which its SQL store (under numpy 2) never matches, so
    # every lookup missed: the ids are handed over as Python ints.
    vectors = gpt.data_manager.v
    search = vectors.search
    vectors.search = lambda data, top_k=-1: [(float(d), int(i)) for d, i in search(data, top_k)]
    for question in cached:
        ours.store_answer(question, question)  # the answer names its question, so a wrong hit shows
        put(question, question, cache_obj=gpt)
    tally = {side: {"right": 0, "wrong": 0, "missed_paraphrases": 0} for side in ("ours", "gptcache")}
    for question, asked, same in held:
        found = ours.lookup(asked, frozenset())
        answers = {"ours": found.entry.answer if found.entry else None, "gptcache": get(asked, cache_obj=gpt)}
        for side, answer in answers.items():
            if answer is None:
                tally[side]["missed_paraphrases"] += same
            elif same and answer == question:
                tally[side]["right"] += 1
            else:
                tally[side]["wrong"] += 1
    paraphrases = sum(same for _, _, same in held)
    for counts in tally.values():
        hits = counts["right"] + counts["wrong"]
        counts["false_hit_rate"] = round(counts["wrong"] / hits, 4) if hits else 0.0
        counts["paraphrase_hit_rate"] = round(counts["right"] / paraphrases, 4)
    return {"cached": len(cached), "asked": len(held), "threshold": threshold, **tally}


def _stale_hits(work: Path, model) -> dict:
    """500 grounded entries; half their documents change: how many answers from changed documents are served."""
    from feedstock.serving.cache import SemanticCache

    current = {f"doc-{i}": "v1" for i in range(500)}
    cache = SemanticCache(
        LakeStore(Lake(str(work / "stale"))),
        model.embed,
        model_version(Embedding()),
        0.9,
        3600,
        lambda: current,
    )
    questions = [
        f"What does section {i} of the deployment guide say about pipe number {i}?" for i in range(500)
    ]
    for i, question in enumerate(questions):
        cache.store_answer(question, f"answer {i}", grounding={f"doc-{i}": "v1"})
    for i in range(0, 500, 2):
        current[f"doc-{i}"] = "v2"
    hits = [hit for q in questions if (hit := cache.lookup(q, frozenset()).entry) is not None]
    served_stale = sum(1 for hit in hits if any(current[d] != h for d, h in hit.grounding.items()))
    return {
        "entries": 500,
        "documents_changed": 250,
        "hits_on_unchanged": len(hits) - served_stale,
        "stale_served": served_stale,
        "target": 0,
    }
