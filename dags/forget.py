"""
### forget

Removes a person's (or any) records from every feed, provably: the right to be forgotten. Trigger it from the UI
or the shell with a request naming the records:

- `doc_ids`: document or record ids (`handbook/people/jane.md`, `tickets/1004`, `support_chats/good-01`);
- `source`: every record of a source;
- `contains`: every record holding one of these strings (an e-mail address, a customer number);
- `verify`: more strings the verification must not find afterwards (a name, a phone number).

1. **resolve**: the record ids the request names (bronze tables, corpus and dataset sources, the cache).
2. **tables**, **rag**, **pretrain**, **finetune**, **cache**: each store forgets them. Every bronze version
   (Delta delete, then the files that held them are removed), the LanceDB index (delete, compaction, a fresh
   full-text index, old versions removed; the search pointer follows), each pretraining and fine-tuning release
   (only the affected shards and files are rewritten; the data card notes the deletion) and the dedup state.
3. **block**: `governance.forgotten` keeps the ids, so a source that still holds a record does not bring it back.
4. **verify**: every file under the lake root and every LanceDB version is searched for the strings.
5. **receipt**: `governance.forget_receipts` records what was removed where, in which versions, and the
   verification, with hashes in place of the strings and ids. Strings found: the run fails after the receipt.

The request itself (with the strings) stays in Airflow's run configuration: clear or delete the run when done.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

import feedstock_airflow as fa


@dag(
    schedule=None,
    start_date=fa.START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=fa.DEFAULT_ARGS,
    tags=["feedstock", "governance"],
    doc_md=__doc__,
    render_template_as_native_obj=True,
    params={
        "doc_ids": Param([], type="array", description="Record ids to forget"),
        "source": Param(None, type=["null", "string"], description="Forget every record of this source"),
        "contains": Param([], type="array", description="Forget every record holding one of these strings"),
        "verify": Param([], type="array", description="More strings no file may hold afterwards"),
    },
)
def forget():
    def request():
        from feedstock.forget import ForgetRequest

        with fa.one_line_errors():
            return ForgetRequest.from_params(dict(get_current_context()["params"]))

    @task
    def resolve() -> list[str]:
        from feedstock import forget as library

        cfg = fa.config()
        with fa.one_line_errors():
            ids = library.resolve(cfg, fa.lake(cfg), request())
        fa.log.info("forget: %d records", len(ids))
        return ids

    def store_task(store: str):
        @task(task_id=store, pool=fa.RELEASE_POOL)
        def forget_in(ids: list[str]) -> dict:
            from feedstock import forget as library

            cfg = fa.config()
            context = get_current_context()
            removed = library.forget_store(store, cfg, fa.lake(cfg), ids, request(), fa.produced_by(context))
            fa.log.info("forget %s: %s", store, removed)
            return removed

        return forget_in

    @task
    def block(ids: list[str]) -> None:
        from feedstock import forget as library

        cfg = fa.config()
        if ids:
            library.block(fa.lake(cfg), ids, fa.produced_by(get_current_context()))

    @task
    def verify() -> dict:
        from feedstock import forget as library

        cfg = fa.config()
        return library.verify(fa.lake(cfg), request().strings)

    @task
    def receipt(ids: list[str], removed: list[dict], verification: dict) -> dict:
        from feedstock import forget as library

        cfg = fa.config()
        row = library.receipt(
            fa.lake(cfg),
            request(),
            ids,
            dict(zip(library.STORES, removed, strict=True)),
            verification,
            fa.produced_by(get_current_context()),
        )
        fa.log.info("forget receipt: %s", {k: v for k, v in row.items() if k != "record_hashes"})
        if not row["verified"]:
            raise AirflowFailException(
                f"forget: the strings are still in {row['found']} places: {verification['found'][:5]}"
            )
        return row

    ids = resolve()
    removed, previous = [], ids
    for store in ("tables", "rag", "pretrain", "finetune", "cache"):
        done = store_task(store)(ids)
        previous >> done
        removed.append(done)
        previous = done
    blocked = block(ids)
    previous >> blocked
    checked = verify()
    blocked >> checked
    receipt(ids, removed, checked)


forget()
