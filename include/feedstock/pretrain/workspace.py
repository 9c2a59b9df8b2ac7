"""Where the pretraining feed keeps its files, and what a processed shard depends on.

- :func:`config_key`: a short hash of every stage's settings, the shuffle seed and the output shards.
- :func:`work_dir`: a shard's work folder, keyed by the shard's id, version and the configuration key, so a shard
  already processed with the same settings is skipped on rerun.
- :func:`run_dir`: the run's staging folder (plan, boilerplate, dedup drops, staged output shards).
- :func:`release_dir`: the folder of a published release (token shards, text shards, data card, stats).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

from feedstock.config import Config
from feedstock.lake import Lake
from feedstock.pretrain.corpus import Shard


def config_key(config: Config) -> str:
    """What a processed shard depends on: every stage's settings, the shuffle seed and the output shards."""
    p = config.pretrain
    relevant = {
        "normalize": p.normalize,
        "language": p.language,
        "quality": p.quality,
        "pii": p.pii,
        "decontamination": p.decontamination,
        "minhash": asdict(p.minhash) if p.minhash else None,
        "seed": p.seed,
        "output_shards": p.output_shards,
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:16]


def work_dir(lake: Lake, config: Config, shard: Shard) -> str:
    return lake.staging("pretrain", "work", config_key(config), f"{shard.shard_id}-{shard.version}")


def run_dir(lake: Lake, run_key: str) -> str:
    return lake.staging("pretrain", "runs", run_key)


def release_dir(lake: Lake, release: int) -> str:
    return lake.uri("pretrain") + f"/releases/{release:05d}"
