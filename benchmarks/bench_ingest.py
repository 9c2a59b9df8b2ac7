"""Document ingestion: throughput per format against the raw parsing library, and the cost of a rerun.

For each format the same files go through (a) the raw library alone (read the bytes, parse to text) and
(b) feedstock's whole ingestion (plan, hash, parse, validate, commit to Delta). The ratio raw/feed is the share
of the feed's time spent in the library itself. The rerun case runs the feed again with nothing changed.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import corpus
from feedstock.config import DocumentSource
from feedstock.documents import ingest
from feedstock.lake import Lake

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)


def raw_parse(path: Path) -> int:
    """The raw libraries on one file, with no feedstock code: returns the characters of text."""
    data = path.read_bytes()
    suffix = path.suffix
    if suffix == ".html":
        from bs4 import BeautifulSoup

        return len(BeautifulSoup(data.decode("utf-8", "replace"), "lxml").get_text())
    if suffix == ".pdf":
        from pypdf import PdfReader

        return sum(len(page.extract_text() or "") for page in PdfReader(io.BytesIO(data)).pages)
    if suffix == ".docx":
        import docx

        return sum(len(p.text) for p in docx.Document(io.BytesIO(data)).paragraphs)
    if suffix == ".json":
        return len(json.loads(data)["text"])
    if suffix == ".jsonl":
        return sum(len(json.loads(line)["text"]) for line in data.splitlines() if line.strip())
    return len(data.decode("utf-8", "replace"))


def feed_run(folder: Path, lake: Lake, run_key: str) -> dict:
    source = DocumentSource(name="bench", uri=str(folder), batch_size=10_000)
    batches, _ = ingest.plan(source, lake, run_key)
    for batch in batches:
        ingest.parse_batch(source, lake, batch, AS_OF)
    ingest.validate(source, lake, run_key, 1.0, AS_OF)
    return ingest.commit(
        source, lake, run_key, {"dag_id": "bench", "task_id": "bench", "run_id": run_key}, AS_OF
    )


def run(per_format: int = 120) -> dict:
    root = corpus.build(per_format)
    results = {"formats": {}}
    work = Path(tempfile.mkdtemp(prefix="feedstock-bench-"))
    try:
        for fmt in corpus.FORMATS:
            folder = root / fmt
            files = sorted(p for p in folder.iterdir() if p.is_file())
            size = corpus.size_bytes(folder)
            start = time.perf_counter()
            for path in files:
                raw_parse(path)
            raw_seconds = time.perf_counter() - start
            lake = Lake(str(work / f"lake-{fmt}"))
            start = time.perf_counter()
            stats = feed_run(folder, lake, f"{fmt}-1")
            feed_seconds = time.perf_counter() - start
            results["formats"][fmt] = {
                "files": len(files),
                "mb": round(size / 1e6, 2),
                "ingested": stats["ingested"],
                "quarantined": stats["quarantined"],
                "feed_files_per_s": round(len(files) / feed_seconds, 1),
                "feed_mb_per_s": round(size / 1e6 / feed_seconds, 2),
                "raw_files_per_s": round(len(files) / raw_seconds, 1),
                "feed_vs_raw_time": round(feed_seconds / raw_seconds, 2),
            }
        # The rerun: the whole corpus as one source, then again with nothing changed.
        lake = Lake(str(work / "lake-all"))
        start = time.perf_counter()
        full = feed_run(root, lake, "all-1")
        full_seconds = time.perf_counter() - start
        start = time.perf_counter()
        rerun = feed_run(root, lake, "all-2")
        rerun_seconds = time.perf_counter() - start
        results["rerun"] = {
            "files": full["files_seen"],
            "full_seconds": round(full_seconds, 2),
            "rerun_seconds": round(rerun_seconds, 3),
            "rerun_fraction": round(rerun_seconds / full_seconds, 4),
            "rerun_ingested": rerun["ingested"],
            "rerun_unchanged": rerun["unchanged"],
            "target": "< 0.05",
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
