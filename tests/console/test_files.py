"""The console's files: public, typed, under a CSP that runs only the console's own scripts; its data is not."""

from __future__ import annotations

import re

import aiohttp

from gateway.admin.console import ASSETS, CONSOLE_DIR
from gateway.app import RunningGateway
from tests.conftest import TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_the_page_and_its_modules_load_without_the_token_under_a_strict_csp(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{gateway.admin_url}/console", allow_redirects=True) as page:
        assert page.status == 200
        assert page.url.path == "/console/"
        assert page.content_type == "text/html"
        csp = page.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp
        assert "default-src 'none'" in csp
        html = await page.text()
    for name in re.findall(r'(?:src|href)="([\w.]+)"', html):
        async with http.get(f"{gateway.admin_url}/console/{name}") as asset:
            assert asset.status == 200, name
            assert asset.content_type == ("text/javascript" if name.endswith(".js") else "text/css")
            assert "Content-Security-Policy" in asset.headers


async def test_settings_need_the_token_and_unknown_files_are_problems(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{gateway.admin_url}/console/settings") as refused:
        assert refused.status == 401
    async with http.get(f"{gateway.admin_url}/console/settings", headers=AUTH) as settings:
        assert (await settings.json())["trace_url"] is None
    for path in ("/console/nothing.js", "/console/..%2fconsole.py", "/console/%2e%2e/console.py"):
        async with http.get(f"{gateway.admin_url}{path}", headers=AUTH) as missing:
            assert missing.status == 404, path
            assert missing.content_type == "application/problem+json"


def test_no_module_builds_html_from_strings() -> None:
    """Payloads are attacker-controlled: the console creates elements and text nodes, never markup."""
    markup = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function")
    for name in ASSETS:
        assert not markup.search((CONSOLE_DIR / name).read_text()), name
