"""`make bench`: run every benchmark, print the results and keep them in benchmarks/results/latest.json."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from benchmarks import (
    bench_catalog_page,
    bench_celery,
    bench_embeddings,
    bench_finetune,
    bench_forget,
    bench_formats,
    bench_ingest,
    bench_pretrain,
    bench_pretrain_feed,
    bench_process,
    bench_quiet,
    bench_rag,
    bench_ranking,
    bench_retrieval,
    bench_serving,
    bench_warehouse,
)

SUITES = {
    "ingest": bench_ingest.run,
    "warehouse": bench_warehouse.run,
    "rag": bench_rag.run,
    "embeddings": bench_embeddings.run,
    "retrieval": bench_retrieval.run,
    "ranking": bench_ranking.run,
    "ann": bench_rag.run_million,
    "pretrain": bench_pretrain.run,
    "pretrain_feed": bench_pretrain_feed.run,
    "process": bench_process.run,
    "finetune": bench_finetune.run,
    "forget": bench_forget.run,
    "catalog_page": bench_catalog_page.run,
    "formats": bench_formats.run,
    "serving": bench_serving.run,
    "quiet": bench_quiet.run,
    "celery": bench_celery.run,
}


def main(names: list[str]) -> None:
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    latest = out / "latest.json"
    # Running some suites keeps the other suites' last results.
    results = json.loads(latest.read_text()) if latest.exists() else {}
    for name in names or list(SUITES):
        print(f"== {name}", flush=True)
        results[name] = SUITES[name]()
        print(json.dumps(results[name], indent=2), flush=True)
        latest.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.stdout.flush()
    os._exit(0)  # no interpreter teardown: Arrow threads over Delta tables abort it (see feedstock.cli.run)
