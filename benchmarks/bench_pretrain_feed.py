"""Pretraining feed at scale: bounded memory of a shard task, and the whole feed end to end in GB/hour.

- **Bounded memory**: the peak RSS of the shard tasks (the boilerplate scan, then the process task: normalize,
  language ID, quality filters, PII, signatures) on one JSONL shard of 1x and of 4x the size, each in a fresh
  process, against the raw approach of reading that shard whole with ``pyarrow.json.read_json``.
- **End to end**: ``airflow dags test pretrain_feed`` (after both ingestion DAGs) on the shipped configuration,
  with its ``crawl`` corpus source pointed at a corpus of at least 2 GB built from this machine's text
  (:func:`benchmarks.pretrain_corpus.write_jsonl_corpus`: real documents with planted exact and near
  duplicates), in a private AIRFLOW_HOME and lake. ``dags test`` runs one task at a time, so the figure is for
  one core; with the LocalExecutor or Celery the mapped shard tasks run side by side.
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
CACHE = Path(__file__).resolve().parent / ".cache" / "pretrain"

# ru_maxrss survives exec (a child starts with its parent's high-water mark); VmHWM is the new process's own.
_PEAK = """
def peak_rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
"""

# One shard task per process, as Airflow runs them: the "scan", the "boilerplate" global task between the two
# shard stages, and the "process"; the lake and work folders persist between them.
_SHARD_TASK = (
    _PEAK
    + """
import json, sys, time
from feedstock.config import parse_config
from feedstock.lake import Lake
from feedstock.pretrain import feed
from feedstock.pretrain.corpus import list_shards
step, corpus, lake_uri = sys.argv[1:4]
source = {"name": "crawl", "kind": "corpus", "uri": corpus, "part_mb": 100000}
cfg = parse_config({"lake": lake_uri, "sources": [source]})
lake = Lake(cfg.lake)
shard = list_shards(cfg.sources[0], lake)[0].to_dict()
start = time.perf_counter()
if step == "scan":
    feed.scan_shard(cfg, lake, shard)
elif step == "boilerplate":
    feed.boilerplate(cfg, lake, "bench", [feed.scan_shard(cfg, lake, shard)])
else:
    feed.process_shard(cfg, lake, shard, "bench")
