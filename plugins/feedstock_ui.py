"""The "Feeds" page in the Airflow UI: a FastAPI app mounted at ``/feedstock`` and shown in the navigation.

Every route requires an authenticated Airflow user (the UI's own session cookie, or a bearer token): an
anonymous request gets 401 and no data. The page itself is :mod:`feedstock.catalog_page`; nothing here imports
the library before a request arrives, so DAG parsing and the api-server's start-up stay light.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse


async def _authenticated(request: Request) -> None:
    """Airflow's own check (a bearer token, else the UI's session cookie); 401 without either. Imported per request:
    every Airflow process loads this plugin, and only the api-server serves it."""
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.security import HTTPAuthorizationCredentials

    header = request.headers.get("authorization", "")
    bearer = (
        HTTPAuthorizationCredentials(scheme="Bearer", credentials=header[7:])
        if header.lower().startswith("bearer ")
        else None
    )
    await get_user(request, None, bearer)


app = FastAPI(title="feedstock", dependencies=[Depends(_authenticated)])


def _context():
    from feedstock.config import load_config
    from feedstock.lake import Lake

    config = load_config()
    return config, Lake(config.lake)


@app.get("/", response_class=HTMLResponse)
def feeds() -> str:
    from feedstock.catalog_page import page

    return page(*_context())


@app.get("/search", response_class=HTMLResponse)
def search(q: str = Query("", max_length=2000)) -> str:
    from feedstock.catalog_page import page, search_results
    from feedstock.errors import IndexNotReady
    from feedstock.rag.index import search as rag_search

    config, lake = _context()
    try:
        extra = search_results(rag_search(config, lake, q, k=5), q) if q.strip() else ""
    except IndexNotReady as exc:
        extra = f"<p>{exc}</p>"
    return page(config, lake, query=q, extra=extra)


@app.get("/lineage", response_class=HTMLResponse)
def lineage(record: str = Query("", max_length=1000)) -> str:
    from feedstock.catalog_page import lineage_html, page
    from feedstock.lineage import render, trace

    config, lake = _context()
    extra = lineage_html(render(trace(config, lake, record))) if record.strip() else ""
    return page(config, lake, record=record, extra=extra)


@app.get("/dbt-docs", response_class=HTMLResponse)
def dbt_docs() -> HTMLResponse:
    """dbt's own documentation site of the project, as the last ``rag_feed`` run generated it."""
    from feedstock.dbt_docs import read_page

    page = read_page(_context()[1])
    if page is None:
        return HTMLResponse("<p>No dbt docs yet: the first <code>rag_feed</code> run writes them.</p>", 404)
    return HTMLResponse(page)


@app.get("/api/lineage")
def lineage_json(record: str = Query(..., min_length=1, max_length=1000)) -> JSONResponse:
    from feedstock.lineage import trace

    config, lake = _context()
    return JSONResponse(trace(config, lake, record).to_dict())


@app.get("/api/catalog")
def catalog_json() -> JSONResponse:
    from feedstock.catalog import catalog

    config, lake = _context()
    return JSONResponse([e.to_dict() for e in catalog(lake, {s.name for s in config.sources})])


class FeedstockPlugin(AirflowPlugin):
    name = "feedstock"
    fastapi_apps = [{"app": app, "url_prefix": "/feedstock", "name": "feedstock"}]
    external_views = [
        {"name": "Feeds", "href": "/feedstock/", "destination": "nav", "url_route": "feeds", "icon": None},
        {"name": "dbt docs", "href": "/feedstock/dbt-docs", "destination": "nav", "url_route": "dbt-docs"},
    ]
