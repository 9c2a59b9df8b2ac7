"""``feedstock search`` through a running ``feedstock serve``: the warm model answers in milliseconds."""

from __future__ import annotations

import argparse
import os
from typing import Any

from feedstock.config import Config


def service_url(config: Config) -> str:
    return (config.serve.url or f"http://{config.serve.host}:{config.serve.port}").rstrip("/")


def service_search(config: Config, args: argparse.Namespace) -> list[dict[str, Any]] | None:
    """The service's answer to the CLI's query, or None when no service answers (the CLI then searches itself).

    A refusal by the service (a bad filter, a missing key) is raised as a one-line ValueError, not retried
    locally: the service's access rules hold for whoever asks through it.
    """
    import httpx

    url = service_url(config)
    try:
        httpx.get(f"{url}/healthz", timeout=2.0).raise_for_status()  # refused at once when down
    except httpx.HTTPError:
        return None
    headers = {"X-Access-Tags": args.access} if args.access else {}
    if key := os.environ.get("FEEDSTOCK_API_KEY"):
        headers["Authorization"] = f"Bearer {key}"
    body = {"query": args.question, "k": args.k, "mode": args.mode, "tags": args.tag or []}
    if args.mode is None:
        del body["mode"]  # the service's rag.search_mode
    if args.source:
        body["source"] = args.source
    response = httpx.post(f"{url}/search", json=body, headers=headers, timeout=60)
    if response.status_code >= 400:
        raise ValueError(f"feedstock serve at {url}: {response.json().get('error', response.text)}")
    return response.json()
