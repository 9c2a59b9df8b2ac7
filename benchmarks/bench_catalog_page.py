"""The Feeds page's server time on a lake with 1,000 dataset versions, against deltalake reading the same logs.

A lake of 10 tables of 100 commits each (1,000 versions; ``rag.index`` among them, with recall in its commit
stats, so the recall chart has 100 points). The page is :func:`feedstock.catalog_page.page`, as the plugin serves
it; the raw baseline opens each table with ``deltalake`` and reads its newest commit, its file actions and its
whole history, which is the information the page shows. Target: under 1 s.
"""

from __future__ import annotations

import json
import tempfile
import time

import pyarrow as pa

TABLES = [
    "bronze.documents.handbook",
    "bronze.documents.wiki",
    "bronze.warehouse.tickets",
    "bronze.warehouse.products",
    "rag.index",
    "pretrain.release",
    "pretrain.documents",
    "finetune.release",
    "finetune.examples",
    "governance.forget_receipts",
]


def run(commits_per_table: int = 100) -> dict:
    from deltalake import DeltaTable

    from feedstock.catalog_page import page
    from feedstock.config import parse_config
    from feedstock.lake import Commit, Lake

    with tempfile.TemporaryDirectory(prefix="feedstock-catalog-") as tmp:
        lake = Lake(tmp)
        for name in TABLES:
            for n in range(commits_per_table):
                stats = (
                    {"recall_at_5": 0.9 + n / 1000, "mrr": 0.8 + n / 1000}
                    if name == "rag.index"
                    else {"n": n}
                )
                commit = Commit(
                    {"dag_id": "bench", "task_id": "write", "run_id": f"r{n}"}, (f"x@{n}",), stats
                )
                lake.append(name, pa.table({"doc_id": [f"d{n}"], "text": ["x" * 100]}), commit)
        config = parse_config({"lake": tmp, "sources": []})
        timings, raw = [], []
        for _ in range(5):
            start = time.perf_counter()
            html = page(config, lake)
            timings.append(time.perf_counter() - start)
            start = time.perf_counter()
            for name in TABLES:
                table = DeltaTable(lake.uri(name))
                table.get_add_actions(flatten=True)
                table.history()
            raw.append(time.perf_counter() - start)
    best, best_raw = min(timings), min(raw)
    return {
        "versions": len(TABLES) * commits_per_table,
        "page_seconds": round(best, 3),
        "raw_deltalake_seconds": round(best_raw, 3),
        "page_to_raw": round(best / best_raw, 2),
        "page_kb": round(len(html) / 1024),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
