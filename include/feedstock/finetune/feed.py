"""The fine-tuning feed: from dataset files and warehouse rows to curated SFT and preference releases.

One function per Airflow task (``dags/finetune_feed.py`` is the wiring):

1. :func:`prepare` numbers the release, pins the inputs (bronze versions of the warehouse sources with a
   ``finetune`` template, versions of the dataset files) and lands the bronze ones in the run's DuckDB file for
   dbt's ``finetune_conversations`` mart. Nothing changed since the last run: every later task is skipped.
2. :func:`process_source` (:mod:`~feedstock.finetune.process`, one mapped task per source) reads, normalizes
   and runs the per-example stages (:mod:`~feedstock.finetune.checks`).
3. :func:`curate` (:mod:`~feedstock.finetune.curate`) deduplicates (also against earlier releases), selects and
   splits, over every source at once.
4. :func:`release` (:mod:`~feedstock.finetune.release`) writes the files, the data card and the tables.

A release holds what no earlier release processed; together the releases are the dataset. :func:`show` prints a
release's examples as a person reads them (``feedstock finetune show``).
"""

from __future__ import annotations

import dataclasses
import posixpath
from typing import Any

import pyarrow as pa

from feedstock import runstate, transform
from feedstock.config import Config, ConfigError, DatasetSource, WarehouseSource
from feedstock.finetune.curate import curate as _curate
from feedstock.finetune.process import process_source
from feedstock.finetune.release import previous_releases, release, release_dir
from feedstock.finetune.tables import EXAMPLES
from feedstock.lake import Lake

__all__ = ["curate", "feed_sources", "finish", "prepare", "process_source", "release", "release_dir", "show"]


def feed_sources(config: Config) -> list[str]:
    """The sources the feed reads: ``finetune.sources``, or every dataset source and every warehouse source with a
    ``finetune`` template (broken dataset entries too, so that their tasks fail with their reason)."""
    if config.finetune.sources is not None:
        return list(config.finetune.sources)
    return [
        name
        for name in config.source_names("dataset") + config.source_names("warehouse")
        if config.problem(name)
        or isinstance(config.source(name), DatasetSource)
        or getattr(config.source(name), "finetune", None)
    ]


def prepare(config: Config, lake: Lake, duckdb_file: str | None = None) -> dict[str, Any]:
    """The release number, the pinned inputs and the sources to process; ``changed`` False when nothing changed."""
    from feedstock.documents.ingest import list_files
    from feedstock.pretrain.corpus import file_version
    from feedstock.stages.tokenizers import load_tokenizer

    try:
        load_tokenizer(config.finetune.tokenizer)
    except ValueError as exc:
        raise ConfigError(f"config 'finetune': {exc}") from None
    names = feed_sources(config)
    warehouse = {n for n in names if not config.problem(n) and isinstance(config.source(n), WarehouseSource)}
    bronze = transform.inputs(config, lake, warehouse)
    files = []
    for name in names:
        source = None if config.problem(name) else config.source(name)
        if isinstance(source, DatasetSource):
            try:
                files += [f"{name}/{f['relative']}@{file_version(f)}" for f in list_files(source, lake)]
            except OSError as exc:
                files.append(f"{name}: unreachable ({str(exc).splitlines()[0]})")
    fingerprint = transform.fingerprint(bronze, sorted(files), dataclasses.asdict(config.finetune), names)
    if message := runstate.unchanged(lake, "finetune", fingerprint):
        return {"changed": False, "message": message}
    landed = transform.land(config, lake, duckdb_file, bronze) if duckdb_file else {}
    releases = previous_releases(lake)
    number = (releases[-1] + 1) if releases else 1
    return {
        "changed": True,
        "release": number,
        "sources": names,
        "inputs": sorted(bronze + [f for f in files if "@" in f]),
        "fingerprint": fingerprint,
        "message": f"fine-tuning release {number}: {len(names)} sources, {len(files)} dataset files listed, "
        f"{sum(landed.values())} warehouse rows landed",
    }


