"""Load ``seed.sql`` (Northwind Cloud products and support tickets) into a fresh database.

``seed.sql`` is portable SQL that runs unchanged on SQLite, DuckDB and PostgreSQL.
This module builds local SQLite and DuckDB files from it; for PostgreSQL use
``psql -d <db> -f seed.sql``.

Usage::

    .venv/bin/python include/sample_data/warehouse/build_seed.py [output.sqlite]
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED_SQL = HERE / "seed.sql"
DEFAULT_SQLITE = HERE / "warehouse.sqlite"


def _read_seed() -> str:
    return SEED_SQL.read_text(encoding="utf-8")


def _fresh(path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for candidate in (path, path.with_name(path.name + ".wal")):
        if candidate.exists():
            candidate.unlink()
    return path


def build_sqlite(path: str | Path = DEFAULT_SQLITE) -> Path:
    """Create a fresh SQLite database file at ``path`` and execute seed.sql into it."""
    path = _fresh(Path(path))
    con = sqlite3.connect(path)
    try:
        con.executescript(_read_seed())
        con.commit()
    finally:
        con.close()
    return path


def build_duckdb(path: str | Path) -> Path:
    """Create a fresh DuckDB database file at ``path`` and execute seed.sql into it."""
    import duckdb  # imported lazily so the SQLite path has no extra dependency

    path = _fresh(Path(path))
    con = duckdb.connect(str(path))
    try:
        con.execute(_read_seed())
    finally:
        con.close()
    return path


def main(argv: list[str]) -> None:
    target = Path(argv[1]) if len(argv) > 1 else DEFAULT_SQLITE
    out = build_sqlite(target)
    con = sqlite3.connect(out)
    try:
        counts = {t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("products", "tickets")}
    finally:
        con.close()
    print(f"Wrote {out} ({counts['products']} products, {counts['tickets']} tickets)")


if __name__ == "__main__":
    main(sys.argv)
