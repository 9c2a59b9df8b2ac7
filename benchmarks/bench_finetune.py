"""Fine-tuning feed: dedup, split, decontamination and PII on planted data; throughput against the raw libraries
doing the same stages; peak memory at 1x and 4x the input.

Data: :mod:`benchmarks.finetune_data` (chat examples in the ``messages`` schema with planted exact copies,
5-10%-edited near-duplicate prompts, 20-30%-edited related prompts, reformatted eval-set questions and PII in
the answers, with the ground truth), one ``dataset`` source, the eval set as ``finetune.decontamination``
(``fields: [question]``), every other setting the default (:class:`feedstock.config.Finetune`: MinHash on the
prompts with word 2-grams, 42 bands x 3 rows, threshold 0.5; all seven formats).

The feed (``prepare``, ``process_source``, ``curate``, ``release``, as the brief's snippet runs it without
Airflow) runs in a fresh process per input size; its peak RSS is the process's own high-water mark (VmHWM).

- **Quality**, on both runs (headline: the larger one), against the truth, from ``finetune.rejects`` and
  ``finetune.examples``:
  - exact copies and near-duplicates: a planted pair is caught when either of the two is rejected as
    ``dedup:*`` (which one is kept is the feed's rule: the smallest example id); pairs where one side was
    rejected earlier (quality, ...) are left out and counted. Recall = caught / pairs.
  - false positives: untouched examples (no planted copy, not a copy, not an eval item) that reached dedup and
    were rejected as ``dedup:*``, over all untouched examples that reached dedup.
  - splits: planted near-duplicate and related pairs of which both were published, in different splits; and,
    independently of the planting, every pair of published prompts whose exact word 2-gram Jaccard (the feed's
    tokenization) reaches 0.5 (the dedup threshold) or 0.25 (the feed's split-grouping threshold), with how
    many of them straddle splits.
  - eval items rejected as ``decontamination:*``; other examples rejected so (false positives).
  - PII: every planted string (and a distinctive fragment of it: the local part and "@", the last digit groups)
    searched with ``grep -F`` in every file of the release, and in the messages ``finetune.examples`` stores.
- **Throughput**: the feed's wall time at 4x against one process doing the same stages with the libraries
  directly (json, the PII regexes of :func:`feedstock.stages.pii.redact` per message, tiktoken
  ``encode_ordinary_batch``, the repetition filter, an n-gram set for decontamination, rensa MinHash via
  ``MinHasher`` plus xxhash, numpy/scipy for LSH, verification and split groups, one JSONL written), per batch
  of 1,000 like the feed. Imports and the tokenizer's vocabulary load are outside the timing on both sides.
  Reported against the whole raw run ("same stages") and against the brief's core subset (read, PII,
  tokenize, MinHash + exact hash, dedup, write) timed inside the same run. Ratio = raw seconds / feed seconds;
  the CPU seconds (user + system, all threads) of both are reported too, as wall time suffers from other load.
- **Memory**: feed peak RSS at 4x over 1x, each input one JSONL file (as a dataset's ``train.jsonl`` usually
  comes); also each phase's own peak (VmHWM reset between phases through ``/proc/self/clear_refs``), which
  includes what earlier phases left allocated.

Sizes: the issue asks for 100k examples. At commit 761909b the feed spends 9-11 ms per example on this 2-core
machine (per-example decontamination is most of it), so 100k alone would take 15-20 minutes: the suite runs 50k
(4x) and 12.5k (1x) and takes 12-14 minutes. ``FEEDSTOCK_BENCH_FINETUNE_N`` sets the 4x size (100000 once the
feed is faster); 1x is a quarter of it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
N_LARGE = int(os.environ.get("FEEDSTOCK_BENCH_FINETUNE_N", 50_000))  # 4x; 1x is a quarter
SEED = 0
RUN = "bench"
BATCH = 1_000
TARGETS = {
    "near_duplicate_recall": 0.95,
    "exact_recall": 1.0,
    "false_positive_rate_max": 0.01,
    "cross_split_pairs": 0,
    "eval_items_rejected_share": 1.0,
    "pii_left": 0,
    "throughput_ratio_min": 0.8,
    "memory_ratio_4x_1x_max": 1.3,
}


def _config(work: Path) -> dict:
    return {
        "lake": str(work / "lake"),
        "sources": [
            {
                "name": "chats",
                "kind": "dataset",
                "uri": str(work / "data"),
                "include": ["*.jsonl"],
                "schema": "messages",
                "id_field": "id",
            }
        ],
        "finetune": {"decontamination": {"eval_sets": [str(work / "eval.jsonl")], "fields": ["question"]}},
    }


def _peak_rss_mb() -> float:
    # ru_maxrss survives exec (a child starts with its parent's high-water mark); VmHWM is this process's own.
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_seconds() -> float:
    """User + system CPU of this process (all its threads): less sensitive than wall time to other load."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _reset_peak() -> None:
    """Start VmHWM over from the current RSS (Linux >= 4.0), so that each phase's own peak can be read."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


# ---- the two sides, each in its own process ---------------------------------------------------------------


def _warm_imports() -> None:
    """Modules both sides use, and the tokenizer's vocabulary, loaded before the clock starts."""
    import duckdb  # noqa: F401
    import rensa  # noqa: F401
    import scipy.sparse.csgraph  # noqa: F401
    import xxhash  # noqa: F401

    from feedstock.stages import decontam, dedup, pii, quality  # noqa: F401
    from feedstock.stages.tokenizers import load_tokenizer

    load_tokenizer({"kind": "tiktoken", "name": "cl100k_base"})