def curate(config: Config, lake: Lake, run_key: str, results: list[dict[str, Any] | None]) -> dict[str, Any]:
    """Dedup, select and split every source's staged examples; stage ``curated.parquet``."""
    results = [r for r in results if r]  # a failed source task left no result: the others go on
    columns = ["example_id", "kind", "exact_hash", "signature", "buckets", "score"]
    tables = [lake.parquet_dataset([r["examples_uri"]]).to_table(columns=columns) for r in results]
    if not tables or not sum(t.num_rows for t in tables):
        return {"results": results, "curated_uri": None, "stats": {}}
    examples = pa.concat_tables(tables)
    previous = lake.read(EXAMPLES, columns=[*columns[:5], "release", "split", "status"])
    if previous is not None:
        import pyarrow.compute as pc

        previous = previous.filter(pc.equal(previous["status"], "published"))
    curated, stats = _curate(config, examples, previous, _embedder(config, lake, results))
    uri = posixpath.join(lake.staging("finetune", run_key), "curated.parquet")
    lake.write_parquet(uri, curated)
    return {"results": results, "curated_uri": uri, "stats": {k: dict(v) for k, v in stats.items()}}


def _embedder(config: Config, lake: Lake, results: list[dict[str, Any]]):
    """``embed(example_ids) -> unit vectors`` of each example's prompt and answer, with the offline model."""
    if config.finetune.selection is None:
        return None

    def embed(ids: list[str]):
        import pyarrow.compute as pc

        from feedstock.finetune.records import Example
        from feedstock.rag.embedders import embedder

        wanted = pa.array(ids)
        columns = ["example_id", "source", "record_id", "messages", "chosen"]
        texts: dict[str, str] = {}
        for r in results:
            staged = lake.read_parquet(r["examples_uri"], columns=columns)
            for row in staged.filter(pc.is_in(staged["example_id"], wanted)).to_pylist():
                e = Example(
                    row["example_id"], row["source"], row["record_id"], row["messages"], row["chosen"]
                )
                texts[row["example_id"]] = f"{e.prompt_text}\n{e.response_text}"
        return embedder(config.rag.embedding).embed([texts[i] for i in ids])

    return embed


def finish(lake: Lake, prepared: dict[str, Any], run_key: str, run_id: str) -> None:
    """Record what this run built from (an unchanged next run is skipped) and delete its staged files."""
    releases = previous_releases(lake)
    runstate.record(lake, "finetune", prepared["fingerprint"], releases[-1] if releases else None, run_id)
    lake.clear(lake.staging("finetune", run_key))


def show(lake: Lake, which: str = "latest", split: str = "train", n: int = 3) -> dict[str, Any]:
    """``n`` examples of a release's split (SFT conversations and preference pairs) for a person to read."""
    import pyarrow.dataset as ds

    releases = previous_releases(lake)
    if not releases:
        raise ConfigError("no fine-tuning release yet: run the finetune_feed DAG first")
    number = releases[-1] if which == "latest" else int(which)
    if number not in releases:
        raise ConfigError(f"no fine-tuning release {number}; releases: {', '.join(map(str, releases))}")
    dataset = lake.dataset(EXAMPLES)
    columns = ["example_id", "record_id", "kind", "messages", "chosen", "rejected", "tokens", "row"]
    table = dataset.to_table(
        filter=(ds.field("release") == number)
        & (ds.field("status") == "published")
        & (ds.field("split") == split),
        columns=columns + (["access_tags"] if "access_tags" in dataset.schema.names else []),  # older lakes
    ).sort_by([("kind", "ascending"), ("row", "ascending")])
    return {
        "release": number,
        "split": split,
        "examples": table.slice(0, n).to_pylist(),
        "total": table.num_rows,
    }