print(json.dumps({"seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb()}))
"""
)

_RAW_READ = (
    _PEAK
    + """
import json, sys
import pyarrow.json as pj
table = pj.read_json(sys.argv[1], read_options=pj.ReadOptions(block_size=64 << 20))
print(json.dumps({"rows": table.num_rows, "peak_rss_mb": peak_rss_mb()}))
"""
)


def _python(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _shard_of(size_mb: int, folder: Path) -> Path:
    """A JSONL shard of about ``size_mb``, cut at a line boundary from the end-to-end corpus."""
    source = sorted(_corpus().glob("*.jsonl"))
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "shard.jsonl"
    written = 0
    with target.open("wb") as out:
        for path in source:
            with path.open("rb") as handle:
                for line in handle:
                    out.write(line)
                    written += len(line)
                    if written >= size_mb * 1024 * 1024:
                        return target
    return target


def _corpus() -> Path:
    folder = CACHE / "e2e-jsonl"
    present = sum(p.stat().st_size for p in folder.glob("*.jsonl")) if folder.exists() else 0
    if present < 2 * 1024**3:
        pretrain_corpus.write_jsonl_corpus(folder)  # about 2.2 GB
    return folder


def bench_memory(base_mb: int = 32) -> dict:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for factor in (1, 4):
            folder = Path(tmp) / f"x{factor}"
            shard = _shard_of(base_mb * factor, folder / "corpus")
            mb = shard.stat().st_size / 1024**2
            steps = {
                step: _python(_SHARD_TASK, step, str(folder / "corpus"), str(folder / "lake"))
                for step in ("scan", "boilerplate", "process")
            }
            raw = _python(_RAW_READ, str(shard))
            results[f"{factor}x"] = {
                "shard_mb": round(mb, 1),
                **{f"{step}_peak_rss_mb": round(r["peak_rss_mb"]) for step, r in steps.items()},
                "process_mb_per_s": round(mb / steps["process"]["seconds"], 2),
                "raw_read_whole_peak_rss_mb": round(raw["peak_rss_mb"]),
            }
    for key in (
        "scan_peak_rss_mb",
        "boilerplate_peak_rss_mb",
        "process_peak_rss_mb",
        "raw_read_whole_peak_rss_mb",
    ):
        results[f"ratio_4x_to_1x_{key}"] = round(results["4x"][key] / results["1x"][key], 2)
    return results


def bench_end_to_end() -> dict:
    corpus = _corpus()
    size = sum(p.stat().st_size for p in corpus.iterdir() if p.is_file())
    with tempfile.TemporaryDirectory(prefix="feedstock-e2e-") as tmp:
        home = Path(tmp)
        raw = yaml.safe_load((ROOT / "include" / "config" / "feedstock.yaml").read_text())
        raw["lake"] = str(home / "lake")
        crawl = next(s for s in raw["sources"] if s["name"] == "crawl")
        crawl.update(uri=str(corpus), include=["*.jsonl"])
        (home / "feedstock.yaml").write_text(yaml.safe_dump(raw))
        # The sample warehouse that `make setup` builds, unless the environment names another.
        env = dags_test_env(
            home,
            os.environ.get(
                "AIRFLOW_CONN_WAREHOUSE_DEFAULT", f"sqlite:///{ROOT / 'data' / 'warehouse.sqlite'}"
            ),
        )
        airflow = [sys.executable, "-m", "airflow"]
        subprocess.run([*airflow, "db", "migrate"], env=env, check=True, capture_output=True)
        for dag_id in ("ingest_documents", "ingest_warehouse"):
            ingest = subprocess.run(
                [*airflow, "dags", "test", dag_id, "2026-11-20"], env=env, capture_output=True, text=True
            )
            if ingest.returncode != 0:
                raise RuntimeError(f"{dag_id} failed: {ingest.stdout[-2000:]} {ingest.stderr[-2000:]}")

        start = time.perf_counter()
        run = subprocess.run(
            [*airflow, "dags", "test", "pretrain_feed", "2026-11-22"], env=env, capture_output=True, text=True
        )
        seconds = time.perf_counter() - start
        if run.returncode != 0:
            raise RuntimeError(f"pretrain_feed failed: {run.stdout[-2000:]} {run.stderr[-2000:]}")
        sys.path.insert(0, str(ROOT / "include"))
        from feedstock.lake import Lake
        from feedstock.pretrain.feed import RELEASE

        stats = Lake(str(home / "lake")).last_commit(RELEASE)["stats"]
        tasks = _task_seconds(home / "airflow" / "airflow.db")
    return {
        "corpus_gb": round(size / 1024**3, 2),
        "seconds": round(seconds),
        "gb_per_hour_one_core": round(size / 1024**3 / (seconds / 3600), 3),
        "docs_in": stats["docs_in"],
        "docs_published": stats["docs_published"],
        "tokens": stats["tokens"],
        "exact_duplicate_rate": stats["exact_duplicate_rate"],
        "fuzzy_duplicate_rate": stats["fuzzy_duplicate_rate"],
        "drops_by_stage": stats["drops_by_stage"],
        "task_seconds": tasks,
    }


def _task_seconds(database: Path) -> dict[str, float]:
    """Seconds per task of the pretraining run (mapped tasks summed), from Airflow's metadata database, largest
    first: where the end-to-end time goes."""
    import sqlite3

    with sqlite3.connect(database) as con:
        rows = con.execute(
            "select task_id, sum(duration) from task_instance where dag_id = 'pretrain_feed' "
            "group by task_id order by 2 desc"
        ).fetchall()
    return {task: round(seconds or 0.0, 1) for task, seconds in rows}


def run() -> dict:
    return {"memory": bench_memory(), "end_to_end": bench_end_to_end()}