def feed_main(work: Path) -> dict:
    from feedstock.config import parse_config
    from feedstock.finetune import feed
    from feedstock.lake import Lake

    _warm_imports()
    config = parse_config(_config(work))
    lake = Lake(config.lake)
    seconds, cpu, peaks = {}, {}, {"imports": _peak_rss_mb()}
    state: dict = {}
    phases = {
        "prepare": lambda: state.update(prepared=feed.prepare(config, lake, None)),
        "process": lambda: state.update(
            results=[feed.process_source(config, lake, RUN, n, None) for n in state["prepared"]["sources"]]
        ),
        "curate": lambda: state.update(curated=feed.curate(config, lake, RUN, state["results"])),
        "release": lambda: state.update(
            stats=feed.release(
                config,
                lake,
                state["prepared"],
                state["curated"],
                {"dag_id": "b", "task_id": "b", "run_id": RUN},
            )
        ),
    }
    for name, phase in phases.items():
        _reset_peak()
        start, start_cpu = time.perf_counter(), _cpu_seconds()
        phase()
        seconds[name], cpu[name] = time.perf_counter() - start, _cpu_seconds() - start_cpu
        peaks[name] = _peak_rss_mb()
    keys = ("examples_in", "examples_published", "examples_rejected", "rejects_by_reason", "pii", "splits")
    return {
        "seconds": seconds,
        "total_seconds": sum(seconds.values()),
        "cpu_seconds": sum(cpu.values()),
        "peak_rss_mb": max(peaks.values()),
        "phase_peak_rss_mb": {k: round(v) for k, v in peaks.items()},
        "stats": {k: state["stats"].get(k) for k in keys},
        "release_dir": feed.release_dir(lake, state["prepared"]["release"]),
    }


_WORDS_PUNCT = re.compile(r"[^\w\s]+")
_WS = re.compile(r"\s+")


def _words(text: str) -> list[str]:
    return _WORDS_PUNCT.sub(" ", text.lower()).split()


