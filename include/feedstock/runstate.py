"""What each feed last built from, so that a run whose inputs did not change costs almost nothing.

A feed's ``prepare`` computes a fingerprint of everything its output depends on (the pinned bronze versions, the
corpus file versions, the relevant configuration). When a run finishes, successfully, with or without a new
release, the feed records that fingerprint in ``<lake>/<feed>/STATE.json`` (written atomically). The next run
whose fingerprint is the same skips dbt, the model load and every later task: "nothing changed since release N".
"""

from __future__ import annotations

from typing import Any

from feedstock.errors import ReleaseConflict
from feedstock.lake import Lake, join


def state_uri(lake: Lake, feed: str) -> str:
    return join(lake.root, feed, "STATE.json")


def last(lake: Lake, feed: str) -> dict[str, Any] | None:
    uri = state_uri(lake, feed)
    try:
        return lake.read_json(uri) if lake.exists(uri) else None
    except ValueError:  # an unreadable state only costs one full run
        return None


def unchanged(lake: Lake, feed: str, fingerprint: str) -> str | None:
    """``nothing changed since release N`` when the last finished run had this fingerprint, else None."""
    state = last(lake, feed)
    if state and state.get("fingerprint") == fingerprint:
        return f"nothing changed since release {state.get('release')}: inputs {fingerprint} already built"
    return None


def record(lake: Lake, feed: str, fingerprint: str, release: Any, run_id: str) -> None:
    lake.write_json(state_uri(lake, feed), {"fingerprint": fingerprint, "release": release, "run_id": run_id})


def releases(lake: Lake, table: str) -> list[int]:
    """The release numbers ``table`` (a feed's publishing table) holds, in order."""
    rows = lake.read(table, columns=["release"])
    return sorted(set(rows["release"].to_pylist())) if rows is not None and rows.num_rows else []


def already_published(lake: Lake, table: str, number: int, run_id: str | None, feed: str) -> bool:
    """Whether this run published release ``number`` already (a retry after the publishing commit).

    Raises :class:`~feedstock.errors.ReleaseConflict` when another run published that number (or a later one)
    while this one ran: the run must be cleared to build on top of it.
    """
    published = releases(lake, table)
    if not published or published[-1] < number:
        return False
    if release_run(lake, table, number) != run_id:
        raise ReleaseConflict(
            f"{feed} release {published[-1]} was published by another run while this one ran; clear this run "
            f"to build release {published[-1] + 1} on top of it"
        )
    return True


def has_release(lake: Lake, table: str, number: int) -> bool:
    """Whether ``table`` already holds rows of release ``number`` (a retried release skips that commit)."""
    import pyarrow.dataset as ds

    dataset = lake.dataset(table)
    return dataset is not None and dataset.count_rows(filter=ds.field("release") == number) > 0


def release_run(lake: Lake, table: str, number: int) -> str | None:
    """The run id whose commit to ``table`` (a feed's publishing table) published release ``number``."""
    for entry in lake.history(table):
        if (entry.get("stats") or {}).get("release") == number:
            return (entry.get("produced_by") or {}).get("run_id")
    return None
