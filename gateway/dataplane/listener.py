"""The HTTP/1.1 listeners (data plane and admin API): aiohttp's server with the protections a proxy needs.

- **Request-head deadline** (``timeouts.header``): once the first byte of a request head arrives on an idle
  connection, the whole head must arrive within the deadline, or the connection is closed. A client trickling
  one byte a second (slowloris) would otherwise hold a connection for as long as it likes; aiohttp's own
  keep-alive timer only bounds a head that never starts.
- **Parser errors are problem documents**: a request the HTTP parser refuses (bad request line, header line
  too long, invalid characters, broken chunked framing) gets an ``application/problem+json`` 400 like every
  other refusal, without echoing the offending bytes, instead of aiohttp's ``text/plain`` page.
- **No software version on the wire**: answers the gateway writes itself say ``Server: agent-gateway``;
  relayed answers keep the agent's own ``Server`` field (it is end-to-end) unless it is aiohttp's default
  signature, which is indistinguishable from the gateway's own and is replaced too.

aiohttp offers no public hook for the first two, so :class:`GuardedRequestHandler` extends its
``RequestHandler`` (the class every aiohttp server connection is), relying on one documented-by-tests detail:
``_waiter`` is pending exactly while the connection waits for a complete request head.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from gateway.config import GatewayConfig
from gateway.errors import BadRequest, GatewayError, problem_response

SERVER = "agent-gateway"


class GuardedRequestHandler(RequestHandler):
    """One client connection, with a deadline on every request head it sends."""

    def __init__(self, *args: Any, head_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_timeout = head_timeout
        self._head_deadline: asyncio.TimerHandle | None = None

    def _awaiting_head(self) -> bool:
        waiter = self._waiter
        return waiter is not None and not waiter.done()

    def data_received(self, data: bytes) -> None:
        if data and self._head_deadline is None and self._awaiting_head():
            self._head_deadline = self._loop.call_later(self.head_timeout, self._head_timed_out)
        super().data_received(data)
        if self._head_deadline is not None and not self._awaiting_head():
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self._awaiting_head():
            self.force_close()
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None
        super().connection_lost(exc)

    def handle_error(
        self, request: BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        """aiohttp calls this for parser errors (4xx) and for exceptions no handler caught (500)."""
        if request.writer.output_size > 0:  # the status line is gone; only the cut connection can tell
            return super().handle_error(request, status, exc, message)
        if 400 <= status < 500:
            reason = message.strip().splitlines()[0].rstrip(":") if message and message.strip() else "malformed"
            error: GatewayError = BadRequest(f"The request could not be parsed: {reason}.", status)
        else:
            error = GatewayError("The gateway failed unexpectedly; see its logs.")
        self.log_exception("Error handling request from %s", request.remote, exc_info=exc)
        response = problem_response(error, None, {"Server": SERVER})
        response.force_close()
        return response


class _GuardedServer(web.Server):
    """aiohttp's connection factory, building :class:`GuardedRequestHandler` connections."""

    head_timeout: float

    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(self, loop=self._loop, head_timeout=self.head_timeout, **self._kwargs)


class GuardedRunner(web.AppRunner):
    """An ``AppRunner`` whose connections are :class:`GuardedRequestHandler`; ``head_timeout`` in seconds."""

    def __init__(self, app: web.Application, *, head_timeout: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._head_timeout = head_timeout
        app.on_response_prepare.append(_server_field)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _GuardedServer  # same state, one overridden factory method
        assert isinstance(server, _GuardedServer)
        server.head_timeout = self._head_timeout
        return server


async def serve_data_app(
    app: web.Application, config: GatewayConfig, host: str, port: int, unwind: contextlib.AsyncExitStack
) -> GuardedRunner:
    """Serve a data-plane app (the data port, the egress port) on ``host:port`` with the client limits of
    ``config``; with ``workers > 1`` every worker binds the same port (``SO_REUSEPORT``). ``unwind`` cleans it up
    if start-up fails later."""
    runner = GuardedRunner(
        app,
        head_timeout=config.timeouts.header,
        keepalive_timeout=config.timeouts.keepalive,
        access_log=None,
        auto_decompress=False,
        max_line_size=config.limits.max_header_line_bytes,
        max_field_size=config.limits.max_header_field_bytes,
        max_headers=config.limits.max_headers,
    )
    await runner.setup()
    unwind.push_async_callback(runner.cleanup)
    await web.TCPSite(runner, host, port, reuse_address=True, reuse_port=config.workers > 1).start()
    return runner


async def _server_field(_: web.Request, response: web.StreamResponse) -> None:
    """aiohttp fills in its own ``Server`` before this hook runs (3.14; earlier releases after it): replace
    that default, keep any other value (an agent's own field, relayed)."""
    if response.headers.get("Server", SERVER_SOFTWARE) == SERVER_SOFTWARE:
        response.headers["Server"] = SERVER