def raw_main(work: Path) -> dict:
    """The same stages with the libraries directly, in one process; per-stage seconds."""
    import numpy as np
    import xxhash
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from feedstock.config import MinHash
    from feedstock.stages.dedup import MinHasher
    from feedstock.stages.pii import redact
    from feedstock.stages.quality import GopherRepetitionFilter
    from feedstock.stages.steps import Document
    from feedstock.stages.tokenizers import load_tokenizer

    _warm_imports()
    took: Counter = Counter()
    clock = time.perf_counter
    start_cpu = _cpu_seconds()

    start = clock()
    encoding = load_tokenizer({"kind": "tiktoken", "name": "cl100k_base"}).encoding
    spec = MinHash(shingle_size=2, threshold=0.5)
    hasher = MinHasher(spec)
    repetition = GopherRepetitionFilter()
    # decontamination: 13-grams of the long questions; short ones (5-12 words) whole, found by their first 5 words
    long_grams: set[int] = set()
    short_items: dict[tuple, list[tuple]] = {}
    with (work / "eval.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            item = _words(json.loads(line)["question"])
            if len(item) >= 13:
                long_grams.update(hash(tuple(item[i : i + 13])) for i in range(len(item) - 12))
            elif len(item) >= 5:
                short_items.setdefault(tuple(item[:5]), []).append(tuple(item))
    took["setup"] += clock() - start

    def contaminated(tokens: list[str]) -> bool:
        for i in range(len(tokens) - 4):
            if len(tokens) - i >= 13 and hash(tuple(tokens[i : i + 13])) in long_grams:
                return True
            for item in short_items.get(tuple(tokens[i : i + 5]), ()):
                if tuple(tokens[i : i + len(item)]) == item:
                    return True
        return False

    kept: list[dict] = []
    ids: list[str] = []
    exact: list[int] = []
    signatures: list[np.ndarray] = []
    buckets: list[np.ndarray] = []
    has_shingles: list[np.ndarray] = []
    rejected: Counter = Counter()

    def flush(batch: list[dict]) -> None:
        t = clock()
        for record in batch:
            for m in record["messages"]:
                m["content"], _ = redact(m["content"])
        t, took["pii"] = clock(), took["pii"] + clock() - t
        texts = [m["content"] for r in batch for m in r["messages"]]
        counts = iter(len(x) for x in encoding.encode_ordinary_batch(texts, num_threads=2))
        tokens = [sum(next(counts) for _ in r["messages"]) for r in batch]
        t, took["tokenize"] = clock(), took["tokenize"] + clock() - t
        good = []
        for record, n in zip(batch, tokens, strict=True):
            answer = "\n".join(m["content"] for m in record["messages"] if m["role"] == "assistant")
            if n < 8 or n > 4096 or len(answer.split()) < 3:
                rejected["quality:length"] += 1
            elif repetition.filter(Document("", "", answer)) is not True:
                rejected["quality:repetition"] += 1
            else:
                good.append(record)
        t, took["quality"] = clock(), took["quality"] + clock() - t
        clean = []
        for record in good:
            if contaminated(_words("\n".join(m["content"] for m in record["messages"]))):
                rejected["decontamination"] += 1
            else:
                clean.append(record)
        t, took["decontamination"] = clock(), took["decontamination"] + clock() - t
        for record in clean:
            body = " ".join(m["content"] for m in record["messages"])
            exact.append(xxhash.xxh3_64_intdigest(_WS.sub(" ", body.lower()).strip().encode()))
        sig, mask = hasher.signatures(
            ["\n".join(m["content"] for m in r["messages"] if m["role"] == "user") for r in clean]
        )
        signatures.append(sig)
        buckets.append(hasher.buckets(sig))
        has_shingles.append(mask)
        ids.extend(r["id"] for r in clean)
        kept.extend(clean)
        took["minhash_exact"] += clock() - t

    batch: list[dict] = []
    for path in sorted((work / "data").glob("*.jsonl")):
        with path.open("rb") as handle:
            for line in handle:
                t = clock()
                record = json.loads(line)
                roles = [m["role"] for m in record["messages"] if m["role"] != "system"]
                ok = (
                    roles
                    and roles[-1] == "assistant"
                    and all(r == ("user", "assistant")[i % 2] for i, r in enumerate(roles))
                )
                took["read"] += clock() - t
                if ok:
                    batch.append(record)
                if len(batch) >= BATCH:
                    flush(batch)
                    batch = []
    if batch:
        flush(batch)

    # dedup: exact (first of each hash, by id), then LSH candidates verified at the threshold, one per component
    t = clock()
    order = sorted(range(len(ids)), key=ids.__getitem__)
    alive = np.ones(len(ids), dtype=bool)
    first: dict[int, int] = {}
    for i in order:
        if exact[i] in first:
            alive[i] = False
        else:
            first[exact[i]] = i
    sig = np.concatenate(signatures) if signatures else np.zeros((0, spec.num_perm), np.uint32)
    bands = np.concatenate(buckets) if buckets else np.zeros((0, spec.bands), np.int64)
    usable = alive & (np.concatenate(has_shingles) if has_shingles else np.zeros(0, bool))
    rank = np.empty(len(ids), dtype=np.int64)
    rank[order] = np.arange(len(ids))

    def candidate_pairs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        members = np.nonzero(mask)[0]
        members = members[np.argsort(rank[members])]  # the smallest id first in each bucket
        left, right = [], []
        for band in range(spec.bands):
            _, index, inverse = np.unique(bands[members, band], return_index=True, return_inverse=True)
            head = members[index[inverse]]
            other = head != members
            left.append(members[other])
            right.append(head[other])
        left, right = np.concatenate(left), np.concatenate(right)
        pairs = np.unique(np.stack([left, right], axis=1), axis=0) if len(left) else np.zeros((0, 2), int)
        return pairs[:, 0], pairs[:, 1]

    def components(left: np.ndarray, right: np.ndarray) -> np.ndarray:
        graph = coo_matrix((np.ones(len(left)), (left, right)), shape=(len(ids), len(ids)))
        return connected_components(graph, directed=False)[1]

    left, right = candidate_pairs(usable)
    similar = (sig[left] == sig[right]).mean(axis=1) >= spec.threshold
    component = components(left[similar], right[similar])
    keeper: dict[int, int] = {}
    for i in order:
        if usable[i]:
            keeper.setdefault(int(component[i]), i)
    involved = set(left[similar].tolist()) | set(right[similar].tolist())
    for i in involved:
        if keeper[int(component[i])] != i:
            alive[i] = False
    took["dedup"] += clock() - t

    # splits: groups of near prompts (estimated Jaccard >= 0.25) share the split of the group's smallest id
    t = clock()
    left, right = candidate_pairs(alive & usable)
    near = (sig[left] == sig[right]).mean(axis=1) >= 0.25
    component = components(left[near], right[near])
    group_head: dict[int, int] = {}
    for i in order:
        if alive[i]:
            group_head.setdefault(int(component[i]), i)
    split = {}
    for i in np.nonzero(alive)[0]:
        head = ids[group_head[int(component[i])]]
        split[i] = (
            "validation" if xxhash.xxh3_64_intdigest(f"42\0{head}".encode()) / 2**64 >= 0.9 else "train"
        )
    took["split"] += clock() - t

    t = clock()
    with (work / "raw-out.jsonl").open("w", encoding="utf-8") as out:
        for i in order:
            if alive[i]:
                out.write(
                    json.dumps({"messages": kept[i]["messages"], "split": split[i]}, ensure_ascii=False)
                    + "\n"
                )
    took["write"] += clock() - t
    cpu = _cpu_seconds() - start_cpu
    total = sum(took.values())
    core = sum(took[k] for k in ("setup", "read", "pii", "tokenize", "minhash_exact", "dedup", "write"))
    return {
        "seconds": {k: round(v, 2) for k, v in took.items()},
        "total_seconds": total,
        "core_seconds": core,
        "cpu_seconds": cpu,
        "peak_rss_mb": _peak_rss_mb(),
        "published": int(alive.sum()),
        "rejected": dict(rejected),
        "dedup_removed": int(len(kept) - alive.sum()),
    }


def _child(mode: str, work: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_finetune", mode, str(work)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{mode} run failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---- quality against the truth ----------------------------------------------------------------------------


def _bigrams(text: str) -> set[tuple[str, ...]]:
    from feedstock.stages.dedup import words

    w = words(text)
    return set(zip(w, w[1:], strict=False)) if len(w) >= 2 else {tuple(w)}


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def _prompt(record: dict) -> str:
    return "\n".join(m["content"] for m in record["messages"] if m["role"] == "user")


def _pairs(pairs: dict[str, str], status: dict[str, str], split: dict[str, str]) -> dict:
    out = Counter()
    for copy, original in pairs.items():
        a, b = status.get(copy, "missing"), status.get(original, "missing")
        if any(s != "published" and not s.startswith("dedup:") for s in (a, b)):
            out["left_out_rejected_earlier"] += 1
            continue
        out["pairs"] += 1
        if a.startswith("dedup:") or b.startswith("dedup:"):
            out["caught"] += 1
            out["copy_removed" if a.startswith("dedup:") else "original_removed_instead"] += 1
            out["both_removed"] += a.startswith("dedup:") and b.startswith("dedup:")
        else:
            out["both_published"] += 1
            out["both_published_different_splits"] += split.get(copy) != split.get(original)
    result = dict(out)
    result["recall"] = round(out["caught"] / out["pairs"], 4) if out["pairs"] else None
    return result


def _jaccard_summary(pairs: dict[str, str], prompts: dict[str, str], status: dict[str, str]) -> dict:
    import numpy as np

    values, caught = [], []
    for copy, original in pairs.items():
        if any(
            s != "published" and not s.startswith("dedup:") for s in (status.get(copy), status.get(original))
        ):
            continue  # one of them was rejected before dedup (left out of the recall too)
        values.append(_jaccard(_bigrams(prompts[copy]), _bigrams(prompts[original])))
        caught.append(
            status.get(copy, "").startswith("dedup:") or status.get(original, "").startswith("dedup:")
        )
    v, c = np.array(values), np.array(caught)
    out = {"min": round(float(v.min()), 3), "p5": round(float(np.percentile(v, 5)), 3)}
    out["median"] = round(float(np.median(v)), 3)
    for low, high in ((0.0, 0.5), (0.5, 0.6), (0.6, 0.7), (0.7, 1.01)):
        inside = (v >= low) & (v < high)
        out[f"removed_share_jaccard_{low}-{min(high, 1.0)}"] = (
            f"{int(c[inside].sum())}/{int(inside.sum())}" if inside.any() else "0/0"
        )
    return out


def _near_pairs_across_splits(prompts: dict[str, str], split: dict[str, str]) -> dict:
    """Every pair of published prompts with exact word 2-gram Jaccard >= 0.25 (candidates: pairs sharing at least
    two 2-grams that occur in at most 200 prompts; any pair at 0.25 shares several such), by split."""
    import numpy as np
    from scipy.sparse import csr_matrix

    ids = list(prompts)
    sets = [_bigrams(prompts[i]) for i in ids]
    df = Counter(g for s in sets for g in s)
    vocab: dict = {}
    rows, cols = [], []
    for r, s in enumerate(sets):
        for g in s:
            if df[g] <= 200:
                rows.append(r)
                cols.append(vocab.setdefault(g, len(vocab)))
    matrix = csr_matrix((np.ones(len(rows), np.int32), (rows, cols)), shape=(len(ids), len(vocab)))
    shared = (matrix @ matrix.T).tocoo()
    keep = (shared.row < shared.col) & (shared.data >= 2)
    out = Counter()
    straddling = []
    for r, c in zip(shared.row[keep].tolist(), shared.col[keep].tolist(), strict=True):
        j = _jaccard(sets[r], sets[c])
        across = split[ids[r]] != split[ids[c]]
        for t in (0.5, 0.25):
            if j >= t:
                out[f"pairs_jaccard_ge_{t}"] += 1
                out[f"pairs_jaccard_ge_{t}_across_splits"] += across
        if across and j >= 0.25:
            straddling.append(round(j, 3))
    result = {k: out[k] for k in ("pairs_jaccard_ge_0.5", "pairs_jaccard_ge_0.5_across_splits")}
    result |= {k: out[k] for k in ("pairs_jaccard_ge_0.25", "pairs_jaccard_ge_0.25_across_splits")}
    return result | {"jaccard_of_pairs_across_splits": sorted(straddling), "published_prompts": len(ids)}


def _pii_leaks(release_dir: Path, truth, status: dict[str, str], lake) -> dict:
    """grep -F every export file for the planted strings, and for fragments of them."""
    full, fragments = [], []
    for values in truth.pii.values():
        for kind, value in values:
            full.append(value)
            if kind == "email":
                fragments.append(value.split("@")[0] + "@")
            else:  # the last two digit groups ("903-9476"), or the last 9 characters of one long run
                groups = [m.start() for m in re.finditer(r"\d+", value)]
                fragments.append(value[-9:] if len(groups) < 3 else value[groups[-2] :])
    files = sorted(str(p) for p in release_dir.rglob("*.jsonl"))

    def grep(patterns: list[str]) -> Counter:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
            handle.write("\n".join(patterns) + "\n")
        done = subprocess.run(
            ["grep", "-F", "-o", "-h", "-f", handle.name, *files], capture_output=True, text=True
        )
        os.unlink(handle.name)
        if done.returncode not in (0, 1):
            raise RuntimeError(done.stderr)
        return Counter(done.stdout.splitlines())

    published_strings = sum(len(v) for rid, v in truth.pii.items() if status.get(rid) == "published")
    leaks, fragment_hits = grep(full), grep(fragments)
    table = lake.read("finetune.examples", columns=["record_id", "messages"])
    wanted = {f"chats/{rid}": [v for _, v in values] for rid, values in truth.pii.items()}
    in_table = 0
    for rid, messages in zip(table["record_id"].to_pylist(), table["messages"].to_pylist(), strict=True):
        if rid in wanted:
            text = "\n".join(m["content"] for m in messages)
            in_table += sum(v in text for v in wanted[rid])
    return {
        "planted_strings": len(full),
        "planted_strings_in_published_examples": published_strings,
        "export_files_searched": len(files),
        "left_in_exports": sum(leaks.values()),
        "left_in_exports_by_type": dict(
            Counter(kind for values in truth.pii.values() for kind, v in values if leaks.get(v))
        ),
        "fragments_left_in_exports": sum(fragment_hits.values()),
        "left_in_finetune_examples_table": in_table,
        "examples": sorted(leaks)[:5],
    }


def evaluate(work: Path, records: list[dict], truth, release_dir: str) -> dict:
    from feedstock.lake import Lake

    lake = Lake(str(work / "lake"))
    status: dict[str, str] = {}
    split: dict[str, str] = {}
    examples = lake.read("finetune.examples", columns=["record_id", "status", "split"])
    for rid, s, sp in zip(*(examples[c].to_pylist() for c in ("record_id", "status", "split")), strict=True):
        status[rid.split("/", 1)[1]], split[rid.split("/", 1)[1]] = s, sp
    rejects = lake.read("finetune.rejects", columns=["record_id", "reason"])
    for rid, reason in zip(rejects["record_id"].to_pylist(), rejects["reason"].to_pylist(), strict=True):
        status[rid.split("/", 1)[1]] = reason
    prompts = {r["id"]: _prompt(r) for r in records}

    untouched = truth.untouched
    reached = [i for i in untouched if status.get(i) == "published" or status.get(i, "").startswith("dedup:")]
    removed = [i for i in reached if status[i].startswith("dedup:")]
    eval_ids = truth.eval_items
    eval_status = Counter(
        "decontamination" if status.get(i, "").startswith("decontamination:") else status.get(i, "missing")
        for i in eval_ids
    )
    before = sum(v for k, v in eval_status.items() if k.split(":")[0] in ("format", "quality", "length"))
    decontam_fp = sum(1 for i, s in status.items() if s.startswith("decontamination:") and i not in eval_ids)
    published = {i: prompts[i] for i, s in status.items() if s == "published"}
    result = {
        "examples": len(records),
        "planted": truth.counts(),
        "status_counts": dict(Counter(s if s == "published" else s for s in status.values()).most_common()),
        "missing_from_tables": sum(1 for r in records if r["id"] not in status),
        "exact_copies": _pairs(truth.exact, status, split),
        "near_duplicates": _pairs(truth.near, status, split),
        "near_duplicates_prompt_2gram_jaccard": _jaccard_summary(truth.near, prompts, status),
        "related_pairs_20_30pct": _pairs(truth.related, status, split),
        "related_pairs_prompt_2gram_jaccard": _jaccard_summary(truth.related, prompts, status),
        "untouched": {
            "reached_dedup": len(reached),
            "removed_by_dedup": len(removed),
            "false_positive_rate": round(len(removed) / len(reached), 5) if reached else None,
            "by_reason": dict(Counter(status[i] for i in removed)),
        },
        "published_near_pairs": _near_pairs_across_splits(published, split),
        "eval_items": {
            "planted": len(eval_ids),
            "published": eval_status["published"],
            "rejected_share": round(1 - eval_status["published"] / len(eval_ids), 4) if eval_ids else None,
            "rejected_as_decontamination": eval_status["decontamination"],
            "rejected_before_decontamination": before,
            "decontamination_recall": round(eval_status["decontamination"] / (len(eval_ids) - before), 4)
            if len(eval_ids) > before
            else None,
            "other_status": {k: v for k, v in eval_status.items() if k != "decontamination"},
            "false_positives_other_examples": decontam_fp,
        },
        "pii": _pii_leaks(Path(release_dir), truth, status, lake),
    }
    return result


# ---- the suite ---------------------------------------------------------------------------------------------


def _prepare(work: Path, n: int, evals: list[dict]):
    from benchmarks import finetune_data

    records, truth = finetune_data.generate(n, seed=SEED, evals=evals)
    finetune_data.write(records, work / "data")
    finetune_data.write_eval_set(evals, work / "eval.jsonl")
    return records, truth


def _headline(quality: dict, throughput: dict, memory: dict) -> dict:
    near, exact = quality["near_duplicates"], quality["exact_copies"]
    scan = quality["published_near_pairs"]
    across = near.get("both_published_different_splits", 0) + scan["pairs_jaccard_ge_0.5_across_splits"]
    grouped_across = scan["pairs_jaccard_ge_0.25_across_splits"]
    rows = {
        "near_duplicate_recall": (near["recall"], near["recall"] is not None and near["recall"] >= 0.95),
        "exact_copy_recall": (exact["recall"], exact["recall"] == 1.0),
        "untouched_removed_share": (
            quality["untouched"]["false_positive_rate"],
            quality["untouched"]["false_positive_rate"] <= 0.01,
        ),
        # planted 5-10% pairs both published in different splits + any published pair at J >= 0.5 across splits
        "near_duplicate_pairs_across_splits": (across, across == 0),
        # the feed's own promise (curate.py): prompts at J >= SPLIT_JACCARD (0.25) never straddle splits
        "pairs_at_split_grouping_jaccard_0.25_across_splits": (
            f"{grouped_across} of {scan['pairs_jaccard_ge_0.25']}",
            grouped_across == 0,
        ),
        "eval_items_rejected_share": (
            quality["eval_items"]["rejected_share"],
            quality["eval_items"]["rejected_share"] == 1.0,
        ),
        "pii_left_in_exports": (quality["pii"]["left_in_exports"], quality["pii"]["left_in_exports"] == 0),
        "throughput_ratio_raw_over_feed_same_stages": (
            throughput["ratio_raw_over_feed_same_stages"],
            throughput["ratio_raw_over_feed_same_stages"] >= 0.8,
        ),
        "throughput_ratio_raw_over_feed_core_stages": (
            throughput["ratio_raw_over_feed_core_stages"],
            throughput["ratio_raw_over_feed_core_stages"] >= 0.8,
        ),
        "peak_memory_ratio_4x_over_1x": (memory["ratio_4x_over_1x"], memory["ratio_4x_over_1x"] <= 1.3),
    }
    return {name: {"value": v, "meets_target": ok} for name, (v, ok) in rows.items()}


def _code_version() -> dict:
    """The commit measured, and whether include/ had uncommitted changes (the feed's code)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT)
        return done.stdout.strip()

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "include_dirty": bool(git("status", "--porcelain", "include")),
    }


def run() -> dict:
    from benchmarks import finetune_data

    timings = {}
    root = Path(tempfile.mkdtemp(prefix="feedstock-bench-finetune-"))
    try:
        start = time.perf_counter()
        evals = finetune_data.eval_set()
        sizes = {"1x": N_LARGE // 4, "4x": N_LARGE}
        data = {}
        for name, n in sizes.items():
            data[name] = _prepare(root / name, n, evals)
        timings["generate"] = time.perf_counter() - start
        print(f"generated {sizes} in {timings['generate']:.0f}s", flush=True)

        feed_runs, quality = {}, {}
        for name in ("1x", "4x"):
            start = time.perf_counter()
            feed_runs[name] = _child("feed", root / name)
            timings[f"feed_{name}"] = time.perf_counter() - start
            print(f"feed {name}: {feed_runs[name]['total_seconds']:.0f}s", flush=True)
            start = time.perf_counter()
            records, truth = data[name]
            quality[name] = evaluate(root / name, records, truth, feed_runs[name]["release_dir"])
            timings[f"evaluate_{name}"] = time.perf_counter() - start
        start = time.perf_counter()
        raw = _child("raw", root / "4x")
        timings["raw_4x"] = time.perf_counter() - start
        print(f"raw 4x: {raw['total_seconds']:.0f}s", flush=True)

        n = sizes["4x"]
        big = feed_runs["4x"]
        throughput = {
            "examples": n,
            "note": "the issue asks for 100k; see the module docstring" if n < 100_000 else "",
            "feed_seconds": round(big["total_seconds"], 1),
            "feed_stage_seconds": {k: round(v, 1) for k, v in big["seconds"].items()},
            "feed_examples_per_s": round(n / big["total_seconds"]),
            "raw_seconds_same_stages": round(raw["total_seconds"], 1),
            "raw_seconds_core_stages": round(raw["core_seconds"], 1),
            "raw_stage_seconds": raw["seconds"],
            "raw_examples_per_s_same_stages": round(n / raw["total_seconds"]),
            "raw_examples_per_s_core_stages": round(n / raw["core_seconds"]),
            "ratio_raw_over_feed_same_stages": round(raw["total_seconds"] / big["total_seconds"], 3),
            "ratio_raw_over_feed_core_stages": round(raw["core_seconds"] / big["total_seconds"], 3),
            "cpu_seconds": {
                "feed": round(big["cpu_seconds"], 1),
                "raw_same_stages": round(raw["cpu_seconds"], 1),
            },
            "ratio_raw_over_feed_same_stages_cpu": round(raw["cpu_seconds"] / big["cpu_seconds"], 3),
            "raw_published": raw["published"],
            "feed_published": big["stats"]["examples_published"],
            "raw_rejected": raw["rejected"],
            "raw_dedup_removed": raw["dedup_removed"],
            "raw_peak_rss_mb": round(raw["peak_rss_mb"]),
        }
        memory = {
            "examples": sizes,
            "input_mb": {
                k: round(sum(p.stat().st_size for p in (root / k / "data").glob("*.jsonl")) / 1e6, 1)
                for k in sizes
            },
            "feed_peak_rss_mb": {k: round(feed_runs[k]["peak_rss_mb"]) for k in sizes},
            "feed_phase_peak_rss_mb": {k: feed_runs[k]["phase_peak_rss_mb"] for k in sizes},
            "ratio_4x_over_1x": round(feed_runs["4x"]["peak_rss_mb"] / feed_runs["1x"]["peak_rss_mb"], 2),
            "feed_1x_seconds": {k: round(v, 1) for k, v in feed_runs["1x"]["seconds"].items()},
        }
        return {
            "code": _code_version(),
            "targets": TARGETS,
            "headline": _headline(quality["4x"], throughput, memory),
            "quality": quality["4x"],
            "quality_1x": quality["1x"],
            "feed_stats_4x": big["stats"],
            "throughput": throughput,
            "memory": memory,
            "suite_seconds": {k: round(v, 1) for k, v in timings.items()},
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] in ("feed", "raw"):
        work = Path(sys.argv[2])
        print(json.dumps(feed_main(work) if sys.argv[1] == "feed" else raw_main(work)))
    else:
        print(json.dumps(run(), indent=2))
