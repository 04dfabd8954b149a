"""A stand-in agent for the tutorial: ``python -m gateway.demo.echo [PORT]`` answers every request with the
JSON it received, wrapped as ``{"result": ...}``."""

from __future__ import annotations

import sys

from aiohttp import web


async def echo(request: web.Request) -> web.Response:
    body = await request.json() if request.can_read_body else None
    return web.json_response({"result": body, "path": request.path})


def main() -> None:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]) if len(sys.argv) > 1 else 8001)


if __name__ == "__main__":
    main()
