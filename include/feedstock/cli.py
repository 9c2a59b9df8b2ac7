"""The ``feedstock`` command line. JSON goes to stdout; errors are one line on stderr with a non-zero exit."""

from __future__ import annotations

import argparse
import json
import sys

from feedstock.config import ConfigError, load_config
from feedstock.lake import Lake


def _lake() -> Lake:
    return Lake(load_config().lake)


def cmd_catalog(args: argparse.Namespace) -> int:
    from feedstock.catalog import catalog, render_table

    entries = catalog(_lake())
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2, default=str))
    else:
        print(render_table(entries))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="feedstock", description="Inspect the feedstock lake and its feeds."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    catalog = commands.add_parser("catalog", help="list every dataset in the lake")
    catalog.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    catalog.set_defaults(func=cmd_catalog)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError, OSError, ValueError) as exc:
        print(f"feedstock {args.command}: {exc}".splitlines()[0], file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
