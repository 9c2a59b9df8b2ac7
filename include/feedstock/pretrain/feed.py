"""The continued-pretraining feed: from input shards to a tokenized, deduplicated, mixed release.

One function per Airflow task (``dags/pretrain_feed.py`` is the wiring), each in the module of its stage; this
module gathers them, so the DAG, the plugin, the CLI and the tests call ``feed.<task>``:

1. :mod:`~feedstock.pretrain.plan`: :func:`prepare` numbers the release and pins the inputs; :func:`plan` lists
   the shards still to do (corpus files no earlier release processed in this version, and the new or changed
   documents of the dbt mart ``pretrain_documents``, staged as Parquet shards); :func:`finish` records the run.
2. :mod:`~feedstock.pretrain.scan`: :func:`scan_shard` and :func:`boilerplate` find the repeated lines.
3. :mod:`~feedstock.pretrain.process`: :func:`process_shard` (mapped per shard) cleans, filters and signs one
   shard into its work folder (:mod:`~feedstock.pretrain.workspace`), or quarantines it.
4. :mod:`~feedstock.pretrain.global_dedup`: :func:`exact_dedup`, :func:`lsh` and :func:`clusters`, on the
   per-shard outputs and the previous releases' signatures; :func:`partitions` is the fan-out.
5. :mod:`~feedstock.pretrain.mix`: :func:`write_shard` (mapped per output shard) mixes, tokenizes and writes.
6. :mod:`~feedstock.pretrain.release`: :func:`release` commits the tables (:mod:`~feedstock.pretrain.tables`)
   and writes the data card (:mod:`~feedstock.pretrain.card`). :func:`decode` (:mod:`~feedstock.pretrain.read`)
   reads a release back.

Every input document is accounted for: ``docs_in = docs_out + dropped (by stage and reason)``, and every shard
is either processed or quarantined with its reason.
"""

from __future__ import annotations

from feedstock.errors import ReleaseConflict
from feedstock.pretrain.card import data_card
from feedstock.pretrain.global_dedup import band_groups, clusters, exact_dedup, lsh, partitions
from feedstock.pretrain.mix import write_shard
from feedstock.pretrain.plan import MART_SHARD_DOCS, feed_sources, finish, plan, prepare, previous_releases
from feedstock.pretrain.process import ShardResult, build_steps, out_shard, process_shard
from feedstock.pretrain.process import _contract as _contract  # the unit tests check the contract boundary
from feedstock.pretrain.read import decode
from feedstock.pretrain.release import release
from feedstock.pretrain.scan import boilerplate, scan_dir, scan_shard
from feedstock.pretrain.tables import (
    DOCS_SCHEMA,
    DOCUMENTS,
    DOCUMENTS_SCHEMA,
    REJECT_SCHEMA,
    REJECTS,
    RELEASE,
)
from feedstock.pretrain.workspace import config_key, release_dir, run_dir, work_dir

__all__ = [
    "DOCS_SCHEMA",
    "DOCUMENTS",
    "DOCUMENTS_SCHEMA",
    "MART_SHARD_DOCS",
    "REJECTS",
    "REJECT_SCHEMA",
    "RELEASE",
    "ReleaseConflict",
    "ShardResult",
    "band_groups",
    "boilerplate",
    "build_steps",
    "clusters",
    "config_key",
    "data_card",
    "decode",
    "exact_dedup",
    "feed_sources",
    "finish",
    "lsh",
    "out_shard",
    "partitions",
    "plan",
    "prepare",
    "previous_releases",
    "process_shard",
    "release",
    "release_dir",
    "run_dir",
    "scan_dir",
    "scan_shard",
    "work_dir",
    "write_shard",
]
