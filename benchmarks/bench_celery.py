"""pretrain_feed on the CeleryExecutor: one worker against two (``--concurrency 1`` each), on this machine.

Each side is a fresh deployment from :func:`tests.celery_cluster.celery_cluster` (PostgreSQL, Redis, api-server,
scheduler, dag-processor, N workers) with its own lake, on the shipped configuration whose ``crawl`` corpus
source points at a JSONL corpus of about 210 MB built from this machine's text
(:func:`benchmarks.pretrain_corpus.write_jsonl_corpus`), in 14 files of 15 MB: 14 shards for the mapped
``scan`` and ``process`` tasks. Both ingestion DAGs run first (untimed); the wall time is from triggering
``pretrain_feed`` to its success.

What serializes a run is read from its task instances: the time of the tasks that run alone (``prepare``, dbt,
``plan``, ``boilerplate``, ``clusters``, ``release``) against the mapped ones, which bounds the speedup two
workers can give (Amdahl), and the CPU time the deployment's own processes (scheduler, api-server,
dag-processor) took from the same two cores during the run.
"""

from __future__ import annotations

import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

from benchmarks import pretrain_corpus

CACHE = Path(__file__).resolve().parent / ".cache" / "celery"
DAY = "2026-11-20T00:00:00Z"
CONTROL_PLANE = ("api-server", "scheduler", "dag-processor")


def _corpus() -> tuple[Path, dict]:
    folder = CACHE / "jsonl-210mb"
    written = pretrain_corpus.write_jsonl_corpus(folder, target_bytes=210_000_000, file_bytes=15_000_000)
    return folder, written


def _cpu_seconds(pid: int) -> float:
    """CPU time of a process and its live descendants (user + system)."""
    import psutil

    total = 0.0
    try:
        root = psutil.Process(pid)
        for proc in (root, *root.children(recursive=True)):
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return total


def _seconds(ti: dict) -> float:
    if not ti.get("start_date") or not ti.get("end_date"):
        return 0.0
    start, end = (datetime.fromisoformat(ti[k].replace("Z", "+00:00")) for k in ("start_date", "end_date"))
    return (end - start).total_seconds()


def _run(workers: int, corpus: Path, folder: Path) -> dict:
    from tests.celery_cluster import celery_cluster, sample_project

    project_env = sample_project(folder / "project", corpus=corpus)
    with celery_cluster(folder / "cluster", project_env, workers=workers) as cluster:
        for dag_id in ("ingest_documents", "ingest_warehouse"):
            cluster.wait_for_run(dag_id, cluster.trigger(dag_id, DAY))
        control = {n: cluster.processes[n].popen.pid for n in CONTROL_PLANE}
        cpu_before = {n: _cpu_seconds(pid) for n, pid in control.items()}
        start = time.perf_counter()
        run_id = cluster.trigger("pretrain_feed", DAY)
        cluster.wait_for_run("pretrain_feed", run_id, timeout=4 * 3600)
        wall = time.perf_counter() - start
        cpu = {n: round(_cpu_seconds(pid) - cpu_before[n], 1) for n, pid in control.items()}
        tis = cluster.task_instances("pretrain_feed", run_id)

    by_task: dict[str, list[float]] = defaultdict(list)
    for ti in tis:
        if ti["state"] == "success":
            by_task[ti["task_id"]].append(_seconds(ti))
    mapped = {ti["task_id"] for ti in tis if ti["map_index"] >= 0}  # the tasks that can run side by side
    serial = sum(sum(d) for t, d in by_task.items() if t not in mapped)
    parallel = sum(sum(d) for t, d in by_task.items() if t in mapped)
    return {
        "workers": workers,
        "wall_s": round(wall, 1),
        "task_seconds": round(serial + parallel, 1),
        "serial_task_seconds": round(serial, 1),
        "mapped_task_seconds": round(parallel, 1),
        # Wall time no task ran on a worker: scheduling, queueing and start-up between tasks.
        "idle_worker_seconds": round(wall * workers - (serial + parallel), 1),
        "tasks": sum(len(d) for d in by_task.values()),
        "shortest_task_s": round(min(x for d in by_task.values() for x in d), 1),
        "control_plane_cpu_s": cpu,
        "by_task": {
            t: {"n": len(d), "sum_s": round(sum(d), 1), "max_s": round(max(d), 1)}
            for t, d in sorted(by_task.items(), key=lambda kv: -sum(kv[1]))
        },
    }


def run() -> dict:
    corpus, written = _corpus()
    results = {}
    with tempfile.TemporaryDirectory(prefix="feedstock-celery-bench-") as tmp:
        for workers in (1, 2):
            results[f"{workers}_worker"] = _run(workers, corpus, Path(tmp) / f"w{workers}")
    one, two = results["1_worker"], results["2_worker"]
    serial, mapped = two["serial_task_seconds"], two["mapped_task_seconds"]
    return {
        "corpus_mb": round(written["bytes"] / 1e6, 1),
        "corpus_files": written["files"],
        "corpus_documents": written["documents"],
        "wall_s_1_worker": one["wall_s"],
        "wall_s_2_workers": two["wall_s"],
        "speedup": round(one["wall_s"] / two["wall_s"], 2),
        # The best two workers could do with these task times: the serial tasks run alone either way.
        "amdahl_bound": round((serial + mapped) / (serial + mapped / 2), 2) if serial + mapped else None,
        **results,
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
