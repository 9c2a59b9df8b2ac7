"""The last stage of the fine-tuning feed: write the release's files and data card, and commit its tables.

:func:`release` joins every source's staged examples with the curated status and split, writes each split in each
configured format (:mod:`feedstock.finetune.exports`) under ``<lake>/finetune/releases/<NNNNN>/``, checks every
written row as its trainer would, and writes ``dataset_info.json`` (LLaMA-Factory), ``README.md`` (the data card,
with the axolotl stanza) and ``stats.json``. Then it commits ``finetune.examples``, ``finetune.rejects``,
``finetune.files`` and, last, ``finetune.release`` (the publishing commit).

Every example is accounted for: ``examples_in = published + rejected`` (by stage and reason), and a release that
does not add up is not published. It runs in the one-slot release pool; a release number that another run
published meanwhile fails this run with :class:`~feedstock.errors.ReleaseConflict`, and a retry of this task
finishes its own commits.
"""

from __future__ import annotations

import posixpath
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from feedstock import contracts, runstate
from feedstock.config import Config
from feedstock.errors import ContractViolation
from feedstock.finetune import exports
from feedstock.finetune.tables import (
    EXAMPLES,
    EXAMPLES_SCHEMA,
    FILES,
    FILES_SCHEMA,
    REJECT_SCHEMA,
    REJECTS,
    RELEASE,
    RELEASE_SCHEMA,
)
from feedstock.lake import Commit, Lake, filesystem, join
from feedstock.stages.tokenizers import length_histogram, ordered_histogram

SPLIT_ORDER = ("train", "validation", "test")


def release_dir(lake: Lake, number: int) -> str:
    return join(lake.root, "finetune", "releases", f"{number:05d}")


def previous_releases(lake: Lake) -> list[int]:
    return runstate.releases(lake, RELEASE)


def merge_stats(results: list[dict[str, Any]], curated: dict[str, dict[str, int]]) -> dict[str, Counter]:
    stages: dict[str, Counter] = {}
    for r in results:
        for stage, counts in r["stats"].items():
            stages.setdefault(stage, Counter()).update(counts)
    for stage, counts in curated.items():
        stages.setdefault(stage, Counter()).update(counts)
    return stages


def release(
    config: Config,
    lake: Lake,
    prepared: dict[str, Any],
    curated: dict[str, Any],
    produced_by: dict[str, str],
) -> dict[str, Any]:
    """Publish the release (see the module docstring); return its stats. Nothing new: no release."""
    number = prepared["release"]
    results = curated["results"]
    if runstate.already_published(lake, RELEASE, number, produced_by.get("run_id"), "fine-tuning"):
        return {**(lake.last_commit(RELEASE) or {}).get("stats", {}), "released": True}

    examples = _staged(lake, results, "examples_uri")
    status = lake.read_parquet(curated["curated_uri"]) if curated["curated_uri"] else None
    rejects = _rejects(lake, results, examples, status, number)
    rows = _published(examples, status)
    stages = merge_stats(results, curated["stats"])
    examples_in = sum(r["examples_in"] for r in results)
    if examples_in != rows.num_rows + rejects.num_rows:
        raise RuntimeError(
            f"fine-tuning release {number}: {examples_in} examples in but "
            f"{rows.num_rows + rejects.num_rows} accounted for"
        )
    contracts.enforce_ratio(
        "finetune examples",
        sum(v for k, v in stages.get("contract", Counter()).items() if k.startswith("dropped:")),
        stages.get("contract", Counter())["in"],
        config.validation.max_failure_ratio,
    )
    stats = _stats(number, prepared, results, stages, rows, rejects)
    if not rows.num_rows and not rejects.num_rows:
        return {**stats, "released": False}

    out = release_dir(lake, number)
    files, row_of = _write_files(config, lake, out, rows)
    stats["files"] = [
        {k: f[k] for k in ("path", "format", "kind", "split", "examples", "tokens", "access_tags")}
        for f in files
    ]
    lake.write_json(posixpath.join(out, "dataset_info.json"), exports.dataset_info(files))
    lake.write_json(posixpath.join(out, "stats.json"), stats)
    fs, base = filesystem(out, lake.s3)
    with fs.open(posixpath.join(base, "README.md"), "w", encoding="utf-8") as handle:
        from feedstock.finetune.card import data_card

        handle.write(data_card(stats, files, out))

    commit = Commit(produced_by=produced_by, inputs=tuple(prepared["inputs"]), stats=stats)
    if not runstate.has_release(lake, EXAMPLES, number):
        lake.append(EXAMPLES, _examples_table(config, examples, status, row_of, number), commit)
    if not runstate.has_release(lake, REJECTS, number):
        lake.append(REJECTS, rejects, commit)
    files_table = pa.Table.from_pylist(
        [{**f, "reason": f.get("reason"), "release": number} for r in results for f in r["files"]],
        schema=FILES_SCHEMA,
    )
    if files_table.num_rows and not runstate.has_release(lake, FILES, number):
        lake.append(FILES, files_table, commit)
    release_rows = pa.Table.from_pylist(
        [
            {
                "release": number,
                "split": f["split"],
                "format": f["format"],
                "uri": f"{out}/{f['path']}",
                "examples": f["examples"],
                "tokens": f["tokens"],
                "access_tags": f["access_tags"],
            }
            for f in files
        ],
        schema=RELEASE_SCHEMA,
    )
    if not release_rows.num_rows:  # everything was rejected: the release still records its rejects
        release_rows = pa.Table.from_pylist(
            [
                {
                    "release": number,
                    "split": None,
                    "format": None,
                    "uri": f"{out}/README.md",
                    "examples": 0,
                    "tokens": 0,
                    "access_tags": [],
                }
            ],
            schema=RELEASE_SCHEMA,
        )
    if not runstate.has_release(lake, RELEASE, number):
        lake.append(RELEASE, release_rows, commit)
    return {**stats, "released": True}


