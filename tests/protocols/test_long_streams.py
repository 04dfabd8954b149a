"""Long-lived event streams (MCP's GET stream, streamed completions) get their own limits: no whole-body limit
and ``timeouts.stream_idle`` instead of the read timeout, while any other answer keeps both."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web

from gateway.app import RunningGateway
from tests.conftest import Handler, Upstream, gateway_config

EVENT = b"data: " + b"x" * 200 + b"\n\n"


def streaming(content_type: str, events: int, pause: float) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": content_type})
        await response.prepare(request)
        for n in range(events):
            if n == events // 2:
                await asyncio.sleep(pause)  # longer than timeouts.read, far shorter than timeouts.stream_idle
            await response.write(EVENT)
        await response.write_eof()
        return response

    return handler


async def start(make_gateway: Callable[..., Awaitable[RunningGateway]], upstream: Upstream) -> RunningGateway:
    config = gateway_config(
        [{"name": "agent", "upstream": upstream.url}],
        limits={"max_body_bytes": 1000},
        timeouts={"read": 0.2, "stream_idle": 30},
    )
    return await make_gateway(config)


async def test_an_event_stream_outlives_the_body_limit_and_the_read_timeout(
    make_gateway: Callable[..., Awaitable[RunningGateway]], upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    upstream.handler = streaming("text/event-stream", events=30, pause=0.5)
    gateway = await start(make_gateway, upstream)
    headers = {"Accept": "text/event-stream"}
    async with http.get(f"{gateway.data_url}/agent/mcp", headers=headers) as resp:
        body = await resp.read()
    assert body == EVENT * 30  # 6 KiB through a 1,000-byte body limit, past a 0.2 s read timeout


async def test_any_other_answer_keeps_the_body_limit(
    make_gateway: Callable[..., Awaitable[RunningGateway]], upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    upstream.handler = streaming("application/octet-stream", events=30, pause=0)
    gateway = await start(make_gateway, upstream)
    async with http.get(f"{gateway.data_url}/agent/file") as resp:
        try:
            body = await resp.read()
        except aiohttp.ClientPayloadError:
            body = b""
    assert len(body) <= 1000  # cut once over the limit (the status line was already sent)
