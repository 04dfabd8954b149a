"""Review: the console's data and its live feed, attacked from the outside.

- Data the console reads is not left in any cache (``Cache-Control: no-store``): a shared browser profile, or a
  proxy between the operator and the admin port, must not keep contract documents, payloads or run timelines.
- ``GET /events`` is bounded: a stream whose reader stopped reading must neither hold the gateway's exit (the
  admin listener closes first, so its 60 s shutdown wait postponed the data plane's drain past a pod's grace
  period) nor live forever; and only so many streams are open at once, since each one polls the store.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp

from gateway.admin import events
from gateway.app import RunningGateway
from tests.conftest import TOKEN, Upstream, eventually

AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_data_the_console_reads_is_never_stored_by_a_cache(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    for path in ("/console/settings", "/runs", "/contracts", "/routes", "/dlq", "/metrics"):
        async with http.get(f"{gateway.admin_url}{path}", headers=AUTH) as resp:
            assert resp.status == 200, path
            assert resp.headers.get("Cache-Control") == "no-store", path
            assert resp.headers.get("X-Content-Type-Options") == "nosniff", path
    async with http.get(f"{gateway.admin_url}/console/main.js") as asset:  # public and unchanged: revalidated
        assert asset.headers["Cache-Control"] == "no-cache"


@contextmanager
def stalled_reader(gateway: RunningGateway) -> Iterator[socket.socket]:
    """A client that asks for the feed and never reads a byte, with the smallest socket buffers on both sides
    (accepted sockets inherit the listener's send buffer), so the gateway's writes back up at once."""
    assert gateway.admin_runner is not None
    for site in gateway.admin_runner.sites:
        for listening in site._server.sockets:  # type: ignore[attr-defined,union-attr]
            listening.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)
    host, port = gateway.admin_url.removeprefix("http://").split(":")
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
    client.connect((host, int(port)))
    client.sendall(f"GET /events HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
    try:
        yield client
    finally:
        client.close()


def backed_up(gateway: RunningGateway) -> bool:
    """Whether some admin connection holds more unsent bytes than aiohttp buffers before a write waits."""
    assert gateway.admin_runner is not None
    assert gateway.admin_runner.server is not None
    return any(
        handler.transport is not None and handler.transport.get_write_buffer_size() > 2**16
        for handler in gateway.admin_runner.server.connections
    )


async def test_a_feed_reader_that_stopped_reading_does_not_hold_the_gateways_exit(
    gateway: RunningGateway, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    run = 0

    async def traffic() -> bool:
        nonlocal run
        run += 1
        for step in range(events.MAX_HANDOFF_EVENTS):
            headers = {"X-Run-Id": f"stall-{run}", "X-Agent-Name": "x" * 200, "X-Step": str(step)}
            async with http.post(f"{gateway.data_url}/agent/tasks", json={}, headers=headers) as resp:
                await resp.read()
        return backed_up(gateway)

    with stalled_reader(gateway):
        await eventually(traffic, what="the feed's writes backed up")
        closing = asyncio.create_task(gateway.close())
        await eventually(closing.done, what="the gateway closed")


async def test_streams_beyond_the_limit_are_refused_with_a_problem(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    url = f"{gateway.admin_url}/events"
    opened = [await http.get(url, headers=AUTH) for _ in range(events.MAX_STREAMS)]
    try:
        assert {resp.status for resp in opened} == {200}
        async with http.get(url, headers=AUTH) as refused:
            assert refused.status == 429
            assert refused.content_type == "application/problem+json"
            assert int(refused.headers["Retry-After"]) > 0
    finally:
        for resp in opened:
            resp.close()
    await eventually(lambda: _can_open(http, url), what="a slot freed once a stream was closed")


async def _can_open(http: aiohttp.ClientSession, url: str) -> bool:
    async with http.get(url, headers=AUTH) as resp:
        return resp.status == 200
