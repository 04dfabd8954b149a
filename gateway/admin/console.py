"""The web console: static HTML/CSS/JS modules served by the admin listener, and its one console-only endpoint.

The page and its assets are public (they hold no data, and a browser must load the login form before it has a
token); every data call the page makes carries the admin token, which the login form keeps in ``sessionStorage``
(never in a URL, so it reaches no log or ``Referer``). The files ship inside the package and are read once, at
import, into a fixed table: a request can only name a file that is in it, so no path reaches the file system.

Everything else the console reads (``/console/settings`` and the admin API's data: contracts, payloads, run
timelines) is sent with ``Cache-Control: no-store`` and ``nosniff``: no browser profile or proxy between the
operator and the admin port may keep it, whichever client asked (:func:`keep_data_out_of_caches`).

Payloads shown by the console are attacker-controlled, so the page never builds HTML from data, and every
console response carries a Content-Security-Policy that only runs this origin's own scripts: an injected
``<script>`` or inline handler would not execute even if escaping failed somewhere.
"""

from __future__ import annotations

from pathlib import Path

import orjson
from aiohttp import web

from gateway import __version__
from gateway.admin.common import not_found, state_of

CONSOLE_DIR = Path(__file__).with_name("console")
CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
DATA_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def _load_assets(directory: Path) -> dict[str, tuple[bytes, str]]:
    """Every servable file of the console by name, with its media type."""
    return {
        path.name: (path.read_bytes(), CONTENT_TYPES[path.suffix])
        for path in sorted(directory.iterdir())
        if path.suffix in CONTENT_TYPES
    }


ASSETS = _load_assets(CONSOLE_DIR)
INDEX = "index.html"
PUBLIC_PATHS = frozenset({"/console", "/console/"} | {f"/console/{name}" for name in ASSETS})
"""Paths served without the token: the page and its assets, nothing that reads gateway state."""


async def serve_asset(request: web.Request) -> web.Response:
    name = request.match_info.get("name", INDEX)
    if name not in ASSETS:
        raise not_found(f"Console file {name!r}")
    body, content_type = ASSETS[name]
    return web.Response(body=body, content_type=content_type, charset="utf-8", headers=SECURITY_HEADERS)


async def redirect_to_index(request: web.Request) -> web.Response:
    """``/console`` → ``/console/``, so the page's relative module imports resolve inside the console."""
    raise web.HTTPMovedPermanently("/console/", headers=SECURITY_HEADERS)


async def settings(request: web.Request) -> web.Response:
    """What the page needs from the configuration; behind the token, so the login form also uses it to check
    the token it was given."""
    admin = state_of(request).config.admin
    body = {"trace_url": admin.trace_url, "version": __version__}
    return web.Response(body=orjson.dumps(body), content_type="application/json", headers=SECURITY_HEADERS)


async def keep_data_out_of_caches(request: web.Request, response: web.StreamResponse) -> None:
    """Every admin answer but the public console files is data: never stored (``on_response_prepare`` hook)."""
    if request.path not in PUBLIC_PATHS:
        response.headers.update(DATA_HEADERS)


def mount(app: web.Application) -> None:
    """Add the console's routes to the admin app (``PUBLIC_PATHS`` must be exempt from its token check), and
    keep the data it reads out of caches."""
    app.on_response_prepare.append(keep_data_out_of_caches)
    app.router.add_get("/console", redirect_to_index)
    app.router.add_get("/console/", serve_asset)
    app.router.add_get("/console/settings", settings)
    app.router.add_get("/console/{name}", serve_asset)