def _staged(lake: Lake, results: list[dict[str, Any]], key: str) -> pa.Table:
    from feedstock.finetune.tables import EXAMPLE_SCHEMA

    tables = [lake.read_parquet(r[key]) for r in results if r.get(key)]
    return pa.concat_tables(tables) if tables else EXAMPLE_SCHEMA.empty_table()


def _rejects(lake: Lake, results, examples: pa.Table, status: pa.Table | None, number: int) -> pa.Table:
    tables = [lake.read_parquet(r["rejects_uri"], schema=REJECT_SCHEMA) for r in results]
    if status is not None and status.num_rows:
        dropped = status.filter(pc.not_equal(status["status"], "published"))
        by_id = {
            e: (r, s)
            for e, r, s in zip(
                *(examples[c].to_pylist() for c in ("example_id", "record_id", "source")), strict=True
            )
        }
        tables.append(
            pa.Table.from_pylist(
                [
                    {
                        "example_id": e,
                        "record_id": by_id[e][0],
                        "source": by_id[e][1],
                        "stage": reason.split(":")[0],
                        "reason": reason,
                    }
                    for e, reason in zip(
                        dropped["example_id"].to_pylist(), dropped["status"].to_pylist(), strict=True
                    )
                ],
                schema=REJECT_SCHEMA,
            )
        )
    table = pa.concat_tables(tables) if tables else REJECT_SCHEMA.empty_table()
    return table.append_column("release", pa.array([number] * table.num_rows, pa.int32()))


def _published(examples: pa.Table, status: pa.Table | None) -> pa.Table:
    """The published examples with their split, in file order: split, kind, then example id."""
    if status is None or not examples.num_rows:
        return examples.append_column("split", pa.array([], pa.string())).slice(0, 0)
    curated = dict(
        zip(
            status["example_id"].to_pylist(),
            zip(status["status"].to_pylist(), status["split"].to_pylist(), strict=True),
            strict=True,
        )
    )
    ids = examples["example_id"].to_pylist()
    keep = [curated[e][0] == "published" for e in ids]
    rows = examples.filter(pa.array(keep))
    splits = [curated[e][1] for e in rows["example_id"].to_pylist()]
    rows = rows.append_column("split", pa.array(splits, pa.string()))
    kinds, kept_ids = rows["kind"].to_pylist(), rows["example_id"].to_pylist()
    order = sorted(range(rows.num_rows), key=lambda i: (SPLIT_ORDER.index(splits[i]), kinds[i], kept_ids[i]))
    return rows.take(pa.array(order, pa.int64()))


