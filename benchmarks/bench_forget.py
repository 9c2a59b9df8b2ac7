"""Forgetting one person in a lake with a pretraining release, against rebuilding that release from scratch.

A corpus of ``FEEDSTOCK_BENCH_FORGET_MB`` (256 by default; the issue's figure is 2,048) of real text
(:func:`benchmarks.pretrain_corpus.write_jsonl_corpus`) plus one file holding a person (a name, an e-mail address,
a phone number) and a near-copy of that document. ``airflow dags test`` runs both ingestion DAGs, then
``pretrain_feed`` (the rebuild: what the release costs from scratch), then ``forget`` by the e-mail address. The
ratio is the forget DAG's wall time over the rebuild's. Forget reads the whole corpus once (the request names
content, so every corpus document is a candidate), rewrites only the shards that hold the person, and scans
every file of the lake to verify: those three are its cost.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks import pretrain_corpus
from benchmarks.airflow_home import dags_test_env

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(__file__).resolve().parent / ".cache" / "forget"
NAME, EMAIL, PHONE = "Zephyrine Okonkwo-Hale", "zephyrine.hale@northwind-example.com", "+1 415 555 0199"
TEXT = (
    f"Payroll escalations for the Lisbon office go to {NAME}, who runs the payroll operations desk. Write to "
    f"{EMAIL} or call {PHONE} before the monthly cut-off on the twentieth, and include the employee number, the "
    "pay period and a short description of the discrepancy. The desk answers within two working days and keeps a "
    "written record of every correction it makes to a payslip, so that finance can reconcile the ledger at the "
    "end of the quarter. Corrections after the cut-off are paid with the following month's salary."
)


def _dags_test(env: dict, dag_id: str, *extra: str) -> float:
    start = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "test", *extra, dag_id, "2026-11-22"],
        env=env,
        capture_output=True,
        text=True,
    )
    if run.returncode != 0:
        raise RuntimeError(f"{dag_id} failed: {run.stdout[-3000:]} {run.stderr[-3000:]}")
    return time.perf_counter() - start


def run() -> dict:
    mb = int(os.environ.get("FEEDSTOCK_BENCH_FORGET_MB", "256"))
    corpus = CACHE / f"corpus-{mb}mb"
    pretrain_corpus.write_jsonl_corpus(corpus, target_bytes=mb * 1_000_000, file_bytes=32_000_000)
    near = TEXT.replace("two working days", "two business days")
    (corpus / "subject.jsonl").write_text(
        json.dumps({"id": "payroll-desk", "text": TEXT})
        + "\n"
        + json.dumps({"id": "payroll-copy", "text": near})
        + "\n"
    )
    size = sum(p.stat().st_size for p in corpus.glob("*.jsonl"))
    with tempfile.TemporaryDirectory(prefix="feedstock-forget-") as tmp:
        home = Path(tmp)
        raw = yaml.safe_load((ROOT / "include" / "config" / "feedstock.yaml").read_text())
        raw["lake"] = str(home / "lake")
        next(s for s in raw["sources"] if s["name"] == "crawl").update(uri=str(corpus), include=["*.jsonl"])
        (home / "feedstock.yaml").write_text(yaml.safe_dump(raw))
        env = dags_test_env(
            home,
            os.environ.get(
                "AIRFLOW_CONN_WAREHOUSE_DEFAULT", f"sqlite:///{ROOT / 'data' / 'warehouse.sqlite'}"
            ),
        )
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True
        )
        for dag_id in ("ingest_documents", "ingest_warehouse"):
            _dags_test(env, dag_id)
        rebuild = _dags_test(env, "pretrain_feed")
        request = json.dumps({"contains": [EMAIL], "verify": [NAME, PHONE]})
        forget = _dags_test(env, "forget", "--conf", request)

        sys.path.insert(0, str(ROOT / "include"))
        from feedstock.forget import RECEIPTS
        from feedstock.lake import Lake
        from feedstock.pretrain.feed import RELEASE

        lake = Lake(str(home / "lake"))
        receipt = lake.read(RECEIPTS).to_pylist()[-1]
        removed = json.loads(receipt["removed"])
        shards = sum(1 for f in lake.read(RELEASE).to_pylist() if f["format"] == "parquet")
    return {
        "corpus_mb": round(size / 1e6),
        "release_shards": shards,
        "rebuild_seconds": round(rebuild, 1),
        "forget_seconds": round(forget, 1),
        "forget_to_rebuild": round(forget / rebuild, 3),
        "records_forgotten": receipt["records"],
        "pretrain": removed.get("pretrain"),
        "verified": receipt["verified"],
        "files_scanned": receipt["files_scanned"],
        "mb_scanned": round(receipt["bytes_scanned"] / 1e6),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
