"""The "Feeds" page in the Airflow UI, in a real browser: Debian's Chromium driven by Playwright, against
``airflow api-server`` with Airflow's own login. Screenshots are kept in ``tests/artifacts/``."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from feedstock import dbt_docs
from feedstock.lake import Lake
from feedstock_airflow import DBT_PROJECT
from tests.conftest import ROOT, _free_port, run_dag, task_states
from tests.integration.test_finetune_feed import finetune_project  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "tests" / "artifacts"


@pytest.fixture
def api_server(tmp_path):
    """``airflow api-server`` on the session's metadata DB, with one user, ``admin``."""
    port = _free_port()
    env = {
        **os.environ,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
    }
    log = (tmp_path / "api-server.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow",
            "api-server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"{url}/api/v2/monitor/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline and server.poll() is None, (
            tmp_path / "api-server.log"
        ).read_text()[-3000:]
        time.sleep(1)
    home = Path(os.environ["AIRFLOW_HOME"])
    password = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
    yield url, password
    server.terminate()
    server.wait(timeout=30)
    log.close()


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Chromium is installed by `make test` (apt-get install chromium)"
)
def test_feeds_page_in_a_browser(finetune_project, api_server):  # noqa: F811
    from playwright.sync_api import sync_playwright

    for dag_id in ("ingest_warehouse", "finetune_feed"):
        run = run_dag(dag_id, day=10)
        assert run.state == "success", (dag_id, task_states(run))
    url, password = api_server
    # dbt's docs site, as rag_feed writes it (this test runs no rag_feed): without a run's catalog.
    assert dbt_docs.generate(Lake(finetune_project.lake), DBT_PROJECT)["generated"]

    # No session: no data.
    anonymous = httpx.get(f"{url}/feedstock/", timeout=30)
    assert anonymous.status_code == 401 and "finetune" not in anonymous.text
    assert httpx.get(f"{url}/feedstock/api/lineage", params={"record": "tickets/1004"}).status_code == 401
    assert httpx.get(f"{url}/feedstock/dbt-docs", timeout=30).status_code == 401

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        # Airflow's own login form.
        page.goto(f"{url}/auth/login/", wait_until="networkidle")
        page.fill("input[name='username']", "admin")
        page.fill("input[name='password']", password)
        page.click("button[type='submit']")
        page.wait_for_url(lambda u: "/auth/login" not in u, timeout=60_000)

        # The page in the Airflow UI's navigation, and on its own.
        page.goto(f"{url}/plugin/feeds", wait_until="networkidle")
        frame = page.frame_locator("iframe").first
        frame.locator("h1").first.wait_for(timeout=60_000)
        assert "feedstock: feeds" in frame.locator("h1").first.inner_text()
        page.screenshot(path=str(ARTIFACTS / "feeds-in-airflow.png"), full_page=True)

        page.goto(f"{url}/feedstock/", wait_until="networkidle")
        body = page.inner_text("body")
        assert "finetune.release" in body and "bronze.warehouse.tickets" in body
        assert "release 1" in body and "Fine-tuning release 1" in page.inner_html("details")
        assert page.locator("details .card table").count() >= 1  # the funnel, rendered from the data card
        # The sources with their access tags, and the release's charts drawn from its stats.json.
        tickets = page.locator("#sources + table tr", has_text="tickets")
        assert tickets.locator(".tag").all_inner_texts() == ["support"]
        charts = page.locator("details[open] .charts svg")
        assert charts.count() == 3, page.inner_html("details[open] .charts")
        assert page.locator("svg[aria-label='examples kept after each stage'] rect").count() >= 5
        page.screenshot(path=str(ARTIFACTS / "feeds.png"), full_page=True)

        page.fill("input[name='record']", "support_chats/good-01")
        page.click("form[action='lineage'] button")
        page.wait_for_load_state("networkidle")
        assert "finetune release 1: published sft" in page.inner_text("#lineage + pre")
        page.screenshot(path=str(ARTIFACTS / "feeds-lineage.png"), full_page=True)
        traced = page.request.get(f"{url}/feedstock/api/lineage?record=support_chats/good-01").json()
        assert traced["finetune"][0]["release"] == 1

        # dbt's own docs site, rendered by its JavaScript from the manifest inside the page.
        page.goto(f"{url}/feedstock/", wait_until="networkidle")
        page.click("text=dbt docs")
        page.wait_for_url("**/dbt-docs")
        # rendered from the manifest inside the page (in the project tree, collapsed, and the search index)
        page.get_by_text("finetune_conversations").first.wait_for(state="attached", timeout=60_000)
        assert "dbt" in page.title().lower()
        page.screenshot(path=str(ARTIFACTS / "dbt-docs.png"), full_page=True)
        browser.close()