def _write_files(
    config: Config, lake: Lake, out: str, rows: pa.Table
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Write every split x kind x format, a batch of rows at a time; check each row as its trainer would. Returns
    the files and each example's row number within its split and kind."""
    from contextlib import ExitStack

    fs, base = filesystem(out, lake.s3)
    files: list[dict[str, Any]] = []
    row_of: dict[str, int] = {}
    splits, kinds = rows["split"].to_pylist(), rows["kind"].to_pylist()
    for split, kind in dict.fromkeys(zip(splits, kinds, strict=True)):
        group = rows.filter(pa.array([s == split and k == kind for s, k in zip(splits, kinds, strict=True)]))
        entries = []
        for fmt in exports.formats_for(kind, config.finetune.formats):
            path = exports.file_name(fmt, kind, split)
            entry = {"format": fmt, "kind": kind, "split": split, "path": path}
            entry["info"] = exports.dataset_info([entry]).get(f"feedstock_{kind}_{split}_{fmt}")
            entries.append(entry)
            fs.makedirs(posixpath.dirname(posixpath.join(base, path)), exist_ok=True)
        with ExitStack() as stack:
            handles = [
                stack.enter_context(fs.open(posixpath.join(base, e["path"]), "w", encoding="utf-8"))
                for e in entries
            ]
            number = 0
            for batch in group.to_batches(max_chunksize=2_000):
                for record in batch.to_pylist():
                    row_of[record["example_id"]] = number
                    number += 1
                    for entry, handle in zip(entries, handles, strict=True):
                        value = exports.row(entry["format"], record)
                        if problem := exports.problems(entry["format"], value, entry["info"]):
                            raise ContractViolation(
                                f"fine-tuning release: {record['example_id']} would be refused in "
                                f"{entry['path']}: {problem}"
                            )
                        handle.write(exports.dumps(value))
        tokens = int(pc.sum(group["tokens"]).as_py() or 0)
        tags = sorted({t for ts in group["access_tags"].to_pylist() for t in ts or ()})
        files += [
            {k: v for k, v in e.items() if k != "info"}
            | {"examples": group.num_rows, "tokens": tokens, "access_tags": tags}
            for e in entries
        ]
    return files, row_of


def _examples_table(config, examples: pa.Table, status, row_of: dict[str, int], number: int) -> pa.Table:
    from feedstock.stages.dedup import MinHasher

    spec = MinHasher(config.finetune.minhash).spec_key if config.finetune.minhash else ""
    state = {}
    if status is not None:
        state = {
            e: (s, sp)
            for e, s, sp in zip(
                *(status[c].to_pylist() for c in ("example_id", "status", "split")), strict=True
            )
        }
    ids = examples["example_id"].to_pylist()
    extra = pa.table(
        {
            "release": pa.array([number] * len(ids), pa.int32()),
            "status": [state.get(e, ("published", None))[0] for e in ids],
            "split": [state.get(e, (None, None))[1] for e in ids],
            "row": pa.array([row_of.get(e) for e in ids], pa.int64()),
            "spec": [spec] * len(ids),
        }
    )
    table = examples
    for name in extra.column_names:
        table = table.append_column(name, extra[name])
    return table.select(EXAMPLES_SCHEMA.names).cast(EXAMPLES_SCHEMA)


def _stats(
    number, prepared, results, stages: dict[str, Counter], rows: pa.Table, rejects: pa.Table
) -> dict[str, Any]:
    tokens = rows["tokens"].to_pylist() if rows.num_rows else []
    splits = Counter(rows["split"].to_pylist()) if rows.num_rows else Counter()
    kinds = (
        Counter(zip(rows["split"].to_pylist(), rows["kind"].to_pylist(), strict=True))
        if rows.num_rows
        else Counter()
    )
    funnel = []
    for stage in (
        "read",
        "review",
        "format",
        "pii",
        "quality",
        "length",
        "decontamination",
        "contract",
        "dedup",
        "selection",
    ):
        if stages.get(stage, {}).get("in"):
            c = stages[stage]
            funnel.append(
                {
                    "stage": stage,
                    "in": c.get("in", 0),
                    "out": c.get(
                        "out", c.get("in", 0) - sum(v for k, v in c.items() if k.startswith("dropped:"))
                    ),
                }
            )
    return {
        "release": number,
        "examples_in": sum(r["examples_in"] for r in results),
        "examples_published": rows.num_rows,
        "examples_rejected": rejects.num_rows,
        "unchanged": sum(r["stats"].get("read", {}).get("unchanged", 0) for r in results),
        "tokens": int(sum(tokens)),
        "splits": dict(splits),
        "kinds": {f"{s}/{k}": n for (s, k), n in kinds.items()},
        "by_source": dict(Counter(rows["source"].to_pylist())) if rows.num_rows else {},
        "funnel": funnel,
        "rejects_by_reason": dict(Counter(rejects["reason"].to_pylist())),
        "pii": {
            k.removeprefix("pii:"): v for k, v in stages.get("pii", Counter()).items() if k.startswith("pii:")
        },
        "truncated": stages.get("length", Counter()).get("truncated", 0),
        "token_histogram": ordered_histogram(length_histogram(tokens)),
        "files_quarantined": [
            {"source": f["source"], "file": f["relative"], "reason": f.get("reason")}
            for r in results
            for f in r["files"]
            if f["status"] == "quarantined"
        ],
        "inputs": list(prepared["inputs"]),
    }
