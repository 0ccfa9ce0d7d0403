"""GraphiQL served offline: the page, its assets, the CDN fallback, and a real headless browser."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

import web.explorer as graphiql
from services.settings import Settings
from tests.fixtures.browser import BrowserPage, screenshot_path
from tests.fixtures.ws import ServerProcess, insert_alerts
from tests.paths import ROOT
from web.app import create_app
from web.explorer import VENDOR_FILES, Explorer

HTML = {"accept": "text/html"}
needs_assets = pytest.mark.skipif(
    not graphiql.EXPLORER.installed(),
    reason="GraphiQL assets not installed: run scripts/install_graphiql.sh (needs npm)",
)


# -- the page and its assets over the real ASGI app -----------------------------------------


@needs_assets
async def test_graphql_page_uses_local_assets_under_a_strict_csp(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", headers=HTML)
    assert response.status_code == 200
    page = response.text
    urls = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert urls and all(u.startswith(("/graphiql-assets/", "data:")) for u in urls), urls
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "<script>" not in page, "no inline script: the init code is a served file"
    for name in (*VENDOR_FILES, "explorer.js", "explorer.css"):
        assert f"/graphiql-assets/{name}?v=" in page


@needs_assets
async def test_assets_are_served_with_types_and_caching(client: httpx.AsyncClient) -> None:
    script = await client.get("/graphiql-assets/graphiql.min.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "max-age" in script.headers["cache-control"]
    assert b"graphql-transport-ws" in script.content  # the subscription client is bundled
    style = await client.get("/graphiql-assets/graphiql.min.css")
    assert style.headers["content-type"].startswith("text/css")
    init = await client.get("/graphiql-assets/explorer.js")
    assert b"subscriptionUrl" in init.content and b"wsConnectionParams" in init.content


@pytest.mark.parametrize(
    "path",
    [
        "/graphiql-assets/package.json",
        "/graphiql-assets/..%2Fpackage-lock.json",
        "/graphiql-assets/index.html",
        "/graphiql-assets/react.development.js",
    ],
)
async def test_only_whitelisted_assets_are_served(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404


async def test_without_local_assets_the_page_falls_back_to_the_cdn(
    client: httpx.AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = Explorer(tmp_path)
    assert not empty.installed() and empty.page() is None
    monkeypatch.setattr(graphiql, "EXPLORER", empty)
    response = await client.get("/graphql", headers=HTML)
    assert response.status_code == 200
    assert "GraphiQL" in response.text and "unpkg.com" in response.text
    missing = await client.get("/graphiql-assets/graphiql.min.js")
    assert missing.status_code == 404


def test_partial_install_counts_as_absent(tmp_path: Path) -> None:
    explorer = Explorer(tmp_path)
    for rel in list(VENDOR_FILES.values())[:-1]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    assert not explorer.installed()


def test_version_changes_with_the_lock_file(tmp_path: Path) -> None:
    explorer = Explorer(tmp_path)
    (tmp_path / "package-lock.json").write_text('{"a": 1}')
    before = explorer.version()
    (tmp_path / "package-lock.json").write_text('{"a": 2}')
    assert explorer.version() != before


# -- a real browser against a real server ---------------------------------------------------

QUERY_EDITOR = ".graphiql-query-editor .CodeMirror"
HEADERS_EDITOR = ".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror"
RESPONSE = ".graphiql-response"
EDITOR_DEBOUNCE_MS = 600


async def seed_watched(pool: asyncpg.Pool, counts: dict[str, int]) -> uuid.UUID:
    """Entities watched by `count` users each; returns one of the watchers."""
    users = [uuid.uuid4() for _ in range(max(counts.values()))]
    await pool.execute(
        "INSERT INTO users (id, email) "
        "SELECT u, u::text || '@example.com' FROM unnest($1::uuid[]) AS u",
        users,
    )
    for ticker, count in counts.items():
        entity = await pool.fetchval(
            "INSERT INTO entities (ticker, name) VALUES ($1, $2) RETURNING id",
            ticker,
            f"{ticker} Browser Test Corp",
        )
        await pool.execute(
            "INSERT INTO watchlists (user_id, entity_id) SELECT u, $2 FROM unnest($1::uuid[]) u",
            users[:count],
            entity,
        )
    return users[0]


async def set_editor(page: Any, selector: str, text: str) -> None:
    """Replace an editor's text the way a user does: focus, select all, type."""
    await page.click(selector)
    await page.keyboard.press("Control+A")
    await page.keyboard.press("Delete")
    await page.keyboard.insert_text(text)
    value = await page.eval_on_selector(selector, "el => el.CodeMirror.getValue()")
    assert value == text
    # GraphiQL re-parses the editors after a short debounce; run only once it has.
    await page.wait_for_timeout(EDITOR_DEBOUNCE_MS)


async def run_query(page: Any, query: str, expect: str) -> str:
    """Type `query`, press the execute button, wait for `expect` in the result pane."""
    await set_editor(page, QUERY_EDITOR, query)
    await page.click(".graphiql-execute-button")
    await page.wait_for_function(
        "([sel, text]) => document.querySelector(sel)?.innerText.includes(text)",
        arg=[RESPONSE, expect],
        timeout=20_000,
    )
    text: str = await page.inner_text(RESPONSE)
    return text


