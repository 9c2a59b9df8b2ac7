"""The ``feedstock`` command line. JSON goes to stdout; errors are one line on stderr with a non-zero exit."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from feedstock.config import Config, ConfigError, load_config
from feedstock.lake import Lake


def _config() -> Config:
    """The configuration; a broken source is one warning line, and the command goes on without it."""
    config = load_config()
    for broken in config.broken:
        print(f"warning: {broken.error}", file=sys.stderr)
    return config


def _lake() -> Lake:
    return Lake(_config().lake)


def cmd_catalog(args: argparse.Namespace) -> int:
    from feedstock.catalog import catalog, render_table

    config = _config()
    entries = catalog(
        Lake(config.lake), {s.name for s in (*config.sources, *config.broken)}
    )  # bronze of sources no longer configured: detached
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2, default=str))
    else:
        print(render_table(entries))
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    from feedstock.lineage import render, trace

    config = _config()
    found = trace(config, Lake(config.lake), args.record)
    print(json.dumps(found.to_dict(), indent=2) if args.json else render(found))
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from feedstock.rag.index import json_results, search
    from feedstock.serving.client import service_search

    config = _config()
    results = None if args.local else service_search(config, args)
    if results is None:  # no service up: load the model here and read the lake directly
        results = search(
            config,
            Lake(config.lake),
            args.question,
            k=args.k,
            source=args.source,
            mode=args.mode,
            tags=args.tag,
        )
    if args.json:
        print(json_results(results))
        return 0
    for rank, hit in enumerate(results, 1):
        where = " > ".join(p for p in (hit["title"], hit["section"]) if p)
        page = f" (page {hit['page']})" if hit["page"] else ""
        print(f"{rank}. [{hit['score']:.3f}] {hit['doc_id']}{page}\n   {where}\n   {hit['text'][:240]!s}\n")
    if not results:
        print("no results")
    return 0


def cmd_pretrain_decode(args: argparse.Namespace) -> int:
    from feedstock.pretrain.feed import decode

    release = args.release if args.release == "latest" else int(args.release)
    shard = args.shard if args.shard in ("train", "val") else int(args.shard)
    print(decode(_lake(), release, shard, args.doc, args.format))
    return 0


def cmd_finetune_show(args: argparse.Namespace) -> int:
    from feedstock.finetune.feed import show

    shown = show(_lake(), args.release, args.split, args.n)
    if args.json:
        print(json.dumps(shown, indent=2, ensure_ascii=False))
        return 0
    print(f"fine-tuning release {shown['release']}, {shown['split']}: {shown['total']} examples\n")
    for example in shown["examples"]:
        print(
            f"=== {example['record_id']} ({example['kind']}, {example['tokens']} tokens, row {example['row']}"
            + (f", access: {', '.join(example['access_tags'])}" if example.get("access_tags") else "")
            + ")"
        )
        for turn in example["messages"]:
            print(f"[{turn['role']}] {turn['content']}")
        for label in ("chosen", "rejected"):
            for turn in example[label] or ():
                print(f"[{label}] {turn['content']}")
        print()
    return 0


def cmd_finetune_review_tasks(args: argparse.Namespace) -> int:
    from feedstock.finetune.review import write_tasks

    with open(args.records, encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    print(json.dumps(write_tasks(records, args.out)))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from feedstock.serving.service import run

    run(_config(), host=args.host, port=args.port)
    return 0


def cmd_cache_calibrate(args: argparse.Namespace) -> int:
    from feedstock.config import Embedding
    from feedstock.rag.embedders import embedder
    from feedstock.serving.calibrate import calibrate

    config = _config()
    spec: Embedding = config.rag.embedding
    result = calibrate(
        _lake(), args.pairs or config.serve.cache.pairs, embedder(spec).embed, args.max_false_hits
    )
    print(json.dumps(result, indent=2))
    return 0


def cmd_cache_refresh(args: argparse.Namespace) -> int:
    from feedstock.serving.cache import refresh

    config = _config()
    print(json.dumps(refresh(config, Lake(config.lake))))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="feedstock", description="Inspect the feedstock lake and its feeds."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    catalog = commands.add_parser("catalog", help="list every dataset in the lake")
    catalog.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    catalog.set_defaults(func=cmd_catalog)
    lineage = commands.add_parser(
        "lineage", help="every artifact holding a record (a doc id or <source>/<key>), in every feed"
    )
    lineage.add_argument("record", help="a doc id or source record id, e.g. tickets/1004")
    lineage.add_argument("--json", action="store_true", help="print the whole answer as JSON")
    lineage.set_defaults(func=cmd_lineage)
    search = commands.add_parser("search", help="search the RAG index")
    search.add_argument("question")
    search.add_argument("-k", type=int, default=5, help="number of chunks (default 5)")
    search.add_argument("--source", help="only chunks of this source")
    search.add_argument("--tag", action="append", help="only chunks carrying this access tag (repeatable)")
    search.add_argument(
        "--mode",
        choices=["vector", "fts", "hybrid"],
        default=None,
        help="vector similarity, full-text (BM25) or both fused (RRF; --json explains each score); "
        "default: rag.search_mode (vector)",
    )
    search.add_argument("--json", action="store_true", help="print a JSON list")
    search.add_argument(
        "--access",
        default="",
        help="through the service: the access tags to present (X-Access-Tags), comma-separated; "
        "an API key is read from FEEDSTOCK_API_KEY",
    )
    search.add_argument("--local", action="store_true", help="do not use the service: load the model here")
    search.set_defaults(func=cmd_search)
    serve = commands.add_parser("serve", help="run the search API and the semantic cache (serve.host:port)")
    serve.add_argument("--host", help="listen on this address (default: serve.host)")
    serve.add_argument("--port", type=int, help="listen on this port (default: serve.port)")
    serve.set_defaults(func=cmd_serve)
    cache = commands.add_parser("cache", help="the semantic cache")
    cache_commands = cache.add_subparsers(dest="cache_command", required=True)
    calibrate = cache_commands.add_parser(
        "calibrate", help="measure the similarity threshold on labelled pairs"
    )
    calibrate.add_argument("--pairs", help="a pairs file (default: serve.cache.pairs)")
    calibrate.add_argument("--max-false-hits", type=float, default=0.01, help="share of wrong hits allowed")
    calibrate.set_defaults(func=cmd_cache_calibrate)
    refresh = cache_commands.add_parser(
        "refresh",
        help="delete entries grounded on documents that changed, load serve.cache.warm (rag_feed does both)",
    )
    refresh.set_defaults(func=cmd_cache_refresh)
    pretrain = commands.add_parser("pretrain", help="inspect the pretraining releases")
    pretrain_commands = pretrain.add_subparsers(dest="pretrain_command", required=True)
    decode = pretrain_commands.add_parser("decode", help="print the text of a token shard's documents")
    decode.add_argument("release", help="a release number, or latest")
    decode.add_argument(
        "shard", help="the output shard number (shard-NNNNN), or train / val for nanoGPT's files"
    )
    decode.add_argument("--doc", type=int, help="only this document (0-based) of the file")
    decode.add_argument(
        "--format",
        choices=("megatron", "nanogpt", "parquet"),
        help="read this format's file (default: the release's token files)",
    )
    decode.set_defaults(func=cmd_pretrain_decode)
    finetune = commands.add_parser("finetune", help="inspect the fine-tuning releases, prepare human review")
    finetune_commands = finetune.add_subparsers(dest="finetune_command", required=True)
    show = finetune_commands.add_parser("show", help="print a release's examples as a person reads them")
    show.add_argument("release", nargs="?", default="latest", help="a release number, or latest")
    show.add_argument("--split", default="train", choices=("train", "validation", "test"))
    show.add_argument("--n", type=int, default=3, help="how many examples")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_finetune_show)
    review = finetune_commands.add_parser(
        "review-tasks",
        help="write Label Studio tasks (and their labeling config) from JSONL of {prompt, response} to accept or "
        "reject, or {prompt, answer1, answer2} to rank",
    )
    review.add_argument("records", help="a JSONL file of records to review")
    review.add_argument("out", help="the tasks file to write (JSON); the labeling config goes beside it")
    review.set_defaults(func=cmd_finetune_review_tasks)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError, OSError, ValueError, RuntimeError) as exc:
        print(f"feedstock {args.command}: {exc}".splitlines()[0], file=sys.stderr)
        return 1


def run() -> None:
    """The ``feedstock`` console script: :func:`main`, then leave without tearing the interpreter down.

    A pyarrow dataset over a Delta table (deltalake's filesystem handler) leaves Arrow I/O threads behind, and
    destroying them at interpreter exit aborts the process ("terminate called without an active exception",
    SIGABRT) in most runs here, after the command's output is complete (apache/arrow#34314). Flush what Python
    would flush, then ``os._exit``, so the exit code is the command's own.
    """
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
