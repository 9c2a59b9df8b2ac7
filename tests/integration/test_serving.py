"""``feedstock serve`` over real HTTP (uvicorn on a free port) on a RAG index built by rag_feed with dag.test().

Search parity with the library, access tags, every bad request's 4xx, a release picked up without a restart, and
the cache: a grounded answer hits on a paraphrase, misses on a reversed question, and is gone once its source
document is edited or deleted and rag_feed has run. Then two ``feedstock serve`` processes share a Redis store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
import yaml

from feedstock.config import load_config
from feedstock.lake import Lake
from feedstock.lineage import trace
from feedstock.rag import index
from feedstock.serving.cache import RedisStore
from feedstock.serving.service import create_app
from tests.conftest import _free_port, task_states
from tests.integration.test_rag_feed import ingest_and_refresh, rag_project  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow

TRAVEL = "Do I need approval before booking international travel?"


@contextmanager
def served(app):
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(10)


def store(http, question: str, answer: str, chunk: dict, headers: dict) -> dict:
    """``POST /cache/store`` of an answer grounded on one ``/search`` result; the created entry."""
    body = {"question": question, "answer": answer, "chunk_ids": [chunk["chunk_id"]]}
    response = http.post("/cache/store", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def test_service_search_access_bad_requests_and_cache(rag_project):  # noqa: F811
    raw = yaml.safe_load(rag_project.config.read_text())
    raw["serve"] = {"cache": {"warm": {"source": "tickets", "question": "question", "answer": "answer"}}}
    rag_project.config.write_text(yaml.safe_dump(raw))
    run = ingest_and_refresh(10)
    warmed = run.get_task_instance("refresh_cache").xcom_pull()["warmed"]
    assert warmed > 10  # the sample's resolved tickets
    config, lake = load_config(), Lake(rag_project.lake)
    everyone = {"X-Access-Tags": "internal,support"}
    with served(create_app(config)) as http:
        first = http.get("/healthz").json()["index"]
        assert first["version"] == index.read_pointer(lake)["version"]
        # A resolved ticket's answer, warmed from the warehouse: for callers holding 'support' only.
        ticket = {"question": "how do i restore a single table from vault to yesterday's version"}
        found = http.post("/cache/lookup", json=ticket, headers=everyone).json()
        assert found["hit"] is True and found["answer"].startswith("In Vault Explorer")
        assert list(found["grounding"]) == ["tickets/1004"] and found["access_tags"] == ["support"]
        assert http.post("/cache/lookup", json=ticket).json()["hit"] is False

        # Parity: a caller holding every tag gets exactly what the library (and `feedstock search`) returns.
        for query in ("How many days of PTO do new employees get?", "binlog position not found"):
            served_results = http.post("/search", json={"query": query, "k": 5}, headers=everyone).json()
            assert served_results == index.search(config, lake, query, k=5)

        # Access tags: handbook chunks are 'internal', tickets 'support', products untagged.
        def sources(headers):
            hits = http.post(
                "/search", json={"query": "Relay pricing and billing", "k": 40}, headers=headers
            ).json()
            return {h["doc_id"].split("/")[0] for h in hits}

        assert sources({}) == {"products"}
        assert sources({"X-Access-Tags": "support"}) == {"products", "tickets"}
        assert sources(everyone) == {"products", "tickets", "handbook"}

        # Every bad request gets a 4xx with a one-line reason, never a 500.
        bad = [
            ({"query": ""}, 422),
            ({"query": "x" * 5000}, 400),
            ({"query": "q", "k": 0}, 422),
            ({"query": "q", "k": 1000}, 400),
            ({"query": "q", "filter": "1=1"}, 400),
            ({"query": "q", "source": "handbook' OR '1'='1"}, 400),
            ({"query": "q", "tags": ["x') OR true --"]}, 400),
            ({"query": "q", "mode": "magic"}, 422),
        ]
        for body, status in bad:
            response = http.post("/search", json=body)
            assert response.status_code == status, (body, response.text)
            assert "\n" not in response.json()["error"]
        assert (
            http.post(
                "/search", content=b"{not json", headers={"content-type": "application/json"}
            ).status_code
            == 400
        )
        assert (
            http.post("/search", json={"query": "q"}, headers={"X-Access-Tags": "a b;c"}).status_code == 400
        )

        # The cache: an answer grounded on the travel policy's chunks.
        hits = http.post("/search", json={"query": TRAVEL, "k": 3}, headers=everyone).json()
        travel_doc = hits[0]["doc_id"]
        entry = store(http, TRAVEL, "Yes: your manager approves it first.", hits[0], everyone)
        assert entry["access_tags"] == ["internal"] and travel_doc in entry["grounding"]
        # Lineage: the document's chunks in the released index, and the answer grounded on them.
        held = trace(config, lake, travel_doc)
        assert hits[0]["chunk_id"] in held.rag[0]["chunks"] and held.rag[0]["versions"]
        assert [c["id"] for c in held.cache] == [entry["id"]]
        assert {"bronze.documents.handbook", "rag.index"} <= {t["table"] for t in held.tables}
        paraphrase = {"question": "Is approval required before I book international travel?"}
        assert http.post("/cache/lookup", json=paraphrase, headers=everyone).json()["id"] == entry["id"]
        assert http.post("/cache/lookup", json=paraphrase).json()["hit"] is False  # untagged caller
        reversed_ = http.post(
            "/cache/lookup",
            json={"question": "Do I need approval after booking international travel?"},
            headers=everyone,
        ).json()
        assert reversed_["hit"] is False and reversed_["reason"].startswith("intent:")
        assert (
            http.post(
                "/cache/store", json={"question": "q", "answer": "a", "access_tags": ["secret"]}
            ).status_code
            == 400
        )
        assert http.delete("/cache/nope").status_code == 404

        # Edit the grounding document; rag_feed releases, and its refresh_cache task removes the entry.
        pto = "How many PTO days do new employees get?"
        hits = http.post("/search", json={"query": pto, "k": 10}, headers=everyone).json()
        grounded = next(h for h in hits if h["doc_id"].endswith(".md"))  # a file this test can edit
        store(http, pto, "Twenty days.", grounded, everyone)
        assert http.post("/cache/lookup", json={"question": pto}, headers=everyone).json()["hit"] is True
        path = rag_project.handbook / grounded["doc_id"].split("/", 1)[1]
        path.write_text(path.read_text() + "\n\nFrom 2027, new employees get 25 days.\n")
        run = ingest_and_refresh(11)
        warmed += run.get_task_instance("refresh_cache").xcom_pull()[
            "warmed"
        ]  # tickets resolved since day 10
        assert task_states(run)["refresh_cache[-1]"] == "success"
        deadline = time.monotonic() + 10
        while http.get("/healthz").json()["index"]["version"] == first["version"]:  # picked up, no restart
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert http.post("/cache/lookup", json={"question": pto}, headers=everyone).json()["hit"] is False
        assert (
            http.post("/cache/lookup", json=paraphrase, headers=everyone).json()["hit"] is True
        )  # unchanged

        # A deleted document: the same.
        hits = http.post("/search", json={"query": "parental leave weeks", "k": 1}, headers=everyone).json()
        question = "How many weeks of parental leave do employees get?"
        store(http, question, "16 weeks.", hits[0], everyone)
        assert http.post("/cache/lookup", json={"question": question}, headers=everyone).json()["hit"] is True
        (rag_project.handbook / hits[0]["doc_id"].split("/", 1)[1]).unlink()
        run = ingest_and_refresh(12)
        warmed += run.get_task_instance("refresh_cache").xcom_pull()["warmed"]
        assert (
            http.post("/cache/lookup", json={"question": question}, headers=everyone).json()["hit"] is False
        )

        stats = http.get("/cache/stats").json()
        # every ticket warmed once (a rerun adds only tickets resolved since), and the travel answer
        assert stats["entries"] == warmed + 1 and stats["hits"] >= 4
        metrics = http.get("/metrics").text
        assert 'feedstock_cache_total{outcome="hit"}' in metrics
        assert 'feedstock_request_seconds_bucket{endpoint="/search"' in metrics


def test_two_service_processes_share_a_redis_cache(rag_project, tmp_path):  # noqa: F811
    """`feedstock serve` twice, on one Redis: one stores, the other hits; a key maps to tags."""
    ingest_and_refresh(10)
    raw = yaml.safe_load(rag_project.config.read_text())
    prefix = f"feedstock-test:{uuid.uuid4().hex}"
    raw["serve"] = {
        "api_keys": {"SUPPORT_BOT_KEY": ["support"]},
        "cache": {"store": "redis", "redis_url": "redis://127.0.0.1:6379/0", "redis_prefix": prefix},
    }
    rag_project.config.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "SUPPORT_BOT_KEY": "k-" + uuid.uuid4().hex}
    auth = {"Authorization": f"Bearer {env['SUPPORT_BOT_KEY']}"}
    ports, processes = [_free_port(), _free_port()], []
    try:
        for port in ports:
            config = yaml.safe_load(rag_project.config.read_text())
            config["serve"]["port"] = port
            path = tmp_path / f"serve-{port}.yaml"
            path.write_text(yaml.safe_dump(config))
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "feedstock.cli", "serve"],
                    env={**env, "FEEDSTOCK_CONFIG": str(path)},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        one, other = (httpx.Client(base_url=f"http://127.0.0.1:{p}", timeout=60) for p in ports)
        for client in (one, other):
            deadline = time.monotonic() + 180
            while True:
                try:
                    client.get("/healthz").raise_for_status()
                    break
                except httpx.HTTPError:
                    assert time.monotonic() < deadline, "feedstock serve did not start"
                    time.sleep(0.5)
        assert (
            one.post("/search", json={"query": "refund"}).status_code == 401
        )  # keys configured: no key, no data
        hits = one.post("/search", json={"query": "binlog position not found", "k": 1}, headers=auth).json()
        assert hits[0]["doc_id"].startswith("tickets/")
        question = "Why does a MySQL CDC pipe stop with binlog position not found?"
        stored = store(one, question, "The binlog was purged.", hits[0], auth)
        found = other.post("/cache/lookup", json={"question": question.lower()}, headers=auth).json()
        assert found["hit"] is True and found["id"] == stored["id"]
        # `feedstock search` finds the running service and presents its key (FEEDSTOCK_API_KEY).
        cli = subprocess.run(
            [
                sys.executable,
                "-m",
                "feedstock.cli",
                "search",
                "--json",
                "-k",
                "1",
                "binlog position not found",
            ],
            env={
                **env,
                "FEEDSTOCK_CONFIG": str(tmp_path / f"serve-{ports[0]}.yaml"),
                "FEEDSTOCK_API_KEY": env["SUPPORT_BOT_KEY"],
            },
            capture_output=True,
            text=True,
        )
        assert cli.returncode == 0, cli.stderr
        assert json.loads(cli.stdout) == hits
        refused = subprocess.run(
            [sys.executable, "-m", "feedstock.cli", "search", "refund"],
            env={**env, "FEEDSTOCK_CONFIG": str(tmp_path / f"serve-{ports[0]}.yaml")},
            capture_output=True,
            text=True,
        )
        assert refused.returncode != 0 and "a valid API key is required" in refused.stderr
    finally:
        for process in processes:
            process.terminate()
            process.wait(30)
        RedisStore("redis://127.0.0.1:6379/0", prefix).clear()