@pytest.mark.browser
@needs_assets
async def test_graphiql_runs_queries_headers_and_subscriptions_offline(
    browser_page: BrowserPage,
    start_server: Callable[..., ServerProcess],
    pool: asyncpg.Pool,
    make_token: Callable[..., str],
) -> None:
    watcher = await seed_watched(pool, {"ZZBRWA": 3, "ZZBRWB": 2, "ZZBRWC": 1})
    server = start_server()
    origin = f"http://127.0.0.1:{server.port}"
    page, traffic = browser_page.page, browser_page.traffic

    await page.goto(origin + "/graphql")
    await page.wait_for_selector(QUERY_EDITOR, timeout=20_000)

    # A public query, typed and run: the tickers come back in popularity order.
    result = await run_query(page, "{ popularStocks { ticker } }", "ZZBRWC")
    assert result.index("ZZBRWA") < result.index("ZZBRWB") < result.index("ZZBRWC")
    await page.screenshot(path=str(screenshot_path("graphiql-popular-stocks.png")))

    # The Headers tab: a pasted bearer token authenticates `me`.
    token = make_token(sub=watcher, email=f"{watcher}@example.com")
    headers = json.dumps({"Authorization": f"Bearer {token}"})
    await set_editor(page, HEADERS_EDITOR, headers)
    result = await run_query(page, "{ me { id email } }", str(watcher))
    assert "UNAUTHENTICATED" not in result

    # A subscription goes over graphql-transport-ws with the same headers as connection_init.
    await set_editor(page, QUERY_EDITOR, "subscription { alertCreated { headline } }")
    await page.click(".graphiql-execute-button")
    entity = await pool.fetchval("SELECT id FROM entities WHERE ticker = 'ZZBRWA'")
    shown = await _deliver_until_shown(page, pool, watcher, entity)
    assert "alert " in shown, (shown, traffic.websockets, traffic.sent_frames)
    assert any(
        url.startswith(f"ws://127.0.0.1:{server.port}/graphql") for url in traffic.websockets
    )
    init = [json.loads(f) for f in traffic.sent_frames if '"connection_init"' in f]
    assert init and init[0]["payload"]["Authorization"] == f"Bearer {token}"

    await page.screenshot(path=str(screenshot_path("graphiql-subscription.png")))
    assert traffic.foreign(origin) == [], "the explorer must not load anything from elsewhere"
    assert traffic.requests, "the browser made no requests at all?"
    assert not traffic.console_errors, traffic.console_errors


async def _deliver_until_shown(
    page: Any, pool: asyncpg.Pool, user: uuid.UUID, entity: uuid.UUID
) -> str:
    """Insert alerts (as the evaluator does) until one shows up live; the result pane's text."""
    text = ""
    for _ in range(20):
        await insert_alerts(pool, [(user, entity)], what_changed="browser test")
        await asyncio.sleep(0.5)
        text = await page.inner_text(RESPONSE)
        if "alertCreated" in text and "alert " in text:
            break
    return text


# -- the install script's behaviour without npm ---------------------------------------------


def _script_copy(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The install script and the lock files in a scratch tree, with a PATH lacking npm."""
    root = ROOT
    (tmp_path / "scripts").mkdir()
    (tmp_path / "static" / "explorer").mkdir(parents=True)
    script = tmp_path / "scripts" / "install_graphiql.sh"
    shutil.copy2(root / "scripts" / "install_graphiql.sh", script)
    for name in ("package.json", "package-lock.json"):
        shutil.copy2(root / "static" / "explorer" / name, tmp_path / "static" / "explorer" / name)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "cmp", "cp"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    return script, {"PATH": str(bin_dir)}


def _run(script: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    bash = shutil.which("bash")
    assert bash
    return subprocess.run(
        [bash, str(script)], env=env, capture_output=True, text=True, timeout=30, check=False
    )


def test_install_script_without_npm_explains_and_falls_back(tmp_path: Path) -> None:
    script, env = _script_copy(tmp_path)
    done = _run(script, env)
    assert done.returncode == 0
    assert "npm not found" in done.stderr and "CDN" in done.stderr
    strict = _run(script, env | {"GRAPHIQL_ASSETS_REQUIRED": "1"})
    assert strict.returncode == 1 and "npm not found" in strict.stderr
    assert not (tmp_path / "static" / "explorer" / "node_modules").exists()


def test_install_script_skips_an_up_to_date_install(tmp_path: Path) -> None:
    script, env = _script_copy(tmp_path)
    explorer = tmp_path / "static" / "explorer"
    (explorer / "node_modules").mkdir()
    shutil.copy2(
        explorer / "package-lock.json", explorer / "node_modules" / ".material-changes-lock"
    )
    done = _run(script, env)
    assert done.returncode == 0 and "up to date" in done.stdout


async def test_no_explorer_when_graphiql_is_disabled(settings: Settings, database_url: str) -> None:
    closed = dataclasses.replace(settings, graphql_introspection=False)
    app = create_app(closed, database_url=database_url)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            response = await http.get("/graphql", headers=HTML)
    assert "graphiql" not in response.text.lower()
    assert response.status_code in (400, 404, 405)
